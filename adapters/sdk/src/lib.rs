//! The ozg-gateway adapter SDK: everything a target's side needs, without the daemon.
//!
//! - [`base64url`]: the encoding JOSE writes binary values in.
//! - [`keys`]: certificates and keys, chain and key-usage checks (RSA ≥ 3072, P-256).
//! - [`jose`]: compact JWS (`ES256`, `PS256`/`PS512`, `x5c`) and JWE, compact or
//!   flattened JSON (`RSA-OAEP-256` / `ECDH-ES+A256KW` with `A256GCM`) on
//!   `aws-lc-rs`; AES-GCM over data in pieces.
//! - [`adapter`]: the [`adapter::Adapter`] trait every delivery target implements,
//!   and the outcome classes the delivery engine acts on.
//! - [`adapter_config`]: the [`adapter_config::AdapterConfig`] trait every
//!   adapter's settings implement: resolve paths, check, prepare, build the adapter.
//! - [`envelope`]: the envelope a target receives, the sealed manifest, the
//!   receipt, and [`envelope::open`] — decrypt, verify the seal, check every hash.
//! - `conformance` (feature `conformance`): the test harness that checks an
//!   adapter against the gateway's contract.
//! - [`merkle`]: RFC 9162 Merkle tree hashing, and [`audit_proof`]: the gateway's
//!   signed audit checkpoints and the inclusion proof a receiver can check.
//!
//! Invariants: the gateway and every receiver use this same code for the format;
//! nothing here touches disk or network.

pub mod adapter;
pub mod adapter_config;
pub mod audit_proof;
pub mod base64url;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod envelope;
pub mod jose;
pub mod keys;
pub mod merkle;
pub mod timestamp;
pub mod xdomea;

pub use adapter::{Adapter, DeliverFuture, Delivery, Failure, Outcome};
pub use adapter_config::{AdapterConfig, AdapterConfigError};
pub use envelope::{
    open, open_with_keys, Envelope, Manifest, ManifestPart, OpenError, Opened, Receipt,
};
pub use keys::{
    KeyError, RecipientCert, RecipientPrivateKey, SealKey, SealPins, SealSigner, SignError,
    TrustAnchors,
};
