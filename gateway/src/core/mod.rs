//! The core: what the gateway does, independent of how requests arrive.
//!
//! - [`intake`]: authorise, route, check, seal and encrypt per target, hand to the store.
//! - [`engine`]: deliver due deliveries through the targets' adapters.
//! - [`audit`]: signed checkpoints, verification and inclusion proofs of the audit log.
//! - [`status`] and [`operator`]: what portals read of their submissions; operators' queue tools.
//! - [`registry`]: targets and routes registered at run time, and a target's test message.
//! - [`throttle`]: repeated identical errors logged once per interval.
//! - [`refusal`]: why the core refuses a request, for the listeners to answer.
//! - [`revoked`]: targets whose certificate was revoked at run time (intake refuses them).
//! - [`observe`]: what the admin listener shows (metrics, the newest checkpoint).
//! - [`retention`]: deleting sealed envelopes whose time is up.
//! - [`clock`]: the wall time the engine and retention go by (the system's; tokio's in tests).
//! - [`metrics`]: the counters and gauges the listeners and the engine update.
//!
//! The core talks to storage only through the traits of [`crate::store`] and to
//! targets only through the SDK's `Adapter` trait; it knows nothing of HTTP.

pub mod audit;
pub mod clock;
pub mod engine;
pub mod fitconnect;
pub mod hsm;
pub mod intake;
pub mod mailbox;
pub mod metrics;
pub mod observe;
pub mod operator;
pub mod privacy;
pub mod refusal;
pub mod registry;
pub mod relay;
pub mod replies;
pub mod retention;
pub mod revoked;
pub mod stats;
pub mod status;
pub mod throttle;
pub mod xdomea;
