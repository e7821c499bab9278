//! The `events` subscription over `graphql-transport-ws`: ordering under concurrent writers,
//! the catch-up/live switch-over, isolation, and the protocol's close codes.

use crate::helpers::{TestApp, position};
use crate::wait::{eventually, until};
use crate::ws::{EVENTS, Frame, WsClient};
use coursetrail::app::App;
use coursetrail::auth::Role;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A server, and its application for watching its subscriptions.
async fn spawn_with_handle() -> (TestApp, App) {
    let mut handle = None;
    let app = TestApp::spawn_with(|state| handle = Some(state.app.clone())).await;
    (app, handle.expect("the application"))
}

/// Waits until `count` subscriptions follow the feed: an event committed from then on is
/// delivered live (not found by a catch-up read).
async fn until_live(server: &App, count: usize) {
    let what = format!("{count} live subscriptions");
    until(Duration::from_secs(10), &what, || {
        server.runtime().live_subscriptions() == count
    })
    .await;
}

/// Runs `commands` mutations from `writers` concurrent tasks (courses and trainees, so every
/// one appends exactly one event); returns how many were acknowledged.
async fn write_concurrently(app: &Arc<TestApp>, writers: usize, commands: usize) -> i64 {
    let token = app.admin();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0;
            for i in 0..commands {
                let unique = Uuid::new_v4().simple().to_string();
                let (query, variables) = if i % 2 == 0 {
                    (
                        "mutation($i: CreateCourseInput!) { createCourse(input: $i) { position } }",
                        json!({ "i": { "code": format!("W{writer}-{}", &unique[..8]), "title": "t", "passingScore": 50 } }),
                    )
                } else {
                    (
                        "mutation($i: RegisterTraineeInput!) { registerTrainee(input: $i) { position } }",
                        json!({ "i": { "email": format!("{unique}@example.com"), "name": "W" } }),
                    )
                };
                let (status, body) = app.post(Some(&token), query, variables).await;
                if status == 200 && body.get("errors").is_none() {
                    acknowledged += 1;
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.expect("writer");
    }
    acknowledged
}

/// Collects `events` positions of operation payloads until `count` have arrived.
async fn positions(client: &mut WsClient, count: usize) -> Vec<i64> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let payload = client.next_payload().await;
        assert!(payload.get("errors").is_none(), "{payload}");
        seen.push(position(&payload["data"]["events"]["position"]));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eight_concurrent_writers_a_subscriber_from_zero_gets_positions_one_to_n_once_in_order()
 {
    for round in 0..3 {
        let app = Arc::new(TestApp::spawn().await);
        let mut client = WsClient::ready(&app, &app.admin()).await;
        client.subscribe("all", EVENTS, json!({ "after": 0 })).await;

        let acknowledged = write_concurrently(&app, 8, 16).await;
        assert_eq!(
            acknowledged,
            8 * 16,
            "round {round}: every command succeeds"
        );

        let seen = positions(&mut client, acknowledged as usize).await;
        let expected: Vec<i64> = (1..=acknowledged).collect();
        assert_eq!(seen, expected, "round {round}");
        assert_eq!(app.head(app.tenant).await, acknowledged, "round {round}");
        // And nothing after: no duplicate arrives late.
        let extra = client.recv_within(Duration::from_millis(500)).await;
        assert!(extra.is_none(), "round {round}: unexpected {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_from_a_middle_position_switches_from_catch_up_to_live_without_gap_or_duplicate()
 {
    let app = Arc::new(TestApp::spawn().await);
    let before = write_concurrently(&app, 2, 20).await;
    let writers = {
        let app = app.clone();
        tokio::spawn(async move { write_concurrently(&app, 4, 20).await })
    };
    // Start while the writers are in flight, from the middle of what was there before.
    eventually(
        Duration::from_secs(10),
        "the writers have started",
        async || app.head(app.tenant).await > before,
    )
    .await;
    let middle = before / 2;
    let mut client = WsClient::ready(&app, &app.admin()).await;
    client
        .subscribe("mid", EVENTS, json!({ "after": middle }))
        .await;
    let during = writers.await.expect("writers");
    let head = app.head(app.tenant).await;
    assert_eq!(head, before + during);

    let seen = positions(&mut client, (head - middle) as usize).await;
    let expected: Vec<i64> = (middle + 1..=head).collect();
    assert_eq!(seen, expected);
    let extra = client.recv_within(Duration::from_millis(500)).await;
    assert!(extra.is_none(), "unexpected {extra:?}");
}

#[tokio::test]
async fn a_subscriber_gets_events_whose_notification_was_never_sent() {
    let (app, server) = spawn_with_handle().await;
    let mut client = WsClient::ready(&app, &app.admin()).await;
    client.subscribe("quiet", EVENTS, json!({})).await;
    // Once the subscription follows the feed, commit without pg_notify.
    until_live(&server, 1).await;
    let head = app.seed_events(app.tenant, 3).await;
    let started = std::time::Instant::now();
    assert_eq!(
        positions(&mut client, 3).await,
        vec![head - 2, head - 1, head]
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the poll tick should have found them"
    );
}

#[tokio::test]
async fn without_a_start_position_a_subscription_delivers_only_new_events_and_read_your_writes_works()
 {
    let (app, server) = spawn_with_handle().await;
    let admin = app.admin();
    app.create_course(&admin, "OLD", 50).await;
    let mut live = WsClient::ready(&app, &admin).await;
    live.subscribe("live", EVENTS, json!({})).await;
    until_live(&server, 1).await;
    let data = app
        .ok(
            &admin,
            "mutation { registerTrainee(input: {email: \"new@example.com\", name: \"N\"}) { position } }",
            json!({}),
        )
        .await;
    let position = position(&data["registerTrainee"]["position"]);
    assert_eq!(positions(&mut live, 1).await, vec![position]);

    // Read-your-writes: starting from a payload's position sees exactly what came after it.
    let course = app.create_course(&admin, "NEXT", 50).await;
    let mut after = WsClient::ready(&app, &admin).await;
    after
        .subscribe("after", EVENTS, json!({ "after": position.to_string() }))
        .await;
    let payload = after.next_payload().await;
    assert_eq!(
        payload["data"]["events"]["position"],
        json!((position + 1).to_string())
    );
    assert_eq!(payload["data"]["events"]["type"], "COURSE_CREATED");
    // Fields come back in the order the subscription asked for them, not sorted.
    let fields: Vec<&String> = payload["data"]["events"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(fields, ["position", "type", "traineeId"]);
    let _ = course;
}

#[tokio::test]
async fn a_trainee_subscription_sees_only_its_own_events_and_another_tenant_sees_none() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let course = app.create_course(&admin, "SAFE", 50).await;
    let me = app.register_trainee(&admin, "me@example.com").await;
    let other = app.register_trainee(&admin, "other@example.com").await;
    let mine = app.register_for_course(&admin, course, Some(me)).await;
    app.register_for_course(&admin, course, Some(other)).await;

    let mut trainee = WsClient::ready(&app, &app.trainee(me)).await;
    trainee
        .subscribe("mine", EVENTS, json!({ "after": 0 }))
        .await;
    let other_tenant = app.new_tenant("Other").await;
    let stranger = app.token_for(other_tenant, Role::Admin, Uuid::now_v7());
    let mut outsider = WsClient::ready(&app, &stranger).await;
    outsider
        .subscribe("all", EVENTS, json!({ "after": 0 }))
        .await;

    app.enrollment_step(&admin, "startCourse", mine).await;
    let mut types = Vec::new();
    for _ in 0..3 {
        let payload = trainee.next_payload().await;
        assert_eq!(payload["data"]["events"]["traineeId"], json!(me));
        types.push(
            payload["data"]["events"]["type"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        types,
        ["TRAINEE_REGISTERED", "COURSE_REGISTERED", "COURSE_STARTED"]
    );
    assert!(
        trainee
            .recv_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        outsider
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "tenant B must see nothing of tenant A"
    );

    // Asking for someone else's events is refused with an `error` message.
    trainee
        .subscribe(
            "theirs",
            EVENTS,
            json!({ "after": 0, "filter": { "traineeId": other } }),
        )
        .await;
    match trainee.recv().await {
        Frame::Json(message) => {
            assert_eq!(message["type"], "error");
            assert_eq!(message["id"], "theirs");
            assert_eq!(message["payload"][0]["extensions"]["code"], "FORBIDDEN");
        }
        other => panic!("expected an error message, got {other:?}"),
    }
}

// --- The protocol: each close code with a raw client. ---

fn init(token: &str) -> Value {
    json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
}

#[tokio::test]
async fn a_missing_or_invalid_token_at_init_closes_with_4403() {
    let app = TestApp::spawn().await;
    for payload in [
        json!({ "type": "connection_init" }),
        json!({ "type": "connection_init", "payload": {} }),
        json!({ "type": "connection_init", "payload": { "token": "not-a-token" } }),
        json!({ "type": "connection_init", "payload": { "Authorization": "Basic abc" } }),
    ] {
        let mut client = WsClient::connect(&app).await;
        client.send(payload.clone()).await;
        assert_eq!(client.close_code().await, 4403, "{payload}");
    }
    // The `token` form is accepted as well as `Authorization`.
    let mut client = WsClient::connect(&app).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "token": app.admin() } }))
        .await;
    assert_eq!(
        client.recv().await,
        Frame::Json(json!({ "type": "connection_ack" }))
    );
}

#[tokio::test]
async fn a_shutdown_closes_open_sockets_with_1012() {
    let mut app = TestApp::spawn().await;
    let mut idle = WsClient::connect(&app).await;
    let mut subscribed = WsClient::connect(&app).await;
    subscribed
        .send(json!({ "type": "connection_init", "payload": { "token": app.admin() } }))
        .await;
    assert_eq!(
        subscribed.recv().await,
        Frame::Json(json!({ "type": "connection_ack" }))
    );
    subscribed.subscribe("live", EVENTS, json!({})).await;
    app.shut_down();
    assert_eq!(subscribed.close_code().await, 1012, "a subscriber is told");
    assert_eq!(
        idle.close_code().await,
        1012,
        "so is a socket not yet initialised"
    );
}

#[tokio::test]
async fn subscribing_before_the_ack_closes_with_4401() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::connect(&app).await;
    client.subscribe("early", EVENTS, json!({})).await;
    assert_eq!(client.close_code().await, 4401);
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::ready(&app, &app.admin()).await;
    client.send(init(&app.admin())).await;
    assert_eq!(client.close_code().await, 4429);
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let app = TestApp::spawn_with(|state| state.ws.init_timeout = Duration::from_millis(300)).await;
    let mut client = WsClient::connect(&app).await;
    let started = std::time::Instant::now();
    assert_eq!(client.close_code().await, 4408);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_duplicate_operation_id_closes_with_4409() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::ready(&app, &app.admin()).await;
    client.subscribe("same", EVENTS, json!({})).await;
    client.subscribe("same", EVENTS, json!({})).await;
    assert_eq!(client.close_code().await, 4409);
}

#[tokio::test]
async fn malformed_messages_close_with_4400() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let cases: [&str; 4] = [
        "not json",
        r#"{"type":"no_such_type"}"#,
        r#"{"payload":{}}"#,
        r#"{"type":"subscribe","payload":{"query":"subscription { events { position } }"}}"#,
    ];
    for case in cases {
        let mut client = WsClient::ready(&app, &admin).await;
        client.send_text(case).await;
        assert_eq!(client.close_code().await, 4400, "{case}");
    }
    // Before the handshake too: an init whose payload is not an object.
    let mut client = WsClient::connect(&app).await;
    client
        .send_text(r#"{"type":"connection_init","payload":"a string"}"#)
        .await;
    assert_eq!(client.close_code().await, 4400);
}

#[tokio::test]
async fn the_socket_closes_with_4403_when_the_token_expires() {
    let app = TestApp::spawn().await;
    let token = app.token_with_ttl(
        app.tenant,
        Role::Admin,
        Uuid::now_v7(),
        Duration::from_secs(2),
    );
    let mut client = WsClient::ready(&app, &token).await;
    client.subscribe("s", EVENTS, json!({})).await;
    let started = std::time::Instant::now();
    assert_eq!(client.close_code().await, 4403);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn ping_gets_pong_complete_ends_an_operation_and_its_id_can_be_reused() {
    let (app, server) = spawn_with_handle().await;
    let admin = app.admin();
    let mut client = WsClient::ready(&app, &admin).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.recv().await, Frame::Json(json!({ "type": "pong" })));

    client.subscribe("a", EVENTS, json!({})).await;
    until_live(&server, 1).await;
    client.send(json!({ "type": "complete", "id": "a" })).await;
    until_live(&server, 0).await;
    // The completed id is free again; the new operation sees the next event.
    client.subscribe("a", EVENTS, json!({})).await;
    until_live(&server, 1).await;
    app.create_course(&admin, "PING", 50).await;
    match client.recv().await {
        Frame::Json(message) => {
            assert_eq!(message["type"], "next");
            assert_eq!(message["id"], "a");
        }
        other => panic!("expected next, got {other:?}"),
    }
    // A query over the socket answers once, then completes.
    client.subscribe("q", "{ me { role } }", json!({})).await;
    assert_eq!(client.next_payload().await["data"]["me"]["role"], "ADMIN");
    assert_eq!(
        client.recv().await,
        Frame::Json(json!({ "type": "complete", "id": "q" }))
    );
}

#[tokio::test]
async fn a_client_without_the_subprotocol_is_closed_with_4406() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::connect_with(&app, None).await;
    assert_eq!(client.close_code().await, 4406);
}
