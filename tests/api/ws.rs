//! A raw `graphql-transport-ws` client for the tests: every frame is visible, so the tests can
//! check the protocol itself (close codes included), not just what a client library reports.

use crate::helpers::TestApp;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// What the server sent.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Json(Value),
    Closed(u16, String),
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects offering the `graphql-transport-ws` subprotocol (or `protocol`, if given).
    pub async fn connect_with(app: &TestApp, protocol: Option<&str>) -> WsClient {
        let mut request = format!("ws://{}/graphql/ws", app.address)
            .into_client_request()
            .expect("request");
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                protocol.parse().expect("header value"),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connect");
        WsClient { socket }
    }

    pub async fn connect(app: &TestApp) -> WsClient {
        Self::connect_with(app, Some("graphql-transport-ws")).await
    }

    /// Connects, sends `connection_init` with the token, expects `connection_ack`.
    pub async fn ready(app: &TestApp, token: &str) -> WsClient {
        let mut client = Self::connect(app).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        let ack = client.recv().await;
        assert_eq!(ack, Frame::Json(json!({ "type": "connection_ack" })));
        client
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("send a frame");
    }

    /// The next frame, skipping WebSocket pings and pongs.
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(FRAME_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// The next frame, or `None` when none came within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Some(Frame::Json(
                        serde_json::from_str(text.as_str()).expect("a JSON message"),
                    ));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Some(Frame::Closed(code, reason));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("websocket error: {error}"),
                None => return Some(Frame::Closed(1006, "gone".into())),
            }
        }
    }

    /// Waits for the close frame and returns its code (failing on any other message).
    pub async fn close_code(&mut self) -> u16 {
        match self.recv().await {
            Frame::Closed(code, _) => code,
            other => panic!("expected the socket to close, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// The next `next` message's payload for any operation; panics on anything else.
    pub async fn next_payload(&mut self) -> Value {
        match self.recv().await {
            Frame::Json(message) if message["type"] == "next" => message["payload"].clone(),
            other => panic!("expected a next message, got {other:?}"),
        }
    }
}

/// The subscription the tests use: every event after a position, with its position.
pub const EVENTS: &str = "subscription($after: Position, $filter: AuditFilter) { events(afterPosition: $after, filter: $filter) { position type traineeId } }";
