//! The runtime file: `herald serve` writes where it listens (`herald-runtime.json`, beside its
//! database) and removes it on exit, so that `herald status`, `herald debug` and
//! `herald test-broadcast` find a running server without flags, even one started with `--port 0`
//! or `--dev`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use herald_server::Loaded;
use serde_json::{json, Value};

/// The file's name, in `Loaded::data_dir()`.
pub(crate) const RUNTIME_FILE: &str = "herald-runtime.json";

/// A running server as its runtime file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) path: PathBuf,
    pub(crate) pid: u32,
    /// `http://host:port` of the WebSocket + API listener, reachable from this machine.
    pub(crate) url: String,
    /// `http://host:port` of the admin listener.
    pub(crate) admin_url: String,
    /// Started with `--dev` (or `server.development`): the tools use the development credentials.
    pub(crate) development: bool,
}

/// `http://` URL of a listener, as this machine reaches it (`herald_server::reachable`).
pub(crate) fn reachable(address: SocketAddr) -> String {
    format!("http://{}", herald_server::reachable(address))
}

/// Writes the runtime file; it is removed when the guard drops (also on a failed run).
pub(crate) fn write(loaded: &Loaded, address: SocketAddr, admin: SocketAddr) -> Result<RuntimeGuard, String> {
    let path = loaded.data_dir().join(RUNTIME_FILE);
    let pid = std::process::id();
    let document = json!({
        "pid": pid,
        "version": env!("CARGO_PKG_VERSION"),
        "url": reachable(address),
        "websocket": format!("{}/app/{{key}}", reachable(address).replacen("http://", "ws://", 1)),
        "admin_url": reachable(admin),
        "development": loaded.config.server.development,
        "config_file": loaded.file.as_ref().map(|file| file.display().to_string()),
    });
    // Written beside and renamed, so a reader never sees half a file.
    let partial = path.with_extension(format!("json.{pid}"));
    let text = serde_json::to_string_pretty(&document).unwrap_or_default() + "\n";
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(RuntimeGuard { path, pid })
}

/// Removes the runtime file on drop, unless another server has replaced it since.
#[derive(Debug)]
pub(crate) struct RuntimeGuard {
    path: PathBuf,
    pid: u32,
}

impl RuntimeGuard {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if parse(&self.path).is_some_and(|running| running.pid == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the runtime file beside `loaded`'s database says, when it names a live process.
/// A file left by a killed server (its process is gone) is ignored.
pub(crate) fn read(loaded: &Loaded) -> Option<Running> {
    let running = parse(&loaded.data_dir().join(RUNTIME_FILE))?;
    alive(running.pid).then_some(running)
}

fn parse(path: &Path) -> Option<Running> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    Some(Running {
        path: path.to_path_buf(),
        pid: u32::try_from(value["pid"].as_u64()?).ok()?,
        url: value["url"].as_str()?.to_owned(),
        admin_url: value["admin_url"].as_str()?.to_owned(),
        development: value["development"].as_bool().unwrap_or(false),
    })
}

/// Whether a process with this id exists (on Linux; elsewhere the file is trusted).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_localhost() {
        assert_eq!(reachable("0.0.0.0:6001".parse().expect("address")), "http://127.0.0.1:6001");
        assert_eq!(reachable("[::]:6001".parse().expect("address")), "http://127.0.0.1:6001");
        assert_eq!(reachable("10.0.0.5:6001".parse().expect("address")), "http://10.0.0.5:6001");
        assert_eq!(reachable("[::1]:6001".parse().expect("address")), "http://[::1]:6001");
    }

    #[test]
    fn a_file_left_by_a_dead_process_is_ignored_and_a_live_one_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(RUNTIME_FILE);
        let write = |pid: u32| {
            std::fs::write(
                &path,
                json!({"pid": pid, "url": "http://127.0.0.1:1", "admin_url": "http://127.0.0.1:2"})
                    .to_string(),
            )
            .expect("written");
        };
        write(std::process::id());
        let running = parse(&path).expect("parsed");
        assert!(alive(running.pid));
        assert_eq!(running.admin_url, "http://127.0.0.1:2");
        assert!(!running.development);
        // Linux pids stay below 2^22.
        write(u32::MAX - 1);
        assert!(!alive(parse(&path).expect("parsed").pid));
    }

    #[test]
    fn the_guard_leaves_a_file_another_server_wrote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(RUNTIME_FILE);
        std::fs::write(&path, json!({"pid": 1, "url": "u", "admin_url": "a"}).to_string()).expect("written");
        drop(RuntimeGuard { path: path.clone(), pid: std::process::id() });
        assert!(path.exists(), "another server's file stays");
        std::fs::write(&path, json!({"pid": std::process::id(), "url": "u", "admin_url": "a"}).to_string())
            .expect("written");
        drop(RuntimeGuard { path: path.clone(), pid: std::process::id() });
        assert!(!path.exists(), "our own file goes");
    }
}
