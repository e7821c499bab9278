//! coursetrail: a multi-tenant, event-sourced training-platform backend.
//!
//! The map (see ARCHITECTURE.md for the invariants):
//! - [`domain`]: commands, events, pure `decide`/`evolve` — no I/O.
//! - [`store`]: the event log on PostgreSQL — append with optimistic concurrency, gap-free
//!   per-tenant positions, idempotent commands.
//! - [`projections`]: the synchronous read tables, as pure row folds plus their SQL.
//! - [`app`]: roles and the one-command-one-transaction flow; used by GraphQL and the CLI.
//! - [`graphql`], [`http`], [`server`]: the thin interface layers.
//! - [`xapi`]: events as xAPI statements, a pure mapping for the `/xapi/statements` export.
//! - [`auth`]: token verification and minting.
//! - [`config`], [`db`]: start-up: configuration, database.
//! - `pgcluster`, `citus`, `demo` (the `dev-tools` feature, on by default): the private
//!   PostgreSQL cluster, the local Citus cluster of the tests, the Demo tenant's history.

pub mod app;
pub mod auth;
#[cfg(feature = "dev-tools")]
pub mod citus;
pub mod config;
pub mod crypto;
pub mod db;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod metrics;
#[cfg(feature = "dev-tools")]
pub mod pgcluster;
pub mod projections;
pub mod replay;
pub mod reports;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod xapi;

/// The module map, checked (a test).
#[cfg(test)]
mod layers;
