//! The ceilings: what PostgreSQL itself commits on the same database with as many writers as
//! the load has users, each a loop of one-statement transactions. The load's commands per
//! second are stated as ratios of these, measured in the same run.
//!
//! 1. a bare single-row `INSERT` into `events` (what this PostgreSQL can commit);
//! 2. the same insert plus the per-tenant head-row increment, spread over as many tenants as
//!    the scenario (the ceiling of the ordering design);
//! 3. (2) with every writer on one tenant (the hot-tenant ceiling);
//! 4. Message DB's `write_message` ([`super::message_db`]), its streams in as many categories
//!    as the scenario has tenants: an event store's append, as a baseline.

use super::Args;
use super::common::{self, ms};
use super::env::Environment;
use super::message_db::MessageDb;
use coursetrail::domain::TenantId;
use hdrhistogram::Histogram;
use rand::Rng;
use sqlx::{PgConnection, PgPool};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The tenants each ceiling writes to, made before the first measurement.
pub struct CeilingTenants {
    pub bare: Vec<TenantId>,
    pub head: Vec<TenantId>,
    pub hot: Vec<TenantId>,
}

impl CeilingTenants {
    /// As many tenants as the scenario for (1) and (2), one for (3).
    pub async fn new(pool: &PgPool, tenants: usize) -> anyhow::Result<Self> {
        Ok(Self {
            bare: common::new_tenants(pool, tenants, "ceiling bare").await?,
            head: common::new_tenants(pool, tenants, "ceiling head").await?,
            hot: common::new_tenants(pool, 1, "ceiling hot").await?,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum CeilingKind {
    /// A bare single-row insert into `events`, one per transaction.
    BareInsert,
    /// The insert plus the tenant head increment, in one transaction.
    InsertAndHead,
}

/// What a loop of one-statement transactions measured.
pub struct Measured {
    pub per_second: f64,
    pub latency: Histogram<u64>,
}

/// The ceiling statements. Each is one statement, i.e. one transaction and one round trip: the
/// least a client can do to commit one event.
const BARE_INSERT: &str = "INSERT INTO events (tenant_id, stream_id, version, position, event_id, \
     stream_type, event_type, schema_version, data, recorded_at, actor_id, actor_role, \
     correlation_id, trainee_id, course_id) \
     VALUES ($1, $2, 1, $3, $4, 'enrollment', 'CourseStarted', 1, '{}', now(), $5, 'trainee', \
     $4, $5, $6)";
const INSERT_AND_HEAD: &str = "WITH head AS (UPDATE tenant_heads SET last_position = \
     last_position + 1 WHERE tenant_id = $1 RETURNING last_position) \
     INSERT INTO events (tenant_id, stream_id, version, position, event_id, \
     stream_type, event_type, schema_version, data, recorded_at, actor_id, actor_role, \
     correlation_id, trainee_id, course_id) \
     SELECT $1, $2, 1, head.last_position, $3, 'enrollment', 'CourseStarted', 1, '{}', now(), \
     $4, 'trainee', $3, $4, $5 FROM head";

/// Positions of the bare inserts, which bump no head row: far above anything a head hands out.
static BARE_POSITION: AtomicI64 = AtomicI64::new(1_000_000_000_000_000);

/// The rates measured, in transactions per second.
#[derive(Clone, Copy)]
pub struct Rates {
    pub bare: f64,
    pub head: f64,
    pub hot: f64,
    /// Message DB's `write_message`, where it is installed.
    pub message_db: Option<f64>,
}

impl Rates {
    /// The mean of two measurements (before and after the load).
    pub fn mean(&self, other: &Rates) -> Rates {
        let mean = |a: f64, b: f64| (a + b) / 2.0;
        Rates {
            bare: mean(self.bare, other.bare),
            head: mean(self.head, other.head),
            hot: mean(self.hot, other.hot),
            message_db: self
                .message_db
                .zip(other.message_db)
                .map(|(a, b)| mean(a, b)),
        }
    }
}

/// Measures and prints the ceilings (and Message DB, when given); returns their rates.
pub async fn ceilings(
    args: &Args,
    env: &Environment,
    tenants: &CeilingTenants,
    message_db: Option<&MessageDb>,
    when: &str,
) -> anyhow::Result<Rates> {
    let (writers, d) = (args.users, args.ceiling_duration);
    let pool = &env.pool;
    let bare = ceiling(pool, CeilingKind::BareInsert, &tenants.bare, writers, d).await?;
    let head = ceiling(pool, CeilingKind::InsertAndHead, &tenants.head, writers, d).await?;
    let hot = ceiling(pool, CeilingKind::InsertAndHead, &tenants.hot, writers, d).await?;
    println!(
        "ceilings {when} ({writers} writers, one-statement transactions, {} each):",
        humantime::format_duration(d)
    );
    print_ceiling("(1) bare INSERT into events", &bare);
    print_ceiling(
        &format!("(2) INSERT + head bump, {} tenant(s)", args.tenants),
        &head,
    );
    print_ceiling("(3) INSERT + head bump, 1 tenant", &hot);
    let message_db = match message_db {
        Some(message_db) => {
            let measured = message_db.measure(writers, args.tenants, d).await?;
            print_ceiling(
                &format!("(4) Message DB write_message, {} cat.", args.tenants),
                &measured,
            );
            Some(measured.per_second)
        }
        None => None,
    };
    Ok(Rates {
        bare: bare.per_second,
        head: head.per_second,
        hot: hot.per_second,
        message_db,
    })
}

fn print_ceiling(name: &str, result: &Measured) {
    println!(
        "  {name:<40} {:>8.0} tx/s   p50 {} p99 {}",
        result.per_second,
        ms(result.latency.value_at_quantile(0.50)),
        ms(result.latency.value_at_quantile(0.99)),
    );
}

/// `writers` connections committing `kind` in a loop ([`measure`]).
async fn ceiling(
    pool: &PgPool,
    kind: CeilingKind,
    tenants: &[TenantId],
    writers: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    measure(pool, writers, duration, async |conn: &mut PgConnection| {
        let tenant = tenants[rand::rng().random_range(0..tenants.len())].as_uuid();
        let (stream, event, subject) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let statement = match kind {
            CeilingKind::BareInsert => sqlx::query(BARE_INSERT)
                .bind(tenant)
                .bind(stream)
                .bind(BARE_POSITION.fetch_add(1, Ordering::Relaxed))
                .bind(event)
                .bind(subject)
                .bind(subject),
            CeilingKind::InsertAndHead => sqlx::query(INSERT_AND_HEAD)
                .bind(tenant)
                .bind(stream)
                .bind(event)
                .bind(subject)
                .bind(subject),
        };
        statement.execute(conn).await?;
        Ok(())
    })
    .await
}

/// `writers` connections of `pool`, each calling `statement` in a loop (one transaction a
/// call) for a second of warm-up, then `duration` measured.
pub async fn measure(
    pool: &PgPool,
    writers: usize,
    duration: Duration,
    statement: impl AsyncFn(&mut PgConnection) -> anyhow::Result<()>,
) -> anyhow::Result<Measured> {
    let from = Instant::now() + Duration::from_secs(1);
    let to = from + duration;
    let statement = &statement;
    let tasks = (0..writers).map(|_| async move {
        let mut conn = pool.acquire().await?;
        let mut latency = common::latency_histogram();
        let mut count = 0u64;
        loop {
            let started = Instant::now();
            if started >= to {
                break;
            }
            statement(&mut conn).await?;
            if started >= from {
                count += 1;
                common::record_since(&mut latency, started);
            }
        }
        anyhow::Ok((count, latency))
    });
    let mut total = 0;
    let mut latency = common::latency_histogram();
    for result in futures_util::future::join_all(tasks).await {
        let (count, histogram) = result?;
        total += count;
        latency.add(&histogram)?;
    }
    Ok(Measured {
        per_second: total as f64 / duration.as_secs_f64(),
        latency,
    })
}
