//! The `/xapi/statements` export: every statement of a full lifecycle checked by an independent
//! xAPI validator (Learning Locker's, run with Node.js), order, stable ids, no personal data,
//! the audit export's role rules, filters and the resume point.

use crate::helpers::{TestApp, uuid};
use coursetrail::auth::Role;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use uuid::Uuid;

const EXT: &str = "https://coursetrail.example/xapi/extensions";
/// What the dataset writes that identifies a person, or that a trainee wrote: none of it may
/// appear in a statement.
const PERSONAL: [&str; 6] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "Test Trainee",
    "moving to Berlin",
    "\"q1\"",
];

/// Two courses, three trainees: Alice fails then passes and completes, Bob fails and withdraws,
/// Carol only registers.
struct Lifecycle {
    first: Uuid,
    second: Uuid,
    alice: Uuid,
    bob: Uuid,
    bobs_enrollment: Uuid,
}

async fn lifecycle(app: &TestApp, admin: &str) -> Lifecycle {
    let first = app.create_course(admin, "SAFETY", 50).await;
    let second = app.create_course(admin, "FIRSTAID", 70).await;
    let alice = app.register_trainee(admin, "alice@example.com").await;
    let bob = app.register_trainee(admin, "bob@example.com").await;
    let carol = app.register_trainee(admin, "carol@example.com").await;

    let enrollment = app.register_for_course(admin, first, Some(alice)).await;
    app.enrollment_step(admin, "startCourse", enrollment).await;
    for score in [30, 80] {
        let submission = app.submit(admin, enrollment).await;
        app.grade(admin, enrollment, submission, score).await;
    }
    app.enrollment_step(admin, "completeCourse", enrollment)
        .await;

    let bobs_enrollment = app.register_for_course(admin, first, Some(bob)).await;
    app.enrollment_step(admin, "startCourse", bobs_enrollment)
        .await;
    let submission = app.submit(admin, bobs_enrollment).await;
    app.grade(admin, bobs_enrollment, submission, 40).await;
    app.ok(
        admin,
        "mutation($i: WithdrawRegistrationInput!) { withdrawRegistration(input: $i) { position } }",
        json!({ "i": { "enrollmentId": bobs_enrollment, "reason": "moving to Berlin" } }),
    )
    .await;

    app.register_for_course(admin, second, Some(carol)).await;
    Lifecycle {
        first,
        second,
        alice,
        bob,
        bobs_enrollment,
    }
}

