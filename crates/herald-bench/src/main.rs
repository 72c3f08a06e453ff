//! `herald-bench`: starts a herald server as a child process on 127.0.0.1 and measures
//! 1. its memory per idle subscribed connection,
//! 2. broadcast latency from the HTTP trigger to every subscriber,
//! 3. HTTP trigger throughput,
//! 4. the notification layer: accepted domain events per second and ingest → subscriber latency,
//!    each on a server of its own with a fresh SQLite file and a fresh PostgreSQL database,
//! 6. pusher-js's HTTP fallback (`--only http-transports`, not run by default): memory per idle
//!    `xhr_streaming` session and broadcast latency over it, next to WebSocket in the same run,
//! 5. cross-node delivery in a cluster (`--only cluster`, not run by default): the latency and
//!    throughput of 2 and 3 on one node, on one node with Redis, and on several nodes sharing
//!    Redis and a fresh PostgreSQL database,
//!
//! then prints a Markdown table (or JSON with `--json`) and kills the server.
//! Every loop is bounded in count and time; a watchdog kills everything after `--max-runtime`.

mod client;
mod cluster;
mod compare;
#[cfg(test)]
mod golden;
mod http_transports;
mod ingest;
mod instructions;
mod peers;
mod phases;
mod postgres;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use crate::cluster::{ClusterConfig, ClusterResults};
use crate::ingest::{Backend, IngestConfig, IngestResults};
use crate::phases::{
    mib, percentile, LatencyLoad, LatencyResult, MemoryResult, ThroughputLoad, ThroughputResult,
};
use crate::server::{LogSummary, Server};

/// The target of the issue: server memory per idle subscribed connection, bytes (8 KiB).
const MEMORY_TARGET_BYTES: f64 = 8.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Memory,
    Latency,
    Throughput,
    Ingest,
    Cluster,
    /// Rate-paced broadcasts (`--fanout`): latency and CPU per delivery at a publish rate
    Fanout,
    /// Instructions per delivery counted by callgrind on a scripted fan-out (needs valgrind)
    Instructions,
    /// pusher-js's HTTP fallback next to WebSocket: memory per idle session, latency
    HttpTransports,
}

/// A peer the bench knows how to install and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    Soketi,
}

/// `--fanout` scenario `SUBSCRIBERS/CHANNELS@RATE`: subscribers spread over channels, one
/// trigger per 1/RATE s, round-robin over the channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FanoutSpec {
    pub(crate) subscribers: usize,
    pub(crate) channels: usize,
    pub(crate) rate: f64,
}

impl std::fmt::Display for FanoutSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.subscribers, self.channels, self.rate)
    }
}

fn parse_fanout(text: &str) -> Result<FanoutSpec, String> {
    let error = || format!("expected SUBSCRIBERS/CHANNELS@RATE (e.g. 5000/1@20), got {text:?}");
    let (counts, rate) = text.split_once('@').ok_or_else(error)?;
    let (subscribers, channels) = counts.split_once('/').ok_or_else(error)?;
    let spec = FanoutSpec {
        subscribers: subscribers.trim().parse().map_err(|_| error())?,
        channels: channels.trim().parse().map_err(|_| error())?,
        rate: rate.trim().parse().map_err(|_| error())?,
    };
    if spec.subscribers == 0 || spec.channels == 0 || !(spec.rate > 0.0 && spec.rate <= 100_000.0) {
        return Err(error());
    }
    Ok(spec)
}

