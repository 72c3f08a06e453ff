//! The WebSocket endpoint `/app/{key}`: the upgrade, the connection checks and refusals, and the
//! task of each connection.
//!
//! Each connection is one task: its session (session.rs) waits on its kill switch (which shutdown
//! sets), its outbox, the client's frames and its timer, and writes to its socket, alone: while it
//! waits with nothing of its own to write, it lends its writer to the hub (over plain TCP,
//! tcp.rs), whose sends then write broadcasts straight into the socket, and it takes the writer
//! back before it touches the socket again. The session works on
//! any [`Frames`]: Herald's [`Socket`] (socket.rs) in the server, an in-memory pair in the tests.

mod frames;
pub(crate) mod http;
mod session;
mod socket;
mod tcp;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use herald_hub::Outbox;
use herald_protocol::{encode_error, CloseCode, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::listener::Transport;
use crate::state::{SharedState, State as ServerState};
use crate::tenant::Tenant;
pub(crate) use socket::{Socket, Upgrade};

/// Bytes tungstenite reads from the socket at a time, and the read buffer every connection holds
/// for its whole life (allocated at the upgrade; tungstenite has no way to release it while
/// idle). Its default (128 KiB) is allocated per connection. Client frames are small (a
/// subscription is under 100 bytes, one with auth a few hundred), and the buffer grows to hold
/// any larger frame whole, so 256 bytes costs at most a few more reads for the rare large one.
const READ_BUFFER_BYTES: usize = 256;

/// How long the goodbye (error + close frame) may take before the socket is simply dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a session reads client frames from and writes its frames to: the server's [`Socket`], an
/// in-memory pair in the tests. Sessions are generic over it (monomorphised, never `dyn`), so the
/// server's instance costs nothing.
pub(crate) trait Frames:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
    /// Writes `first` and whatever else the outbox already holds (up to a batch), then flushes
    /// once: one syscall for a burst instead of one per frame.
    fn write_batch<'a>(
        &'a mut self,
        first: Utf8Bytes,
        outbox: &'a mut Outbox<Utf8Bytes>,
    ) -> impl std::future::Future<Output = Result<(), axum::Error>> + Send + 'a {
        async move {
            self.feed(Message::Text(first)).await?;
            for _ in 1..socket::WRITE_BATCH {
                match outbox.try_recv() {
                    Ok(frame) => self.feed(Message::Text(frame)).await?,
                    Err(_) => break,
                }
            }
            self.flush().await
        }
    }

    /// A writer for the hub to use while the session waits (`Outbox::lend`): none by default.
    fn direct(&self) -> Option<Arc<dyn herald_hub::Direct<Utf8Bytes>>> {
        None
    }

    /// Whether nothing of the session's own waits to be written, so that it may lend its writer
    /// (flushing what it can without waiting). Only asked when `direct` gave one.
    fn poll_idle(&mut self, _cx: &mut std::task::Context<'_>) -> bool {
        false
    }
}

/// The server's socket frames outbox frames itself: one frame is written as its header and the
/// shared payload (no copy), a batch is framed into a buffer that lives for that write only.
impl Frames for Socket {
    fn write_batch<'a>(
        &'a mut self,
        first: Utf8Bytes,
        outbox: &'a mut Outbox<Utf8Bytes>,
    ) -> impl std::future::Future<Output = Result<(), axum::Error>> + Send + 'a {
        self.write_text(first, Some(outbox))
    }

    fn direct(&self) -> Option<Arc<dyn herald_hub::Direct<Utf8Bytes>>> {
        Socket::direct(self)
    }

    fn poll_idle(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        Socket::poll_idle(self, cx)
    }
}

/// axum's socket: only the refusal on an unknown path uses it.
impl Frames for WebSocket {}

/// What a session needs of the server around it: its timing settings and the shutdown signal.
/// Everything else it needs is its app (`Tenant`: hub and app config).
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    /// Silence after which the server pings (`server.activity_timeout_secs`); announced in the
    /// hello.
    pub(crate) activity_timeout: Duration,
    /// How long a ping waits for an answer, and a write for a client that does not read
    /// (`server.pong_timeout_secs`).
    pub(crate) pong_timeout: Duration,
    /// Cancelled when the server shuts down (`close_sessions`, which also sets every registered
    /// socket's kill switch to 4200); a session checks it once, after it registers.
    pub(crate) shutdown: CancellationToken,
}

impl SessionContext {
    fn of(state: &ServerState) -> SessionContext {
        SessionContext {
            activity_timeout: Duration::from_secs(state.pusher.server.activity_timeout_secs),
            pong_timeout: Duration::from_secs(state.pusher.server.pong_timeout_secs),
            shutdown: state.lifecycle().shutdown.clone(),
        }
    }
}

/// Shuts every session of `tenants` down with 4200: cancels `shutdown`, then sets the kill switch
/// of every registered socket. A session registering after that sees the cancelled token right
/// after it registers, so none is missed, and no session polls the token while it waits.
pub(crate) fn close_sessions<'a>(
    shutdown: &CancellationToken,
    tenants: impl IntoIterator<Item = &'a Arc<Tenant>>,
) {
    shutdown.cancel();
    for tenant in tenants {
        tenant.hub.close_all(CloseCode::Reconnect);
    }
}

