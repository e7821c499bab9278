//! What only a Citus cluster can show: every write runs on the tenant's worker alone, and the
//! cluster can be reshaped (a worker added and shards rebalanced, a busy tenant's shards
//! moved) while commands flow. On plain PostgreSQL there are no workers or shards, so these
//! tests return at once there; CI runs the suite on Citus as well, where they run in full.

use crate::helpers::{TestApp, caller, citus, course_through, submit_through};
use coursetrail::app::{App, AppSettings, Caller, CommandOptions};
use coursetrail::auth::Role;
use coursetrail::citus::{LocalCitus, database_url, host_and_port};
use coursetrail::db;
use coursetrail::domain::values::{Email, PersonName, Score};
use coursetrail::domain::{EnrollmentId, TenantId, TraineeId};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Waits until the tenant's writers have committed another 20 events.
async fn writes_flow(test: &TestApp, tenant: TenantId) {
    let from = test.head(tenant).await;
    crate::wait::eventually(Duration::from_secs(30), "writes flow", async || {
        test.head(tenant).await >= from + 20
    })
    .await;
}

/// The worker holding a tenant's shards (all co-located), as its `postgres` URL.
async fn owner_of(pool: &PgPool, nodes: &LocalCitus, tenant: TenantId) -> String {
    let port: i32 = sqlx::query_scalar(
        "SELECT nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) \
         WHERE p.shardid = get_shard_id_for_distribution_column('events', $1)",
    )
    .bind(tenant.as_uuid())
    .fetch_one(pool)
    .await
    .unwrap();
    nodes
        .workers
        .iter()
        .find(|w| host_and_port(w).unwrap().1 == port)
        .expect("the owner is one of the workers")
        .clone()
}

/// The statements a worker ran for one database, from `pg_stat_statements` (top-level
/// statements only: what the coordinator sent), since the last [`reset`].
struct Statements {
    worker: PgPool,
    database: String,
}

impl Statements {
    async fn new(worker_url: &str, database: &str) -> Self {
        Self {
            worker: db::connect(worker_url, 1).await.unwrap(),
            database: database.to_owned(),
        }
    }

    async fn reset(&self) {
        sqlx::query(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = $1), 0)",
        )
        .bind(&self.database)
        .execute(&self.worker)
        .await
        .unwrap();
    }

    /// `(query, calls)` of the statements run on the database's shards and functions, and of
    /// two-phase commits (the maintenance daemon's own queries left out).
    async fn ran(&self) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT query, calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) \
             AND (query ~ '(events|tenant_heads|commands|courses|trainees|enrollments|submissions)_[0-9]+' \
                  OR query ~* 'coursetrail_' OR query ~* '(PREPARE TRANSACTION|COMMIT PREPARED)') \
             ORDER BY query",
        )
        .bind(&self.database)
        .fetch_all(&self.worker)
        .await
        .unwrap()
    }
}

impl Statements {
    /// `(query, calls)` of the statements that named a projection table, by its own name or
    /// its shard's, and of two-phase commits.
    async fn ran_on_projections(&self) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT query, calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) \
             AND (query ~* '(courses|trainees|enrollments|submissions)' \
                  OR query ~* '(PREPARE TRANSACTION|COMMIT PREPARED)') \
             ORDER BY query",
        )
        .bind(&self.database)
        .fetch_all(&self.worker)
        .await
        .unwrap()
    }
}

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// Runs one write shape and checks what the workers ran for it: on the owner, `expected` calls
/// of `function` and otherwise only reads; on the other worker, nothing; no two-phase commit.
async fn check_shape<F: std::future::Future<Output = ()>>(
    owner: &Statements,
    other: &Statements,
    shape: &str,
    (function, expected): (&str, i64),
    run: F,
) {
    owner.reset().await;
    other.reset().await;
    run.await;
    let on_owner = owner.ran().await;
    let on_other = other.ran().await;
    assert!(
        on_other.is_empty(),
        "{shape}: the other worker ran {on_other:?}"
    );
    let calls: i64 = on_owner
        .iter()
        .filter(|(query, _)| query.contains(function))
        .map(|(_, calls)| calls)
        .sum();
    assert_eq!(
        calls, expected,
        "{shape}: calls of {function}: {on_owner:?}"
    );
    assert_only_calls_and_reads(shape, &on_owner);
}

