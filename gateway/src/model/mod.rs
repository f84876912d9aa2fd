//! The domain types, shared by every layer and depending on none of them:
//! submissions and their deliveries, the audit log's records, routing patterns and
//! delivery policies. Pure data and pure functions — no I/O.

pub mod audit;
pub mod cases;
pub mod delivery;
pub mod policy;
pub mod portal;
pub mod routing;
pub mod submission;
pub mod time;
