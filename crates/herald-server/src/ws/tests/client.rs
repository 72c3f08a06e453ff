//! An in-memory connection for the session tests: the server's end is a [`Frames`] (an
//! unbounded channel from the client, a bounded "wire" to it), the client's end reads and writes
//! JSON frames. No socket, no server, no database: a `Tenant` and a `SessionContext`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use herald_protocol::{channel_auth_string, hmac_sha256_hex, signin_auth_string, CloseCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::PollSender;

use crate::tenant::Tenant;
use crate::ws::{connection, SessionContext};

/// Frames the wire to the client holds. A client that stops reading fills it, and then the
/// server's writes wait, as they do on a full TCP buffer.
pub(super) const WIRE_FRAMES: usize = 4;

/// The server's end of the connection.
struct MemoryFrames {
    from_client: mpsc::UnboundedReceiver<Message>,
    to_client: PollSender<Message>,
}

/// Writes each outbox frame as a message, as tungstenite would.
impl crate::ws::Frames for MemoryFrames {}

impl Stream for MemoryFrames {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_recv(cx).map(|message| message.map(Ok))
    }
}

impl Sink<Message> for MemoryFrames {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        self.to_client.poll_reserve(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        self.to_client.send_item(message).map_err(axum::Error::new)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        self.to_client.close();
        Poll::Ready(Ok(()))
    }
}

/// The client's end, with the connection task it talks to.
pub(super) struct Client {
    to_server: mpsc::UnboundedSender<Message>,
    from_server: mpsc::Receiver<Message>,
    pub(super) socket_id: String,
    session: JoinHandle<()>,
    started: Instant,
}

impl Client {
    /// Starts the connection task of `/app/{key}` for `app` (`None`: no such app) and the
    /// `refusal` the upgrade decided, without reading anything.
    pub(super) fn open(
        context: &SessionContext,
        app: Option<&Arc<Tenant>>,
        refusal: Option<CloseCode>,
    ) -> Client {
        let (to_server, from_client) = mpsc::unbounded_channel();
        let (to_client, from_server) = mpsc::channel(WIRE_FRAMES);
        let frames = MemoryFrames { from_client, to_client: PollSender::new(to_client) };
        let started = Instant::now();
        let session = tokio::spawn(connection(context.clone(), app.cloned(), refusal, frames));
        Client { to_server, from_server, socket_id: String::new(), session, started }
    }

    /// Connects to `app` and reads the hello.
    pub(super) async fn connect(context: &SessionContext, app: &Arc<Tenant>) -> Client {
        let mut client = Client::open(context, Some(app), None);
        let hello = client.event().await;
        assert_eq!(hello["event"], "pusher:connection_established");
        let data = data_of(&hello);
        assert_eq!(data["activity_timeout"], context.activity_timeout.as_secs());
        client.socket_id = data["socket_id"].as_str().expect("a socket id").to_owned();
        client
    }

    /// Time since the connection opened (the paused clock moves only when every task waits).
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The instant `offset` after the connection opened.
    pub(super) fn at(&self, offset: Duration) -> Instant {
        self.started + offset
    }

    pub(super) fn send(&self, frame: Value) {
        self.to_server.send(Message::Text(frame.to_string().into())).expect("the session is reading");
    }

    /// Sends any WebSocket message (a binary frame, a ping, a close).
    pub(super) fn send_message(&self, message: Message) {
        self.to_server.send(message).expect("the session is reading");
    }

    pub(super) fn subscribe(&self, channel: &str, app: &Tenant) {
        let signature =
            hmac_sha256_hex(&app.config.secret, &channel_auth_string(&self.socket_id, channel, None));
        let auth = format!("{}:{signature}", app.config.key);
        self.send(json!({ "event": "pusher:subscribe", "data": { "channel": channel, "auth": auth } }));
    }

    pub(super) fn signin(&self, user_data: &str, app: &Tenant) {
        let signature = hmac_sha256_hex(&app.config.secret, &signin_auth_string(&self.socket_id, user_data));
        let auth = format!("{}:{signature}", app.config.key);
        self.send(json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": user_data } }));
    }

    /// Sends `pusher:ping` and reads the pong: everything sent before has been handled.
    pub(super) async fn round_trip(&mut self) {
        self.send(json!({ "event": "pusher:ping", "data": {} }));
        assert_eq!(self.event().await["event"], "pusher:pong");
    }

    /// The next frame from the server.
    pub(super) async fn frame(&mut self) -> Message {
        // Paused time: an hour passes at once if nothing comes; a hang is a failure, not a wait.
        tokio::time::timeout(Duration::from_secs(3600), self.from_server.recv())
            .await
            .expect("a frame within an hour")
            .expect("a frame before the session ended")
    }

    /// The next frame, a JSON text frame.
    pub(super) async fn event(&mut self) -> Value {
        match self.frame().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("a JSON frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The goodbye: a `pusher:error` with `code`, then a close frame with it. Returns the
    /// error's message.
    pub(super) async fn goodbye(&mut self, code: CloseCode) -> String {
        let error = self.event().await;
        assert_eq!(error["event"], "pusher:error", "{error}");
        assert_eq!(error["data"]["code"], code.code(), "{error}");
        match self.frame().await {
            Message::Close(Some(close)) => assert_eq!(close.code, code.code()),
            other => panic!("expected a close frame with {}, got {other:?}", code.code()),
        }
        error["data"]["message"].as_str().expect("a message").to_owned()
    }

    /// Reads nothing before `until` (and leaves the clock there).
    pub(super) async fn silent_until(&mut self, until: Instant) {
        if let Ok(frame) = tokio::time::timeout_at(until, self.from_server.recv()).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Waits for the connection task to end.
    pub(super) async fn ended(self) {
        self.session.await.expect("the connection task ends without panicking");
    }
}

/// A server event's `data`, which the protocol sends as a JSON string.
pub(super) fn data_of(event: &Value) -> Value {
    serde_json::from_str(event["data"].as_str().expect("string data")).expect("JSON data")
}
