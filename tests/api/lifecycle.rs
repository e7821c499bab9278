//! The lifecycle as a frontend drives it, role by role, and every rejection.

use crate::helpers::{TestApp, fresh_database, uuid};
use coursetrail::db;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn the_full_lifecycle_through_http_for_each_role() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let instructor = app.instructor();

    // An instructor creates the course; an admin registers the trainee.
    let course = app.create_course(&instructor, "safety-101", 70).await;
    let trainee = app.register_trainee(&admin, "ada@example.com").await;
    let trainee_token = app.trainee(trainee);

    // The trainee registers itself, starts, submits.
    let enrollment = app.register_for_course(&trainee_token, course, None).await;
    let started = app
        .enrollment_step(&trainee_token, "startCourse", enrollment)
        .await;
    assert_eq!(started["enrollment"]["status"], "STARTED");
    let submission = app.submit(&trainee_token, enrollment).await;

    // The instructor grades; the trainee completes.
    let graded = app.grade(&instructor, enrollment, submission, 85).await;
    assert_eq!(graded["gradeSubmission"]["enrollment"]["bestScore"], 85);
    let completed = app
        .enrollment_step(&trainee_token, "completeCourse", enrollment)
        .await;
    assert_eq!(completed["enrollment"]["status"], "COMPLETED");
    assert_eq!(completed["enrollment"]["version"], 5);
    // Tenant positions: course, trainee, then five enrollment events.
    // Positions are 64-bit, sent as strings.
    assert_eq!(completed["position"], "7");

    // The projections show it immediately.
    assert_the_trainee_sees_its_completion(&app, &trainee_token, trainee, enrollment).await;
    assert_the_admin_lists_the_completion(&app, &admin, course).await;

    // An admin drives another trainee's enrollment, and withdraws it.
    let other = app.register_trainee(&admin, "bob@example.com").await;
    let second = app.register_for_course(&admin, course, Some(other)).await;
    let withdrawn = app
        .ok(
            &admin,
            "mutation($i: WithdrawRegistrationInput!) { withdrawRegistration(input: $i) { enrollment { status withdrawalReason } } }",
            json!({ "i": { "enrollmentId": second, "reason": "changed team" } }),
        )
        .await;
    assert_eq!(
        withdrawn["withdrawRegistration"]["enrollment"]["status"],
        "WITHDRAWN"
    );
    assert_eq!(
        withdrawn["withdrawRegistration"]["enrollment"]["withdrawalReason"],
        "changed team"
    );
    // After withdrawal the trainee may register again.
    app.register_for_course(&admin, course, Some(other)).await;

    // Retiring the course closes it to new registrations.
    let retired = app
        .ok(
            &instructor,
            "mutation($i: RetireCourseInput!) { retireCourse(input: $i) { course { retired } } }",
            json!({ "i": { "courseId": course } }),
        )
        .await;
    assert_eq!(retired["retireCourse"]["course"]["retired"], true);
    let late = app.register_trainee(&admin, "late@example.com").await;
    let code = app
        .error_code(
            Some(&admin),
            REGISTER,
            json!({ "i": { "courseId": course, "traineeId": late } }),
        )
        .await;
    assert_eq!(code, "INVALID_STATE");
}

/// The trainee reads its own completed enrollment, its listing and itself.
async fn assert_the_trainee_sees_its_completion(
    app: &TestApp,
    trainee_token: &str,
    trainee: Uuid,
    enrollment: Uuid,
) {
    let data = app
        .ok(
            trainee_token,
            "query($id: UUID!) { enrollment(id: $id) { status course { code } trainee { email } \
             submissions { id score passed } completedAt } \
             enrollments { edges { node { id } } } me { role trainee { id } } }",
            json!({ "id": enrollment }),
        )
        .await;
    assert_eq!(data["enrollment"]["status"], "COMPLETED");
    assert_eq!(data["enrollment"]["course"]["code"], "SAFETY-101");
    assert_eq!(data["enrollment"]["trainee"]["email"], "ada@example.com");
    assert_eq!(data["enrollment"]["submissions"][0]["score"], 85);
    assert_eq!(data["enrollment"]["submissions"][0]["passed"], true);
    assert!(data["enrollment"]["completedAt"].is_string());
    assert_eq!(
        uuid(&data["enrollments"]["edges"][0]["node"]["id"]),
        enrollment
    );
    assert_eq!(data["me"]["role"], "TRAINEE");
    assert_eq!(uuid(&data["me"]["trainee"]["id"]), trainee);
}

