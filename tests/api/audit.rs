//! The `auditTrail` query and the `/audit/export` endpoint: order, metadata, filters, cursors,
//! the page cap, role rules and tenant isolation.

use crate::helpers::{TestApp, position, uuid};
use coursetrail::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

const TRAIL: &str = "query($f: AuditFilter, $first: Int, $after: String, $pos: Position) { \
    auditTrail(filter: $f, first: $first, after: $after, afterPosition: $pos) { \
      pageInfo { hasNextPage hasPreviousPage endCursor } \
      edges { cursor node { eventId position streamId streamType version type data recordedAt \
        traineeId courseId metadata { actor { id role } commandId correlationId causationId } } } } }";

async fn trail(app: &TestApp, token: &str, variables: Value) -> Value {
    app.ok(token, TRAIL, variables).await["auditTrail"].clone()
}

fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn types(connection: &Value) -> Vec<String> {
    nodes(connection)
        .iter()
        .map(|node| node["type"].as_str().expect("type").to_owned())
        .collect()
}

fn positions(connection: &Value) -> Vec<i64> {
    nodes(connection)
        .iter()
        .map(|node| position(&node["position"]))
        .collect()
}

/// A course, two trainees, each registered for the course; the first one started.
struct Story {
    course: Uuid,
    me: Uuid,
    other: Uuid,
    enrollment: Uuid,
}

async fn story(app: &TestApp, admin: &str) -> Story {
    let course = app.create_course(admin, "SAFETY", 50).await;
    let me = app.register_trainee(admin, "me@example.com").await;
    let other = app.register_trainee(admin, "other@example.com").await;
    let enrollment = app.register_for_course(admin, course, Some(me)).await;
    app.register_for_course(admin, course, Some(other)).await;
    app.enrollment_step(admin, "startCourse", enrollment).await;
    Story {
        course,
        me,
        other,
        enrollment,
    }
}

