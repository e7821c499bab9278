//! `GET /xapi/statements`: the tenant's learning lifecycle as an xAPI 1.0.3 `StatementResult`
//! (`{"statements":[…],"more":""}`), streamed one keyset page at a time in position order.
//!
//! Thin: the audit export's authentication, role rules (`App::audit_export`), parameters and
//! streamed body (`export.rs`), and the pure mapping of `crate::xapi`. The whole result is one
//! response (`more` is always empty); a failure midway aborts the body, so a cut result is
//! never valid JSON. Resume after the `…/xapi/extensions/position` of the last statement
//! received with `afterPosition`. Details: docs/xapi.md.
//!
//! Parameters (all optional): `traineeId`, `courseId`, `streamId`, `eventTypes` (stored names
//! of events that have a statement), `afterPosition`, `since` (exclusive) and `until`
//! (inclusive) on `stored` (RFC 3339), and `ascending` (only `true`: the order is the log's).

use super::HttpState;
use super::export::{admitted, app_error, open_pages, shared_filter, streamed_body};
use crate::app::views::LogFilter;
use crate::xapi::{self, Iris, LEARNER_EVENTS};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatementParams {
    trainee_id: Option<Uuid>,
    course_id: Option<Uuid>,
    stream_id: Option<Uuid>,
    event_types: Option<String>,
    after_position: Option<i64>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    ascending: Option<bool>,
}

const PREFIX: &str = r#"{"statements":["#;
const SUFFIX: &str = r#"],"more":""}"#;

pub async fn handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<StatementParams>, QueryRejection>,
) -> Response {
    let (caller, (filter, after)) = match admitted(&state, &headers, params, parse) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let pages = match open_pages(&state, &caller, filter, after).await {
        Ok(pages) => pages,
        Err(error) => return app_error(error),
    };
    let (tenant, iris) = (caller.tenant(), Iris::new(&state.xapi_home_page));
    let mut first = true;
    let render = move |events: &[_]| {
        let mut out = Vec::with_capacity(events.len() * 900);
        for event in events {
            let Some(statement) =
                xapi::statement(event, tenant, &iris).map_err(|e| e.to_string())?
            else {
                continue;
            };
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &statement).map_err(|e| e.to_string())?;
        }
        Ok(Bytes::from(out))
    };
    let body = streamed_body(
        &state,
        "xapi",
        Some(Bytes::from_static(PREFIX.as_bytes())),
        pages,
        Some(Bytes::from_static(SUFFIX.as_bytes())),
        render,
    );
    tracing::info!(tenant = %tenant, "xapi export started");
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-experience-api-version",
        HeaderValue::from_static(xapi::VERSION),
    );
    response
}

fn parse(params: StatementParams) -> Result<(LogFilter, i64), String> {
    if params.ascending == Some(false) {
        return Err("statements come in ascending order only (the log's order)".into());
    }
    let (mut filter, after) = shared_filter(
        params.trainee_id,
        params.course_id,
        params.stream_id,
        params.event_types,
        params.after_position,
    )?;
    // Only the events that have a statement are read: the others would be skipped anyway.
    filter.event_types = match filter.event_types {
        None => Some(LEARNER_EVENTS.to_vec()),
        Some(types) => {
            if let Some(other) = types.iter().find(|t| !LEARNER_EVENTS.contains(t)) {
                return Err(format!("{} events have no xAPI statement", other.as_str()));
            }
            Some(types)
        }
    };
    (filter.from, filter.to) = xapi::stored_bounds(params.since, params.until);
    // Statements carry no personal data: it is not even read (nor its keys opened).
    filter.without_personal = true;
    Ok((filter, after))
}