/// The statements a worker ran are all `SELECT`s: the delegated calls and reads. A write the
/// coordinator ran itself would show as the shard's `INSERT`/`UPDATE`, a two-phase commit as
/// `PREPARE TRANSACTION`.
fn assert_only_calls_and_reads(shape: &str, ran: &[(String, i64)]) {
    for (query, _) in ran {
        let statement = query.trim_start().to_ascii_uppercase();
        assert!(
            statement.starts_with("SELECT") && !statement.contains("PREPARE"),
            "{shape}: the owner ran more than calls and reads: {query}"
        );
    }
}

/// The statements each worker ran for one database: the tenant's owner and the other one.
struct Workers {
    owner: Statements,
    other: Statements,
}

impl Workers {
    async fn of(test: &TestApp, nodes: &LocalCitus) -> Self {
        let database = database_name(&test.database_url);
        let owner_url = owner_of(&test.pool, nodes, test.tenant).await;
        let other_url = nodes.workers.iter().find(|w| **w != owner_url).unwrap();
        Self {
            owner: Statements::new(&owner_url, &database).await,
            other: Statements::new(other_url, &database).await,
        }
    }

    /// [`check_shape`] on these workers.
    async fn check<F: std::future::Future<Output = ()>>(
        &self,
        shape: &str,
        calls: (&str, i64),
        run: F,
    ) {
        check_shape(&self.owner, &self.other, shape, calls, run).await;
    }
}

const APPEND: (&str, i64) = ("coursetrail_append", 1);

impl Workers {
    /// A rebuild reads and loads the tenant's shards on its owner alone, in a transaction that
    /// commits there without two-phase commit: its deletes and COPYs run on the owner.
    async fn check_rebuild(&self, app: &App, admin: &Caller) {
        self.owner.reset().await;
        self.other.reset().await;
        app.reads()
            .rebuild_projections(admin, |_| {})
            .await
            .unwrap();
        let on_other = self.other.ran().await;
        assert!(
            on_other.is_empty(),
            "rebuild: the other worker ran {on_other:?}"
        );
        let on_owner = self.owner.ran_on_projections().await;
        let ran = |prefix: &str| {
            on_owner
                .iter()
                .any(|(query, _)| query.trim_start().to_ascii_uppercase().starts_with(prefix))
        };
        assert!(
            ran("DELETE FROM"),
            "rebuild: no delete on the owner: {on_owner:?}"
        );
        assert!(ran("COPY"), "rebuild: no COPY on the owner: {on_owner:?}");
        assert!(
            !on_owner
                .iter()
                .any(|(query, _)| query.to_ascii_uppercase().contains("PREPARE")),
            "rebuild: a two-phase commit on the owner: {on_owner:?}"
        );
    }
}

fn with_id() -> CommandOptions {
    CommandOptions {
        command_id: Some(Uuid::now_v7()),
        ..Default::default()
    }
}

