//! Replays: projection rebuilds reproduce the live tables, reports read the log as of a time.

use crate::helpers::{TestApp, caller, position};
use coursetrail::app::{App, AppError, Caller, CommandOptions};
use coursetrail::auth::Role;
use coursetrail::domain::values::{Answers, CourseCode, CourseTitle, Email, PersonName, Score};
use coursetrail::domain::{CourseId, EnrollmentId, SubmissionId, TenantId, TraineeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Every projection row of a tenant, as text, in a stable order.
pub async fn snapshot(pool: &PgPool, tenant: TenantId) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, key) in [
        ("courses", "course_id"),
        ("trainees", "trainee_id"),
        ("enrollments", "enrollment_id"),
        ("submissions", "submission_id"),
    ] {
        let sql = format!("SELECT t::text FROM {table} t WHERE tenant_id = $1 ORDER BY {key}");
        let table_rows: Vec<String> = sqlx::query_scalar(&sql)
            .bind(tenant.as_uuid())
            .fetch_all(pool)
            .await
            .unwrap();
        rows.extend(table_rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    rows
}

/// Drives `steps` random commands — valid and invalid, from every role — through the
/// application, and returns how many succeeded.
async fn random_history(app: &App, tenant: TenantId, seed: u64, steps: usize) -> usize {
    random_history_on(&[app], tenant, seed, steps)
        .await
        .iter()
        .filter(|outcome| **outcome == "ok")
        .count()
}

/// What a random history has created so far, to aim its later commands at.
struct World {
    tenant: TenantId,
    admin: Caller,
    instructor: Caller,
    options: CommandOptions,
    courses: Vec<CourseId>,
    trainees: Vec<TraineeId>,
    enrollments: Vec<(EnrollmentId, TraineeId)>,
    submissions: Vec<(EnrollmentId, SubmissionId)>,
}

/// A random index below `n` (0 when `n` is 0).
fn pick(rng: &mut StdRng, n: usize) -> usize {
    rng.random_range(0..n.max(1))
}

impl World {
    fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            admin: caller(tenant, Role::Admin, Uuid::now_v7()),
            instructor: caller(tenant, Role::Instructor, Uuid::now_v7()),
            options: CommandOptions::default(),
            courses: Vec::new(),
            trainees: Vec::new(),
            enrollments: Vec::new(),
            submissions: Vec::new(),
        }
    }

    /// The trainee itself, as the caller of its own enrollment's commands.
    fn as_trainee(&self, trainee: TraineeId) -> Caller {
        caller(self.tenant, Role::Trainee, trainee.as_uuid())
    }

    /// A course with one of twelve codes: some are duplicates, on purpose.
    async fn create_course(&mut self, app: &App, rng: &mut StdRng) -> Result<(), AppError> {
        let code = format!("C{}", rng.random_range(0..12)); // duplicates on purpose
        app.commands()
            .create_course(
                &self.instructor,
                &self.options,
                CourseCode::parse(&code).unwrap(),
                CourseTitle::parse("Course").unwrap(),
                Score::parse("p", rng.random_range(30..90)).unwrap(),
            )
            .await
            .map(|o| self.courses.push(CourseId::from_uuid(o.stream_id)))
    }

    /// A trainee with one of forty e-mails: some are duplicates, on purpose.
    async fn register_trainee(&mut self, app: &App, rng: &mut StdRng) -> Result<(), AppError> {
        let email = format!("t{}@example.com", rng.random_range(0..40));
        app.commands()
            .register_trainee(
                &self.admin,
                &self.options,
                Email::parse(&email).unwrap(),
                PersonName::parse("Trainee").unwrap(),
                None,
            )
            .await
            .map(|o| self.trainees.push(TraineeId::from_uuid(o.stream_id)))
    }

    /// One random command (or none, when what it needs does not exist yet).
    async fn random_command(
        &mut self,
        app: &App,
        rng: &mut StdRng,
        step: usize,
    ) -> Result<(), AppError> {
        let options = self.options.clone();
        match rng.random_range(0..10) {
            0 => self.create_course(app, rng).await,
            1 => self.register_trainee(app, rng).await,
            2 | 3 if !self.courses.is_empty() && !self.trainees.is_empty() => {
                let course = self.courses[pick(rng, self.courses.len())];
                let trainee = self.trainees[pick(rng, self.trainees.len())];
                let who = self.as_trainee(trainee);
                app.commands()
                    .register_for_course(&who, &options, course, None)
                    .await
                    .map(|o| {
                        let enrollment = EnrollmentId::from_uuid(o.stream_id);
                        self.enrollments.push((enrollment, trainee));
                    })
            }
            4 if !self.enrollments.is_empty() => {
                let (enrollment, trainee) = self.enrollments[pick(rng, self.enrollments.len())];
                let who = self.as_trainee(trainee);
                app.commands()
                    .start_course(&who, &options, enrollment)
                    .await
                    .map(drop)
            }
            5 if !self.enrollments.is_empty() => {
                let (enrollment, trainee) = self.enrollments[pick(rng, self.enrollments.len())];
                let who = self.as_trainee(trainee);
                let answers = Answers::parse(json!({ "step": step })).unwrap();
                app.commands()
                    .submit_test(&who, &options, enrollment, answers)
                    .await
                    .map(|o| {
                        self.submissions.push((enrollment, o.submission_id));
                    })
            }
            6 if !self.submissions.is_empty() => {
                let (enrollment, submission) = self.submissions[pick(rng, self.submissions.len())];
                let score = Score::parse("s", rng.random_range(0..=100)).unwrap();
                app.commands()
                    .grade_submission(&self.instructor, &options, enrollment, submission, score)
                    .await
                    .map(drop)
            }
            7 if !self.enrollments.is_empty() => {
                let (enrollment, trainee) = self.enrollments[pick(rng, self.enrollments.len())];
                let who = self.as_trainee(trainee);
                app.commands()
                    .complete_course(&who, &options, enrollment)
                    .await
                    .map(drop)
            }
            8 if !self.enrollments.is_empty() => {
                let (enrollment, _) = self.enrollments[pick(rng, self.enrollments.len())];
                app.commands()
                    .withdraw_registration(&self.admin, &options, enrollment, None)
                    .await
                    .map(drop)
            }
            9 if !self.courses.is_empty() && rng.random_bool(0.2) => {
                let course = self.courses[pick(rng, self.courses.len())];
                app.commands()
                    .retire_course(&self.admin, &options, course)
                    .await
                    .map(drop)
            }
            _ => Ok(()),
        }
    }
}