/// `GET /app/{key}`: always upgrades, so that refusals reach pusher-js as close codes.
pub(crate) async fn upgrade(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    transport: Option<Extension<Transport>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    let (app, refusal) = admission(
        &state,
        &key,
        query.as_deref(),
        transport.map(|Extension(transport)| transport),
        peer.map(|Extension(ConnectInfo(peer))| peer),
        &headers,
    );
    let max_message = app.as_ref().map_or(herald_protocol::Limits::default().max_ws_message_bytes, |app| {
        app.config.limits.max_ws_message_bytes
    });
    let tracker = state.lifecycle().sessions.clone();
    let context = SessionContext::of(&state);
    configure(ws, max_message)
        .on_upgrade(move |socket| tracker.track_future(connection(context, app, refusal, socket)))
}

/// The app a connecting client asks for by key, and why it is refused, if it is: the one set of
/// checks of a WebSocket upgrade and of an HTTP session's first request (http.rs).
fn admission(
    state: &ServerState,
    key: &str,
    query: Option<&str>,
    transport: Option<Transport>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> (Option<Arc<Tenant>>, Option<CloseCode>) {
    let app = state.tenants().by_key(key).cloned();
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    let client = Client { query, origin, over_tls: over_tls(state, transport, peer, headers) };
    let refusal = refusal(state, app.as_deref(), &client);
    (app, refusal)
}

/// The task of one upgraded connection: the refusal, or the session.
///
/// No async wrapper: the task is the session's own future, so the socket (moved into it) is
/// stored once. The refusals are boxed: they run once, and the task is as large as its largest
/// state for the connection's whole life (see docs/benchmarks.md).
fn connection<S: Frames>(
    context: SessionContext,
    app: Option<Arc<Tenant>>,
    refusal: Option<CloseCode>,
    mut socket: S,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::future::Either;
    match (refusal, app) {
        (None, Some(app)) => Either::Left(session::start(context, app, socket)),
        (refusal, _) => {
            let code = refusal.unwrap_or(CloseCode::AppNotFound);
            Either::Right(Box::pin(async move { refuse(&mut socket, code).await }))
        }
    }
}

/// The WebSocket settings of every session: small buffers, and messages over `max_message`
/// refused before they are buffered. tungstenite writes only the session's own frames (replies,
/// pings, close frames), each flushed at once: no write buffering.
fn configure(ws: Upgrade, max_message: usize) -> Upgrade {
    ws.config(|config| {
        config
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
    })
}

/// Sends the close reply queued after the client's close frame (the next read flushes it), never
/// waiting long on a client that does not read.
async fn finish_close<S: Frames>(socket: &mut S) {
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, socket.next()).await;
}

/// An echo endpoint on any path with exactly the sessions' WebSocket settings and protocol-error
/// handling, for the Autobahn conformance run (`scripts/autobahn`); never part of a server.
pub fn conformance_echo_router() -> axum::Router {
    async fn echo(ws: Upgrade) -> Response {
        configure(ws, herald_protocol::Limits::default().max_ws_message_bytes).on_upgrade(
            |mut socket| async move {
                loop {
                    let reply = match socket.next().await {
                        // Text goes back the way an outbox frame goes out: framed by Herald,
                        // header and payload in one vectored write.
                        Some(Ok(Message::Text(text))) => {
                            if socket.write_text(text, None).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Some(Ok(Message::Binary(bytes))) => Message::Binary(bytes),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) => return finish_close(&mut socket).await,
                        Some(Err(error)) => match violation(error) {
                            Some(code) => close_message(code),
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
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(|mut socket| async move { refuse(&mut socket, CloseCode::PathNotFound).await })
}

/// What the refusal checks look at of the connecting client.
#[derive(Debug, Clone, Copy)]
struct Client<'a> {
    query: Option<&'a str>,
    origin: Option<&'a str>,
    /// Whether the client's connection is TLS up to Herald or up to a trusted proxy.
    over_tls: bool,
}

/// Whether the client connected with TLS: to Herald itself, or to a reverse proxy that
/// terminated it and says so with `X-Forwarded-Proto: https`. The header is believed only from a
/// loopback peer or one of `server.ip_limit_exempt` (the addresses already trusted as this
/// host's proxies); from anyone else it is whatever the client chose to send.
fn over_tls(
    state: &ServerState,
    transport: Option<Transport>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> bool {
    if transport.is_some_and(|transport| transport.tls) {
        return true;
    }
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    forwarded_https && peer.is_some_and(|peer| is_trusted_proxy(state, peer.ip()))
}

fn is_trusted_proxy(state: &ServerState, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    ip.is_loopback() || state.pusher.server.ip_limit_exempt.contains(&ip)
}

/// The checks made before a connection is accepted, in the order pusher-js expects.
fn refusal(state: &ServerState, app: Option<&Tenant>, client: &Client<'_>) -> Option<CloseCode> {
    let protocol = client.query.and_then(|query| {
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
    if app.config.tls_only && !client.over_tls {
        return Some(CloseCode::SslOnly);
    }
    if !app.config.origin_allowed(client.origin) {
        return Some(CloseCode::Unauthorized);
    }
    if state.lifecycle().is_draining() {
        return Some(CloseCode::Reconnect);
    }
    None
}

/// Sends the refusal (error + close frame); a peer that does not read cannot hold it longer than
/// [`CLOSE_WRITE_TIMEOUT`].
async fn refuse<S: Frames>(socket: &mut S, code: CloseCode) {
    let goodbye = async {
        socket.send(error_message(code)).await?;
        socket.send(close_message(code)).await
    };
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, goodbye).await;
}

fn error_message(code: CloseCode) -> Message {
    Message::Text(encode_error(Some(code.code()), code.message()).into())
}

/// The close frame of `code`, with its message as the reason.
fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame { code: code.code(), reason: Utf8Bytes::from(code.message()) }))
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