/// Every write of an enrollment's lifecycle, from its course's creation to its completion, is
/// one append on the owner; returns the trainee it registered.
async fn check_lifecycle_shapes(workers: &Workers, app: &App, admin: &Caller) -> TraineeId {
    let none = CommandOptions::default();
    let mut course = None;
    workers
        .check("createCourse", APPEND, async {
            course = Some(course_through(app, admin, "SHAPE").await);
        })
        .await;
    let course = course.unwrap();
    let trainee = TraineeId::from_uuid(Uuid::now_v7());
    workers
        .check("registerTrainee", APPEND, async {
            app.commands()
                .register_trainee(
                    admin,
                    &with_id(),
                    Email::parse("shape@example.com").unwrap(),
                    PersonName::parse("Shape").unwrap(),
                    Some(trainee),
                )
                .await
                .unwrap();
        })
        .await;
    let mut enrollment = None;
    workers
        .check("registerForCourse", APPEND, async {
            enrollment = Some(EnrollmentId::from_uuid(
                app.commands()
                    .register_for_course(admin, &with_id(), course, Some(trainee))
                    .await
                    .unwrap()
                    .stream_id,
            ));
        })
        .await;
    let enrollment = enrollment.unwrap();
    workers
        .check("startCourse", APPEND, async {
            app.commands()
                .start_course(admin, &none, enrollment)
                .await
                .unwrap();
        })
        .await;
    let mut submission = None;
    workers
        .check("submitTest", APPEND, async {
            submission = Some(submit_through(app, admin, enrollment).await);
        })
        .await;
    workers
        .check("gradeSubmission", APPEND, async {
            app.commands()
                .grade_submission(
                    admin,
                    &with_id(),
                    enrollment,
                    submission.unwrap(),
                    Score::parse("score", 90).unwrap(),
                )
                .await
                .unwrap();
        })
        .await;
    workers
        .check("completeCourse", APPEND, async {
            app.commands()
                .complete_course(admin, &none, enrollment)
                .await
                .unwrap();
        })
        .await;
    trainee
}

/// Withdrawing `trainee`'s registration for a second course, then retiring that course, is
/// one append each on the owner.
async fn check_withdrawal_and_retirement_shapes(
    workers: &Workers,
    app: &App,
    admin: &Caller,
    trainee: TraineeId,
) {
    let none = CommandOptions::default();
    let second = course_through(app, admin, "SECOND").await;
    let withdrawn = EnrollmentId::from_uuid(
        app.commands()
            .register_for_course(admin, &none, second, Some(trainee))
            .await
            .unwrap()
            .stream_id,
    );
    workers
        .check("withdrawRegistration", APPEND, async {
            app.commands()
                .withdraw_registration(admin, &none, withdrawn, None)
                .await
                .unwrap();
        })
        .await;
    workers
        .check("retireCourse", APPEND, async {
            app.commands()
                .retire_course(admin, &none, second)
                .await
                .unwrap();
        })
        .await;
}

