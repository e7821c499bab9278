//! Races decided by constraints, and the ordering guarantees of the log.

use crate::helpers::{TestApp, position};
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_registrations_make_exactly_one_enrollment() {
    let app = Arc::new(TestApp::spawn().await);
    let admin = app.admin();
    let course = app.create_course(&admin, "RACE", 50).await;
    let trainee = app.register_trainee(&admin, "racer@example.com").await;
    let token = app.trainee(trainee);

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (_, body) = app
                .post(
                    Some(&token),
                    "mutation($i: RegisterForCourseInput!) { registerForCourse(input: $i) { enrollment { id } } }",
                    json!({ "i": { "courseId": course } }),
                )
                .await;
            body
        }));
    }
    let mut succeeded = 0;
    let mut already_registered = 0;
    for task in tasks {
        let body = task.await.unwrap();
        match body["errors"][0]["extensions"]["code"].as_str() {
            None => succeeded += 1,
            Some("ALREADY_REGISTERED") => already_registered += 1,
            Some(other) => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((succeeded, already_registered), (1, 49));
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'CourseRegistered'",
    )
    .bind(app.tenant.as_uuid())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM enrollments WHERE tenant_id = $1")
        .bind(app.tenant.as_uuid())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!((events, rows), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_stream_get_gap_free_versions_in_commit_order() {
    let app = Arc::new(TestApp::spawn().await);
    let admin = app.admin();
    let course = app.create_course(&admin, "BUSY", 50).await;
    let trainee = app.register_trainee(&admin, "busy@example.com").await;
    let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
    app.enrollment_step(&admin, "startCourse", enrollment).await;

    let mut tasks = Vec::new();
    for n in 0..20 {
        let (app, admin) = (app.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let (_, body) = app
                .post(
                    Some(&admin),
                    "mutation($i: SubmitTestInput!) { submitTest(input: $i) { submissionId position } }",
                    json!({ "i": { "enrollmentId": enrollment, "answers": { "n": n } } }),
                )
                .await;
            body
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        let body = task.await.unwrap();
        match body["errors"][0]["extensions"]["code"].as_str() {
            None => acknowledged.push(body["data"]["submitTest"].clone()),
            Some("CONCURRENCY_CONFLICT") => {}
            Some(other) => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!acknowledged.is_empty());

    let rows: Vec<(i32, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT version, position, data FROM events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY version",
    )
    .bind(app.tenant.as_uuid())
    .bind(enrollment)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    // Versions 1..n without gap or duplicate: registered, started, then one per acknowledged submit.
    let versions: Vec<i32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        versions,
        (1..=(2 + acknowledged.len() as i32)).collect::<Vec<_>>()
    );
    // Every acknowledged command's event is there, at the position it was told.
    for ack in &acknowledged {
        let position = position(&ack["position"]);
        let row = rows
            .iter()
            .find(|r| r.1 == position)
            .expect("acknowledged event present");
        assert_eq!(row.2["submissionId"], ack["submissionId"]);
    }
    // Positions grow with versions: commit order equals position order.
    assert!(rows.windows(2).all(|w| w[0].1 < w[1].1));
    // And the tenant's positions are 1..N without gaps.
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE tenant_id = $1 ORDER BY position")
            .bind(app.tenant.as_uuid())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(positions, (1..=positions.len() as i64).collect::<Vec<_>>());
    let head: i64 =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(app.tenant.as_uuid())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(head, positions.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registration_commits_after_its_course_was_retired() {
    // The registration decides on a course it read earlier; its write re-checks the course under
    // a lock, so whatever the interleaving, every CourseRegistered for the course comes before
    // the CourseRetired in the log, and every refused registration says why.
    let app = Arc::new(TestApp::spawn().await);
    let admin = app.admin();
    let course = app.create_course(&admin, "RETIRING", 50).await;
    let mut trainees = Vec::new();
    for i in 0..20 {
        trainees.push(
            app.register_trainee(&admin, &format!("t{i}@example.com"))
                .await,
        );
    }
    let mut tasks = Vec::new();
    for (i, trainee) in trainees.into_iter().enumerate() {
        let (task_app, token) = (app.clone(), app.trainee(trainee));
        tasks.push(tokio::spawn(async move {
            let (_, body) = task_app
                .post(
                    Some(&token),
                    "mutation($i: RegisterForCourseInput!) { registerForCourse(input: $i) { enrollment { id } } }",
                    json!({ "i": { "courseId": course } }),
                )
                .await;
            body
        }));
        if i == 10 {
            let (app, admin) = (app.clone(), admin.clone());
            tasks.push(tokio::spawn(async move {
                app.ok(
                    &admin,
                    "mutation($i: RetireCourseInput!) { retireCourse(input: $i) { position } }",
                    json!({ "i": { "courseId": course } }),
                )
                .await
            }));
        }
    }
    for task in tasks {
        let body = task.await.unwrap();
        match body["errors"][0]["extensions"]["code"].as_str() {
            None | Some("INVALID_STATE") => {}
            Some(other) => panic!("unexpected {other}: {body}"),
        }
    }
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events r, events x WHERE r.tenant_id = $1 AND x.tenant_id = $1 \
         AND r.event_type = 'CourseRegistered' AND r.course_id = $2 \
         AND x.event_type = 'CourseRetired' AND x.stream_id = $2 AND r.position > x.position",
    )
    .bind(app.tenant.as_uuid())
    .bind(course)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(late, 0, "a registration committed after the retirement");
    let active_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM enrollments WHERE tenant_id = $1 AND course_id = $2",
    )
    .bind(app.tenant.as_uuid())
    .bind(course)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let registered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'CourseRegistered'",
    )
    .bind(app.tenant.as_uuid())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(active_rows, registered, "projection and log disagree");
}

#[tokio::test]
async fn a_committed_command_wakes_listeners_with_its_tenant() {
    let app = TestApp::spawn().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener
        .listen(coursetrail::store::EVENTS_CHANNEL)
        .await
        .unwrap();
    app.create_course(&app.admin(), "WAKE", 50).await;
    let notification = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a wake-up within 10 s")
        .unwrap();
    assert_eq!(notification.payload(), app.tenant.to_string());
}
