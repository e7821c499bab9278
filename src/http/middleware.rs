//! What every request goes through besides its handler: a request id and a correlation id
//! (in the request's span and echoed back), its count and latency in the metrics; and the
//! metrics' own endpoint.

use super::HttpState;
use crate::auth::bearer_token;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

/// Counts every routed request by its route (the pattern, never the raw path) and status.
pub(super) async fn observe(
    State(state): State<HttpState>,
    route: Option<MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let metrics = state.app.runtime().metrics();
    metrics
        .http
        .requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    metrics
        .http
        .duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus' scrape target. Nothing in it names a tenant or a caller; where the port is
/// reachable by others, `METRICS_TOKEN` makes it ask for a bearer token.
pub(super) async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        use sha2::{Digest, Sha256};
        // Compared as digests, so the time taken says nothing about a common prefix.
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or_default();
        if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let body = state.app.runtime().render_metrics();
    (
        [(header::CONTENT_TYPE, crate::metrics::Metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

const REQUEST_ID: &str = "x-request-id";
const CORRELATION_ID: &str = "x-correlation-id";

/// Gives every request a request id (the client's `X-Request-Id` when it is a plain token of at
/// most 128 visible characters, else a new UUIDv7) and a correlation id (`X-Correlation-Id`,
/// else a new one, which the handlers then read), runs it in a span carrying both (so every
/// log line of the request has them), and echoes both in the response.
pub(super) async fn request_ids(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let correlation = correlation_id(request.headers()).to_string();
    let header = |value: &str| HeaderValue::from_str(value).ok();
    if let Some(value) = header(&correlation) {
        request.headers_mut().insert(CORRELATION_ID, value);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        request_id = %request_id,
        correlation_id = %correlation,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::trace_request(&span, request.headers());
    let mut response = next.run(request).instrument(span).await;
    for (name, value) in [(REQUEST_ID, &request_id), (CORRELATION_ID, &correlation)] {
        if let Some(value) = header(value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The request's correlation id (set by [`request_ids`] on every request).
pub(super) fn correlation_id(headers: &HeaderMap) -> Uuid {
    headers
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::now_v7)
}
