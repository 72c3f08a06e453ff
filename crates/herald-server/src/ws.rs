//! The WebSocket endpoint `/app/{key}`: the upgrade, the connection checks, and the session.
//!
//! Each connection is one task: it `select!`s over the client's frames, its outbox, its timers
//! and shutdown, and is the only writer to its socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use herald_hub::{Outbox, SocketHandle, SubscribeError};
use herald_protocol::{
    channel_auth_string, encode_error, encode_server_event, signin_auth_string, verify_auth, ChannelKind,
    ChannelName, ClientEvent, CloseCode, PresenceChannelData, SigninData, SubscribeData, UserData,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, instrument, warn};

use crate::state::SharedState;
use crate::tenant::Tenant;

/// Bytes tungstenite reads from the socket at a time. Its default (128 KiB) is allocated per
/// connection; Pusher frames are small, so idle connections stay cheap with a small buffer.
const READ_BUFFER_BYTES: usize = 1024;
/// Frames written in one go (one flush) when the outbox holds several.
const WRITE_BATCH: usize = 64;
/// Bytes tungstenite may gather before writing to the socket; the buffer only grows when
/// several frames are batched, so idle connections do not pay for it.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// How long the goodbye (error + close frame) may take before the socket is simply dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /app/{key}`: always upgrades, so that refusals reach pusher-js as close codes.
pub(crate) async fn upgrade(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let app = state.tenants().by_key(&key).cloned();
    let max_message = app.as_ref().map_or(herald_protocol::Limits::default().max_ws_message_bytes, |app| {
        app.config.limits.max_ws_message_bytes
    });
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let refusal = refusal(&state, app.as_deref(), query.as_deref(), origin.as_deref());
    let tracker = state.lifecycle().sessions.clone();
    configure(ws, max_message)
        .on_upgrade(move |socket| tracker.track_future(connection(state, app, refusal, socket)))
}

/// The task of one upgraded connection.
#[allow(
    clippy::manual_async_fn,
    reason = "an async block captures its arguments once: 8 bytes less than an async fn"
)]
fn connection(
    state: SharedState,
    app: Option<Arc<Tenant>>,
    refusal: Option<CloseCode>,
    socket: WebSocket,
) -> impl std::future::Future<Output = ()> {
    // The task is as large as its largest state for the connection's whole life: the
    // refusal and the hello (each with a write timer) are boxed so only the session's wait
    // is carried inline (see docs/benchmarks.md).
    async move {
        match (refusal, app) {
            (None, Some(app)) => start(state, app, socket).await,
            (Some(code), _) => Box::pin(refuse(socket, code)).await,
            (None, None) => Box::pin(refuse(socket, CloseCode::AppNotFound)).await,
        }
    }
}

/// The WebSocket settings of every session: small buffers, and messages over `max_message`
/// refused before they are buffered.
fn configure(ws: WebSocketUpgrade, max_message: usize) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(max_message)
        .max_frame_size(max_message)
}

/// Sends the close reply queued after the client's close frame (the next read flushes it), never
/// waiting long on a client that does not read.
async fn finish_close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, socket.recv()).await;
}

/// An echo endpoint on any path with exactly the sessions' WebSocket settings and protocol-error
/// handling, for the Autobahn conformance run (`scripts/autobahn`); never part of a server.
pub fn conformance_echo_router() -> axum::Router {
    async fn echo(ws: WebSocketUpgrade) -> Response {
        configure(ws, herald_protocol::Limits::default().max_ws_message_bytes).on_upgrade(
            |mut socket| async move {
                loop {
                    let reply = match socket.recv().await {
                        Some(Ok(Message::Text(text))) => Message::Text(text),
                        Some(Ok(Message::Binary(bytes))) => Message::Binary(bytes),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) => return finish_close(&mut socket).await,
                        Some(Err(error)) => match violation(error) {
                            Some(code) => close_message(code.code(), code.message()),
                            None => return,
                        },
                        None => return,
                    };
                    let closing = matches!(reply, Message::Close(_));
                    if socket.send(reply).await.is_err() || closing {
                        return;
                    }
                }
            },
        )
    }
    axum::Router::new().fallback(echo)
}

/// Any WebSocket upgrade on another path: 4005.
pub(crate) async fn path_not_found(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER_BYTES).on_upgrade(|socket| refuse(socket, CloseCode::PathNotFound))
}

