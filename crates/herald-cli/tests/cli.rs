//! The operations commands against a real running server: status, debug, test-broadcast,
//! audit and dead-letters, as an operator runs them.

mod common;

use std::path::Path;
use std::process::Output;

use common::{herald, start_with_admin};
use serde_json::Value;

fn config(dir: &Path, port: u16, admin: u16) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\n\n[admin]\nport = {admin}\n\n[database]\nurl = \"sqlite://{}\"\n\n\
             [auth]\njwt_secret = \"cli-secret\"\n\n[[apps]]\nid = \"cli\"\nkey = \"cli-key\"\nsecret = \"cli-secret\"\n",
            dir.join("herald.db").display()
        ),
    )
    .expect("config written");
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    herald().args(args).arg("--config").arg(config).env("NO_COLOR", "1").output().expect("herald runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn operations_commands_against_a_running_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Started on free ports: the tools find them in the runtime file beside the database.
    let file = config(dir.path(), 0, 0);
    let (mut server, _port, _admin) = start_with_admin(&file);

    let status = run(&file, &["status", "--json", "--check-deps"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let document: Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(document["apps"][0]["key"], "cli-key");
    assert_eq!(document["deps"]["database"]["ok"], true);
    assert!(document["connections"]["main"]["capacity"].as_u64().is_some_and(|capacity| capacity > 0));
    let table = text(&run(&file, &["status", "--detailed"]));
    for needle in ["Herald", "Connections", "critical-broadcasts", "dead letters", "Recent errors"] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }

    let debug =
        run(&file, &["debug", "--show-config", "--check-env", "--test-connection", "--test-channels"]);
    let report = text(&debug);
    assert!(debug.status.success(), "{report}");
    assert!(report.contains("apps[0].secret") && report.contains("\"***\""), "secrets redacted:\n{report}");
    assert!(!report.contains("cli-secret"), "no secret printed");
    assert!(report.contains("handshake with ws://127.0.0.1"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    // Every channel family of the catalog (docs/events.md), on the wire, subscribed by the tool.
    for channel in [
        "system-maintenance",
        "private-user.notifications.herald-debug",
        "private-organization.herald-debug-org",
        "private-campaign.herald-debug-campaign",
        "private-admin-dashboard",
        "private-admin-role-super_admin",
        "private-security-alerts",
        "private-compliance-notifications",
        "private-payment-notifications",
        "presence-organization.herald-debug-org",
    ] {
        assert!(
            report.lines().any(|line| line.contains("ok") && line.contains(channel)),
            "{channel}:\n{report}"
        );
    }
    assert!(report.contains("pusher:ping answered"), "the ping got its pong:\n{report}");

    let broadcast = run(&file, &["test-broadcast", "--count", "2"]);
    let summary = text(&broadcast);
    assert!(broadcast.status.success(), "{summary}");
    assert!(summary.contains("0 missing"), "{summary}");

    let audit = run(&file, &["audit", "--json", "--type", "security.alert", "--status", "delivered"]);
    let entries: Value = serde_json::from_slice(&audit.stdout).expect("json");
    assert_eq!(entries.as_array().expect("list").len(), 2);
    let letters = text(&run(&file, &["dead-letters", "list"]));
    assert!(letters.contains("no dead letters"), "{letters}");
    let refused = run(&file, &["dead-letters", "retry"]);
    assert_eq!(refused.status.code(), Some(2), "an id or --all is required");
    let nothing = run(&file, &["dead-letters", "retry", "--all"]);
    assert!(nothing.status.success(), "retry --all with nothing to retry is done, like purge --all");
    let unknown = run(&file, &["dead-letters", "retry", "no-such-broadcast"]);
    assert_eq!(unknown.status.code(), Some(1), "a named id that is not a dead letter is a mistake");

    server.kill().expect("stopped");
    let _ = server.wait();
    let down = run(&file, &["status"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("is `herald serve` running?"));
}

/// `herald serve --dev --port 0` in a directory, as a newcomer runs it; the tools, run in the
/// same directory with no flags, find it (its ports and its development credentials) through the
/// runtime file, which goes when the server stops.
#[test]
fn the_tools_find_a_running_server_without_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tool = |args: &[&str]| {
        let mut command = herald();
        for name in ["HERALD_CONFIG", "DATABASE_URL", "HERALD_JWT_SECRET", "PUSHER_APP_ID", "PUSHER_APP_KEY"]
        {
            command.env_remove(name);
        }
        command.args(args).current_dir(dir.path()).env("NO_COLOR", "1");
        command
    };
    let mut server = tool(&["serve", "--dev", "--port", "0"])
        .env("HERALD_ADMIN__PORT", "0")
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("herald starts");
    let banner = common::read_banner(&mut server);
    let runtime = dir.path().join("herald-runtime.json");
    let document: Value =
        serde_json::from_slice(&std::fs::read(&runtime).expect("runtime file")).expect("json");
    assert_eq!(document["url"], format!("http://127.0.0.1:{}", banner.port));
    assert_eq!(document["admin_url"], format!("http://127.0.0.1:{}", banner.admin));
    assert_eq!(document["pid"], server.id());
    assert_eq!(document["development"], true);

    let status = tool(&["status", "--json"]).output().expect("runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let debug = tool(&["debug", "--test-connection"]).output().expect("runs");
    let report = text(&debug);
    assert!(debug.status.success(), "{report}");
    assert!(report.contains("found through ./herald-runtime.json"), "{report}");
    let broadcast = tool(&["test-broadcast", "--count", "1"]).output().expect("runs");
    assert!(broadcast.status.success(), "with the development credentials: {}", text(&broadcast));
    // --url alone, naming the same server: the admin URL still comes from the runtime file.
    let url = format!("http://127.0.0.1:{}", banner.port);
    let named = tool(&["status", "--url", &url]).output().expect("runs");
    assert!(named.status.success(), "{}", String::from_utf8_lossy(&named.stderr));

    let stopped =
        std::process::Command::new("kill").arg(server.id().to_string()).status().expect("kill runs");
    assert!(stopped.success());
    assert!(server.wait().expect("exits").success(), "SIGTERM is a clean stop");
    assert!(!runtime.exists(), "the runtime file goes with the server");
    let down = tool(&["status"]).output().expect("runs");
    assert_eq!(down.status.code(), Some(1));
}

/// A server whose stdout is closed (a supervisor that stopped reading, `herald serve | head -1`)
/// keeps serving: the banner is best effort, never a panic.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), 0, 0);
    let mut server = herald()
        .args(["serve", "--config"])
        .arg(&file)
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("herald starts");
    drop(server.stdout.take());
    let runtime = dir.path().join("herald-runtime.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !runtime.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(runtime.exists(), "the server started");
    // The banner comes after the runtime file: give the failed write its moment, then ask.
    let status = run(&file, &["status", "--json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(server.try_wait().expect("waits").is_none(), "still running after the banner failed to print");
    server.kill().expect("stopped");
    let _ = server.wait();
}

#[test]
fn every_command_has_complete_help() {
    for command in ["serve", "token", "status", "debug", "test-broadcast", "audit", "dead-letters"] {
        let output = herald().args([command, "--help"]).output().expect("runs");
        assert!(output.status.success(), "{command}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Usage: herald"), "{command}: {help}");
    }
}

#[test]
fn bad_configuration_exits_64_naming_every_bad_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nprot = 1\nport = \"x\"\n[auth]\nalgorithm = \"HS512\"\n")
        .expect("written");
    let output = herald().args(["serve", "--config"]).arg(&file).output().expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let message = String::from_utf8_lossy(&output.stderr);
    // An unknown key, a value of the wrong type and a value out of the allowed set: all three.
    for key in ["server.prot: unknown key", "server.port:", "auth.algorithm:"] {
        assert!(message.contains(key), "{key} in {message}");
    }
}

#[test]
fn audit_since_out_of_range_exits_2_naming_since() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), 0, 0);
    for since in ["9223372036854775807d", "99999999999999999999h", "36500000d"] {
        let output = run(&file, &["audit", "--since", since]);
        assert_eq!(output.status.code(), Some(2), "{since}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("--since") && message.contains("out of range"), "{since}: {message}");
    }
}

#[test]
fn audit_with_an_unknown_status_exits_2_listing_the_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), 0, 0);
    let output = run(&file, &["audit", "--status", "deliverd"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("--status") && message.contains("dead_lettered"), "{message}");
}

