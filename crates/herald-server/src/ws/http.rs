//! pusher-js's HTTP fallback transports, `xhr_streaming` and `xhr_polling`: a SockJS-style
//! session protocol under `/pusher/app/{key}/{server}/{session}/…` on the main port.
//!
//! A connection is a connection, whatever carries it: an HTTP session is one more [`Frames`]
//! ([`HttpPipe`], a small in-memory pipe) running the same `connection` task as a WebSocket — the
//! same checks (`admission`), hello, subscriptions, presence, client events, sign-in, limits,
//! slow-consumer 4100 and close codes. What is HTTP's own lives here:
//!
//! - the registry of this node's live sessions ([`HttpSessions`]), each holding a place under the
//!   main listener's connection caps (`listener::Ticket`) as a WebSocket's socket does;
//! - receive requests (`xhr_streaming`: one response that stays open; `xhr`: a poll answered
//!   with what is waiting) taking the pipe's frames as SockJS lines: `o` (open), `a[…]` (a batch
//!   of Pusher messages, each a JSON string), `h` (heartbeat), `c[code,"reason"]` (close);
//! - `xhr_send`, whose body (a JSON array of Pusher messages) becomes the pipe's incoming
//!   messages, validated whole before any is delivered; `[]` is pusher-js's heartbeat and counts
//!   as the client's activity, as a WebSocket ping frame does.
//!
//! The session ends when no receive request has been open for the activity timeout (the client
//! is gone, as a silent WebSocket is), and its outgoing frames wait in a bounded queue: a client
//! that does not receive fills it, then its outbox, and is closed as a slow consumer (4100).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, Utf8Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, Stream};
use herald_hub::Outbox;
use herald_protocol::CloseCode;
use tokio::sync::Notify;
use tokio::time::{sleep, Instant, Sleep};

use super::{admission, connection, Frames, SessionContext};
use crate::error::ApiError;
use crate::listener::{Ticket, Transport};
use crate::state::SharedState;
use crate::tenant::Tenant;

/// Outbox frames waiting in a session for a receive request at most; past it the session stops
/// taking from its outbox (which then fills: 4100), so what one session buffers is bounded by
/// this and `server.outbox_capacity`.
pub(crate) const QUEUED_FRAMES: usize = 64;
/// The session's own frames (replies, errors, pings) may go past [`QUEUED_FRAMES`] up to this;
/// a client that makes more of them without receiving is dropped (4100).
const QUEUED_FRAMES_HARD: usize = 2 * QUEUED_FRAMES;
/// Messages posted by `xhr_send` not yet read by the session.
const INBOUND_MESSAGES: usize = 16;
/// Bytes of one `a[…]` line at most (more frames wait for the next line).
const LINE_BYTES: usize = 64 * 1024;
/// A streaming response ends after this many bytes. pusher-js reopens the stream itself once it
/// has read 256 KiB (its `MAX_BUFFER_LENGTH`) and takes a stream that ends as a lost connection,
/// so this is only the bound for other clients, well past pusher-js's.
pub(crate) const STREAM_BYTES: usize = 1024 * 1024;
/// Silence on a receive request after which it gets an `h` line (a poll is answered with it).
const HEARTBEAT: Duration = Duration::from_secs(25);
/// How long an ended session stays registered so that a receive request can still take its
/// close frame.
const LINGER: Duration = Duration::from_secs(5);
/// How long a session waits for a receive request once none is open before it ends (as a
/// WebSocket whose socket closed): pusher-js tells nothing when it disconnects an HTTP
/// transport, it only aborts its receive request, so this is how presence members leave.
/// Capped by the activity timeout; pusher-js opens the next request at once (a poll's answer is
/// followed by the next poll, a full stream by a new one).
pub(crate) const DISCONNECT_DELAY: Duration = Duration::from_secs(3);
/// Longest `{server}` or `{session}` path segment (pusher-js makes 1–3 digits and 8 characters).
const MAX_ID_CHARS: usize = 64;