/// [`random_history`] through several servers (`App`s) sharing the database: each command goes
/// to one of them at random, so each decides on streams the others changed meanwhile. Returns
/// each step's outcome ("ok" or the error code). The commands depend only on `seed` and on the
/// outcomes so far, not on how many servers there are (servers are chosen by a second random
/// sequence), so one seed gives the same outcomes through any number of servers.
pub async fn random_history_on(
    servers: &[&App],
    tenant: TenantId,
    seed: u64,
    steps: usize,
) -> Vec<&'static str> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server_choice = StdRng::seed_from_u64(!seed);
    let mut world = World::new(tenant);
    let mut outcomes = Vec::with_capacity(steps);
    for step in 0..steps {
        let app = servers[server_choice.random_range(0..servers.len())];
        match world.random_command(app, &mut rng, step).await {
            Ok(()) => outcomes.push("ok"),
            Err(AppError::Internal(error)) => panic!("step {step}: internal error {error:#}"),
            // A domain rejection: part of the history being tested.
            Err(error) => outcomes.push(error.code()),
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_projections_equal_the_live_ones_row_for_row() {
    let test = TestApp::spawn().await;
    let app = App::new(test.pool.clone());
    for seed in [1_u64, 2, 3] {
        let tenant = test.new_tenant(&format!("seed {seed}")).await;
        let succeeded = random_history(&app, tenant, seed, 300).await;
        assert!(
            succeeded > 50,
            "seed {seed}: only {succeeded} commands succeeded"
        );
        let live = snapshot(&test.pool, tenant).await;
        let admin = caller(tenant, Role::Admin, Uuid::now_v7());
        let report = app
            .reads()
            .rebuild_projections(&admin, |_| {})
            .await
            .unwrap();
        assert_eq!(report.events as i64, test.event_count(tenant).await);
        let rebuilt = snapshot(&test.pool, tenant).await;
        assert_eq!(live.len(), rebuilt.len(), "seed {seed}");
        for (a, b) in live.iter().zip(&rebuilt) {
            assert_eq!(a, b, "seed {seed}");
        }
    }
    // A trashed projection comes back identical, and a neighbour tenant is not touched.
    let neighbour = test.new_tenant("neighbour").await;
    random_history(&app, neighbour, 10, 100).await;
    let neighbour_rows = snapshot(&test.pool, neighbour).await;
    assert!(!neighbour_rows.is_empty());
    let tenant = test.new_tenant("trashed").await;
    random_history(&app, tenant, 9, 200).await;
    let live = snapshot(&test.pool, tenant).await;
    sqlx::query("UPDATE enrollments SET status = 'WITHDRAWN', best_score = 0 WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .execute(&test.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM courses WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .execute(&test.pool)
        .await
        .unwrap();
    app.reads()
        .rebuild_projections(&caller(tenant, Role::Admin, Uuid::now_v7()), |_| {})
        .await
        .unwrap();
    assert_eq!(snapshot(&test.pool, tenant).await, live);
    assert_eq!(snapshot(&test.pool, neighbour).await, neighbour_rows);
}

#[tokio::test]
async fn rebuild_through_graphql_is_admin_only_and_reads_keep_working() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let course = app.create_course(&admin, "RB", 50).await;
    let trainee = app.register_trainee(&admin, "rb@example.com").await;
    app.register_for_course(&admin, course, Some(trainee)).await;
    let rebuild = "mutation { rebuildProjections { eventsReplayed courses trainees enrollments submissions } }";
    let data = app.ok(&admin, rebuild, json!({})).await;
    assert_eq!(data["rebuildProjections"]["eventsReplayed"], "3");
    assert_eq!(data["rebuildProjections"]["enrollments"], 1);
    assert_eq!(
        app.error_code(Some(&app.instructor()), rebuild, json!({}))
            .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            &admin,
            "{ enrollments { edges { node { status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["enrollments"]["edges"][0]["node"]["status"],
        "REGISTERED"
    );
}

/// Three trainees, each registered for `course` and started.
async fn three_started_enrollments(app: &TestApp, admin: &str, course: Uuid) -> Vec<Uuid> {
    let mut enrollments = Vec::new();
    for n in 0..3 {
        let trainee = app
            .register_trainee(admin, &format!("asof{n}@example.com"))
            .await;
        let enrollment = app.register_for_course(admin, course, Some(trainee)).await;
        app.enrollment_step(admin, "startCourse", enrollment).await;
        enrollments.push(enrollment);
    }
    enrollments
}

/// The time of the tenant's last event so far.
async fn last_recorded_at(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT max(recorded_at) FROM events WHERE tenant_id = $1")
        .bind(app.tenant.as_uuid())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The first two enrollments pass and complete; the third withdraws.
async fn two_complete_and_one_withdraws(
    app: &TestApp,
    admin: &str,
    instructor: &str,
    enrollments: &[Uuid],
) {
    for enrollment in &enrollments[..2] {
        let submission = app.submit(admin, *enrollment).await;
        app.grade(instructor, *enrollment, submission, 90).await;
        app.enrollment_step(admin, "completeCourse", *enrollment)
            .await;
    }
    app.ok(
        admin,
        "mutation($i: WithdrawRegistrationInput!) { withdrawRegistration(input: $i) { position } }",
        json!({ "i": { "enrollmentId": enrollments[2] } }),
    )
    .await;
}

/// A duration report row's `(count, stillOpen, endedEarly)`.
fn counts(row: &serde_json::Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        row["count"].as_u64(),
        row["stillOpen"].as_u64(),
        row["endedEarly"].as_u64(),
    )
}

/// As of `as_of` the enrollment was started without submissions, and before everything it
/// did not exist.
async fn assert_the_enrollment_as_it_was(
    app: &TestApp,
    admin: &str,
    enrollment: Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
) {
    let past = app.ok(admin, "query($id: UUID!, $t: DateTime!) { enrollment(id: $id, asOf: $t) { status submissions { id } } }",
        json!({ "id": enrollment, "t": as_of.to_rfc3339() })).await;
    assert_eq!(past["enrollment"]["status"], "STARTED");
    assert_eq!(
        past["enrollment"]["submissions"].as_array().unwrap().len(),
        0
    );
    let before_everything = app
        .ok(
            admin,
            "query($id: UUID!) { enrollment(id: $id, asOf: \"2000-01-01T00:00:00Z\") { status } }",
            json!({ "id": enrollment }),
        )
        .await;
    assert!(before_everything["enrollment"].is_null());
}

#[tokio::test]
async fn reports_as_of_a_past_time_ignore_later_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let instructor = app.instructor();
    let course = app.create_course(&admin, "ASOF", 50).await;
    let enrollments = three_started_enrollments(&app, &admin, course).await;
    // As of the last event so far (a report includes what was recorded by then): everything
    // below is recorded later.
    let as_of = last_recorded_at(&app).await;
    // After as_of: two complete, one withdraws.
    two_complete_and_one_withdraws(&app, &admin, &instructor, &enrollments).await;

    let query = "query($i: DurationReportInput!) { durationReport(input: $i) { eventsReplayed asOf rows { group count stillOpen endedEarly durations { medianSeconds } } } }";
    let now = app
        .ok(
            &instructor,
            query,
            json!({ "i": { "from": "STARTED", "to": "COMPLETED", "groupBy": "COURSE" } }),
        )
        .await;
    let row = &now["durationReport"]["rows"][0];
    assert_eq!(counts(row), (Some(2), Some(0), Some(1)));
    assert_eq!(row["group"], course.to_string());
    let then = app.ok(&instructor, query, json!({ "i": { "from": "STARTED", "to": "COMPLETED", "groupBy": "COURSE", "asOf": as_of.to_rfc3339() } })).await;
    let row = &then["durationReport"]["rows"][0];
    assert_eq!(counts(row), (Some(0), Some(3), Some(0)));
    assert!(row["durations"].is_null());
    assert!(
        position(&then["durationReport"]["eventsReplayed"])
            < position(&now["durationReport"]["eventsReplayed"])
    );

    let funnel = "query($i: FunnelReportInput!) { funnelReport(input: $i) { rows { registered started passed completed withdrawn firstAttemptPassRate } } }";
    let then = app
        .ok(
            &admin,
            funnel,
            json!({ "i": { "asOf": as_of.to_rfc3339() } }),
        )
        .await;
    assert_eq!(
        then["funnelReport"]["rows"][0],
        json!({"registered": 3, "started": 3, "passed": 0, "completed": 0, "withdrawn": 0, "firstAttemptPassRate": null})
    );
    let now = app.ok(&admin, funnel, json!({ "i": {} })).await;
    assert_eq!(
        now["funnelReport"]["rows"][0],
        json!({"registered": 3, "started": 3, "passed": 2, "completed": 2, "withdrawn": 1, "firstAttemptPassRate": 1.0})
    );

    // Time travel on one enrollment.
    assert_the_enrollment_as_it_was(&app, &admin, enrollments[0], as_of).await;

    // Trainees run no reports; impossible pairs are refused.
    let trainee = app.trainee(Uuid::now_v7());
    assert_eq!(
        app.error_code(
            Some(&trainee),
            query,
            json!({ "i": { "from": "STARTED", "to": "COMPLETED" } })
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&admin),
            query,
            json!({ "i": { "from": "COMPLETED", "to": "STARTED" } })
        )
        .await,
        "BAD_USER_INPUT"
    );
}

