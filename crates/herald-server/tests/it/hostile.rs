//! Hostile clients on the WebSocket endpoint: raw frames that break RFC 6455, floods, clients that
//! send without reading. Each is answered with a close code (or dropped within a deadline) and
//! the server keeps serving others.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{TestServer, WAIT};

/// A WebSocket client that writes frames byte by byte, right or wrong.
struct RawClient {
    tcp: TcpStream,
    buffered: Vec<u8>,
}

impl RawClient {
    async fn connect(server: &TestServer) -> RawClient {
        RawClient::connect_with_buffer(server, None).await
    }

    /// `receive_buffer`: a small kernel buffer makes a client that does not read block the
    /// server's writes early.
    async fn connect_with_buffer(server: &TestServer, receive_buffer: Option<u32>) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        let mut tcp = socket.connect(server.address).await.expect("connects");
        let request = format!(
            "GET /app/main-key?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            server.address
        );
        tcp.write_all(request.as_bytes()).await.expect("handshake sent");
        let mut client = RawClient { tcp, buffered: Vec::new() };
        let response = client.read_until(b"\r\n\r\n").await;
        assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
        let (opcode, hello) = client.frame().await.expect("hello frame");
        assert_eq!(opcode, 1);
        assert!(String::from_utf8_lossy(&hello).contains("pusher:connection_established"));
        client
    }

    async fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buffered.windows(end.len()).position(|window| window == end) {
                return self.buffered.drain(..at + end.len()).collect();
            }
            self.fill().await.expect("more bytes");
        }
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await.expect("server answers");
        match read {
            Ok(0) | Err(_) => None,
            Ok(read) => {
                self.buffered.extend_from_slice(&chunk[..read]);
                Some(())
            }
        }
    }

    async fn take(&mut self, count: usize) -> Option<Vec<u8>> {
        while self.buffered.len() < count {
            self.fill().await?;
        }
        Some(self.buffered.drain(..count).collect())
    }

    /// The next server frame: (opcode, payload); `None` once the connection is closed.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let head = self.take(2).await?;
        let length = match head[1] & 0x7f {
            126 => u16::from_be_bytes(self.take(2).await?.try_into().ok()?) as usize,
            127 => u64::from_be_bytes(self.take(8).await?.try_into().ok()?) as usize,
            short => short as usize,
        };
        let payload = self.take(length).await?;
        Some((head[0] & 0x0f, payload))
    }

    /// Reads until the close frame and returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.frame().await {
                Some((8, payload)) => return u16::from_be_bytes([payload[0], payload[1]]),
                Some(_) => continue,
                None => panic!("connection dropped without a close frame"),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("frame sent");
    }
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `masked` is false.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut bytes = vec![first];
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len if len < 126 => bytes.push(mask_bit | len as u8),
        len => {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    if masked {
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
    } else {
        bytes.extend_from_slice(payload);
    }
    bytes
}

const PING: &[u8] = br#"{"event":"pusher:ping","data":{}}"#;

/// A client with a small receive buffer that will send `pusher:ping`s and never read, and a
/// burst of 256 of them.
async fn ping_flooder(server: &TestServer) -> (RawClient, Vec<u8>) {
    let flooder = RawClient::connect_with_buffer(server, Some(4096)).await;
    let ping = frame(0x81, PING, true);
    (flooder, ping.iter().copied().cycle().take(ping.len() * 256).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_answered_with_rfc_6455_close_codes() {
    let server = TestServer::start().await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("unmasked client frame", frame(0x81, PING, false), 1002),
        ("reserved bit set", frame(0x81 | 0x40, PING, true), 1002),
        ("continuation without a start", frame(0x80, PING, true), 1002),
        ("unknown opcode", frame(0x83, PING, true), 1002),
        ("fragmented control frame", frame(0x09, b"ping", true), 1002),
        ("text that is not UTF-8", frame(0x81, b"{\"event\":\"\xff\xfe\"}", true), 1007),
    ];
    for (case, bytes, expected) in cases {
        let mut client = RawClient::connect(&server).await;
        client.send(&bytes).await;
        assert_eq!(client.close_code().await, expected, "{case}");
    }
    let mut healthy = server.client().await;
    healthy.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(healthy.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_flood_is_closed_with_4100() {
    let server = TestServer::with_config(|config| config.apps[0].limits.max_messages_per_second = 50).await;
    let mut client = server.client().await;
    // One more than the limit (sending past the close would reset the socket before the client
    // reads the close frame).
    for _ in 0..51 {
        client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    }
    assert_eq!(client.expect_close().await, 4100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_is_closed_by_the_write_deadline() {
    let server = TestServer::with_config(|config| {
        config.server.pong_timeout_secs = 1;
        // No message limit: the write deadline alone must end it.
        config.apps[0].limits.max_messages_per_second = 0;
    })
    .await;
    let (mut flooder, burst) = ping_flooder(&server).await;
    let app = server.state.tenants().by_id("main").expect("main app").clone();
    let started = Instant::now();
    loop {
        // The flooder writes and never reads; once both kernel buffers are full its writes block.
        let _ = tokio::time::timeout(Duration::from_millis(50), flooder.tcp.write_all(&burst)).await;
        if app.hub.connections() == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the flooder is still connected");
    }
    assert!(app.slow_consumers.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let mut healthy = server.client().await;
    healthy.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(healthy.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_client_that_never_reads() {
    let mut server = TestServer::with_config(|config| {
        config.server.shutdown_grace_secs = 5;
        config.apps[0].limits.max_messages_per_second = 0;
    })
    .await;
    let (mut flooder, burst) = ping_flooder(&server).await;
    // Fill the buffers until the server's pong writes block.
    for _ in 0..400 {
        if tokio::time::timeout(Duration::from_millis(20), flooder.tcp.write_all(&burst)).await.is_err() {
            break;
        }
    }
    let started = Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(4), "shutdown took {:?}", started.elapsed());
}

/// A subscriber that stops reading while broadcasts keep coming overflows its outbox and is
/// closed as a slow consumer: on the wire, a `pusher:error` with code 4100 and a close frame with
/// 4100 (reconnect after backing off), once it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_4100_on_the_wire() {
    let server = TestServer::with_config(|config| config.server.outbox_capacity = 4).await;
    let mut slow = RawClient::connect_with_buffer(&server, Some(4096)).await;
    let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"slow-news"}}"#;
    slow.send(&frame(0x81, subscribe, true)).await;
    let (_, reply) = slow.frame().await.expect("subscription reply");
    assert!(String::from_utf8_lossy(&reply).contains("subscription_succeeded"));
    let app = server.state.tenants().by_id("main").expect("main app").clone();
    let data = "x".repeat(8_000);
    let started = Instant::now();
    // Publish until the session gives up on the client; it reads nothing meanwhile.
    while app.slow_consumers.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        let (status, _) = server.trigger(&["slow-news"], "tick", &data).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(30), "the slow consumer was never closed");
    }
    // It reads again: behind the queued ticks come the error and the close, both 4100.
    let mut error = None;
    let code = loop {
        match slow.frame().await {
            Some((1, payload)) => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                if text.contains("pusher:error") {
                    error = Some(text);
                }
            }
            Some((8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(_) => continue,
            None => panic!("dropped without a close frame"),
        }
    };
    assert_eq!(code, 4100);
    let error = error.expect("a pusher:error before the close");
    assert!(error.contains("4100"), "{error}");
}
