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

use crate::helpers::TestApp;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: &str = "application/json";
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A request header, as the audit sets it.
type Header = (&'static str, &'static str);

const CONTENT_TYPE_JSON: Header = ("content-type", "application/json");
const ACCEPT_JSON: Header = ("accept", "application/json");
const ACCEPT_GRAPHQL_RESPONSE_JSON: Header = ("accept", "application/graphql-response+json");
const ACCEPT_ANY: Header = ("accept", "*/*");

/// The body most audits send: `JSON.stringify({ query: '{ __typename }' })`.
const TYPENAME: &str = r#"{"query":"{ __typename }"}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// One assertion of an audit: graphql-http's `ressert(res)…`.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// `status.toBe(code)`
    Status(u16),
    /// `status.toBeBetween(min, max)`
    StatusBetween(u16, u16),
    /// `status.toBeBetweenMultiple(ranges)`
    StatusInRanges(&'static [(u16, u16)]),
    /// `header('content-type').toContain(part)`
    ContentTypeContains(&'static str),
    /// The body decodes as UTF-8 (audit 82A3); here also: no charset but UTF-8 is declared.
    Utf8Body,
    /// `bodyAsExecutionResult.notToHaveProperty('errors')`: the body is JSON without `errors`.
    NoErrors,
    /// `bodyAsExecutionResult.data.toBe(undefined)`: the body is JSON without `data`.
    NoData,
}

/// One of graphql-http's server audits.
struct Audit {
    id: &'static str,
    /// The requirement, starting with MUST, SHOULD or MAY.
    name: &'static str,
    method: Method,
    /// GET: the URL's search parameters (encoded as `URLSearchParams` does).
    params: &'static [(&'static str, &'static str)],
    /// The headers the audit sets, and no others.
    headers: &'static [Header],
    /// POST: the body exactly as the audit sends it (`JSON.stringify`'s output), if any.
    body: Option<&'static str>,
    checks: &'static [Check],
}

const fn post(
    id: &'static str,
    name: &'static str,
    headers: &'static [Header],
    body: &'static str,
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Post,
        params: &[],
        headers,
        body: Some(body),
        checks,
    }
}

const fn post_without_body(
    id: &'static str,
    name: &'static str,
    headers: &'static [Header],
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Post,
        params: &[],
        headers,
        body: None,
        checks,
    }
}

const fn get(
    id: &'static str,
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    headers: &'static [Header],
    checks: &'static [Check],
) -> Audit {
    Audit {
        id,
        name,
        method: Method::Get,
        params,
        headers,
        body: None,
        checks,
    }
}

