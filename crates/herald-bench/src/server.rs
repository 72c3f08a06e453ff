//! The herald server under test: a child process on a free port, its memory, its log.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// How long the server has to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The app the benchmark configures (secrets only matter on 127.0.0.1).
pub(crate) const APP_ID: &str = "bench";
pub(crate) const APP_KEY: &str = "bench-key";
pub(crate) const APP_SECRET: &str = "bench-secret";
/// `[auth] jwt_secret` of the config (no bench phase uses tokens).
const JWT_SECRET: &str = "bench-secret";

/// Every server started so far and its directory, for the watchdog to kill whatever is running.
static CHILDREN: Mutex<Vec<(Arc<Mutex<Child>>, PathBuf)>> = Mutex::new(Vec::new());
/// Servers started so far: each gets a directory of its own.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Kills every server this process started and removes their directories (the watchdog's last
/// resort: it exits without running destructors).
pub(crate) fn kill_all() {
    let children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (child, dir) in children {
        kill(&child);
        let _ = fs::remove_dir_all(dir);
    }
}

/// A running `herald serve`; killed when dropped.
pub(crate) struct Server {
    child: Arc<Mutex<Child>>,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    dir: PathBuf,
    log: PathBuf,
}

/// Memory figures from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) rss: u64,
    pub(crate) rss_anon: u64,
    pub(crate) threads: u64,
}

/// What the server wrote to stderr worth reporting.
#[derive(Debug, Default)]
pub(crate) struct LogSummary {
    pub(crate) warnings: usize,
    pub(crate) errors: usize,
    pub(crate) panics: usize,
    /// The first few WARN/ERROR/panic lines, to show.
    pub(crate) samples: Vec<String>,
}