/// A group-commit batch: writes queued behind four in flight share one call. Rounds of
/// concurrent registrations until one formed; no round may run anything else.
async fn check_a_batch_runs_on_the_owner_alone(workers: &Workers, app: &App, admin: &Caller) {
    let mut batched = false;
    for round in 0..10 {
        workers.owner.reset().await;
        workers.other.reset().await;
        let before = app.commands().group_commit_stats().batches;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (app, admin) = (app.clone(), admin.clone());
            tasks.spawn(async move {
                app.commands()
                    .register_trainee(
                        &admin,
                        &CommandOptions::default(),
                        Email::parse(&format!("batch{round}.{i}@example.com")).unwrap(),
                        PersonName::parse("Batched").unwrap(),
                        None,
                    )
                    .await
                    .unwrap();
            });
        }
        tasks.join_all().await;
        assert!(
            workers.other.ran().await.is_empty(),
            "a batch round touched the other worker"
        );
        assert_only_calls_and_reads("a batch round", &workers.owner.ran().await);
        if app.commands().group_commit_stats().batches > before {
            batched = true;
            break;
        }
    }
    assert!(batched, "no batch formed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_shape_runs_on_the_tenants_worker_alone_without_two_phase_commit() {
    let Some(nodes) = citus() else {
        return;
    };
    let test = TestApp::spawn().await;
    let workers = Workers::of(&test, nodes).await;
    let app = App::new(test.pool.clone());
    let admin = caller(test.tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    // Warm up: the first call on a connection prepares its statements.
    course_through(&app, &admin, "WARM").await;

    let trainee = check_lifecycle_shapes(&workers, &app, &admin).await;
    check_withdrawal_and_retirement_shapes(&workers, &app, &admin, trainee).await;
    // A refused write (a duplicate e-mail): the attempt on the cached stream and the one on the
    // stored stream (a refusal is always decided again) are a call each, and change nothing.
    workers
        .check(
            "a refused registerTrainee",
            ("coursetrail_append", 2),
            async {
                let refused = app
                    .commands()
                    .register_trainee(
                        &admin,
                        &none,
                        Email::parse("shape@example.com").unwrap(),
                        PersonName::parse("Twin").unwrap(),
                        None,
                    )
                    .await;
                assert_eq!(refused.unwrap_err().code(), "ALREADY_EXISTS");
            },
        )
        .await;
    workers.check_rebuild(&app, &admin).await;

    check_a_batch_runs_on_the_owner_alone(&workers, &app, &admin).await;
}

/// Commands of one tenant from several tasks until `stop`; returns every acknowledged
/// `(position, command id)` and the number of commands that failed.
async fn write_until(
    app: App,
    tenant: TenantId,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<(i64, Uuid)>, usize) {
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let course = course_through(&app, &admin, "MOVING").await;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let (app, admin, stop) = (app.clone(), admin.clone(), stop.clone());
        tasks.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = 0;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let command = Uuid::now_v7();
                let options = CommandOptions {
                    command_id: Some(command),
                    ..Default::default()
                };
                let trainee = TraineeId::from_uuid(Uuid::now_v7());
                let registered = app
                    .commands()
                    .register_trainee(
                        &admin,
                        &options,
                        Email::parse(&format!("w{writer}.{i}@example.com")).unwrap(),
                        PersonName::parse("Mover").unwrap(),
                        Some(trainee),
                    )
                    .await;
                match registered {
                    Ok(outcome) => acknowledged.push((outcome.position, command)),
                    Err(_) => {
                        failed += 1;
                        continue;
                    }
                }
                let options = CommandOptions {
                    command_id: Some(Uuid::now_v7()),
                    ..Default::default()
                };
                match app
                    .commands()
                    .register_for_course(&admin, &options, course, Some(trainee))
                    .await
                {
                    Ok(outcome) => {
                        acknowledged.push((outcome.position, options.command_id.unwrap()))
                    }
                    Err(_) => failed += 1,
                }
            }
            (acknowledged, failed)
        });
    }
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for (mine, my_failures) in tasks.join_all().await {
        acknowledged.extend(mine);
        failed += my_failures;
    }
    (acknowledged, failed)
}

