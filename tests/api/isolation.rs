//! Tenant isolation: a token for tenant A reaches nothing of tenant B, even with B's ids.

use crate::helpers::TestApp;
use coursetrail::auth::Role;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_token_for_one_tenant_sees_and_changes_nothing_of_another() {
    let app = TestApp::spawn().await;
    // Tenant B's world.
    let b = app.new_tenant("Other").await;
    let b_admin = app.token_for(b, Role::Admin, Uuid::now_v7());
    let b_course = app.create_course(&b_admin, "B-ONLY", 50).await;
    let b_trainee = app.register_trainee(&b_admin, "b@example.com").await;
    let b_enrollment = app
        .register_for_course(&b_admin, b_course, Some(b_trainee))
        .await;
    let b_events = app.event_count(b).await;

    // Tenant A's admin, with B's ids.
    let a_admin = app.admin();
    let reads = app
        .ok(
            &a_admin,
            "query($c: UUID!, $t: UUID!, $e: UUID!) { course(id: $c) { id } trainee(id: $t) { id } \
             enrollment(id: $e) { id } courses { edges { node { id } } } trainees { edges { node { id } } } \
             enrollments(courseId: $c) { edges { node { id } } } }",
            json!({ "c": b_course, "t": b_trainee, "e": b_enrollment }),
        )
        .await;
    assert!(
        reads["course"].is_null() && reads["trainee"].is_null() && reads["enrollment"].is_null()
    );
    assert!(reads["courses"]["edges"].as_array().unwrap().is_empty());
    assert!(reads["trainees"]["edges"].as_array().unwrap().is_empty());
    assert!(reads["enrollments"]["edges"].as_array().unwrap().is_empty());

    let writes = [
        (
            "mutation($i: RetireCourseInput!) { retireCourse(input: $i) { position } }",
            json!({ "i": { "courseId": b_course } }),
            "NOT_FOUND",
        ),
        (
            "mutation($i: RegisterForCourseInput!) { registerForCourse(input: $i) { position } }",
            json!({ "i": { "courseId": b_course, "traineeId": b_trainee } }),
            "NOT_FOUND",
        ),
        (
            "mutation($i: EnrollmentInput!) { startCourse(input: $i) { position } }",
            json!({ "i": { "enrollmentId": b_enrollment } }),
            "NOT_FOUND",
        ),
        (
            "mutation($i: WithdrawRegistrationInput!) { withdrawRegistration(input: $i) { position } }",
            json!({ "i": { "enrollmentId": b_enrollment } }),
            "NOT_FOUND",
        ),
    ];
    for (query, variables, expected) in writes {
        assert_eq!(
            app.error_code(Some(&a_admin), query, variables).await,
            expected,
            "{query}"
        );
    }
    // The same course code and email are free in tenant A: uniqueness is per tenant.
    app.create_course(&a_admin, "B-ONLY", 50).await;
    app.register_trainee(&a_admin, "b@example.com").await;

    assert_eq!(app.event_count(b).await, b_events);
    let b_status: String = sqlx::query_scalar(
        "SELECT status FROM enrollments WHERE tenant_id = $1 AND enrollment_id = $2",
    )
    .bind(b.as_uuid())
    .bind(b_enrollment)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(b_status, "REGISTERED");
}

#[tokio::test]
async fn a_trainee_sees_only_its_own_records() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let course = app.create_course(&admin, "MINE", 50).await;
    let me = app.register_trainee(&admin, "me@example.com").await;
    let other = app.register_trainee(&admin, "other@example.com").await;
    let mine = app.register_for_course(&admin, course, Some(me)).await;
    let theirs = app.register_for_course(&admin, course, Some(other)).await;
    let token = app.trainee(me);
    let data = app
        .ok(
            &token,
            "query($o: UUID!, $e: UUID!) { trainee(id: $o) { id } enrollment(id: $e) { id } \
             enrollments { edges { node { id } } } }",
            json!({ "o": other, "e": theirs }),
        )
        .await;
    assert!(data["trainee"].is_null());
    assert!(data["enrollment"].is_null());
    let ids: Vec<&str> = data["enrollments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine.to_string().as_str()]);
    let code = app
        .error_code(
            Some(&token),
            "query($o: UUID!) { enrollments(traineeId: $o) { edges { node { id } } } }",
            json!({ "o": other }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    assert_eq!(
        app.error_code(
            Some(&token),
            "{ trainees { edges { node { id } } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn a_token_of_a_tenant_that_does_not_exist_writes_nothing() {
    let app = TestApp::spawn().await;
    let nobody = coursetrail::domain::TenantId::from_uuid(Uuid::now_v7());
    let admin = app.token_for(nobody, Role::Admin, Uuid::now_v7());
    let code = app
        .error_code(
            Some(&admin),
            "mutation { createCourse(input: { code: \"GHOST-1\", title: \"Ghost\", passingScore: 50 }) { course { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE tenant_id = $1) \
         + (SELECT count(*) FROM courses WHERE tenant_id = $1)",
    )
    .bind(nobody.as_uuid())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0, "nothing of the refused write stays");
}
