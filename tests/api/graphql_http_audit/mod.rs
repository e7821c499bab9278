//! The graphql-http audit: every server audit of the npm package `graphql-http` (version
//! 1.23.1, `serverAudits` in `lib/audits/server.js`), reproduced here so that the suite needs
//! no Node.js. The package's 61 audits (13 MUST, 23 SHOULD, 25 MAY) are the table [`AUDITS`]:
//! each with its id and name as the package gives them, the request it sends and the
//! assertions it makes, in its order.
//!
//! As in graphql-http, an audit's assertions run in order and the first that fails fails it,
//! with the package's reason; a failed audit counts by its name's first word: MUST is an
//! error, SHOULD a warning, anything else (MAY) a notice. The server must answer with no error
//! and no warning; the only notices allowed are those listed, with the reason, in
//! [`KNOWN_NOTICES`] (any other MAY audit that fails is a regression of what the server does).
//!
//! The requests are written by hand on a TCP connection, because an HTTP client adds headers
//! of its own (reqwest always sends `Accept: */*`): the audit's requests are sent both as
//! written ([`Wire::Exact`]: an audit without an `Accept` or a `Content-Type` sends none) and as
//! Node's `fetch` sends them when the real audit runs ([`Wire::Fetch`]), each without a token
//! and with an admin's bearer token.

mod audits;

use crate::helpers::TestApp;
use audits::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The MAY audits this server does not take up, and why. Nothing else may fail.
const KNOWN_NOTICES: &[(&str, &str)] = &[];

/// How a failed audit counts, by its name's first word (graphql-http's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Error,
    Warning,
    Notice,
}

fn level(name: &str) -> Level {
    if name.starts_with("MUST") {
        Level::Error
    } else if name.starts_with("SHOULD") {
        Level::Warning
    } else {
        Level::Notice
    }
}

/// How the audit's requests go on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire {
    /// With the audit's headers only (and `Host`, `Content-Length`, `Connection: close`).
    Exact,
    /// As Node's `fetch` sends them, the way the real audit runs: `Accept: */*` when the audit
    /// sets no `Accept`, and a string body without a `Content-Type` as `text/plain;charset=UTF-8`.
    Fetch,
}

/// A response, as read off the connection.
struct Reply {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A parameter encoded as `URLSearchParams` (application/x-www-form-urlencoded) does.
fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Whether the audit's request sets this header.
fn has_header(headers: &[(&str, String)], wanted: &str) -> bool {
    headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
}

/// The request of an audit, as bytes on the wire.
fn request_bytes(address: SocketAddr, audit: &Audit, wire: Wire, token: Option<&str>) -> Vec<u8> {
    let mut target = String::from("/graphql");
    if !audit.params.is_empty() {
        let pairs: Vec<String> = audit
            .params
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect();
        target.push('?');
        target.push_str(&pairs.join("&"));
    }
    let method = match audit.method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let mut headers: Vec<(&str, String)> = audit
        .headers
        .iter()
        .map(|&(name, value)| (name, value.to_string()))
        .collect();
    if let Wire::Fetch = wire {
        if !has_header(&headers, "accept") {
            headers.push(("accept", "*/*".to_string()));
        }
        if audit.body.is_some() && !has_header(&headers, "content-type") {
            headers.push(("content-type", "text/plain;charset=UTF-8".to_string()));
        }
    }
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    let body = audit.body.unwrap_or("");
    if audit.method == Method::Post {
        headers.push(("content-length", body.len().to_string()));
    }
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in &headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Where a response's head ends (past its blank line), once it has arrived.
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A response head's status and headers (names in lower case).
fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response head: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers)
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
}

/// Whether `raw` holds a whole response framed by its `Content-Length`.
fn is_complete(raw: &[u8]) -> bool {
    let Some(end) = head_end(raw) else {
        return false;
    };
    let (_, headers) = parse_head(&raw[..end]);
    content_length(&headers).is_some_and(|length| raw.len() >= end + length)
}

