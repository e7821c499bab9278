//! Group commit (`GROUP_COMMIT`): one tenant's writes that wait for each other share one
//! transaction. Positions must stay gap-free and visible in order, every command must get the
//! answer it would get written alone, and a failed batch must leave nothing behind.

use crate::helpers::{TestApp, caller};
use crate::replay::snapshot;
use coursetrail::app::{App, CommandOptions};
use coursetrail::auth::Role;
use coursetrail::domain::enrollment::EnrollmentStatus;
use coursetrail::domain::events::{CourseRegistered, TraineeRegistered};
use coursetrail::domain::values::{CourseCode, CourseTitle, Email, PersonName, Score};
use coursetrail::domain::{CourseId, EnrollmentId, Event, StreamType, TenantId, TraineeId};
use coursetrail::projections::ProjectionWrite;
use coursetrail::projections::rows::{EnrollmentRow, TraineeRow};
use coursetrail::store::{self, Append, BatchOutcome, Metadata, StoreError};
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
            app.register_trainee(
                &admin,
                &CommandOptions {
                    command_id: Some(Uuid::now_v7()),
                    correlation_id: None,
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
        if app.batched_writes() > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert!(app.batched_writes() > 0, "no write was ever batched");

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
    app.rebuild_projections(&caller(tenant, Role::Admin, Uuid::now_v7()), |_| {})
        .await
        .unwrap();
    assert_eq!(snapshot(&test.pool, tenant).await, live);

    // Switched off, nothing is batched.
    let alone = App::new(test.pool.clone()).with_group_commit(false);
    let emails: Vec<String> = (0..32).map(|i| format!("alone{i}@example.com")).collect();
    assert!(
        register_at_once(&alone, tenant, &emails)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(alone.batched_writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_batch_the_database_refuses_get_the_answers_they_would_get_alone() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    // Every email twice: whichever batch holds both fails on trainees_email_key as a whole,
    // and its writes are then written one by one.
    let emails: Vec<String> = (0..48)
        .map(|i| format!("twice{}@example.com", i / 2))
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
    assert_eq!((ok, exists), (24, 24), "{answered:?}");
    assert_eq!(
        positions(&test, tenant).await,
        (1..=24).collect::<Vec<i64>>()
    );
    let trainees: i64 = sqlx::query_scalar("SELECT count(*) FROM trainees WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .fetch_one(&test.pool)
        .await
        .unwrap();
    assert_eq!(trainees, 24);
}

fn metadata() -> Metadata {
    Metadata {
        actor_id: Uuid::now_v7(),
        actor_role: Role::Admin,
        command_id: None,
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
    Append {
        stream_id,
        stream_type,
        expected_version: 0,
        events,
        recorded_at: chrono::Utc::now(),
        metadata,
        trainee_id: None,
        course_id: None,
        command: None,
    }
}

#[tokio::test]
async fn a_batch_leaves_out_a_write_its_guard_refuses_and_any_error_rolls_all_of_it_back() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let course = app
        .create_course(
            &admin,
            &none,
            CourseCode::parse("GONE").unwrap(),
            CourseTitle::parse("Retired").unwrap(),
            Score::parse("p", 50).unwrap(),
        )
        .await
        .unwrap();
    let course = CourseId::from_uuid(course.stream_id);
    app.retire_course(&admin, &none, course).await.unwrap();
    let head = test.head(tenant).await;
    let mut conn = test.pool.acquire().await.unwrap();
    let meta = metadata();

    // A new trainee, and a registration for the retired course: the registration's guard
    // refuses it, the trainee is written.
    let (trainee, enrollment) = (Uuid::now_v7(), Uuid::now_v7());
    let trainee_written = trainee_events("kept@example.com");
    let trainee_rows = trainee_row(trainee, "kept@example.com");
    let registered = vec![Event::CourseRegistered(CourseRegistered {
        course_id: course,
        trainee_id: TraineeId::from_uuid(trainee),
    })];
    let now = chrono::Utc::now();
    let registration = EnrollmentRow {
        enrollment_id: EnrollmentId::from_uuid(enrollment),
        course_id: course,
        trainee_id: TraineeId::from_uuid(trainee),
        status: EnrollmentStatus::Registered,
        registered_at: now,
        started_at: None,
        completed_at: None,
        withdrawn_at: None,
        withdrawal_reason: None,
        submission_count: 0,
        best_score: None,
        passed_at: None,
        version: 1,
        updated_at: now,
    };
    let mut rows_written = false;
    let outcomes = store::append_batch(
        &mut conn,
        tenant,
        vec![
            (
                append(trainee, StreamType::Trainee, &trainee_written, &meta),
                ProjectionWrite::Trainee(&trainee_rows),
            ),
            (
                append(enrollment, StreamType::Enrollment, &registered, &meta),
                ProjectionWrite::Registration(&registration),
            ),
        ],
        || rows_written = true,
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [BatchOutcome::Appended(head + 1), BatchOutcome::Refused]
    );
    assert_eq!(test.head(tenant).await, head + 1);
    let enrollments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM enrollments WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(&test.pool)
            .await
            .unwrap();
    assert_eq!(enrollments, 0);

    // A new trainee, then a second "first" event of the trainee above (a stale decision): the
    // whole batch is rolled back, the new trainee's row and event included.
    let other = Uuid::now_v7();
    let other_written = trainee_events("rolled.back@example.com");
    let other_rows = trainee_row(other, "rolled.back@example.com");
    let stale_written = trainee_events("stale@example.com");
    let stale_rows = trainee_row(trainee, "stale@example.com");
    let failed = store::append_batch(
        &mut conn,
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
        || {},
    )
    .await;
    assert!(
        matches!(failed, Err(StoreError::VersionConflict)),
        "{failed:?}"
    );
    assert_eq!(test.head(tenant).await, head + 1);
    let emails: Vec<String> =
        sqlx::query_scalar("SELECT email FROM trainees WHERE tenant_id = $1 ORDER BY email")
            .bind(tenant.as_uuid())
            .fetch_all(&test.pool)
            .await
            .unwrap();
    assert_eq!(emails, ["kept@example.com"]);
    assert_eq!(positions(&test, tenant).await.len() as i64, head + 1);
}
