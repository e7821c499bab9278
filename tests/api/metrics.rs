//! `/metrics`: every family the operator's dashboards read, in a format a Prometheus parser
//! accepts, with values that follow what the server did, and labels bounded by the schema.

use crate::helpers::TestApp;
use crate::ws::{EVENTS, WsClient};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::json;
use std::sync::Arc;

async fn fetch(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let mut request = app.client.get(format!("http://{}/metrics", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format")
}

/// The value of the series `name{labels}` (a histogram: its count), if present.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .find(|sample| {
            labels
                .iter()
                .all(|(key, wanted)| sample.labels.get(key) == Some(wanted))
        })
        .map(|sample| match &sample.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            Metric::Summary(_) => panic!("no summaries are exported"),
        })
}

const FAMILIES: &[&str] = &[
    "coursetrail_http_requests_total",
    "coursetrail_http_request_duration_seconds",
    "coursetrail_graphql_operations_total",
    "coursetrail_graphql_operation_duration_seconds",
    "coursetrail_commands_total",
    "coursetrail_command_duration_seconds",
    "coursetrail_group_commit_batches_total",
    "coursetrail_group_commit_batch_size",
    "coursetrail_group_commit_batched_writes_total",
    "coursetrail_group_commit_refused_writes_total",
    "coursetrail_group_commit_failed_batches_total",
    "coursetrail_db_connections",
    "coursetrail_db_connections_max",
    "coursetrail_admission_running",
    "coursetrail_admission_waiting",
    "coursetrail_admission_refused_total",
    "coursetrail_subscriptions_open",
    "coursetrail_events_delivered_total",
    "coursetrail_feed_lag_seconds",
    "coursetrail_replay_events_total",
    "coursetrail_replay_duration_seconds",
    "coursetrail_export_bytes_total",
];

/// What the test made the server do before it scrapes.
struct Activity {
    /// A live subscription that has received the three events.
    live: WsClient,
    /// The code the rejected command was counted under.
    rejected: String,
    /// Events the report replayed.
    replayed: f64,
    /// Bytes of the CSV export.
    exported: f64,
}

/// Three commands and a rejected one, a live subscription, a report (a replay) and an export.
async fn a_bit_of_everything(app: &TestApp, admin: &str) -> Activity {
    let course = app.create_course(admin, "MET", 50).await;
    let trainee = app.register_trainee(admin, "m@example.com").await;
    app.register_for_course(admin, course, Some(trainee)).await;
    // A rejected command counts under its code.
    let rejected = app
        .error_code(
            Some(admin),
            "mutation { createCourse(input: {code: \"MET\", title: \"again\", passingScore: 50}) { position } }",
            json!({}),
        )
        .await;

    // A live subscription that has received the three events.
    let mut live = WsClient::ready(app, admin).await;
    live.subscribe("all", EVENTS, json!({ "after": 0 })).await;
    for _ in 0..3 {
        let payload = live.next_payload().await;
        assert!(payload.get("errors").is_none(), "{payload}");
    }

    // A report (a replay) and an export.
    let report = app
        .ok(admin, "{ funnelReport { eventsReplayed } }", json!({}))
        .await;
    let replayed: f64 = crate::helpers::position(&report["funnelReport"]["eventsReplayed"]) as f64;
    assert!(replayed >= 1.0);
    let export = app
        .client
        .get(format!("http://{}/audit/export?format=csv", app.address))
        .bearer_auth(admin)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status().as_u16(), 200);
    let exported = export.bytes().await.expect("export body").len() as f64;
    Activity {
        live,
        rejected,
        replayed,
        exported,
    }
}

