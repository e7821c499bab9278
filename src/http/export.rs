//! `GET /audit/export`: the audit trail as NDJSON (default) or CSV, for compliance.
//!
//! Authenticated by the bearer token like `/graphql`, with the same role rules (they live in
//! `app::audit`). The body is chunked and streamed one keyset page at a time: a page is read
//! only when the previous one was written to the socket, so memory stays constant however long
//! the history. A failure after the first page aborts the response (the chunked body never
//! terminates properly) rather than ending it cleanly: a truncated export must not look complete.
//!
//! Parameters (all optional): `traineeId`, `courseId`, `streamId`, `eventTypes` (comma-separated
//! stored names such as `CourseStarted,TestGraded`), `from`, `to` (RFC 3339, on `recordedAt`),
//! `afterPosition`, `format` (`ndjson` | `csv`).
//!
//! Authentication, the shared parameters, the first-page check and the streamed body are
//! also the xAPI export's (`xapi.rs`): one path for both.

use super::{HttpState, authenticate};
use crate::app::views::{LogFilter, LoggedEvent};
use crate::app::{AppError, AuditStream, Caller, ErrorCode};
use crate::domain::EventType;
use crate::graphql::request_error;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportParams {
    trainee_id: Option<Uuid>,
    course_id: Option<Uuid>,
    stream_id: Option<Uuid>,
    event_types: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after_position: Option<i64>,
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// The CSV columns, in order; the NDJSON objects carry the same fields (actor nested).
const CSV_HEADER: &str = "position,eventId,streamId,streamType,version,type,schemaVersion,\
recordedAt,actorId,actorRole,commandId,correlationId,causationId,traineeId,courseId,data\r\n";

pub async fn handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Response {
    let (caller, (filter, after, format)) = match admitted(&state, &headers, params, parse) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let pages = match open_pages(&state, &caller, filter, after).await {
        Ok(pages) => pages,
        Err(error) => return app_error(error),
    };
    let header = match format {
        Format::Ndjson => None,
        Format::Csv => Some(Bytes::from_static(CSV_HEADER.as_bytes())),
    };
    let body = streamed_body(
        &state,
        format.as_str(),
        header,
        pages,
        None,
        move |events| Ok(render(events, format)),
    );
    tracing::info!(tenant = %caller.tenant(), "audit export started");
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-{}.{extension}\"",
        caller.tenant()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The caller of a request with a valid bearer token; otherwise why not (a 401).
/// An export request's caller and parsed parameters, or the response refusing it (401, 400).
// The refusal is the handler's whole answer, returned once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(super) fn admitted<P, T>(
    state: &HttpState,
    headers: &HeaderMap,
    params: Result<Query<P>, QueryRejection>,
    parse: impl FnOnce(P) -> Result<T, String>,
) -> Result<(Caller, T), Response> {
    let caller = authenticated(state, headers).map_err(unauthenticated)?;
    let Query(params) = params.map_err(|rejection| bad_input(rejection.body_text()))?;
    let parsed = parse(params).map_err(bad_input)?;
    Ok((caller, parsed))
}

pub(super) fn authenticated(state: &HttpState, headers: &HeaderMap) -> Result<Caller, String> {
    match authenticate(state, headers) {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err("a bearer token is required".into()),
        Err(message) => Err(message),
    }
}

/// The caller's pages of the log (role rules applied by `App::audit_export`), with the first
/// one read before answering, so that a failure to start is a proper error status.
pub(super) async fn open_pages(
    state: &HttpState,
    caller: &Caller,
    filter: LogFilter,
    after: i64,
) -> Result<Pages, AppError> {
    let mut pages = state
        .app
        .reads()
        .audit_export(caller, filter, after)
        .await?
        .peekable();
    if let Some(Err(_)) = std::pin::Pin::new(&mut pages).peek().await
        && let Some(Err(error)) = pages.next().await
    {
        return Err(error);
    }
    Ok(pages)
}

/// The pages an export streams.
pub(super) type Pages = futures_util::stream::Peekable<AuditStream<Vec<LoggedEvent>>>;

/// A chunked body: `head`, then each page as `render` writes it, then `tail`. A page that
/// fails to be read or rendered aborts the body (logged), so a truncated export never ends
/// the way a complete one does. Bytes sent are counted under `label`.
pub(super) fn streamed_body(
    state: &HttpState,
    label: &str,
    head: Option<Bytes>,
    pages: Pages,
    tail: Option<Bytes>,
    mut render: impl FnMut(&[LoggedEvent]) -> Result<Bytes, String> + Send + 'static,
) -> Body {
    let sent = state
        .app
        .runtime()
        .metrics()
        .export_bytes
        .with_label_values(&[label]);
    let failed = |message: String| {
        tracing::error!(error = %message, "export failed midway");
        std::io::Error::other("export failed")
    };
    let pages = pages.map(move |page| match page {
        Ok(events) => render(&events).map_err(failed),
        Err(error) => Err(failed(format!("{error} ({})", error.code()))),
    });
    let body = stream::iter(head.map(Ok))
        .chain(pages)
        .chain(stream::iter(tail.map(Ok)))
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                sent.inc_by(bytes.len() as u64);
            }
        });
    Body::from_stream(body)
}

