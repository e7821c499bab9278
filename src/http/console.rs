//! The admin console: a static single-page application under `console/`, embedded in the
//! binary and served at `/console/`. It speaks only the public API (`/graphql`, `/graphql/ws`)
//! with the token the person pastes, so it can do nothing a client could not.
//!
//! `CONSOLE_DIR` serves the same files from disk instead, for working on the console without a
//! rebuild. Only the names in [`FILES`] are ever served, whichever the source.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::HttpState;

/// A file of the console: its name under `console/`, media type, and embedded bytes.
struct File {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! embedded {
    ($name:literal, $media_type:literal) => {
        File {
            name: $name,
            media_type: $media_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name)),
        }
    };
}

const FILES: &[File] = &[
    embedded!("index.html", "text/html; charset=utf-8"),
    embedded!("console.css", "text/css; charset=utf-8"),
    embedded!("console.js", "text/javascript; charset=utf-8"),
    embedded!("ui.js", "text/javascript; charset=utf-8"),
    embedded!("api.js", "text/javascript; charset=utf-8"),
    embedded!("live.js", "text/javascript; charset=utf-8"),
    embedded!("audit.js", "text/javascript; charset=utf-8"),
    embedded!("reports.js", "text/javascript; charset=utf-8"),
    embedded!("charts.js", "text/javascript; charset=utf-8"),
    embedded!("enrollments.js", "text/javascript; charset=utf-8"),
];

/// Scripts, styles and connections only from this origin (`'self'` covers its `ws:`/`wss:`
/// too; no CDN, nothing inline), and the console never framed: the token it holds is worth a
/// clickjacking attempt.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// `/` and `/console` lead to the console. Temporary: a browser must not remember it for
/// good, should `/` ever serve something else.
pub async fn redirect() -> Redirect {
    Redirect::temporary("/console/")
}

/// `/console/`: the application's page.
pub async fn index(state: State<HttpState>) -> Response {
    serve(state, "index.html").await
}

/// `/console/{file}`.
pub async fn file(state: State<HttpState>, Path(name): Path<String>) -> Response {
    serve(state, &name).await
}

async fn serve(State(state): State<HttpState>, name: &str) -> Response {
    let Some(file) = FILES.iter().find(|file| file.name == name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let bytes = match &state.console_dir {
        None => file.bytes.to_vec(),
        Some(dir) => match tokio::fs::read(dir.join(file.name)).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(error = %error, file = file.name, "console file unreadable");
                return (StatusCode::NOT_FOUND, "not found").into_response();
            }
        },
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.media_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidated on every load: a new binary must not run with yesterday's script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
