//! The stream cache (`STREAM_CACHE_CAPACITY`): a command is first decided on the stream as its
//! server last saw it. Several servers on one database each hold outdated streams; these tests
//! drive two `App`s (two servers) and check every outcome is the one the stored stream gives.

use crate::helpers::{TestApp, caller, course_through};
use crate::replay::{random_history_on, snapshot};
use coursetrail::app::{App, AppError, CommandOptions};
use coursetrail::auth::Role;
use coursetrail::domain::values::{Answers, Email, PersonName, Score};
use coursetrail::domain::{EnrollmentId, SubmissionId, TenantId, TraineeId};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn event_types(pool: &PgPool, tenant: TenantId, stream: Uuid) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT version, event_type FROM events WHERE tenant_id = $1 AND stream_id = $2 \
         ORDER BY version",
    )
    .bind(tenant.as_uuid())
    .bind(stream)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn answers() -> Answers {
    Answers::parse(json!({ "q1": "b" })).unwrap()
}

/// A course, a trainee (under an id chosen here) and its enrollment, all through `app`.
async fn enrolled(app: &App, tenant: TenantId, code: &str) -> EnrollmentId {
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let course = course_through(app, &admin, code).await;
    let trainee = TraineeId::from_uuid(Uuid::now_v7());
    app.commands()
        .register_trainee(
            &admin,
            &none,
            Email::parse(&format!("{}@example.com", code.to_lowercase())).unwrap(),
            PersonName::parse("Cached").unwrap(),
            Some(trainee),
        )
        .await
        .unwrap();
    let registered = app
        .commands()
        .register_for_course(&admin, &none, course, Some(trainee))
        .await
        .unwrap();
    EnrollmentId::from_uuid(registered.stream_id)
}

#[tokio::test]
async fn a_command_decided_on_an_outdated_stream_is_decided_again_on_the_stored_one() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let (a, b) = (App::new(test.pool.clone()), App::new(test.pool.clone()));
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let enrollment = enrolled(&a, tenant, "CACHE").await;

    // b starts the course; a still holds the enrollment as merely registered.
    b.commands()
        .start_course(&admin, &none, enrollment)
        .await
        .unwrap();
    // On a's copy a submission is refused (not started): decided again on the stored stream,
    // it is accepted.
    let submitted = a
        .commands()
        .submit_test(&admin, &none, enrollment, answers())
        .await
        .expect("decided on the stored stream");
    let submission: Uuid = submitted.submission_id.as_uuid();
    // b's copy lacks the submission: its withdrawal is accepted by the domain, refused by the
    // version, and accepted again on the stored stream.
    b.commands()
        .withdraw_registration(&admin, &none, enrollment, None)
        .await
        .expect("withdrawn after a version conflict");
    // a's copy is not withdrawn, so grading is accepted there; on the stored stream it is not.
    let graded = a
        .commands()
        .grade_submission(
            &admin,
            &none,
            enrollment,
            SubmissionId::from_uuid(submission),
            Score::parse("s", 90).unwrap(),
        )
        .await;
    assert!(
        matches!(graded, Err(AppError::InvalidState(_))),
        "grading a withdrawn enrollment: {graded:?}"
    );

    let types: Vec<(i32, String)> = event_types(&test.pool, tenant, enrollment.as_uuid()).await;
    let expected = [
        "CourseRegistered",
        "CourseStarted",
        "TestSubmitted",
        "RegistrationWithdrawn",
    ];
    assert_eq!(
        types,
        expected
            .iter()
            .enumerate()
            .map(|(i, t)| (i as i32 + 1, (*t).to_owned()))
            .collect::<Vec<_>>()
    );
    let (status, submissions): (String, i32) = sqlx::query_as(
        "SELECT status, submission_count FROM enrollments WHERE tenant_id = $1 \
         AND enrollment_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(enrollment.as_uuid())
    .fetch_one(&test.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), submissions), ("WITHDRAWN", 1));
}