/// A series' name, its labels, and the value it should have.
type Series<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Asserts each `(name, labels, value)` of `expected` against the scrape (a missing series
/// counts as 0).
fn assert_series(scrape: &Scrape, text: &str, expected: &[Series]) {
    for (name, labels, wanted) in expected {
        let got = value(scrape, name, labels).unwrap_or(0.0);
        assert_eq!(got, *wanted, "{name} {labels:?}\n{text}");
    }
}

#[tokio::test]
async fn metrics_follow_what_the_server_did_in_prometheus_text_format() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let Activity {
        live,
        rejected,
        replayed,
        exported,
    } = a_bit_of_everything(&app, &admin).await;

    // Whatever a client names its operation, it is counted by type and root field; a document
    // that does not validate is counted as invalid, whatever it asked for.
    app.ok(
        &admin,
        "query ClientChosenName123 { me { role } }",
        json!({}),
    )
    .await;
    let invalid = app
        .error_code(Some(&admin), "{ noSuchField }", json!({}))
        .await;
    assert_eq!(invalid, "GRAPHQL_VALIDATION_FAILED");

    let (scrape, text) = scrape_every_family(&app).await;
    assert_commands_and_operations_are_counted(&scrape, &text, &rejected);
    assert!(!text.contains("ClientChosenName123") && !text.contains("noSuchField"));
    // Six operations answered 200; the one that did not validate, 400 (this client accepts
    // application/graphql-response+json).
    assert_requests_are_counted_by_route_and_status(&scrape, &text);
    assert_feed_replays_exports_and_admission_are_counted(&scrape, &text, replayed, exported);
    assert_connections_in_use_and_idle_fit_the_pool(&scrape);

    // The subscription, once closed, is no longer open.
    drop(live);
    let mut open = 1.0;
    for _ in 0..100 {
        open = subscriptions_open(&app).await;
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0.0);
}

/// Each command by outcome (the rejected one under its code), and each operation by type and
/// root field, or as invalid.
fn assert_commands_and_operations_are_counted(scrape: &Scrape, text: &str, rejected: &str) {
    assert_series(
        scrape,
        text,
        &[
            (
                COMMANDS,
                &[("command", "createCourse"), ("outcome", "ok")],
                1.0,
            ),
            (
                COMMANDS,
                &[("command", "registerTrainee"), ("outcome", "ok")],
                1.0,
            ),
            (
                COMMANDS,
                &[("command", "registerForCourse"), ("outcome", "ok")],
                1.0,
            ),
            (
                COMMANDS,
                &[("command", "createCourse"), ("outcome", rejected)],
                1.0,
            ),
            (
                "coursetrail_command_duration_seconds",
                &[("command", "createCourse")],
                2.0,
            ),
            (
                OPERATIONS,
                &[("operation", "query me"), ("outcome", "ok")],
                1.0,
            ),
            (
                OPERATIONS,
                &[
                    ("operation", "invalid"),
                    ("outcome", "GRAPHQL_VALIDATION_FAILED"),
                ],
                1.0,
            ),
            (
                OPERATIONS,
                &[("operation", "mutation createCourse"), ("outcome", "ok")],
                1.0,
            ),
        ],
    );
}

fn assert_requests_are_counted_by_route_and_status(scrape: &Scrape, text: &str) {
    assert_series(
        scrape,
        text,
        &[
            (REQUESTS, &[("route", "/graphql"), ("status", "200")], 6.0),
            (REQUESTS, &[("route", "/graphql"), ("status", "400")], 1.0),
            (
                REQUESTS,
                &[("route", "/graphql/ws"), ("status", "101")],
                1.0,
            ),
            (
                REQUESTS,
                &[("route", "/audit/export"), ("status", "200")],
                1.0,
            ),
        ],
    );
}

/// The live subscription and its events, the report's replay, the CSV export, and an
/// admission that neither waited nor refused.
fn assert_feed_replays_exports_and_admission_are_counted(
    scrape: &Scrape,
    text: &str,
    replayed: f64,
    exported: f64,
) {
    assert_series(
        scrape,
        text,
        &[
            ("coursetrail_subscriptions_open", &[], 1.0),
            ("coursetrail_events_delivered_total", &[], 3.0),
            (
                "coursetrail_replay_events_total",
                &[("purpose", "report")],
                replayed,
            ),
            (
                "coursetrail_replay_events_total",
                &[("purpose", "rebuild")],
                0.0,
            ),
            (
                "coursetrail_replay_duration_seconds",
                &[("purpose", "report")],
                1.0,
            ),
            (
                "coursetrail_export_bytes_total",
                &[("format", "csv")],
                exported,
            ),
            (
                "coursetrail_export_bytes_total",
                &[("format", "ndjson")],
                0.0,
            ),
            (
                "coursetrail_admission_refused_total",
                &[("pool", "main"), ("reason", "tenant_busy")],
                0.0,
            ),
            ("coursetrail_admission_waiting", &[("pool", "main")], 0.0),
        ],
    );
}

