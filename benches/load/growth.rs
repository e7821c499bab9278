//! The growth check (`--growth`): append latency with N events already stored, for each N.
//! The log is seeded by SQL over 100 tenants, and the appends (the real `store::append_with`,
//! one per transaction, one writer) go to one of them: a tenant's write must not slow down as
//! the whole log grows.

use super::Args;
use super::common::{self, ms};
use super::env::Environment;
use coursetrail::auth::Role;
use coursetrail::domain::events::CourseStarted;
use coursetrail::domain::{Event, StreamType, TenantId};
use coursetrail::projections::ProjectionWrite;
use coursetrail::store::{self, Append, Metadata};
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::PgPool;
use std::time::Instant;
use uuid::Uuid;

/// Tenants the seeded events are spread over.
const TENANTS: usize = 100;
/// Appends before the timed ones: they warm the connection's statement cache and the index
/// pages.
const WARM_UP_APPENDS: usize = 200;

pub async fn growth_check(args: &Args, env: &Environment) -> anyhow::Result<()> {
    let mut sizes = args.growth.clone();
    sizes.sort_unstable();
    println!(
        "coursetrail growth check: append latency at {:?} stored events",
        sizes
    );
    println!("  database: {}", env.durability);
    let tenants = common::new_tenants(&env.pool, TENANTS, "growth").await?;
    let target = tenants[0];
    let mut seeded: u64 = 0;
    let mut results: Vec<(u64, Histogram<u64>)> = Vec::new();
    for &size in &sizes {
        if size > seeded {
            let started = Instant::now();
            let per_tenant = (size - seeded).div_ceil(TENANTS as u64);
            common::seed::seed_events(&env.pool, &tenants, per_tenant).await?;
            common::seed::vacuum_and_checkpoint(&env.pool).await?;
            seeded += per_tenant * TENANTS as u64;
            println!(
                "  seeded to {seeded} events in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let latency = time_appends(&env.pool, target, args.growth_samples).await?;
        println!(
            "  {size:>11} events: append p50 {} p90 {} p99 {} ({} appends)",
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.90)),
            ms(latency.value_at_quantile(0.99)),
            latency.len()
        );
        results.push((size, latency));
    }
    if let (Some((small, first)), Some((large, last))) = (results.first(), results.last()) {
        let ratio = last.value_at_quantile(0.5) as f64 / first.value_at_quantile(0.5).max(1) as f64;
        println!("ratio: p50 at {large} ÷ p50 at {small} = {ratio:.2} (target ≤ 1.30)");
    }
    Ok(())
}

/// Times `samples` appends of a new one-event stream to `tenant`, after the warm-up ones.
async fn time_appends(
    pool: &PgPool,
    tenant: TenantId,
    samples: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = common::latency_histogram();
    let events = [Event::CourseStarted(CourseStarted {})];
    // Not personal: sealed with no key, its place unused.
    let place = store::personal::Place {
        tenant,
        stream_id: Uuid::nil(),
        version: 1,
    };
    let stored = [store::personal::seal(&events[0], None, place)?];
    let result = json!({});
    for i in 0..samples + WARM_UP_APPENDS {
        let metadata = Metadata {
            actor_id: Uuid::now_v7(),
            actor_role: Role::Trainee,
            command_id: Some(Uuid::now_v7()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        };
        let started = Instant::now();
        let mut conn = pool.acquire().await?;
        store::append_with(
            &mut conn,
            tenant,
            Append {
                stream_id: Uuid::now_v7(),
                stream_type: StreamType::Enrollment,
                expected_version: 0,
                events: &events,
                stored: &stored,
                recorded_at: chrono::Utc::now(),
                metadata: &metadata,
                trainee_id: Some(metadata.actor_id),
                course_id: None,
                command: Some(("startCourse", &result)),
                data_key: None,
            },
            ProjectionWrite::Nothing,
        )
        .await?;
        if i >= WARM_UP_APPENDS {
            common::record_since(&mut latency, started);
        }
    }
    Ok(latency)
}