#[tokio::test]
async fn the_audit_trail_lists_every_event_in_position_order_with_its_metadata() {
    let app = TestApp::spawn().await;
    let admin_id = Uuid::now_v7();
    let admin = app.token_for(app.tenant, Role::Admin, admin_id);
    let command = Uuid::now_v7();
    let data = app
        .ok(
            &admin,
            "mutation($i: CreateCourseInput!) { createCourse(input: $i) { course { id } } }",
            json!({ "i": { "code": "AUDIT", "title": "Audit", "passingScore": 70, "commandId": command } }),
        )
        .await;
    let course = uuid(&data["createCourse"]["course"]["id"]);
    app.register_trainee(&admin, "t@example.com").await;

    let connection = trail(&app, &admin, json!({})).await;
    assert_eq!(positions(&connection), vec![1, 2]);
    assert_eq!(types(&connection), ["COURSE_CREATED", "TRAINEE_REGISTERED"]);
    let first = &nodes(&connection)[0];
    assert_eq!(first["streamId"], json!(course));
    assert_eq!(first["streamType"], "COURSE");
    assert_eq!(first["version"], 1);
    assert_eq!(first["courseId"], json!(course));
    assert_eq!(first["data"]["passingScore"], 70);
    assert_eq!(first["metadata"]["actor"]["id"], json!(admin_id));
    assert_eq!(first["metadata"]["actor"]["role"], "ADMIN");
    assert_eq!(first["metadata"]["commandId"], json!(command));
    assert_eq!(first["metadata"]["causationId"], json!(command));
    assert!(first["metadata"]["correlationId"].is_string());
    assert!(Uuid::parse_str(first["eventId"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn filters_find_everything_about_a_trainee_or_a_course_and_narrow_by_type_stream_and_time() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let s = story(&app, &admin).await;

    // A trainee's trail includes its enrollment's events, not only its own stream.
    let mine = trail(&app, &admin, json!({ "f": { "traineeId": s.me } })).await;
    assert_eq!(
        types(&mine),
        ["TRAINEE_REGISTERED", "COURSE_REGISTERED", "COURSE_STARTED"]
    );
    assert!(nodes(&mine).iter().all(|n| n["traineeId"] == json!(s.me)));

    let course = trail(&app, &admin, json!({ "f": { "courseId": s.course } })).await;
    assert_eq!(
        types(&course),
        [
            "COURSE_CREATED",
            "COURSE_REGISTERED",
            "COURSE_REGISTERED",
            "COURSE_STARTED"
        ]
    );

    let stream = trail(&app, &admin, json!({ "f": { "streamId": s.enrollment } })).await;
    assert_eq!(types(&stream), ["COURSE_REGISTERED", "COURSE_STARTED"]);

    let typed = trail(
        &app,
        &admin,
        json!({ "f": { "eventTypes": ["COURSE_REGISTERED", "COURSE_CREATED"] } }),
    )
    .await;
    assert_eq!(
        types(&typed),
        ["COURSE_CREATED", "COURSE_REGISTERED", "COURSE_REGISTERED"]
    );
    let none = trail(&app, &admin, json!({ "f": { "eventTypes": [] } })).await;
    assert!(nodes(&none).is_empty());

    let combined = trail(
        &app,
        &admin,
        json!({ "f": { "traineeId": s.other, "courseId": s.course } }),
    )
    .await;
    assert_eq!(types(&combined), ["COURSE_REGISTERED"]);

    let all = trail(&app, &admin, json!({})).await;
    let third_at = nodes(&all)[2]["recordedAt"].as_str().unwrap().to_owned();
    let from = trail(&app, &admin, json!({ "f": { "from": third_at } })).await;
    assert_eq!(positions(&from).first(), Some(&3));
    let to = trail(&app, &admin, json!({ "f": { "to": third_at } })).await;
    assert!(positions(&to).iter().all(|p| *p < 3));
    let future = trail(
        &app,
        &admin,
        json!({ "f": { "from": "2999-01-01T00:00:00Z" } }),
    )
    .await;
    assert!(nodes(&future).is_empty());
}

#[tokio::test]
async fn pages_follow_opaque_cursors_or_a_payload_position_and_the_page_size_is_capped() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    app.seed_events(app.tenant, 45).await;

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = trail(&app, &admin, json!({ "first": 20, "after": after })).await;
        pages += 1;
        seen.extend(positions(&page));
        assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=45).collect::<Vec<i64>>());

    // Read-your-writes: a mutation payload's position starts a page right after it.
    let data = app
        .ok(
            &admin,
            "mutation { createCourse(input: {code: \"RYW\", title: \"t\", passingScore: 1}) { position } }",
            json!({}),
        )
        .await;
    let position = position(&data["createCourse"]["position"]);
    assert_eq!(position, 46);
    let page = trail(&app, &admin, json!({ "pos": 45 })).await;
    assert_eq!(positions(&page), vec![46]);
    assert_eq!(types(&page), ["COURSE_CREATED"]);
    // An edge's cursor and the node's position say the same thing.
    let by_cursor = trail(&app, &admin, json!({ "first": 1, "pos": 44 })).await;
    let cursor = by_cursor["edges"][0]["cursor"].clone();
    let next = trail(&app, &admin, json!({ "after": cursor })).await;
    assert_eq!(positions(&next), vec![46]);

    let default = trail(&app, &admin, json!({})).await;
    assert_eq!(nodes(&default).len(), 20);
    let max = trail(&app, &admin, json!({ "first": 100 })).await;
    assert_eq!(nodes(&max).len(), 46);
    for variables in [
        json!({ "first": 101 }),
        json!({ "first": -1 }),
        json!({ "after": "not-a-cursor" }),
        json!({ "pos": -1 }),
        json!({ "after": cursor, "pos": 3 }),
    ] {
        let code = app.error_code(Some(&admin), TRAIL, variables.clone()).await;
        assert_eq!(code, "BAD_USER_INPUT", "{variables}");
    }
}

