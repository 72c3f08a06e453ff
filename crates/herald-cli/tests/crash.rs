//! Crash safety: SIGKILL the real `herald` binary during a backlog of 1 000 accepted events;
//! after a restart every one of them is delivered (duplicates allowed, same notification id).

mod common;

use common::start;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_protocol::{api_string_to_sign, body_md5_hex, hmac_sha256_hex};
use serde_json::{json, Value};

const EVENTS: usize = 1000;

async fn ingest(client: &reqwest::Client, port: u16, events: &[Value]) -> u16 {
    let body = json!({ "events": events }).to_string();
    let path = "/apps/crash/domain-events";
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs().to_string();
    let md5 = body_md5_hex(body.as_bytes());
    let params = [
        ("auth_key", "crash-key"),
        ("auth_timestamp", timestamp.as_str()),
        ("auth_version", "1.0"),
        ("body_md5", md5.as_str()),
    ];
    let signature = hmac_sha256_hex("crash-secret", &api_string_to_sign("POST", path, params));
    let response = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .query(&params)
        .query(&[("auth_signature", signature.as_str())])
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest answered");
    response.status().as_u16()
}

/// Distinct broadcast ids in the log driver's file.
fn delivered(log: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| serde_json::from_str::<Value>(line["data"].as_str()?).ok())
        .filter_map(|data| data["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn sigkill_during_a_backlog_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("broadcasts.log");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n[admin]\nport = 0\n\n[database]\nurl = \"sqlite://{}\"\n\n[auth]\njwt_secret = \"crash\"\n\n\
             [notifications]\ndriver = \"log\"\nlog_file = \"{}\"\nworkers = 1\n\n\
             [[apps]]\nid = \"crash\"\nkey = \"crash-key\"\nsecret = \"crash-secret\"\n",
            dir.path().join("herald.db").display(),
            log.display()
        ),
    )
    .expect("config written");

    let (mut first, port) = start(&config);
    let client = reqwest::Client::new();
    for batch in 0..EVENTS / 100 {
        let events: Vec<Value> = (0..100)
            .map(|n| {
                json!({ "id": format!("crash-{batch}-{n}"), "type": "security.alert",
                        "data": { "alert_type": "test", "message": "backlog", "severity": "low" } })
            })
            .collect();
        assert_eq!(ingest(&client, port, &events).await, 202, "batch {batch} accepted");
    }
    first.kill().expect("SIGKILL sent");
    first.wait().expect("killed");
    let before = delivered(&log).len();
    eprintln!("delivered before the kill: {before} of {EVENTS}");

    let (mut second, _) = start(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = delivered(&log).len();
    while seen < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = delivered(&log).len();
    }
    second.kill().expect("stopped");
    let _ = second.wait();
    assert_eq!(
        seen, EVENTS,
        "every accepted event is delivered after the restart ({before} were before the kill)"
    );
}
