//! The listeners: parse a request, check who asks, call the core, answer.
//!
//! - [`server`]: the accept loop shared by the TLS listeners (slots, handshake,
//!   client identity, graceful drain).
//! - [`portal`]: the portal API (HTTPS, client certificates).
//! - [`admin`]: health, readiness, metrics and the newest audit checkpoint.
//! - [`identity`]: the portals and operators registered for client certificates.
//! - [`dn`]: distinguished names as RDN sequences (configured subjects, certificate subjects).
//! - [`tls`]: server and client TLS configuration and client certificate checks.
//! - [`problem`]: RFC 9457 problem details, the answer to every refusal.
//! - [`xta`]: the XTA 2 listener (so far its SOAP envelope reader and faults).

pub mod admin;
pub mod dn;
pub mod fitconnect;
pub mod fitconnect_callback;
pub mod fitconnect_subscriber;
pub mod guard;
pub mod identity;
pub mod portal;
pub mod problem;
pub mod server;
pub mod tls;
pub mod xta;
