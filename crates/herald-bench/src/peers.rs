//! Other Pusher-protocol servers measured in the same run as herald, with the same phases.
//! Their code never enters the repository: Soketi is installed from npm into `--peers-dir`
//! (under `target/` by default), any other server is a binary the user points at.
//!
//! The contract of a peer: it serves the Pusher protocol for one app, with the bench's id, key
//! and secret, on `ws://127.0.0.1:PORT/app/KEY` and the HTTP API (`POST /apps/ID/events`) on the
//! same port, the port being the one the bench passes. `--peer-arg` and `--peer-env` values may
//! hold `{port}`, `{port2}` (a second free port, e.g. for metrics), `{app_id}`, `{app_key}` and
//! `{app_secret}`; the environment also has `HERALD_BENCH_PORT`, `HERALD_BENCH_APP_ID`,
//! `HERALD_BENCH_APP_KEY` and `HERALD_BENCH_APP_SECRET`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::server::{free_port, Server, APP_ID, APP_KEY, APP_SECRET};

/// Soketi's version range on npm (its package is `@soketi/soketi`).
const SOKETI_VERSION: &str = "1.6";
/// On Node 20 Soketi's own `uWebSockets.js` does not load; this build does.
const UWS_OVERRIDE: &str = "npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0";

/// How to start one peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerSpec {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: Option<PathBuf>,
}

impl PeerSpec {
    /// Starts the peer on free ports with the bench's app.
    pub(crate) fn start(&self) -> anyhow::Result<Server> {
        let port = free_port()?;
        let port2 = free_port()?;
        let fill = |text: &str| {
            text.replace("{port}", &port.to_string())
                .replace("{port2}", &port2.to_string())
                .replace("{app_id}", APP_ID)
                .replace("{app_key}", APP_KEY)
                .replace("{app_secret}", APP_SECRET)
        };
        let args: Vec<String> = self.args.iter().map(|arg| fill(arg)).collect();
        let mut env: Vec<(String, String)> = vec![
            ("HERALD_BENCH_PORT".to_owned(), port.to_string()),
            ("HERALD_BENCH_APP_ID".to_owned(), APP_ID.to_owned()),
            ("HERALD_BENCH_APP_KEY".to_owned(), APP_KEY.to_owned()),
            ("HERALD_BENCH_APP_SECRET".to_owned(), APP_SECRET.to_owned()),
        ];
        env.extend(self.env.iter().map(|(key, value)| (key.clone(), fill(value))));
        Server::start_command(
            &self.name,
            &self.program,
            &args,
            &env,
            port,
            self.cwd.as_deref(),
            Duration::from_secs(60),
        )
    }
}

/// Soketi from npm, installed into `peers_dir/soketi` on first use (a `package.json` written
/// there with the `uWebSockets.js` override, then `npm install`).
pub(crate) fn soketi(peers_dir: &Path) -> anyhow::Result<PeerSpec> {
    let dir = std::env::current_dir().context("no working directory")?.join(peers_dir).join("soketi");
    let server_js = dir.join("node_modules/@soketi/soketi/bin/server.js");
    if !server_js.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let package = serde_json::json!({
            "name": "herald-bench-peer-soketi",
            "private": true,
            "dependencies": { "@soketi/soketi": SOKETI_VERSION },
            "overrides": { "uWebSockets.js": UWS_OVERRIDE },
        });
        std::fs::write(dir.join("package.json"), format!("{package:#}\n"))
            .context("cannot write Soketi's package.json")?;
        eprintln!("herald-bench: installing Soketi {SOKETI_VERSION} from npm into {}", dir.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .context("cannot run npm (is Node.js installed?)")?;
        if !status.success() || !server_js.is_file() {
            bail!("npm install of Soketi into {} failed ({status})", dir.display());
        }
    }
    let env = [
        ("SOKETI_HOST", "127.0.0.1"),
        ("SOKETI_PORT", "{port}"),
        ("SOKETI_METRICS_SERVER_PORT", "{port2}"),
        ("SOKETI_DEFAULT_APP_ID", "{app_id}"),
        ("SOKETI_DEFAULT_APP_KEY", "{app_key}"),
        ("SOKETI_DEFAULT_APP_SECRET", "{app_secret}"),
        ("SOKETI_DEBUG", "0"),
    ];
    Ok(PeerSpec {
        name: "soketi".to_owned(),
        program: PathBuf::from("node"),
        args: vec![server_js.display().to_string(), "start".to_owned()],
        env: env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
        cwd: Some(dir),
    })
}
