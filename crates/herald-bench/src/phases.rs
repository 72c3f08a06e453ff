//! The three measurements. Each opens its own connections and closes them before returning.
//! Latency and throughput run against one node or several (the cluster phase): their
//! subscribers are spread evenly over the nodes, and the triggers go to the `Api` given.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{answer_ping, close, connect_subscribed, ws_url, Api, Ws};
use crate::server::{cpu_secs, Memory, Server};

/// CPU seconds used by the server and by this process over a stretch of the run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    /// The server's CPU seconds, user + system.
    pub(crate) server: f64,
    /// … of which in user space (`utime`) and in the kernel (`stime`).
    pub(crate) server_user: f64,
    pub(crate) server_system: f64,
    pub(crate) bench: f64,
    /// Busy CPU seconds of the whole machine (every process, all cores).
    pub(crate) machine: f64,
    pub(crate) wall: f64,
}

impl Cpu {
    /// CPU seconds used by neither the server nor the bench: noise from the rest of the machine.
    pub(crate) fn others(&self) -> f64 {
        (self.machine - self.server - self.bench).max(0.0)
    }

    /// The server's CPU per delivery, microseconds: (user, system, total); `None` without any.
    pub(crate) fn per_delivery_us(&self, deliveries: u64) -> Option<(f64, f64, f64)> {
        if deliveries == 0 {
            return None;
        }
        let per = |secs: f64| secs * 1e6 / deliveries as f64;
        Some((per(self.server_user), per(self.server_system), per(self.server)))
    }
}

pub(crate) struct CpuClock {
    server: (f64, f64),
    bench: f64,
    machine: f64,
    wall: Instant,
}

/// Busy CPU seconds of the machine so far, from the first line of `/proc/stat`.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|value| value.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, value)| value)
        .sum();
    busy as f64 / 100.0
}

/// CPU seconds (user, system) the servers have used so far, together.
fn servers_cpu_secs(servers: &[Server]) -> (f64, f64) {
    servers
        .iter()
        .map(Server::cpu_split_secs)
        .fold((0.0, 0.0), |(u, s), (user, system)| (u + user, s + system))
}

impl CpuClock {
    pub(crate) fn start(server: &Server) -> CpuClock {
        CpuClock::start_all(std::slice::from_ref(server))
    }

    /// Starts the clock for several servers: their CPU is counted together as the server's.
    pub(crate) fn start_all(servers: &[Server]) -> CpuClock {
        CpuClock {
            server: servers_cpu_secs(servers),
            bench: cpu_secs("self"),
            machine: machine_busy_secs(),
            wall: Instant::now(),
        }
    }

    pub(crate) fn stop(&self, server: &Server) -> Cpu {
        self.stop_all(std::slice::from_ref(server))
    }

    pub(crate) fn stop_all(&self, servers: &[Server]) -> Cpu {
        let (user, system) = servers_cpu_secs(servers);
        let (user, system) = (user - self.server.0, system - self.server.1);
        Cpu {
            server: user + system,
            server_user: user,
            server_system: system,
            bench: cpu_secs("self") - self.bench,
            machine: machine_busy_secs() - self.machine,
            wall: self.wall.elapsed().as_secs_f64(),
        }
    }
}

/// Errors kept to show (the rest are only counted).
const KEEP_ERRORS: usize = 5;

/// Connections opened, or why not.
struct Opened<T> {
    tasks: Vec<JoinHandle<T>>,
    /// The index of each task's connection (in the order of `tasks`).
    indices: Vec<usize>,
    failed: usize,
    errors: Vec<String>,
    elapsed: Duration,
}

