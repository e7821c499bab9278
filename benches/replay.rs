//! Replay benchmark: seeds one tenant with N events by COPY (about N/5 enrollments over 50
//! courses and a year), then times, in the same run and on the same database:
//!   1. the STARTED→COMPLETED by COURSE duration report through the replay engine (direct, and
//!      through GraphQL in-process),
//!   2. the same report as one SQL query with percentile_cont (what a user would write),
//!   3. COPY (SELECT … ORDER BY position) TO STDOUT into nothing (the cost of reading rows out),
//!   4. a full projection rebuild for the tenant,
//!
//! It also reports the replay's peak heap, and prints the ratios the targets are stated in.
//! Each time is the median of `--runs` runs (an hdrhistogram of microseconds).
//!
//! Run: `cargo bench --bench replay -- --events 1000000` (default 1,000,000; `--runs 3`;
//! `--explain` prints the plans of the SQL report and of one replay page).

use anyhow::Context;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use clap::Parser;
use common::PrivateDatabase;
use coursetrail::app::{App, Caller};
use coursetrail::crypto::Keyring;
use coursetrail::domain::TenantId;
use coursetrail::graphql::{RequestContext, build_schema};
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::projections::rebuild::{self, RebuildReport};
use coursetrail::reports::LifecyclePoint;
use coursetrail::reports::duration::{DurationSpec, GroupBy};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use uuid::Uuid;

#[path = "common/mod.rs"]
mod common;

/// Counts live heap bytes and their peak, to measure the replay's memory exactly.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the heap it needed at its peak, above what was live.
async fn peak_heap<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

