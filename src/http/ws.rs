//! GraphQL over WebSocket, `graphql-transport-ws` protocol
//! (<https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>), at `GET /graphql/ws`.
//!
//! Implemented here on axum's WebSocket rather than with async-graphql-axum's handler, because
//! we need what the stock handler does not give: the token from `connection_init` verified with
//! our [`TokenVerifier`](crate::auth::TokenVerifier), the socket closed when that token expires,
//! and the protocol's close codes (4400 bad message, 4401 subscribe before ack, 4403 bad token,
//! 4408 init timeout, 4409 duplicate id, 4429 second init), with RFC 6455's 1009 for a message
//! over the size limit. An open socket keeps its HTTP connection's place under the connection
//! cap. A client that leaves a message unread
//! longer than the send timeout is dropped: its subscriptions must not hold their buffers.
//!
//! It owns the protocol only: operations run through the same schema, resolvers and role rules
//! as over HTTP.

use super::{HttpState, correlation_id};
use crate::app::Caller;
use crate::app::ErrorCode;
use crate::auth::bearer_token;
use crate::graphql::{RequestContext, ensure_code, request_error};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// The only subprotocol spoken.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Connection limits.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// How long a client has to send `connection_init` before the socket is closed (4408).
    pub init_timeout: Duration,
    /// Most operations running at once on one socket.
    pub max_operations: usize,
    /// How long the client may leave a message unread before the socket is dropped: a client
    /// that stops reading holds its subscriptions' buffers, so it is cut off, not waited for.
    pub send_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(10),
            max_operations: 64,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Tells the open sockets that the server is shutting down, so each closes with
