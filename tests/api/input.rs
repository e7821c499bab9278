//! Bad input gets BAD_USER_INPUT (or the HTTP spec's 400) and loses nothing.

use crate::helpers::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

const CREATE: &str = "mutation($i: CreateCourseInput!) { createCourse(input: $i) { position } }";
const REGISTER: &str =
    "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { position } }";
const GRADE: &str =
    "mutation($i: GradeSubmissionInput!) { gradeSubmission(input: $i) { position } }";
const SUBMIT: &str = "mutation($i: SubmitTestInput!) { submitTest(input: $i) { position } }";

/// Each case: what is wrong, the mutation, its input. Every one is a client error.
fn bad_inputs(enrollment: Uuid, submission: Uuid) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "invalid uuid",
            GRADE,
            json!({ "i": { "enrollmentId": "not-a-uuid", "submissionId": submission, "score": 50 } }),
        ),
        (
            "negative score",
            GRADE,
            json!({ "i": { "enrollmentId": enrollment, "submissionId": submission, "score": -1 } }),
        ),
        (
            "score over 100",
            GRADE,
            json!({ "i": { "enrollmentId": enrollment, "submissionId": submission, "score": 101 } }),
        ),
        (
            "score beyond Int",
            GRADE,
            json!({ "i": { "enrollmentId": enrollment, "submissionId": submission, "score": 1e12 } }),
        ),
        (
            "empty title",
            CREATE,
            json!({ "i": { "code": "E", "title": "", "passingScore": 50 } }),
        ),
        (
            "blank code",
            CREATE,
            json!({ "i": { "code": "   ", "title": "T", "passingScore": 50 } }),
        ),
        (
            "NUL in a title",
            CREATE,
            json!({ "i": { "code": "N", "title": "a\u{0}b", "passingScore": 50 } }),
        ),
        (
            "NUL in a name",
            REGISTER,
            json!({ "i": { "email": "n@example.com", "name": "a\u{0}" } }),
        ),
        (
            "bad email",
            REGISTER,
            json!({ "i": { "email": "nope", "name": "N" } }),
        ),
        (
            "NUL in answers",
            SUBMIT,
            json!({ "i": { "enrollmentId": enrollment, "answers": { "q": "\u{0}" } } }),
        ),
        (
            "passing score out of range",
            CREATE,
            json!({ "i": { "code": "P", "title": "T", "passingScore": 500 } }),
        ),
        ("missing field", CREATE, json!({ "i": { "code": "M" } })),
    ]
}

#[tokio::test]
async fn bad_input_is_a_clear_client_error_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let course = app.create_course(&admin, "OK", 50).await;
    let trainee = app.register_trainee(&admin, "ok@example.com").await;
    let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
    app.enrollment_step(&admin, "startCourse", enrollment).await;
    let submission = app.submit(&admin, enrollment).await;
    let before = app.event_count(app.tenant).await;

    for (what, query, variables) in bad_inputs(enrollment, submission) {
        let (status, body) = app.post(Some(&admin), query, variables).await;
        let code = body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("");
        assert!(
            code == "BAD_USER_INPUT" || (status == 400 && code == "GRAPHQL_VALIDATION_FAILED"),
            "{what}: {status} {body}"
        );
        assert!(status < 500, "{what}: {status}");
    }
    // A 10 MB string is refused before it is parsed.
    let huge = "x".repeat(10 * 1024 * 1024);
    let (status, body) = app
        .post(
            Some(&admin),
            CREATE,
            json!({ "i": { "code": "H", "title": huge, "passingScore": 50 } }),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    // Pagination arguments are bounded.
    let code = app
        .error_code(
            Some(&admin),
            "{ courses(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = app
        .error_code(
            Some(&admin),
            "{ courses(after: \"garbage\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");

    assert_eq!(app.event_count(app.tenant).await, before);
}

#[tokio::test]
async fn deep_or_huge_queries_are_refused_before_execution() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    // Deeper than the limit, through the schema's own cycle (enrollment -> course -> ...)
    // is not possible, so nest introspection types instead.
    let mut deep = String::from("{ __schema { types { fields { type { ");
    for _ in 0..20 {
        deep.push_str("ofType { ");
    }
    deep.push_str("name");
    deep.push_str(&" }".repeat(20 + 6));
    let (status, body) = app.post(Some(&admin), &deep, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.get("data").is_none());
    let code = body["errors"][0]["extensions"]["code"].as_str().unwrap();
    assert!(
        code == "GRAPHQL_PARSE_FAILED" || code == "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );

    // A query made of thousands of aliased fields is over the complexity limit.
    let wide: String = (0..3000).map(|i| format!("a{i}: me {{ role }} ")).collect();
    let (status, body) = app
        .post(Some(&admin), &format!("{{ {wide} }}"), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
}

/// Fragments `F1`…`Fn`, each spreading the one before ten times: 10ⁿ fields from a few
/// hundred bytes.
fn fragment_bomb(levels: usize) -> String {
    let mut query = format!("query {{ ...F{levels} }} fragment F1 on Query {{ __typename }}");
    for level in 2..=levels {
        let spreads = vec![format!("...F{}", level - 1); 10].join(" ");
        query.push_str(&format!(" fragment F{level} on Query {{ {spreads} }}"));
    }
    query
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_query_that_expands_to_billions_of_fields_is_refused_at_once_and_health_stays_fast()
{
    let app = TestApp::spawn().await;
    let health = format!("http://{}/health", app.address);
    for levels in [8, 9, 40] {
        let bomb = fragment_bomb(levels);
        assert!(bomb.len() <= 8 * 1024);
        let client = app.client.clone();
        let url = app.url();
        // Sent anonymously, over POST and as a batch of ten, while /health is polled.
        let attack = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let single = client
                .post(&url)
                .header("content-type", "application/json")
                .json(&json!({ "query": bomb }))
                .send()
                .await
                .unwrap();
            let status = single.status().as_u16();
            let body: serde_json::Value = single.json().await.unwrap();
            let batch: Vec<_> = (0..10).map(|_| json!({ "query": bomb })).collect();
            let batched = client
                .post(&url)
                .header("content-type", "application/json")
                .json(&batch)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (status, body, batched, started.elapsed())
        });
        let mut slowest = std::time::Duration::ZERO;
        while !attack.is_finished() {
            let started = std::time::Instant::now();
            let ok = app.client.get(&health).send().await.unwrap().status();
            assert!(ok.is_success());
            slowest = slowest.max(started.elapsed());
        }
        let (status, body, batched, took) = attack.await.unwrap();
        // Sent as `application/json`: a refused document is 200 with its errors, as the
        // GraphQL-over-HTTP specification asks of that media type.
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );
        assert_eq!(batched, 200);
        // Generous bounds for a debug build on a shared machine; the bench-free point is that
        // nothing here grows with the expansion (10⁸ vs 10⁴⁰ fields).
        assert!(
            took < std::time::Duration::from_secs(2),
            "{levels} levels took {took:?}"
        );
        assert!(
            slowest < std::time::Duration::from_secs(1),
            "/health took {slowest:?}"
        );
    }
    // A real operation with fragments still runs.
    let data = app
        .ok(
            &app.admin(),
            "query { ...Me } fragment Me on Query { me { role } }",
            json!({}),
        )
        .await;
    assert_eq!(data["me"]["role"], "ADMIN");
}
