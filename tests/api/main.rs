//! The integration tests: one binary, real PostgreSQL (a private cluster started by the
//! harness), a fresh database and server per test.

mod audit;
mod citus;
mod concurrency;
mod erasure;
mod graphql_http_audit;
mod group_commit;
mod helpers;
mod http_spec;
mod input;
mod isolation;
mod lifecycle;
mod limits;
mod metrics;
mod replay;
mod schema;
mod stream_cache;
mod subscriptions;
mod telemetry;
mod wait;
mod ws;
mod xapi;
