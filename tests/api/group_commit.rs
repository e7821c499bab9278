//! Group commit (`GROUP_COMMIT`): one tenant's writes that wait for each other share one
//! transaction. Positions must stay gap-free and visible in order, every command must get the
//! answer it would get written alone, and a failed batch must leave nothing behind.

use crate::helpers::{TestApp, caller, course_through, submit_through};
use crate::replay::snapshot;
use coursetrail::app::{App, AppSettings, Caller, CommandOptions, GroupCommitStats};
use coursetrail::auth::Role;
use coursetrail::crypto::Keyring;
use coursetrail::domain::events::{CourseRegistered, TraineeRegistered};
use coursetrail::domain::values::{Email, PersonName, Score};
use coursetrail::domain::{CourseId, EnrollmentId, Event, StreamType, TenantId, TraineeId};
use coursetrail::projections::ProjectionWrite;
use coursetrail::projections::rows::{EnrollmentRow, EventPlace, StreamRows, TraineeRow};
use coursetrail::store::personal;
use coursetrail::store::{self, Append, BatchOutcome, Metadata, Refusal, StoreError};
use sqlx::PgConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// Registers `emails.len()` trainees at once through `app`, each with a command id; each
/// outcome is the position or the error code.
async fn register_at_once(
    app: &App,
    tenant: TenantId,
    emails: &[String],
) -> Vec<Result<i64, String>> {
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let mut tasks = tokio::task::JoinSet::new();
    for email in emails {
        let (app, admin, email) = (app.clone(), admin.clone(), email.clone());
        tasks.spawn(async move {
            app.commands()
                .register_trainee(
                    &admin,
                    &CommandOptions {
                        command_id: Some(Uuid::now_v7()),
                        ..Default::default()
                    },
                    Email::parse(&email).unwrap(),
                    PersonName::parse("Batched").unwrap(),
                    None,
                )
                .await
                .map(|outcome| outcome.position)
                .map_err(|error| error.code().to_owned())
        });
    }
    tasks.join_all().await
}