/// course, count, mean, median, p75, p90, min, max — as SQL computes them.
type SqlSummary = (Uuid, i64, f64, f64, f64, f64, f64, f64);

#[tokio::test]
async fn the_duration_report_equals_percentile_cont_in_sql() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let instructor = app.instructor();
    let courses = [
        app.create_course(&admin, "P1", 50).await,
        app.create_course(&admin, "P2", 50).await,
    ];
    for n in 0..12 {
        let course = courses[n % 2];
        let trainee = app
            .register_trainee(&admin, &format!("p{n}@example.com"))
            .await;
        let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
        app.enrollment_step(&admin, "startCourse", enrollment).await;
        if n % 3 != 0 {
            let submission = app.submit(&admin, enrollment).await;
            app.grade(&instructor, enrollment, submission, 80).await;
            tokio::time::sleep(std::time::Duration::from_millis(n as u64)).await;
            app.enrollment_step(&admin, "completeCourse", enrollment)
                .await;
        }
    }
    let data = app.ok(&admin, "{ durationReport(input: {from: STARTED, to: COMPLETED, groupBy: COURSE}) { rows { group count durations { meanSeconds medianSeconds p75Seconds p90Seconds minSeconds maxSeconds } stillOpen } } }", json!({})).await;
    let expected: Vec<SqlSummary> = sqlx::query_as(
        "WITH spans AS ( \
           SELECT course_id, min(recorded_at) FILTER (WHERE event_type = 'CourseStarted') AS started, \
                  min(recorded_at) FILTER (WHERE event_type = 'CourseCompleted') AS completed \
           FROM events WHERE tenant_id = $1 AND stream_type = 'enrollment' GROUP BY stream_id, course_id), \
         d AS (SELECT course_id, extract(epoch FROM completed - started)::float8 AS s FROM spans WHERE completed IS NOT NULL) \
         SELECT course_id, count(*), avg(s), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), \
                percentile_cont(0.75) WITHIN GROUP (ORDER BY s), percentile_cont(0.9) WITHIN GROUP (ORDER BY s), min(s), max(s) \
         FROM d GROUP BY course_id ORDER BY course_id",
    )
    .bind(app.tenant.as_uuid())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let rows = data["durationReport"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, (course, count, mean, median, p75, p90, min, max)) in rows.iter().zip(expected) {
        assert_eq!(row["group"], course.to_string());
        assert_eq!(row["count"].as_i64(), Some(count));
        assert_eq!(row["stillOpen"].as_i64(), Some(2));
        let d = &row["durations"];
        for (field, want) in [
            ("meanSeconds", mean),
            ("medianSeconds", median),
            ("p75Seconds", p75),
            ("p90Seconds", p90),
            ("minSeconds", min),
            ("maxSeconds", max),
        ] {
            let got = d[field].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6, "{field}: {got} vs {want}");
        }
    }
}