impl LogSummary {
    /// Adds `other`'s counts, and its samples while fewer than 8 are kept.
    pub(crate) fn merge(&mut self, other: LogSummary) {
        self.warnings += other.warnings;
        self.errors += other.errors;
        self.panics += other.panics;
        let room = 8usize.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

impl Server {
    /// Writes a config for one app on 127.0.0.1, port 0, starts `bin serve` with it and reads the
    /// bound port from the banner's `WebSocket  ws://127.0.0.1:PORT/app/{key}` line. The store is
    /// a fresh SQLite file in the server's temp directory, or `database_url` when given.
    pub(crate) fn start(
        bin: &Path,
        log_filter: &str,
        extra_env: &[(String, String)],
        database_url: Option<&str>,
    ) -> anyhow::Result<Server> {
        Server::start_wrapped(bin, log_filter, extra_env, database_url, &[], START_TIMEOUT)
    }

    /// `start`, with `wrapper` (a program and its arguments, e.g. `valgrind --tool=callgrind`)
    /// in front of `bin serve ...`, and `timeout` for the banner.
    pub(crate) fn start_wrapped(
        bin: &Path,
        log_filter: &str,
        extra_env: &[(String, String)],
        database_url: Option<&str>,
        wrapper: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Server> {
        if !bin.is_file() {
            bail!("herald binary not found at {} (build it, or pass --herald-bin)", bin.display());
        }
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herald-bench-{}-{number}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("herald.toml");
        // The server opens its store at start-up: keep the SQLite file in the temp dir (never in
        // the working directory), and set a JWT secret so it does not warn about the development one.
        // The admin listener takes a free port too, so that several servers (a cluster) can run.
        let database = match database_url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", dir.join("herald.db").display()),
        };
        fs::write(
            &config,
            format!(
                "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace_secs = 2\n\n\
                 [database]\nurl = \"{}\"\n\n\
                 [admin]\nhost = \"127.0.0.1\"\nport = 0\n\n\
                 [auth]\njwt_secret = \"{JWT_SECRET}\"\n\n\
                 [[apps]]\nid = \"{APP_ID}\"\nkey = \"{APP_KEY}\"\nsecret = \"{APP_SECRET}\"\n",
                toml_escape(&database)
            ),
        )
        .context("cannot write the server config")?;
        let log = dir.join("herald.log");
        let stderr = File::create(&log).context("cannot create the server log")?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin);
                command
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&config)
            .env_remove("HERALD_CONFIG")
            // These would override the config's [database] url and [auth] jwt_secret, and this
            // one would join the server to a cluster (the cluster phase sets it on purpose).
            .env_remove("DATABASE_URL")
            .env_remove("HERALD_JWT_SECRET")
            .env_remove("REDIS_URL")
            .env("HERALD_LOG", log_filter)
            .env("NO_COLOR", "1")
            .envs(extra_env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let child = Arc::new(Mutex::new(child));
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push((child.clone(), dir.clone()));
        let mut server = Server { child, pid, port: 0, dir, log };
        // A thread reads the banner, reports the port, then drains stdout until the server exits.
        let (found, port) = mpsc::channel::<u16>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            while !sent {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if let Some(port) = banner_port(&line) {
                            let _ = found.send(port);
                            sent = true;
                        }
                    }
                }
            }
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        match port.recv_timeout(timeout) {
            Ok(port) => server.port = port,
            Err(_) => {
                let tail = server.log_tail(20);
                bail!("herald did not print its WebSocket address in time; its log:\n{tail}");
            }
        }
        Ok(server)
    }

    /// Starts a peer: `program args` with `env`, in the bench's working directory unless `cwd`
    /// is given, serving the Pusher protocol for the bench's app on
    /// 127.0.0.1:`port`; ready once the port accepts TCP connections.
    pub(crate) fn start_command(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        port: u16,
        cwd: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<Server> {
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herald-bench-{}-{number}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("peer.log");
        let stderr = File::create(&log).context("cannot create the peer log")?;
        let stdout = stderr.try_clone().context("cannot share the peer log")?;
        let mut command = Command::new(program);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let child = command
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push((child.clone(), dir.clone()));
        let server = Server { child, pid, port, dir, log };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Give it a moment past binding the port (some bind before their routes exist).
                std::thread::sleep(Duration::from_millis(500));
                return Ok(server);
            }
            if let Some(status) = server.exited() {
                bail!(
                    "{name} exited ({status}) before listening on {port}; its log:\n{}",
                    server.log_tail(20)
                );
            }
            if std::time::Instant::now() >= deadline {
                bail!("{name} did not listen on {port} in time; its log:\n{}", server.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn memory(&self) -> anyhow::Result<Memory> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("cannot read the server's /proc status (has it exited?)")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|line| line.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid))?;
            let mut words = line[name.len()..].split_whitespace();
            let value: u64 = words.next().unwrap_or_default().parse()?;
            Ok(match words.next() {
                Some("kB") => value * 1024,
                _ => value,
            })
        };
        Ok(Memory { rss: field("VmRSS:")?, rss_anon: field("RssAnon:")?, threads: field("Threads:")? })
    }

    /// CPU seconds (user, system) the server has used so far.
    pub(crate) fn cpu_split_secs(&self) -> (f64, f64) {
        cpu_split_secs(&self.pid.to_string())
    }

    /// `Some(status)` when the server has exited.
    pub(crate) fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `wait` for the server to exit (a tool like callgrind
    /// writes its output then), then kills it; returns whether it exited by itself.
    pub(crate) fn terminate(&self, wait: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills the server, then sums up its log; removes the config and log.
    pub(crate) fn stop(self) -> LogSummary {
        kill(&self.child);
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let mut summary = LogSummary::default();
        for line in text.lines() {
            let plain = strip_ansi(line);
            let kind = if plain.contains(" ERROR ") {
                summary.errors += 1;
                true
            } else if plain.contains(" WARN ") {
                summary.warnings += 1;
                true
            } else if plain.contains("panicked") {
                summary.panics += 1;
                true
            } else {
                false
            };
            if kind && summary.samples.len() < 8 {
                summary.samples.push(plain.chars().take(300).collect());
            }
        }
        summary
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Kills the child (SIGKILL) and reaps it; harmless when it already exited.
pub(crate) fn kill(child: &Mutex<Child>) {
    let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// CPU seconds (user + system) of `/proc/<who>/stat`; 0 when unreadable. Assumes the usual
/// 100 clock ticks per second.
pub(crate) fn cpu_secs(who: &str) -> f64 {
    let (user, system) = cpu_split_secs(who);
    user + system
}

/// CPU seconds in user space and in the kernel (`utime`, `stime`) of `/proc/<who>/stat`; zeros
/// when unreadable. Assumes the usual 100 clock ticks per second.
pub(crate) fn cpu_split_secs(who: &str) -> (f64, f64) {
    let Ok(stat) = fs::read_to_string(format!("/proc/{who}/stat")) else {
        return (0.0, 0.0);
    };
    parse_stat_times(&stat)
}

/// `utime` and `stime` of a `/proc/<pid>/stat` line, in seconds.
fn parse_stat_times(stat: &str) -> (f64, f64) {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> f64 {
        fields.get(index).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0) as f64
    };
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// A port free on 127.0.0.1 right now (for a peer that needs one chosen for it).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `text` inside a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The port of `  WebSocket  ws://127.0.0.1:PORT/app/{key}`.
fn banner_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("WebSocket")?.trim();
    let address = rest.strip_prefix("ws://")?.split('/').next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

/// Drops ANSI colour sequences (`ESC [ ... m`) that tracing adds on terminals.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_from_the_banner() {
        assert_eq!(banner_port("  WebSocket  ws://127.0.0.1:43017/app/{key}\n"), Some(43017));
        assert_eq!(banner_port("  HTTP API   http://127.0.0.1:1/apps/{id}/events"), None);
    }

    #[test]
    fn reads_user_and_system_ticks() {
        let stat = "4242 (herald (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0";
        assert_eq!(parse_stat_times(stat), (2.5, 0.75));
        assert_eq!(parse_stat_times("garbage"), (0.0, 0.0));
    }

    #[test]
    fn escapes_toml_strings() {
        assert_eq!(toml_escape(r#"/tmp/a"b\c"#), r#"/tmp/a\"b\\c"#);
    }

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\u{1b}[33m WARN\u{1b}[0m x"), " WARN x");
    }
}
