//! The admin dashboard: the page and its policy, the login cookie, the Server-Sent Events stream
//! (status, deliveries, shutdown), the test broadcast and dead-letter retries.

use std::sync::atomic::Ordering;

use herald_server::config::DriverName;
use serde_json::{json, Value};

use crate::harness::{TestServer, JWT_SECRET, WAIT};
use crate::upstream::{upstream, Upstream};

/// A client that neither follows redirects nor keeps cookies: every step is explicit.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn admin_url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.admin_address)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

async fn get_with_cookie(server: &TestServer, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = browser().get(admin_url(server, path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("answered");
    (response.status().as_u16(), response.text().await.expect("body"))
}

async fn post_json(server: &TestServer, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = browser().post(admin_url(server, path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads a `text/event-stream` response event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    data: String,
    retry: Option<String>,
}

impl EventStream {
    async fn open(server: &TestServer) -> EventStream {
        let response = browser().get(admin_url(server, "/admin/api/stream")).send().await.expect("answered");
        assert_eq!(response.status(), 200);
        assert!(header(&response, "content-type").starts_with("text/event-stream"));
        EventStream { response, buffer: String::new() }
    }

    /// The next event (comments skipped); `None` when the stream ends.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        event.event = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        event.data.push_str(value);
                    } else if let Some(value) = line.strip_prefix("retry: ") {
                        event.retry = Some(value.to_owned());
                    }
                }
                if event.event.is_empty() && event.data.is_empty() {
                    continue;
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("the stream sends something in time")
                .expect("the stream is readable")?;
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// Reads until an event named `name` whose data satisfies `matches`.
    async fn until(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no matching {name} event in time");
            let event = self.next().await.expect("the stream is still open");
            if event.event == name {
                let data: Value = serde_json::from_str(&event.data).expect("json data");
                if matches(&data) {
                    return data;
                }
            }
        }
    }
}

const ALERT: &str = r#"{"id": "dash-1", "type": "security.alert", "data": {"alert_type": "x", "message": "m", "severity": "low"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_content_security_policy() {
    let server = TestServer::start().await;
    let response = browser().get(admin_url(&server, "/dashboard")).send().await.expect("answered");
    assert_eq!(response.status(), 200, "a loopback listener without a token is open");
    assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
    let policy = header(&response, "content-security-policy");
    for directive in
        ["default-src 'self'", "connect-src 'self'", "script-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(policy.contains(directive), "{directive} missing from {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let page = response.text().await.expect("body");
    assert!(page.contains(r#"<script type="module" src="/dashboard/app.js"></script>"#));
    assert!(!page.contains("Sign out"), "nothing to sign out of without a token");
    for (path, content_type, needle) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8", "new EventSource"),
        ("/dashboard/style.css", "text/css; charset=utf-8", ".pill"),
        ("/dashboard/icon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = browser().get(admin_url(&server, path)).send().await.expect("answered");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert!(response.text().await.expect("body").contains(needle), "{path}");
    }
    let (status, _) = get_with_cookie(&server, "/dashboard", None).await;
    assert_eq!(status, 200);
    let main = reqwest::get(format!("http://{}/dashboard", server.address)).await.expect("answered");
    assert_eq!(main.status(), 404, "the dashboard is on the admin listener only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_an_http_only_cookie_that_opens_the_dashboard_and_the_api() {
    let server = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let (status, form) = get_with_cookie(&server, "/dashboard", None).await;
    assert_eq!(status, 401);
    assert!(form.contains(r#"name="token""#) && form.contains(r#"action="/dashboard/login""#), "{form}");
    assert_eq!(get_with_cookie(&server, "/admin/api/status", None).await.0, 401);
    assert_eq!(get_with_cookie(&server, "/admin/api/stream", None).await.0, 401);
    assert_eq!(get_with_cookie(&server, "/dashboard/app.js", None).await.0, 401);
    assert_eq!(get_with_cookie(&server, "/dashboard/style.css", None).await.0, 200, "the login form's");

    let login = |token: &str| {
        browser().post(admin_url(&server, "/dashboard/login")).form(&[("token", token.to_owned())]).send()
    };
    let wrong = login("wrong").await.expect("answered");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.expect("body").contains("That token is not valid."));

    let right = login("s3cret-admin").await.expect("answered");
    assert_eq!(right.status(), 303);
    assert_eq!(header(&right, "location"), "/dashboard");
    let set_cookies: Vec<String> = right
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(set_cookies.len(), 2, "one cookie per admin path: {set_cookies:?}");
    for (set_cookie, path) in set_cookies.iter().zip(["/dashboard", "/admin"]) {
        assert!(set_cookie.starts_with("herald_admin_session="), "{set_cookie}");
        assert!(!set_cookie.contains("s3cret-admin"), "the cookie never holds the token: {set_cookie}");
        for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", &format!("Path={path};")] {
            assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
        }
        assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    }
    let cookie = set_cookies[0].split(';').next().expect("pair").to_owned();
    assert_eq!(cookie.len(), "herald_admin_session=".len() + 64, "{cookie}");

    let (status, page) = get_with_cookie(&server, "/dashboard", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(page.contains("Sign out"));
    let (status, body) = get_with_cookie(&server, "/admin/api/status", Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_with_cookie(&server, "/dashboard/app.js", Some(&cookie)).await.0, 200);
    let (status, form) = get_with_cookie(&server, "/dashboard", Some("herald_admin_session=stale")).await;
    assert_eq!(status, 401);
    assert!(form.contains("Your session has ended"));
    let (status, _) =
        get_with_cookie(&server, "/admin/api/status", Some("herald_admin_session=s3cret-admin")).await;
    assert_eq!(status, 401, "the token is not a session id");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let proxied = browser()
        .post(admin_url(&server, "/dashboard/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", "s3cret-admin")])
        .send()
        .await
        .expect("answered");
    assert!(header(&proxied, "set-cookie").contains("; Secure"));

    // A platform bearer token with the super_admin role is refused: the admin token is the only credential.
    let admin =
        herald_auth::mint_hs256(JWT_SECRET, "7", None, &["super_admin".into()], None, 600).expect("token");
    assert_eq!(login(&admin).await.expect("answered").status(), 401);

    let cross_site = browser()
        .post(admin_url(&server, "/dashboard/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", "s3cret-admin")])
        .send()
        .await
        .expect("answered");
    assert_eq!(cross_site.status(), 403);

    let logout = browser()
        .post(admin_url(&server, "/dashboard/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answered");
    assert_eq!(logout.status(), 303);
    assert!(header(&logout, "set-cookie").contains("Max-Age=0"));
    let (status, _) = get_with_cookie(&server, "/admin/api/status", Some(&cookie)).await;
    assert_eq!(status, 401, "sign-out revokes the session on the server, not only in the browser");
    let (status, form) = get_with_cookie(&server, "/dashboard", Some(&cookie)).await;
    assert_eq!(status, 401);
    assert!(form.contains("Your session has ended"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_jwt_a_super_admin_token_signs_in_to_the_dashboard() {
    let server = TestServer::with_config(|config| config.admin.allow_jwt = true).await;
    assert_eq!(get_with_cookie(&server, "/dashboard", None).await.0, 401, "the login form");
    let admin =
        herald_auth::mint_hs256(JWT_SECRET, "7", None, &["super_admin".into()], None, 600).expect("token");
    let response = browser()
        .post(admin_url(&server, "/dashboard/login"))
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 303);
    let cookie = header(&response, "set-cookie").split(';').next().expect("pair").to_owned();
    assert!(!cookie.contains(&admin));
    assert_eq!(get_with_cookie(&server, "/admin/api/status", Some(&cookie)).await.0, 200);
    let user = herald_auth::mint_hs256(JWT_SECRET, "8", None, &["donor".into()], None, 600).expect("token");
    let response = browser()
        .post(admin_url(&server, "/dashboard/login"))
        .form(&[("token", user.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401, "other roles are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_status_every_second_and_each_delivery() {
    let server = TestServer::start().await;
    let mut stream = EventStream::open(&server).await;
    let first = stream.next().await.expect("a first event");
    assert_eq!(first.event, "status");
    assert_eq!(first.retry.as_deref(), Some("2000"), "browsers reconnect after 2 s");
    let status: Value = serde_json::from_str(&first.data).expect("json");
    assert_eq!(status["apps"][0]["id"], "main");
    assert_eq!(status["driver"], "herald");

    let (code, body) = server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    assert_eq!(code, 202, "{body}");
    let delivered = stream.until("broadcast", |item| item["event_id"] == "dash-1").await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert_eq!(delivered["type"], "security.alert");
    assert_eq!(delivered["lane"], "broadcasts");
    assert!(delivered["latency_ms"].is_i64(), "{delivered}");
    assert!(delivered["seq"].is_i64() && delivered["broadcast_id"].is_string(), "{delivered}");
    let channels = delivered["channels"].as_array().expect("channels");
    assert!(
        channels.iter().any(|channel| channel == "private-security-alerts"),
        "wire channel names: {delivered}"
    );
    // The status keeps coming and counts the delivery.
    stream.until("status", |status| status["delivery"]["delivered"]["broadcasts"].as_u64() == Some(1)).await;

    // A page that reconnects first gets what it missed.
    let mut again = EventStream::open(&server).await;
    let caught_up = again.until("broadcast", |item| item["event_id"] == "dash-1").await;
    assert_eq!(caught_up["seq"], delivered["seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_when_the_server_shuts_down() {
    let mut server = TestServer::start().await;
    let mut stream = EventStream::open(&server).await;
    assert_eq!(stream.next().await.expect("status").event, "status");
    // Shutdown finishes only if the stream ends (graceful shutdown waits for open responses).
    server.shutdown().await;
    while let Some(event) = stream.next().await {
        assert_eq!(event.event, "status", "only status before the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_broadcast_sends_a_sample_through_the_pipeline() {
    let server = TestServer::start().await;
    let mut stream = EventStream::open(&server).await;
    let (status, body) = post_json(&server, "/admin/api/test-broadcast", None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["event"]["type"], "security.alert", "security is the default");
    assert_eq!(body["event"]["status"], "accepted");
    assert_eq!(body["event"]["broadcasts_queued"], 1);
    let id = body["event"]["id"].as_str().expect("id").to_owned();
    let delivered = stream.until("broadcast", |item| item["event_id"] == id.as_str()).await;
    assert_eq!(delivered["status"], "delivered");

    for kind in ["maintenance", "donation", "milestone", "approval", "payment", "compliance"] {
        let (status, body) =
            post_json(&server, "/admin/api/test-broadcast", Some(json!({ "type": kind }))).await;
        assert_eq!(status, 202, "{kind}: {body}");
        assert_eq!(body["event"]["status"], "accepted", "{kind}: {body}");
    }
    let (status, body) =
        post_json(&server, "/admin/api/test-broadcast", Some(json!({ "type": "nope" }))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "type");

    let locked = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    assert_eq!(post_json(&locked, "/admin/api/test-broadcast", None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_and_retried_from_the_dashboard() {
    let Upstream { port, calls } = upstream(1, 400).await;
    let server = TestServer::with_config(|config| {
        config.notifications.driver = DriverName::Pusher;
        config.notifications.upstream.host = "127.0.0.1".into();
        config.notifications.upstream.port = port;
        config.notifications.upstream.scheme = "http".into();
    })
    .await;
    let mut stream = EventStream::open(&server).await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    let dead = stream.until("broadcast", |item| item["event_id"] == "dash-1").await;
    assert_eq!(dead["status"], "dead_lettered", "a 400 is final: {dead}");
    assert!(dead["error"].as_str().expect("error").contains("400"), "{dead}");
    stream.until("status", |status| status["dead_letters"] == 1).await;

    let (status, list) = get_with_cookie(&server, "/admin/api/dead-letters", None).await;
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list["total"], 1);
    let letter = &list["dead_letters"][0];
    assert_eq!(letter["event_id"], "dash-1");
    assert_eq!(letter["channels"][0], "private-security-alerts");
    let broadcast_id = letter["broadcast_id"].as_str().expect("id").to_owned();

    let retry = format!("/admin/api/dead-letters/{broadcast_id}/retry");
    let (status, body) = post_json(&server, &retry, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 1);
    let delivered =
        stream.until("broadcast", |item| item["event_id"] == "dash-1" && item["status"] == "delivered").await;
    assert_eq!(delivered["broadcast_id"], broadcast_id.as_str());
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (_, list) = get_with_cookie(&server, "/admin/api/dead-letters", None).await;
    assert_eq!(serde_json::from_str::<Value>(&list).expect("json")["total"], 0);
    assert_eq!(post_json(&server, &retry, None).await.0, 404, "already retried");
    assert_eq!(post_json(&server, "/admin/api/dead-letters/unknown/retry", None).await.0, 404);
    let (status, _) = get_with_cookie(&server, "/admin/api/dead-letters?limit=0", None).await;
    assert_eq!(status, 400);
}
