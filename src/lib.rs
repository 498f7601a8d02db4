//! cartero — a self-hosted outgoing-mail service.
//!
//! The crate is layered so that dependencies point one way (see `DESIGN.md`):
//!
//! * [`domain`] — pure types with no I/O: accounts and the values that make them up
//!   (parsed at the door, never re-validated), permissions and roles, provider presets,
//!   bilingual (es/en) texts.
//! * [`store`] — the `Store` trait and its SQLite implementation (the embedded default): a
//!   writer thread group-commits submissions, claims and outcomes in one transaction.
//! * [`secrets`] — AES-256-GCM envelope encryption for every stored credential.
//! * [`tls`], [`smtp`] — rustls (ring) with an observing verifier, and the step-by-step SMTP
//!   client with a credential-masking transcript.
//! * [`probe`] — Probar / Test: the staged connection check; failures are explained by the one
//!   classifier in [`domain::diagnosis`], which delivery shares.
//! * [`accounts`] — the account service: validation + encryption + storage, shared by the
//!   HTTP API and the CLI so both behave the same.
//! * [`delivery`] — the durable queue's engine: group-commit intake that hands new messages
//!   straight to the leased dispatcher when it has room,
//!   routing (type → priority → fallback), per-account limits, pooled SMTP transport.
//! * [`templates`] — built-in and per-project notification templates (minijinja), es and en.
//! * [`http`] — the axum JSON API (`/v1`), the embedded web admin (`/`), authentication
//!   (tokens and sessions) and error answers.
//! * [`users`] — web admin users (argon2id) and sessions; [`audit`] — the audit log.
//! * [`cli`] — the subcommands of the `cartero` binary.
//! * [`app`] — [`app::Application`]: builds the state, binds the listener, serves until shutdown.
// `deny`, not `forbid`: one module, `store::sqlite::wal_vfs` (an FFI shim over SQLite's VFS),
// is allowed `unsafe`; everything else stays without it.
#![deny(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod probe;
pub mod secrets;
pub mod smtp;
pub mod store;
pub mod templates;
pub mod tls;
pub mod tokens;
pub mod users;
