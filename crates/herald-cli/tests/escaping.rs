//! Text an attacker controls (here: an upstream's error body with terminal escape sequences and
//! CR/LF) reaches `herald dead-letters list`, `herald audit`, `herald status` and the server log
//! escaped, never raw.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{herald, signed_ingest};
use serde_json::json;

/// OSC (set the window title), an SGR colour, and a forged log line after CR/LF.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[31mred\r\n2026-01-01T00:00:00Z  INFO forged line\u{9b}";

/// An upstream that answers every request with 400 and the hostile body.
fn hostile_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{HOSTILE}",
                HOSTILE.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

fn config(dir: &Path, port: u16, admin: u16, upstream: u16) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\n\n[admin]\nport = {admin}\n\n[database]\nurl = \"sqlite://{}\"\n\n\
             [auth]\njwt_secret = \"escape-secret\"\n\n[notifications]\ndriver = \"pusher\"\nbackoff_base_ms = 10\n\n\
             [notifications.upstream]\nhost = \"127.0.0.1\"\nport = {upstream}\nscheme = \"http\"\n\n\
             [[apps]]\nid = \"esc\"\nkey = \"esc-key\"\nsecret = \"esc-secret\"\n",
            dir.join("herald.db").display()
        ),
    )
    .expect("config written");
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    herald().args(args).arg("--config").arg(config).env("NO_COLOR", "1").output().expect("herald runs")
}

async fn ingest(port: u16) -> u16 {
    let body = json!({ "id": "hostile-1", "type": "security.alert",
        "data": { "alert_type": "test", "message": "upstream refuses", "severity": "low" } });
    signed_ingest(port, ("esc", "esc-key", "esc-secret"), &body).await
}

fn assert_escaped(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\u{7}'),
        "{what}: {text:?}"
    );
    assert!(!text.contains("red\r") && !text.contains("red\n"), "{what}: {text:?}");
}

#[tokio::test]
async fn control_characters_from_an_upstream_are_escaped_in_the_cli_and_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = hostile_upstream();
    let log = dir.path().join("serve.log");
    let mut server = herald()
        .args(["serve", "--config"])
        .arg(config(dir.path(), 0, 0, upstream))
        .env("HERALD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("herald starts");
    let common::Banner { port, admin, .. } = common::read_banner(&mut server);
    let file = config(dir.path(), port, admin, upstream);
    assert_eq!(ingest(port).await, 202);

    // A 400 from the upstream dead-letters at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let output = run(&file, &["dead-letters", "list"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains("upstream answered") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(letters.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[31mred\\r\\n2026"), "{letters}");
    assert_escaped("dead-letters list", &letters);
    assert!(letters.contains("private-security-alerts"), "the table names the channels: {letters}");
    // The JSON list names the channels as clients subscribe to them, as the dashboard does.
    let listed = run(&file, &["dead-letters", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["channels"], json!(["private-security-alerts"]), "{listed}");

    let audit = String::from_utf8_lossy(&run(&file, &["audit"]).stdout).into_owned();
    assert!(audit.contains("dead_lettered"), "{audit}");
    assert_escaped("audit", &audit);

    let status = String::from_utf8_lossy(&run(&file, &["status", "--detailed"]).stdout).into_owned();
    assert!(status.contains("upstream answered 400"), "{status}");
    assert!(status.contains("\\u{1b}"), "{status}");
    assert_escaped("status", &status);

    server.kill().expect("stopped");
    let _ = server.wait();
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("dead-lettered"), "{logged}");
    assert_escaped("server log", &logged);
    assert!(!logged.lines().any(|line| line.starts_with("2026-01-01T00:00:00Z")), "no forged line: {logged}");

    // Rows written raw (by an older version, another tool, a restore) are escaped when printed.
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("database opens");
    for statement in
        ["UPDATE dead_letters SET last_error = ?", "UPDATE audit_entries SET detail = ?, event_type = ?1"]
    {
        sqlx::query(statement).bind(HOSTILE).execute(&pool).await.expect("updated");
    }
    pool.close().await;
    let letters = String::from_utf8_lossy(&run(&file, &["dead-letters", "list"]).stdout).into_owned();
    assert!(letters.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[31mred\\r\\n2026"), "{letters}");
    assert_escaped("dead-letters list of a raw row", &letters);
    let audit = String::from_utf8_lossy(&run(&file, &["audit"]).stdout).into_owned();
    assert!(audit.contains("\\u{1b}]0;owned"), "{audit}");
    assert_escaped("audit of raw rows", &audit);
    assert!(!audit.lines().any(|line| line.starts_with("2026-01-01T00:00:00Z")), "{audit}");
}
