//! Erasure (crypto-shredding) and event schema evolution: after `forgetTrainee`, a full
//! `pg_dump` holds none of the trainee's personal values, every read path shows placeholders,
//! reports and rebuilds do not change; and events written in an old shape, by SQL, read back
//! through every read path as the current shape.

use crate::helpers::{TestApp, citus, uuid};
use crate::replay::snapshot;
use crate::ws::WsClient;
use coursetrail::auth::Role;
use coursetrail::crypto::Keyring;
use coursetrail::domain::events::TestSubmitted;
use coursetrail::domain::values::Answers;
use coursetrail::domain::{Event, StreamType, SubmissionId, TenantId};
use coursetrail::projections::ProjectionWrite;
use coursetrail::store::{self, Append, Metadata, StoreError, personal};
use serde_json::{Value, json};
use uuid::Uuid;

const EMAIL: &str = "ada.forgettable@example.com";
const NAME: &str = "Ada Forgettable";
const ANSWER: &str = "my secret answer 42";
const REASON: &str = "moving to Berlin with my family";

const TRAINEE: &str = "query($id: UUID!) { trainee(id: $id) { email name } }";
const TRAIL: &str = "query($t: UUID!) { auditTrail(filter: {traineeId: $t}, first: 100) { edges { node { type schemaVersion data } } } }";
const DURATIONS: &str = "query { durationReport(input: {from: REGISTERED, to: COMPLETED}) { rows { group count stillOpen endedEarly durations { minSeconds medianSeconds maxSeconds } } } }";
const FUNNEL: &str = "query { funnelReport { rows { course { code } registered started submitted passed completed withdrawn } } }";
const LIVE: &str = "subscription($after: Position, $filter: AuditFilter) { events(afterPosition: $after, filter: $filter) { position type data } }";
const FORGET: &str = "mutation($t: UUID!) { forgetTrainee(input: {traineeId: $t}) { trainee { id email name } position } }";