/// Scrapes `/metrics` (no token needed here): Prometheus text format with every family.
async fn scrape_every_family(app: &TestApp) -> (Scrape, String) {
    let (status, content_type, text) = fetch(app, None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let scrape = parse(&text);
    for family in FAMILIES {
        assert!(
            scrape.docs.contains_key(*family),
            "{family} is missing:\n{text}"
        );
    }
    (scrape, text)
}

/// The main pool has connections, and those in use and idle are at least one and at most its
/// maximum.
fn assert_connections_in_use_and_idle_fit_the_pool(scrape: &Scrape) {
    let get = |name: &str, labels: &[(&str, &str)]| value(scrape, name, labels).unwrap_or(0.0);
    let max = get("coursetrail_db_connections_max", &[("pool", "main")]);
    let in_use = get(
        "coursetrail_db_connections",
        &[("pool", "main"), ("state", "in_use")],
    );
    let idle = get(
        "coursetrail_db_connections",
        &[("pool", "main"), ("state", "idle")],
    );
    assert!(
        max > 0.0 && in_use + idle <= max && in_use + idle >= 1.0,
        "{in_use} {idle} {max}"
    );
}

async fn subscriptions_open(app: &TestApp) -> f64 {
    let (_, _, text) = fetch(app, None).await;
    value(&parse(&text), "coursetrail_subscriptions_open", &[]).unwrap()
}

const COMMANDS: &str = "coursetrail_commands_total";
const OPERATIONS: &str = "coursetrail_graphql_operations_total";
const REQUESTS: &str = "coursetrail_http_requests_total";

#[tokio::test]
async fn group_commit_batches_are_counted_as_the_stats_say() {
    let mut handle = None;
    let app = TestApp::spawn_with(|state| handle = Some(state.app.clone())).await;
    let server = handle.unwrap();
    let admin = Arc::new(app.admin());
    let app = Arc::new(app);
    // Enough concurrent writes of one tenant that some queue and are written in batches.
    let writes: Vec<_> = (0..40)
        .map(|i| {
            let (app, admin) = (app.clone(), admin.clone());
            tokio::spawn(async move { app.create_course(&admin, &format!("G{i}"), 50).await })
        })
        .collect();
    for write in writes {
        write.await.expect("write");
    }
    // `group_commit_stats` reads these same counters, so comparing with it would prove nothing:
    // the families are checked against each other, each recorded by a call of its own.
    let (_, _, text) = fetch(&app, None).await;
    let scrape = parse(&text);
    let get = |name: &str| value(&scrape, name, &[]).unwrap();
    let batches = get("coursetrail_group_commit_batches_total");
    assert_eq!(
        server.commands().group_commit_stats().batches as f64,
        batches
    );
    assert_eq!(get("coursetrail_group_commit_batch_size"), batches);
    let sizes: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("coursetrail_group_commit_batch_size_sum "))
        .and_then(|sum| sum.trim().parse().ok())
        .expect("the batch sizes' sum");
    let in_batches = get("coursetrail_group_commit_batched_writes_total")
        + get("coursetrail_group_commit_refused_writes_total");
    assert_eq!(
        sizes, in_batches,
        "every write of a batch is appended or refused"
    );
    assert!(in_batches <= 40.0 && (batches == 0.0 || in_batches >= 2.0 * batches));
    let commands: f64 = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "coursetrail_commands_total")
        .filter(|sample| sample.labels.get("command") == Some("createCourse"))
        .map(|sample| match sample.value {
            Metric::Counter(count) => count,
            _ => panic!("a counter"),
        })
        .sum();
    assert_eq!(commands, 40.0, "every write is one command, batched or not");
}

#[tokio::test]
async fn a_metrics_token_keeps_the_scrape_target_private() {
    let app = TestApp::spawn_with(|state| state.metrics_token = Some(Arc::from("scrape-me"))).await;
    let (status, _, _) = fetch(&app, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = fetch(&app, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _, text) = fetch(&app, Some("scrape-me")).await;
    assert_eq!(status, 200);
    assert!(
        parse(&text)
            .docs
            .contains_key("coursetrail_admission_refused_total")
    );
}