#[tokio::test]
async fn trainees_read_only_their_own_trail_and_instructors_only_course_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let s = story(&app, &admin).await;

    let mine = trail(&app, &app.trainee(s.me), json!({})).await;
    assert_eq!(
        types(&mine),
        ["TRAINEE_REGISTERED", "COURSE_REGISTERED", "COURSE_STARTED"]
    );
    let code = app
        .error_code(
            Some(&app.trainee(s.me)),
            TRAIL,
            json!({ "f": { "traineeId": s.other } }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    // Instructors: course streams and enrollments, never the trainee streams (e-mail, name).
    let instructor = trail(&app, &app.instructor(), json!({})).await;
    assert_eq!(
        types(&instructor),
        [
            "COURSE_CREATED",
            "COURSE_REGISTERED",
            "COURSE_REGISTERED",
            "COURSE_STARTED"
        ]
    );

    let code = app.error_code(None, TRAIL, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_tenant_sees_nothing_of_another_tenant_in_the_trail_or_the_export() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let s = story(&app, &admin).await;
    let other = app.new_tenant("Other").await;
    let stranger = app.token_for(other, Role::Admin, Uuid::now_v7());

    let theirs = trail(&app, &stranger, json!({})).await;
    assert!(nodes(&theirs).is_empty());
    let by_subject = trail(&app, &stranger, json!({ "f": { "traineeId": s.me } })).await;
    assert!(nodes(&by_subject).is_empty());

    let (status, body) = export(&app, Some(&stranger), "").await;
    assert_eq!(status, 200);
    assert!(body.is_empty(), "{body}");
    let (status, body) = export(&app, Some(&admin), "").await;
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 6);
}

async fn export(app: &TestApp, token: Option<&str>, query: &str) -> (u16, String) {
    let mut request = app
        .client
        .get(format!("http://{}/audit/export?{query}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("export");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn the_export_streams_every_event_in_order_as_ndjson_or_csv() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    // More than two of the export's pages.
    let head = app.seed_events(app.tenant, 1_234).await;

    let (status, body) = export(&app, Some(&admin), "format=ndjson").await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let seen: Vec<i64> = lines
        .iter()
        .map(|line| line["position"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, (1..=head).collect::<Vec<i64>>());
    assert_eq!(lines[0]["type"], "CourseRetired");
    assert_eq!(lines[0]["actor"]["role"], "admin");
    assert_eq!(lines[0]["data"]["note"], "a, \"quoted\"\nline");

    let (status, body) = export(&app, Some(&admin), "format=csv&afterPosition=1200").await;
    assert_eq!(status, 200);
    let records: Vec<&str> = body.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert!(records[0].starts_with("position,eventId,streamId,"));
    assert_eq!(records.len(), 1 + 34);
    // The data column is quoted, its quotes doubled, its line break kept inside the quotes.
    assert!(records[1].starts_with("1201,"));
    assert!(
        records[1].contains(r#","{""#) && records[1].ends_with(r#"}""#),
        "{}",
        records[1]
    );
    assert!(
        records[1].contains(r#"""note"":""a, \""quoted\""\nline"""#),
        "{}",
        records[1]
    );
}

#[tokio::test]
async fn the_export_applies_the_same_authentication_role_rules_and_filters() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let s = story(&app, &admin).await;

    let (status, _) = export(&app, None, "").await;
    assert_eq!(status, 401);
    let (status, _) = export(&app, Some("garbage"), "").await;
    assert_eq!(status, 401);
    let (status, _) = export(&app, Some(&admin), "format=xml").await;
    assert_eq!(status, 400);
    let (status, _) = export(&app, Some(&admin), "traineeId=nope").await;
    assert_eq!(status, 400);
    let (status, _) = export(&app, Some(&admin), "eventTypes=Nope").await;
    assert_eq!(status, 400);

    let trainee = app.trainee(s.me);
    let (status, body) = export(&app, Some(&trainee), "").await;
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 3);
    let (status, body) = export(&app, Some(&trainee), &format!("traineeId={}", s.other)).await;
    assert_eq!(status, 403, "{body}");

    let (_, body) = export(
        &app,
        Some(&admin),
        &format!(
            "courseId={}&eventTypes=CourseRegistered,CourseStarted",
            s.course
        ),
    )
    .await;
    assert_eq!(body.lines().count(), 3);
    let (_, body) = export(&app, Some(&admin), &format!("streamId={}", s.enrollment)).await;
    assert_eq!(body.lines().count(), 2);
}
