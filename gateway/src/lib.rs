pub mod config;
pub mod demo_pki;
pub mod routing;
pub mod setup;
pub mod store;
pub mod tls;