/// [`close::SERVICE_RESTART`] (its clients reconnect at once, elsewhere or after the restart)
/// instead of being dropped without a close frame (which clients see as 1006, an error).
#[derive(Clone)]
pub struct Closing(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Closing {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Closing {
    fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Asks every open socket to close, and waits up to `limit` for them to be closed.
    pub async fn close_all(&self, limit: Duration) {
        self.0.send_replace(true);
        let _ = tokio::time::timeout(limit, self.0.closed()).await;
    }
}

/// The protocol's close codes.
mod close {
    pub const BAD_MESSAGE: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
    /// RFC 6455's "message too big".
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// "Service restart" (IANA's WebSocket close code registry): the server is going down.
    pub const SERVICE_RESTART: u16 = 1012;
}

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        payload: Option<Value>,
    },
    Ping {
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Pong {
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    Complete {
        id: String,
    },
}

/// From an operation's task to the connection loop.
enum Outgoing {
    /// A message for the client about operation `id` (of generation `generation`).
    Message {
        id: String,
        generation: u64,
        text: String,
    },
    /// Operation `id` finished on its own.
    Done { id: String, generation: u64 },
}

/// The upgrade: accepts only `graphql-transport-ws`.
pub async fn handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    permit: Option<axum::Extension<ConnectionPermit>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // No buffers reserved up front: the WebSocket layer's defaults reserve 128 KiB of read
    // buffer per socket, most of an idle socket's memory. The read buffer grows to the largest
    // message read (up to the message limit); each message is written out at once.
    let upgrade = upgrade
        .protocols([PROTOCOL])
        .max_message_size(super::MAX_BODY_BYTES)
        .read_buffer_size(0)
        .write_buffer_size(0);
    let accepted = upgrade.selected_protocol().is_some();
    let correlation_id = correlation_id(&headers);
    // A socket counts toward the connection cap for as long as it is open: it keeps its HTTP
    // connection's place.
    let permit = permit.and_then(|axum::Extension(permit)| permit.take());
    // The socket's lines keep the upgrade request's span (its request and correlation ids).
    let span = tracing::Span::current();
    upgrade.on_upgrade(move |mut socket| {
        tracing::Instrument::instrument(
            async move {
                if accepted {
                    Connection::run(state, correlation_id, socket).await;
                    drop(permit);
                } else {
                    let _ = send_close(
                        &mut socket,
                        close::SUBPROTOCOL_NOT_ACCEPTABLE,
                        "Subprotocol not acceptable",
                    )
                    .await;
                }
            },
            span,
        )
    })
}

struct Connection {
    state: HttpState,
    correlation_id: Uuid,
    init_received: bool,
    /// Set by a successful `connection_init`, with the moment its token expires.
    caller: Option<(Caller, Instant)>,
    /// The running operations by id, each with the generation that tells a reused id apart.
    operations: HashMap<String, (u64, AbortHandle)>,
    generation: u64,
    outgoing_tx: mpsc::Sender<Outgoing>,
}

/// What the loop does after a client message.
enum Flow {
    Continue,
    Send(String),
    Close(u16, &'static str),
}

impl Connection {
    async fn run(state: HttpState, correlation_id: Uuid, mut socket: WebSocket) {
        let started = std::time::Instant::now();
        // Bounded, so a slow client slows its operations down instead of filling memory.
        let (outgoing_tx, mut outgoing_rx) = mpsc::channel::<Outgoing>(64);
        let mut this = Self {
            state,
            correlation_id,
            init_received: false,
            caller: None,
            operations: HashMap::new(),
            generation: 0,
            outgoing_tx,
        };
        this.serve(&mut socket, &mut outgoing_rx, started).await;
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        outgoing_rx: &mut mpsc::Receiver<Outgoing>,
        started: std::time::Instant,
    ) {
        let init_deadline = Instant::now() + self.state.ws.init_timeout;
        let mut close_code: Option<u16> = None;
        let mut closing = self.state.closing.subscribe();
        loop {
            let init_received = self.init_received;
            let expires_at = self.caller.as_ref().map(|(_, at)| *at);
            let init_timeout = async move {
                if init_received {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep_until(init_deadline).await;
            };
            let token_expiry = async move {
                match expires_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let flow = tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Binary(_))) => {
                        Flow::Close(close::BAD_MESSAGE, "Binary messages are not supported")
                    }
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    // The one read error worth a close frame: a message over the size limit
                    // (the socket still takes one last frame). Any other is a broken socket.
                    Some(Err(error)) if is_too_big(&error) => {
                        Flow::Close(close::MESSAGE_TOO_BIG, "Message too big")
                    }
                    Some(Err(_)) => break,
                },
                Some(outgoing) = outgoing_rx.recv() => self.on_outgoing(outgoing),
                () = init_timeout => {
                    Flow::Close(close::INIT_TIMEOUT, "Connection initialisation timeout")
                }
                () = token_expiry => Flow::Close(close::FORBIDDEN, "Forbidden: the token expired"),
                _ = closing.wait_for(|closing| *closing) => {
                    Flow::Close(close::SERVICE_RESTART, "The server is restarting")
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Send(text) => {
                    let send = socket.send(Message::Text(text.into()));
                    match tokio::time::timeout(self.state.ws.send_timeout, send).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::info!("a websocket client stopped reading; dropping it");
                            break;
                        }
                    }
                }
                Flow::Close(code, reason) => {
                    close_code = Some(code);
                    let _ = send_close(socket, code, reason).await;
                    break;
                }
            }
        }
        self.closed(close_code, started);
    }

    /// Ends the connection's operations and logs its end.
    fn closed(&self, close_code: Option<u16>, started: std::time::Instant) {
        for (_, handle) in self.operations.values() {
            handle.abort();
        }
        let tenant = self
            .caller
            .as_ref()
            .map(|(caller, _)| caller.tenant().to_string())
            .unwrap_or_else(|| "-".into());
        tracing::info!(
            tenant = %tenant,
            close_code = close_code.map_or_else(|| "-".to_string(), |c| c.to_string()),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "graphql websocket closed"
        );
    }

    fn on_text(&mut self, text: &str) -> Flow {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Flow::Close(close::BAD_MESSAGE, "Invalid message received");
        };
        match message {
            ClientMessage::ConnectionInit { payload } => self.on_init(payload),
            ClientMessage::Ping { .. } => Flow::Send(json!({ "type": "pong" }).to_string()),
            ClientMessage::Pong { .. } => Flow::Continue,
            ClientMessage::Subscribe { id, payload } => self.on_subscribe(id, payload),
            ClientMessage::Complete { id } => {
                // The client ends an operation; the server then sends nothing more for it.
                if let Some((_, handle)) = self.operations.remove(&id) {
                    handle.abort();
                }
                Flow::Continue
            }
        }
    }

    fn on_init(&mut self, payload: Option<Value>) -> Flow {
        if self.init_received {
            return Flow::Close(close::TOO_MANY_INITS, "Too many initialisation requests");
        }
        self.init_received = true;
        let token = match payload {
            None | Some(Value::Null) => None,
            Some(Value::Object(fields)) => token_of(&fields),
            Some(_) => return Flow::Close(close::BAD_MESSAGE, "Invalid message received"),
        };
        let Some(token) = token else {
            return Flow::Close(close::FORBIDDEN, "Forbidden: a bearer token is required");
        };
        match self.state.verifier.verify(&token) {
            Ok(principal) => {
                let left = (principal.expires_at() - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                self.caller = Some((Caller::from_principal(&principal), Instant::now() + left));
                Flow::Send(json!({ "type": "connection_ack" }).to_string())
            }
            Err(_) => Flow::Close(close::FORBIDDEN, "Forbidden: invalid token"),
        }
    }

    fn on_subscribe(&mut self, id: String, request: Box<async_graphql::Request>) -> Flow {
        let Some((caller, _)) = self.caller.clone() else {
            return Flow::Close(close::UNAUTHORIZED, "Unauthorized");
        };
        if self.operations.contains_key(&id) {
            // The reason names the id in the protocol; ours stays fixed to bound its length.
            return Flow::Close(close::DUPLICATE_ID, "Subscriber for this id already exists");
        }
        if self.operations.len() >= self.state.ws.max_operations {
            let error = request_error(
                format!(
                    "at most {} operations may run on one connection",
                    self.state.ws.max_operations
                ),
                ErrorCode::TooManyOperations,
            );
            return Flow::Send(
                json!({ "type": "error", "id": id, "payload": [error] }).to_string(),
            );
        }
        let mut request = *request;
        if let Err(too_large) = self.state.documents.prepare(&mut request) {
            let error = request_error(too_large.to_string(), ErrorCode::GraphqlValidationFailed);
            return Flow::Send(
                json!({ "type": "error", "id": id, "payload": [error] }).to_string(),
            );
        }
        self.generation += 1;
        let generation = self.generation;
        let label = super::metric_operation(&mut request);
        let context = RequestContext::new(&self.state.app, Some(caller), self.correlation_id);
        let request = request.data(context);
        let responses = self.state.schema.execute_stream(request);
        let counted = Counted {
            app: self.state.app.clone(),
            label,
            errors: Vec::new(),
        };
        let outgoing = self.outgoing_tx.clone();
        let task = tokio::spawn(forward(
            responses,
            outgoing,
            id.clone(),
            generation,
            counted,
        ));
        self.operations
            .insert(id, (generation, task.abort_handle()));
        Flow::Continue
    }

    fn on_outgoing(&mut self, outgoing: Outgoing) -> Flow {
        let current = |operations: &HashMap<String, (u64, AbortHandle)>, id: &str, generation| {
            operations
                .get(id)
                .is_some_and(|(running, _)| *running == generation)
        };
        match outgoing {
            // Messages of an operation the client completed meanwhile are dropped.
            Outgoing::Message {
                id,
                generation,
                text,
            } if current(&self.operations, &id, generation) => Flow::Send(text),
            Outgoing::Message { .. } => Flow::Continue,
            Outgoing::Done { id, generation } => {
                if current(&self.operations, &id, generation) {
                    self.operations.remove(&id);
                }
                Flow::Continue
            }
        }
    }
}