/// Which receive request created a session: how it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Streaming,
    Polling,
}

/// A node's live HTTP sessions, by `{key}/{server}/{session}`.
#[derive(Debug, Default)]
pub(crate) struct HttpSessions {
    sessions: Mutex<HashMap<Box<str>, Arc<Shared>>>,
}

/// HTTP sessions of one app (or all) by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HttpCounts {
    pub(crate) streaming: u64,
    pub(crate) polling: u64,
}

impl HttpSessions {
    fn map(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Shared>>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<Shared>> {
        self.map().get(id).cloned()
    }

    /// Live (admitted, not ended) sessions of `app`, or of every app.
    pub(crate) fn counts(&self, app: Option<&str>) -> HttpCounts {
        let mut counts = HttpCounts::default();
        for shared in self.map().values() {
            let Some(tenant) = &shared.app else { continue };
            if app.is_some_and(|app| app != tenant.config.id) || shared.pipe().ended {
                continue;
            }
            match shared.kind {
                Kind::Streaming => counts.streaming += 1,
                Kind::Polling => counts.polling += 1,
            }
        }
        counts
    }

    fn remove(&self, id: &str, shared: &Arc<Shared>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|current| Arc::ptr_eq(current, shared)) {
            map.remove(id);
        }
    }
}

/// What the session's pipe and its HTTP requests share.
#[derive(Debug)]
struct Shared {
    kind: Kind,
    /// The app, when the session was admitted (a refused one only says why and ends).
    app: Option<Arc<Tenant>>,
    pipe: Mutex<Pipe>,
    /// Told of every change: frames queued or taken, a receive request superseded, the end.
    changed: Notify,
}

#[derive(Debug)]
struct Pipe {
    /// The `o` line was delivered.
    opened: bool,
    frames: VecDeque<Utf8Bytes>,
    close: Option<(u16, Utf8Bytes)>,
    /// The close line reached a receive request.
    close_delivered: bool,
    /// The session task is over.
    ended: bool,
    /// The newest receive request; an older one ends when a newer one comes.
    receiver: u64,
    receiving: bool,
    /// Since when no receive request has been open.
    idle_since: Instant,
    /// Messages posted by `xhr_send` and not yet read by the session (at most
    /// [`INBOUND_MESSAGES`]).
    inbound: VecDeque<Message>,
    /// The session's task, woken by a message and when the last receive request ends (its idle
    /// deadline starts).
    session_waker: Option<std::task::Waker>,
}

impl Shared {
    fn pipe(&self) -> MutexGuard<'_, Pipe> {
        self.pipe.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close_with(&self, code: CloseCode) {
        let mut pipe = self.pipe();
        if pipe.close.is_none() {
            pipe.close = Some((code.code(), Utf8Bytes::from(code.message())));
        }
    }
}

/// The session's side of an HTTP session: its Stream yields what `xhr_send` posted, its Sink
/// queues frames for the receive requests.
pub(crate) struct HttpPipe {
    shared: Arc<Shared>,
    /// The idle deadline: no receive request open for `idle_timeout` ends the session.
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
}

impl Drop for HttpPipe {
    fn drop(&mut self) {
        // A session that ended without a close frame (its client gone) still tells a late
        // receive request that it is over.
        self.shared.close_with(CloseCode::Reconnect);
        self.shared.pipe().ended = true;
        self.shared.changed.notify_waiters();
    }
}

