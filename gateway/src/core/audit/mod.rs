//! Audit verification and signed checkpoints.
//!
//! The store appends the hash-chained records (see [`crate::model::audit`]); this
//! module signs checkpoints over the chain's head with the seal key and verifies a
//! log: every record in sequence, each `prev` the SHA-256 of the record before,
//! each stored hash the SHA-256 of the record, and every checkpoint signed by a
//! seal that chained to the trust anchors when it was signed, matching the
//! recomputed chain and the RFC 9162 Merkle tree head of its batch of records
//! (which lets [`prove()`] hand out inclusion proofs for single records). A log
//! that ends before its newest checkpoint was truncated. (A log truncated *after*
//! its newest checkpoint can only be caught with a copy of a later checkpoint kept
//! elsewhere — which is why checkpoints are exported on the admin listener.)

pub mod checkpoint;
pub mod prove;
pub mod stamp;
pub mod verify;

pub use checkpoint::{checkpoint_task, sign_checkpoint};
pub use ozg_adapter_sdk::audit_proof::TYP_CHECKPOINT;
pub use prove::{empty_proof, prove, prove_submission, ProveError};
pub use verify::{verify, Broken, Report};

#[cfg(test)]
mod tests;
