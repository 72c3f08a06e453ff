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

#[tokio::test]
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
}

#[tokio::test]
async fn up_reports_503_when_the_database_is_down() {
    let server = TestServer::start().await;
    let (status, _) = get(format!("http://{}/up", server.address), None).await;
    assert_eq!(status, 200);
    server.state.store.close().await;
    let (status, body) = get(format!("http://{}/up", server.address), None).await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = get(format!("http://{}/up", server.admin_address), None).await;
    assert_eq!(status, 503);
    let (status, _) = get(format!("http://{}/live", server.address), None).await;
    assert_eq!(status, 200, "the process is still alive");
    let (_, metrics) = get(format!("http://{}/metrics", server.admin_address), None).await;
    assert!(metrics.contains("herald_database_up 0"));
}

#[tokio::test]
async fn status_needs_the_admin_token_when_one_is_set() {
    let server = TestServer::with_config(|config| config.admin.token = "s3cret-admin".into()).await;
    let url = format!("http://{}/admin/api/status?check_deps=true", server.admin_address);
    assert_eq!(get(url.clone(), None).await.0, 401);
    assert_eq!(get(url.clone(), Some("wrong")).await.0, 401);
    let (status, body) = get(url, Some("s3cret-admin")).await;
    assert_eq!(status, 200, "{body}");
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["driver"], "herald");
    assert_eq!(status["database"]["backend"], "sqlite");
    assert_eq!(status["deps"]["database"]["ok"], true);
    assert_eq!(status["apps"][0]["id"], "main");
    assert_eq!(status["queue"]["critical-broadcasts"]["pending"], 0);
    assert_eq!(status["dead_letters"], 0);
}

#[tokio::test]
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

#[tokio::test]
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