/// The checks made before a connection is accepted, in the order pusher-js expects.
fn refusal(
    state: &SharedState,
    app: Option<&Tenant>,
    query: Option<&str>,
    origin: Option<&str>,
) -> Option<CloseCode> {
    let protocol = query.and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(name, _)| name == "protocol")
            .map(|(_, value)| value)
    });
    let Some(protocol) = protocol else {
        return Some(CloseCode::NoProtocolVersion);
    };
    let Ok(version) = protocol.parse::<u32>() else {
        return Some(CloseCode::InvalidVersionFormat);
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Some(CloseCode::UnsupportedProtocol);
    }
    let Some(app) = app else {
        return Some(CloseCode::AppNotFound);
    };
    if !app.config.enabled {
        return Some(CloseCode::AppDisabled);
    }
    if !app.config.origin_allowed(origin) {
        return Some(CloseCode::Unauthorized);
    }
    if state.lifecycle().is_draining() {
        return Some(CloseCode::Reconnect);
    }
    None
}

/// Sends the refusal (error + close frame); a peer that does not read cannot hold it longer than
/// [`CLOSE_WRITE_TIMEOUT`].
async fn refuse(mut socket: WebSocket, code: CloseCode) {
    let goodbye = async {
        socket.send(error_message(code)).await?;
        socket.send(close_message(code.code(), code.message())).await
    };
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, goodbye).await;
}

fn error_message(code: CloseCode) -> Message {
    Message::Text(encode_error(Some(code.code()), code.message()).into())
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))
}

async fn start(state: SharedState, app: Arc<Tenant>, mut socket: WebSocket) {
    let max = (app.config.max_connections > 0).then_some(app.config.max_connections);
    let Some((handle, outbox)) = app.hub.register(max) else {
        Box::pin(refuse(socket, CloseCode::OverConnectionQuota)).await;
        return;
    };
    let established = json!({
        "socket_id": handle.id.as_str(),
        "activity_timeout": state.pusher.server.activity_timeout_secs,
    })
    .to_string();
    let hello = encode_server_event("pusher:connection_established", None, &established, None);
    let stall = Duration::from_secs(state.pusher.server.pong_timeout_secs);
    if matches!(
        Box::pin(tokio::time::timeout(stall, socket.send(Message::Text(hello.into())))).await,
        Ok(Ok(()))
    ) {
        let mut session = Session::new(state, app.clone(), handle);
        session.run(&mut socket, outbox).await;
        session.finish();
    } else {
        app.hub.unregister(handle.key, std::iter::empty(), None);
    }
}

/// What one connection knows about itself.
struct Session {
    state: SharedState,
    app: Arc<Tenant>,
    handle: SocketHandle<Utf8Bytes>,
    /// Subscribed channels; for presence channels, the user id the socket joined as.
    channels: HashMap<ChannelName, Option<Arc<str>>>,
    /// Set by `pusher:signin`.
    user_id: Option<String>,
    /// Signed in, or subscribed to a channel that needed auth.
    authorized: bool,
    last_seen: Instant,
    ping_sent: Option<Instant>,
    client_events_window: (Instant, u32),
    /// Messages of any kind received in the current one-second window.
    messages_window: (Instant, u32),
}

/// What the session loop does after handling a frame.
enum Next {
    Continue,
    Close(CloseCode),
    /// Close, explaining why in the `pusher:error` instead of the code's generic message.
    CloseBecause(CloseCode, String),
    /// End the session without a goodbye: the socket is gone.
    End,
    /// The client sent a close frame: send the reply the WebSocket library queued, then end.
    ClientClosed,
}

/// What a frame handler ends with; `Err` stops the handling early with what the loop must do.
type Handled = Result<Next, Next>;

impl Session {
    fn new(state: SharedState, app: Arc<Tenant>, handle: SocketHandle<Utf8Bytes>) -> Session {
        let now = Instant::now();
        Session {
            state,
            app,
            handle,
            channels: HashMap::new(),
            user_id: None,
            authorized: false,
            last_seen: now,
            ping_sent: None,
            client_events_window: (now, 0),
            messages_window: (now, 0),
        }
    }

