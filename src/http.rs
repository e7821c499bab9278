//! HTTP: the axum router, GraphQL over HTTP as its specification asks (content negotiation,
//! status codes, GET for queries only), bearer-token authentication, body and batch limits,
//! health and readiness, and one log line per request. GraphQL over WebSocket is in [`ws`],
//! the audit export in [`export`], the xAPI export in [`xapi`].

mod console;
pub mod documents;
mod export;
mod middleware;
pub mod ws;
mod xapi;

use middleware::{correlation_id, metrics, observe, request_ids};

use crate::app::{App, Caller, ErrorCode};
use crate::auth::{TokenVerifier, bearer_token};
use crate::graphql::{
    AppSchema, PARSE_FAILED, RequestContext, VALIDATION_FAILED, code_of, ensure_code, request_error,
};
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, ServerError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Largest request body accepted (a 64 KiB answers document plus the query fits easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most operations in one batched request.
pub const MAX_BATCH: usize = 10;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What one client may hold of the server's HTTP side.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A client has this long to send a request's headers…
    pub header_timeout: Duration,
    /// …and this long again to send its body.
    pub body_timeout: Duration,
    /// Open connections, WebSockets included; beyond, new ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub schema: AppSchema,
    pub verifier: Arc<TokenVerifier>,
    /// One connection of its own for `/ready`: the check must not queue behind the pool.
    pub ready_pool: PgPool,
    /// The application, for the endpoints that are not GraphQL (the audit export).
    pub app: App,
    pub ws: ws::WsSettings,
    /// Closes the open WebSockets when the server shuts down.
    pub closing: ws::Closing,
    /// Parsed operations, by text (see [`documents`]).
    pub documents: Arc<documents::Documents>,
    pub limits: HttpLimits,
    /// When set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<Arc<str>>,
    /// When set, the console's files are read from here rather than from the binary.
    pub console_dir: Option<Arc<std::path::Path>>,
    /// The xAPI export's home page (`XAPI_HOME_PAGE`).
    pub xapi_home_page: crate::xapi::HomePage,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(ws::handler))
        .route("/audit/export", get(export::handler))
        .route("/xapi/statements", get(xapi::handler))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(console::redirect))
        .route("/console", get(console::redirect))
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(request_ids))
        .with_state(state)
}

/// How long `/ready` waits for the database: a load balancer must hear "not ready" quickly,
/// not after the pool's acquire timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Ready when the database answers within [`READY_TIMEOUT`], on a connection of its own.
async fn ready(State(state): State<HttpState>) -> Response {
    let check = sqlx::query("SELECT 1").execute(&state.ready_pool);
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// The HTTP status of a request that failed as a whole with an error of this code (the table
/// of [`ErrorCode`]).
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Whether an error of this code name asks the client to come back later (`Retry-After`).
fn is_retry_later(code: &str) -> bool {
    ErrorCode::parse(code).is_some_and(|code| code.retry_after_seconds().is_some())
}

/// A request refused before any GraphQL ran, with its code's status.
fn refused(code: ErrorCode, message: impl Into<String>, media: MediaType) -> Response {
    error_response(status_of(code), media, vec![request_error(message, code)])
}

/// The response media type the client accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponseJson,
    Json,
}

impl MediaType {
    fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => JSON,
        }
    }
}

/// `None` when the client accepts neither JSON form (406). No `Accept` means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    let ranges: Vec<String> = accept
        .split(',')
        .map(|range| {
            range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if ranges.iter().any(|r| r == GRAPHQL_RESPONSE_JSON) {
        Some(MediaType::GraphqlResponseJson)
    } else if ranges
        .iter()
        .any(|r| r == JSON || r == "application/*" || r == "*/*")
    {
        Some(MediaType::Json)
    } else {
        None
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// A response made only of errors, with no `data` (request errors, before execution).
fn error_response(status: StatusCode, media: MediaType, errors: Vec<ServerError>) -> Response {
    let body = serde_json::json!({ "errors": errors });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.as_str()),
    );
    response
}

/// Who is calling: `Ok(None)` without a token; an invalid token is an error, not anonymity.
fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<Option<Caller>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or_else(|| "the Authorization header must be 'Bearer <token>'".to_string())?;
    state
        .verifier
        .verify(token)
        .map(|principal| Some(Caller::from_principal(&principal)))
        .map_err(|error| format!("invalid token: {error}"))
}