#[tokio::test]
async fn a_repeated_command_id_is_answered_from_its_record_even_when_the_cache_would_accept_it() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let app = App::new(test.pool.clone());
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let enrollment = enrolled(&app, tenant, "AGAIN").await;
    app.commands()
        .start_course(&admin, &none, enrollment)
        .await
        .unwrap();

    // A second submission is allowed, so the repeat's decision succeeds on the cached stream;
    // its command id is what refuses it, and the first outcome is returned.
    let once = CommandOptions {
        command_id: Some(Uuid::now_v7()),
        ..Default::default()
    };
    let first = app
        .commands()
        .submit_test(&admin, &once, enrollment, answers())
        .await
        .unwrap();
    let repeat = app
        .commands()
        .submit_test(&admin, &once, enrollment, answers())
        .await
        .unwrap();
    assert!(!first.outcome.replayed);
    assert!(repeat.outcome.replayed);
    assert_eq!(repeat.submission_id, first.submission_id);
    assert_eq!(repeat.outcome.position, first.outcome.position);
    let submitted = event_types(&test.pool, tenant, enrollment.as_uuid())
        .await
        .into_iter()
        .filter(|(_, t)| t == "TestSubmitted")
        .count();
    assert_eq!(submitted, 1);
}

#[tokio::test]
async fn registering_a_trainee_id_another_server_registered_is_refused_and_changes_nothing() {
    let test = TestApp::spawn().await;
    let tenant = test.tenant;
    let (a, b) = (App::new(test.pool.clone()), App::new(test.pool.clone()));
    let admin = caller(tenant, Role::Admin, Uuid::now_v7());
    let none = CommandOptions::default();
    let trainee = TraineeId::from_uuid(Uuid::now_v7());
    a.commands()
        .register_trainee(
            &admin,
            &none,
            Email::parse("first@example.com").unwrap(),
            PersonName::parse("First").unwrap(),
            Some(trainee),
        )
        .await
        .unwrap();
    // b has never seen the trainee, so it assumes a new stream; the write of its row as new is
    // refused (the row exists: a version conflict), and the decision on the stored stream
    // refuses the registration.
    let again = b
        .commands()
        .register_trainee(
            &admin,
            &none,
            Email::parse("second@example.com").unwrap(),
            PersonName::parse("Second").unwrap(),
            Some(trainee),
        )
        .await;
    assert!(
        matches!(again, Err(AppError::AlreadyExists(_))),
        "second registration: {again:?}"
    );
    let row: (String, String, i32) = sqlx::query_as(
        "SELECT email, name, version FROM trainees WHERE tenant_id = $1 AND trainee_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(trainee.as_uuid())
    .fetch_one(&test.pool)
    .await
    .unwrap();
    assert_eq!(row, ("first@example.com".into(), "First".into(), 1));
    assert_eq!(
        event_types(&test.pool, tenant, trainee.as_uuid())
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_through_three_servers_answer_as_one_server_does() {
    let test = TestApp::spawn().await;
    let one = App::new(test.pool.clone());
    let servers = [
        App::new(test.pool.clone()),
        App::new(test.pool.clone()),
        App::new(test.pool.clone()),
    ];
    let servers: Vec<&App> = servers.iter().collect();
    for seed in [21_u64, 22] {
        let alone = test.new_tenant(&format!("one server {seed}")).await;
        let expected = random_history_on(&[&one], alone, seed, 400).await;
        let shared = test.new_tenant(&format!("three servers {seed}")).await;
        let outcomes = random_history_on(&servers, shared, seed, 400).await;
        // Every command is answered as the stored streams dictate, whichever server's outdated
        // copy it was first decided on.
        assert_eq!(outcomes, expected, "seed {seed}");
        let succeeded = outcomes.iter().filter(|o| **o == "ok").count();
        assert!(succeeded > 80, "seed {seed}: only {succeeded} succeeded");
        let live = snapshot(&test.pool, shared).await;
        servers[0]
            .reads()
            .rebuild_projections(&caller(shared, Role::Admin, Uuid::now_v7()), |_| {})
            .await
            .unwrap();
        assert_eq!(snapshot(&test.pool, shared).await, live, "seed {seed}");
    }
}
