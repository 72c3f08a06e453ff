//! The two clients of the benchmark: a light WebSocket client speaking Pusher frames, and the
//! signed HTTP API.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use herald_protocol::{channel_auth_string, hmac_sha256_hex, ApiSigner};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::{APP_ID, APP_KEY, APP_SECRET};

/// Time allowed for connect + `connection_established` + `subscription_succeeded`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server frames arriving on one socket are small: keep the client's buffers small too, so
/// 10 000 sockets in the bench process stay light (tungstenite reads 128 KiB at a time otherwise).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

pub(crate) fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7&client=herald-bench&version=0.1.0&flash=false")
}

/// Connects, reads `pusher:connection_established`, subscribes to `channel` and waits for
/// `pusher_internal:subscription_succeeded`. With no channel it only connects. A `private-`
/// channel is authorized with a signature the bench makes itself: HMAC-SHA256 of
/// `socket_id:channel` under the app secret, as an app's auth endpoint would.
pub(crate) async fn connect_subscribed(url: &str, channel: Option<&str>) -> anyhow::Result<Ws> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let tcp = connect_tcp(url).await.context("tcp connect")?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), Some(ws_config()))
                .await
                .context("websocket connect")?;
        let hello = next_text(&mut ws).await?;
        let hello: Value = serde_json::from_str(hello.as_str()).context("handshake json")?;
        if hello["event"] != "pusher:connection_established" {
            bail!("expected pusher:connection_established, got {hello}");
        }
        let Some(channel) = channel else {
            return Ok(ws);
        };
        let mut data = json!({ "channel": channel });
        if channel.starts_with("private-") {
            let socket_id = hello["data"]
                .as_str()
                .and_then(|data| serde_json::from_str::<Value>(data).ok())
                .and_then(|data| data["socket_id"].as_str().map(str::to_owned))
                .context("no socket_id in pusher:connection_established")?;
            let signature = hmac_sha256_hex(APP_SECRET, &channel_auth_string(&socket_id, channel, None));
            data["auth"] = Value::String(format!("{APP_KEY}:{signature}"));
        }
        let subscribe = json!({ "event": "pusher:subscribe", "data": data });
        ws.send(Message::Text(subscribe.to_string().into())).await.context("send subscribe")?;
        loop {
            let frame = next_text(&mut ws).await?;
            let frame: Value = serde_json::from_str(frame.as_str()).context("frame json")?;
            match frame["event"].as_str() {
                Some("pusher_internal:subscription_succeeded") if frame["channel"] == channel => {
                    return Ok(ws)
                }
                Some("pusher:subscription_error") | Some("pusher:error") => {
                    bail!("subscription refused: {frame}")
                }
                _ => continue,
            }
        }
    })
    .await
    .context("handshake timed out")?
}

/// The next source port to try (an offset into the local port range).
static NEXT_SOURCE_PORT: AtomicUsize = AtomicUsize::new(0);
/// Source ports tried before letting the kernel choose.
const SOURCE_PORT_TRIES: usize = 64;

/// The local (ephemeral) port range, from `/proc/sys/net/ipv4/ip_local_port_range`.
fn local_port_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| {
                let mut ports = text.split_whitespace().map(|port| port.parse::<u16>().ok());
                Some((ports.next()??, ports.next()??))
            })
            .filter(|(low, high)| low < high)
            .unwrap_or((32768, 60999))
    })
}

/// A TCP connection to the `ws://host:port` of `url`, from a source port the bench picks itself
/// (round-robin over the local port range).
///
/// Left to the kernel, `connect()` searches the range for a free port, even ports first: past
/// about 14 000 connections to one address every further `connect()` scans the whole half
/// before it tries the odd ports, and the storm measured the bench's kernel time instead of
/// the server (19 000 connections: 1.0 s for the first 13 300, 4 s for the rest, the bench
/// at 100 % of a core in `sys`). Binding a chosen port costs one hash lookup. A port in use is
/// skipped; after `SOURCE_PORT_TRIES` the kernel chooses after all.
async fn connect_tcp(url: &str) -> anyhow::Result<TcpStream> {
    let request = url.into_client_request().context("websocket url")?;
    let host = request.uri().host().context("no host in the url")?;
    let port = request.uri().port_u16().unwrap_or(80);
    let address = tokio::net::lookup_host((host, port)).await?.next().context("no address for the host")?;
    let (low, high) = local_port_range();
    let span = usize::from(high - low) + 1;
    for _ in 0..SOURCE_PORT_TRIES {
        let source = low + (NEXT_SOURCE_PORT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // A port whose last connection is in TIME_WAIT may be bound again (and, on loopback,
        // connected from again).
        socket.set_reuseaddr(true)?;
        let local = SocketAddr::new(
            if address.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() },
            source,
        );
        if socket.bind(local).is_err() {
            continue;
        }
        match socket.connect(address).await {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(error)
                if matches!(error.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable) =>
            {
                continue
            }
            Err(error) => return Err(error.into()),
        }
    }
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The next text frame; control frames are skipped (tungstenite answers pings itself).
async fn next_text(ws: &mut Ws) -> anyhow::Result<Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => bail!("websocket error: {error}"),
            None => bail!("connection ended"),
        }
    }
}

/// Answers a server `pusher:ping` with `pusher:pong`; true when `text` was one.
pub(crate) async fn answer_ping(ws: &mut Ws, text: &str) -> bool {
    if text.contains("\"pusher:ping\"") {
        let pong = json!({ "event": "pusher:pong", "data": {} }).to_string();
        let _ = ws.send(Message::Text(pong.into())).await;
        true
    } else {
        false
    }
}

/// Sends a close frame and gives the server a moment to answer.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Signed calls to the Pusher HTTP API (auth_version 1.0), over keep-alive connections.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(port: u16) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("http client")?;
        Ok(Api { http, base: format!("http://127.0.0.1:{port}") })
    }

    /// `POST /apps/{id}/events` for one channel; returns the status code.
    pub(crate) async fn trigger(&self, channel: &str, name: &str, data: &str) -> anyhow::Result<u16> {
        let body = json!({ "name": name, "channels": [channel], "data": data }).to_string();
        let (status, _) = self.post_signed(&format!("/apps/{APP_ID}/events"), body).await?;
        Ok(status)
    }

    /// `POST /apps/{id}/domain-events` with `body` (one event or `{"events": [...]}`); returns
    /// the status code and the answer's body.
    pub(crate) async fn domain_events(&self, body: String) -> anyhow::Result<(u16, bytes::Bytes)> {
        self.post_signed(&format!("/apps/{APP_ID}/domain-events"), body).await
    }

    /// A `POST` of JSON `body` to `path`, signed like every Pusher HTTP API call.
    async fn post_signed(&self, path: &str, body: String) -> anyhow::Result<(u16, bytes::Bytes)> {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let query = ApiSigner { key: APP_KEY, secret: APP_SECRET }.query(
            "POST",
            path,
            body.as_bytes(),
            timestamp,
            &[],
        );
        // Every value is URL-safe (hex, digits, the key), so no escaping is needed.
        let query: Vec<String> = query.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let url = format!("{}{path}?{}", self.base, query.join("&"));
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("POST request")?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        let body = response.bytes().await.unwrap_or_default();
        Ok((status, body))
    }
}