async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.is_empty() && wants_html(&headers) {
        let page = GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("coursetrail")
            .finish();
        return Html(page).into_response();
    }
    let Some(media) = negotiate(&headers) else {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    };
    let mut request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(error) => {
            return refused(
                ErrorCode::BadRequest,
                format!("invalid request: {error}"),
                media,
            );
        }
    };
    if let Err(too_large) = state.documents.prepare(&mut request) {
        return too_large_response(media, Method::GET, &too_large);
    }
    // GET is for queries only: a mutation over GET could be triggered by a link or a crawler.
    let operation_name = request.operation_name.clone();
    if let Ok(document) = request.parsed_query() {
        let operation = match &operation_name {
            Some(name) => document
                .operations
                .iter()
                .find(|(n, _)| n.map(|n| n.as_str()) == Some(name)),
            None => document.operations.iter().next(),
        };
        if let Some((_, operation)) = operation
            && operation.node.ty != OperationType::Query
        {
            let mut response = refused(
                ErrorCode::MethodNotAllowed,
                "only queries may be sent with GET; use POST",
                media,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute(
        &state,
        &headers,
        media,
        Method::GET,
        BatchRequest::Single(request),
    )
    .await
}

async fn graphql_post(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let Some(media) = negotiate(&headers) else {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with(JSON) {
        return refused(
            ErrorCode::UnsupportedMediaType,
            "the request body must be application/json",
            media,
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes: Bytes = match read_body(body, declared, state.limits.body_timeout).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return refused(
                ErrorCode::PayloadTooLarge,
                format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
                media,
            );
        }
        Err(BodyError::TimedOut) => {
            let message = format!(
                "the request body did not arrive within {}",
                humantime::format_duration(state.limits.body_timeout)
            );
            let mut response = refused(ErrorCode::RequestTimeout, message, media);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyError::Broken) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(batch) => batch,
        Err(error) => {
            return refused(
                ErrorCode::BadRequest,
                format!("the request body is not a GraphQL request: {error}"),
                media,
            );
        }
    };
    if let BatchRequest::Batch(requests) = &batch
        && (requests.len() > MAX_BATCH || requests.is_empty())
    {
        return refused(
            ErrorCode::BadRequest,
            format!("a batch must hold 1 to {MAX_BATCH} operations"),
            media,
        );
    }
    let mut batch = batch;
    if let Some(too_large) = batch
        .iter_mut()
        .find_map(|request| state.documents.prepare(request).err())
    {
        return too_large_response(media, Method::POST, &too_large);
    }
    execute(&state, &headers, media, Method::POST, batch).await
}

/// The status of a document that does not parse or validate: 400 for
/// `application/graphql-response+json`; for `application/json`, the GraphQL-over-HTTP
/// specification asks for 200 (its legacy clients read errors only from a 2xx response).
fn request_error_status(media: MediaType) -> StatusCode {
    match media {
        MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
        MediaType::Json => StatusCode::OK,
    }
}

/// How much of an oversized body is read (and thrown away) so that the client, still
/// sending, receives the 413: a server that closes with unread data makes the client's
/// kernel reset the connection, and the response is lost.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// The request body, at most [`MAX_BODY_BYTES`], all of it within `timeout`. A body declared
/// (`Content-Length`) or found too large is `TooLarge` even when its rest is slow to come.
async fn read_body(
    body: Body,
    declared: Option<u64>,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut received = 0usize;
    loop {
        let too_large =
            received > MAX_BODY_BYTES || declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
        let chunk = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) if too_large => return Err(BodyError::TooLarge),
            Err(_) => return Err(BodyError::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len();
        if received > MAX_DRAINED_BYTES {
            return Err(BodyError::TooLarge);
        }
        if received <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&chunk);
        }
    }
    if received > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    Ok(Bytes::from(bytes))
}

/// How a request's operation is named in the log: its `operationName`, else the operation's
/// own name, else its type and first root field (`mutation createCourse`), so that anonymous
/// operations can be told apart too.
fn operation_label(request: &mut async_graphql::Request) -> String {
    if let Some(name) = &request.operation_name {
        return name.clone();
    }
    let Ok(document) = request.parsed_query() else {
        return "-".into();
    };
    match document.operations.iter().next() {
        Some((Some(name), _)) => name.to_string(),
        Some((None, operation)) => type_and_root_field(&operation.node),
        None => "-".into(),
    }
}

/// How an operation is named in metrics: its type and first root field (`mutation
/// createCourse`), whatever the client called it, so the label's values are bounded by the
/// schema. Meaningful only for a document that validates; the others count as [`INVALID`].
pub(crate) fn metric_operation(request: &mut async_graphql::Request) -> String {
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return INVALID.into();
    };
    let chosen = document.operations.iter().find(|(name, _)| match &wanted {
        Some(wanted) => name.is_some_and(|name| name.as_str() == wanted),
        None => true,
    });
    chosen.map_or_else(
        || INVALID.into(),
        |(_, operation)| type_and_root_field(&operation.node),
    )
}