/// Opens `count` subscribed connections, at most `concurrency` handshakes at a time, connection
/// `i` to the node on `ports[i % ports.len()]`, and hands each with its node's index to `spawn`
/// (which starts the task that owns it).
async fn open_connections<T: Send + 'static>(
    label: &str,
    ports: &[u16],
    count: usize,
    concurrency: usize,
    channel_of: impl Fn(usize) -> Option<String>,
    mut spawn: impl FnMut(usize, usize, Ws) -> JoinHandle<T>,
) -> Opened<T> {
    let urls: Vec<String> = ports.iter().map(|&port| ws_url(port)).collect();
    let started = Instant::now();
    let mut handshakes = futures_util::stream::iter(0..count)
        .map(|index| {
            let node = index % urls.len().max(1);
            let url = urls[node].clone();
            let channel = channel_of(index);
            async move { (index, node, connect_subscribed(&url, channel.as_deref()).await) }
        })
        .buffer_unordered(concurrency.max(1));
    let mut opened = Opened {
        tasks: Vec::with_capacity(count),
        indices: Vec::with_capacity(count),
        failed: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let step = (count / 10).max(1);
    let mut done = 0;
    while let Some((index, node, result)) = handshakes.next().await {
        done += 1;
        match result {
            Ok(ws) => {
                opened.tasks.push(spawn(index, node, ws));
                opened.indices.push(index);
            }
            Err(error) => {
                opened.failed += 1;
                if opened.errors.len() < KEEP_ERRORS {
                    opened.errors.push(format!("{error:#}"));
                }
            }
        }
        if done % step == 0 || done == count {
            eprintln!(
                "  [{label}] {done}/{count} handshakes ({} failed) after {:.1} s",
                opened.failed,
                started.elapsed().as_secs_f64()
            );
        }
    }
    opened.elapsed = started.elapsed();
    opened
}

/// Waits for the tasks, at most `limit` in all; returns their outputs (tasks still running past
/// the limit are aborted and counted as `None`).
async fn join_all<T>(tasks: Vec<JoinHandle<T>>, limit: Duration) -> Vec<Option<T>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(output)) => outputs.push(Some(output)),
            Ok(Err(_)) => outputs.push(None),
            Err(_) => {
                abort.abort();
                outputs.push(None);
            }
        }
    }
    outputs
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// How a connection-holding task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// We closed it when told to.
    Stopped,
    /// The server closed it, or it failed, before we were done.
    Dropped,
}