impl Stream for HttpPipe {
    type Item = Result<Message, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let deadline = {
            let mut pipe = this.shared.pipe();
            let was_full = pipe.inbound.len() >= INBOUND_MESSAGES;
            if let Some(message) = pipe.inbound.pop_front() {
                drop(pipe);
                if was_full {
                    // Room for an `xhr_send` waiting to deliver.
                    this.shared.changed.notify_waiters();
                }
                return Poll::Ready(Some(Ok(message)));
            }
            if !pipe.session_waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                pipe.session_waker = Some(cx.waker().clone());
            }
            (!pipe.receiving).then(|| pipe.idle_since + this.idle_timeout)
        };
        let Some(deadline) = deadline else {
            // A receive request is open: no deadline until it ends (it wakes this task).
            return Poll::Pending;
        };
        if deadline <= Instant::now() {
            // Nobody has received for the disconnect delay: the client is gone.
            this.shared.close_with(CloseCode::PongNotReceived);
            return Poll::Ready(None);
        }
        if this.idle.deadline() != deadline {
            this.idle.as_mut().reset(deadline);
        }
        match this.idle.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.shared.close_with(CloseCode::PongNotReceived);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for HttpPipe {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        let shared = &self.shared;
        {
            let mut pipe = shared.pipe();
            match message {
                Message::Text(text) => {
                    if pipe.frames.len() >= QUEUED_FRAMES_HARD {
                        drop(pipe);
                        shared.close_with(CloseCode::OverCapacity);
                        return Err(axum::Error::new(std::io::Error::other("the client does not receive")));
                    }
                    pipe.frames.push_back(text);
                }
                Message::Close(frame) => {
                    let (code, reason) =
                        frame.map_or((1000, Utf8Bytes::from_static("")), |frame| (frame.code, frame.reason));
                    pipe.close.get_or_insert((code, reason));
                }
                // Pongs answer pusher-js's `[]` heartbeat, which wants no answer (an `h` would
                // make the streaming client send another); nothing else is sent.
                Message::Ping(_) | Message::Pong(_) | Message::Binary(_) => return Ok(()),
            }
        }
        shared.changed.notify_waiters();
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }
}

impl Frames for HttpPipe {
    /// Waits for room in the queue (a receive request taking frames), then queues `first` and
    /// what else the outbox holds, up to the queue's bound.
    #[allow(clippy::manual_async_fn, reason = "the trait's future must be Send")]
    fn write_batch<'a>(
        &'a mut self,
        first: Utf8Bytes,
        outbox: &'a mut Outbox<Utf8Bytes>,
    ) -> impl Future<Output = Result<(), axum::Error>> + Send + 'a {
        async move {
            let mut first = Some(first);
            loop {
                let notified = self.shared.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                let queued = {
                    let mut pipe = self.shared.pipe();
                    if pipe.frames.len() < QUEUED_FRAMES {
                        pipe.frames.extend(first.take());
                        while pipe.frames.len() < QUEUED_FRAMES {
                            match outbox.try_recv() {
                                Ok(frame) => pipe.frames.push_back(frame),
                                Err(_) => break,
                            }
                        }
                        true
                    } else {
                        false
                    }
                };
                if queued {
                    self.shared.changed.notify_waiters();
                    return Ok(());
                }
                notified.await;
            }
        }
    }
}

/// `{server}` and `{session}`: what pusher-js makes, within bounds.
fn check_id(field: &'static str, id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'")))
    }
}

fn session_id(key: &str, server: &str, session: &str) -> Result<String, ApiError> {
    check_id("server", server)?;
    check_id("session", session)?;
    Ok(format!("{key}/{server}/{session}"))
}

/// The request's `Origin`, when it sent one.
fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|value| value.to_str().ok())
}

/// CORS for a page on another origin: its origin is echoed (pusher-js sends no credentials).
fn cors(response: &mut Response, origin: Option<&str>) {
    let headers = response.headers_mut();
    if let Some(origin) = origin.and_then(|origin| HeaderValue::from_str(origin).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// A refusal of an HTTP request with CORS, so that a page on another origin can read it.
fn refused(error: ApiError, origin: Option<&str>) -> Response {
    let mut response = error.into_response();
    cors(&mut response, origin);
    response
}

/// The request's origin, when its session's app allows it.
fn allowed_origin<'a>(shared: &Shared, headers: &'a HeaderMap) -> Result<Option<&'a str>, ApiError> {
    let origin = origin(headers);
    match &shared.app {
        Some(app) if !app.config.origin_allowed(origin) => {
            Err(ApiError::WrongApp("this origin is not allowed for this app".into()))
        }
        _ => Ok(origin),
    }
}