/// graphql-http's server audits, in its order.
const AUDITS: &[Audit] = &[
    post(
        "22EB",
        "SHOULD accept application/graphql-response+json and match the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        TYPENAME,
        &[
            Check::Status(200),
            Check::ContentTypeContains(GRAPHQL_RESPONSE_JSON),
        ],
    ),
    post(
        "4655",
        "MUST accept application/json and match the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "47DE",
        "SHOULD accept */* and use application/json for the content-type",
        &[CONTENT_TYPE_JSON, ACCEPT_ANY],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "80D8",
        "SHOULD assume application/json content-type when accept is missing",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200), Check::ContentTypeContains(JSON)],
    ),
    post(
        "82A3",
        "MUST use utf-8 encoding when responding",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200), Check::Utf8Body],
    ),
    post(
        "BF61",
        "MUST accept utf-8 encoded request",
        &[("content-type", "application/json; charset=utf-8")],
        r#"{"query":"{ __type(name: \"Run🏃Swim🏊\") { name } }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "78D5",
        "MUST assume utf-8 in request if encoding is unspecified",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post(
        "2C94",
        "MUST accept POST requests",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    get(
        "5A70",
        "MAY accept application/x-www-form-urlencoded formatted GET requests",
        &[("query", "{ __typename }")],
        &[],
        &[Check::Status(200)],
    ),
    get(
        "9C48",
        "MAY NOT allow executing mutations on GET requests",
        &[("query", "mutation { __typename }")],
        &[ACCEPT_GRAPHQL_RESPONSE_JSON],
        &[Check::StatusBetween(400, 499)],
    ),
    post(
        "9ABE",
        "SHOULD respond with 4xx status code if content-type is not supplied on POST requests",
        &[],
        TYPENAME,
        &[Check::StatusBetween(400, 499)],
    ),
    post(
        "03D4",
        "MUST accept application/json POST requests",
        &[CONTENT_TYPE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post_without_body(
        "A5BF",
        "MAY use 400 status code when request body is missing on POST",
        &[CONTENT_TYPE_JSON],
        &[Check::Status(400)],
    ),
    post(
        "423L",
        "MAY use 400 status code on missing {query} parameter",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"notquery":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ0",
        "MAY use 400 status code on object {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":{"obj":"ect"}}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ1",
        "MAY use 400 status code on number {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ2",
        "MAY use 400 status code on boolean {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "LKJ3",
        "MAY use 400 status code on array {query} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "34A2",
        "SHOULD allow string {query} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        TYPENAME,
        &[Check::Status(200)],
    ),
    post(
        "13EE",
        "MUST allow string {query} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        TYPENAME,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "6C00",
        "MAY use 400 status code on object {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":{"obj":"ect"},"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C01",
        "MAY use 400 status code on number {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":0,"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C02",
        "MAY use 400 status code on boolean {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":false,"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "6C03",
        "MAY use 400 status code on array {operationName} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"operationName":["array"],"query":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "8161",
        "SHOULD allow string {operationName} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"operationName":"Query","query":"query Query { __typename }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "B8B3",
        "MUST allow string {operationName} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"operationName":"Query","query":"query Query { __typename }"}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B0",
        "SHOULD allow null {variables} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","variables":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0220",
        "MUST allow null {variables} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","variables":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B1",
        "SHOULD allow null {operationName} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","operationName":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0221",
        "MUST allow null {operationName} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","operationName":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "94B2",
        "SHOULD allow null {extensions} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","extensions":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "0222",
        "MUST allow null {extensions} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","extensions":null}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "4760",
        "MAY use 400 status code on string {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":"string"}"#,
        &[Check::Status(400)],
    ),
    post(
        "4761",
        "MAY use 400 status code on number {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "4762",
        "MAY use 400 status code on boolean {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "4763",
        "MAY use 400 status code on array {variables} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","variables":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "2EA1",
        "SHOULD allow map {variables} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"query Type($name: String!) { __type(name: $name) { name } }","variables":{"name":"sometype"}}"#,
        &[Check::Status(200)],
    ),
    post(
        "28B9",
        "MUST allow map {variables} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"query Type($name: String!) { __type(name: $name) { name } }","variables":{"name":"sometype"}}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    get(
        "D6D5",
        "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/graphql-response+json",
        &[
            (
                "query",
                "query Type($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name":"sometype"}"#),
        ],
        &[ACCEPT_GRAPHQL_RESPONSE_JSON],
        &[Check::Status(200), Check::NoErrors],
    ),
    get(
        "6A70",
        "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/json",
        &[
            (
                "query",
                "query Type($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name":"sometype"}"#),
        ],
        &[ACCEPT_JSON],
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "58B0",
        "MAY use 400 status code on string {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":"string"}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B1",
        "MAY use 400 status code on number {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":0}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B2",
        "MAY use 400 status code on boolean {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":false}"#,
        &[Check::Status(400)],
    ),
    post(
        "58B3",
        "MAY use 400 status code on array {extensions} parameter",
        &[CONTENT_TYPE_JSON],
        r#"{"query":"{ __typename }","extensions":["array"]}"#,
        &[Check::Status(400)],
    ),
    post(
        "428F",
        "SHOULD allow map {extensions} parameter when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ __typename }","extensions":{"some":"value"}}"#,
        &[Check::Status(200)],
    ),
    post(
        "1B7A",
        "MUST allow map {extensions} parameter when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ __typename }","extensions":{"some":"value"}}"#,
        &[Check::Status(200), Check::NoErrors],
    ),
    post(
        "B6DC",
        "MAY use 2xx, 4xx, or 5xx status codes on JSON parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{ "not a JSON"#,
        &[Check::StatusInRanges(&[(200, 299), (400, 499), (500, 599)])],
    ),
    post(
        "BCF8",
        "SHOULD use 400 status code on JSON parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{ "not a JSON"#,
        &[Check::Status(400)],
    ),
    post(
        "B7N8",
        "SHOULD use 400 status code on JSON parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{ "not a JSON"#,
        &[Check::Status(400)],
    ),
    post(
        "8764",
        "MAY use 4xx or 5xx status codes if parameters are invalid",
        &[CONTENT_TYPE_JSON],
        r#"{"qeury":"{ __typename }"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "3E3A",
        "MAY use 400 status code if parameters are invalid",
        &[CONTENT_TYPE_JSON],
        r#"{"qeury":"{ __typename }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "572B",
        "SHOULD use 200 status code on document parsing failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{"}"#,
        &[Check::Status(200)],
    ),
    post(
        "FDE2",
        "SHOULD use 200 status code on document validation failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::Status(200)],
    ),
    post(
        "7B9B",
        "SHOULD use a status code of 200 on variable coercion failure when accepting application/json",
        &[CONTENT_TYPE_JSON, ACCEPT_JSON],
        r#"{"query":"query CoerceFailure($id: ID!){ __typename }","variables":{"id":null}}"#,
        &[Check::Status(200)],
    ),
    post(
        "865D",
        "SHOULD use 4xx or 5xx status codes on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "556A",
        "SHOULD use 400 status code on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::Status(400)],
    ),
    post(
        "D586",
        "SHOULD not contain the data entry on document parsing failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{"}"#,
        &[Check::NoData],
    ),
    post(
        "51FE",
        "SHOULD use 4xx or 5xx status codes on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::StatusBetween(400, 599)],
    ),
    post(
        "74FF",
        "SHOULD use 400 status code on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::Status(400)],
    ),
    post(
        "5E5B",
        "SHOULD not contain the data entry on document validation failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"{ 8f31403dfe404bccbb0e835f2629c6a7 }"}"#,
        &[Check::NoData],
    ),
    post(
        "86EE",
        "SHOULD use a status code of 400 on variable coercion failure when accepting application/graphql-response+json",
        &[CONTENT_TYPE_JSON, ACCEPT_GRAPHQL_RESPONSE_JSON],
        r#"{"query":"query CoerceFailure($id: ID!){ __typename }","variables":{"id":null}}"#,
        &[Check::Status(400)],
    ),
];

/// The MAY audits this server does not take up, and why. Nothing else may fail.
const KNOWN_NOTICES: &[(&str, &str)] = &[
    (
        "8764",
        "a body without `query` (`{\"qeury\": …}`) reads as an empty document, which fails to \
         parse; asked for as application/json, that is answered 200 with the error",
    ),
    (
        "3E3A",
        "the same request as 8764: 200 with GRAPHQL_PARSE_FAILED for application/json \
         (application/graphql-response+json gets 400, audit 423L)",
    ),
];

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