    fn next_deadline(&self, started: Instant) -> Instant {
        let server = &self.state.pusher.server;
        let mut deadline = match self.ping_sent {
            Some(sent) => sent + Duration::from_secs(server.pong_timeout_secs),
            None => self.last_seen + Duration::from_secs(server.activity_timeout_secs),
        };
        if self.app.config.user_authentication_required && !self.authorized {
            deadline =
                deadline.min(started + Duration::from_secs(self.app.config.user_authentication_timeout_secs));
        }
        deadline
    }

    // A debug-level span: at the default level it is disabled and costs an idle connection nothing.
    #[instrument(level = "debug", skip_all, fields(app = %self.app.config.id, socket = %self.handle.id))]
    async fn run(&mut self, socket: &mut WebSocket, mut outbox: Outbox<Utf8Bytes>) {
        let started = Instant::now();
        let shutdown = self.state.lifecycle().shutdown.clone();
        let handle = self.handle.clone();
        loop {
            let deadline = self.next_deadline(started);
            let next = tokio::select! {
                biased;
                code = handle.closed() => Next::Close(code),
                _ = shutdown.cancelled() => Next::Close(CloseCode::Reconnect),
                frame = outbox.recv() => match frame {
                    // A client that stops reading blocks this write: race it with the kill switch
                    // and the stall deadline so a slow consumer is still closed (4100) and its
                    // memory freed.
                    // The stall timer lives in the boxed write, so an idle session does not
                    // carry it.
                    Some(frame) => tokio::select! {
                        sent = Box::pin(tokio::time::timeout(
                            self.write_stall(),
                            write_batch(socket, frame, &mut outbox),
                        )) => match sent {
                            Ok(Ok(())) => Next::Continue,
                            Ok(Err(_)) => return,
                            Err(_) => Next::CloseBecause(
                                CloseCode::OverCapacity,
                                "slow consumer: the client stopped reading".into(),
                            ),
                        },
                        code = handle.closed() => Next::Close(code),
                        _ = shutdown.cancelled() => Next::Close(CloseCode::Reconnect),
                    },
                    None => return,
                },
                incoming = socket.recv() => match incoming {
                    // Boxed: the handling of a frame is rare next to waiting, and an idle connection should
                    // not carry its state inline.
                    Some(Ok(message)) => {
                        let handled = Box::pin(self.on_message(socket, message)).await;
                        handled.unwrap_or_else(|stop| stop)
                    }
                    Some(Err(error)) => match violation(error) {
                        Some(code) => Next::Close(code),
                        None => return,
                    },
                    None => return,
                },
                _ = sleep_until(deadline) => Box::pin(self.on_timer(socket, started)).await,
            };
            let (code, reason) = match next {
                Next::Continue => continue,
                Next::End => return,
                Next::ClientClosed => {
                    finish_close(socket).await;
                    return;
                }
                Next::Close(code) => (code, None),
                Next::CloseBecause(code, reason) => (code, Some(reason)),
            };
            {
                if code == CloseCode::OverCapacity {
                    self.app.slow_consumers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(reason = reason.as_deref().unwrap_or("outbox full"), "closing with 4100");
                }
                // The peer may not be reading at all (a slow consumer): never wait long on it.
                let goodbye = async {
                    if !code.is_websocket_level() {
                        let message = reason.as_deref().unwrap_or(code.message());
                        let error = encode_error(Some(code.code()), message);
                        socket.send(Message::Text(error.into())).await?;
                    }
                    socket.send(close_message(code.code(), code.message())).await
                };
                let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, goodbye).await;
                return;
            }
        }
    }

    /// How long one write may wait for a client that does not read before the session gives up
    /// on it (4100): the pong deadline, the same patience the heartbeat has.
    fn write_stall(&self) -> Duration {
        Duration::from_secs(self.state.pusher.server.pong_timeout_secs)
    }

    /// Writes a frame the session itself produces (a pong, an error, a subscription reply). A
    /// client that sends without reading cannot hold the session here: the write is raced
    /// against the kill switch, shutdown and the stall deadline.
    async fn send(&self, socket: &mut WebSocket, frame: impl Into<Utf8Bytes>) -> Result<(), Next> {
        tokio::select! {
            biased;
            code = self.handle.closed() => Err(Next::Close(code)),
            _ = self.state.lifecycle().shutdown.cancelled() => Err(Next::Close(CloseCode::Reconnect)),
            sent = tokio::time::timeout(self.write_stall(), socket.send(Message::Text(frame.into()))) => {
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Next::End),
                    Err(_) => Err(Next::CloseBecause(
                        CloseCode::OverCapacity,
                        "slow consumer: the client stopped reading".into(),
                    )),
                }
            }
        }
    }

    async fn send_error(&self, socket: &mut WebSocket, code: Option<u16>, message: &str) -> Result<(), Next> {
        self.send(socket, encode_error(code, message)).await
    }

    async fn send_subscription_error(
        &self,
        socket: &mut WebSocket,
        channel: &str,
        kind: &str,
        error: &str,
        status: u16,
    ) -> Result<(), Next> {
        let data = json!({ "type": kind, "error": error, "status": status }).to_string();
        self.send(socket, encode_server_event("pusher:subscription_error", Some(channel), &data, None)).await
    }

    /// Counts one inbound message; false when the connection is over `max_messages_per_second`.
    fn admit_message(&mut self, now: Instant) -> bool {
        let limit = self.app.config.limits.max_messages_per_second;
        let (window_start, count) = &mut self.messages_window;
        if now.duration_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *count = 0;
        }
        *count += 1;
        limit == 0 || *count <= limit
    }

    /// Leaves every channel and the user registry.
    fn finish(self) {
        self.app.hub.unregister(self.handle.key, self.channels.keys(), self.user_id.as_deref());
    }

    async fn on_timer(&mut self, socket: &mut WebSocket, started: Instant) -> Next {
        let now = Instant::now();
        let config = &self.app.config;
        if config.user_authentication_required
            && !self.authorized
            && now >= started + Duration::from_secs(config.user_authentication_timeout_secs)
        {
            return Next::Close(CloseCode::Unauthorized);
        }
        match self.ping_sent {
            Some(sent) if now >= sent + Duration::from_secs(self.state.pusher.server.pong_timeout_secs) => {
                Next::Close(CloseCode::PongNotReceived)
            }
            Some(_) => Next::Continue,
            None if now
                >= self.last_seen + Duration::from_secs(self.state.pusher.server.activity_timeout_secs) =>
            {
                self.ping_sent = Some(now);
                let ping = encode_server_event("pusher:ping", None, "{}", None);
                match self.send(socket, ping).await {
                    Ok(()) => Next::Continue,
                    Err(Next::End) => Next::Close(CloseCode::PongNotReceived),
                    Err(stop) => stop,
                }
            }
            None => Next::Continue,
        }
    }

    /// Handles one frame from the client.
    async fn on_message(&mut self, socket: &mut WebSocket, message: Message) -> Handled {
        self.app.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        self.last_seen = now;
        self.ping_sent = None;
        if !self.admit_message(now) {
            let limit = self.app.config.limits.max_messages_per_second;
            let reason = format!("more than {limit} messages per second");
            return Err(Next::CloseBecause(CloseCode::OverCapacity, reason));
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.send_error(socket, None, "binary frames are not supported; send JSON text frames")
                    .await?;
                return Ok(Next::Continue);
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(Next::Continue),
            Message::Close(_) => return Ok(Next::ClientClosed),
        };
        let event = match ClientEvent::parse(text.as_str()) {
            Ok(event) => event,
            Err(error) => {
                self.send_error(socket, None, &error.to_string()).await?;
                return Ok(Next::Continue);
            }
        };
        match event {
            ClientEvent::Ping => {
                self.send(socket, encode_server_event("pusher:pong", None, "{}", None)).await?;
                Ok(Next::Continue)
            }
            ClientEvent::Pong => Ok(Next::Continue),
            ClientEvent::Subscribe(data) => self.on_subscribe(socket, data).await,
            ClientEvent::Unsubscribe { channel } => {
                if let Some((name, _)) = self.channels.remove_entry(channel.as_str()) {
                    self.app.hub.unsubscribe(self.handle.key, &name);
                }
                Ok(Next::Continue)
            }
            ClientEvent::Signin(data) => self.on_signin(socket, data).await,
            ClientEvent::Client { event, channel, data } => {
                self.on_client_event(socket, event, channel, data).await
            }
        }
    }

    async fn on_subscribe(&mut self, socket: &mut WebSocket, data: SubscribeData) -> Handled {
        let limits = &self.app.config.limits;
        let channel = match ChannelName::parse(&data.channel, limits.max_channel_name_len) {
            Ok(channel) => channel,
            Err(error) => {
                self.send_subscription_error(
                    socket,
                    &data.channel,
                    "InvalidChannel",
                    &error.to_string(),
                    400,
                )
                .await?;
                return Ok(Next::Continue);
            }
        };
        if !self.channels.contains_key(&channel) && self.channels.len() >= limits.max_channels_per_connection
        {
            let message = format!(
                "a connection may subscribe to at most {} channels",
                limits.max_channels_per_connection
            );
            self.send_subscription_error(socket, channel.as_str(), "LimitReached", &message, 400).await?;
            return Ok(Next::Continue);
        }
        let member = match self.authorize(&channel, &data) {
            Ok(member) => member,
            Err((message, status)) => {
                debug!(channel = %channel, ?message, "subscription refused");
                self.send_subscription_error(socket, channel.as_str(), "AuthError", &message, status).await?;
                return Ok(Next::Continue);
            }
        };
        let user_id: Option<Arc<str>> = member.as_ref().map(|(id, _)| Arc::from(id.as_str()));
        let outcome =
            match self.app.hub.subscribe(&self.handle, &channel, member, limits.max_presence_members) {
                Ok(outcome) => outcome,
                Err(SubscribeError::PresenceFull { max }) => {
                    let message = format!("presence channel is full ({max} members)");
                    self.send_subscription_error(socket, channel.as_str(), "LimitReached", &message, 403)
                        .await?;
                    return Ok(Next::Continue);
                }
                Err(SubscribeError::SocketGone) => return Ok(Next::End),
            };
        // Recorded before any reply is written, so that a session ending mid-reply still leaves
        // the channel (and its presence) when it finishes.
        self.channels.insert(channel.clone(), user_id);
        if channel.kind().requires_auth() {
            self.authorized = true;
        }
        let succeeded_data = outcome.presence.map_or_else(|| "{}".to_owned(), |presence| presence.to_data());
        let succeeded = encode_server_event(
            "pusher_internal:subscription_succeeded",
            Some(channel.as_str()),
            &succeeded_data,
            None,
        );
        self.send(socket, succeeded).await?;
        if channel.is_cache() {
            let frame = match outcome.cached {
                Some(frame) => frame,
                None => encode_server_event("pusher:cache_miss", Some(channel.as_str()), "{}", None).into(),
            };
            self.send(socket, frame).await?;
        }
        Ok(Next::Continue)
    }

    /// Checks the subscription's auth; returns the presence member for presence channels.
    fn authorize(
        &self,
        channel: &ChannelName,
        data: &SubscribeData,
    ) -> Result<Option<(String, Value)>, (String, u16)> {
        let config = &self.app.config;
        match channel.kind() {
            ChannelKind::Public => Ok(None),
            ChannelKind::ServerToUser => match (&self.user_id, channel.server_to_user_id()) {
                (Some(user), Some(owner)) if user == owner => Ok(None),
                _ => Err(("only the connection signed in as this user may subscribe".into(), 403)),
            },
            kind => {
                let auth = data
                    .auth
                    .as_deref()
                    .ok_or_else(|| ("auth is required for this channel".to_owned(), 401))?;
                let channel_data =
                    if kind == ChannelKind::Presence {
                        Some(data.channel_data.as_deref().ok_or_else(|| {
                            ("channel_data is required for presence channels".to_owned(), 400)
                        })?)
                    } else {
                        None
                    };
                let signed = channel_auth_string(self.handle.id.as_str(), channel.as_str(), channel_data);
                verify_auth(&config.key, &config.secret, &signed, auth)
                    .map_err(|error| (error.to_string(), 401))?;
                match channel_data {
                    Some(text) => {
                        let limits = &config.limits;
                        let member = PresenceChannelData::parse(
                            text,
                            limits.max_presence_user_id_len,
                            limits.max_presence_user_info_bytes,
                        )
                        .map_err(|error| (error.to_string(), 400))?;
                        Ok(Some((member.user_id, member.user_info)))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    async fn on_signin(&mut self, socket: &mut WebSocket, data: SigninData) -> Handled {
        let config = &self.app.config;
        let signed = signin_auth_string(self.handle.id.as_str(), &data.user_data);
        if let Err(error) = verify_auth(&config.key, &config.secret, &signed, &data.auth) {
            debug!(?error, "sign-in refused");
            return Ok(Next::Close(CloseCode::Unauthorized));
        }
        let user = match UserData::parse(&data.user_data) {
            Ok(user) => user,
            Err(error) => {
                return Ok(Next::CloseBecause(CloseCode::Unauthorized, error.to_string()));
            }
        };
        if user.watchlist_len > 100 {
            let code = CloseCode::WatchlistLimit;
            self.send_error(socket, Some(code.code()), code.message()).await?;
        }
        if let Some(previous) = self.user_id.take() {
            self.app.hub.unregister_user(self.handle.key, &previous);
        }
        self.app.hub.sign_in(self.handle.key, &user.id);
        self.user_id = Some(user.id);
        self.authorized = true;
        let reply = json!({ "user_data": data.user_data }).to_string();
        let success = encode_server_event("pusher:signin_success", None, &reply, None);
        self.send(socket, success).await?;
        Ok(Next::Continue)
    }

    async fn on_client_event(
        &mut self,
        socket: &mut WebSocket,
        event: String,
        channel: String,
        data: Value,
    ) -> Handled {
        let config = &self.app.config;
        if !config.client_events {
            self.send_error(socket, None, "client events are not enabled for this app").await?;
            return Ok(Next::Continue);
        }
        let Some((name, user_id)) = self.channels.get_key_value(channel.as_str()) else {
            self.send_error(
                socket,
                None,
                "client events may only be sent on a channel this connection is subscribed to",
            )
            .await?;
            return Ok(Next::Continue);
        };
        if !matches!(name.kind(), ChannelKind::Private | ChannelKind::Presence) {
            self.send_error(socket, None, "client events may only be sent on private and presence channels")
                .await?;
            return Ok(Next::Continue);
        }
        if event.len() > config.limits.max_event_name_len {
            self.send_error(socket, None, "event name is too long").await?;
            return Ok(Next::Continue);
        }
        let now = Instant::now();
        let (window_start, count) = &mut self.client_events_window;
        if now.duration_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *count = 0;
        }
        *count += 1;
        if *count > config.limits.client_events_per_second {
            let code = CloseCode::ClientEventRateLimit;
            self.send_error(socket, Some(code.code()), code.message()).await?;
            return Ok(Next::Continue);
        }
        let data = match data {
            Value::String(text) => text,
            other => other.to_string(),
        };
        if data.len() > config.limits.max_event_data_bytes {
            let message = format!("event data is larger than {} bytes", config.limits.max_event_data_bytes);
            self.send_error(socket, None, &message).await?;
            return Ok(Next::Continue);
        }
        self.app.relay(name, &event, &data, self.handle.id.as_str(), user_id.as_deref()).await;
        Ok(Next::Continue)
    }
}

/// Writes `first` and whatever else the outbox already holds (up to a batch), then flushes once:
/// one syscall for a burst instead of one per frame.
async fn write_batch(
    socket: &mut WebSocket,
    first: Utf8Bytes,
    outbox: &mut Outbox<Utf8Bytes>,
) -> Result<(), axum::Error> {
    use futures_util::SinkExt as _;
    socket.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        match outbox.try_recv() {
            Ok(frame) => socket.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    socket.flush().await
}

/// The RFC 6455 close code for a frame the client got wrong; `None` when the socket just failed
/// (reset, closed) and there is nobody to tell.
fn violation(error: axum::Error) -> Option<CloseCode> {
    use tungstenite::error::ProtocolError;
    let error = error.into_inner();
    let Some(error) = error.downcast_ref::<tungstenite::Error>() else {
        debug!(?error, "socket read failed");
        return None;
    };
    match error {
        tungstenite::Error::Capacity(_) => Some(CloseCode::MessageTooBig),
        tungstenite::Error::Utf8(_) => Some(CloseCode::InvalidPayload),
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::ReceivedAfterClosing
            | ProtocolError::SendAfterClosing,
        ) => None,
        tungstenite::Error::Protocol(protocol) => {
            debug!(error = %protocol, "websocket protocol violation");
            Some(CloseCode::ProtocolViolation)
        }
        other => {
            debug!(error = %other, "socket read failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the connection task's future, measured from its type alone.
    fn size_of_task<F>(_: fn(SharedState, Option<Arc<Tenant>>, Option<CloseCode>, WebSocket) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every open connection carries this future for its whole life (docs/benchmarks.md, "bytes
    /// per connection"): it must not grow unnoticed. Measured in the test (debug) profile.
    #[test]
    fn the_connection_task_stays_small() {
        let size = size_of_task(connection);
        assert!(size <= 2064, "the connection task grew to {size} bytes");
    }
}
