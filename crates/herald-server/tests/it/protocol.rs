//! The connection handshake and every refusal close code.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{data_of, Client, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_established_carries_socket_id_and_activity_timeout() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.ws_url("main-key")).await;
    let hello = client.recv().await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let data = data_of(&hello);
    let socket_id = data["socket_id"].as_str().expect("socket id");
    let (high, low) = socket_id.split_once('.').expect("two parts");
    assert!(high.chars().all(|c| c.is_ascii_digit()) && low.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(data["activity_timeout"], 120);
    let other = server.client().await;
    assert_ne!(other.socket_id, socket_id, "socket ids are unique");
}

async fn refused_with(_server: &TestServer, url: String) -> (Value, u16) {
    let mut client = Client::connect(&url).await;
    let error = client.recv().await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    let code = client.expect_close().await;
    (error, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_is_checked() {
    let server = TestServer::start().await;
    let base = format!("ws://{}/app/main-key", server.address);
    let (error, code) = refused_with(&server, base.clone()).await;
    assert_eq!(code, 4008);
    assert_eq!(error["data"]["code"], 4008);
    assert_eq!(refused_with(&server, format!("{base}?protocol=seven")).await.1, 4006);
    assert_eq!(refused_with(&server, format!("{base}?protocol=99")).await.1, 4007);
    assert_eq!(refused_with(&server, format!("{base}?protocol=1")).await.1, 4007);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_disabled_and_full_apps_are_refused_after_the_upgrade() {
    let server = TestServer::start().await;
    assert_eq!(refused_with(&server, server.ws_url("nobody")).await.1, 4001);
    assert_eq!(refused_with(&server, server.ws_url("disabled-key")).await.1, 4003);
    let _first = server.client_for("quota-key").await;
    let (error, code) = refused_with(&server, server.ws_url("quota-key")).await;
    assert_eq!(code, 4004);
    assert_eq!(error["data"]["code"], 4004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_quota_frees_up_when_a_client_leaves() {
    let server = TestServer::start().await;
    let first = server.client_for("quota-key").await;
    drop(first);
    let mut attempts = 0;
    loop {
        let mut client = Client::connect(&server.ws_url("quota-key")).await;
        let frame = client.recv().await;
        if frame["event"] == "pusher:connection_established" {
            break;
        }
        attempts += 1;
        assert!(attempts < 50, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allow_list_are_refused() {
    let server = TestServer::start().await;
    let url = server.ws_url("origin-key");
    let mut bad = Client::connect_with_origin(&url, "https://evil.example").await;
    assert_eq!(bad.recv().await["data"]["code"], 4009);
    assert_eq!(bad.expect_close().await, 4009);
    let mut good = Client::connect_with_origin(&url, "https://good.example").await;
    assert_eq!(good.recv().await["event"], "pusher:connection_established");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_refused_with_4005() {
    let server = TestServer::start().await;
    let (_, code) = refused_with(&server, format!("ws://{}/socket?protocol=7", server.address)).await;
    assert_eq!(code, 4005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_ping_is_answered_with_pong() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ping_frames_get_pong_frames() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send_raw(Message::Ping(b"hi".to_vec().into())).await;
    // RFC 6455 5.5.3: the pong carries the ping's application data.
    match client.recv_message().await {
        Message::Pong(payload) => assert_eq!(&payload[..], b"hi"),
        other => panic!("expected a pong frame, got {other:?}"),
    }
    // The socket stays usable afterwards.
    client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_pinged_then_closed_with_4201() {
    let server = TestServer::with_config(|config| {
        config.server.activity_timeout_secs = 1;
        config.server.pong_timeout_secs = 1;
    })
    .await;
    let mut client = server.client().await;
    assert_eq!(client.recv().await["event"], "pusher:ping");
    assert_eq!(client.expect_close().await, 4201);
}

/// The server's ping reaches a real client and its pong is taken. That the pong restarts the
/// timers (no 4201, the next ping an activity timeout later) is timed exactly under the paused
/// clock in `ws/tests`; here one round is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_the_server_ping_keeps_the_connection() {
    let server = TestServer::with_config(|config| {
        config.server.activity_timeout_secs = 1;
        config.server.pong_timeout_secs = 1;
    })
    .await;
    let mut client = server.client().await;
    assert_eq!(client.recv().await["event"], "pusher:ping");
    client.send(json!({ "event": "pusher:pong", "data": {} })).await;
    client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(client.recv_event("pusher:pong").await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sockets_with_4200_and_drains_up() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let state = server.state.clone();
    let up = format!("http://{}/up", server.address);
    assert_eq!(reqwest::get(&up).await.expect("up answers").status(), 200);
    server.shutdown().await;
    assert!(state.lifecycle().is_draining());
    let error = client.recv().await;
    assert_eq!(error["data"]["code"], 4200);
    assert_eq!(client.expect_close().await, 4200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_server_answers_up_with_503_and_refuses_new_sockets_with_4200() {
    let server = TestServer::start().await;
    server.state.lifecycle().start_draining();
    let up = reqwest::get(format!("http://{}/up", server.address)).await.expect("up answers");
    assert_eq!(up.status(), 503);
    let live = reqwest::get(format!("http://{}/live", server.address)).await.expect("live answers");
    assert_eq!(live.status(), 200);
    let mut client = Client::connect(&server.ws_url("main-key")).await;
    assert_eq!(client.recv().await["data"]["code"], 4200);
    assert_eq!(client.expect_close().await, 4200);
}

/// A client whose receive buffer is small, so that the server's writes to it stop taking whole
/// frames soon once it does not read.
async fn small_buffer_client(server: &TestServer) -> Client<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4096).expect("buffer size");
    let tcp = tcp.connect(server.address).await.expect("connects");
    let (socket, _) =
        tokio_tungstenite::client_async(server.ws_url("main-key"), tcp).await.expect("websocket connects");
    Client::over(socket).established().await
}

/// A server whose main app takes events of `bytes` of data.
async fn server_for_events_of(bytes: usize) -> TestServer {
    TestServer::with_config(|config| {
        let main = config.apps.iter_mut().find(|app| app.id == "main").expect("main app");
        main.limits.max_event_data_bytes = bytes + 100;
        main.limits.max_http_body_bytes = 2 * bytes;
    })
    .await
}

/// Broadcasts go straight from the publisher into an idle subscriber's socket; once a client
/// stops reading, its socket fills mid-frame and the session finishes that frame and writes the
/// rest. Every subscriber, the one that stalled and one that kept reading, gets every event
/// whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_gets_every_event_whole_and_in_order() {
    // 12 MB in all: more than the server's send buffer (at most 4 MB here) and the client's
    // receive buffer take while the client does not read.
    const EVENTS: usize = 24;
    const BYTES: usize = 500_000;
    let server = server_for_events_of(BYTES).await;
    let mut stalled = small_buffer_client(&server).await;
    stalled.subscribe("flood").await;
    let mut reader = server.client().await;
    reader.subscribe("flood").await;
    let reading = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(EVENTS);
        while seen.len() < EVENTS {
            let frame = reader.recv_event("flood").await;
            seen.push(frame["data"].as_str().map(str::to_owned));
        }
        seen
    });
    let data = |n: usize| format!("{n:05}{}", "x".repeat(BYTES));
    for n in 0..EVENTS {
        let (status, body) = server.trigger(&["flood"], "flood", &data(n)).await;
        assert_eq!(status, 200, "{body}");
    }
    let expected: Vec<Option<String>> = (0..EVENTS).map(|n| Some(data(n))).collect();
    let read = tokio::time::timeout(Duration::from_secs(30), reading).await.expect("reader done in time");
    assert!(read.expect("reader") == expected, "the reading subscriber's events differ");
    for (n, want) in expected.iter().enumerate() {
        let frame = stalled.recv_event("flood").await;
        assert!(frame["data"].as_str() == want.as_deref(), "the stalled subscriber's event {n} differs");
    }
}

/// The same on a channel large enough to be written by the fan-out's drain tasks (more than 32
/// subscribers): 40 subscribers that all stop reading, their sockets filling mid-frame, then all
/// read and get every event whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_large_channel_that_stop_reading_get_every_event_whole_and_in_order() {
    const SUBSCRIBERS: usize = 40;
    const EVENTS: usize = 12;
    const BYTES: usize = 500_000;
    let server = server_for_events_of(BYTES).await;
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = small_buffer_client(&server).await;
        client.subscribe("large").await;
        clients.push(client);
    }
    let data = |n: usize| format!("{n:05}{}", "x".repeat(BYTES));
    for n in 0..EVENTS {
        let (status, body) = server.trigger(&["large"], "e", &data(n)).await;
        assert_eq!(status, 200, "{body}");
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for n in 0..EVENTS {
                    let frame = client.recv_event("e").await;
                    assert!(frame["data"].as_str() == Some(&data(n)), "event {n} differs");
                }
            })
        })
        .collect();
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(60), reader).await.expect("read in time").expect("reader");
    }
}