/// The metrics' name for operations that did not parse or validate.
pub(crate) const INVALID: &str = "invalid";

fn type_and_root_field(operation: &async_graphql::parser::types::OperationDefinition) -> String {
    use async_graphql::parser::types::Selection;
    match operation.selection_set.node.items.first().map(|s| &s.node) {
        Some(Selection::Field(field)) => format!("{} {}", operation.ty, field.node.name.node),
        _ => operation.ty.to_string(),
    }
}

/// Counts one GraphQL operation: by `label` unless its document was refused (parse or
/// validation), by its first error's code or `ok`.
pub(crate) fn count_operation(
    app: &App,
    label: &str,
    errors: &[ServerError],
    took: Option<Duration>,
) {
    let first_code = errors.first().and_then(code_of);
    let refused = first_code
        .as_deref()
        .is_some_and(|code| code == PARSE_FAILED || code == VALIDATION_FAILED);
    let label = if refused { INVALID } else { label };
    let outcome = first_code.as_deref().unwrap_or("ok");
    let metrics = app.runtime().metrics();
    metrics
        .graphql
        .operations
        .with_label_values(&[label, outcome])
        .inc();
    if let Some(took) = took {
        metrics
            .graphql
            .duration
            .with_label_values(&[label])
            .observe(took.as_secs_f64());
    }
}