/// GETs `/xapi/statements?{query}`: the status and the body as text.
async fn get(app: &TestApp, token: Option<&str>, query: &str) -> (u16, String) {
    let mut request = app
        .client
        .get(format!("http://{}/xapi/statements?{query}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("xapi export");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The statements of a successful export.
async fn statements(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = get(app, Some(token), query).await;
    assert_eq!(status, 200, "{body}");
    let result: Value = serde_json::from_str(&body).expect("a StatementResult");
    assert_eq!(result["more"], "", "{body}");
    result["statements"].as_array().expect("statements").clone()
}

fn verbs(statements: &[Value]) -> Vec<&str> {
    statements
        .iter()
        .map(|s| s["verb"]["display"]["en-US"].as_str().expect("verb"))
        .collect()
}

fn position(statement: &Value) -> i64 {
    statement["context"]["extensions"][format!("{EXT}/position")]
        .as_i64()
        .expect("a position extension")
}

#[tokio::test]
async fn every_statement_of_a_lifecycle_is_valid_xapi_in_log_order_with_stable_ids() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let story = lifecycle(&app, &admin).await;

    let response = app
        .client
        .get(format!("http://{}/xapi/statements", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("xapi export");
    assert_eq!(response.headers()["x-experience-api-version"], "1.0.3");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.expect("body");

    // Every statement passes the independent validator, and the validator is awake: it
    // rejects a statement we break on purpose.
    let report = validate(&body);
    assert_eq!(report["invalid"], json!([]), "{report}");
    assert_eq!(report["checked"], 13);
    let mut broken: Value = serde_json::from_str(&body).unwrap();
    broken["statements"][0]["verb"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    broken["statements"][1]["timestamp"] = json!("yesterday");
    let report = validate(&broken.to_string());
    assert_eq!(
        report["invalid"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    let all: Value = serde_json::from_str(&body).unwrap();
    let all = all["statements"].as_array().unwrap();
    assert_eq!(
        verbs(all),
        [
            "registered",
            "launched",
            "attempted",
            "failed",
            "attempted",
            "passed",
            "completed",
            "registered",
            "launched",
            "attempted",
            "failed",
            "exited",
            "registered"
        ]
    );
    let positions: Vec<i64> = all.iter().map(position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(all[0]["actor"]["account"]["name"], story.alice.to_string());
    assert_eq!(
        all[0]["object"]["id"],
        format!("https://coursetrail.example/courses/{}", story.first)
    );
    assert_eq!(
        all[5]["result"]["score"],
        json!({"scaled": 0.8, "raw": 80, "min": 0, "max": 100})
    );
    assert_eq!(all[5]["result"]["success"], true);
    assert_eq!(all[3]["result"]["success"], false);
    for statement in all {
        for id in [&statement["id"], &statement["context"]["registration"]] {
            let version = uuid(id).get_version_num();
            assert!((1..=5).contains(&version), "{id}: version {version}");
        }
        assert_eq!(statement["context"]["platform"], "coursetrail");
        assert_eq!(
            statement["context"]["extensions"][format!("{EXT}/tenant")],
            json!(app.tenant.as_uuid())
        );
    }
    for personal in PERSONAL {
        assert!(!body.contains(personal), "{personal} in {body}");
    }

    // A second export is the same, byte for byte: ids do not change between exports.
    let (_, again) = get(&app, Some(&admin), "").await;
    assert_eq!(again, body);
}

#[tokio::test]
async fn statements_follow_the_audit_role_rules_and_no_tenant_sees_another() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let story = lifecycle(&app, &admin).await;

    let alices = statements(&app, &app.trainee(story.alice), "").await;
    assert_eq!(alices.len(), 7);
    assert!(
        alices
            .iter()
            .all(|s| s["actor"]["account"]["name"] == story.alice.to_string())
    );
    let (status, body) = get(
        &app,
        Some(&app.trainee(story.alice)),
        &format!("traineeId={}", story.bob),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errors"][0]["extensions"]["code"], "FORBIDDEN");

    // Instructors read course events: every learner statement.
    assert_eq!(statements(&app, &app.instructor(), "").await.len(), 13);

    let other = app.new_tenant("Other").await;
    let stranger = app.token_for(other, Role::Admin, Uuid::now_v7());
    let (status, body) = get(&app, Some(&stranger), "").await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"statements":[],"more":""}"#);
    let theirs = format!("traineeId={}", story.alice);
    assert!(statements(&app, &stranger, &theirs).await.is_empty());

    let (status, _) = get(&app, None, "").await;
    assert_eq!(status, 401);
    let (status, _) = get(&app, Some("garbage"), "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn filters_since_until_and_the_resume_point_narrow_the_statements() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let story = lifecycle(&app, &admin).await;
    let all = statements(&app, &admin, "").await;

    let second = statements(&app, &admin, &format!("courseId={}", story.second)).await;
    assert_eq!(verbs(&second), ["registered"]);
    let bobs = statements(&app, &admin, &format!("streamId={}", story.bobs_enrollment)).await;
    assert_eq!(
        verbs(&bobs),
        ["registered", "launched", "attempted", "failed", "exited"]
    );
    let bob = statements(&app, &admin, &format!("traineeId={}", story.bob)).await;
    assert_eq!(bob, bobs);
    let graded = statements(&app, &admin, "eventTypes=TestGraded,CourseCompleted").await;
    assert_eq!(verbs(&graded), ["failed", "passed", "completed", "failed"]);

    // The resume point: everything after the last position received, nothing twice.
    let resumed = statements(
        &app,
        &admin,
        &format!("afterPosition={}", position(&all[4])),
    )
    .await;
    assert_eq!(resumed, all[5..]);

    // `since` is exclusive and `until` inclusive, on `stored`.
    let stored = all[6]["stored"].as_str().unwrap();
    let since = statements(&app, &admin, &format!("since={}", encode(stored))).await;
    assert_eq!(since, all[7..]);
    let until = statements(&app, &admin, &format!("until={}", encode(stored))).await;
    assert_eq!(until, all[..7]);
    let both = format!("since={}&until={}", encode(stored), encode(stored));
    assert!(statements(&app, &admin, &both).await.is_empty());
    assert_eq!(statements(&app, &admin, "ascending=true").await, all);

    for query in [
        "traineeId=nope",
        "eventTypes=Nope",
        "eventTypes=CourseCreated",
        "eventTypes=TraineeRegistered",
        "afterPosition=-1",
        "since=yesterday",
        "ascending=false",
        "format=ids",
    ] {
        let (status, body) = get(&app, Some(&admin), query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(
            error["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{query}"
        );
    }
}

/// A timestamp as a query value (`+` and `:` escaped).
fn encode(at: &str) -> String {
    at.replace(':', "%3A").replace('+', "%2B")
}

// --- The independent validator ---

/// Where the validator's package files live in the repository.
const VALIDATOR_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/xapi_validator");

/// Runs the validator (Learning Locker's `@learninglocker/xapi-validation`, at the version
/// `package-lock.json` pins) over a StatementResult; returns its report.
fn validate(statement_result: &str) -> Value {
    let dir = installed_validator();
    let mut child = Command::new("node")
        .arg(dir.join("validate.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node.js is needed by this test)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(statement_result.as_bytes())
        .expect("write to the validator");
    let output = child.wait_with_output().expect("the validator's output");
    assert!(
        output.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the validator's JSON report")
}

/// The validator installed under `target/tmp/xapi-validator` with `npm ci` on first use, and
/// again whenever the repository's package files change. Installed in a folder of its own and
/// then renamed into place, so a concurrent test process never sees half an install.
fn installed_validator() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let source = Path::new(VALIDATOR_SOURCE);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xapi-validator");
    let files = ["package.json", "package-lock.json", "validate.js"];
    let current = |dir: &Path| {
        dir.join("node_modules/@learninglocker/xapi-validation")
            .is_dir()
            && files.iter().all(|file| {
                std::fs::read(dir.join(file)).ok() == std::fs::read(source.join(file)).ok()
            })
    };
    if current(&target) {
        return target;
    }
    let staging = target.with_extension(format!("installing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("create the validator's folder");
    for file in files {
        std::fs::copy(source.join(file), staging.join(file)).expect("copy the validator's files");
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(&staging)
        .status()
        .expect("run npm (npm is needed to install this test's xAPI validator)");
    assert!(status.success(), "npm ci failed in {}", staging.display());
    let _ = std::fs::remove_dir_all(&target);
    if std::fs::rename(&staging, &target).is_err() {
        // Another test process installed it meanwhile.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        current(&target),
        "the validator is not installed in {}",
        target.display()
    );
    target
}