/// The tenant's positions, in order.
async fn positions(test: &TestApp, tenant: TenantId) -> Vec<i64> {
    sqlx::query_scalar("SELECT position FROM events WHERE tenant_id = $1 ORDER BY position")
        .bind(tenant.as_uuid())
        .fetch_all(&test.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_tenant_share_transactions_and_positions_stay_gap_free_in_order() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());

    // A reader polling all along: in any one snapshot, the count of visible events equals the
    // highest visible position, else a later position committed before an earlier one.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (pool, stop) = (test.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut snapshots = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let (count, max): (i64, i64) = sqlx::query_as(
                    "SELECT count(*), coalesce(max(position), 0) FROM events WHERE tenant_id = $1",
                )
                .bind(tenant.as_uuid())
                .fetch_one(&pool)
                .await
                .unwrap();
                assert_eq!(count, max, "a gap was visible: {count} events up to {max}");
                snapshots += 1;
            }
            snapshots
        })
    };

    // Batches form when writes arrive while another is committing; a few rounds make sure.
    let mut answered = Vec::new();
    for round in 0..10 {
        let emails: Vec<String> = (0..32)
            .map(|i| format!("r{round}t{i}@example.com"))
            .collect();
        answered.extend(register_at_once(&app, tenant, &emails).await);
        if app.commands().group_commit_stats().batched_writes > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert!(
        app.commands().group_commit_stats().batched_writes > 0,
        "no write was ever batched"
    );

    let mut answered: Vec<i64> = answered.into_iter().map(Result::unwrap).collect();
    answered.sort_unstable();
    let expected: Vec<i64> = (1..=answered.len() as i64).collect();
    assert_eq!(answered, expected, "each command's position, once each");
    assert_eq!(positions(&test, tenant).await, expected);
    assert_eq!(test.head(tenant).await, answered.len() as i64);
    // Every command record points at its own command's event.
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM commands c JOIN events e ON e.tenant_id = c.tenant_id \
         AND e.position = c.position AND e.stream_id = c.stream_id WHERE c.tenant_id = $1",
    )
    .bind(tenant.as_uuid())
    .fetch_one(&test.pool)
    .await
    .unwrap();
    assert_eq!(recorded, answered.len() as i64);

    let live = snapshot(&test.pool, tenant).await;
    app.reads()
        .rebuild_projections(&caller(tenant, Role::Admin, Uuid::now_v7()), |_| {})
        .await
        .unwrap();
    assert_eq!(snapshot(&test.pool, tenant).await, live);

    // Switched off, nothing is batched.
    let settings = AppSettings {
        group_commit: false,
        ..AppSettings::default()
    };
    let alone = App::build(test.pool.clone(), settings);
    let emails: Vec<String> = (0..32).map(|i| format!("alone{i}@example.com")).collect();
    assert!(
        register_at_once(&alone, tenant, &emails)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(
        alone.commands().group_commit_stats(),
        GroupCommitStats::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_batch_refuses_get_the_answers_they_would_get_alone() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    // Every email twice: a batch that holds both (or one whose twin committed) refuses the
    // second by the e-mail rule, alone, and writes the rest. A few rounds make sure one did.
    let mut stored = 0;
    for round in 0..10 {
        let emails: Vec<String> = (0..48)
            .map(|i| format!("r{round}twice{}@example.com", i / 2))
            .collect();
        let answered = register_at_once(&app, tenant, &emails).await;
        let ok = answered.iter().filter(|a| a.is_ok()).count();
        let exists = answered
            .iter()
            .filter(|a| {
                a.as_ref()
                    .err()
                    .is_some_and(|code| code == "ALREADY_EXISTS")
            })
            .count();
        assert_eq!((ok, exists), (24, 24), "round {round}: {answered:?}");
        stored += 24;
        if app.commands().group_commit_stats().refused_writes > 0 {
            break;
        }
    }
    let stats = app.commands().group_commit_stats();
    assert!(stats.refused_writes > 0, "no batch ever refused a write");
    assert_eq!(stats.failed_batches, 0);
    assert_eq!(
        positions(&test, tenant).await,
        (1..=stored).collect::<Vec<i64>>()
    );
    let trainees: i64 = sqlx::query_scalar("SELECT count(*) FROM trainees WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .fetch_one(&test.pool)
        .await
        .unwrap();
    assert_eq!(trainees, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_requests_leave_no_tenant_waiting() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    for round in 0..5 {
        // Requests dropped while queued, while leading, and while their batch is written.
        let mut tasks = Vec::new();
        for i in 0..32 {
            let (app, admin) = (app.clone(), admin.clone());
            tasks.push(tokio::spawn(async move {
                app.commands()
                    .register_trainee(
                        &admin,
                        &CommandOptions::default(),
                        Email::parse(&format!("r{round}d{i}@example.com")).unwrap(),
                        PersonName::parse("Dropped").unwrap(),
                        None,
                    )
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_micros(200 * round)).await;
        for task in tasks.iter().step_by(2) {
            task.abort();
        }
        for task in tasks {
            if let Ok(outcome) = task.await {
                outcome.unwrap();
            }
        }
    }
    // The tenant is not left "busy": a next write is written at once.
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.commands().register_trainee(
            &admin,
            &CommandOptions::default(),
            Email::parse("after@example.com").unwrap(),
            PersonName::parse("After").unwrap(),
            None,
        ),
    )
    .await
    .expect("a write after dropped requests was not stuck")
    .unwrap();
    let stored = positions(&test, tenant).await;
    assert_eq!(stored, (1..=stored.len() as i64).collect::<Vec<i64>>());
    // A dropped request's batch may still commit after it (batches finish in their own
    // task): the answer's position is its own event's, wherever it fell.
    let at_position: Uuid =
        sqlx::query_scalar("SELECT stream_id FROM events WHERE tenant_id = $1 AND position = $2")
            .bind(tenant.as_uuid())
            .bind(next.position)
            .fetch_one(&test.pool)
            .await
            .unwrap();
    assert_eq!(at_position, next.stream_id);
}

fn metadata(command_id: Option<Uuid>) -> Metadata {
    Metadata {
        actor_id: Uuid::now_v7(),
        actor_role: Role::Admin,
        command_id,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

fn trainee_events(email: &str) -> Vec<Event> {
    vec![Event::TraineeRegistered(TraineeRegistered {
        email: Email::parse(email).unwrap(),
        name: PersonName::parse("Stored").unwrap(),
    })]
}

fn trainee_row(id: Uuid, email: &str) -> TraineeRow {
    TraineeRow {
        trainee_id: TraineeId::from_uuid(id),
        email: email.into(),
        name: "Stored".into(),
        registered_at: chrono::Utc::now(),
        version: 1,
    }
}

fn append<'a>(
    stream_id: Uuid,
    stream_type: StreamType,
    events: &'a [Event],
    metadata: &'a Metadata,
) -> Append<'a> {
    // Sealed with a throwaway key: these writes test batching, not reading back. Leaked so
    // the append can borrow it like its events (a few per test).
    let (key, _) = Keyring::unwrapped().new_data_key();
    let stored = events
        .iter()
        .zip(1..)
        .map(|(event, version)| {
            let place = personal::Place {
                tenant: TenantId::from_uuid(Uuid::nil()),
                stream_id,
                version,
            };
            personal::seal(event, Some(&key), place).expect("sealable")
        })
        .collect::<Vec<_>>()
        .leak();
    Append {
        stream_id,
        stream_type,
        expected_version: 0,
        events,
        stored,
        recorded_at: chrono::Utc::now(),
        metadata,
        trainee_id: None,
        course_id: None,
        command: metadata.command_id.map(|_| ("test", &NO_RESULT)),
        data_key: None,
    }
}

static NO_RESULT: serde_json::Value = serde_json::Value::Null;

/// The tenant position recorded for each of `commands`.
async fn recorded_positions(test: &TestApp, tenant: TenantId, commands: &[Uuid]) -> Vec<i64> {
    let mut positions = Vec::new();
    for command in commands {
        positions.push(
            sqlx::query_scalar(
                "SELECT position FROM commands WHERE tenant_id = $1 AND command_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(command)
            .fetch_one(&test.pool)
            .await
            .unwrap(),
        );
    }
    positions
}

/// A registration of `trainee` for `course` as enrollment `enrollment`, and the row the live
/// path computes for it: the same fold.
fn registration_and_its_row(
    course: CourseId,
    trainee: Uuid,
    enrollment: Uuid,
) -> (Vec<Event>, EnrollmentRow) {
    let registered = vec![Event::CourseRegistered(CourseRegistered {
        course_id: course,
        trainee_id: TraineeId::from_uuid(trainee),
    })];
    let mut folded = StreamRows::default();
    folded.apply(
        EventPlace {
            stream_id: enrollment,
            version: 1,
            recorded_at: chrono::Utc::now(),
        },
        &registered[0],
    );
    let row = folded
        .enrollment
        .expect("a registration makes an enrollment row");
    (registered, row)
}

/// Two events of one trainee stream, and no rows for them.
fn two_trainee_events() -> Vec<Event> {
    [
        trainee_events("a@example.com"),
        trainee_events("b@example.com"),
    ]
    .concat()
}

/// `(position, version)` of each event of `stream`.
async fn stream_versions(test: &TestApp, tenant: TenantId, stream: Uuid) -> Vec<(i64, i32)> {
    sqlx::query_as(
        "SELECT position, version FROM events WHERE tenant_id = $1 AND stream_id = $2 \
         ORDER BY position",
    )
    .bind(tenant.as_uuid())
    .bind(stream)
    .fetch_all(&test.pool)
    .await
    .unwrap()
}

async fn enrollment_count(test: &TestApp, tenant: TenantId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM enrollments WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .fetch_one(&test.pool)
        .await
        .unwrap()
}

async fn trainee_emails(test: &TestApp, tenant: TenantId) -> Vec<String> {
    sqlx::query_scalar("SELECT email FROM trainees WHERE tenant_id = $1 ORDER BY email")
        .bind(tenant.as_uuid())
        .fetch_all(&test.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_refuses_each_write_on_its_own_and_any_error_rolls_all_of_it_back() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let course = course_through(&app, &admin, "GONE").await;
    app.commands()
        .retire_course(&admin, &none, course)
        .await
        .unwrap();
    let head = test.head(tenant).await;
    let mut conn = test.pool.acquire().await.unwrap();

    // A registration for the retired course (its guard refuses it), a new trainee, and a
    // stream of two events without rows: the first is left out, the others are written with
    // consecutive positions, each command record at its write's last event.
    let (trainee, enrollment, pair) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let commands = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let metas = commands.map(|id| metadata(Some(id)));
    let (registered, registration) = registration_and_its_row(course, trainee, enrollment);
    let trainee_written = trainee_events("kept@example.com");
    let trainee_rows = trainee_row(trainee, "kept@example.com");
    let two = two_trainee_events();
    let outcomes = store::append_batch(
        &mut conn,
        tenant,
        vec![
            (
                append(enrollment, StreamType::Enrollment, &registered, &metas[0]),
                ProjectionWrite::Registration(&registration),
            ),
            (
                append(trainee, StreamType::Trainee, &trainee_written, &metas[1]),
                ProjectionWrite::Trainee(&trainee_rows),
            ),
            (
                append(pair, StreamType::Trainee, &two, &metas[2]),
                ProjectionWrite::Nothing,
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            BatchOutcome::Refused(Refusal::CourseClosed),
            BatchOutcome::Appended(head + 1),
            BatchOutcome::Appended(head + 3)
        ]
    );
    assert_eq!(test.head(tenant).await, head + 3);
    assert_eq!(
        recorded_positions(&test, tenant, &commands[1..]).await,
        [head + 1, head + 3]
    );
    let versions = stream_versions(&test, tenant, pair).await;
    assert_eq!(versions, [(head + 2, 1), (head + 3, 2)]);
    assert_eq!(enrollment_count(&test, tenant).await, 0);
    let head = head + 3;

    let head = a_stale_write_alone_is_refused(&mut conn, tenant, trainee, head).await;
    a_database_error_rolls_the_whole_batch_back(&test, &mut conn, tenant, head).await;
}

/// A new trainee, then a second "first" event of `trainee` (a stale decision): the stale write
/// alone is refused, as a version conflict; the new trainee is written. Returns the new head.
async fn a_stale_write_alone_is_refused(
    conn: &mut PgConnection,
    tenant: TenantId,
    trainee: Uuid,
    head: i64,
) -> i64 {
    let other = Uuid::now_v7();
    let meta = metadata(None);
    let other_written = trainee_events("other@example.com");
    let other_rows = trainee_row(other, "other@example.com");
    let stale_written = trainee_events("stale@example.com");
    let stale_rows = trainee_row(trainee, "stale@example.com");
    let outcomes = store::append_batch(
        conn,
        tenant,
        vec![
            (
                append(other, StreamType::Trainee, &other_written, &meta),
                ProjectionWrite::Trainee(&other_rows),
            ),
            (
                append(trainee, StreamType::Trainee, &stale_written, &meta),
                ProjectionWrite::Trainee(&stale_rows),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            BatchOutcome::Appended(head + 1),
            BatchOutcome::Refused(Refusal::VersionConflict)
        ]
    );
    head + 1
}

/// A new trainee, then a write the database rejects (an event at version 0 breaks the log's
/// check): the whole call is rolled back, the new trainee's row and event included. The
/// failed call was rolled back on its connection, which takes the next batch.
async fn a_database_error_rolls_the_whole_batch_back(
    test: &TestApp,
    conn: &mut PgConnection,
    tenant: TenantId,
    head: i64,
) {
    let meta = metadata(None);
    let third = Uuid::now_v7();
    let third_written = trainee_events("rolled.back@example.com");
    let third_rows = trainee_row(third, "rolled.back@example.com");
    let two = two_trainee_events();
    let mut broken = append(Uuid::now_v7(), StreamType::Trainee, &two, &meta);
    broken.expected_version = -1;
    let failed = store::append_batch(
        conn,
        tenant,
        vec![
            (
                append(third, StreamType::Trainee, &third_written, &meta),
                ProjectionWrite::Trainee(&third_rows),
            ),
            (broken, ProjectionWrite::Nothing),
        ],
    )
    .await;
    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    assert_eq!(test.head(tenant).await, head);
    let emails = trainee_emails(test, tenant).await;
    assert_eq!(emails, ["kept@example.com", "other@example.com"]);
    assert_eq!(positions(test, tenant).await.len() as i64, head);

    // The failed call was rolled back on its connection, which takes the next batch.
    let again = store::append_batch(
        conn,
        tenant,
        vec![(
            append(third, StreamType::Trainee, &third_written, &meta),
            ProjectionWrite::Trainee(&third_rows),
        )],
    )
    .await
    .unwrap();
    assert_eq!(again, [BatchOutcome::Appended(head + 1)]);
}

/// Registers `n` trainees one by one; their ids.
async fn register_trainees(app: &App, admin: &Caller, n: usize) -> Vec<TraineeId> {
    let mut trainees = Vec::new();
    for i in 0..n {
        let trainee = TraineeId::from_uuid(Uuid::now_v7());
        app.commands()
            .register_trainee(
                admin,
                &CommandOptions::default(),
                Email::parse(&format!("life{i}@example.com")).unwrap(),
                PersonName::parse("Lifecycle").unwrap(),
                Some(trainee),
            )
            .await
            .unwrap();
        trainees.push(trainee);
    }
    trainees
}

/// `trainee` registers for `leaving` (the outcome: its position or the error code), then runs
/// a whole lifecycle on `kept`: registration, start, a passing grade, completion.
async fn register_then_complete_a_lifecycle(
    app: App,
    admin: Caller,
    leaving: CourseId,
    kept: CourseId,
    trainee: TraineeId,
) -> Result<i64, String> {
    let none = CommandOptions::default();
    let leaving = app
        .commands()
        .register_for_course(&admin, &none, leaving, Some(trainee))
        .await
        .map(|outcome| outcome.position)
        .map_err(|error| error.code().to_owned());
    let enrollment = EnrollmentId::from_uuid(
        app.commands()
            .register_for_course(&admin, &none, kept, Some(trainee))
            .await
            .unwrap()
            .stream_id,
    );
    app.commands()
        .start_course(&admin, &none, enrollment)
        .await
        .unwrap();
    let submission = submit_through(&app, &admin, enrollment).await;
    app.commands()
        .grade_submission(
            &admin,
            &none,
            enrollment,
            submission,
            Score::parse("s", 80).unwrap(),
        )
        .await
        .unwrap();
    app.commands()
        .complete_course(&admin, &none, enrollment)
        .await
        .unwrap();
    leaving
}

async fn enrollments_in(test: &TestApp, tenant: TenantId, course: CourseId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM enrollments WHERE tenant_id = $1 AND course_id = $2")
        .bind(tenant.as_uuid())
        .bind(course.as_uuid())
        .fetch_one(&test.pool)
        .await
        .unwrap()
}

async fn completed_enrollments(test: &TestApp, tenant: TenantId) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM enrollments WHERE tenant_id = $1 AND status = 'COMPLETED'",
    )
    .bind(tenant.as_uuid())
    .fetch_one(&test.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_lifecycles_and_a_retirement_written_in_batches_match_a_rebuild() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let kept = course_through(&app, &admin, "KEPT").await;
    let retired = course_through(&app, &admin, "LEAVING").await;
    let trainees = register_trainees(&app, &admin, 24).await;

    // Every trainee registers for a course while it is being retired, then runs a whole
    // lifecycle on another, all at once: batches mix registrations, enrollment and submission rows, a
    // course's retirement, and a new course.
    let mut tasks = tokio::task::JoinSet::new();
    for trainee in trainees.clone() {
        let (app, admin) = (app.clone(), admin.clone());
        tasks.spawn(register_then_complete_a_lifecycle(
            app, admin, retired, kept, trainee,
        ));
    }
    let retirement = {
        let (app, admin) = (app.clone(), admin.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            app.commands()
                .retire_course(&admin, &CommandOptions::default(), retired)
                .await
                .unwrap()
                .position
        })
    };
    course_through(&app, &admin, "NEW").await;
    let registrations = tasks.join_all().await;
    let retired_at = retirement.await.unwrap();

    // A registration for the retired course succeeded only before its retirement.
    let mut accepted = 0;
    for registration in &registrations {
        match registration {
            Ok(position) => {
                assert!(*position < retired_at, "registered after the retirement");
                accepted += 1;
            }
            Err(code) => assert_eq!(code, "INVALID_STATE"),
        }
    }
    let enrolled = enrollments_in(&test, tenant, retired).await;
    assert_eq!(enrolled, accepted);
    let completed = completed_enrollments(&test, tenant).await;
    assert_eq!(completed, 24);
    assert!(
        app.commands().group_commit_stats().batched_writes > 0,
        "nothing was batched"
    );
    let stored = positions(&test, tenant).await;
    assert_eq!(stored, (1..=stored.len() as i64).collect::<Vec<i64>>());

    let live = snapshot(&test.pool, tenant).await;
    app.reads()
        .rebuild_projections(&admin, |_| {})
        .await
        .unwrap();
    assert_eq!(snapshot(&test.pool, tenant).await, live);
}