/// The admin's listings show the one course, the one trainee and the one completion.
async fn assert_the_admin_lists_the_completion(app: &TestApp, admin: &str, course: Uuid) {
    let listing = app
        .ok(
            admin,
            "{ courses { edges { node { id code retired } } } trainees { edges { node { email } } } \
             enrollments(status: COMPLETED) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(uuid(&listing["courses"]["edges"][0]["node"]["id"]), course);
    assert_eq!(
        listing["trainees"]["edges"][0]["node"]["email"],
        "ada@example.com"
    );
    assert_eq!(listing["enrollments"]["edges"].as_array().unwrap().len(), 1);
}

const REGISTER: &str =
    "mutation($i: RegisterForCourseInput!) { registerForCourse(input: $i) { position } }";
const START: &str = "mutation($i: EnrollmentInput!) { startCourse(input: $i) { position } }";
const COMPLETE: &str = "mutation($i: EnrollmentInput!) { completeCourse(input: $i) { position } }";
const SUBMIT: &str = "mutation($i: SubmitTestInput!) { submitTest(input: $i) { position } }";
const GRADE: &str =
    "mutation($i: GradeSubmissionInput!) { gradeSubmission(input: $i) { position } }";
const RETIRE: &str = "mutation($i: RetireCourseInput!) { retireCourse(input: $i) { position } }";
const CREATE: &str = "mutation($i: CreateCourseInput!) { createCourse(input: $i) { position } }";
const NEW_TRAINEE: &str =
    "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { position } }";

/// A tenant with a trainee in every state a rejection needs: registered for one course,
/// started on another with a failed submission, and a retired course.
struct Rejections {
    admin: String,
    instructor: String,
    trainee: Uuid,
    trainee_token: String,
    course: Uuid,
    registered: Uuid,
    started: Uuid,
    failed_submission: Uuid,
    retired_course: Uuid,
}

/// One rejection case: what it is, the mutation, its input, the expected code.
type Case = (&'static str, &'static str, serde_json::Value, &'static str);

fn enrollment_input(id: Uuid) -> serde_json::Value {
    json!({ "i": { "enrollmentId": id } })
}

impl Rejections {
    async fn set_up(app: &TestApp) -> Self {
        let admin = app.admin();
        let instructor = app.instructor();
        let course = app.create_course(&admin, "C-1", 70).await;
        let trainee = app.register_trainee(&admin, "t@example.com").await;
        let trainee_token = app.trainee(trainee);
        let registered = app.register_for_course(&trainee_token, course, None).await;
        let started = app
            .register_for_course(
                &admin,
                app.create_course(&admin, "C-2", 70).await,
                Some(trainee),
            )
            .await;
        app.enrollment_step(&trainee_token, "startCourse", started)
            .await;
        let failed_submission = app.submit(&trainee_token, started).await;
        app.grade(&instructor, started, failed_submission, 10).await;
        let retired_course = app.create_course(&admin, "OLD", 50).await;
        app.ok(
            &admin,
            RETIRE,
            json!({ "i": { "courseId": retired_course } }),
        )
        .await;
        Self {
            admin,
            instructor,
            trainee,
            trainee_token,
            course,
            registered,
            started,
            failed_submission,
            retired_course,
        }
    }

    fn registration_cases(&self) -> Vec<Case> {
        let (course, trainee) = (self.course, self.trainee);
        vec![
            (
                "already registered",
                REGISTER,
                json!({ "i": { "courseId": course, "traineeId": trainee } }),
                "ALREADY_REGISTERED",
            ),
            (
                "unknown course",
                REGISTER,
                json!({ "i": { "courseId": Uuid::now_v7(), "traineeId": trainee } }),
                "NOT_FOUND",
            ),
            (
                "unknown trainee",
                REGISTER,
                json!({ "i": { "courseId": course, "traineeId": Uuid::now_v7() } }),
                "NOT_FOUND",
            ),
            (
                "retired course",
                REGISTER,
                json!({ "i": { "courseId": self.retired_course, "traineeId": trainee } }),
                "INVALID_STATE",
            ),
            (
                "admin without a trainee",
                REGISTER,
                json!({ "i": { "courseId": course } }),
                "BAD_USER_INPUT",
            ),
        ]
    }

    fn enrollment_cases(&self) -> Vec<Case> {
        let (registered, started) = (self.registered, self.started);
        vec![
            (
                "start twice",
                START,
                enrollment_input(started),
                "INVALID_STATE",
            ),
            (
                "unknown enrollment",
                START,
                enrollment_input(Uuid::now_v7()),
                "NOT_FOUND",
            ),
            (
                "grading an unknown enrollment",
                GRADE,
                json!({ "i": { "enrollmentId": Uuid::now_v7(), "submissionId": Uuid::now_v7(), "score": 50 } }),
                "NOT_FOUND",
            ),
            (
                "submit before start",
                SUBMIT,
                json!({ "i": { "enrollmentId": registered, "answers": {} } }),
                "INVALID_STATE",
            ),
            (
                "complete without a pass",
                COMPLETE,
                enrollment_input(started),
                "INVALID_STATE",
            ),
            (
                "complete before anything",
                COMPLETE,
                enrollment_input(registered),
                "INVALID_STATE",
            ),
            ("grade twice", GRADE, self.regrade(), "INVALID_STATE"),
            (
                "grade unknown submission",
                GRADE,
                json!({ "i": { "enrollmentId": started, "submissionId": Uuid::now_v7(), "score": 90 } }),
                "INVALID_STATE",
            ),
        ]
    }

    fn catalogue_cases(&self) -> Vec<Case> {
        vec![
            (
                "retire twice",
                RETIRE,
                json!({ "i": { "courseId": self.retired_course } }),
                "INVALID_STATE",
            ),
            (
                "duplicate course code",
                CREATE,
                json!({ "i": { "code": "c-1", "title": "Again", "passingScore": 50 } }),
                "ALREADY_EXISTS",
            ),
            (
                "duplicate email",
                NEW_TRAINEE,
                json!({ "i": { "email": "T@example.com", "name": "Twin" } }),
                "ALREADY_EXISTS",
            ),
            (
                "duplicate trainee id",
                NEW_TRAINEE,
                json!({ "i": { "email": "x@example.com", "name": "X", "traineeId": self.trainee } }),
                "ALREADY_EXISTS",
            ),
        ]
    }

    /// A second grade for the already graded submission.
    fn regrade(&self) -> serde_json::Value {
        json!({ "i": { "enrollmentId": self.started, "submissionId": self.failed_submission, "score": 90 } })
    }

    /// The trainee drives its own enrollment; the admin sends everything else.
    fn token_for(&self, query: &str) -> &str {
        if query == START || query == SUBMIT || query == COMPLETE {
            &self.trainee_token
        } else {
            &self.admin
        }
    }
}

/// Each case: the mutation, its input, the expected code. Every one must append nothing.
#[tokio::test]
async fn every_rejection_returns_its_code_and_appends_nothing() {
    let app = TestApp::spawn().await;
    let given = Rejections::set_up(&app).await;

    let before = app.event_count(app.tenant).await;
    let cases = [
        given.registration_cases(),
        given.enrollment_cases(),
        given.catalogue_cases(),
    ]
    .concat();
    for (what, query, variables, expected) in cases {
        let token = given.token_for(query);
        let code = app.error_code(Some(token), query, variables).await;
        assert_eq!(code, expected, "{what}");
    }
    // Role rejections.
    let code = app
        .error_code(
            Some(&given.trainee_token),
            CREATE,
            json!({ "i": { "code": "X", "title": "X", "passingScore": 1 } }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    let code = app
        .error_code(Some(&given.trainee_token), GRADE, given.regrade())
        .await;
    assert_eq!(code, "FORBIDDEN");
    let code = app
        .error_code(
            Some(&given.instructor),
            START,
            enrollment_input(given.registered),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    // Another trainee cannot touch this trainee's enrollment.
    let stranger = app.trainee(Uuid::now_v7());
    assert_eq!(
        app.error_code(Some(&stranger), START, enrollment_input(given.registered))
            .await,
        "NOT_FOUND"
    );
    assert_eq!(
        app.error_code(None, START, enrollment_input(given.registered))
            .await,
        "UNAUTHENTICATED"
    );

    assert_eq!(
        app.event_count(app.tenant).await,
        before,
        "a rejected command appended events"
    );
    let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM courses WHERE tenant_id = $1")
        .bind(app.tenant.as_uuid())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(projected, 3, "a rejected command left a projection row");
}

#[tokio::test]
async fn a_retried_command_returns_the_first_result_and_appends_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let command_id = Uuid::now_v7();
    let create = "mutation($i: CreateCourseInput!) { createCourse(input: $i) { course { id } position replayed } }";
    let input = json!({ "i": { "code": "IDEM", "title": "Idempotent", "passingScore": 60, "commandId": command_id } });
    let first = app.ok(&admin, create, input.clone()).await;
    let events = app.event_count(app.tenant).await;
    let second = app.ok(&admin, create, input).await;
    assert_eq!(
        first["createCourse"]["course"],
        second["createCourse"]["course"]
    );
    assert_eq!(
        first["createCourse"]["position"],
        second["createCourse"]["position"]
    );
    assert_eq!(first["createCourse"]["replayed"], false);
    assert_eq!(second["createCourse"]["replayed"], true);
    assert_eq!(app.event_count(app.tenant).await, events);

    // The same id for a different command, another input or another caller is refused with
    // its own code, not silently answered from the first command's record…
    let code = app
        .error_code(
            Some(&admin),
            "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { position } }",
            json!({ "i": { "email": "a@example.com", "name": "A", "commandId": command_id } }),
        )
        .await;
    assert_eq!(code, "COMMAND_ID_REUSED");
    let other_input = json!({ "i": { "code": "IDEM", "title": "Another title", "passingScore": 60, "commandId": command_id } });
    let code = app.error_code(Some(&admin), create, other_input).await;
    assert_eq!(code, "COMMAND_ID_REUSED");
    let other_admin = app.admin();
    let same_input = json!({ "i": { "code": "IDEM", "title": "Idempotent", "passingScore": 60, "commandId": command_id } });
    let code = app
        .error_code(Some(&other_admin), create, same_input.clone())
        .await;
    assert_eq!(code, "COMMAND_ID_REUSED");
    // …while the same input written differently (fields reordered, an optional field given
    // as null, the id inline instead of a variable) is still the retry it is.
    let reordered = json!({ "i": { "commandId": command_id, "passingScore": 60, "title": "Idempotent", "code": "IDEM" } });
    let again = app.ok(&admin, create, reordered).await;
    assert_eq!(again["createCourse"]["replayed"], true);
    let inline = format!(
        "mutation {{ createCourse(input: {{code: \"IDEM\", title: \"Idempotent\", passingScore: 60, commandId: \"{command_id}\"}}) {{ position replayed }} }}"
    );
    let again = app.ok(&admin, &inline, json!({})).await;
    assert_eq!(again["createCourse"]["replayed"], true);
    assert_eq!(app.event_count(app.tenant).await, events);

    // A retried submitTest returns the same submission id.
    let course = uuid(&first["createCourse"]["course"]["id"]);
    let trainee = app.register_trainee(&admin, "s@example.com").await;
    let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
    app.enrollment_step(&admin, "startCourse", enrollment).await;
    let submit =
        "mutation($i: SubmitTestInput!) { submitTest(input: $i) { submissionId position } }";
    let input = json!({ "i": { "enrollmentId": enrollment, "answers": [1, 2], "commandId": Uuid::now_v7() } });
    let a = app.ok(&admin, submit, input.clone()).await;
    let b = app.ok(&admin, submit, input).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn after_its_database_connections_were_cut_an_idle_server_answers_the_next_command() {
    let (pool, url) = fresh_database().await;
    // The server's pool checks a connection idle `db::PING_AFTER_IDLE` (5 s) before using it;
    // here every one is checked (idle 0 s or more), so the test need not wait 5 s.
    let server_pool = db::connect_pinging(&url, 8, Duration::from_secs(10), Duration::ZERO)
        .await
        .unwrap();
    let app = TestApp::spawn_over(pool, url, server_pool.clone(), |_| {}, |_| {}).await;
    let admin = app.admin();
    app.create_course(&admin, "BEFORE", 50).await;
    // A few connections open and idle in the pool, whatever the command itself needed.
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| server_pool.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    // What a database restart or a failover does to the pool: every connection is gone. Cut
    // from a connection of its own, so that none of the pool's survives.
    let mut cutter = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend') t",
    )
    .fetch_one(&mut cutter)
    .await
    .unwrap();
    assert!(cut >= 1, "no pooled connection was open");
    // The dead connections fail their check and are replaced instead of failing the command.
    let course = app.create_course(&admin, "AFTER", 50).await;
    assert!(!course.is_nil());
}

#[tokio::test]
async fn a_write_the_database_fails_is_unavailable_and_a_retry_with_its_command_id_writes_it_once()
{
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let command_id = Uuid::now_v7();
    let input = json!({ "i": { "code": "FULL-1", "title": "Disk full", "passingScore": 60, "commandId": command_id } });
    // The head increment fails, as a write on a full disk or a dying node does: the
    // database reports an error about the write itself, not a refusal.
    sqlx::query(
        "ALTER TABLE tenant_heads ADD CONSTRAINT write_fails CHECK (last_position < 0) NOT VALID",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let events = app.event_count(app.tenant).await;
    let (status, body) = app.post(Some(&admin), CREATE, input.clone()).await;
    let error = &body["errors"][0];
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        error["extensions"]["code"], "DATABASE_UNAVAILABLE",
        "{body}"
    );
    assert_eq!(error["extensions"]["retryAfterSeconds"], 1, "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("same commandId"),
        "{body}"
    );
    assert_eq!(app.event_count(app.tenant).await, events, "nothing written");

    sqlx::query("ALTER TABLE tenant_heads DROP CONSTRAINT write_fails")
        .execute(&app.pool)
        .await
        .unwrap();
    let first = app.ok(&admin, CREATE, input.clone()).await;
    let again = app.ok(&admin, CREATE, input).await;
    assert_eq!(first, again, "the retry's retry replays it");
    assert_eq!(
        app.event_count(app.tenant).await,
        events + 1,
        "written once"
    );
}
