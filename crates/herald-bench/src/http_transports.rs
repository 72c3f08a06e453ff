//! `--only http-transports`: pusher-js's HTTP fallback (`xhr_streaming`) next to WebSocket in the
//! same run, each on a fresh server: memory per idle subscribed session (RSS growth over N idle
//! sessions, spread over 100 channels), then broadcast latency from the HTTP trigger to every
//! subscriber of one channel while those idle sessions stay open.
//!
//! The HTTP client is as light as pusher-js's: a raw TCP connection holding the
//! `xhr_streaming` response open (its lines are scanned for what the phase waits for), and
//! `xhr_send` posts on short connections of their own.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Api, Ws};
use crate::phases::{mib, percentile};
use crate::server::{Server, APP_KEY};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct HttpConfig {
    pub(crate) bin: std::path::PathBuf,
    pub(crate) server_log: String,
    pub(crate) server_env: Vec<(String, String)>,
    /// Idle subscribed sessions per transport for the memory reading.
    pub(crate) sessions: usize,
    /// Subscribers of the latency channel per transport.
    pub(crate) subscribers: usize,
    pub(crate) rounds: usize,
    pub(crate) connect_concurrency: usize,
    pub(crate) settle: Duration,
}

/// One transport's figures.
#[derive(Debug, Clone)]
pub(crate) struct TransportResult {
    pub(crate) transport: &'static str,
    pub(crate) sessions: usize,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
    pub(crate) subscribers: usize,
    /// Trigger sent → event read by a subscriber, µs, sorted.
    pub(crate) latency_us: Vec<u64>,
}

impl TransportResult {
    pub(crate) fn per_session(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.sessions.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ws,
    XhrStreaming,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::XhrStreaming => "xhr_streaming",
        }
    }
}

/// A subscribed client of either transport.
enum Subscriber {
    Ws(Box<Ws>),
    Http(HttpStream),
}

/// An open `xhr_streaming` response on its own TCP connection.
struct HttpStream {
    tcp: TcpStream,
    /// Bytes read and not yet scanned past (a marker may straddle two reads).
    buffered: Vec<u8>,
}

