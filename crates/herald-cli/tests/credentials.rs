//! Secure defaults of the real binary: with no token secret and no app, `herald serve` on a
//! public address generates private credentials once, stores them beside the database and
//! reuses them; the public development ones need `--dev` or a loopback listener; PostgreSQL
//! without credentials stops start-up naming the variables.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::herald;

/// Runs `herald` with none of the credential variables of the environment.
fn clean(mut command: Command) -> Command {
    for name in ["HERALD_JWT_SECRET", "PUSHER_APP_ID", "PUSHER_APP_KEY", "PUSHER_APP_SECRET", "HERALD_CONFIG"]
    {
        command.env_remove(name);
    }
    command.env("HERALD_LOG", "info");
    command
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhost = \"0.0.0.0\"\nport = 0\n\n[admin]\nport = 0\n\n[database]\nurl = \"sqlite://{}\"\n",
            dir.join("herald.db").display()
        ),
    )
    .expect("config written");
    path
}

/// What the banner said: the API port and the first app's key.
struct Started {
    child: Child,
    port: u16,
    key: String,
}

fn serve(config: &Path, extra: &[&str], log: &Path) -> Started {
    let mut child = clean(herald())
        .args(["serve", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("herald starts");
    let banner = common::read_banner(&mut child);
    Started { child, port: banner.port, key: banner.key }
}

fn stop(mut started: Started) {
    started.child.kill().expect("stopped");
    let _ = started.child.wait();
}

fn token(config: &Path, extra: &[&str]) -> String {
    let output = clean(herald())
        .args(["token", "--user", "42", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

async fn channel_auth(port: u16, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/broadcasting/auth"))
        .bearer_auth(token)
        .form(&[("socket_id", "1.2"), ("channel_name", "private-user.notifications.42")])
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_public_listener_generates_private_credentials_once_and_reuses_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path());
    let log = dir.path().join("serve.log");
    let first = serve(&file, &[], &log);
    assert_ne!(first.key, "app-key", "never the public development app off loopback");
    let stored = dir.path().join("herald-secrets.toml");
    let text = std::fs::read_to_string(&stored).expect("credentials stored beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&stored).expect("stored").permissions().mode() & 0o777, 0o600);
    }
    let table: toml_free::Table = toml_free::parse(&text);
    assert_eq!(table.app_key, first.key);

    // `herald token` signs with the stored secret, and the server accepts it; the public
    // development secret is refused.
    let minted = token(&file, &[]);
    assert_eq!(channel_auth(first.port, &minted).await, 200);
    let development = token(&file, &["--dev"]);
    assert_eq!(channel_auth(first.port, &development).await, 401);

    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("herald-secrets.toml"), "says where: {logged}");
    assert!(!logged.contains(&table.jwt_secret) && !logged.contains(&table.app_secret), "no secret logged");
    stop(first);

    let second = serve(&file, &[], &log);
    assert_eq!(second.key, table.app_key, "the same app after a restart");
    assert_eq!(std::fs::read_to_string(&stored).expect("still there"), text, "not regenerated");
    assert_eq!(channel_auth(second.port, &minted).await, 200, "old tokens still valid");
    stop(second);
}

#[tokio::test]
async fn development_mode_uses_the_public_development_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path());
    let started = serve(&file, &["--dev"], &dir.path().join("serve.log"));
    assert_eq!(started.key, "app-key");
    assert!(!dir.path().join("herald-secrets.toml").exists());
    assert_eq!(channel_auth(started.port, &token(&file, &["--dev"])).await, 200);
    stop(started);
}

#[test]
fn postgres_without_credentials_exits_64_naming_the_variables() {
    let output = clean(herald())
        .args(["serve", "--port", "0", "--database-url", "postgres://herald@127.0.0.1:1/herald"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("HERALD_JWT_SECRET") && message.contains("PUSHER_APP_ID"), "{message}");
}

/// The few fields of `herald-secrets.toml` the test reads, without a TOML dependency.
mod toml_free {
    pub(super) struct Table {
        pub(super) jwt_secret: String,
        pub(super) app_key: String,
        pub(super) app_secret: String,
    }

    fn value(text: &str, key: &str, nth: usize) -> String {
        text.lines()
            .filter_map(|line| line.strip_prefix(&format!("{key} = \"")))
            .nth(nth)
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{key} in {text}"))
            .to_owned()
    }

    pub(super) fn parse(text: &str) -> Table {
        Table {
            jwt_secret: value(text, "jwt_secret", 0),
            app_key: value(text, "key", 0),
            app_secret: value(text, "secret", 0),
        }
    }
}

#[test]
fn minted_tokens_carry_the_configured_issuer_and_audience() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path());
    let mut text = std::fs::read_to_string(&file).expect("config read");
    text.push_str("\n[auth]\njwt_secret = \"cli-secret\"\nissuer = \"acme\"\naudience = \"herald\"\n");
    std::fs::write(&file, text).expect("config written");
    let verifier = herald_auth::TokenVerifier::new(&herald_auth::TokenSettings {
        algorithm: herald_auth::Algorithm::HS256,
        secret: Some("cli-secret".into()),
        public_key_pem: None,
        issuer: Some("acme".into()),
        audience: Some("herald".into()),
        leeway_secs: 0,
    })
    .expect("valid settings");
    let identity = verifier.verify(&token(&file, &[])).expect("the server's verifier accepts it");
    assert_eq!(identity.user_id, "42");
}

#[test]
fn the_read_only_tools_never_create_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    for tool in ["status", "debug", "test-broadcast"] {
        let output = clean(herald())
            .arg(tool)
            .arg("--config")
            .arg(&config)
            .args(["--url", "http://127.0.0.1:9"])
            .output()
            .expect("the tool runs");
        assert!(!output.status.success(), "{tool}: nothing answers there");
    }
    assert!(
        !dir.path().join("herald-secrets.toml").exists(),
        "a tool created the credentials a server would generate"
    );
}
