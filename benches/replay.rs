//! Replay benchmark: seeds one tenant with N events by COPY (about N/5 enrollments over 50
//! courses and a year), then times, in the same run and on the same database:
//!   1. the STARTED→COMPLETED by COURSE duration report through the replay engine (direct, and
//!      through GraphQL in-process),
//!   2. the same report as one SQL query with percentile_cont (what a user would write),
//!   3. COPY (SELECT … ORDER BY position) TO STDOUT into nothing (the cost of reading rows out),
//!   4. a full projection rebuild for the tenant,
//!
//! It also reports the replay's peak heap, and prints the ratios the targets are stated in.
//!
//! Run: `cargo bench --bench replay -- --events 1000000` (default 1,000,000; `--runs 3`).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use coursetrail::app::{App, Caller};
use coursetrail::domain::TenantId;
use coursetrail::graphql::{RequestContext, build_schema};
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::projections::rebuild;
use coursetrail::reports::LifecyclePoint;
use coursetrail::reports::duration::{DurationSpec, GroupBy};
use coursetrail::{db, store};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use uuid::Uuid;

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

struct Args {
    events: usize,
    runs: usize,
    explain: bool,
}

fn args() -> Args {
    let mut args = Args {
        events: 1_000_000,
        runs: 3,
        explain: false,
    };
    let raw: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < raw.len() {
        match raw[i].as_str() {
            "--events" => {
                args.events = raw
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(args.events)
            }
            "--runs" => {
                args.runs = raw
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(args.runs)
            }
            "--explain" => args.explain = true,
            _ => {}
        }
        i += 1;
    }
    args
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

/// A year of training: courses, trainees, and enrollments until `target` events exist.
fn generate(target: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let year_start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut rows = Vec::with_capacity(target + 16);
    let courses: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    for (n, course) in courses.iter().enumerate() {
        rows.push(Row {
            at: year_start - Duration::days(30),
            stream: *course,
            version: 1,
            stream_type: "course",
            event_type: "CourseCreated",
            data: format!(r#"{{"code":"COURSE-{n}","title":"Course {n}","passingScore":70}}"#),
            trainee: None,
            course: Some(*course),
        });
    }
    let trainees: Vec<Uuid> = (0..(target / 50).max(10)).map(|_| Uuid::now_v7()).collect();
    for (n, trainee) in trainees.iter().enumerate() {
        rows.push(Row {
            at: year_start - Duration::days(20),
            stream: *trainee,
            version: 1,
            stream_type: "trainee",
            event_type: "TraineeRegistered",
            data: format!(r#"{{"email":"t{n}@example.com","name":"Trainee {n}"}}"#),
            trainee: Some(*trainee),
            course: None,
        });
    }
    let mut enrollment = 0;
    while rows.len() < target {
        // Distinct (trainee, course) pairs: one active registration each, as the product allows.
        let stream = Uuid::now_v7();
        let course = courses[enrollment % courses.len()];
        let trainee = trainees[(enrollment / courses.len()) % trainees.len()];
        enrollment += 1;
        let mut at = year_start + Duration::seconds(rng.random_range(0..365 * 86_400));
        let mut version = 0;
        let mut push =
            |rows: &mut Vec<Row>, at: DateTime<Utc>, event_type: &'static str, data: String| {
                version += 1;
                rows.push(Row {
                    at,
                    stream,
                    version,
                    stream_type: "enrollment",
                    event_type,
                    data,
                    trainee: Some(trainee),
                    course: Some(course),
                });
            };
        push(
            &mut rows,
            at,
            "CourseRegistered",
            format!(r#"{{"courseId":"{course}","traineeId":"{trainee}"}}"#),
        );
        let fate = rng.random_range(0..100);
        if fate < 4 {
            continue; // registered, not started yet
        }
        at += Duration::seconds(rng.random_range(600..7 * 86_400));
        push(&mut rows, at, "CourseStarted", "{}".into());
        if fate < 12 {
            at += Duration::seconds(rng.random_range(3600..20 * 86_400));
            push(
                &mut rows,
                at,
                "RegistrationWithdrawn",
                r#"{"reason":"changed team"}"#.into(),
            );
            continue;
        }
        if fate < 15 {
            continue; // started, still working on it
        }
        let attempts = if rng.random_range(0..10) == 0 { 2 } else { 1 };
        for attempt in 1..=attempts {
            let submission = Uuid::now_v7();
            at += Duration::seconds(rng.random_range(3600..30 * 86_400));
            push(
                &mut rows,
                at,
                "TestSubmitted",
                format!(r#"{{"submissionId":"{submission}","answers":{{"q1":"a","q2":"c"}}}}"#),
            );
            at += Duration::seconds(rng.random_range(600..3 * 86_400));
            let (score, passed) = if attempt == attempts {
                (85, true)
            } else {
                (40, false)
            };
            push(
                &mut rows,
                at,
                "TestGraded",
                format!(r#"{{"submissionId":"{submission}","score":{score},"passed":{passed}}}"#),
            );
        }
        at += Duration::seconds(rng.random_range(60..2 * 86_400));
        push(&mut rows, at, "CourseCompleted", "{}".into());
    }
    // Positions follow recording time, as they would have.
    rows.sort_by_key(|r| r.at);
    rows
}

async fn seed(pool: &PgPool, tenant: TenantId, rows: &[Row]) {
    let mut conn = pool.acquire().await.unwrap();
    let mut copy = conn
        .copy_in_raw(
            "COPY events (tenant_id, stream_id, version, position, event_id, stream_type, event_type, \
             schema_version, data, recorded_at, actor_id, actor_role, correlation_id, trainee_id, course_id) FROM STDIN",
        )
        .await
        .unwrap();
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
            copy.send(buffer.as_bytes()).await.unwrap();
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    sqlx::query("UPDATE tenant_heads SET last_position = $2 WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .bind(rows.len() as i64)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE events")
        .execute(&mut *conn)
        .await
        .unwrap();
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

/// Median wall time of `runs` runs of `f`, in milliseconds.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> (f64, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(f().await);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.expect("at least one run"))
}

async fn copy_out(pool: &PgPool, sql: String) -> usize {
    let mut conn = pool.acquire().await.unwrap();
    let mut stream = conn.copy_out_raw(&sql).await.unwrap();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    bytes
}

#[tokio::main]
async fn main() {
    let args = args();
    eprintln!("starting a private PostgreSQL cluster…");
    let cluster = PrivateCluster::start_ephemeral().await.expect("cluster");
    let admin = db::connect(&cluster.url("postgres"), 1).await.unwrap();
    db::create_database_if_missing(&admin, "bench")
        .await
        .unwrap();
    admin.close().await;
    let pool = db::connect(&cluster.url("bench"), 8).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let tenant = {
        let mut tx = pool.begin().await.unwrap();
        let tenant = store::create_tenant(&mut tx, "bench").await.unwrap();
        tx.commit().await.unwrap();
        tenant
    };

    let started = Instant::now();
    let rows = generate(args.events);
    let enrollments = rows
        .iter()
        .filter(|r| r.event_type == "CourseRegistered")
        .count();
    seed(&pool, tenant, &rows).await;
    drop(rows);
    eprintln!(
        "seeded {} events ({enrollments} enrollments, 50 courses) in {:.1} s",
        args.events,
        started.elapsed().as_secs_f64()
    );

    let app = App::new(pool.clone());
    let caller = Caller::operator(tenant);
    let spec = DurationSpec::new(
        LifecyclePoint::Started,
        LifecyclePoint::Completed,
        GroupBy::Course,
    )
    .unwrap();

    if args.explain {
        let visible: Vec<(String, i32, i32)> = sqlx::query_as(
            "SELECT relname::text, relpages, relallvisible FROM pg_class WHERE relname LIKE 'events_p%' AND relpages > 0",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
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
            let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&pool).await.unwrap();
            println!("{}\n", plan.join("\n"));
        }
    }

    // Warm the cache once, then measure.
    let _ = app
        .duration_report(&caller, spec, None, None, |_| {})
        .await
        .unwrap();

    let (replay_ms, report) = time(args.runs, || {
        app.duration_report(&caller, spec, None, None, |_| {})
    })
    .await;
    let report = report.unwrap();
    let schema = build_schema(app.clone());
    let query = "{ durationReport(input: {from: STARTED, to: COMPLETED, groupBy: COURSE}) { eventsReplayed rows { group count durations { medianSeconds p90Seconds } } } }";
    let (graphql_ms, response) = time(args.runs, || {
        let context = RequestContext::new(&app, Some(caller.clone()), Uuid::now_v7());
        let request = async_graphql::Request::new(query).data(context);
        schema.execute(request)
    })
    .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    // The baseline is what a user's own query gets: PostgreSQL's default plan choice (custom
    // plans for a statement's first executions), not the server's forced generic plans.
    let user_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            cluster
                .url("bench")
                .parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .options([("plan_cache_mode", "auto")]),
        )
        .await
        .unwrap();
    let (sql_ms, sql_rows) = time(args.runs, || {
        sqlx::query(SQL_REPORT)
            .bind(tenant.as_uuid())
            .fetch_all(&user_pool)
    })
    .await;
    let sql_rows = sql_rows.unwrap();
    assert_eq!(
        sql_rows.len(),
        report.rows.len(),
        "SQL and replay agree on the groups"
    );
    let copy_all = format!(
        "COPY (SELECT * FROM events WHERE tenant_id = '{tenant}' ORDER BY position) TO STDOUT"
    );
    let (copy_all_ms, copy_all_bytes) = time(args.runs, || copy_out(&pool, copy_all.clone())).await;
    let copy_needed = format!(
        "COPY (SELECT position, stream_id, event_type, recorded_at, course_id FROM events \
         WHERE tenant_id = '{tenant}' AND event_type IN ('CourseStarted', 'CourseCompleted', 'RegistrationWithdrawn') \
         ORDER BY position) TO STDOUT"
    );
    let (copy_needed_ms, _) = time(args.runs, || copy_out(&pool, copy_needed.clone())).await;
    let (report_again, replay_heap) =
        peak_heap(app.duration_report(&caller, spec, None, None, |_| {})).await;
    assert_eq!(report_again.unwrap().rows, report.rows);
    let (funnel, funnel_heap) = peak_heap(app.funnel_report(&caller, None, None, |_| {})).await;
    let funnel = funnel.unwrap();
    let (rebuild_ms, rebuilt) = time(1, || rebuild::rebuild_tenant(&pool, tenant, |_| {})).await;
    let rebuilt = rebuilt.unwrap();
    let (_, rebuild_heap) = peak_heap(rebuild::rebuild_tenant(&pool, tenant, |_| {})).await;

    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "replay benchmark: {} events, {enrollments} enrollments, 50 courses (median of {} runs)",
        args.events, args.runs
    );
    println!(
        "  events replayed by the report      {:>10}",
        report.events_replayed
    );
    println!("  1. durationReport, replay (direct)  {replay_ms:>9.1} ms");
    println!("  1. durationReport, via GraphQL      {graphql_ms:>9.1} ms");
    println!("  2. same report as one SQL query     {sql_ms:>9.1} ms");
    println!(
        "  3. COPY all columns, all events     {copy_all_ms:>9.1} ms  ({:.0} MiB)",
        mib(copy_all_bytes)
    );
    println!("  3'. COPY the columns/types needed   {copy_needed_ms:>9.1} ms");
    println!(
        "  4. projection rebuild               {rebuild_ms:>9.1} ms  ({} enrollments, {} submissions)",
        rebuilt.enrollments, rebuilt.submissions
    );
    println!(
        "  peak heap: duration report {:.1} MiB, funnel report {:.1} MiB ({} courses), rebuild {:.1} MiB",
        mib(replay_heap),
        mib(funnel_heap),
        funnel.rows.len(),
        mib(rebuild_heap)
    );
    println!("ratios (target):");
    println!(
        "  replay / SQL query            {:.2}  (<= 1.0)",
        replay_ms / sql_ms
    );
    println!(
        "  replay / COPY read-out        {:.2}  (<= 1.5)",
        replay_ms / copy_all_ms
    );
    println!(
        "  replay / COPY of needed rows  {:.2}",
        replay_ms / copy_needed_ms
    );
    println!(
        "  GraphQL / direct              {:.2}",
        graphql_ms / replay_ms
    );
    println!(
        "  rebuild / COPY read-out       {:.2}  (<= 3.0)",
        rebuild_ms / copy_all_ms
    );
    println!(
        "  replay heap                   {:.1} MiB (< 200 MiB)",
        mib(replay_heap)
    );

    pool.close().await;
    cluster.stop().await.unwrap();
}