/// The token in a `connection_init` payload: `{"Authorization": "Bearer …"}` (any case) or
/// `{"token": "…"}`.
/// Sends an operation's responses as `next` messages (or, failing before its first, one
/// `error`), then `complete`, and says when it is done.
async fn forward(
    mut responses: impl futures_util::Stream<Item = async_graphql::Response> + Unpin,
    outgoing: mpsc::Sender<Outgoing>,
    id: String,
    generation: u64,
    mut counted: Counted,
) {
    let mut first = true;
    while let Some(mut response) = responses.next().await {
        response.errors.iter_mut().for_each(ensure_code);
        if counted.errors.is_empty() {
            counted.errors.clone_from(&response.errors);
        }
        // An operation that failed before producing anything (validation, or a resolver
        // refusing to start) is an `error` message, which ends it.
        let failed =
            first && response.data == async_graphql::Value::Null && !response.errors.is_empty();
        let text = if failed {
            json!({ "type": "error", "id": id, "payload": response.errors })
        } else {
            json!({ "type": "next", "id": id, "payload": response })
        };
        let message = Outgoing::Message {
            id: id.clone(),
            generation,
            text: text.to_string(),
        };
        if outgoing.send(message).await.is_err() || failed {
            let _ = outgoing.send(Outgoing::Done { id, generation }).await;
            return;
        }
        first = false;
    }
    let complete = json!({ "type": "complete", "id": id }).to_string();
    let message = Outgoing::Message {
        id: id.clone(),
        generation,
        text: complete,
    };
    if outgoing.send(message).await.is_ok() {
        let _ = outgoing.send(Outgoing::Done { id, generation }).await;
    }
}

/// A subscription, counted in the metrics when it ends however it ends (completed, failed,
/// stopped by the client, or the socket closed), by its first error or as `ok`.
struct Counted {
    app: crate::app::App,
    label: String,
    errors: Vec<async_graphql::ServerError>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        super::count_operation(&self.app, &self.label, &self.errors, None);
    }
}

fn token_of(fields: &serde_json::Map<String, Value>) -> Option<String> {
    for (key, value) in fields {
        let Some(value) = value.as_str() else {
            continue;
        };
        if key.eq_ignore_ascii_case("authorization") {
            return bearer_token(value).map(str::to_owned);
        }
        if key == "token" {
            return Some(value.to_owned());
        }
    }
    None
}

/// Whether a read error is the WebSocket layer's "message (or frame) too big" (tungstenite's
/// capacity error, which axum passes on only as text).
fn is_too_big(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("Space limit exceeded") || text.contains("too long")
}

async fn send_close(
    socket: &mut WebSocket,
    code: u16,
    reason: &'static str,
) -> Result<(), axum::Error> {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    socket.send(Message::Close(Some(frame))).await
}

/// A connection's place under the server's connection limit (`HttpLimits::max_connections`),
/// in its requests' extensions: released when the connection ends, unless a WebSocket upgrade
/// took it.
#[derive(Clone)]
pub struct ConnectionPermit(std::sync::Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl ConnectionPermit {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// The permit, for a WebSocket to hold while it is open.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
