//! The listeners: parse a request, check who asks, call the core, answer.
//!
//! - [`portal`]: the portal API (HTTPS, client certificates).
//! - [`identity`]: the portals and operators registered for client certificates.
//! - [`tls`]: server and client TLS configuration and client certificate checks.
//! - [`problem`]: RFC 9457 problem details, the answer to every refusal.

pub mod identity;
pub mod portal;
pub mod problem;
pub mod tls;