/// Every database of the deployment dumped whole (on Citus, every node's: the shards' rows
/// live on the workers), as text.
async fn dump(app: &TestApp) -> String {
    let database = app
        .database_url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("a database name")
        .to_owned();
    let urls: Vec<String> = match citus() {
        Some(citus) => citus
            .nodes()
            .map(|node| coursetrail::citus::database_url(node, &database).unwrap())
            .collect(),
        None => vec![app.database_url.clone()],
    };
    let mut text = String::new();
    for url in urls {
        let output = tokio::process::Command::new("pg_dump")
            .arg("--no-owner")
            .arg(format!("--dbname={url}"))
            .output()
            .await
            .expect("run pg_dump");
        assert!(
            output.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        text.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    text
}

/// A trainee with a whole lifecycle (registered, started, submitted, graded, completed), a
/// second course started and a third withdrawn with a reason in its own words; and a second
/// trainee still open, so reports have more than one row to keep. Returns the trainee and its
/// started enrollment.
async fn lifecycle(app: &TestApp) -> (Uuid, Uuid) {
    let admin = app.admin();
    let course = app.create_course(&admin, "GDPR-1", 50).await;
    let registered = app
        .ok(
            &admin,
            "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { trainee { id } } }",
            json!({ "i": { "email": EMAIL, "name": NAME } }),
        )
        .await;
    let trainee = uuid(&registered["registerTrainee"]["trainee"]["id"]);
    let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
    app.enrollment_step(&admin, "startCourse", enrollment).await;
    let submitted = app
        .ok(
            &admin,
            "mutation($i: SubmitTestInput!) { submitTest(input: $i) { submissionId } }",
            json!({ "i": { "enrollmentId": enrollment, "answers": { "q1": ANSWER } } }),
        )
        .await;
    let submission = uuid(&submitted["submitTest"]["submissionId"]);
    app.grade(&app.instructor(), enrollment, submission, 80)
        .await;
    app.enrollment_step(&admin, "completeCourse", enrollment)
        .await;
    let second = app.create_course(&admin, "GDPR-2", 50).await;
    let started = app.register_for_course(&admin, second, Some(trainee)).await;
    app.enrollment_step(&admin, "startCourse", started).await;
    let third = app.create_course(&admin, "GDPR-3", 50).await;
    let withdrawn = app.register_for_course(&admin, third, Some(trainee)).await;
    app.ok(
        &admin,
        "mutation($i: WithdrawRegistrationInput!) { withdrawRegistration(input: $i) { position } }",
        json!({ "i": { "enrollmentId": withdrawn, "reason": REASON } }),
    )
    .await;
    let other = app.register_trainee(&admin, "other@example.com").await;
    app.register_for_course(&admin, course, Some(other)).await;
    (trainee, started)
}

/// What the admin's reports say.
async fn reports(app: &TestApp) -> (Value, Value) {
    let admin = app.admin();
    (
        app.ok(&admin, DURATIONS, json!({})).await,
        app.ok(&admin, FUNNEL, json!({})).await,
    )
}

fn assert_absent(text: &str, place: &str) {
    for value in [EMAIL, NAME, ANSWER, REASON] {
        assert!(!text.contains(value), "{place} still holds {value:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_trainee_is_nowhere_in_a_full_dump_and_reports_do_not_change() {
    let app = TestApp::spawn().await;
    let (trainee, started) = lifecycle(&app).await;
    let before = reports(&app).await;
    // Known, its personal data reads back everywhere, a rebuild included.
    let known = app.ok(&app.admin(), TRAIL, json!({ "t": trainee })).await;
    assert!(known.to_string().contains(REASON) && known.to_string().contains(ANSWER));
    assert_rebuild_reproduces(&app, app.tenant).await;
    let dumped = dump(&app).await;
    assert!(
        dumped.contains(EMAIL),
        "the dump finds the e-mail while it is stored"
    );
    assert!(
        !dumped.contains(ANSWER),
        "answers are sealed from the start"
    );
    assert!(
        dumped.contains(REASON),
        "the projection holds the reason until forgotten"
    );

    let admin = app.admin();
    let forgotten = app.ok(&admin, FORGET, json!({ "t": trainee })).await;
    let payload = &forgotten["forgetTrainee"]["trainee"];
    assert_eq!(payload["name"], "Forgotten trainee");
    assert!(
        payload["email"]
            .as_str()
            .unwrap()
            .ends_with("@forgotten.invalid")
    );

    assert_absent(&dump(&app).await, "the dump");
    assert_eq!(reports(&app).await, before, "reports after forgetting");
    assert_read_paths_show_placeholders(&app, trainee).await;

    // The address is free again; the forgotten trainee takes no new answers.
    app.register_trainee(&admin, EMAIL).await;
    let head = app.head(app.tenant).await;
    let code = app
        .error_code(
            Some(&admin),
            "mutation($i: SubmitTestInput!) { submitTest(input: $i) { submissionId } }",
            json!({ "i": { "enrollmentId": started, "answers": { "q1": "x" } } }),
        )
        .await;
    assert_eq!(code, "INVALID_STATE", "a started enrollment's new answers");
    assert_eq!(app.head(app.tenant).await, head, "nothing appended");
    // Forgetting again records nothing more.
    let head = app.head(app.tenant).await;
    app.ok(&admin, FORGET, json!({ "t": trainee })).await;
    assert_eq!(app.head(app.tenant).await, head);
}

/// The projections, the trail, the export, the subscription, `enrollment(asOf)` and a rebuild
/// all read the forgotten trainee as placeholders, and none fails.
async fn assert_read_paths_show_placeholders(app: &TestApp, trainee: Uuid) {
    let admin = app.admin();
    let read = app.ok(&admin, TRAINEE, json!({ "id": trainee })).await;
    assert_eq!(read["trainee"]["name"], "Forgotten trainee");

    let trail = app.ok(&admin, TRAIL, json!({ "t": trainee })).await;
    let edges = trail["auditTrail"]["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["type"] == "TRAINEE_FORGOTTEN")
    );
    let personal: Vec<&Value> = edges
        .iter()
        .filter_map(|e| e["node"]["data"].get("personal"))
        .collect();
    assert_eq!(personal.len(), 3, "registration, submission, withdrawal");
    assert!(
        personal.iter().all(|p| p["forgotten"] == true),
        "{personal:?}"
    );
    assert_absent(&trail.to_string(), "the audit trail");

    let export = export_text(app, &format!("traineeId={trainee}")).await;
    assert!(export.contains("Forgotten trainee"));
    assert_absent(&export, "the export");

    let mut client = WsClient::ready(app, &admin).await;
    let filter = json!({ "traineeId": trainee });
    client
        .subscribe("s", LIVE, json!({ "after": 0, "filter": filter }))
        .await;
    let mut live = Vec::new();
    for _ in 0..edges.len() {
        let payload = client.next_payload().await;
        assert!(payload.get("errors").is_none(), "{payload}");
        live.push(payload);
    }
    let live = json!(live).to_string();
    assert_absent(&live, "the events subscription");
    assert!(live.contains("Forgotten trainee"), "{live}");

    let completed = app
        .ok(
            &admin,
            "query($t: UUID!) { enrollments(traineeId: $t, status: COMPLETED) { edges { node { id } } } }",
            json!({ "t": trainee }),
        )
        .await;
    let enrollment = uuid(&completed["enrollments"]["edges"][0]["node"]["id"]);
    let as_of =
        "query($id: UUID!, $at: DateTime) { enrollment(id: $id, asOf: $at) { status bestScore } }";
    let now = chrono::Utc::now().to_rfc3339();
    let replayed = app
        .ok(&admin, as_of, json!({ "id": enrollment, "at": now }))
        .await;
    assert_eq!(replayed["enrollment"]["status"], "COMPLETED");
    assert_eq!(replayed["enrollment"]["bestScore"], 80);

    assert_rebuild_reproduces(app, app.tenant).await;
}

async fn assert_rebuild_reproduces(app: &TestApp, tenant: TenantId) {
    let live = snapshot(&app.pool, tenant).await;
    let rebuild = "mutation { rebuildProjections { eventsReplayed } }";
    let token = app.token_for(tenant, Role::Admin, Uuid::now_v7());
    app.ok(&token, rebuild, json!({})).await;
    assert_eq!(snapshot(&app.pool, tenant).await, live, "rebuilt = live");
}

async fn export_text(app: &TestApp, query: &str) -> String {
    let response = app
        .client
        .get(format!("http://{}/audit/export?{query}", app.address))
        .bearer_auth(app.admin())
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    response.text().await.expect("export body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainee_may_forget_itself_and_no_one_else() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let me = app.register_trainee(&admin, "me@example.com").await;
    let other = app.register_trainee(&admin, "other@example.com").await;
    let mine = app.trainee(me);
    for (token, target) in [(&mine, other), (&app.instructor(), me)] {
        let code = app
            .error_code(Some(token), FORGET, json!({ "t": target }))
            .await;
        assert_eq!(code, "FORBIDDEN");
    }
    let code = app
        .error_code(Some(&admin), FORGET, json!({ "t": Uuid::now_v7() }))
        .await;
    assert_eq!(code, "NOT_FOUND");
    let done = app.ok(&mine, FORGET, json!({ "t": me })).await;
    assert_eq!(
        done["forgetTrainee"]["trainee"]["name"],
        "Forgotten trainee"
    );
    let other_row = app.ok(&admin, TRAINEE, json!({ "id": other })).await;
    assert_eq!(other_row["trainee"]["email"], "other@example.com");
}

/// v1 events as the code before the personal envelope wrote them: e-mail, name and answers as
/// plain top-level fields. Written by SQL with the head row, as the old code's write did.
async fn write_v1_history(app: &TestApp, trainee: Uuid, course: Uuid) -> Uuid {
    let enrollment = Uuid::now_v7();
    let submission = Uuid::now_v7();
    let rows = [
        (
            trainee,
            "trainee",
            1,
            "TraineeRegistered",
            json!({ "email": EMAIL, "name": NAME }),
            None,
        ),
        (
            enrollment,
            "enrollment",
            1,
            "CourseRegistered",
            json!({ "courseId": course, "traineeId": trainee }),
            Some(course),
        ),
        (
            enrollment,
            "enrollment",
            2,
            "CourseStarted",
            json!({}),
            Some(course),
        ),
        (
            enrollment,
            "enrollment",
            3,
            "TestSubmitted",
            json!({ "submissionId": submission, "answers": { "q1": ANSWER } }),
            Some(course),
        ),
    ];
    for (stream, stream_type, version, event_type, data, course_id) in rows {
        sqlx::query(
            "WITH head AS (UPDATE tenant_heads SET last_position = last_position + 1 \
             WHERE tenant_id = $1 RETURNING last_position) \
             INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
                 event_type, schema_version, data, recorded_at, actor_id, actor_role, \
                 correlation_id, trainee_id, course_id) \
             SELECT $1, $2, $3, head.last_position, gen_random_uuid(), $4, $5, 1, $6, now(), \
                 gen_random_uuid(), 'admin', gen_random_uuid(), $7, $8 FROM head",
        )
        .bind(app.tenant.as_uuid())
        .bind(stream)
        .bind(version)
        .bind(stream_type)
        .bind(event_type)
        .bind(data)
        .bind(trainee)
        .bind(course_id)
        .execute(&app.pool)
        .await
        .expect("write a v1 event");
    }
    enrollment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_in_the_old_shape_read_back_as_the_current_one_everywhere() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let course = app.create_course(&admin, "OLD-1", 50).await;
    let trainee = Uuid::now_v7();
    let enrollment = write_v1_history(&app, trainee, course).await;
    // The projections come from the log: rebuilt from the v1 rows.
    app.ok(
        &admin,
        "mutation { rebuildProjections { eventsReplayed } }",
        json!({}),
    )
    .await;

    let read = app.ok(&admin, TRAINEE, json!({ "id": trainee })).await;
    assert_eq!(read["trainee"], json!({ "email": EMAIL, "name": NAME }));
    let trail = app.ok(&admin, TRAIL, json!({ "t": trainee })).await;
    let nodes: Vec<&Value> = trail["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes[0]["schemaVersion"], 1, "the version as stored");
    assert_eq!(
        nodes[0]["data"],
        json!({ "personal": { "email": EMAIL, "name": NAME } }),
        "the data upcast to v2"
    );
    assert_eq!(nodes[3]["data"]["personal"]["answers"]["q1"], ANSWER);
    let export = export_text(&app, &format!("traineeId={trainee}")).await;
    let first: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(first["schemaVersion"], 1);
    assert_eq!(first["data"], nodes[0]["data"]);

    // Commands decide on old-shape streams, and a report replays them.
    let submitted = app.submit(&admin, enrollment).await;
    app.grade(&admin, enrollment, submitted, 90).await;
    let (durations, _) = reports(&app).await;
    assert_eq!(durations["durationReport"]["rows"][0]["stillOpen"], 1);

    // Forgetting erases the v1 plaintext too.
    app.ok(&admin, FORGET, json!({ "t": trainee })).await;
    assert_absent(&dump(&app).await, "the dump");
    let trail = app.ok(&admin, TRAIL, json!({ "t": trainee })).await;
    assert_eq!(
        trail["auditTrail"]["edges"][0]["node"]["data"]["personal"]["forgotten"],
        true
    );
    assert_rebuild_reproduces(&app, app.tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_encryption_key_data_keys_are_stored_wrapped_and_still_open() {
    // 32 bytes in base64, as DATA_KEY_ENCRYPTION_KEY takes them.
    let keys = Keyring::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let app = TestApp::spawn_configured(|settings| settings.keys = keys, |_| {}).await;
    let (trainee, _) = lifecycle(&app).await;
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT data_key FROM trainee_keys WHERE tenant_id = $1 AND trainee_id = $2",
    )
    .bind(app.tenant.as_uuid())
    .bind(trainee)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored[0], 1, "the wrapped format");
    assert_eq!(stored.len(), 1 + 12 + 32 + 16, "nonce, key and tag");
    let trail = app.ok(&app.admin(), TRAIL, json!({ "t": trainee })).await;
    assert!(
        trail.to_string().contains(ANSWER),
        "opened through the wrapped key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_sealed_before_its_trainee_was_forgotten_is_refused_after() {
    let app = TestApp::spawn().await;
    let (trainee, started) = lifecycle(&app).await;
    // The submission reads its trainee's key; the trainee is forgotten before it writes.
    let mut conn = app.pool.acquire().await.unwrap();
    let key = personal::trainee_key(&mut conn, &Keyring::unwrapped(), app.tenant, trainee)
        .await
        .unwrap()
        .expect("a key before forgetting");
    assert!(!key.new, "the trainee's stored key");
    app.ok(&app.admin(), FORGET, json!({ "t": trainee })).await;
    let head = app.head(app.tenant).await;

    let events = [Event::TestSubmitted(TestSubmitted {
        submission_id: SubmissionId::generate(),
        answers: Answers::parse(json!({ "q1": ANSWER })).unwrap(),
    })];
    let place = personal::Place {
        tenant: app.tenant,
        stream_id: started,
        version: 3,
    };
    let stored = [personal::seal(&events[0], Some(&key.key), place).unwrap()];
    let metadata = Metadata {
        actor_id: trainee,
        actor_role: Role::Trainee,
        command_id: None,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    };
    let written = store::append_with(
        &mut conn,
        app.tenant,
        Append {
            stream_id: started,
            stream_type: StreamType::Enrollment,
            expected_version: 2,
            events: &events,
            stored: &stored,
            recorded_at: chrono::Utc::now(),
            metadata: &metadata,
            trainee_id: Some(trainee),
            course_id: None,
            command: None,
            data_key: Some(&key),
        },
        ProjectionWrite::Nothing,
    )
    .await;
    assert!(matches!(written, Err(StoreError::Refused)), "{written:?}");
    assert_eq!(app.head(app.tenant).await, head, "nothing appended");
}

/// A registration refused by the unique e-mail rule stores no data key: a key is written by the
/// registration's own write and removed with it when the write is refused.
#[tokio::test]
async fn a_refused_registration_leaves_no_key_behind() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let keys = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM trainee_keys WHERE tenant_id = $1")
            .bind(app.tenant.as_uuid())
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    app.register_trainee(&admin, EMAIL).await;
    assert_eq!(keys().await, 1);
    let register =
        "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { trainee { id } } }";
    let again = json!({ "i": { "email": EMAIL, "name": "Someone Else" } });
    let code = app.error_code(Some(&admin), register, again).await;
    assert_eq!(code, "ALREADY_EXISTS");
    assert_eq!(keys().await, 1, "the refused registration's key is gone");
}

/// The scrub of an erasure finds the command records of the trainee's streams by index, not by
/// reading every command record of the tenant.
#[tokio::test]
async fn the_digest_scrub_reads_command_records_by_stream() {
    let app = TestApp::spawn().await;
    // A tenant with many command records, as the planner sees it.
    sqlx::query(
        "INSERT INTO commands (tenant_id, command_id, command_type, stream_id, position, result, \
         recorded_at) SELECT $1, gen_random_uuid(), 'startCourse', gen_random_uuid(), n, \
         '{\"requestDigest\": \"d\"}', now() FROM generate_series(1, 20000) AS n",
    )
    .bind(app.tenant.as_uuid())
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE commands")
        .execute(&app.pool)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN UPDATE commands SET result = result - 'requestDigest' \
         WHERE tenant_id = $1 AND result ? 'requestDigest' AND stream_id = ANY($2)",
    )
    .bind(app.tenant.as_uuid())
    .bind(vec![Uuid::now_v7()])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = 'commands'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(plan.contains("commands_stream_idx"), "{plan}\n{indexes:?}");
}
