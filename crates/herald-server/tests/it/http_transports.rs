//! pusher-js's HTTP fallback transports (`xhr_streaming`, `xhr_polling`) with a real HTTP client
//! speaking their SockJS-style lines: the same hello, subscriptions, refusals and close codes as a
//! WebSocket, and bad input (unknown sessions, bad ids, oversized, malformed and slow bodies)
//! answered with clear errors that change nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestServer, WAIT};

const QUERY: &str = "protocol=7&client=js&version=8.6.0";

/// One HTTP session as pusher-js makes it: `/pusher/app/{key}/{server}/{session}/…`.
struct Session<'a> {
    server: &'a TestServer,
    base: String,
}

/// An open `xhr_streaming` response, read line by line.
struct Stream {
    response: reqwest::Response,
    buffered: String,
}

impl Stream {
    /// The next line (without its `\n`); `None` when the response ended.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffered.find('\n') {
                let line = self.buffered[..at].to_owned();
                self.buffered.drain(..=at);
                return Some(line);
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("a line in time");
            match chunk.expect("stream read") {
                Some(bytes) => self.buffered.push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                None => return None,
            }
        }
    }

    /// The Pusher messages of the next `a` line, skipping heartbeats.
    async fn messages(&mut self) -> Vec<Value> {
        loop {
            let line = self.line().await.expect("an a line");
            if line == "h" || line == "o" {
                continue;
            }
            return batch(&line);
        }
    }

    /// Reads messages until one is `event`.
    async fn event(&mut self, event: &str) -> Value {
        loop {
            for message in self.messages().await {
                if message["event"] == event {
                    return message;
                }
            }
        }
    }
}

/// The Pusher messages of an `a[…]` line.
fn batch(line: &str) -> Vec<Value> {
    let array = line.strip_prefix('a').unwrap_or_else(|| panic!("an a line, got {line:?}"));
    let strings: Vec<String> = serde_json::from_str(array).expect("a JSON array of strings");
    strings.iter().map(|message| serde_json::from_str(message).expect("a Pusher message")).collect()
}

/// The code and reason of a `c[…]` line.
fn close(line: &str) -> (u16, String) {
    let array = line.strip_prefix('c').unwrap_or_else(|| panic!("a c line, got {line:?}"));
    let (code, reason): (u16, String) = serde_json::from_str(array).expect("[code, reason]");
    (code, reason)
}

