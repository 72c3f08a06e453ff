//! Shared by the binary's tests: start the real `herald serve` and read its port from the banner.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn herald() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herald"))
}

/// Starts `herald serve --config <config>`; returns the child and the WebSocket/API port.
pub fn start(config: &Path) -> (Child, u16) {
    let (child, port, _admin) = start_with_admin(config);
    (child, port)
}

/// Starts `herald serve --config <config>`; returns the child, the API port and the admin port.
pub fn start_with_admin(config: &Path) -> (Child, u16, u16) {
    let mut child = herald()
        .args(["serve", "--config"])
        .arg(config)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald starts");
    let banner = read_banner(&mut child);
    (child, banner.port, banner.admin)
}

/// What the start-up banner of a server on 127.0.0.1 says.
pub struct Banner {
    pub port: u16,
    pub admin: u16,
    /// The first app's key.
    pub key: String,
}

/// Reads the banner of a `herald serve` started with a piped stdout on 127.0.0.1 (or on every
/// address, which the banner shows as 127.0.0.1); the rest of stdout is drained in the background.
pub fn read_banner(child: &mut Child) -> Banner {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut port, mut admin) = (None, None);
    let after = |line: &str, prefix: &str| -> Option<u16> {
        line.strip_prefix(prefix)?.split('/').next()?.parse().ok()
    };
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim().to_owned();
        port = port.or_else(|| after(&line, "WebSocket  ws://127.0.0.1:"));
        admin = admin.or_else(|| after(&line, "Admin      http://127.0.0.1:"));
        if let (Some(rest), Some(port), Some(admin)) = (line.strip_prefix("App        id "), port, admin) {
            let key = rest.split("key \"").nth(1).and_then(|rest| rest.split('"').next()).expect("key");
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return Banner { port, admin, key: key.to_owned() };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no banner within 20 s");
}

/// Posts `body` to `/apps/{app}/domain-events` of a server on 127.0.0.1, signed as the Pusher
/// SDKs sign; returns the status.
pub async fn signed_ingest(port: u16, app: (&str, &str, &str), body: &serde_json::Value) -> u16 {
    let (id, key, secret) = app;
    let body = body.to_string();
    let path = format!("/apps/{id}/domain-events");
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let query =
        herald_protocol::ApiSigner { key, secret }.query("POST", &path, body.as_bytes(), timestamp, &[]);
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .query(&query)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest answered")
        .status()
        .as_u16()
}
