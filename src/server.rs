//! Running the server: the token verifier and the application and HTTP state wired from the
//! configuration ([`configured_state`], the one wiring `coursetrail serve`, the load
//! generator's server and the test suite share), served until a shutdown signal. `serve_on`
//! takes a bound listener and a shutdown future, so tests can bind port 0.
//!
//! The connection loop is hyper's, driven here rather than through `axum::serve` for the limits
//! a public server needs and `axum::serve` does not expose: a header read timeout (a client
//! sending its headers a byte at a time is disconnected) and a cap on open connections. The
//! body read timeout is the GraphQL handler's ([`crate::http`]).

use crate::app::admission::Limits;
use crate::app::{App, AppSettings, SubscriptionLimits, Timeouts, default_heavy_limits};
use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::graphql::build_schema;
use crate::http::ws::ConnectionPermit;
use crate::http::{HttpLimits, HttpState, router};
use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long `/ready` waits for the database: a load balancer must hear "not ready" quickly.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The application's settings from the configuration, for an application over `pool`
/// (commands and reads) and `report_pool` (reports, rebuilds, exports).
pub fn app_settings(config: &Config, pool: &PgPool, report_pool: PgPool) -> AppSettings {
    let connections = pool.options().get_max_connections() as usize;
    let mut work = Limits::for_pool(connections);
    if config.tenant_concurrency > 0 {
        work.per_tenant = config.tenant_concurrency;
    }
    work.queue_per_tenant = config.tenant_queue;
    work.max_wait = config.queue_timeout;
    work.refusal_delay = config.rate_limit_delay;
    let heavy_limits = Limits {
        // A replay reads a page ahead: two connections each.
        slots: (report_pool.options().get_max_connections() as usize / 2).max(1),
        per_tenant: config.tenant_report_concurrency,
        refusal_delay: config.rate_limit_delay,
        ..default_heavy_limits()
    };
    AppSettings {
        stream_cache_capacity: config.stream_cache_capacity,
        keys: config.data_keys.clone(),
        group_commit: config.group_commit,
        worker_writes: config.citus_worker_writes,
        limits: Some(work),
        heavy_pool: Some(report_pool),
        heavy_limits,
        subscriptions: SubscriptionLimits {
            per_caller: config.subscriptions_per_caller,
            per_tenant: config.subscriptions_per_tenant,
            events_per_second: config.subscription_events_per_second,
            ..SubscriptionLimits::default()
        },
        timeouts: Timeouts {
            command: config.command_timeout,
            report: config.report_timeout,
            export: config.export_timeout,
        },
    }
}

/// The token verifier for the configured keys (or `fallback_secret`, when none are configured),
/// its warnings logged once.
pub fn verifier(config: &Config, fallback_secret: Option<&str>) -> anyhow::Result<TokenVerifier> {
    let settings = config
        .jwt_settings(fallback_secret)
        .context("no token validation keys")?;
    let verifier = TokenVerifier::new(&settings).context("loading token validation keys")?;
    for warning in verifier.warnings() {
        tracing::warn!(warning = %warning, "token configuration");
    }
    Ok(verifier)
}

/// The whole server's state as configured: the application over its two pools, and the HTTP
/// and WebSocket limits. This is the one place configuration and pools become a server:
/// `coursetrail serve`, the load generator's server and (through [`configured_state_with`])
/// the test suite's all go through it.
pub fn configured_state(
    config: &Config,
    pool: PgPool,
    report_pool: PgPool,
    verifier: TokenVerifier,
) -> HttpState {
    configured_state_with(config, pool, report_pool, verifier, |_| {})
}

/// [`configured_state`], with the application's settings adjusted by `adjust_app` before it
/// is built (the schema holds the application, so it cannot change afterwards): the test
/// suite tightens an application's limits this way.
pub fn configured_state_with(
    config: &Config,
    pool: PgPool,
    report_pool: PgPool,
    verifier: TokenVerifier,
    adjust_app: impl FnOnce(&mut AppSettings),
) -> HttpState {
    let mut settings = app_settings(config, &pool, report_pool);
    adjust_app(&mut settings);
    let app = App::build(pool, settings);
    let mut state = http_state(app, verifier);
    state.limits = HttpLimits {
        header_timeout: config.http_header_timeout,
        body_timeout: config.http_body_timeout,
        max_connections: config.http_max_connections,
    };
    state.ws.init_timeout = config.ws_init_timeout;
    state.ws.max_operations = config.ws_max_operations;
    state.metrics_token = config.metrics_token.as_deref().map(Arc::from);
    state.console_dir = config.console_dir.as_deref().map(Arc::from);
    state.xapi_home_page = config.xapi_home_page.clone();
    state
}

/// Builds the HTTP state around the application: schema, verifier, and a connection of its
/// own for `/ready`, which must not queue behind the pool it checks.
pub fn http_state(app: App, verifier: TokenVerifier) -> HttpState {
    let options = (*app.runtime().pool().connect_options()).clone();
    let ready_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(READY_TIMEOUT)
        .connect_lazy_with(options);
    HttpState {
        schema: build_schema(app.clone()),
        verifier: Arc::new(verifier),
        ready_pool,
        app,
        ws: Default::default(),
        closing: Default::default(),
        documents: Default::default(),
        limits: HttpLimits::default(),
        metrics_token: None,
        console_dir: None,
        xapi_home_page: Default::default(),
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, then finishes in-flight requests and
/// closes open WebSockets with 1012 (waiting for them up to [`SOCKETS_CLOSE_WITHIN`]).
pub async fn serve_on(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let closing = state.closing.clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let router = router(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new connections wait in the listen backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses go out as soon as they are written, not held back by Nagle's algorithm
        // waiting for the client's ACK of the previous segment.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY on a connection");
        }
        // The permit goes with the connection's requests: a WebSocket upgrade takes it along,
        // so an open socket keeps counting once its HTTP connection has ended.
        let permit = ConnectionPermit::new(permit);
        let service = TowerToHyperService::new(WithPermit {
            router: router.clone(),
            permit,
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::join!(graceful.shutdown(), closing.close_all(SOCKETS_CLOSE_WITHIN));
    Ok(())
}

/// How long a shutdown waits for open WebSockets to send their close frames.
pub const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// The router, with the connection's permit put into each request.
#[derive(Clone)]
struct WithPermit {
    router: axum::Router,
    permit: ConnectionPermit,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithPermit
where
    axum::Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <axum::Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <axum::Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <axum::Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.permit.clone());
        self.router.call(request)
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