impl HttpStream {
    /// Reads until `needle` has arrived; drops what came before it.
    async fn until(&mut self, needle: &[u8]) -> anyhow::Result<()> {
        loop {
            if let Some(at) = find(&self.buffered, needle) {
                self.buffered.drain(..at + needle.len());
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.tcp.read(&mut chunk).await.context("stream read")?;
        if read == 0 {
            bail!("the stream ended");
        }
        self.buffered.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// `round-N-end` markers in `bytes`, and how many bytes may be dropped after them.
fn rounds_in(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut found = Vec::new();
    let mut consumed = 0;
    let mut at = 0;
    while let Some(start) = find(&bytes[at..], b"round-") {
        let digits_at = at + start + b"round-".len();
        let digits = bytes[digits_at..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        let end = digits_at + digits;
        if bytes.len() < end + 4 {
            break;
        }
        if &bytes[end..end + 4] == b"-end" {
            if let Some(round) = std::str::from_utf8(&bytes[digits_at..end]).ok().and_then(|d| d.parse().ok())
            {
                found.push(round);
            }
        }
        at = end;
        consumed = end;
    }
    // Keep a tail that may hold the start of a marker.
    let keep_from = bytes.len().saturating_sub(32).max(consumed);
    (found, keep_from)
}

/// One HTTP session: opens the stream, reads the hello, subscribes through `xhr_send`.
async fn http_subscriber(
    port: u16,
    sends: &reqwest::Client,
    number: usize,
    channel: &str,
) -> anyhow::Result<HttpStream> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let base = format!("/pusher/app/{APP_KEY}/{}/b{number:07}", number % 1000);
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.context("tcp connect")?;
        tcp.set_nodelay(true)?;
        let mut stream = HttpStream { tcp, buffered: Vec::new() };
        let request = format!(
            "POST {base}/xhr_streaming?protocol=7&client=herald-bench&version=0.1.0 HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        );
        stream.tcp.write_all(request.as_bytes()).await.context("stream request")?;
        stream.until(b"pusher:connection_established").await?;
        let subscribe = json!({ "event": "pusher:subscribe", "data": { "channel": channel } }).to_string();
        let body = serde_json::to_string(&[subscribe])?;
        let response = sends
            .post(format!("http://127.0.0.1:{port}{base}/xhr_send"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("xhr_send")?;
        if response.status().as_u16() != 204 {
            bail!("xhr_send answered {}", response.status());
        }
        stream.until(b"subscription_succeeded").await?;
        Ok(stream)
    })
    .await
    .context("session handshake timed out")?
}

async fn subscriber(
    transport: Transport,
    port: u16,
    sends: &reqwest::Client,
    number: usize,
    channel: &str,
) -> anyhow::Result<Subscriber> {
    match transport {
        Transport::Ws => Ok(Subscriber::Ws(Box::new(
            client::connect_subscribed(&client::ws_url(port), Some(channel)).await?,
        ))),
        Transport::XhrStreaming => Ok(Subscriber::Http(http_subscriber(port, sends, number, channel).await?)),
    }
}

async fn open_many(
    transport: Transport,
    port: u16,
    sends: &reqwest::Client,
    first: usize,
    count: usize,
    concurrency: usize,
    channel: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Subscriber>> {
    let opened: Vec<anyhow::Result<Subscriber>> = futures_util::stream::iter(first..first + count)
        .map(|number| {
            let channel = channel(number);
            async move { subscriber(transport, port, sends, number, &channel).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    opened.into_iter().collect()
}

/// Reads every subscriber's stream and reports `(round, arrival)` for each marker seen.
fn listen(subscribers: Vec<Subscriber>, arrivals: mpsc::UnboundedSender<(usize, Instant)>) {
    for subscriber in subscribers {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            match subscriber {
                Subscriber::Ws(mut ws) => {
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(text) = message {
                            if client::answer_ping(&mut ws, text.as_str()).await {
                                continue;
                            }
                            let now = Instant::now();
                            for round in rounds_in(text.as_bytes()).0 {
                                let _ = arrivals.send((round, now));
                            }
                        }
                    }
                }
                Subscriber::Http(mut stream) => {
                    while stream.fill().await.is_ok() {
                        let now = Instant::now();
                        let (rounds, keep_from) = rounds_in(&stream.buffered);
                        for round in rounds {
                            let _ = arrivals.send((round, now));
                        }
                        stream.buffered.drain(..keep_from);
                    }
                }
            }
        });
    }
}

async fn measure(config: &HttpConfig, transport: Transport) -> anyhow::Result<TransportResult> {
    let server = Server::start(&config.bin, &config.server_log, &config.server_env, None)?;
    eprintln!(
        "herald-bench: http-transports: {} on a fresh server (pid {}, port {})",
        transport.name(),
        server.pid,
        server.port
    );
    let outcome = measure_on(config, transport, &server).await;
    let _ = server.stop();
    outcome
}

async fn measure_on(
    config: &HttpConfig,
    transport: Transport,
    server: &Server,
) -> anyhow::Result<TransportResult> {
    let api = Api::new(server.port)?;
    // xhr_send on connections of its own that close after each request: no pool of idle
    // connections held open on the server while its memory is read.
    let sends = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")?;
    tokio::time::sleep(config.settle).await;
    let rss_before = server.memory()?.rss;
    let idle =
        open_many(transport, server.port, &sends, 0, config.sessions, config.connect_concurrency, |n| {
            format!("idle-{}", n % 100)
        })
        .await?;
    tokio::time::sleep(config.settle).await;
    let rss_after = server.memory()?.rss;

    let subscribers = open_many(
        transport,
        server.port,
        &sends,
        config.sessions,
        config.subscribers,
        config.connect_concurrency,
        |_| "latency".to_owned(),
    )
    .await?;
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    listen(subscribers, arrivals_tx);
    let mut latency_us = Vec::with_capacity(config.rounds * config.subscribers);
    for round in 0..config.rounds + 1 {
        let sent = Instant::now();
        let status = api.trigger("latency", "tick", &format!("round-{round}-end")).await?;
        if status != 200 {
            bail!("trigger answered {status}");
        }
        let mut seen = 0;
        while seen < config.subscribers {
            let (got, at) = tokio::time::timeout(ROUND_TIMEOUT, arrivals.recv())
                .await
                .with_context(|| {
                    format!("round {round}: {seen} of {} subscribers in time", config.subscribers)
                })?
                .context("every subscriber ended")?;
            if got != round {
                continue;
            }
            seen += 1;
            // Round 0 warms up and is not counted.
            if round > 0 {
                latency_us.push(at.saturating_duration_since(sent).as_micros() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    latency_us.sort_unstable();
    Ok(TransportResult {
        transport: transport.name(),
        sessions: config.sessions,
        rss_before,
        rss_after,
        subscribers: config.subscribers,
        latency_us,
    })
}

/// WebSocket, then xhr_streaming, each on a server of its own.
pub(crate) async fn run(config: &HttpConfig) -> anyhow::Result<Vec<TransportResult>> {
    let mut results = Vec::new();
    for transport in [Transport::Ws, Transport::XhrStreaming] {
        results.push(measure(config, transport).await?);
    }
    Ok(results)
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

pub(crate) fn to_markdown(config: &HttpConfig, results: &anyhow::Result<Vec<TransportResult>>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "HTTP fallback transports (each on a fresh server, same run)\n");
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            let _ = writeln!(out, "failed: {error:#}");
            return out;
        }
    };
    let _ = writeln!(
        out,
        "| transport | idle sessions | RSS before → after | per idle session | latency subscribers | latency p50 / p99 / max |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for result in results {
        let latency = [50.0, 99.0, 100.0].map(|p| ms(percentile(&result.latency_us, p))).join(" / ");
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} → {:.1} MiB | {:.0} B | {} | {latency} |",
            result.transport,
            result.sessions,
            mib(result.rss_before),
            mib(result.rss_after),
            result.per_session(),
            result.subscribers,
        );
    }
    if let [ws, http] = results.as_slice() {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let _ = writeln!(
            out,
            "\nxhr_streaming / ws: memory per session {:.2}x, latency p50 {:.2}x ({} rounds)",
            ratio(http.per_session(), ws.per_session()),
            ratio(percentile(&http.latency_us, 50.0) as f64, percentile(&ws.latency_us, 50.0) as f64),
            config.rounds
        );
    }
    out
}

pub(crate) fn to_json(config: &HttpConfig, results: &anyhow::Result<Vec<TransportResult>>) -> Value {
    match results {
        Err(error) => json!({ "error": format!("{error:#}") }),
        Ok(results) => json!({
            "rounds": config.rounds,
            "transports": results.iter().map(|result| json!({
                "transport": result.transport,
                "idle_sessions": result.sessions,
                "rss_before_bytes": result.rss_before,
                "rss_after_bytes": result.rss_after,
                "bytes_per_idle_session": result.per_session(),
                "latency_subscribers": result.subscribers,
                "latency_p50_us": percentile(&result.latency_us, 50.0),
                "latency_p99_us": percentile(&result.latency_us, 99.0),
                "latency_max_us": percentile(&result.latency_us, 100.0),
            })).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_markers_are_found_and_a_split_one_is_kept() {
        let (rounds, keep) = rounds_in(b"a[\"{\\\"data\\\":\\\"round-12-end\\\"}\"]\nround-3-en");
        assert_eq!(rounds, vec![12]);
        assert!(std::str::from_utf8(&b"a[\"{\\\"data\\\":\\\"round-12-end\\\"}\"]\nround-3-en"[keep..])
            .expect("utf-8")
            .contains("round-3-en"));
    }
}
