//! Logs and traces: where the server's `tracing` spans and events go.
//!
//! - Logs go to stderr, as text (coloured on a terminal) or, with `LOG_FORMAT=json`, one JSON
//!   object per line, filtered by `RUST_LOG`. A request's lines carry its span's fields: request
//!   id, correlation id and, when tracing is on, the trace id.
//! - Traces go over OTLP/HTTP (protobuf) when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter reads the other standard
//!   `OTEL_*` variables (headers, timeout) itself. Spans: `request` → the GraphQL `operation`
//!   → `command` → `db.*` (each store or projection statement). `OTEL_TRACES_FILTER` chooses
//!   what is exported (default `coursetrail=debug,info`: the `db.*` spans are at debug level).
//!   Without an endpoint nothing is exported and the debug spans are not even created.
//!   An incoming W3C `traceparent` header makes the request's span a child of the caller's.

use anyhow::{Context as _, bail};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether spans are exported: lets the request path skip trace-id work when they are not.
static TRACING: AtomicBool = AtomicBool::new(false);

const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";
const DEFAULT_TRACES_FILTER: &str = "coursetrail=debug,info";

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes the spans not yet sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl Telemetry {
    /// Installs the process's subscriber from the environment (see the module docs).
    pub fn init() -> anyhow::Result<Self> {
        let log_filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
        let logs = match env("LOG_FORMAT").as_deref().map(str::trim) {
            Some("json") => tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
                .boxed(),
            Some("text") | None => tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .boxed(),
            Some(other) => bail!("LOG_FORMAT is not valid: {other:?} (text or json)"),
        };
        let endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let (traces, provider) = match endpoint {
            None => (None, None),
            Some(_) => {
                let provider = tracer_provider()?;
                let filter = env("OTEL_TRACES_FILTER").unwrap_or(DEFAULT_TRACES_FILTER.into());
                let filter = EnvFilter::try_new(&filter)
                    .with_context(|| format!("OTEL_TRACES_FILTER is not valid: {filter:?}"))?;
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("coursetrail"))
                    .with_filter(filter);
                (Some(layer), Some(provider))
            }
        };
        tracing_subscriber::registry()
            .with(traces)
            .with(logs.with_filter(log_filter))
            .try_init()
            .context("a tracing subscriber is already installed")?;
        TRACING.store(provider.is_some(), Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// Sends the spans still buffered; call before the process exits.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("traces not flushed: {error}");
        }
    }
}

/// The OTLP/HTTP exporter, configured by the standard environment variables, batching on a
/// thread of its own.
fn tracer_provider() -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .context("cannot build the OTLP span exporter")?;
    let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "coursetrail".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Reads W3C trace context from HTTP headers.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// When tracing is on: continues the caller's trace (a `traceparent` header) in `span`, and
/// records the trace id in the span's `trace_id` field, so every log line of the request names
/// it.
pub fn trace_request(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is not exported (filtered out): nothing to continue then.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}