/// The filter and resume point of the parameters both exports share: `traineeId`,
/// `courseId`, `streamId`, `eventTypes` (comma-separated stored names) and `afterPosition`.
pub(super) fn shared_filter(
    trainee_id: Option<Uuid>,
    course_id: Option<Uuid>,
    stream_id: Option<Uuid>,
    event_types: Option<String>,
    after_position: Option<i64>,
) -> Result<(LogFilter, i64), String> {
    let event_types = event_types
        .map(|list| {
            list.split(',')
                .filter(|name| !name.is_empty())
                .map(|name| {
                    EventType::parse(name).ok_or_else(|| format!("unknown event type {name:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let after = after_position.unwrap_or(0);
    if after < 0 {
        return Err("afterPosition must not be negative".into());
    }
    let filter = LogFilter {
        stream_id,
        trainee_id,
        course_id,
        event_types,
        ..LogFilter::default()
    };
    Ok((filter, after))
}

fn parse(params: ExportParams) -> Result<(LogFilter, i64, Format), String> {
    let format = match params.format.as_deref() {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(_) => return Err("format must be ndjson or csv".into()),
    };
    let (mut filter, after) = shared_filter(
        params.trainee_id,
        params.course_id,
        params.stream_id,
        params.event_types,
        params.after_position,
    )?;
    filter.from = params.from;
    filter.to = params.to;
    Ok((filter, after, format))
}

/// One page as bytes: one line per event.
fn render(events: &[LoggedEvent], format: Format) -> Bytes {
    let mut out = String::with_capacity(events.len() * 400);
    for event in events {
        match format {
            Format::Ndjson => {
                // Serialising owned JSON values of our own types cannot fail.
                if let Ok(line) = serde_json::to_string(&Line::from(event)) {
                    out.push_str(&line);
                }
                out.push('\n');
            }
            Format::Csv => csv_row(&mut out, event),
        }
    }
    Bytes::from(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    position: i64,
    event_id: Uuid,
    stream_id: Uuid,
    stream_type: &'static str,
    version: i32,
    #[serde(rename = "type")]
    event_type: &'static str,
    schema_version: i16,
    recorded_at: String,
    actor: Actor,
    command_id: Option<Uuid>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    trainee_id: Option<Uuid>,
    course_id: Option<Uuid>,
    data: &'a serde_json::Value,
}

#[derive(Serialize)]
struct Actor {
    id: Uuid,
    role: &'static str,
}

impl<'a> From<&'a LoggedEvent> for Line<'a> {
    fn from(e: &'a LoggedEvent) -> Self {
        Line {
            position: e.position,
            event_id: e.event_id,
            stream_id: e.stream_id,
            stream_type: e.stream_type.as_str(),
            version: e.version,
            event_type: e.event_type.as_str(),
            schema_version: e.schema_version,
            recorded_at: timestamp(e.recorded_at),
            actor: Actor {
                id: e.metadata.actor_id,
                role: e.metadata.actor_role.as_str(),
            },
            command_id: e.metadata.command_id,
            correlation_id: e.metadata.correlation_id,
            causation_id: e.metadata.causation_id,
            trainee_id: e.trainee_id,
            course_id: e.course_id,
            data: &e.data,
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One RFC 4180 record. Only `data` can hold commas, quotes or line breaks, but every field goes
/// through the same quoting so no future column can break the format. No field can start with
/// `=`, `+`, `-` or `@` (ids, numbers, fixed names, timestamps, and JSON objects starting with
/// `{`), so a spreadsheet will not read a cell as a formula.
fn csv_row(out: &mut String, e: &LoggedEvent) {
    let optional = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    let fields = [
        e.position.to_string(),
        e.event_id.to_string(),
        e.stream_id.to_string(),
        e.stream_type.as_str().to_string(),
        e.version.to_string(),
        e.event_type.as_str().to_string(),
        e.schema_version.to_string(),
        timestamp(e.recorded_at),
        e.metadata.actor_id.to_string(),
        e.metadata.actor_role.as_str().to_string(),
        optional(e.metadata.command_id),
        e.metadata.correlation_id.to_string(),
        optional(e.metadata.causation_id),
        optional(e.trainee_id),
        optional(e.course_id),
        e.data.to_string(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A refusal of a non-GraphQL endpoint: the GraphQL error shape, its code's status and, for a
/// code that asks the client to come back later, `Retry-After`.
pub(super) fn json_error(code: ErrorCode, message: String) -> Response {
    let body = serde_json::json!({ "errors": [request_error(message, code)] });
    let mut response = (super::status_of(code), body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = code.retry_after_seconds() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub(super) fn unauthenticated(message: String) -> Response {
    let mut response = json_error(ErrorCode::Unauthenticated, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

pub(super) fn bad_input(message: String) -> Response {
    json_error(ErrorCode::BadUserInput, message)
}

pub(super) fn app_error(error: AppError) -> Response {
    error.log_if_internal();
    json_error(error.error_code(), error.to_string())
}