impl<'a> Session<'a> {
    fn new(server: &'a TestServer, key: &str) -> Session<'a> {
        let session = format!("{:08x}", fastrand::u32(..));
        Session {
            server,
            base: format!("http://{}/pusher/app/{key}/{}/{session}", server.address, fastrand::u16(..1000)),
        }
    }

    async fn post(&self, what: &str, body: Option<String>, origin: Option<&str>) -> reqwest::Response {
        let mut request = self.server.http().post(format!("{}/{what}?{QUERY}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send().await.expect("request sent")
    }

    async fn stream(&self) -> Stream {
        self.stream_from(None).await
    }

    async fn stream_from(&self, origin: Option<&str>) -> Stream {
        let response = self.post("xhr_streaming", None, origin).await;
        assert_eq!(response.status(), 200);
        Stream { response, buffered: String::new() }
    }

    /// One poll: its whole body.
    async fn poll(&self) -> String {
        let response = tokio::time::timeout(WAIT, self.post("xhr", None, None)).await.expect("poll answered");
        assert_eq!(response.status(), 200);
        response.text().await.expect("poll body")
    }

    /// `xhr_send` with a raw body: status and JSON answer.
    async fn send_raw(&self, body: &str) -> (u16, Value) {
        let response = self.post("xhr_send", Some(body.to_owned()), None).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `xhr_send` of Pusher messages, as pusher-js posts them.
    async fn send(&self, messages: &[Value]) {
        let strings: Vec<String> = messages.iter().map(Value::to_string).collect();
        let (status, body) = self.send_raw(&serde_json::to_string(&strings).expect("json")).await;
        assert_eq!(status, 204, "{body}");
    }
}

fn subscribe(channel: &str) -> Value {
    json!({ "event": "pusher:subscribe", "data": { "channel": channel } })
}

fn connections(server: &TestServer) -> usize {
    server.state.tenants().by_id("main").expect("main").hub.connections()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_streaming_says_hello_subscribes_receives_and_is_counted() {
    let server = TestServer::start().await;
    let session = Session::new(&server, "main-key");
    let mut stream = session.stream().await;
    assert_eq!(stream.line().await.as_deref(), Some("o"));
    let hello = stream.event("pusher:connection_established").await;
    let data: Value = serde_json::from_str(hello["data"].as_str().expect("data")).expect("json");
    assert!(data["socket_id"].as_str().is_some_and(|id| id.contains('.')), "{data}");

    session.send(&[subscribe("orders")]).await;
    let succeeded = stream.event("pusher_internal:subscription_succeeded").await;
    assert_eq!(succeeded["channel"], "orders");
    let (status, _) = server.trigger(&["orders"], "shipped", r#"{"id":1}"#).await;
    assert_eq!(status, 200);
    let event = stream.event("shipped").await;
    assert_eq!(event, json!({ "event": "shipped", "channel": "orders", "data": r#"{"id":1}"# }));

    // A ping from the client is answered as on a WebSocket; `[]` (pusher-js's heartbeat) is not.
    session.send(&[json!({ "event": "pusher:ping", "data": {} })]).await;
    stream.event("pusher:pong").await;
    let (status, _) = session.send_raw("[]").await;
    assert_eq!(status, 204);

    let main = server.state.tenants().by_id("main").expect("main").clone();
    let counts = server.state.transports(&main);
    assert_eq!((counts.ws, counts.xhr_streaming, counts.xhr_polling), (0, 1, 0));
    let metrics = server.http().get(format!("http://{}/metrics", server.admin_address)).send().await;
    let metrics = metrics.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains(r#"herald_transport_connections{app="main",transport="xhr_streaming"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_polling_answers_each_poll_with_what_waits() {
    let server = TestServer::start().await;
    let session = Session::new(&server, "main-key");
    assert_eq!(session.poll().await, "o\n", "the first poll opens the session");
    let hello = session.poll().await;
    assert_eq!(batch(hello.trim_end())[0]["event"], "pusher:connection_established");
    session.send(&[subscribe("orders")]).await;
    let reply = session.poll().await;
    assert_eq!(batch(reply.trim_end())[0]["event"], "pusher_internal:subscription_succeeded");
    // A poll waits for the next frame.
    let poll = tokio::spawn({
        let url = format!("{}/xhr?{QUERY}", session.base);
        let http = server.http().clone();
        async move { http.post(url).send().await.expect("poll").text().await.expect("body") }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = server.trigger(&["orders"], "shipped", "{}").await;
    assert_eq!(status, 200);
    let answered = tokio::time::timeout(WAIT, poll).await.expect("in time").expect("joins");
    assert_eq!(batch(answered.trim_end())[0]["event"], "shipped");
    let main = server.state.tenants().by_id("main").expect("main").clone();
    assert_eq!(server.state.transports(&main).xhr_polling, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_websocket_close_codes_as_lines() {
    let server = TestServer::start().await;
    for (key, origin, code) in [
        ("nope-key", None, 4001),
        ("disabled-key", None, 4003),
        ("origin-key", Some("https://evil.example"), 4009),
    ] {
        let mut stream = Session::new(&server, key).stream_from(origin).await;
        assert_eq!(stream.line().await.as_deref(), Some("o"));
        let error = stream.event("pusher:error").await;
        assert_eq!(error["data"]["code"], code, "{error}");
        let (closed, _) = close(&stream.line().await.expect("a close line"));
        assert_eq!(closed, code);
        assert_eq!(stream.line().await, None, "the response ends after the close");
    }
    // Without a protocol version: 4008, as on a WebSocket.
    let session = Session::new(&server, "main-key");
    let url = format!("{}/xhr", session.base);
    let poll = || async { server.http().post(&url).send().await.expect("poll").text().await.expect("body") };
    assert_eq!(poll().await, "o\n");
    let body = poll().await;
    assert!(body.contains("\\\"code\\\":4008"), "{body}");
    assert!(body.ends_with("c[4008,\"no protocol version supplied\"]\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_connection_quota_counts_http_sessions_too() {
    let server = TestServer::start().await;
    let mut first = Session::new(&server, "quota-key").stream().await;
    first.event("pusher:connection_established").await;
    let mut second = Session::new(&server, "quota-key").stream().await;
    let error = second.event("pusher:error").await;
    assert_eq!(error["data"]["code"], 4004);
    assert_eq!(close(&second.line().await.expect("close")).0, 4004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_xhr_send_requests_get_clear_errors_and_deliver_nothing() {
    let server = TestServer::start().await;
    let session = Session::new(&server, "main-key");
    let mut stream = session.stream().await;
    stream.event("pusher:connection_established").await;

    // An unknown session: 404 JSON, so pusher-js reconnects.
    let unknown = Session::new(&server, "main-key");
    let (status, body) = unknown.send_raw(r#"["{}"]"#).await;
    assert_eq!((status, body), (404, json!({ "error": "no such session" })));
    // Path segments pusher-js never makes.
    let url = format!("http://{}/pusher/app/main-key/1/bad%20id/xhr_send", server.address);
    let response = server.http().post(url).body("[]").send().await.expect("sent");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["field"], "session", "{body}");

    // Malformed bodies: 400 naming the problem, and the valid message beside it is not delivered.
    let valid = subscribe("never").to_string();
    for malformed in [
        format!("[{}, 5]", serde_json::to_string(&valid).expect("json")),
        "{\"event\":\"pusher:ping\"}".to_owned(),
        "[\"unterminated".to_owned(),
    ] {
        let (status, body) = session.send_raw(&malformed).await;
        assert_eq!(status, 400, "{malformed}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|error| error.contains("JSON array of strings")),
            "{body}"
        );
    }
    // A message over the WebSocket message limit: 413 naming the limit; the body limit likewise.
    let big =
        json!({ "event": "client-x", "channel": "private-a", "data": "x".repeat(70 * 1024) }).to_string();
    let (status, body) = session.send_raw(&serde_json::to_string(&[big]).expect("json")).await;
    assert_eq!((status, body), (413, json!({ "error": "message is larger than 65536 bytes" })));
    let huge = serde_json::to_string(&vec!["y".repeat(60 * 1024); 5]).expect("json");
    let (status, body) = session.send_raw(&huge).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("262144 bytes")), "{body}");

    // Nothing of the refused requests reached the session: the next reply is the ping's.
    session.send(&[json!({ "event": "pusher:ping", "data": {} })]).await;
    let messages = stream.messages().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["event"], "pusher:pong");
    let main = server.state.tenants().by_id("main").expect("main").clone();
    assert_eq!(main.hub.stats().subscriptions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_xhr_send_body_gets_408() {
    let server = TestServer::with_config(|config| config.server.body_timeout_secs = 1).await;
    let session = Session::new(&server, "main-key");
    let mut stream = session.stream().await;
    stream.event("pusher:connection_established").await;
    let path = session.base.split_once(&server.address.to_string()).expect("path").1.to_owned();
    let mut tcp = TcpStream::connect(server.address).await.expect("connects");
    let head = format!(
        "POST {path}/xhr_send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n[\"{{"
    );
    tcp.write_all(head.as_bytes()).await.expect("sent");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_nobody_receives_ends_and_leaves_its_channels() {
    let server = TestServer::with_config(|config| config.server.activity_timeout_secs = 1).await;
    let session = Session::new(&server, "main-key");
    let mut stream = session.stream().await;
    stream.event("pusher:connection_established").await;
    session.send(&[subscribe("orders")]).await;
    stream.event("pusher_internal:subscription_succeeded").await;
    assert_eq!(connections(&server), 1);
    // The client goes away (pusher-js only aborts its request): the session ends soon after.
    drop(stream);
    let started = Instant::now();
    until("the session to end", || connections(&server) == 0).await;
    assert!(started.elapsed() >= Duration::from_millis(500), "ended after {:?}", started.elapsed());
    let main = server.state.tenants().by_id("main").expect("main").clone();
    assert_eq!(main.hub.stats().subscriptions, 0);
    // Then its id is unknown to xhr_send.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, _) = session.send_raw("[]").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_receive_is_a_slow_consumer() {
    let server = TestServer::with_config(|config| {
        config.server.outbox_capacity = 16;
        config.server.activity_timeout_secs = 30;
    })
    .await;
    let session = Session::new(&server, "main-key");
    assert_eq!(session.poll().await, "o\n");
    session.send(&[subscribe("firehose")]).await;
    // No receive request open: the pipe's queue fills, then the outbox (4100).
    let main = server.state.tenants().by_id("main").expect("main").clone();
    until("the subscription", || main.hub.stats().subscriptions == 1).await;
    for n in 0..200 {
        let (status, _) = server.trigger(&["firehose"], "tick", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(status, 200);
        if connections(&server) == 0 {
            break;
        }
    }
    until("the slow consumer to be closed", || connections(&server) == 0).await;
    let body = session.poll().await;
    let last = body.trim_end().lines().last().expect("lines");
    assert_eq!(close(last).0, 4100, "{body}");
    assert!(body.lines().filter(|line| line.starts_with('a')).count() >= 1, "what was queued is delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_an_open_stream_with_4200() {
    let mut server = TestServer::start().await;
    let session = Session::new(&server, "main-key");
    let mut stream = session.stream().await;
    stream.event("pusher:connection_established").await;
    let closing = tokio::spawn(async move {
        loop {
            match stream.line().await {
                Some(line) if line.starts_with('c') => return close(&line).0,
                Some(_) => continue,
                None => return 0,
            }
        }
    });
    server.shutdown().await;
    assert_eq!(closing.await.expect("joins"), 4200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_follows_the_apps_allowed_origins() {
    let server = TestServer::start().await;
    let preflight = |key: &str, origin: &str| {
        let url = format!("http://{}/pusher/app/{key}/1/abcdefgh/xhr_send", server.address);
        server
            .http()
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("origin-key", "https://good.example").await.expect("answered");
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://good.example");
    assert!(allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .contains("Content-Type"));
    let refused = preflight("origin-key", "https://evil.example").await.expect("answered");
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    // A receive request from an allowed page can be read by it.
    let session = Session::new(&server, "origin-key");
    let stream = session.stream_from(Some("https://good.example")).await;
    assert_eq!(stream.response.headers()["access-control-allow-origin"], "https://good.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_takes_a_place_under_the_listener_cap() {
    // Three places: the first session holds one, and its stream's TCP connection another.
    let server = TestServer::with_config(|config| config.server.max_connections = 3).await;
    let mut first = Session::new(&server, "main-key").stream().await;
    first.event("pusher:connection_established").await;
    // The second request's connection takes the third place; its session finds none left.
    let second = Session::new(&server, "main-key");
    let response = second.post("xhr_streaming", None, None).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({ "error": "too many connections; retry later" }));
    assert_eq!(connections(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_send_from_an_origin_the_app_refuses_is_403_and_delivers_nothing() {
    let server = TestServer::start().await;
    let session = Session::new(&server, "origin-key");
    let mut stream = session.stream_from(Some("https://good.example")).await;
    stream.event("pusher:connection_established").await;
    let subscribe = serde_json::to_string(&[subscribe("orders").to_string()]).expect("json");
    let response = session.post("xhr_send", Some(subscribe), Some("https://evil.example")).await;
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let origin = server.state.tenants().by_id("origin").expect("origin app").clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(origin.hub.stats().subscriptions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_session_hears_other_nodes_and_lives_on_its_own_node_only() {
    let Some((a, b)) = crate::cluster::two_nodes_with(|_| {}).await else { return };
    let session = Session::new(&b, "main-key");
    let mut stream = session.stream().await;
    stream.event("pusher:connection_established").await;
    session.send(&[subscribe("news")]).await;
    stream.event("pusher_internal:subscription_succeeded").await;
    // Cluster-wide: a trigger on node A reaches the session on node B.
    let (status, _) = a.trigger(&["news"], "flash", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(stream.event("flash").await["channel"], "news");
    // Its requests must reach node B (sticky sessions): on node A the session does not exist.
    let elsewhere =
        Session { server: &a, base: session.base.replace(&b.address.to_string(), &a.address.to_string()) };
    let (status, body) = elsewhere.send_raw("[]").await;
    assert_eq!((status, body), (404, json!({ "error": "no such session" })));
}
