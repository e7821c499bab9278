//! Traces over OTLP and the trace id in the logs, tested on the real binary: tracing is set up
//! once per process from the environment, as an operator turns it on.

use crate::helpers::{AUDIENCE, ISSUER, SECRET, fresh_database};
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use coursetrail::auth::{Role, TokenIssuer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use uuid::Uuid;

/// An OTLP/HTTP collector that hands over every span it receives.
async fn collector() -> (String, mpsc::UnboundedReceiver<Span>) {
    let (spans, received) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        let _ = spans.send(span);
                    }
                }
            }
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The server binary's log lines (JSON on stderr), and every line read so far.
struct Log {
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    read: Vec<String>,
}

impl Log {
    /// The next line, as JSON, whose message is `message`; `what` names what failed otherwise.
    async fn next_with_message(
        &mut self,
        message: &str,
        timeout: Duration,
        what: &str,
    ) -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(timeout, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{what}"))
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: the server is running"));
            self.read.push(line.clone());
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["fields"]["message"] == message {
                return json;
            }
        }
    }
}

/// Starts the server binary on the database, exporting its traces to `endpoint`, and waits
/// until it is ready: the server, its log, and the address it listens on.
async fn serve_traced(database_url: &str, endpoint: &str) -> (tokio::process::Child, Log, String) {
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_coursetrail"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("JWT_SECRET", SECRET)
        .env("JWT_ISSUER", ISSUER)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary");
    let mut log = Log {
        lines: BufReader::new(server.stderr.take().unwrap()).lines(),
        read: Vec::new(),
    };
    let ready = log
        .next_with_message(
            "coursetrail is ready",
            Duration::from_secs(60),
            "the server starts",
        )
        .await;
    let address = ready["fields"]["address"].as_str().unwrap().to_owned();
    (server, log, address)
}

/// Receives spans until those of the request, its operation, its command and a statement
/// have arrived in `trace_id`; every span of that trace, by span id.
async fn spans_of_the_request(
    received: &mut mpsc::UnboundedReceiver<Span>,
    trace_id: &str,
) -> HashMap<String, Span> {
    let mut spans: HashMap<String, Span> = HashMap::new();
    let wanted = ["POST /graphql", "mutation createCourse", "createCourse"];
    while !(wanted
        .iter()
        .all(|name| spans.values().any(|s| s.name == *name))
        && spans.values().any(|s| s.name.starts_with("db.")))
    {
        let span = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("spans are exported")
            .unwrap();
        if hex(&span.trace_id) == trace_id {
            spans.insert(hex(&span.span_id), span);
        }
    }
    spans
}

#[tokio::test]
async fn a_request_is_traced_from_http_to_its_statements_under_the_callers_trace() {
    let (endpoint, mut received) = collector().await;
    let (pool, database_url) = fresh_database().await;
    let mut tx = pool.begin().await.unwrap();
    let tenant = coursetrail::store::create_tenant(&mut tx, "Traced")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (mut server, mut log, address) = serve_traced(&database_url, &endpoint).await;

    // The caller's own trace, as a W3C traceparent.
    let trace_id = hex(Uuid::new_v4().as_bytes());
    let parent_id = hex(&Uuid::new_v4().as_bytes()[..8]);
    let token = TokenIssuer::new(SECRET, ISSUER, AUDIENCE)
        .mint(
            tenant.as_uuid(),
            Uuid::new_v4(),
            Role::Admin,
            Duration::from_secs(600),
        )
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .json(&serde_json::json!({ "query":
            "mutation { createCourse(input: {code: \"OTEL\", title: \"Traced\", passingScore: 50}) { position } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");

    // Every span of the request arrives, in the caller's trace.
    let spans = spans_of_the_request(&mut received, &trace_id).await;
    let named = |name: &str| spans.values().find(|s| s.name == name).unwrap();
    let (request, operation, command) = (
        named("POST /graphql"),
        named("mutation createCourse"),
        named("createCourse"),
    );
    assert_eq!(hex(&request.parent_span_id), parent_id);
    assert_eq!(operation.parent_span_id, request.span_id);
    assert_eq!(command.parent_span_id, operation.span_id);
    let statement = spans
        .values()
        .find(|s| s.name.starts_with("db.") && s.parent_span_id == command.span_id);
    assert!(
        statement.is_some(),
        "no statement under the command: {:?}",
        spans.keys()
    );

    // The request's log lines name the trace.
    let request_line = log
        .next_with_message(
            "graphql request",
            Duration::from_secs(10),
            "the request is logged",
        )
        .await;
    assert_eq!(
        request_line["span"]["trace_id"],
        trace_id.as_str(),
        "{:?}",
        log.read
    );
    server.kill().await.unwrap();
}