/// A chunked body, joined.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(at) = raw.windows(2).position(|window| window == b"\r\n") {
        let line = String::from_utf8_lossy(&raw[..at]);
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
        if size == 0 {
            break;
        }
        let start = at + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    body
}

/// Sends one audit's request on a connection of its own and reads the response.
async fn send(address: SocketAddr, audit: &Audit, wire: Wire, token: Option<&str>) -> Reply {
    let request = request_bytes(address, audit, wire, token);
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .expect("connect to the server");
        stream.write_all(&request).await.expect("send the request");
        let mut raw = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
                // A reset once the whole response is in changes nothing.
                Err(_) if is_complete(&raw) => break,
                Err(error) => panic!("{}: reading the response: {error}", audit.id),
            }
            if is_complete(&raw) {
                break;
            }
        }
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{}: no response within 30 s", audit.id));
    let end = head_end(&raw).unwrap_or_else(|| panic!("{}: no response head", audit.id));
    let (status, headers) = parse_head(&raw[..end]);
    let rest = &raw[end..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        let length = content_length(&headers)
            .unwrap_or(rest.len())
            .min(rest.len());
        rest[..length].to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// graphql-http's `assertBodyAsExecutionResult`: the body is UTF-8 and JSON (here: an object).
fn execution_result(reply: &Reply) -> Result<serde_json::Map<String, Value>, String> {
    let text = std::str::from_utf8(&reply.body)
        .map_err(|_| "Response body is not UTF-8 encoded".to_string())?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("Response body is not a JSON object".to_string()),
        Err(_) => Err("Response body is not valid JSON".to_string()),
    }
}