#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Benchmark a herald binary: memory per idle connection, broadcast latency, trigger throughput, \
             domain-event ingest, cross-node delivery in a cluster"
)]
struct Cli {
    /// The herald binary to run [default: `herald` next to this executable]
    #[arg(long, value_name = "PATH")]
    herald_bin: Option<PathBuf>,
    /// Which measurements to run (comma-separated); `cluster` (needs Redis and PostgreSQL),
    /// `fanout` and `instructions` (needs valgrind) only when named
    #[arg(long, value_delimiter = ',', default_value = "memory,latency,throughput,ingest")]
    only: Vec<Phase>,
    /// Fan-out scenarios, SUBSCRIBERS/CHANNELS@RATE (comma-separated): subscribers spread over
    /// channels, triggers at RATE per second round-robin over the channels, latency and CPU per
    /// delivery measured
    #[arg(long, value_delimiter = ',', value_parser = parse_fanout, default_value = "5000/1@4,5000/1@20,5000/1000@1000")]
    fanout: Vec<FanoutSpec>,
    /// Fan-out: seconds of triggers per scenario (plus one second of warm-up)
    #[arg(long, default_value_t = 10.0)]
    fanout_secs: f64,
    /// Peers to measure in the same run with the same phases (memory, latency, throughput,
    /// fanout), each after herald on a fresh process: `soketi` (installed from npm into
    /// --peers-dir)
    #[arg(long, value_delimiter = ',')]
    peer: Vec<Peer>,
    /// Any other Pusher-protocol server binary to measure as a peer (see --peer-arg, --peer-env;
    /// the contract is in docs/benchmarks.md)
    #[arg(long, value_name = "PATH")]
    peer_bin: Option<PathBuf>,
    /// --peer-bin: an argument (repeatable); `{port}`, `{port2}`, `{app_id}`, `{app_key}`,
    /// `{app_secret}` are replaced
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    peer_arg: Vec<String>,
    /// --peer-bin: environment KEY=VALUE (repeatable), with the same replacements
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    peer_env: Vec<(String, String)>,
    /// --peer-bin: its name in the report [default: the file name]
    #[arg(long)]
    peer_name: Option<String>,
    /// Where peers are installed (never the repository's tree: `target/` is ignored)
    #[arg(long, default_value = "target/peers")]
    peers_dir: PathBuf,
    /// HTTP transports: idle subscribed sessions per transport for the memory reading
    #[arg(long, default_value_t = 2_000)]
    http_sessions: usize,
    /// HTTP transports: subscribers of the latency channel per transport (rounds: --rounds)
    #[arg(long, default_value_t = 200)]
    http_subscribers: usize,
    /// Instructions: subscribers on the one channel
    #[arg(long, default_value_t = 500)]
    instructions_subscribers: usize,
    /// Instructions: events triggered (the baseline run triggers none)
    #[arg(long, default_value_t = 100)]
    instructions_events: usize,
    /// Instructions: keep callgrind's output files in this directory (for `callgrind_annotate`)
    #[arg(long, value_name = "DIR")]
    callgrind_dir: Option<PathBuf>,
    /// Memory: idle subscribed connections to open
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Memory: public channels the idle connections are spread over (0: connect only, no
    /// subscription, to compare)
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Memory: seconds to let the server settle before reading its RSS
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// Memory: after the idle reading, trigger this many events on every idle channel at once
    /// (keep it under the server's outbox_capacity, 256), wait until every connection has them,
    /// settle, and read the RSS again: memory per connection after a burst. 0: no burst
    #[arg(long, default_value_t = 0)]
    burst_events: usize,
    /// Memory: bytes of event data per burst event
    #[arg(long, default_value_t = 1024)]
    burst_bytes: usize,
    /// WebSocket handshakes in flight at once
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Latency: subscribers on the broadcast channel
    #[arg(long, default_value_t = 5_000)]
    subscribers: usize,
    /// Latency: measured rounds (one trigger each)
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Latency: rounds sent first and not counted
    #[arg(long, default_value_t = 2)]
    warmup_rounds: usize,
    /// Latency: milliseconds between one round reaching everyone and the next trigger
    #[arg(long, default_value_t = 100)]
    pause_ms: u64,
    /// Throughput: concurrent HTTP requests (keep-alive connections)
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Throughput: seconds to fire triggers for
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Throughput: subscribers on the target channel (each trigger is delivered to all)
    #[arg(long, default_value_t = 100)]
    throughput_subscribers: usize,
    /// Ingest: backends to measure, each on servers of its own (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    ingest_backends: Vec<Backend>,
    /// Ingest: a database on the PostgreSQL server (127.0.0.1 only) the bench connects to, to
    /// create a fresh database for each server and drop it afterwards
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Ingest: concurrent signed ingest clients (keep-alive connections)
    #[arg(long, default_value_t = 8)]
    ingest_clients: usize,
    /// Ingest: seconds each load step sends for
    #[arg(long, default_value_t = 10.0)]
    ingest_duration: f64,
    /// Ingest: events per request, one load step each (comma-separated; 1 to 100)
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    ingest_batch: Vec<usize>,
    /// Ingest: after a load step, seconds to wait at most for the queue to deliver the backlog
    #[arg(long, default_value_t = 120.0)]
    ingest_drain_secs: f64,
    /// Ingest latency: single events sent one at a time and measured
    #[arg(long, default_value_t = 200)]
    ingest_events: usize,
    /// Ingest latency: events sent first and not counted
    #[arg(long, default_value_t = 5)]
    ingest_warmup: usize,
    /// Ingest latency: milliseconds between one event's broadcast arriving and the next ingest
    #[arg(long, default_value_t = 50)]
    ingest_interval_ms: u64,
    /// Cluster: nodes sharing Redis in the cluster set-up (subscribers spread evenly over them,
    /// triggers sent to the first); the latency and throughput loads are those of phases 2 and 3
    #[arg(long, default_value_t = 3)]
    cluster_nodes: usize,
    /// Cluster: the Redis the nodes share (127.0.0.1, no password); each run uses a key prefix
    /// of its own and removes its keys afterwards. The database is a fresh one on --postgres-url
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Extra environment for the server, KEY=VALUE (repeatable); e.g. MALLOC_ARENA_MAX=2 or
    /// LD_PRELOAD=... to compare allocators
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// The server's log filter (HERALD_LOG); its spans and log lines cost memory and time too
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Print the results as JSON on stdout instead of the Markdown table
    #[arg(long)]
    json: bool,
    /// Seconds after which the watchdog kills the server and exits (whatever is running)
    #[arg(long, default_value_t = 900)]
    max_runtime: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn default_herald_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    Ok(me.with_file_name("herald"))
}

/// The bench's own soft limit on open files (each connection is one).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let bin = match &cli.herald_bin {
        Some(bin) => bin.clone(),
        None => default_herald_bin()?,
    };
    if cli.ingest_batch.iter().any(|&batch| !(1..=100).contains(&batch)) {
        anyhow::bail!("--ingest-batch: each batch is 1 to 100 events");
    }
    let largest = [
        (cli.only.contains(&Phase::Memory), cli.connections),
        (cli.only.contains(&Phase::Latency), cli.subscribers),
        (cli.only.contains(&Phase::Throughput), cli.throughput_subscribers),
        (cli.only.contains(&Phase::Cluster), cli.subscribers.max(cli.throughput_subscribers)),
        (
            cli.only.contains(&Phase::Fanout),
            cli.fanout.iter().map(|spec| spec.subscribers).max().unwrap_or(0),
        ),
        (cli.only.contains(&Phase::Instructions), cli.instructions_subscribers),
        (cli.only.contains(&Phase::HttpTransports), cli.http_sessions + cli.http_subscribers),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, count)| *count)
    .max()
    .unwrap_or(0);
    if let Some(limit) = open_files_limit() {
        if (largest as u64) + 200 > limit {
            anyhow::bail!(
                "{largest} connections need more open files than this process may have ({limit}); \
                 raise `ulimit -n` or ask for fewer"
            );
        }
    }

    let max_runtime = Duration::from_secs(cli.max_runtime);
    std::thread::spawn(move || {
        std::thread::sleep(max_runtime);
        eprintln!("herald-bench: --max-runtime reached; killing the servers and exiting");
        server::kill_all();
        postgres::drop_leftover_databases();
        cluster::delete_leftover_keys();
        std::process::exit(3);
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Memory, latency, throughput and fan-out share one server (and each peer one of its own);
    // the ingest phase starts its own.
    let main_phases = [Phase::Memory, Phase::Latency, Phase::Throughput, Phase::Fanout]
        .iter()
        .any(|p| cli.only.contains(p));
    let mut targets: Vec<Target> = Vec::new();
    let mut peer_failures: Vec<String> = Vec::new();
    if main_phases {
        let mut specs: Vec<Option<peers::PeerSpec>> = vec![None];
        for peer in &cli.peer {
            match peer {
                Peer::Soketi => match peers::soketi(&cli.peers_dir) {
                    Ok(spec) => specs.push(Some(spec)),
                    Err(error) => peer_failures.push(format!("soketi: {error:#}")),
                },
            }
        }
        if let Some(path) = &cli.peer_bin {
            let name = cli.peer_name.clone().unwrap_or_else(|| {
                path.file_name().map_or_else(|| "peer".to_owned(), |name| name.to_string_lossy().into_owned())
            });
            specs.push(Some(peers::PeerSpec {
                name,
                program: path.clone(),
                args: cli.peer_arg.clone(),
                env: cli.peer_env.clone(),
                cwd: None,
            }));
        }
        for spec in specs {
            let (name, started) = match &spec {
                None => ("herald".to_owned(), Server::start(&bin, &cli.server_log, &cli.server_env, None)),
                Some(spec) => (spec.name.clone(), spec.start()),
            };
            let Some(server) = settle(started, spec.is_some(), &name, &mut peer_failures)? else { continue };
            eprintln!("herald-bench: started {name} (pid {}) on 127.0.0.1:{}", server.pid, server.port);
            let outcome = runtime.block_on(measure(&cli, &server));
            let exited = server.exited();
            let log = server.stop();
            let Some(results) = settle(outcome, spec.is_some(), &name, &mut peer_failures)? else { continue };
            if let Some(status) = exited {
                eprintln!("herald-bench: WARNING: {name} exited during the run ({status})");
            }
            targets.push(Target { name, results, log });
        }
    }
    let ingest_config = IngestConfig {
        bin: bin.clone(),
        server_log: cli.server_log.clone(),
        server_env: cli.server_env.clone(),
        backends: cli.ingest_backends.clone(),
        postgres_url: cli.postgres_url.clone(),
        clients: cli.ingest_clients.max(1),
        duration: Duration::from_secs_f64(cli.ingest_duration.clamp(0.1, 600.0)),
        batches: cli.ingest_batch.clone(),
        drain: Duration::from_secs_f64(cli.ingest_drain_secs.clamp(0.0, 600.0)),
        events: cli.ingest_events.min(100_000),
        warmup: cli.ingest_warmup.min(1_000),
        interval: Duration::from_millis(cli.ingest_interval_ms.min(10_000)),
    };
    let ingest = cli.only.contains(&Phase::Ingest).then(|| runtime.block_on(ingest::run(&ingest_config)));
    let cluster_config = ClusterConfig {
        bin: bin.clone(),
        server_log: cli.server_log.clone(),
        server_env: cli.server_env.clone(),
        postgres_url: cli.postgres_url.clone(),
        redis_url: cli.redis_url.clone(),
        nodes: cli.cluster_nodes.clamp(1, 26),
        latency: latency_load(&cli),
        throughput: throughput_load(&cli),
    };
    let cluster = cli.only.contains(&Phase::Cluster).then(|| runtime.block_on(cluster::run(&cluster_config)));
    let instructions = cli.only.contains(&Phase::Instructions).then(|| {
        runtime.block_on(instructions::run(
            &bin,
            cli.instructions_subscribers,
            cli.instructions_events,
            cli.connect_concurrency,
            cli.callgrind_dir.as_deref(),
        ))
    });
    let http_config = http_transports::HttpConfig {
        bin: bin.clone(),
        server_log: cli.server_log.clone(),
        server_env: cli.server_env.clone(),
        sessions: cli.http_sessions.max(1),
        subscribers: cli.http_subscribers.max(1),
        rounds: cli.rounds.max(1),
        connect_concurrency: cli.connect_concurrency,
        settle: Duration::from_secs_f64(cli.settle_secs.clamp(0.0, 120.0)),
    };
    let http = cli
        .only
        .contains(&Phase::HttpTransports)
        .then(|| runtime.block_on(http_transports::run(&http_config)));
    let other = Other {
        http_config: &http_config,
        http: http.as_ref(),
        peer_failures,
        instructions: instructions.as_ref(),
        ingest_config: &ingest_config,
        ingest: ingest.as_ref(),
        cluster_config: &cluster_config,
        cluster: cluster.as_ref(),
    };
    // Give the connection tasks' sockets back before printing.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if cli.json {
        println!("{:#}", to_json(&cli, &targets, &other, &bin));
    } else {
        print!("{}", to_markdown(&cli, &targets, &other));
    }
    Ok(())
}