/// What a receive request knows of its client.
pub(crate) struct Receiver {
    key: String,
    server: String,
    session: String,
    query: Option<String>,
    transport: Option<Transport>,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Receiver {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((key, server, session)) = Path::<(String, String, String)>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            key,
            server,
            session,
            query: parts.uri.query().map(str::to_owned),
            transport: parts.extensions.get::<Transport>().copied(),
            peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer),
            headers: parts.headers.clone(),
        })
    }
}

/// `POST /pusher/app/{key}/{server}/{session}/xhr_streaming`.
pub(crate) async fn xhr_streaming(State(state): State<SharedState>, client: Receiver) -> Response {
    receive(&state, Kind::Streaming, client)
}

/// `POST /pusher/app/{key}/{server}/{session}/xhr` (`xhr_polling`).
pub(crate) async fn xhr_polling(State(state): State<SharedState>, client: Receiver) -> Response {
    receive(&state, Kind::Polling, client)
}

/// A receive request: the session's next lines, creating the session on its first request.
fn receive(state: &SharedState, kind: Kind, client: Receiver) -> Response {
    let origin = origin(&client.headers).map(str::to_owned);
    let id = match session_id(&client.key, &client.server, &client.session) {
        Ok(id) => id,
        Err(error) => return refused(error, origin.as_deref()),
    };
    let shared = match state.http_sessions.get(&id) {
        Some(shared) => {
            if let Err(error) = allowed_origin(&shared, &client.headers) {
                return error.into_response();
            }
            shared
        }
        None => match create(state, kind, id, &client) {
            Ok(shared) => shared,
            Err(error) => return refused(error, origin.as_deref()),
        },
    };
    let generation = {
        let mut pipe = shared.pipe();
        pipe.receiver += 1;
        pipe.receiving = true;
        pipe.receiver
    };
    // An older receive request of the session ends: the newest one takes the frames.
    shared.changed.notify_waiters();
    let heartbeat = HEARTBEAT
        .min(Duration::from_secs(state.pusher.server.activity_timeout_secs) / 2)
        .max(Duration::from_secs(1));
    let lines = Lines { shared, generation, kind, sent: 0, done: false, heartbeat };
    let body = Body::from_stream(futures_util::stream::unfold(lines, Lines::next));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=UTF-8"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    // nginx passes the stream on as it comes instead of buffering it.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    cors(&mut response, origin.as_deref());
    response
}

/// A new session: the same checks as a WebSocket upgrade, a place under the listener's caps,
/// and the same connection task (a refusal is its error and close lines).
fn create(state: &SharedState, kind: Kind, id: String, client: &Receiver) -> Result<Arc<Shared>, ApiError> {
    let (app, refusal) = admission(
        state,
        &client.key,
        client.query.as_deref(),
        client.transport,
        client.peer,
        &client.headers,
    );
    let mut map = state.http_sessions.map();
    if let Some(shared) = map.get(id.as_str()) {
        return Ok(shared.clone());
    }
    let ticket = match (state.gates.get(), client.peer) {
        (Some([main, _]), Some(peer)) => Some(main.admit(peer.ip()).map_err(|_| ApiError::ConnectionsFull)?),
        _ => None,
    };
    let context = SessionContext::of(state);
    let shutdown = context.shutdown.clone();
    let idle_timeout = DISCONNECT_DELAY.min(context.activity_timeout);
    let shared = Arc::new(Shared {
        kind,
        app: if refusal.is_none() { app.clone() } else { None },
        pipe: Mutex::new(Pipe {
            opened: false,
            frames: VecDeque::new(),
            close: None,
            close_delivered: false,
            ended: false,
            receiver: 0,
            receiving: false,
            idle_since: Instant::now(),
            inbound: VecDeque::new(),
            session_waker: None,
        }),
        changed: Notify::new(),
    });
    let id: Box<str> = id.into();
    map.insert(id.clone(), shared.clone());
    drop(map);
    let pipe = HttpPipe { shared: shared.clone(), idle: Box::pin(sleep(idle_timeout)), idle_timeout };
    let registry = state.http_sessions.clone();
    let task = {
        let shared = shared.clone();
        async move {
            connection(context, app, refusal, pipe).await;
            linger(&shared, shutdown).await;
            registry.remove(&id, &shared);
            drop::<Option<Ticket>>(ticket);
        }
    };
    state.lifecycle().sessions.spawn(task);
    Ok(shared)
}

