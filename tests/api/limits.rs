//! No tenant, caller or client can hurt the others: fair shares of the pool per tenant,
//! overload answered early with its own code, reports on their own share, slow clients
//! disconnected, oversized messages refused properly, and a database outage answered fast.

use crate::helpers::{TestApp, fresh_database};
use crate::wait::until;
use crate::ws::{Frame, WsClient};
use coursetrail::app::admission::Limits;
use coursetrail::db;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CREATE_COURSE: &str =
    "mutation($i: CreateCourseInput!) { createCourse(input: $i) { course { id } } }";

fn course_input(code: &str) -> Value {
    json!({ "i": { "code": code, "title": "Course", "passingScore": 50 } })
}

/// POSTs an operation; returns the status, the `Retry-After` header and the body.
async fn post_raw(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
) -> (u16, Option<String>, Value) {
    let response = app
        .client
        .post(app.url())
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("-").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_flooding_tenant_gets_rate_limited_while_a_quiet_tenant_is_served() {
    let limits = Limits {
        slots: 4,
        per_tenant: 2,
        queue_per_tenant: 4,
        max_wait: Duration::from_secs(5),
        refusal_delay: Duration::from_millis(200),
    };
    let app = Arc::new(
        TestApp::spawn_configured(|settings| settings.limits = Some(limits), |_| {}).await,
    );
    let quiet_tenant = app.new_tenant("Quiet").await;
    let quiet = app.token_for(
        quiet_tenant,
        coursetrail::auth::Role::Admin,
        uuid::Uuid::now_v7(),
    );
    let flooder = app.admin();

    let flood: Vec<_> = (0..60)
        .map(|i| {
            let (app, token) = (app.clone(), flooder.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let reply =
                    post_raw(&app, &token, CREATE_COURSE, course_input(&format!("F{i}"))).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    // The quiet tenant's commands, one at a time, while the flood is on.
    for i in 0..5 {
        let (status, _, body) =
            post_raw(&app, &quiet, CREATE_COURSE, course_input(&format!("Q{i}"))).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            codes(&body).is_empty(),
            "the quiet tenant was refused: {body}"
        );
    }
    let (mut written, mut limited) = (0, 0);
    for task in flood {
        let ((status, retry_after, body), took) = task.await.unwrap();
        match codes(&body).as_slice() {
            [] => written += 1,
            [code] if code == "RATE_LIMITED" => {
                // Held before it is answered: a client resending at once is slowed down.
                assert!(took >= Duration::from_millis(200), "refused after {took:?}");
                assert_eq!(status, 429, "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(body["errors"][0]["extensions"]["retryAfterSeconds"], 1);
                limited += 1;
            }
            other => panic!("unexpected outcome {status} {other:?}: {body}"),
        }
    }
    assert!(
        written >= 6,
        "the flooding tenant's share was written: {written}"
    );
    assert!(limited > 0, "the flooding tenant's excess was refused");
    let courses: i64 = sqlx::query_scalar("SELECT count(*) FROM courses WHERE tenant_id = $1")
        .bind(app.tenant.as_uuid())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(courses, written, "a refused command wrote nothing");
}

#[tokio::test]
async fn replays_are_priced_by_their_work_and_run_on_their_own_share() {
    // No queue for reports: a second report of the tenant while one runs is refused at once.
    let heavy = Limits {
        slots: 1,
        per_tenant: 1,
        queue_per_tenant: 0,
        max_wait: Duration::from_secs(5),
        refusal_delay: Duration::ZERO,
    };
    let mut handle = None;
    let app = Arc::new(
        TestApp::spawn_configured(
            move |settings| {
                // On the main pool, with one slot.
                settings.heavy_pool = None;
                settings.heavy_limits = heavy;
            },
            |state| handle = Some(state.app.clone()),
        )
        .await,
    );
    let server = handle.unwrap();
    let instructor = app.instructor();

    // Four whole-log replays in one operation are refused before anything runs.
    let aliases: String = (0..4)
        .map(|i| format!("r{i}: funnelReport {{ eventsReplayed }} "))
        .collect();
    let code = app
        .error_code(Some(&instructor), &format!("{{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED");

    // A rebuild holds the tenant's only report slot while it replays 60,000 events: a report
    // meanwhile is refused with RATE_LIMITED, never an internal error, and another tenant's
    // command is served.
    app.seed_events(app.tenant, 60_000).await;
    let admin = app.admin();
    let rebuild = {
        let (app, admin) = (app.clone(), admin.clone());
        tokio::spawn(async move {
            let rebuild = "mutation { rebuildProjections { eventsReplayed } }";
            post_raw(&app, &admin, rebuild, json!({})).await
        })
    };
    until(Duration::from_secs(10), "the rebuild started", || {
        server.runtime().load().1.0 > 0
    })
    .await;
    let report = "{ funnelReport { eventsReplayed } }";
    let (status, retry_after, body) = post_raw(&app, &instructor, report, json!({})).await;
    assert_eq!(codes(&body), vec!["RATE_LIMITED"], "{body}");
    assert_eq!((status, retry_after.as_deref()), (429, Some("1")));
    let other_tenant = app.new_tenant("Other").await;
    let other = app.token_for(
        other_tenant,
        coursetrail::auth::Role::Admin,
        uuid::Uuid::now_v7(),
    );
    let (status, _, body) = post_raw(&app, &other, CREATE_COURSE, course_input("OTHER")).await;
    assert_eq!((status, codes(&body)), (200, vec![]), "{body}");

    // Once the rebuild is over, the report runs.
    let (status, _, body) = rebuild.await.unwrap();
    assert_eq!((status, codes(&body)), (200, vec![]), "{body}");
    the_report_runs_once_its_slot_is_back(&app, &instructor, report).await;
}

/// Sends `report` until it runs, refused with RATE_LIMITED meanwhile, for 10 s at most.
async fn the_report_runs_once_its_slot_is_back(app: &TestApp, instructor: &str, report: &str) {
    let started = Instant::now();
    loop {
        let (status, _, body) = post_raw(app, instructor, report, json!({})).await;
        if status == 200 {
            assert!(
                body["data"]["funnelReport"]["eventsReplayed"].is_string(),
                "{body}"
            );
            break;
        }
        assert_eq!(codes(&body), vec!["RATE_LIMITED"], "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_or_body_too_slowly_is_disconnected() {
    let app = TestApp::spawn_with(|state| {
        state.limits.header_timeout = Duration::from_millis(300);
        state.limits.body_timeout = Duration::from_millis(300);
    })
    .await;

    // Headers a byte at a time: the connection is closed without an answer.
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"POST /graphql HTTP/1.1\r\nHost: x\r\n"
        .iter()
        .cycle()
        .take(40)
    {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 256];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buffer)).await
        {
            assert!(matches!(read, Ok(0) | Err(_)), "answered instead of closed");
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a slow-header client is still connected after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A body that stops arriving: 408, and the connection closes.
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\":";
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut answer))
        .await
        .expect("the connection is closed within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Many bodies stalling at once: each is cut at the body timeout, not one after another.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut socket = TcpStream::connect(app.address).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        stalled.push(socket);
    }
    let answers =
        futures_util::future::join_all(stalled.into_iter().map(|mut socket| async move {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut answer));
            read.await.is_ok() && answer.starts_with(b"HTTP/1.1 408")
        }))
        .await;
    let cut = answers.iter().filter(|cut| **cut).count();
    assert_eq!(cut, 200, "every stalled upload is answered 408 and closed");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|state| state.limits.max_connections = 2).await;
    // An open WebSocket keeps its place after the upgrade; an idle connection takes the other.
    let socket = WsClient::ready(&app, &app.admin()).await;
    // Accepted before the requests below: the listener takes connections in arrival order.
    let idle = TcpStream::connect(app.address).await.unwrap();
    let health = format!("http://{}/health", app.address);
    let client = reqwest::Client::new();
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), client.get(&health).send()).await;
    assert!(
        waiting.is_err(),
        "a third connection was served beyond the cap"
    );
    drop(socket);
    let _still_idle = idle;
    let served = tokio::time::timeout(Duration::from_secs(5), client.get(&health).send())
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn a_ten_megabyte_body_gets_its_413_and_an_oversized_websocket_message_a_1009() {
    let app = TestApp::spawn().await;
    let body = format!("{{\"query\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    for _ in 0..3 {
        let response = app
            .client
            .post(app.url())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the 413 arrives instead of a reset connection");
        assert_eq!(response.status(), 413);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["errors"][0]["extensions"]["code"],
            "PAYLOAD_TOO_LARGE"
        );
    }

    let mut socket = WsClient::ready(&app, &app.admin()).await;
    socket.send_text(&"x".repeat(2 * 1024 * 1024)).await;
    match socket.recv().await {
        Frame::Closed(code, _) => assert_eq!(code, 1009),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// A TCP proxy to the test database that the test can cut (every connection dropped, new ones
/// refused) and restore: a database outage without stopping the shared cluster.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(database_url: &str) -> Proxy {
        let options = PgConnectOptions::from_str(database_url).unwrap();
        let upstream = match options.get_socket() {
            Some(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port()))),
            None => Upstream::Tcp(format!("{}:{}", options.get_host(), options.get_port())),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch_up) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*watch_up.borrow() {
                    continue; // dropped: the database is "down"
                }
                let (upstream, mut watch_up) = (upstream.clone(), watch_up.clone());
                tokio::spawn(async move {
                    let mut client = client;
                    let copy = async {
                        match &upstream {
                            Upstream::Unix(path) => {
                                let mut server = tokio::net::UnixStream::connect(path).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await
                            }
                            Upstream::Tcp(address) => {
                                let mut server = TcpStream::connect(address).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await
                            }
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = watch_up.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }

    fn url(&self, database_url: &str) -> String {
        let options = PgConnectOptions::from_str(database_url).unwrap();
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            options.get_username(),
            self.port,
            options.get_database().unwrap()
        )
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[derive(Clone)]
enum Upstream {
    Unix(std::path::PathBuf),
    Tcp(String),
}

#[tokio::test]
async fn while_the_database_is_down_requests_fail_fast_and_it_recovers_at_once() {
    let (pool, database_url) = fresh_database().await;
    let proxy = Proxy::start(&database_url).await;
    let server_pool = db::connect_with(&proxy.url(&database_url), 8, Duration::from_secs(1))
        .await
        .unwrap();
    // The proxy stands for the whole database: on Citus, writes go through it too (not
    // straight to the tenant's worker, which the proxy does not cut).
    let app = TestApp::spawn_over(
        pool,
        database_url,
        server_pool,
        |settings| settings.worker_writes = false,
        |_| {},
    )
    .await;
    let admin = app.admin();
    let ready = format!("http://{}/ready", app.address);
    let (status, _, body) = post_raw(&app, &admin, CREATE_COURSE, course_input("UP")).await;
    assert_eq!((status, codes(&body)), (200, vec![]), "{body}");

    proxy.set_up(false);
    for i in 0..4 {
        let started = Instant::now();
        let (status, retry_after, body) = post_raw(
            &app,
            &admin,
            CREATE_COURSE,
            course_input(&format!("DOWN{i}")),
        )
        .await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
        assert_eq!(codes(&body), vec!["DATABASE_UNAVAILABLE"], "{body}");
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
        let started = Instant::now();
        let status = app.client.get(&ready).send().await.unwrap().status();
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    proxy.set_up(true);
    let back = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, _, body) = post_raw(
            &app,
            &admin,
            CREATE_COURSE,
            course_input(&format!("BACK{attempt}")),
        )
        .await;
        if status == 200 && codes(&body).is_empty() {
            break;
        }
        assert_eq!(codes(&body), vec!["DATABASE_UNAVAILABLE"], "{body}");
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "not back after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "commands served again {:?} after the database came back",
        back.elapsed()
    );
    assert_eq!(app.client.get(&ready).send().await.unwrap().status(), 200);
}

mod live {
    use crate::helpers::{TestApp, caller, course_through};
    use coursetrail::app::{App, AppSettings, SubscriptionLimits};
    use coursetrail::auth::Role;
    use coursetrail::domain::EventType;
    use coursetrail::store::log::{LogFilter, LoggedEvent};
    use futures_util::StreamExt;
    use std::time::Duration;
    use uuid::Uuid;

    async fn next(stream: &mut coursetrail::app::AuditStream<LoggedEvent>) -> LoggedEvent {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("an event, not an error")
    }

    #[tokio::test]
    async fn one_feed_serves_every_subscription_of_a_tenant_within_the_limits() {
        let test = TestApp::spawn().await;
        let limits = SubscriptionLimits {
            per_caller: 3,
            per_tenant: 5,
            ..SubscriptionLimits::default()
        };
        let settings = AppSettings {
            subscriptions: limits,
            ..AppSettings::default()
        };
        let app = App::build(test.pool.clone(), settings);
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let one = caller(test.tenant, Role::Admin, first);
        let two = caller(test.tenant, Role::Admin, second);
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(
                app.reads()
                    .follow(&one, LogFilter::default(), None)
                    .await
                    .unwrap(),
            );
        }
        let refused = app
            .reads()
            .follow(&one, LogFilter::default(), None)
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), "RATE_LIMITED", "per caller");
        for _ in 0..2 {
            streams.push(
                app.reads()
                    .follow(&two, LogFilter::default(), None)
                    .await
                    .unwrap(),
            );
        }
        let refused = app
            .reads()
            .follow(&two, LogFilter::default(), None)
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), "RATE_LIMITED", "per tenant");
        assert_eq!(
            app.runtime().live_load(test.tenant),
            (5, 1),
            "five subscriptions, one feed"
        );

        course_through(&app, &one, "LIVE").await;
        for stream in &mut streams {
            assert_eq!(next(stream).await.event_type, EventType::CourseCreated);
        }
        streams.pop();
        assert_eq!(
            app.runtime().live_load(test.tenant).0,
            4,
            "an ended subscription is not counted"
        );
        streams.push(
            app.reads()
                .follow(&two, LogFilter::default(), None)
                .await
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_feed_is_ended_with_slow_consumer() {
        let test = TestApp::spawn().await;
        let limits = SubscriptionLimits {
            buffer: 2,
            ..SubscriptionLimits::default()
        };
        let settings = AppSettings {
            subscriptions: limits,
            ..AppSettings::default()
        };
        let app = App::build(test.pool.clone(), settings);
        let admin = caller(test.tenant, Role::Admin, Uuid::now_v7());
        let mut slow = app
            .reads()
            .follow(&admin, LogFilter::default(), None)
            .await
            .unwrap();
        let mut fast = app
            .reads()
            .follow(&admin, LogFilter::default(), None)
            .await
            .unwrap();
        course_through(&app, &admin, "C0").await;
        let delivered = next(&mut slow).await.position;
        next(&mut fast).await;
        // Each commit is its own batch (the fast one takes it before the next commit); the
        // slow one takes none of five, with room for two.
        for i in 1..=5 {
            course_through(&app, &admin, &format!("C{i}")).await;
            next(&mut fast).await;
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("an answer within 10 s")
            .expect("an item");
        assert_eq!(ended.err().map(|e| e.code()), Some("SLOW_CONSUMER"));
        assert!(slow.next().await.is_none(), "the subscription ended");
        // The fast one goes on, and the slow one can resume from its last position.
        course_through(&app, &admin, "C6").await;
        next(&mut fast).await;
        let mut resumed = app
            .reads()
            .follow(&admin, LogFilter::default(), Some(delivered))
            .await
            .unwrap();
        assert_eq!(next(&mut resumed).await.position, delivered + 1);
    }
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let mut app_handle = None;
    let app = TestApp::spawn_with(|state| {
        state.ws.send_timeout = Duration::from_millis(300);
        app_handle = Some(state.app.clone());
    })
    .await;
    let server = app_handle.unwrap();
    // More than the sockets' buffers hold (the client's is made small): the server's sends
    // must block on this client.
    let head = app.seed_events(app.tenant, 40_000).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.address).await.unwrap();
    let mut request = format!("ws://{}/graphql/ws", app.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let token = app.admin();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let ack = socket.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"));
    let subscribe = json!({ "id": "all", "type": "subscribe",
        "payload": { "query": crate::ws::EVENTS, "variables": { "after": 0 } } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    until(Duration::from_secs(10), "the subscription started", || {
        server.runtime().live_load(app.tenant).0 > 0
    })
    .await;

    // Read nothing: the server gives up on this client and ends its subscription.
    let started = Instant::now();
    until(
        Duration::from_secs(60),
        "the server dropped the client that stopped reading",
        || server.runtime().live_load(app.tenant).0 == 0,
    )
    .await;
    println!("dropped {:?} after subscribing", started.elapsed());
    let mut received = 0i64;
    while let Some(Ok(message)) = socket.next().await {
        if message
            .to_text()
            .is_ok_and(|text| text.contains("\"next\""))
        {
            received += 1;
        }
    }
    assert!(
        received < head,
        "all {head} events were delivered to a client that did not read"
    );
}

#[tokio::test]
async fn a_page_reads_each_relation_once_not_once_per_row() {
    // A share of one read at a time and two waiting: a page whose rows each read their course,
    // trainee and submissions would be refused; one read per relation fits.
    let limits = Limits {
        slots: 4,
        per_tenant: 1,
        queue_per_tenant: 2,
        max_wait: Duration::from_secs(5),
        refusal_delay: Duration::ZERO,
    };
    let mut handle = None;
    let app = TestApp::spawn_configured(
        |settings| settings.limits = Some(limits),
        |state| handle = Some(state.app.clone()),
    )
    .await;
    let server = handle.unwrap();
    let admin = app.admin();
    let course = app.create_course(&admin, "PAGE", 50).await;
    for i in 0..100 {
        let trainee = app
            .register_trainee(&admin, &format!("t{i}@example.com"))
            .await;
        let enrollment = app.register_for_course(&admin, course, Some(trainee)).await;
        if i % 3 == 0 {
            app.enrollment_step(&admin, "startCourse", enrollment).await;
            app.submit(&admin, enrollment).await;
        }
    }
    let reads_before = server.runtime().admitted();
    let page = app
        .ok(
            &admin,
            "{ enrollments(first: 100) { edges { node { course { code } trainee { email } \
             submissions { id } } } } }",
            json!({}),
        )
        .await;
    // One read for the page and one per relation (each read is one statement), whatever the
    // page size: not one per row.
    assert_eq!(server.runtime().admitted() - reads_before, 4);
    let edges = page["enrollments"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 100);
    let submitted = edges
        .iter()
        .filter(|edge| edge["node"]["submissions"].as_array().unwrap().len() == 1)
        .count();
    assert_eq!(submitted, 34);
    assert!(
        edges
            .iter()
            .all(|edge| edge["node"]["course"]["code"] == "PAGE")
    );
    assert!(
        edges
            .iter()
            .all(|edge| edge["node"]["trainee"]["email"].is_string())
    );
}