/// One server measured by the shared phases: herald, or a peer.
struct Target {
    name: String,
    results: Results,
    log: LogSummary,
}

/// The phases that start servers of their own, with their configurations.
struct Other<'a> {
    http_config: &'a http_transports::HttpConfig,
    http: Option<&'a anyhow::Result<Vec<http_transports::TransportResult>>>,
    /// Peers that could not be installed, started or measured.
    peer_failures: Vec<String>,
    instructions: Option<&'a anyhow::Result<instructions::Instructions>>,
    ingest_config: &'a IngestConfig,
    ingest: Option<&'a IngestResults>,
    cluster_config: &'a ClusterConfig,
    cluster: Option<&'a ClusterResults>,
}

struct Results {
    memory: Option<MemoryResult>,
    latency: Option<LatencyResult>,
    throughput: Option<ThroughputResult>,
    fanout: Vec<(FanoutSpec, LatencyResult)>,
    idle_rss: u64,
    load_start: String,
    load_end: String,
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The latency phase's load, from the command line (the cluster phase uses it too).
fn latency_load(cli: &Cli) -> LatencyLoad {
    LatencyLoad {
        subscribers: cli.subscribers,
        rounds: cli.rounds,
        warmup_rounds: cli.warmup_rounds,
        connect_concurrency: cli.connect_concurrency,
        pause: Duration::from_millis(cli.pause_ms),
        channels: 1,
        rate: None,
        round_timeout: Duration::from_secs(10),
    }
}

/// A fan-out scenario's load: `--fanout-secs` of triggers at its rate after a second of warm-up.
fn fanout_load(cli: &Cli, spec: &FanoutSpec) -> LatencyLoad {
    LatencyLoad {
        subscribers: spec.subscribers,
        rounds: ((spec.rate * cli.fanout_secs.clamp(0.1, 600.0)).ceil() as usize).max(1),
        warmup_rounds: spec.rate.ceil() as usize,
        connect_concurrency: cli.connect_concurrency,
        pause: Duration::ZERO,
        channels: spec.channels,
        rate: Some(spec.rate),
        round_timeout: Duration::from_secs(10),
    }
}

/// The throughput phase's load, from the command line (the cluster phase uses it too).
fn throughput_load(cli: &Cli) -> ThroughputLoad {
    ThroughputLoad {
        subscribers: cli.throughput_subscribers,
        concurrency: cli.concurrency,
        duration: Duration::from_secs_f64(cli.duration.clamp(0.1, 600.0)),
        connect_concurrency: cli.connect_concurrency,
    }
}

/// Herald's failure ends the run; a peer's is noted (and that peer skipped: `None`).
fn settle<T>(
    result: anyhow::Result<T>,
    peer: bool,
    name: &str,
    failures: &mut Vec<String>,
) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if peer => {
            failures.push(format!("{name}: {error:#}"));
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

async fn measure(cli: &Cli, server: &Server) -> anyhow::Result<Results> {
    let api = client::Api::new(server.port)?;
    let idle_rss = server.memory()?.rss;
    let mut results = Results {
        memory: None,
        latency: None,
        throughput: None,
        fanout: Vec::new(),
        idle_rss,
        load_start: load_average(),
        load_end: String::new(),
    };
    if cli.only.contains(&Phase::Memory) {
        let settle = Duration::from_secs_f64(cli.settle_secs.clamp(0.0, 120.0));
        let burst = (cli.burst_events > 0).then_some(phases::Burst {
            events: cli.burst_events,
            bytes: cli.burst_bytes,
            concurrency: cli.concurrency,
        });
        results.memory = Some(
            phases::memory(
                server,
                &api,
                cli.connections,
                cli.channels,
                cli.connect_concurrency,
                settle,
                burst,
            )
            .await?,
        );
    }
    let nodes = std::slice::from_ref(server);
    if cli.only.contains(&Phase::Latency) {
        results.latency = Some(phases::latency(nodes, &api, &latency_load(cli)).await?);
    }
    if cli.only.contains(&Phase::Throughput) {
        results.throughput = Some(phases::throughput(nodes, &api, &throughput_load(cli)).await?);
    }
    if cli.only.contains(&Phase::Fanout) {
        for spec in &cli.fanout {
            let load = fanout_load(cli, spec);
            results.fanout.push((*spec, phases::latency(nodes, &api, &load).await?));
        }
    }
    results.load_end = load_average();
    Ok(results)
}

/// p50, p99 and max of sorted samples (µs), each as `ms`.
fn spread(sorted: &[u64]) -> [String; 3] {
    [50.0, 99.0, 100.0].map(|p| ms(percentile(sorted, p)))
}

/// `p50 / p99 / max` of sorted samples (µs).
fn p50_p99_max(sorted: &[u64]) -> String {
    spread(sorted).join(" / ")
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn cpu_text(cpu: &phases::Cpu) -> String {
    let wall = cpu.wall.max(1e-9);
    format!(
        "{:.1} s ({:.0}% of a core) / {:.1} s ({:.0}%) over {:.1} s; other processes {:.1} s",
        cpu.server,
        100.0 * cpu.server / wall,
        cpu.bench,
        100.0 * cpu.bench / wall,
        cpu.wall,
        cpu.others()
    )
}

/// The server's CPU per delivery: `1.20 + 0.40 = 1.60 µs (user + system)`.
pub(crate) fn per_delivery_text(cpu: &phases::Cpu, deliveries: u64) -> String {
    match cpu.per_delivery_us(deliveries) {
        Some((user, system, total)) => {
            format!("{user:.2} + {system:.2} = {total:.2} µs (user + system; {deliveries} deliveries)")
        }
        None => "— (no deliveries)".to_owned(),
    }
}

/// The server's CPU per delivery in the JSON report, microseconds.
pub(crate) fn per_delivery_json(cpu: &phases::Cpu, deliveries: u64) -> Value {
    let round = |value: f64| (value * 1000.0).round() / 1000.0;
    match cpu.per_delivery_us(deliveries) {
        Some((user, system, total)) => json!({
            "deliveries": deliveries,
            "user_us": round(user),
            "system_us": round(system),
            "total_us": round(total),
        }),
        None => Value::Null,
    }
}

fn cpu_json(cpu: &phases::Cpu) -> Value {
    let round = |value: f64| (value * 100.0).round() / 100.0;
    json!({
        "server_cpu_seconds": round(cpu.server),
        "server_user_cpu_seconds": round(cpu.server_user),
        "server_system_cpu_seconds": round(cpu.server_system),
        "bench_cpu_seconds": round(cpu.bench),
        "other_processes_cpu_seconds": round(cpu.others()),
        "wall_seconds": round(cpu.wall),
    })
}

fn statuses_text(statuses: &std::collections::BTreeMap<String, u64>) -> String {
    statuses.iter().map(|(status, count)| format!("{status}: {count}")).collect::<Vec<_>>().join(", ")
}

fn to_markdown(cli: &Cli, targets: &[Target], other: &Other<'_>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();
    for target in targets {
        if targets.len() > 1 {
            if !out.is_empty() {
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "### {}\n", target.name);
        }
        let mut target_notes = Vec::new();
        main_table(&mut out, &mut target_notes, &target.results, &target.log);
        let prefix = if targets.len() > 1 { format!("{}: ", target.name) } else { String::new() };
        notes.extend(target_notes.into_iter().map(|note| format!("{prefix}{note}")));
    }
    if targets.len() > 1 {
        let _ = writeln!(out, "\n### Side by side (same run)\n");
        out.push_str(&compare::to_markdown(targets));
    }
    for failure in &other.peer_failures {
        notes.push(format!("peer not measured: {failure}"));
    }
    if let Some(instructions) = other.instructions {
        if !out.is_empty() {
            let _ = writeln!(out);
        }
        out.push_str(&instructions::to_markdown(instructions));
    }
    if let Some(ingest) = other.ingest {
        if !out.is_empty() {
            let _ = writeln!(out);
        }
        out.push_str(&ingest::to_markdown(other.ingest_config, ingest, &mut notes));
    }
    if let Some(cluster) = other.cluster {
        if !out.is_empty() {
            let _ = writeln!(out);
        }
        out.push_str(&cluster::to_markdown(other.cluster_config, cluster, &mut notes));
    }
    if let Some(http) = other.http {
        if !out.is_empty() {
            let _ = writeln!(out);
        }
        out.push_str(&http_transports::to_markdown(other.http_config, http));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(
        out,
        "\n(`herald-bench` with --only {} --connections {} --channels {} --subscribers {} --rounds {} --concurrency {} --duration {} \
         --throughput-subscribers {} \
         --ingest-backends {} --ingest-clients {} --ingest-duration {} --ingest-batch {} --ingest-events {} --ingest-interval-ms {} \
         --cluster-nodes {} --http-sessions {} --http-subscribers {} --server-log {} --fanout {} --fanout-secs {}{}{})",
        cli.only
            .iter()
            .map(|phase| phase.to_possible_value().map_or_else(String::new, |value| value.get_name().to_owned()))
            .collect::<Vec<_>>()
            .join(","),
        cli.connections,
        cli.channels,
        cli.subscribers,
        cli.rounds,
        cli.concurrency,
        cli.duration,
        cli.throughput_subscribers,
        cli.ingest_backends.iter().map(|b| format!("{b:?}").to_lowercase()).collect::<Vec<_>>().join(","),
        cli.ingest_clients,
        cli.ingest_duration,
        cli.ingest_batch.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","),
        cli.ingest_events,
        cli.ingest_interval_ms,
        cli.cluster_nodes,
        cli.http_sessions,
        cli.http_subscribers,
        cli.server_log,
        cli.fanout.iter().map(FanoutSpec::to_string).collect::<Vec<_>>().join(","),
        cli.fanout_secs,
        cli.peer.iter().map(|peer| format!(" --peer {peer:?}").to_lowercase()).collect::<String>(),
        cli.peer_bin.as_ref().map(|path| format!(" --peer-bin {}", path.display())).unwrap_or_default()
    );
    out
}

/// The table of the memory, latency and throughput phases (one server).
fn main_table(out: &mut String, notes: &mut Vec<String>, results: &Results, log: &LogSummary) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "| Measurement | Result |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(out, "| Server RSS at start | {:.1} MiB |", mib(results.idle_rss));
    let _ = writeln!(out, "| Load average at start / end | {} / {} |", results.load_start, results.load_end);
    if let Some(memory) = &results.memory {
        let per = memory.per_connection();
        let verdict = if per < MEMORY_TARGET_BYTES { "meets" } else { "misses" };
        let what = if memory.channels == 0 {
            "Idle connections (not subscribed)".to_owned()
        } else {
            format!("Idle subscribed connections ({} channels)", memory.channels)
        };
        let _ = writeln!(
            out,
            "| {what} | {} of {} (opened in {:.1} s) |",
            memory.connected, memory.requested, memory.connect_secs
        );
        let _ = writeln!(
            out,
            "| Server RSS before → after (+{:.0} s settle) | {:.1} MiB → {:.1} MiB |",
            memory.settle_secs,
            mib(memory.before.rss),
            mib(memory.after.rss)
        );
        let label = if memory.channels == 0 {
            "Memory per idle connection (not subscribed)"
        } else {
            "Memory per idle subscribed connection"
        };
        let _ = writeln!(
            out,
            "| **{label}** | **{:.0} B = {:.2} KiB** ({verdict} the < 8 KiB target) |",
            per,
            per / 1024.0
        );
        let _ =
            writeln!(out, "| … of which anonymous (heap + stacks) | {:.0} B |", memory.per_connection_anon());
        let _ = writeln!(out, "| Server threads with the connections open | {} |", memory.after.threads);
        if let (Some(burst), Some(per_after)) = (&memory.burst, memory.per_connection_after_burst()) {
            let _ = writeln!(
                out,
                "| Burst: {} events × {} B on each channel | {} of {} delivered in {:.1} s; status codes {} |",
                burst.burst.events,
                burst.burst.bytes,
                burst.delivered,
                burst.expected,
                burst.secs,
                statuses_text(&burst.statuses)
            );
            let _ = writeln!(
                out,
                "| **Memory per connection after the burst** (+{:.0} s settle) | **{:.0} B = {:.2} KiB** ({:+.0} B over idle; RSS {:.1} MiB) |",
                memory.settle_secs,
                per_after,
                per_after / 1024.0,
                per_after - per,
                mib(burst.after.rss)
            );
            if burst.delivered < burst.expected {
                notes.push(format!(
                    "memory: {} of {} burst deliveries missing",
                    burst.expected - burst.delivered,
                    burst.expected
                ));
            }
        }
        if let Some(after_close) = &memory.after_close {
            let _ = writeln!(out, "| Server RSS after closing them | {:.1} MiB |", mib(after_close.rss));
        }
        if memory.failed > 0 || memory.dropped > 0 {
            notes.push(format!(
                "memory: {} handshakes failed, {} connections dropped by the server while idle; first errors: {:?}",
                memory.failed, memory.dropped, memory.errors
            ));
        }
    }
    if let Some(latency) = &results.latency {
        let samples = &latency.samples_us;
        let _ = writeln!(
            out,
            "| Broadcast: subscribers × measured rounds | {} × {} (+{} warm-up), {} samples (subscribers connected in {:.1} s) |",
            latency.subscribers,
            latency.rounds,
            latency.warmup_rounds,
            samples.len(),
            latency.connect_secs
        );
        let _ = writeln!(out, "| **Broadcast latency p50 / p99 / max** | **{}** |", p50_p99_max(samples));
        let [p50, p99, max] = spread(&latency.last_us);
        let _ = writeln!(
            out,
            "| **Time until the last subscriber has it, p50 / p99** (per round) | **{p50} / {p99}** (max {max}) |"
        );
        let _ = writeln!(
            out,
            "| Trigger HTTP call during broadcast, p50 / max | {} / {} |",
            ms(percentile(&latency.trigger_us, 50.0)),
            ms(percentile(&latency.trigger_us, 100.0))
        );
        let _ = writeln!(out, "| CPU during the rounds: server / bench | {} |", cpu_text(&latency.cpu));
        let _ = writeln!(
            out,
            "| **Server CPU per delivery** (rounds) | **{}** |",
            per_delivery_text(&latency.cpu, latency.deliveries)
        );
        let _ = writeln!(out, "| Broadcast trigger status codes | {} |", statuses_text(&latency.statuses));
        if latency.missing > 0 || latency.dropped > 0 || latency.failed > 0 || latency.incomplete_rounds > 0 {
            notes.push(format!(
                "latency: {} deliveries missing, {} incomplete rounds, {} subscribers dropped, {} handshakes failed; first errors: {:?}",
                latency.missing, latency.incomplete_rounds, latency.dropped, latency.failed, latency.errors
            ));
        }
        if !latency.worst.is_empty() {
            notes.push(format!("latency: slowest samples (round, µs): {:?}", latency.worst));
        }
    }
    if let Some(throughput) = &results.throughput {
        let _ = writeln!(
            out,
            "| **HTTP trigger throughput** (concurrency {}, {:.1} s, {} subscribers) | **{:.0} requests/s** ({} requests) |",
            throughput.concurrency,
            throughput.seconds,
            throughput.subscribers,
            throughput.per_second(),
            throughput.requests
        );
        let _ = writeln!(out, "| Trigger status codes | {} |", statuses_text(&throughput.statuses));
        let _ = writeln!(
            out,
            "| Trigger request latency p50 / p99 | {} / {} |",
            ms(percentile(&throughput.latencies_us, 50.0)),
            ms(percentile(&throughput.latencies_us, 99.0))
        );
        let _ = writeln!(
            out,
            "| CPU while firing and delivering: server / bench | {} |",
            cpu_text(&throughput.cpu)
        );
        let _ = writeln!(
            out,
            "| **Server CPU per delivery** (throughput) | **{}** |",
            per_delivery_text(&throughput.cpu, throughput.delivered)
        );
        let _ = writeln!(
            out,
            "| Events delivered to the subscribers | {} of {} ({:.0} messages/s) |",
            throughput.delivered,
            throughput.expected,
            throughput.deliveries_per_second()
        );
        if throughput.ok != throughput.requests
            || throughput.delivered != throughput.expected
            || throughput.dropped > 0
            || throughput.failed > 0
        {
            notes.push(format!(
                "throughput: {} of {} requests were not 200, {} of {} deliveries missing, {} subscribers dropped, {} handshakes failed; first errors: {:?}",
                throughput.requests - throughput.ok,
                throughput.requests,
                throughput.expected.saturating_sub(throughput.delivered),
                throughput.expected,
                throughput.dropped,
                throughput.failed,
                throughput.errors
            ));
        }
    }
    for (spec, fanout) in &results.fanout {
        fanout_rows(out, notes, spec, fanout);
    }
    let _ =
        writeln!(out, "| Server log | {} WARN, {} ERROR, {} panics |", log.warnings, log.errors, log.panics);
    for sample in &log.samples {
        notes.push(format!("server log: {sample}"));
    }
}

/// The rows of one fan-out scenario.
fn fanout_rows(out: &mut String, notes: &mut Vec<String>, spec: &FanoutSpec, latency: &LatencyResult) {
    use std::fmt::Write as _;
    let samples = &latency.samples_us;
    let _ = writeln!(
        out,
        "| **Fan-out {} subscribers / {} channel(s) at {}/s**: p50 / p99 / max ({} triggers, {} samples) | **{}** |",
        latency.subscribers,
        spec.channels,
        spec.rate,
        latency.rounds,
        samples.len(),
        p50_p99_max(samples)
    );
    let _ = writeln!(
        out,
        "| … CPU: server / bench; **server CPU per delivery** | {}; **{}** |",
        cpu_text(&latency.cpu),
        per_delivery_text(&latency.cpu, latency.deliveries)
    );
    if latency.missing > 0 || latency.dropped > 0 || latency.failed > 0 || latency.incomplete_rounds > 0 {
        notes.push(format!(
            "fan-out {spec}: {} deliveries missing, {} incomplete rounds, {} subscribers dropped, {} handshakes failed; first errors: {:?}",
            latency.missing, latency.incomplete_rounds, latency.dropped, latency.failed, latency.errors
        ));
    }
}

fn to_json(cli: &Cli, targets: &[Target], other: &Other<'_>, bin: &std::path::Path) -> Value {
    let mut value = match targets.first() {
        Some(target) => main_json(cli, &target.results, &target.log, bin),
        None => json!({ "herald_bin": bin.display().to_string() }),
    };
    value["peers"] = targets
        .iter()
        .skip(1)
        .map(|target| {
            let mut peer = main_json(cli, &target.results, &target.log, bin);
            peer["name"] = json!(target.name);
            peer
        })
        .collect();
    value["peer_failures"] = json!(other.peer_failures);
    value["instructions"] = other.instructions.map_or(Value::Null, instructions::to_json);
    value["ingest"] = other.ingest.map_or(Value::Null, |ingest| ingest::to_json(other.ingest_config, ingest));
    value["cluster"] =
        other.cluster.map_or(Value::Null, |cluster| cluster::to_json(other.cluster_config, cluster));
    value["http_transports"] =
        other.http.map_or(Value::Null, |http| http_transports::to_json(other.http_config, http));
    value
}

fn main_json(cli: &Cli, results: &Results, log: &LogSummary, bin: &std::path::Path) -> Value {
    let memory = results.memory.as_ref().map(|memory| {
        json!({
            "connections_requested": memory.requested,
            "connections": memory.connected,
            "channels": memory.channels,
            "handshake_failures": memory.failed,
            "dropped_while_idle": memory.dropped,
            "connect_seconds": memory.connect_secs,
            "settle_seconds": memory.settle_secs,
            "rss_before_bytes": memory.before.rss,
            "rss_after_bytes": memory.after.rss,
            "rss_after_close_bytes": memory.after_close.map(|m| m.rss),
            "bytes_per_connection": memory.per_connection(),
            "anon_bytes_per_connection": memory.per_connection_anon(),
            "threads": memory.after.threads,
            "target_bytes": MEMORY_TARGET_BYTES,
            "meets_target": memory.per_connection() < MEMORY_TARGET_BYTES,
            "errors": memory.errors,
            "burst": memory.burst.as_ref().map(|burst| json!({
                "events_per_channel": burst.burst.events,
                "bytes_per_event": burst.burst.bytes,
                "statuses": burst.statuses,
                "delivered": burst.delivered,
                "expected": burst.expected,
                "seconds": burst.secs,
                "rss_after_bytes": burst.after.rss,
                "bytes_per_connection": memory.per_connection_after_burst(),
            })),
        })
    });
    let latency = results.latency.as_ref().map(latency_json);
    let throughput = results.throughput.as_ref().map(throughput_json);
    let fanout: Vec<Value> = results
        .fanout
        .iter()
        .map(|(spec, latency)| {
            let mut value = latency_json(latency);
            value["scenario"] = json!(spec.to_string());
            value["channels"] = json!(spec.channels);
            value["rate_per_second"] = json!(spec.rate);
            value
        })
        .collect();
    json!({
        "herald_bin": bin.display().to_string(),
        "arguments": {
            "connections": cli.connections,
            "channels": cli.channels,
            "subscribers": cli.subscribers,
            "rounds": cli.rounds,
            "concurrency": cli.concurrency,
            "duration": cli.duration,
            "burst_events": cli.burst_events,
            "burst_bytes": cli.burst_bytes,
            "server_log": cli.server_log,
            "server_env": cli.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "server_rss_at_start_bytes": results.idle_rss,
        "load_average_start": results.load_start,
        "load_average_end": results.load_end,
        "memory": memory,
        "latency": latency,
        "throughput": throughput,
        "fanout": fanout,
        "server_log": {
            "warnings": log.warnings,
            "errors": log.errors,
            "panics": log.panics,
            "samples": log.samples,
        },
    })
}

/// The latency measurement in the JSON report (the cluster phase's too).
fn latency_json(latency: &LatencyResult) -> Value {
    json!({
        "subscribers": latency.subscribers,
        "connect_seconds": latency.connect_secs,
        "rounds": latency.rounds,
        "warmup_rounds": latency.warmup_rounds,
        "samples": latency.samples_us.len(),
        "p50_us": percentile(&latency.samples_us, 50.0),
        "p99_us": percentile(&latency.samples_us, 99.0),
        "max_us": percentile(&latency.samples_us, 100.0),
        "last_subscriber_p50_us": percentile(&latency.last_us, 50.0),
        "last_subscriber_p99_us": percentile(&latency.last_us, 99.0),
        "last_subscriber_max_us": percentile(&latency.last_us, 100.0),
        "trigger_call_p50_us": percentile(&latency.trigger_us, 50.0),
        "trigger_call_p99_us": percentile(&latency.trigger_us, 99.0),
        "trigger_call_max_us": percentile(&latency.trigger_us, 100.0),
        "statuses": latency.statuses,
        "missing_deliveries": latency.missing,
        "incomplete_rounds": latency.incomplete_rounds,
        "dropped_subscribers": latency.dropped,
        "handshake_failures": latency.failed,
        "errors": latency.errors,
        "cpu": cpu_json(&latency.cpu),
        "server_cpu_per_delivery": per_delivery_json(&latency.cpu, latency.deliveries),
    })
}

/// The throughput measurement in the JSON report (the cluster phase's too).
fn throughput_json(throughput: &ThroughputResult) -> Value {
    json!({
        "concurrency": throughput.concurrency,
        "seconds": throughput.seconds,
        "subscribers": throughput.subscribers,
        "requests": throughput.requests,
        "requests_per_second": throughput.per_second(),
        "statuses": throughput.statuses,
        "latency_p50_us": percentile(&throughput.latencies_us, 50.0),
        "latency_p99_us": percentile(&throughput.latencies_us, 99.0),
        "delivered": throughput.delivered,
        "expected_deliveries": throughput.expected,
        "deliveries_per_second": throughput.deliveries_per_second(),
        "dropped_subscribers": throughput.dropped,
        "handshake_failures": throughput.failed,
        "errors": throughput.errors,
        "cpu": cpu_json(&throughput.cpu),
        "server_cpu_per_delivery": per_delivery_json(&throughput.cpu, throughput.delivered),
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_fanout, FanoutSpec};

    #[test]
    fn parses_fanout_scenarios() {
        assert_eq!(
            parse_fanout("5000/1000@1000"),
            Ok(FanoutSpec { subscribers: 5000, channels: 1000, rate: 1000.0 })
        );
        assert_eq!(parse_fanout("5000/1@0.5").map(|spec| spec.rate), Ok(0.5));
        assert_eq!(parse_fanout("5000/1@4").map(|spec| spec.to_string()), Ok("5000/1@4".to_owned()));
        for bad in ["5000@4", "5000/1", "0/1@4", "5000/0@4", "5000/1@0", "x/1@4"] {
            assert!(parse_fanout(bad).is_err(), "{bad}");
        }
    }
}
