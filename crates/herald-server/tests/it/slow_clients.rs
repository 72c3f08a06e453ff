//! Clients that hold connections without finishing requests (slowloris), trickle bodies, or
//! open more connections than the listener takes: each is closed or refused within its limit,
//! and the admin listener keeps answering.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestServer;

/// Reads until the peer closes (or `wait` passes); returns what it sent.
async fn read_to_close(tcp: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&received).into_owned())
}

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(address).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request sent");
    let response = read_to_close(&mut tcp, Duration::from_secs(5)).await.expect("answered in time");
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_by_the_header_timeout() {
    let server = TestServer::with_config(|config| config.server.header_timeout_secs = 1).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connects");
    tcp.write_all(b"GET /up HTT").await.expect("partial request sent");
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.is_some(), "the half-sent request was never closed");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = TestServer::with_config(|config| config.server.header_timeout_secs = 1).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connects");
    tcp.write_all(b"GET /up HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("request sent");
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await.expect("closed in time");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408() {
    let server = TestServer::with_config(|config| config.server.body_timeout_secs = 1).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connects");
    let head = "POST /apps/main/events?auth_key=main-key HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":";
    tcp.write_all(head.as_bytes()).await.expect("request sent");
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await.expect("answered in time");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body not received within 1 seconds"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_announced_with_expect_continue_gets_413_at_once() {
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connects");
    let head = "POST /apps/main/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.expect("request sent");
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut chunk))
        .await
        .expect("answered without waiting for the body")
        .expect("reads");
    let answer = String::from_utf8_lossy(&chunk[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "no 100 Continue, straight 413: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_refuses_quickly_and_the_admin_listener_still_answers() {
    let server = TestServer::with_config(|config| {
        config.server.max_connections = 4;
        config.server.header_timeout_secs = 30;
    })
    .await;
    // Four idle connections hold every place on the main listener.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.address).await.expect("connects"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, body) = get(server.address, "/up").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("connection limit"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _) = get(server.admin_address, "/up").await;
    assert_eq!(status, 200, "the admin listener has its own connections");
    let (status, metrics) = get(server.admin_address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("herald_listener_capacity{listener=\"main\"} 4"), "{metrics}");
    assert!(
        metrics.contains("herald_listener_refused_total{listener=\"main\",reason=\"full\"} 1"),
        "{metrics}"
    );
    // A place freed is a place taken again.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get(server.address, "/up").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_not_take_every_connection() {
    let server = TestServer::with_config(|config| {
        config.server.max_connections_per_ip = 3;
        config.server.ip_limit_exempt = Vec::new();
        config.server.header_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.address).await.expect("connects"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(server.address, "/up").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many connections from this address"), "{body}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get(server.address, "/up").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_count_against_the_cap_until_they_close() {
    let server = TestServer::with_config(|config| config.server.max_connections = 2).await;
    let first = server.client().await;
    let _second = server.client().await;
    let (status, _) = get(server.address, "/up").await;
    assert_eq!(status, 503, "two WebSockets fill a listener of two");
    drop(first);
    let started = Instant::now();
    loop {
        let (status, _) = get(server.address, "/up").await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the closed socket's place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
