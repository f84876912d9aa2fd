//! ozg-gateway: accepts submissions from online application portals, seals and
//! end-to-end encrypts them per target, stores them durably and delivers them to
//! DMS/E-Akte systems and Fachverfahren, with a tamper-evident audit log.
//!
//! # The house, in data-flow order
//!
//! ```text
//! cli → daemon → listen → core → store (traits) → model
//!          └─ config (typed file) ─┘      └ store::embedded (a backend)
//! ```
//!
//! - [`config`]: the typed config file; [`daemon::setup`] loads and checks
//!   everything named in it (keys, certificates, TLS, schemas, portals, routes,
//!   adapters) and reports every problem at once.
//! - [`daemon`]: opens the store, binds the listeners, starts the engine, retention,
//!   checkpoints and the CRL refresh ([`daemon::crl`]), and runs until
//!   SIGTERM/SIGINT; shuts down gracefully.
//! - [`listen`]: thin listeners over one accept loop ([`listen::server`]): the portal
//!   API ([`listen::portal`]: parse, call the core, answer RFC 9457 problems) and the
//!   admin listener ([`listen::admin`]). They never touch the store. Clients are
//!   checked in [`listen::tls`] (chain, revocation, clientAuth) and recognised in
//!   [`listen::identity`] (fingerprint, or subject as an RDN sequence: [`listen::dn`]).
//! - [`core`]: what the gateway does — [`core::intake`] (authorise, route, check
//!   the data — costly checks on a bounded pool of blocking threads, never on the
//!   I/O threads —, seal and encrypt per target, hand to the store; refusals as
//!   [`core::refusal::Refusal`]), [`core::engine`] (due deliveries to the targets'
//!   adapters: retry policy, circuit breaker, at-least-once), [`core::audit`]
//!   (checkpoints, verify, inclusion proofs), portal queries and operator actions,
//!   retention, metrics, the clock.
//! - [`store`]: the store traits with a backend-neutral error; [`store::backends`]
//!   picks a backend from the config; [`store::embedded`] is the single-machine
//!   default (SQLite + segment files, group commit).
//! - [`model`]: the domain types — submission, delivery state and outcome, typed
//!   audit events, portal, routing patterns, policies, time.
//! - [`tools`]: not the daemon — the portal-side client, load generator and
//!   benchmark, the DEMO ONLY PKI, the demo receiver.
//! - [`cli`]: the command line, one file per command group.
//!
//! The dependency rules are checked by `tests/architecture.rs`: a module uses its
//! own layer and the ones below, never one above; listeners never touch the store;
//! storage backends are used only where a backend is chosen.
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
