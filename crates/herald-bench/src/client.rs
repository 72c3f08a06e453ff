//! The two clients of the benchmark: a light WebSocket client speaking Pusher frames, and the
//! signed HTTP API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use herald_protocol::{channel_auth_string, hmac_sha256_hex, ApiSigner};
use serde_json::{json, Value};
use tokio::net::TcpStream;
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
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
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