#[derive(Parser)]
#[command(about = "coursetrail replay benchmark")]
struct Args {
    /// Events seeded in the tenant (about one enrollment per five events).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Runs of each timed step; the median is printed.
    #[arg(long, default_value_t = 3,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    runs: usize,
    /// Print the SQL report's plan and a replay page's plan (EXPLAIN ANALYZE) first.
    #[arg(long)]
    explain: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One row of the COPY into `events`.
struct Row {
    at: DateTime<Utc>,
    stream: Uuid,
    version: i32,
    stream_type: &'static str,
    event_type: &'static str,
    data: String,
    trainee: Option<Uuid>,
    course: Option<Uuid>,
}

/// Courses in the generated year.
const COURSES: usize = 50;

/// A year of training: courses, trainees, and enrollments until `target` events exist, in
/// recording order.
fn generate(target: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let year_start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .expect("a valid date")
        .with_timezone(&Utc);
    let mut rows = Vec::with_capacity(target + 16);
    let courses = create_courses(&mut rows, year_start - Duration::days(30));
    let trainees = register_trainees(&mut rows, year_start - Duration::days(20), target);
    let mut enrollment = 0;
    while rows.len() < target {
        // Distinct (trainee, course) pairs: one active registration each, as the product allows.
        let mut stream = Enrollment {
            rows: &mut rows,
            stream: Uuid::now_v7(),
            version: 0,
            course: courses[enrollment % courses.len()],
            trainee: trainees[(enrollment / courses.len()) % trainees.len()],
        };
        enrollment += 1;
        let at = year_start + Duration::seconds(rng.random_range(0..365 * 86_400));
        stream.live(&mut rng, at);
    }
    // Positions follow recording time, as they would have.
    rows.sort_by_key(|r| r.at);
    rows
}

/// [`COURSES`] courses created at `at`.
fn create_courses(rows: &mut Vec<Row>, at: DateTime<Utc>) -> Vec<Uuid> {
    let courses: Vec<Uuid> = (0..COURSES).map(|_| Uuid::now_v7()).collect();
    for (n, course) in courses.iter().enumerate() {
        rows.push(Row {
            at,
            stream: *course,
            version: 1,
            stream_type: "course",
            event_type: "CourseCreated",
            data: format!(r#"{{"code":"COURSE-{n}","title":"Course {n}","passingScore":70}}"#),
            trainee: None,
            course: Some(*course),
        });
    }
    courses
}

/// One trainee per 50 events (at least 10), registered at `at`.
fn register_trainees(rows: &mut Vec<Row>, at: DateTime<Utc>, target: usize) -> Vec<Uuid> {
    let trainees: Vec<Uuid> = (0..(target / 50).max(10)).map(|_| Uuid::now_v7()).collect();
    for (n, trainee) in trainees.iter().enumerate() {
        rows.push(Row {
            at,
            stream: *trainee,
            version: 1,
            stream_type: "trainee",
            event_type: "TraineeRegistered",
            data: format!(r#"{{"email":"t{n}@example.com","name":"Trainee {n}"}}"#),
            trainee: Some(*trainee),
            course: None,
        });
    }
    trainees
}

/// One enrollment stream being written.
struct Enrollment<'a> {
    rows: &'a mut Vec<Row>,
    stream: Uuid,
    version: i32,
    course: Uuid,
    trainee: Uuid,
}

impl Enrollment<'_> {
    fn push(&mut self, at: DateTime<Utc>, event_type: &'static str, data: String) {
        self.version += 1;
        self.rows.push(Row {
            at,
            stream: self.stream,
            version: self.version,
            stream_type: "enrollment",
            event_type,
            data,
            trainee: Some(self.trainee),
            course: Some(self.course),
        });
    }

    /// Registered at `at`; then 4 % stop there, 8 % withdraw after starting, 3 % are still
    /// working, and the rest pass (one in ten at the second attempt) and complete.
    fn live(&mut self, rng: &mut StdRng, mut at: DateTime<Utc>) {
        let (course, trainee) = (self.course, self.trainee);
        self.push(
            at,
            "CourseRegistered",
            format!(r#"{{"courseId":"{course}","traineeId":"{trainee}"}}"#),
        );
        let fate = rng.random_range(0..100);
        if fate < 4 {
            return; // registered, not started yet
        }
        at += Duration::seconds(rng.random_range(600..7 * 86_400));
        self.push(at, "CourseStarted", "{}".into());
        if fate < 12 {
            at += Duration::seconds(rng.random_range(3600..20 * 86_400));
            self.push(
                at,
                "RegistrationWithdrawn",
                r#"{"reason":"changed team"}"#.into(),
            );
            return;
        }
        if fate < 15 {
            return; // started, still working on it
        }
        let attempts = if rng.random_range(0..10) == 0 { 2 } else { 1 };
        for attempt in 1..=attempts {
            at = self.attempt(rng, at, attempt == attempts);
        }
        at += Duration::seconds(rng.random_range(60..2 * 86_400));
        self.push(at, "CourseCompleted", "{}".into());
    }

    /// A submission after `at` and its grade (passed or not); returns when it was graded.
    fn attempt(&mut self, rng: &mut StdRng, mut at: DateTime<Utc>, passes: bool) -> DateTime<Utc> {
        let submission = Uuid::now_v7();
        at += Duration::seconds(rng.random_range(3600..30 * 86_400));
        self.push(
            at,
            "TestSubmitted",
            format!(r#"{{"submissionId":"{submission}","answers":{{"q1":"a","q2":"c"}}}}"#),
        );
        at += Duration::seconds(rng.random_range(600..3 * 86_400));
        let (score, passed) = if passes { (85, true) } else { (40, false) };
        self.push(
            at,
            "TestGraded",
            format!(r#"{{"submissionId":"{submission}","score":{score},"passed":{passed}}}"#),
        );
        at
    }
}

/// COPYs `rows` into the tenant's log at positions 1…n, sets its head, and analyses.
async fn seed(pool: &PgPool, tenant: TenantId, rows: &[Row]) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY events (tenant_id, stream_id, version, position, event_id, stream_type, event_type, \
             schema_version, data, recorded_at, actor_id, actor_role, correlation_id, trainee_id, course_id) FROM STDIN",
        )
        .await?;
    let actor = Uuid::now_v7();
    let opt = |id: Option<Uuid>| id.map_or("\\N".to_string(), |id| id.to_string());
    let mut buffer = String::with_capacity(1 << 20);
    for (i, row) in rows.iter().enumerate() {
        buffer.push_str(&format!(
            "{tenant}\t{}\t{}\t{}\t{}\t{}\t{}\t1\t{}\t{}\t{actor}\tadmin\t{}\t{}\t{}\n",
            row.stream,
            row.version,
            i + 1,
            Uuid::now_v7(),
            row.stream_type,
            row.event_type,
            row.data.replace('\\', "\\\\"),
            row.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            Uuid::now_v7(),
            opt(row.trainee),
            opt(row.course),
        ));
        if buffer.len() > (1 << 20) {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await?;
    copy.finish().await?;
    sqlx::query("UPDATE tenant_heads SET last_position = $2 WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .bind(rows.len() as i64)
        .execute(&mut *conn)
        .await?;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const SQL_REPORT: &str = "WITH spans AS ( \
      SELECT course_id, \
             min(recorded_at) FILTER (WHERE event_type = 'CourseStarted') AS started, \
             min(recorded_at) FILTER (WHERE event_type = 'CourseCompleted') AS completed \
      FROM events WHERE tenant_id = $1 AND event_type IN ('CourseStarted', 'CourseCompleted') \
      GROUP BY stream_id, course_id), \
    d AS (SELECT course_id, extract(epoch FROM completed - started)::float8 AS s FROM spans \
          WHERE started IS NOT NULL AND completed IS NOT NULL) \
    SELECT course_id, count(*), avg(s), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), \
           percentile_cont(0.75) WITHIN GROUP (ORDER BY s), percentile_cont(0.9) WITHIN GROUP (ORDER BY s), \
           min(s), max(s) FROM d GROUP BY course_id";

/// The median wall time of `runs` runs of `f`, in milliseconds, with the last run's output.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> (f64, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    // A rebuild of millions of events may take minutes: up to an hour.
    let mut times = common::histogram_up_to(std::time::Duration::from_secs(3600));
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(f().await);
        common::record_since(&mut times, started);
    }
    let median = common::millis(times.value_at_quantile(0.5));
    (median, last.expect("at least one run"))
}

/// Bytes of `COPY (…) TO STDOUT`, read and discarded.
async fn copy_out(pool: &PgPool, sql: String) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await?;
    let mut stream = conn.copy_out_raw(&sql).await?;
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len();
    }
    Ok(bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("starting a private PostgreSQL cluster…");
    let database = PrivateDatabase::start(PrivateCluster::TEST_SETTINGS, "bench", 8).await?;
    let pool = &database.pool;
    let tenant = common::new_tenant(pool, "bench").await?;

    let started = Instant::now();
    let rows = generate(args.events);
    let enrollments = rows
        .iter()
        .filter(|r| r.event_type == "CourseRegistered")
        .count();
    seed(pool, tenant, &rows).await?;
    drop(rows);
    eprintln!(
        "seeded {} events ({enrollments} enrollments, {COURSES} courses) in {:.1} s",
        args.events,
        started.elapsed().as_secs_f64()
    );
    if args.explain {
        explain(pool, tenant).await?;
    }
    let figures = measure(&args, &database, tenant).await?;
    print(&args, enrollments, &figures);
    database.stop().await
}

/// The SQL report's plan and one replay page's, with the events partitions' visibility.
async fn explain(pool: &PgPool, tenant: TenantId) -> anyhow::Result<()> {
    let visible: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT relname::text, relpages, relallvisible FROM pg_class WHERE relname LIKE 'events_p%' AND relpages > 0",
    )
    .fetch_all(pool)
    .await?;
    println!("pages / all-visible: {visible:?}");
    for sql in [
        format!(
            "EXPLAIN (ANALYZE, BUFFERS) {}",
            SQL_REPORT.replace("$1", &format!("'{tenant}'"))
        ),
        format!(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM ( \
             (SELECT position, stream_id, recorded_at, course_id FROM events WHERE tenant_id = '{tenant}' AND event_type = 'CourseStarted' AND position > 0 ORDER BY position LIMIT 10000) UNION ALL \
             (SELECT position, stream_id, recorded_at, course_id FROM events WHERE tenant_id = '{tenant}' AND event_type = 'CourseCompleted' AND position > 0 ORDER BY position LIMIT 10000)) p \
             ORDER BY position LIMIT 10000"
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(pool).await?;
        println!("{}\n", plan.join("\n"));
    }
    Ok(())
}

/// What the benchmark measured: medians in milliseconds, peaks in bytes.
struct Figures {
    events_replayed: u64,
    replay_ms: f64,
    graphql_ms: f64,
    sql_ms: f64,
    copy_all_ms: f64,
    copy_all_bytes: usize,
    copy_needed_ms: f64,
    rebuild_ms: f64,
    rebuilt: RebuildReport,
    replay_heap: usize,
    funnel_heap: usize,
    funnel_courses: usize,
    rebuild_heap: usize,
}

/// The duration report by replay (direct and via GraphQL), as one SQL query, the COPY
/// read-outs, the rebuild, and the replays' peak heaps.
async fn measure(
    args: &Args,
    database: &PrivateDatabase,
    tenant: TenantId,
) -> anyhow::Result<Figures> {
    let pool = &database.pool;
    let app = App::new(pool.clone());
    let caller = Caller::operator(tenant);
    let spec = DurationSpec::new(
        LifecyclePoint::Started,
        LifecyclePoint::Completed,
        GroupBy::Course,
    )
    .map_err(|e| anyhow::anyhow!(e))?;

    // Warm the cache once, then measure.
    app.reads()
        .duration_report(&caller, spec, None, None, |_| {})
        .await
        .context("the duration report")?;
    let (replay_ms, report) = time(args.runs, || {
        app.reads()
            .duration_report(&caller, spec, None, None, |_| {})
    })
    .await;
    let report = report.context("the duration report")?;
    let graphql_ms = time_graphql(args, &app, &caller).await?;
    let (sql_ms, sql_groups) = time_sql_report(args, database, tenant).await?;
    anyhow::ensure!(
        sql_groups == report.rows.len(),
        "SQL and replay disagree on the groups: {sql_groups} and {}",
        report.rows.len()
    );
    let (copy_all_ms, copy_all_bytes, copy_needed_ms) = time_copies(args, pool, tenant).await?;

    let (report_again, replay_heap) =
        peak_heap(
            app.reads()
                .duration_report(&caller, spec, None, None, |_| {}),
        )
        .await;
    anyhow::ensure!(report_again?.rows == report.rows, "a second replay differs");
    let (funnel, funnel_heap) =
        peak_heap(app.reads().funnel_report(&caller, None, None, |_| {})).await;
    let funnel = funnel.context("the funnel report")?;
    let keys = Keyring::unwrapped();
    let mut loader = pool.acquire().await?;
    let started = Instant::now();
    let rebuilt = rebuild::rebuild_tenant(pool, &mut loader, &keys, tenant, |_| {}).await;
    let rebuild_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rebuilt = rebuilt.context("the rebuild")?;
    let (again, rebuild_heap) = peak_heap(rebuild::rebuild_tenant(
        pool,
        &mut loader,
        &keys,
        tenant,
        |_| {},
    ))
    .await;
    again.context("the second rebuild")?;
    Ok(Figures {
        events_replayed: report.events_replayed,
        replay_ms,
        graphql_ms,
        sql_ms,
        copy_all_ms,
        copy_all_bytes,
        copy_needed_ms,
        rebuild_ms,
        rebuilt,
        replay_heap,
        funnel_heap,
        funnel_courses: funnel.rows.len(),
        rebuild_heap,
    })
}

/// The duration report through GraphQL, in-process (no HTTP).
async fn time_graphql(args: &Args, app: &App, caller: &Caller) -> anyhow::Result<f64> {
    let schema = build_schema(app.clone());
    let query = "{ durationReport(input: {from: STARTED, to: COMPLETED, groupBy: COURSE}) { eventsReplayed rows { group count durations { medianSeconds p90Seconds } } } }";
    let (graphql_ms, response) = time(args.runs, || {
        let context = RequestContext::new(app, Some(caller.clone()), Uuid::now_v7());
        let request = async_graphql::Request::new(query).data(context);
        schema.execute(request)
    })
    .await;
    anyhow::ensure!(response.errors.is_empty(), "{:?}", response.errors);
    Ok(graphql_ms)
}

/// The report as one SQL query; returns its time and its number of groups.
///
/// The baseline is what a user's own query gets: PostgreSQL's default plan choice (custom
/// plans for a statement's first executions), not the server's forced generic plans.
async fn time_sql_report(
    args: &Args,
    database: &PrivateDatabase,
    tenant: TenantId,
) -> anyhow::Result<(f64, usize)> {
    let user_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            database
                .url
                .parse::<sqlx::postgres::PgConnectOptions>()?
                .options([("plan_cache_mode", "auto")]),
        )
        .await?;
    let (sql_ms, sql_rows) = time(args.runs, || {
        sqlx::query(SQL_REPORT)
            .bind(tenant.as_uuid())
            .fetch_all(&user_pool)
    })
    .await;
    let groups = sql_rows?.len();
    user_pool.close().await;
    Ok((sql_ms, groups))
}

/// COPY of every column of every event, and of the columns and types the report needs:
/// `(all ms, all bytes, needed ms)`.
async fn time_copies(
    args: &Args,
    pool: &PgPool,
    tenant: TenantId,
) -> anyhow::Result<(f64, usize, f64)> {
    let copy_all = format!(
        "COPY (SELECT * FROM events WHERE tenant_id = '{tenant}' ORDER BY position) TO STDOUT"
    );
    let (copy_all_ms, copy_all_bytes) = time(args.runs, || copy_out(pool, copy_all.clone())).await;
    let copy_needed = format!(
        "COPY (SELECT position, stream_id, event_type, recorded_at, course_id FROM events \
         WHERE tenant_id = '{tenant}' AND event_type IN ('CourseStarted', 'CourseCompleted', 'RegistrationWithdrawn') \
         ORDER BY position) TO STDOUT"
    );
    let (copy_needed_ms, needed) = time(args.runs, || copy_out(pool, copy_needed.clone())).await;
    needed?;
    Ok((copy_all_ms, copy_all_bytes?, copy_needed_ms))
}

fn print(args: &Args, enrollments: usize, f: &Figures) {
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "replay benchmark: {} events, {enrollments} enrollments, {COURSES} courses (median of {} runs)",
        args.events, args.runs
    );
    println!(
        "  events replayed by the report      {:>10}",
        f.events_replayed
    );
    println!(
        "  1. durationReport, replay (direct)  {:>9.1} ms",
        f.replay_ms
    );
    println!(
        "  1. durationReport, via GraphQL      {:>9.1} ms",
        f.graphql_ms
    );
    println!("  2. same report as one SQL query     {:>9.1} ms", f.sql_ms);
    println!(
        "  3. COPY all columns, all events     {:>9.1} ms  ({:.0} MiB)",
        f.copy_all_ms,
        mib(f.copy_all_bytes)
    );
    println!(
        "  3'. COPY the columns/types needed   {:>9.1} ms",
        f.copy_needed_ms
    );
    println!(
        "  4. projection rebuild               {:>9.1} ms  ({} enrollments, {} submissions)",
        f.rebuild_ms, f.rebuilt.enrollments, f.rebuilt.submissions
    );
    println!(
        "  peak heap: duration report {:.1} MiB, funnel report {:.1} MiB ({} courses), rebuild {:.1} MiB",
        mib(f.replay_heap),
        mib(f.funnel_heap),
        f.funnel_courses,
        mib(f.rebuild_heap)
    );
    println!("ratios (target):");
    let ratios = [
        (
            "replay / SQL query           ",
            f.replay_ms / f.sql_ms,
            "  (<= 1.0)",
        ),
        (
            "replay / COPY read-out       ",
            f.replay_ms / f.copy_all_ms,
            "  (<= 1.5)",
        ),
        (
            "replay / COPY of needed rows ",
            f.replay_ms / f.copy_needed_ms,
            "",
        ),
        (
            "GraphQL / direct             ",
            f.graphql_ms / f.replay_ms,
            "",
        ),
        (
            "rebuild / COPY read-out      ",
            f.rebuild_ms / f.copy_all_ms,
            "  (<= 2.0)",
        ),
    ];
    for (name, ratio, target) in ratios {
        println!("  {name} {ratio:.2}{target}");
    }
    println!(
        "  replay heap                   {:.1} MiB (< 200 MiB)",
        mib(f.replay_heap)
    );
    println!(
        "  rebuild heap                  {:.1} MiB (<= 100 MiB)",
        mib(f.rebuild_heap)
    );
}