#[test]
fn a_large_donation_threshold_beyond_exact_amounts_exits_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[notifications]\nlarge_donation_threshold = 1e20\n").expect("written");
    let output = herald().args(["serve", "--config"]).arg(&file).output().expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("notifications.large_donation_threshold"), "{message}");
}

#[test]
fn status_counts_connections_by_transport() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), 0, 0);
    let (mut server, port, _admin) = start_with_admin(&file);

    // pusher-js's xhr_streaming, as it opens it: one POST whose response stays open.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout set");
    write!(
        stream,
        "POST /pusher/app/cli-key/123/abcdefgh/xhr_streaming?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request sent");
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !String::from_utf8_lossy(&received).contains("pusher:connection_established") {
        let read = stream.read(&mut chunk).expect("the session's lines");
        assert!(read > 0, "stream ended early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..read]);
    }

    let status = run(&file, &["status", "--json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let document: Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(document["apps"][0]["transports"]["xhr_streaming"], 1, "{document}");
    assert_eq!(document["apps"][0]["transports"]["ws"], 0, "{document}");
    let table = text(&run(&file, &["status"]));
    let line = table.lines().find(|line| line.trim_start().starts_with("Transports")).unwrap_or_default();
    assert!(line.contains("xhr_streaming 1"), "Transports line in\n{table}");

    drop(stream);
    server.kill().expect("server stopped");
    server.wait().expect("server reaped");
}