/// Keeps an ended session until a receive request has taken its close line, or [`LINGER`]; during
/// shutdown (no new requests come) at most [`super::CLOSE_WRITE_TIMEOUT`].
async fn linger(shared: &Shared, shutdown: tokio_util::sync::CancellationToken) {
    let wait = async {
        loop {
            let notified = shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if shared.pipe().close_delivered {
                return;
            }
            notified.await;
        }
    };
    let shutting_down = async {
        shutdown.cancelled().await;
        sleep(super::CLOSE_WRITE_TIMEOUT).await;
    };
    tokio::select! {
        () = wait => {}
        () = sleep(LINGER) => {}
        () = shutting_down => {}
    }
}

/// One receive request's response, line by line.
struct Lines {
    shared: Arc<Shared>,
    generation: u64,
    kind: Kind,
    sent: usize,
    done: bool,
    heartbeat: Duration,
}

impl Drop for Lines {
    fn drop(&mut self) {
        let mut pipe = self.shared.pipe();
        if pipe.receiver == self.generation {
            pipe.receiving = false;
            pipe.idle_since = Instant::now();
            if let Some(waker) = pipe.session_waker.take() {
                waker.wake();
            }
        }
    }
}

/// What a receive request finds in the pipe.
enum Taken {
    Lines {
        text: String,
        last: bool,
    },
    Nothing,
    /// A newer receive request took over, or the session is over and said so.
    Over,
}

impl Lines {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Lines)> {
        if self.done {
            return None;
        }
        let shared = self.shared.clone();
        loop {
            let notified = shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.take() {
                Taken::Over => return None,
                Taken::Lines { text, last } => {
                    self.sent += text.len();
                    self.done = last || self.kind == Kind::Polling || self.sent >= STREAM_BYTES;
                    return Some((Ok(Bytes::from(text)), self));
                }
                Taken::Nothing => {}
            }
            tokio::select! {
                _ = notified => {}
                _ = sleep(self.heartbeat) => {
                    self.done = self.kind == Kind::Polling;
                    return Some((Ok(Bytes::from_static(b"h\n")), self));
                }
            }
        }
    }

    /// The lines waiting: `o` first, then `a[…]` batches, then `c[…]` once the session closed.
    fn take(&mut self) -> Taken {
        let mut text = String::new();
        let mut last = false;
        let taken_frames;
        {
            let mut pipe = self.shared.pipe();
            if pipe.receiver != self.generation {
                return Taken::Over;
            }
            if !pipe.opened {
                // The `o` line alone: a poll's first answer is always just `o` (as in SockJS).
                pipe.opened = true;
                return Taken::Lines { text: "o\n".to_owned(), last: false };
            }
            taken_frames = !pipe.frames.is_empty();
            if taken_frames {
                text.push_str("a[");
                let mut first = true;
                while text.len() < LINE_BYTES {
                    let Some(frame) = pipe.frames.pop_front() else { break };
                    if !first {
                        text.push(',');
                    }
                    first = false;
                    text.push_str(&serde_json::to_string(frame.as_str()).unwrap_or_default());
                }
                text.push_str("]\n");
            }
            if pipe.frames.is_empty() && pipe.ended {
                if let Some((code, reason)) = &pipe.close {
                    let reason = serde_json::to_string(reason.as_str()).unwrap_or_default();
                    text.push_str(&format!("c[{code},{reason}]\n"));
                    pipe.close_delivered = true;
                }
                last = true;
            }
        }
        if taken_frames || last {
            // Room in the queue, or the close taken: the session and its linger are told.
            self.shared.changed.notify_waiters();
        }
        match (text.is_empty(), last) {
            (true, true) => Taken::Over,
            (true, false) => Taken::Nothing,
            (false, _) => Taken::Lines { text, last },
        }
    }
}

