//! The admin listener: Prometheus metrics, readiness with the database, the status API and its token.

use serde_json::{json, Value};

use crate::harness::TestServer;

async fn get(url: String, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("answered");
    (response.status().as_u16(), response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_connections_deliveries_queues_and_http() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    server.trigger(&["news"], "e", "{}").await;
    client.recv().await;
    server.ingest(&json!({ "id": "m1", "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": "low" } })).await;
    let (status, text) = get(format!("http://{}/metrics", server.admin_address), None).await;
    assert_eq!(status, 200);
    for needle in [
        "herald_connections{app=\"main\"} 1",
        "herald_subscriptions{app=\"main\"} 1",
        "herald_channels{app=\"main\",kind=\"public\"} 1",
        "herald_messages_out_total{app=\"main\"}",
        "herald_domain_events_total{status=\"accepted\"} 1",
        "herald_queue_depth{lane=\"critical-broadcasts\"}",
        "herald_dead_letters 0",
        "herald_database_up 1",
        "herald_http_requests_total{route=\"/apps/{app_id}/events\",status=\"200\"} 1",
        "herald_http_request_duration_seconds_bucket{route=\"/apps/{app_id}/events\",le=\"+Inf\"} 1",
        "# TYPE herald_broadcasts_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("news"), "no channel names in labels");
    // The accepted alert (severity low: the broadcasts lane) is counted once delivered.
    let delivered = "herald_broadcasts_total{lane=\"broadcasts\",outcome=\"delivered\"} 1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, text) = get(format!("http://{}/metrics", server.admin_address), None).await;
        if text.contains(delivered) {
            assert!(
                text.contains(
                    "herald_broadcasts_total{lane=\"critical-broadcasts\",outcome=\"delivered\"} 0"
                ),
                "{text}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "missing {delivered} in\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_reports_503_when_the_database_is_down() {
    let server = TestServer::start().await;
    let (status, _) = get(format!("http://{}/up", server.address), None).await;
    assert_eq!(status, 200);
    server.state.records().close().await;
    let (status, body) = get(format!("http://{}/up", server.address), None).await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = get(format!("http://{}/up", server.admin_address), None).await;
    assert_eq!(status, 503);
    let (status, _) = get(format!("http://{}/live", server.address), None).await;
    assert_eq!(status, 200, "the process is still alive");
    let (_, metrics) = get(format!("http://{}/metrics", server.admin_address), None).await;
    assert!(metrics.contains("herald_database_up 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_the_admin_token_when_one_is_set() {
    let server = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let url = format!("http://{}/admin/api/status?check_deps=true", server.admin_address);
    assert_eq!(get(url.clone(), None).await.0, 401);
    assert_eq!(get(url.clone(), Some("wrong")).await.0, 401);
    let (status, body) = get(url, Some("s3cret-admin")).await;
    assert_eq!(status, 200, "{body}");
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["driver"], "herald");
    let backend = match crate::harness::backend() {
        crate::harness::Backend::Sqlite => "sqlite",
        crate::harness::Backend::Postgres => "postgres",
    };
    assert_eq!(status["database"]["backend"], backend);
    assert_eq!(status["deps"]["database"]["ok"], true);
    assert_eq!(status["apps"][0]["id"], "main");
    assert_eq!(status["queue"]["critical-broadcasts"]["pending"], 0);
    assert_eq!(status["dead_letters"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_open_on_a_loopback_listener_without_a_token() {
    let server = TestServer::start().await;
    let (status, _) = get(format!("http://{}/admin/api/status", server.admin_address), None).await;
    assert_eq!(status, 200);
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let error = herald_server::Config::from_toml("[admin]\nhost = \"0.0.0.0\"\n").expect_err("refused");
    assert!(error.problems[0].starts_with("admin.token: required"), "{:?}", error.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_rates_over_the_last_minute() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    for _ in 0..3 {
        server.trigger(&["news"], "e", "{}").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (_, body) = get(format!("http://{}/admin/api/status", server.admin_address), None).await;
    let status: Value = serde_json::from_str(&body).expect("json");
    assert!(status["rates"]["window_secs"].as_f64().expect("window") >= 1.0, "{}", status["rates"]);
    assert!(status["rates"]["messages_out"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_admin_jwt_does_not_bypass_the_admin_token() {
    let server = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let jwt =
        herald_auth::mint_hs256(crate::harness::JWT_SECRET, "1", None, &["super_admin".into()], None, 600)
            .expect("token");
    for path in ["/admin/api/status", "/admin/api/dead-letters", "/dashboard/app.js"] {
        let (status, body) = get(format!("http://{}{path}", server.admin_address), Some(&jwt)).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _) =
        get(format!("http://{}/admin/api/status", server.admin_address), Some("s3cret-admin")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_jwt_a_super_admin_jwt_is_the_admin_credential() {
    let server = TestServer::with_config(|config| config.admin.allow_jwt = true).await;
    let mint = |roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        herald_auth::mint_hs256(crate::harness::JWT_SECRET, "1", None, &roles, None, 600).expect("token")
    };
    let url = format!("http://{}/admin/api/status", server.admin_address);
    assert_eq!(get(url.clone(), None).await.0, 401, "no longer open once a credential is configured");
    assert_eq!(get(url.clone(), Some(&mint(&["super_admin"]))).await.0, 200);
    assert_eq!(get(url, Some(&mint(&["csr_admin"]))).await.0, 401);
}

#[test]
fn allow_jwt_cannot_be_combined_with_an_admin_token() {
    let error =
        herald_server::Config::from_toml("[admin]\ntoken = \"t\"\nallow_jwt = true\n").expect_err("refused");
    assert!(error.problems[0].starts_with("admin.allow_jwt: cannot be combined"), "{:?}", error.problems);
    herald_server::Config::from_toml("[admin]\nhost = \"0.0.0.0\"\nallow_jwt = true\n")
        .expect("a JWT-protected admin listener may be public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_header_is_refused_on_every_admin_route_but_the_probes() {
    let server = TestServer::start().await;
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let base = format!("http://{}", server.admin_address);
    let rebind = "rebind.attacker.example";
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/admin/api/status"),
        ("GET", "/admin/api/dead-letters"),
        ("GET", "/dashboard"),
        ("GET", "/admin/api/stream"),
        ("POST", "/admin/api/test-broadcast"),
        ("POST", "/dashboard/login"),
    ] {
        let request = client
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .header("host", format!("{rebind}:{}", server.admin_address.port()))
            .header("origin", format!("http://{rebind}:{}", server.admin_address.port()));
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), 421, "{method} {path}");
        let body: Value = response.json().await.expect("json");
        assert!(body["error"].as_str().expect("error").contains("admin.allowed_hosts"), "{body}");
    }
    for path in ["/up", "/live"] {
        let response =
            client.get(format!("{base}{path}")).header("host", rebind).send().await.expect("answered");
        assert_eq!(response.status(), 200, "{path} stays open to probes");
    }
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let response = client
            .get(format!("{base}/admin/api/status"))
            .header("host", format!("{host}:{}", server.admin_address.port()))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{host}");
    }
    let listed = TestServer::with_config(|config| config.admin.allowed_hosts = vec![rebind.into()]).await;
    let response = client
        .get(format!("http://{}/admin/api/status", listed.admin_address))
        .header("host", rebind)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "admin.allowed_hosts adds names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_throttled_per_address() {
    let server = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let url = format!("http://{}/admin/api/status", server.admin_address);
    for attempt in 0..5 {
        assert_eq!(get(url.clone(), Some(&format!("guess-{attempt}"))).await.0, 401);
    }
    let response = reqwest::Client::new().get(&url).bearer_auth("guess-5").send().await.expect("answered");
    assert_eq!(response.status(), 429);
    let retry_after: u64 =
        response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("too many failed admin sign-ins"), "{body}");
    assert_eq!(get(url.clone(), Some("s3cret-admin")).await.0, 429, "even the right token waits");
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("http://{}/dashboard/login", server.admin_address))
        .form(&[("token", "s3cret-admin")])
        .send()
        .await
        .expect("answered");
    assert_eq!(login.status(), 429, "the login form shares the throttle");
    assert_eq!(get(format!("http://{}/metrics", server.admin_address), None).await.0, 200);

    // The login form counts failures too.
    let other = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut statuses = Vec::new();
    for attempt in 0..6 {
        let response = client
            .post(format!("http://{}/dashboard/login", other.admin_address))
            .form(&[("token", format!("guess-{attempt}"))])
            .send()
            .await
            .expect("answered");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
}