/// Holds an idle connection: answers pings, counts burst events, notices a close, until `stop`.
async fn hold(mut ws: Ws, burst_received: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) -> Ending {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => {
                close(ws).await;
                return Ending::Stopped;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str().contains(BURST_EVENT) {
                        burst_received.fetch_add(1, Ordering::Relaxed);
                    } else {
                        answer_ping(&mut ws, text.as_str()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ending::Dropped,
                Some(Ok(_)) => {}
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Memory per idle subscribed connection

pub(crate) struct MemoryResult {
    pub(crate) requested: usize,
    pub(crate) connected: usize,
    pub(crate) failed: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) channels: usize,
    pub(crate) connect_secs: f64,
    pub(crate) settle_secs: f64,
    pub(crate) before: Memory,
    pub(crate) after: Memory,
    pub(crate) after_close: Option<Memory>,
    /// Connections the server closed while they were idle (or during the burst).
    pub(crate) dropped: usize,
    /// The optional burst after the idle reading.
    pub(crate) burst: Option<BurstResult>,
}

/// Name of the events of the burst.
const BURST_EVENT: &str = "bench-burst";

/// `--burst-events`: after the idle reading, every idle channel gets `events` triggers of `bytes`
/// of data at once, so each connection receives a burst its session writes in batches; then the
/// server's RSS is read again (the connections are idle again by then).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burst {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
    /// Trigger requests in flight at once.
    pub(crate) concurrency: usize,
}

pub(crate) struct BurstResult {
    pub(crate) burst: Burst,
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    /// From the first trigger to the last delivery (or giving up).
    pub(crate) secs: f64,
    pub(crate) after: Memory,
}

impl MemoryResult {
    /// Growth of the server's RSS divided by the connections open, in bytes.
    pub(crate) fn per_connection(&self) -> f64 {
        self.after.rss.saturating_sub(self.before.rss) as f64 / self.connected.max(1) as f64
    }

    pub(crate) fn per_connection_anon(&self) -> f64 {
        self.after.rss_anon.saturating_sub(self.before.rss_anon) as f64 / self.connected.max(1) as f64
    }

    /// Growth of the server's RSS from before the connections to after the burst, per connection.
    pub(crate) fn per_connection_after_burst(&self) -> Option<f64> {
        let burst = self.burst.as_ref()?;
        Some(burst.after.rss.saturating_sub(self.before.rss) as f64 / self.connected.max(1) as f64)
    }
}

/// Fires the burst at the idle channels and waits until every connection has it (or 60 s).
async fn burst(
    server: &Server,
    api: &Api,
    channels: usize,
    burst: Burst,
    connected: usize,
    received: &AtomicU64,
    settle: Duration,
) -> anyhow::Result<BurstResult> {
    let data = "x".repeat(burst.bytes);
    eprintln!(
        "memory: burst of {} events × {} B on each of {channels} channels ({} requests in flight)",
        burst.events, burst.bytes, burst.concurrency
    );
    let started = Instant::now();
    let statuses: Vec<String> = futures_util::stream::iter(0..channels * burst.events)
        .map(|index| {
            let channel = format!("bench-idle-{}", index % channels);
            let data = &data;
            async move {
                match api.trigger(&channel, BURST_EVENT, data).await {
                    Ok(status) => status.to_string(),
                    Err(error) => format!("error: {error:#}"),
                }
            }
        })
        .buffer_unordered(burst.concurrency.max(1))
        .collect()
        .await;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    // Every connection is on one channel and every channel got `events` triggers.
    let all_ok = counts.get("200").copied().unwrap_or(0) == (channels * burst.events) as u64;
    let expected = if all_ok { (connected * burst.events) as u64 } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (received.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = received.load(Ordering::Relaxed);
        if (expected > 0 && now >= expected) || Instant::now() >= deadline {
            break;
        }
        // Without a known total (some trigger failed): stop once nothing arrived for 2 s.
        if now != last.0 {
            last = (now, Instant::now());
        } else if expected == 0 && last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let after = server.memory()?;
    let delivered = received.load(Ordering::Relaxed);
    eprintln!(
        "memory: {delivered} burst deliveries in {secs:.1} s; server RSS after the burst = {:.1} MiB",
        mib(after.rss)
    );
    Ok(BurstResult {
        burst,
        statuses: counts,
        delivered,
        expected: (connected * burst.events) as u64,
        secs,
        after,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn memory(
    server: &Server,
    api: &Api,
    count: usize,
    channels: usize,
    concurrency: usize,
    settle: Duration,
    burst_config: Option<Burst>,
) -> anyhow::Result<MemoryResult> {
    // Let the freshly started server finish its own start-up allocations first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.memory()?;
    eprintln!(
        "memory: server RSS before = {:.1} MiB; opening {count} connections on {channels} channels",
        mib(before.rss)
    );
    let (stop, stopped) = watch::channel(false);
    let burst_received = Arc::new(AtomicU64::new(0));
    let opened = open_connections(
        "memory",
        &[server.port],
        count,
        concurrency,
        |index| (channels > 0).then(|| format!("bench-idle-{}", index % channels)),
        |_, _, ws| tokio::spawn(hold(ws, burst_received.clone(), stopped.clone())),
    )
    .await;
    eprintln!(
        "memory: {} connected, waiting {:.1} s for the server to settle",
        opened.tasks.len(),
        settle.as_secs_f64()
    );
    tokio::time::sleep(settle).await;
    let after = server.memory()?;
    let connected = opened.tasks.len();
    eprintln!("memory: server RSS after = {:.1} MiB", mib(after.rss));
    let burst = match burst_config {
        Some(config) if channels > 0 && config.events > 0 => {
            Some(burst(server, api, channels, config, connected, &burst_received, settle).await?)
        }
        _ => None,
    };
    let dropped_while_idle = opened.tasks.iter().filter(|task| task.is_finished()).count();
    eprintln!("memory: closing the connections");
    let _ = stop.send(true);
    let endings = join_all(opened.tasks, Duration::from_secs(30)).await;
    let dropped =
        endings.iter().filter(|ending| **ending != Some(Ending::Stopped)).count().max(dropped_while_idle);
    tokio::time::sleep(settle).await;
    let after_close = server.memory().ok();
    Ok(MemoryResult {
        requested: count,
        connected,
        failed: opened.failed,
        errors: opened.errors,
        channels,
        connect_secs: opened.elapsed.as_secs_f64(),
        settle_secs: settle.as_secs_f64(),
        before,
        after,
        after_close,
        dropped,
        burst,
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Broadcast latency

/// Counts arrivals per round and wakes the driver when a round has reached everyone on its
/// channel (round `r` goes to channel `r % channels`).
struct RoundGate {
    arrived: Vec<AtomicUsize>,
    /// Subscribers per channel, once they are all connected.
    targets: std::sync::OnceLock<Vec<usize>>,
    notify: Notify,
}

impl RoundGate {
    fn arrive(&self, round: usize) {
        if let Some(count) = self.arrived.get(round) {
            let now = count.fetch_add(1, Ordering::AcqRel) + 1;
            if now >= self.target(round) {
                self.notify.notify_one();
            }
        }
    }

    /// The subscribers round `round` should reach (`usize::MAX` until they are connected).
    fn target(&self, round: usize) -> usize {
        match self.targets.get() {
            Some(targets) if !targets.is_empty() => targets[round % targets.len()],
            _ => usize::MAX,
        }
    }

    fn count(&self, round: usize) -> usize {
        self.arrived[round].load(Ordering::Acquire)
    }

    fn complete(&self, round: usize) -> bool {
        self.count(round) >= self.target(round)
    }
}

/// What one latency subscriber saw.
struct Received {
    /// The node it was connected to (index into the nodes).
    node: usize,
    /// (round, nanoseconds from just before the trigger was sent to arrival)
    samples: Vec<(u32, u64)>,
    ending: Ending,
}

/// `{"event":"bench-tick",...,"data":"{\"r\":R,\"t\":T}"}` → (R, T).
fn parse_tick(text: &str) -> Option<(u32, u64)> {
    if !text.contains("bench-tick") {
        return None;
    }
    let frame: Value = serde_json::from_str(text).ok()?;
    if frame["event"] != "bench-tick" {
        return None;
    }
    let data: Value = serde_json::from_str(frame["data"].as_str()?).ok()?;
    Some((u32::try_from(data["r"].as_u64()?).ok()?, data["t"].as_u64()?))
}

async fn latency_subscriber(
    mut ws: Ws,
    node: usize,
    epoch: Instant,
    rounds: usize,
    gate: Arc<RoundGate>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut samples = Vec::with_capacity(rounds);
    loop {
        tokio::select! {
            biased;
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let arrived = epoch.elapsed().as_nanos() as u64;
                    if let Some((round, sent)) = parse_tick(text.as_str()) {
                        samples.push((round, arrived.saturating_sub(sent)));
                        gate.arrive(round as usize);
                    } else {
                        answer_ping(&mut ws, text.as_str()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    return Received { node, samples, ending: Ending::Dropped };
                }
                Some(Ok(_)) => {}
            },
            _ = stopped(&mut stop) => {
                close(ws).await;
                return Received { node, samples, ending: Ending::Stopped };
            }
        }
    }
}

/// The load of the latency measurement (`--subscribers`, `--rounds`, …).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatencyLoad {
    pub(crate) subscribers: usize,
    pub(crate) rounds: usize,
    pub(crate) warmup_rounds: usize,
    /// WebSocket handshakes in flight at once.
    pub(crate) connect_concurrency: usize,
    /// Between one round reaching everyone and the next trigger (without a `rate`).
    pub(crate) pause: Duration,
    /// Channels the subscribers are spread over (subscriber `i` on channel `i % channels`);
    /// round `r` is triggered on channel `r % channels`.
    pub(crate) channels: usize,
    /// Triggers per second at a fixed pace, whether or not the last round has arrived
    /// everywhere; `None`: the next round waits for the last one, then `pause`.
    pub(crate) rate: Option<f64>,
    /// How long a round waits for every subscriber at most.
    pub(crate) round_timeout: Duration,
}

pub(crate) struct LatencyResult {
    pub(crate) subscribers: usize,
    pub(crate) failed: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) connect_secs: f64,
    pub(crate) rounds: usize,
    pub(crate) warmup_rounds: usize,
    /// Every (subscriber, measured round) latency, microseconds, sorted.
    pub(crate) samples_us: Vec<u64>,
    /// The same samples per node (subscribers connected to `nodes[i]`), each sorted.
    pub(crate) node_samples_us: Vec<Vec<u64>>,
    /// Per measured round: latency of the last subscriber to receive it, microseconds, sorted.
    pub(crate) last_us: Vec<u64>,
    /// Per measured round: time the HTTP trigger call took, microseconds, sorted.
    pub(crate) trigger_us: Vec<u64>,
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Deliveries expected in measured rounds but never seen.
    pub(crate) missing: u64,
    /// Rounds the driver gave up waiting for (some subscriber never got it in time).
    pub(crate) incomplete_rounds: usize,
    pub(crate) dropped: usize,
    /// The slowest samples: (round, microseconds).
    pub(crate) worst: Vec<(u32, u64)>,
    /// CPU used while the rounds ran (the servers' together).
    pub(crate) cpu: Cpu,
    /// Events delivered while the CPU was counted (warm-up rounds too).
    pub(crate) deliveries: u64,
}

impl LatencyResult {
    /// The samples of the subscribers on the nodes in `nodes` (indices), sorted.
    pub(crate) fn samples_on(&self, nodes: std::ops::Range<usize>) -> Vec<u64> {
        let mut samples: Vec<u64> =
            self.node_samples_us.get(nodes).unwrap_or_default().iter().flatten().copied().collect();
        samples.sort_unstable();
        samples
    }
}

/// The channel of round or subscriber `index`: `bench-latency` alone, or one of `channels`.
fn latency_channel(index: usize, channels: usize) -> String {
    if channels <= 1 {
        "bench-latency".to_owned()
    } else {
        format!("bench-latency-{}", index % channels)
    }
}

/// One trigger of the latency rounds: (status, how long the call took).
async fn latency_trigger(api: &Api, round: usize, channels: usize, epoch: Instant) -> (String, Duration) {
    let sent = epoch.elapsed().as_nanos() as u64;
    let data = format!("{{\"r\":{round},\"t\":{sent}}}");
    let call = Instant::now();
    let status = match api.trigger(&latency_channel(round, channels), "bench-tick", &data).await {
        Ok(status) => status.to_string(),
        Err(error) => format!("error: {error:#}"),
    };
    (status, call.elapsed())
}

/// Rounds of one trigger each, sent to `api`, received by `load.subscribers` subscribers spread
/// over `nodes` (and over `load.channels`). Without a rate the next round starts once everyone
/// has the last one (or it timed out); with one, the triggers go out at that pace and the
/// rounds are awaited at the end.
pub(crate) async fn latency(
    nodes: &[Server],
    api: &Api,
    load: &LatencyLoad,
) -> anyhow::Result<LatencyResult> {
    let LatencyLoad {
        subscribers,
        rounds,
        warmup_rounds,
        connect_concurrency,
        pause,
        channels,
        rate,
        round_timeout,
    } = *load;
    let channels = channels.max(1);
    let total = warmup_rounds + rounds;
    let epoch = Instant::now();
    let gate = Arc::new(RoundGate {
        arrived: (0..total).map(|_| AtomicUsize::new(0)).collect(),
        targets: std::sync::OnceLock::new(),
        notify: Notify::new(),
    });
    let (stop, stopped) = watch::channel(false);
    eprintln!(
        "latency: opening {subscribers} subscribers on {} ({} nodes)",
        if channels == 1 { latency_channel(0, 1) } else { format!("{channels} channels") },
        nodes.len()
    );
    let ports: Vec<u16> = nodes.iter().map(|server| server.port).collect();
    let opened = open_connections(
        "latency",
        &ports,
        subscribers,
        connect_concurrency,
        |index| Some(latency_channel(index, channels)),
        |_, node, ws| tokio::spawn(latency_subscriber(ws, node, epoch, total, gate.clone(), stopped.clone())),
    )
    .await;
    let connected = opened.tasks.len();
    let mut targets = vec![0usize; channels];
    for &channel in &opened.indices {
        targets[channel % channels] += 1;
    }
    let _ = gate.targets.set(targets);
    tokio::time::sleep(Duration::from_millis(500)).await;
    match rate {
        Some(rate) => eprintln!(
            "latency: {connected} subscribers; {warmup_rounds} warm-up + {rounds} measured triggers at {rate} per second"
        ),
        None => eprintln!("latency: {connected} subscribers; {warmup_rounds} warm-up + {rounds} measured rounds"),
    }

    let clock = CpuClock::start_all(nodes);
    let mut calls: Vec<(String, Duration)> = Vec::with_capacity(total);
    match rate {
        None => {
            for round in 0..total {
                let (status, took) = latency_trigger(api, round, channels, epoch).await;
                let deadline = tokio::time::Instant::now() + round_timeout;
                while !gate.complete(round) {
                    if tokio::time::timeout_at(deadline, gate.notify.notified()).await.is_err() {
                        break;
                    }
                }
                calls.push((status, took));
                if (round + 1) % 10 == 0 || round + 1 == total {
                    eprintln!(
                        "  [latency] round {}/{total}: trigger {:.2} ms, {}/{} received",
                        round + 1,
                        took.as_secs_f64() * 1e3,
                        gate.count(round),
                        gate.target(round)
                    );
                }
                tokio::time::sleep(pause).await;
            }
        }
        Some(rate) => {
            let start = tokio::time::Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let mut tasks = Vec::with_capacity(total);
            for round in 0..total {
                tokio::time::sleep_until(start + interval.mul_f64(round as f64)).await;
                let api = api.clone();
                tasks.push(tokio::spawn(async move { latency_trigger(&api, round, channels, epoch).await }));
            }
            for task in tasks {
                calls.push(task.await.unwrap_or_else(|error| (format!("error: {error}"), Duration::ZERO)));
            }
            let deadline = Instant::now() + round_timeout;
            while !(0..total).all(|round| gate.complete(round)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            eprintln!(
                "  [latency] {total} triggers in {:.1} s; {} rounds complete",
                start.elapsed().as_secs_f64(),
                (0..total).filter(|&round| gate.complete(round)).count()
            );
        }
    }
    let cpu = clock.stop_all(nodes);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut trigger_us = Vec::with_capacity(rounds);
    let mut incomplete_rounds = 0;
    let mut expected = 0u64;
    for (round, (status, took)) in calls.into_iter().enumerate().skip(warmup_rounds) {
        *statuses.entry(status).or_default() += 1;
        trigger_us.push(took.as_micros() as u64);
        expected += gate.target(round) as u64;
        if !gate.complete(round) {
            incomplete_rounds += 1;
        }
    }
    let deliveries: u64 = (0..total).map(|round| gate.count(round) as u64).sum();
    let _ = stop.send(true);
    let received = join_all(opened.tasks, Duration::from_secs(30)).await;

    let mut samples_us = Vec::with_capacity(connected * rounds);
    let mut node_samples_us = vec![Vec::new(); nodes.len()];
    let mut last_ns = vec![0u64; total];
    let mut all: Vec<(u32, u64)> = Vec::new();
    let mut dropped = 0;
    let mut seen = 0u64;
    for received in &received {
        let Some(received) = received else {
            dropped += 1;
            continue;
        };
        if received.ending == Ending::Dropped {
            dropped += 1;
        }
        for &(round, nanos) in &received.samples {
            let round_index = round as usize;
            if round_index < warmup_rounds || round_index >= total {
                continue;
            }
            seen += 1;
            samples_us.push(nanos / 1000);
            node_samples_us[received.node].push(nanos / 1000);
            last_ns[round_index] = last_ns[round_index].max(nanos);
            all.push((round, nanos / 1000));
        }
    }
    samples_us.sort_unstable();
    for samples in &mut node_samples_us {
        samples.sort_unstable();
    }
    let mut last_us: Vec<u64> = last_ns[warmup_rounds..].iter().map(|nanos| nanos / 1000).collect();
    last_us.sort_unstable();
    trigger_us.sort_unstable();
    all.sort_unstable_by_key(|&(_, micros)| std::cmp::Reverse(micros));
    all.truncate(5);
    Ok(LatencyResult {
        subscribers: connected,
        failed: opened.failed,
        errors: opened.errors,
        connect_secs: opened.elapsed.as_secs_f64(),
        rounds,
        warmup_rounds,
        samples_us,
        node_samples_us,
        last_us,
        trigger_us,
        statuses,
        missing: expected.saturating_sub(seen),
        incomplete_rounds,
        dropped,
        worst: all,
        cpu,
        deliveries,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. HTTP trigger throughput

/// Counts the load events one subscriber receives into `delivered[node]`.
async fn counting_subscriber(
    mut ws: Ws,
    node: usize,
    delivered: Arc<Vec<AtomicU64>>,
    mut stop: watch::Receiver<bool>,
) -> Ending {
    loop {
        tokio::select! {
            biased;
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str().contains("\"bench-load\"") {
                        delivered[node].fetch_add(1, Ordering::Relaxed);
                    } else {
                        answer_ping(&mut ws, text.as_str()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ending::Dropped,
                Some(Ok(_)) => {}
            },
            _ = stopped(&mut stop) => {
                close(ws).await;
                return Ending::Stopped;
            }
        }
    }
}

/// What one HTTP worker did.
#[derive(Default)]
struct WorkerResult {
    statuses: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

async fn trigger_worker(api: Api, worker: usize, deadline: Instant, max_requests: u64) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut sent = 0u64;
    while sent < max_requests && Instant::now() < deadline {
        let data = format!("{{\"w\":{worker},\"n\":{sent}}}");
        let call = Instant::now();
        let status = match api.trigger(THROUGHPUT_CHANNEL, "bench-load", &data).await {
            Ok(status) => status.to_string(),
            Err(error) => format!("error: {error:#}"),
        };
        result.latencies_us.push(call.elapsed().as_micros() as u64);
        *result.statuses.entry(status).or_default() += 1;
        sent += 1;
    }
    result
}

const THROUGHPUT_CHANNEL: &str = "bench-throughput";

/// The load of the throughput measurement (`--throughput-subscribers`, `--concurrency`, …).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThroughputLoad {
    pub(crate) subscribers: usize,
    /// Trigger requests in flight at once (one keep-alive connection each).
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    /// WebSocket handshakes in flight at once.
    pub(crate) connect_concurrency: usize,
}

pub(crate) struct ThroughputResult {
    pub(crate) subscribers: usize,
    pub(crate) failed: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) concurrency: usize,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Request latency, microseconds, sorted.
    pub(crate) latencies_us: Vec<u64>,
    /// Events the subscribers received, and how many they should have.
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    /// The deliveries per node (subscribers connected to `nodes[i]`).
    pub(crate) node_delivered: Vec<u64>,
    pub(crate) dropped: usize,
    /// CPU used while the triggers were fired and their deliveries arrived (the servers' together).
    pub(crate) cpu: Cpu,
}

impl ThroughputResult {
    pub(crate) fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// Events delivered to the subscribers per second of firing.
    pub(crate) fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
}

/// `load.concurrency` workers fire triggers at `api` for `load.duration`; `load.subscribers`
/// subscribers spread over `nodes` count what they receive (until everything arrived, or 15 s
/// after the firing stopped).
pub(crate) async fn throughput(
    nodes: &[Server],
    api: &Api,
    load: &ThroughputLoad,
) -> anyhow::Result<ThroughputResult> {
    let ThroughputLoad { subscribers, concurrency, duration, connect_concurrency } = *load;
    let delivered: Arc<Vec<AtomicU64>> = Arc::new(nodes.iter().map(|_| AtomicU64::new(0)).collect());
    let total =
        |delivered: &[AtomicU64]| delivered.iter().map(|count| count.load(Ordering::Relaxed)).sum::<u64>();
    let (stop, stopped) = watch::channel(false);
    eprintln!(
        "throughput: opening {subscribers} subscribers on {THROUGHPUT_CHANNEL} ({} nodes)",
        nodes.len()
    );
    let ports: Vec<u16> = nodes.iter().map(|server| server.port).collect();
    let opened = open_connections(
        "throughput",
        &ports,
        subscribers,
        connect_concurrency,
        |_| Some(THROUGHPUT_CHANNEL.to_owned()),
        |_, node, ws| tokio::spawn(counting_subscriber(ws, node, delivered.clone(), stopped.clone())),
    )
    .await;
    let connected = opened.tasks.len();
    eprintln!("throughput: {concurrency} workers for {:.0} s", duration.as_secs_f64());
    let clock = CpuClock::start_all(nodes);
    let started = Instant::now();
    let deadline = started + duration;
    // A cap on the count too, far above what a loopback server answers in the time.
    let max_requests = 2_000_000;
    let workers: Vec<JoinHandle<WorkerResult>> = (0..concurrency.max(1))
        .map(|worker| tokio::spawn(trigger_worker(api.clone(), worker, deadline, max_requests)))
        .collect();
    let outputs = join_all(workers, duration + Duration::from_secs(30)).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies_us = Vec::new();
    for output in outputs.into_iter().flatten() {
        for (status, count) in output.statuses {
            *statuses.entry(status).or_default() += count;
        }
        latencies_us.extend(output.latencies_us);
    }
    latencies_us.sort_unstable();
    let requests: u64 = statuses.values().sum();
    let ok = statuses.get("200").copied().unwrap_or(0);
    let expected = ok * connected as u64;
    eprintln!(
        "throughput: {requests} requests in {seconds:.1} s; waiting for deliveries ({}/{expected})",
        total(&delivered)
    );
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    while total(&delivered) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The CPU until every delivery arrived (or the drain gave up), to divide by the deliveries.
    let cpu = clock.stop_all(nodes);
    let _ = stop.send(true);
    let endings = join_all(opened.tasks, Duration::from_secs(30)).await;
    let dropped = endings.iter().filter(|ending| **ending != Some(Ending::Stopped)).count();
    Ok(ThroughputResult {
        subscribers: connected,
        failed: opened.failed,
        errors: opened.errors,
        concurrency,
        seconds,
        requests,
        ok,
        statuses,
        latencies_us,
        delivered: total(&delivered),
        expected,
        node_delivered: delivered.iter().map(|count| count.load(Ordering::Relaxed)).collect(),
        dropped,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn parses_ticks() {
        let frame = r#"{"event":"bench-tick","channel":"bench-latency","data":"{\"r\":3,\"t\":12345}"}"#;
        assert_eq!(parse_tick(frame), Some((3, 12345)));
        assert_eq!(parse_tick(r#"{"event":"pusher:ping","data":"{}"}"#), None);
    }
}