/// `POST /pusher/app/{key}/{server}/{session}/xhr_send`: the body is a JSON array of Pusher
/// messages (strings), checked whole before any is delivered; `[]` is a heartbeat.
pub(crate) async fn xhr_send(
    State(state): State<SharedState>,
    Path((key, server, session)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_origin = origin(&headers);
    let id = match session_id(&key, &server, &session) {
        Ok(id) => id,
        Err(error) => return refused(error, request_origin),
    };
    let Some(shared) = state.http_sessions.get(&id) else {
        return refused(ApiError::NotFound("session"), request_origin);
    };
    let origin = match allowed_origin(&shared, &headers) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let Some(app) = shared.app.clone().filter(|_| !shared.pipe().ended) else {
        return refused(ApiError::NotFound("session"), origin);
    };
    let limits = &app.config.limits;
    if body.len() > limits.max_http_body_bytes {
        return refused(
            ApiError::TooLarge { what: "xhr_send body", limit: limits.max_http_body_bytes },
            origin,
        );
    }
    let messages: Vec<String> = match serde_json::from_slice(&body) {
        Ok(messages) => messages,
        Err(error) => {
            let problem = format!("an xhr_send body is a JSON array of strings: {error}");
            return refused(ApiError::MalformedJson(problem), origin);
        }
    };
    if messages.iter().any(|message| message.len() > limits.max_ws_message_bytes) {
        return refused(ApiError::TooLarge { what: "message", limit: limits.max_ws_message_bytes }, origin);
    }
    let messages: Vec<Message> = if messages.is_empty() {
        vec![Message::Ping(Bytes::new())]
    } else {
        messages.into_iter().map(|message| Message::Text(message.into())).collect()
    };
    let timeout = Duration::from_secs(state.pusher.server.body_timeout_secs);
    match tokio::time::timeout(timeout, deliver(&shared, messages)).await {
        Ok(Ok(())) => {}
        Ok(Err(SessionGone)) => return refused(ApiError::NotFound("session"), origin),
        Err(_) => return refused(ApiError::BodyTimeout(timeout.as_secs()), origin),
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&mut response, origin);
    response
}

/// The session ended before it took every message.
struct SessionGone;

/// Hands `messages` to the session in order, waiting while [`INBOUND_MESSAGES`] wait already.
async fn deliver(shared: &Shared, messages: Vec<Message>) -> Result<(), SessionGone> {
    for message in messages {
        let mut message = Some(message);
        loop {
            let notified = shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut pipe = shared.pipe();
                if pipe.ended {
                    return Err(SessionGone);
                }
                if pipe.inbound.len() < INBOUND_MESSAGES {
                    pipe.inbound.extend(message.take());
                    if let Some(waker) = pipe.session_waker.take() {
                        waker.wake();
                    }
                }
            }
            if message.is_none() {
                break;
            }
            notified.await;
        }
    }
    Ok(())
}

/// `OPTIONS` on the three paths: the CORS preflight of a page on another origin (pusher-js
/// posts JSON).
pub(crate) async fn preflight(
    State(state): State<SharedState>,
    Path((key, _, _)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let origin = origin(&headers);
    let allowed = state.tenants().by_key(&key).is_some_and(|app| app.config.origin_allowed(origin));
    if !allowed {
        return ApiError::WrongApp("this origin is not allowed for this app".into()).into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&mut response, origin);
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}
