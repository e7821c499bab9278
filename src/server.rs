//! Running the server: the HTTP app around a database, served until a shutdown signal.
//! `serve_on` takes a bound listener and a shutdown future, so tests can bind port 0.

use crate::app::App;
use crate::auth::TokenVerifier;
use crate::graphql::build_schema;
use crate::http::{HttpState, router};
use axum::serve::ListenerExt;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Builds the HTTP state around the application: schema, verifier, pool.
pub fn http_state(app: App, verifier: TokenVerifier) -> HttpState {
    let pool = app.pool().clone();
    HttpState {
        schema: build_schema(app.clone()),
        verifier: Arc::new(verifier),
        pool,
        app,
        ws: Default::default(),
        documents: Default::default(),
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve_on(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Responses go out as soon as they are written, not held back by Nagle's algorithm
    // waiting for the client's ACK of the previous segment.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
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
