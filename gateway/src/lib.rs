//! ozg-gateway: accepts submissions from online application portals, seals and
//! end-to-end encrypts them per target, stores them durably and delivers them to
//! DMS/E-Akte systems and Fachverfahren, with a tamper-evident audit log.
//!
//! Modules in data-flow order:
//!
//! - [`config`] → [`setup`]: the typed config file, then everything loaded and
//!   checked from it (keys, certificates, TLS, schemas, portals, [`routing`]).
//! - [`daemon`]: binds the listeners, starts the engine, retention and checkpoints,
//!   and runs until SIGTERM/SIGINT.
//! - [`ingest`] (listener, thin) → [`validate`] → [`pipeline`] (core: authorise,
//!   route, seal and encrypt per target) → [`store`] (durable, group commit;
//!   envelopes in segment files, rows and the audit chain in SQLite).
//! - [`engine`]: takes due deliveries from the store and hands them to the
//!   targets' adapters (retry policy, circuit breaker, at-least-once).
//! - [`audit`]: signed checkpoints (chain head and Merkle tree head of their batch),
//!   `audit verify`, and the inclusion proofs of `audit prove`.
//! - [`tls`], [`problem`], [`metrics`]: shared by the listeners.
//! - [`client`]: the portal side (`ozg-gateway submit`, tests); [`demo_pki`]: the
//!   DEMO ONLY PKI of `certs-example/`; [`loadgen`] and [`bench`](mod@bench): the benchmark.
//!
//! Invariants: a `202` is sent only after the submission is fsynced; plaintext
//! never reaches disk (the store gets envelopes, JWE per target); no log line
//! carries Antragsdaten or personal data — ids, sizes, hashes, error classes only.

pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod listen;
pub mod model;
pub mod store;
pub mod tools;