/// Every acknowledged command's event is stored at the position it was told, under its command
/// id, and the tenant's positions are 1…head without a gap.
async fn assert_log_intact(pool: &PgPool, tenant: TenantId, acknowledged: &[(i64, Uuid)]) {
    let stored: Vec<(i64, Option<Uuid>)> = sqlx::query_as(
        "SELECT position, command_id FROM events WHERE tenant_id = $1 ORDER BY position",
    )
    .bind(tenant.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap();
    let head: i64 =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(pool)
            .await
            .unwrap();
    let positions: Vec<i64> = stored.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "positions are not 1..head"
    );
    let stored: HashSet<(i64, Option<Uuid>)> = stored.into_iter().collect();
    for (position, command) in acknowledged {
        assert!(
            stored.contains(&(*position, Some(*command))),
            "acknowledged command {command} at {position} is not stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tenants_shards_move_to_the_other_worker_while_its_commands_flow() {
    let Some(nodes) = citus() else {
        return;
    };
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let source = owner_of(&test.pool, nodes, tenant).await;
    let target = nodes
        .workers
        .iter()
        .find(|w| **w != source)
        .unwrap()
        .clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(write_until(app.clone(), tenant, 8, stop.clone()));
    writes_flow(&test, tenant).await;

    // All of the tenant's co-located shards move together; logical replication keeps the
    // writes flowing while the data is copied.
    let (source_host, source_port) = host_and_port(&source).unwrap();
    let (target_host, target_port) = host_and_port(&target).unwrap();
    sqlx::query(
        "SELECT citus_move_shard_placement(get_shard_id_for_distribution_column('events', $1), \
         $2, $3, $4, $5, shard_transfer_mode => 'force_logical')",
    )
    .bind(tenant.as_uuid())
    .bind(&source_host)
    .bind(source_port)
    .bind(&target_host)
    .bind(target_port)
    .execute(&test.pool)
    .await
    .expect("move the tenant's shards");
    writes_flow(&test, tenant).await;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failed) = writers.await.unwrap();

    assert_eq!(
        owner_of(&test.pool, nodes, tenant).await,
        target,
        "the shards did not move"
    );
    assert!(
        acknowledged.len() > 20,
        "too few commands ran during the move"
    );
    assert_log_intact(&test.pool, tenant, &acknowledged).await;
    // The same server goes on writing, now to the other worker.
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    course_through(&app, &admin, "AFTER").await;
    eprintln!(
        "shard move under load: {} commands acknowledged, {failed} failed",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_takes_shards_in_a_rebalance_and_commands_go_on() {
    let Some(nodes) = citus() else {
        return;
    };
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    // Some tenants, so that the rebalance has data to move.
    let mut tenants = vec![tenant];
    for i in 0..6 {
        tenants.push(test.new_tenant(&format!("Tenant {i}")).await);
    }
    for (i, t) in tenants.iter().enumerate() {
        course_through(
            &app,
            &caller(*t, Role::Admin, Uuid::now_v7()),
            &format!("C{i}"),
        )
        .await;
    }

    // The new worker's copy of this database, with the extension, as for any node.
    let worker = nodes.add_worker().expect("start the extra worker");
    let (host, port) = host_and_port(&worker).unwrap();
    let database = database_name(&test.database_url);
    let admin_pool = db::connect(&worker, 1).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin_pool)
        .await
        .unwrap();
    admin_pool.close().await;
    let new_db = db::connect(&database_url(&worker, &database).unwrap(), 1)
        .await
        .unwrap();
    sqlx::query("CREATE EXTENSION citus")
        .execute(&new_db)
        .await
        .unwrap();
    new_db.close().await;

    sqlx::query("SELECT citus_add_node($1, $2)")
        .bind(&host)
        .bind(port)
        .execute(&test.pool)
        .await
        .expect("add the worker");
    sqlx::query("SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')")
        .execute(&test.pool)
        .await
        .expect("start a rebalance");
    sqlx::query("SELECT citus_rebalance_wait()")
        .execute(&test.pool)
        .await
        .expect("the rebalance finishes");
    let on_new: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) \
         WHERE n.nodeport = $1",
    )
    .bind(port)
    .fetch_one(&test.pool)
    .await
    .unwrap();
    assert!(on_new > 0, "the new worker got no shards");
    // Every tenant's log and projections are still there and take new commands.
    for (i, t) in tenants.iter().enumerate() {
        let courses: i64 = sqlx::query_scalar("SELECT count(*) FROM courses WHERE tenant_id = $1")
            .bind(t.as_uuid())
            .fetch_one(&test.pool)
            .await
            .unwrap();
        assert_eq!(courses, 1);
        course_through(
            &app,
            &caller(*t, Role::Admin, Uuid::now_v7()),
            &format!("D{i}"),
        )
        .await;
        assert_log_intact(&test.pool, *t, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_tenants_worker_without_the_coordinator_unless_turned_off() {
    let Some(nodes) = citus() else {
        return;
    };
    let test = TestApp::spawn().await;
    let database = database_name(&test.database_url);
    let coordinator = Statements::new(&nodes.coordinator, &database).await;
    let workers = Workers::of(&test, nodes).await;
    let admin = caller(test.tenant, Role::Admin, Uuid::now_v7());
    let appends = |ran: Vec<(String, i64)>| -> i64 {
        ran.iter()
            .filter(|(query, _)| query.contains("coursetrail_append"))
            .map(|(_, calls)| calls)
            .sum()
    };
    for (routed, label) in [(true, "STRAIGHT"), (false, "THROUGH")] {
        let settings = AppSettings {
            worker_writes: routed,
            ..AppSettings::default()
        };
        let app = App::build(test.pool.clone(), settings);
        coordinator.reset().await;
        workers
            .check(label, APPEND, async {
                course_through(&app, &admin, label).await;
            })
            .await;
        let on_coordinator = appends(coordinator.ran().await);
        assert_eq!(
            on_coordinator,
            i64::from(!routed),
            "{label}: calls of the write function the coordinator received"
        );
    }
}