/// A document refused before validation for its size with fragments expanded
/// ([`documents::TooLarge`]): nothing of it was validated or run.
fn too_large_response(
    media: MediaType,
    method: Method,
    too_large: &documents::TooLarge,
) -> Response {
    tracing::info!(method = %method, outcome = VALIDATION_FAILED, "graphql request refused: {too_large}");
    let error = request_error(too_large.to_string(), ErrorCode::GraphqlValidationFailed);
    error_response(request_error_status(media), media, vec![error])
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    media: MediaType,
    method: Method,
    mut batch: BatchRequest,
) -> Response {
    let started = Instant::now();
    // Not a GraphQL request at all (no `query`, say `{"qeury": …}`): a 400 whatever the media
    // type, rather than the parse error of an empty document.
    if batch
        .iter_mut()
        .any(|request| request.query.trim().is_empty())
    {
        return refused(ErrorCode::BadRequest, "the request has no query", media);
    }
    let operation_names: Vec<String> = batch.iter_mut().map(operation_label).collect();
    let metric_names: Vec<String> = batch.iter_mut().map(metric_operation).collect();
    let caller = match authenticate(state, headers) {
        Ok(caller) => caller,
        Err(message) => {
            let code = ErrorCode::Unauthenticated;
            tracing::info!(method = %method, operation = operation_names.join(","), outcome = code.as_str(), "graphql request refused");
            let error = request_error(message, code);
            for label in &metric_names {
                count_operation(&state.app, label, std::slice::from_ref(&error), None);
            }
            let mut response = error_response(status_of(code), media, vec![error]);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let tenant = caller
        .as_ref()
        .map(|c| c.tenant().to_string())
        .unwrap_or_else(|| "-".into());
    let context = RequestContext::new(&state.app, caller, correlation_id(headers));
    // Every request of the batch was prepared by its caller (parsed once, size-checked).
    let batch = batch.data(context);
    let span = tracing::info_span!(
        "operation",
        otel.name = %metric_names.join(","),
        graphql.operation = %operation_names.join(","),
    );
    let mut response = state.schema.execute_batch(batch).instrument(span).await;
    let outcome = Outcome::of(&mut response);
    let took = started.elapsed();
    for (label, r) in metric_names.iter().zip(responses(&response)) {
        count_operation(&state.app, label, &r.errors, Some(took));
    }
    tracing::info!(
        method = %method,
        tenant = %tenant,
        operation = operation_names.join(","),
        duration_ms = took.as_secs_f64() * 1000.0,
        outcome = %outcome.summary(),
        "graphql request"
    );
    http_response(response, &outcome, media)
}

/// The responses of a batch, or the one of a single request.
fn responses(response: &BatchResponse) -> &[async_graphql::Response] {
    match response {
        BatchResponse::Single(r) => std::slice::from_ref(r),
        BatchResponse::Batch(rs) => rs.as_slice(),
    }
}

/// What the errors of an executed request say about the HTTP answer.
struct Outcome {
    /// Every error's code, in order.
    codes: Vec<String>,
    /// A request's document failed to parse or validate (nothing ran).
    request_failed: bool,
}

impl Outcome {
    /// Gives every error its code, and collects them.
    fn of(response: &mut BatchResponse) -> Self {
        let mut outcome = Outcome {
            codes: Vec::new(),
            request_failed: false,
        };
        let mut visit = |r: &mut async_graphql::Response| {
            for error in &mut r.errors {
                ensure_code(error);
                let code = code_of(error).unwrap_or_default();
                if r.data == async_graphql::Value::Null
                    && (code == PARSE_FAILED || code == VALIDATION_FAILED)
                {
                    outcome.request_failed = true;
                }
                outcome.codes.push(code);
            }
        };
        match response {
            BatchResponse::Single(r) => visit(r),
            BatchResponse::Batch(rs) => rs.iter_mut().for_each(visit),
        }
        outcome
    }

    fn summary(&self) -> String {
        if self.codes.is_empty() {
            "ok".into()
        } else {
            self.codes.join(",")
        }
    }
}

/// The HTTP answer to an executed request: a request error's status for a document that did
/// not parse or validate; the load status for an operation refused as a whole for load (no
/// data at all, every error asking to come back later), so proxies and clients back off
/// without reading the body; else 200. Any error asking to come back later adds `Retry-After`.
fn http_response(response: BatchResponse, outcome: &Outcome, media: MediaType) -> Response {
    let codes = &outcome.codes;
    if outcome.request_failed
        && let BatchResponse::Single(r) = response
    {
        return error_response(request_error_status(media), media, r.errors);
    }
    let retry_later = codes.iter().any(|code| is_retry_later(code));
    let status = match &response {
        BatchResponse::Single(r)
            if r.data == async_graphql::Value::Null
                && !codes.is_empty()
                && codes.iter().all(|code| is_retry_later(code)) =>
        {
            ErrorCode::parse(&codes[0]).map_or(StatusCode::SERVICE_UNAVAILABLE, status_of)
        }
        _ => StatusCode::OK,
    };
    let body = match serde_json::to_string(&response) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(error = %error, "cannot serialise a GraphQL response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut http = (status, body).into_response();
    http.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.as_str()),
    );
    if retry_later {
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    http
}
