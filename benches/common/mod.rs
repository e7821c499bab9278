//! What the benchmarks share: a private cluster with a migrated database, tenants, tokens,
//! events seeded by SQL, and latency histograms.
//!
//! Each bench includes this module with `#[path = "common/mod.rs"] mod common;`, so every
//! bench measures on the same kind of database, seeded with the same shape of events, and
//! states latencies the same way (hdrhistogram, microseconds, printed in milliseconds). It
//! does not start the coursetrail server: the load generator runs it as a child process, the
//! audit bench in its own process, and the replay bench needs none.

// Each bench uses a part of this module; the rest would warn in that bench.
#![allow(dead_code)]

pub mod seed;

use anyhow::Context;
use coursetrail::auth::{Role, TokenIssuer};
use coursetrail::db;
use coursetrail::domain::TenantId;
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::store;
use hdrhistogram::Histogram;
use rand::Rng;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The issuer and audience of the tokens the benches mint (the server's defaults).
pub const ISSUER: &str = "coursetrail";
pub const AUDIENCE: &str = "coursetrail";

/// A private PostgreSQL cluster of the bench's own, with one migrated database and a pool on
/// it; the cluster and its files go away with [`PrivateDatabase::stop`].
pub struct PrivateDatabase {
    pub cluster: PrivateCluster,
    pub pool: PgPool,
    /// The database's URL (a unix socket in the cluster's directory).
    pub url: String,
}

impl PrivateDatabase {
    /// Starts a cluster with `settings` (e.g. [`PrivateCluster::TEST_SETTINGS`]), creates
    /// `database`, migrates it and opens a pool of `connections` on it.
    pub async fn start(
        settings: &[&str],
        database: &str,
        connections: u32,
    ) -> anyhow::Result<Self> {
        let (cluster, url) = private_cluster(settings, database).await?;
        let pool = migrated_pool(&url, connections).await?;
        Ok(Self { cluster, pool, url })
    }

    /// Closes the pool, then stops the cluster and removes its files.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.cluster
            .stop()
            .await
            .context("stopping the private cluster")
    }
}

/// Starts a private cluster with `settings` and creates `database` in it; returns the cluster
/// and the database's URL.
pub async fn private_cluster(
    settings: &[&str],
    database: &str,
) -> anyhow::Result<(PrivateCluster, String)> {
    let cluster = PrivateCluster::start_ephemeral_with(settings)
        .await
        .context("starting a private PostgreSQL cluster")?;
    let admin = db::connect(&cluster.url("postgres"), 1).await?;
    db::create_database_if_missing(&admin, database).await?;
    admin.close().await;
    let url = cluster.url(database);
    Ok((cluster, url))
}

/// A pool of `connections` on `url`, with the migrations applied.
pub async fn migrated_pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    let pool = db::connect(url, connections).await?;
    db::migrate(&pool).await.context("migrating the database")?;
    Ok(pool)
}

/// A new tenant named `name` (with its head row), in a transaction of its own.
pub async fn new_tenant(pool: &PgPool, name: &str) -> anyhow::Result<TenantId> {
    let mut tx = pool.begin().await?;
    let tenant = store::create_tenant(&mut tx, name).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// `count` new tenants named `label 0`, `label 1`, ….
pub async fn new_tenants(
    pool: &PgPool,
    count: usize,
    label: &str,
) -> anyhow::Result<Vec<TenantId>> {
    let mut tenants = Vec::with_capacity(count);
    for i in 0..count {
        tenants.push(new_tenant(pool, &format!("{label} {i}")).await?);
    }
    Ok(tenants)
}

/// A random HS256 secret (64 alphanumeric characters) for a server the bench starts.
pub fn random_secret() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

/// Mints the tokens a bench's virtual users send, with the server's secret.
pub struct Tokens {
    issuer: TokenIssuer,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        Self {
            issuer: TokenIssuer::new(secret, ISSUER, AUDIENCE),
        }
    }

    /// A token of `role` in `tenant` for subject `sub`, valid for `ttl`.
    pub fn mint(
        &self,
        tenant: TenantId,
        role: Role,
        sub: Uuid,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        Ok(self.issuer.mint(tenant.as_uuid(), sub, role, ttl)?)
    }

    /// An admin of `tenant` (a new subject each time), valid for `ttl`.
    pub fn admin(&self, tenant: TenantId, ttl: Duration) -> anyhow::Result<String> {
        self.mint(tenant, Role::Admin, Uuid::now_v7(), ttl)
    }

    /// An instructor of `tenant` (a new subject each time), valid for `ttl`.
    pub fn instructor(&self, tenant: TenantId, ttl: Duration) -> anyhow::Result<String> {
        self.mint(tenant, Role::Instructor, Uuid::now_v7(), ttl)
    }
}

/// A histogram of durations in microseconds, from 1 µs to `max`, 3 significant digits.
pub fn histogram_up_to(max: Duration) -> Histogram<u64> {
    let max = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(2);
    Histogram::new_with_bounds(1, max, 3).expect("valid histogram bounds")
}

/// A latency histogram: 1 µs to 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    histogram_up_to(Duration::from_secs(60))
}

/// Records the time since `started`, in microseconds (at least 1; beyond 60 s, as 60 s).
pub fn record_since(histogram: &mut Histogram<u64>, started: Instant) {
    record_micros(histogram, started.elapsed());
}

/// Records `elapsed` in microseconds (at least 1; beyond the histogram's bound, at it).
pub fn record_micros(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Microseconds as milliseconds.
pub fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Microseconds as `1.23 ms`.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", millis(micros))
}