/// One assertion, failing with graphql-http's reason.
fn check(reply: &Reply, check: Check) -> Result<(), String> {
    let status = reply.status;
    let (passed, reason) = match check {
        Check::Status(code) => (
            status == code,
            format!("Response status code is not {code}"),
        ),
        Check::StatusBetween(min, max) => (
            (min..=max).contains(&status),
            format!("Response status is not between {min} and {max}"),
        ),
        Check::StatusInRanges(ranges) => (
            ranges
                .iter()
                .any(|&(min, max)| (min..=max).contains(&status)),
            format!("Response status is not between any of the provided ranges: {ranges:?}"),
        ),
        Check::ContentTypeContains(part) => (
            reply
                .header("content-type")
                .is_some_and(|value| value.contains(part)),
            format!("Response header content-type does not contain {part}"),
        ),
        Check::Utf8Body => {
            let charset = reply.header("content-type").and_then(|value| {
                value
                    .split(';')
                    .skip(1)
                    .filter_map(|parameter| parameter.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
                    .map(|(_, charset)| charset.trim().trim_matches('"').to_ascii_lowercase())
            });
            (
                std::str::from_utf8(&reply.body).is_ok()
                    && charset.is_none_or(|charset| charset == "utf-8"),
                "Response body is not UTF-8 encoded".to_string(),
            )
        }
        Check::NoErrors => {
            let body = execution_result(reply)?;
            (
                !body.contains_key("errors"),
                "Response body execution result has a property \"errors\"".to_string(),
            )
        }
        Check::NoData => {
            let body = execution_result(reply)?;
            (
                !body.contains_key("data"),
                "Response body execution result data is not \"undefined\"".to_string(),
            )
        }
    };
    if passed { Ok(()) } else { Err(reason) }
}

/// An audit that did not pass.
struct Failure {
    audit: &'static Audit,
    reason: String,
    reply: Reply,
}

/// Runs every audit once, in order, as graphql-http does; returns those that failed.
async fn run_audits(address: SocketAddr, wire: Wire, token: Option<&str>) -> Vec<Failure> {
    let mut failures = Vec::new();
    for audit in AUDITS {
        let reply = send(address, audit, wire, token).await;
        let outcome = audit
            .checks
            .iter()
            .try_for_each(|&assertion| check(&reply, assertion));
        if let Err(reason) = outcome {
            failures.push(Failure {
                audit,
                reason,
                reply,
            });
        }
    }
    failures
}

#[tokio::test]
async fn the_server_passes_the_graphql_http_audit_with_no_error_and_no_warning() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let mut report = Vec::new();
    for wire in [Wire::Exact, Wire::Fetch] {
        for token in [None, Some(admin.as_str())] {
            let run = format!(
                "{wire:?} requests, {}",
                if token.is_some() {
                    "admin token"
                } else {
                    "no token"
                }
            );
            for failure in run_audits(app.address, wire, token).await {
                let Failure {
                    audit,
                    reason,
                    reply,
                } = failure;
                let severity = level(audit.name);
                let known = KNOWN_NOTICES.iter().any(|&(id, _)| id == audit.id);
                let line = format!(
                    "[{run}] {severity:?} {} {}: {reason} (got {} {:?} {})",
                    audit.id,
                    audit.name,
                    reply.status,
                    reply.header("content-type").unwrap_or("-"),
                    String::from_utf8_lossy(&reply.body),
                );
                if severity == Level::Notice && known {
                    eprintln!("known notice: {line}");
                } else {
                    report.push(line);
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "graphql-http audits that fail:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_table_holds_every_server_audit_of_graphql_http() {
    assert_eq!(AUDITS.len(), 61, "graphql-http 1.23.1 has 61 server audits");
    let mut ids: Vec<&str> = AUDITS.iter().map(|audit| audit.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), AUDITS.len(), "an id is listed twice");
    let count = |word: &str| {
        AUDITS
            .iter()
            .filter(|audit| audit.name.split(' ').next() == Some(word))
            .count()
    };
    assert_eq!((count("MUST"), count("SHOULD"), count("MAY")), (13, 23, 25));
    for audit in AUDITS {
        assert!(!audit.checks.is_empty(), "{}: no assertion", audit.id);
        match audit.method {
            Method::Get => assert!(audit.body.is_none(), "{}", audit.id),
            Method::Post => assert!(audit.params.is_empty(), "{}", audit.id),
        }
    }
    for (id, _) in KNOWN_NOTICES {
        let audit = AUDITS.iter().find(|audit| audit.id == *id);
        assert!(
            audit.is_some_and(|audit| level(audit.name) == Level::Notice),
            "{id} is not a MAY audit"
        );
    }
}

#[test]
fn requests_go_on_the_wire_as_graphql_http_sends_them() {
    // URLs as the audit builds them with `URLSearchParams` (read from its requests).
    assert_eq!(form_encode("{ __typename }"), "%7B+__typename+%7D");
    assert_eq!(
        form_encode("query Type($name: String!) { __type(name: $name) { name } }"),
        "query+Type%28%24name%3A+String%21%29+%7B+__type%28name%3A+%24name%29+%7B+name+%7D+%7D"
    );
    assert_eq!(
        form_encode(r#"{"name":"sometype"}"#),
        "%7B%22name%22%3A%22sometype%22%7D"
    );
    let address: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let audit = AUDITS.iter().find(|audit| audit.id == "9ABE").unwrap();
    let exact = String::from_utf8(request_bytes(address, audit, Wire::Exact, None)).unwrap();
    assert_eq!(
        exact,
        "POST /graphql HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: close\r\n\
         content-length: 26\r\n\r\n{\"query\":\"{ __typename }\"}"
    );
    let fetch = String::from_utf8(request_bytes(address, audit, Wire::Fetch, Some("t"))).unwrap();
    assert!(fetch.contains("\r\naccept: */*\r\n"), "{fetch}");
    assert!(
        fetch.contains("\r\ncontent-type: text/plain;charset=UTF-8\r\n"),
        "{fetch}"
    );
    assert!(fetch.contains("\r\nauthorization: Bearer t\r\n"), "{fetch}");
    let audit = AUDITS.iter().find(|audit| audit.id == "5A70").unwrap();
    let exact = String::from_utf8(request_bytes(address, audit, Wire::Exact, None)).unwrap();
    assert_eq!(
        exact,
        "GET /graphql?query=%7B+__typename+%7D HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\
         connection: close\r\n\r\n"
    );
    // Responses, framed by length or chunked.
    assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
    assert!(is_complete(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    ));
    assert!(!is_complete(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{}"
    ));
}
