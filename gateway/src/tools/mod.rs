//! Tools around the daemon, not part of it: the portal-side client, the load
//! generator and benchmark, the DEMO ONLY PKI and the demo receiver.

pub mod bench;
pub mod client;
pub mod conformance;
pub mod conformance_amqp;
pub mod conformance_xta;
pub mod demo_pki;
pub mod demo_receiver;
pub mod engines;
pub mod loadgen;
pub mod xta_readers;
