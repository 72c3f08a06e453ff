//! Crash safety: SIGKILL the real `herald` binary during a backlog of 1 000 accepted events;
//! after a restart every one of them is delivered (duplicates allowed, same notification id).

mod common;

use common::{signed_ingest, start};

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const EVENTS: usize = 1000;
const CRASH_APP: (&str, &str, &str) = ("crash", "crash-key", "crash-secret");

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
    for batch in 0..EVENTS / 100 {
        let events: Vec<Value> = (0..100)
            .map(|n| {
                json!({ "id": format!("crash-{batch}-{n}"), "type": "security.alert",
                        "data": { "alert_type": "test", "message": "backlog", "severity": "low" } })
            })
            .collect();
        let body = json!({ "events": events });
        assert_eq!(signed_ingest(port, CRASH_APP, &body).await, 202, "batch {batch} accepted");
    }
    first.kill().expect("SIGKILL sent");
    first.wait().expect("killed");
    let before = delivered(&log).len();
    eprintln!("delivered before the kill: {before} of {EVENTS}");
    // The kill must land mid-backlog, or the restart proves nothing (about a quarter is
    // delivered by then on a two-core machine).
    assert!(before < EVENTS, "the backlog had drained before the kill: nothing was left to lose");

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
