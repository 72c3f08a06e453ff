//! Test harness: Redis discovery (skip or fail), nodes with short timings, inbound helpers, and
//! `RedisServer` / `RedisCluster`, processes this test starts and kills on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_broker::{Broker, BrokerConfig, Inbound, Message};
use tokio::sync::mpsc::Receiver;

pub(crate) const APP: &str = "app";

fn required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Skips (returns `None`) or fails, per `HERALD_REQUIRE_SERVICES`.
fn absent(what: &str) -> Option<String> {
    if required() {
        panic!("{what} is required (HERALD_REQUIRE_SERVICES=1) but absent");
    }
    eprintln!("skipping: {what} is absent (set HERALD_REQUIRE_SERVICES=1 to make this a failure)");
    None
}

/// The shared Redis on 127.0.0.1:6379, if it answers.
pub(crate) fn shared_redis() -> Option<String> {
    let address: SocketAddr = "127.0.0.1:6379".parse().expect("a valid address");
    match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
        Ok(_) => Some("redis://127.0.0.1:6379".to_owned()),
        Err(_) => absent("redis on 127.0.0.1:6379"),
    }
}

/// Whether `redis-server` and `redis-cli` can be started by the tests.
pub(crate) fn redis_binaries() -> bool {
    let found = ["redis-server", "redis-cli"].iter().all(|binary| {
        Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    });
    found || absent("redis-server and redis-cli").is_some()
}

/// A fresh prefix, so parallel tests never see each other's keys.
pub(crate) fn prefix() -> String {
    format!("test-{:016x}", fastrand::u64(..))
}

/// A config with short timings: heartbeat 200 ms, node ttl 1 s, commands 1 s.
pub(crate) fn config(urls: &[String], prefix: &str, node: &str) -> BrokerConfig {
    let mut config = BrokerConfig::new(urls[0].clone(), node, vec![APP.to_owned()]);
    config.urls = urls.to_vec();
    config.prefix = prefix.to_owned();
    config.address = format!("{node}.test:6001");
    config.heartbeat = Duration::from_millis(200);
    config.node_ttl = Duration::from_secs(1);
    config.command_timeout = Duration::from_secs(1);
    config
}

pub(crate) async fn node(url: &str, prefix: &str, id: &str) -> (Broker, Receiver<Inbound>) {
    Broker::connect(config(&[url.to_owned()], prefix, id)).await.expect("broker connects")
}

/// The next inbound item within `within`.
pub(crate) async fn next(inbound: &mut Receiver<Inbound>, within: Duration) -> Option<Inbound> {
    tokio::time::timeout(within, inbound.recv()).await.ok().flatten()
}

/// The next `Inbound::Message` within `within`, skipping resyncs and reaping reports.
pub(crate) async fn next_message(
    inbound: &mut Receiver<Inbound>,
    within: Duration,
) -> Option<(String, Message)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(inbound, left).await? {
            Inbound::Message { app, message } => return Some((app, message)),
            Inbound::Resync | Inbound::Reaped { .. } => continue,
        }
    }
}

/// Everything that arrives until nothing has for `quiet`.
pub(crate) async fn drain(inbound: &mut Receiver<Inbound>, quiet: Duration) -> Vec<Inbound> {
    let mut items = Vec::new();
    while let Some(item) = next(inbound, quiet).await {
        items.push(item);
    }
    items
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn event(channel: &str, data: &str) -> Message {
    Message::Event {
        channel: channel.to_owned(),
        event: "my-event".to_owned(),
        data: data.to_owned(),
        except: None,
        user_id: None,
    }
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a local address").port()
}

/// A `redis-server` started by the test, killed on drop. Keeps nothing on disk.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) fn start(port: u16, dir: &Path, cluster: bool) -> Self {
        let mut server = Self { port, dir: dir.to_owned(), cluster, child: None };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, on the same port) and waits until it accepts connections.
    pub(crate) fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            let config_file = self.dir.join(format!("nodes-{port}.conf"));
            command.args(["--cluster-enabled", "yes", "--cluster-config-file"]).arg(config_file);
        }
        self.child = Some(command.spawn().expect("redis-server starts"));
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("a valid address");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli -p PORT args...` and returns its output.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three cluster-enabled masters (no replicas) joined by `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    pub(crate) servers: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let servers: Vec<RedisServer> =
            (0..3).map(|_| RedisServer::start(free_port(), dir.path(), true)).collect();
        let addresses: Vec<String> =
            servers.iter().map(|server| format!("127.0.0.1:{}", server.port)).collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !servers.iter().all(|server| server.cli(&["cluster", "info"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { servers, _dir: dir }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }
}

/// A plain connection for checks the broker does not offer.
pub(crate) async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection")
}
