//! `herald-bench`: starts a herald server as a child process on 127.0.0.1 and measures
//! 1. its memory per idle subscribed connection,
//! 2. broadcast latency from the HTTP trigger to every subscriber,
//! 3. HTTP trigger throughput,
//! 4. the notification layer: accepted domain events per second and ingest → subscriber latency,
//!    each on a server of its own with a fresh SQLite file and a fresh PostgreSQL database,
//! 5. cross-node delivery in a cluster (`--only cluster`, not run by default): the latency and
//!    throughput of 2 and 3 on one node, on one node with Redis, and on several nodes sharing
//!    Redis and a fresh PostgreSQL database,
//!
//! then prints a Markdown table (or JSON with `--json`) and kills the server.
//! Every loop is bounded in count and time; a watchdog kills everything after `--max-runtime`.

mod client;
mod cluster;
#[cfg(test)]
mod golden;
mod ingest;
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
    /// Which measurements to run (comma-separated); `cluster` (needs Redis and PostgreSQL) only
    /// when named
    #[arg(long, value_delimiter = ',', default_value = "memory,latency,throughput,ingest")]
    only: Vec<Phase>,
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
    // Memory, latency and throughput share one server; the ingest phase starts its own.
    let main_phases = [Phase::Memory, Phase::Latency, Phase::Throughput].iter().any(|p| cli.only.contains(p));
    let mut main = None;
    if main_phases {
        let server = Server::start(&bin, &cli.server_log, &cli.server_env, None)?;
        eprintln!(
            "herald-bench: started {} (pid {}) on 127.0.0.1:{}",
            bin.display(),
            server.pid,
            server.port
        );
        let outcome = runtime.block_on(measure(&cli, &server));
        let exited = server.exited();
        let log = server.stop();
        let results = outcome?;
        if let Some(status) = exited {
            eprintln!("herald-bench: WARNING: the server exited during the run ({status})");
        }
        main = Some((results, log));
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
    let other = Other {
        ingest_config: &ingest_config,
        ingest: ingest.as_ref(),
        cluster_config: &cluster_config,
        cluster: cluster.as_ref(),
    };
    // Give the connection tasks' sockets back before printing.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if cli.json {
        println!("{:#}", to_json(&cli, main.as_ref(), &other, &bin));
    } else {
        print!("{}", to_markdown(&cli, main.as_ref(), &other));
    }
    Ok(())
}

/// The phases that start servers of their own, with their configurations.
struct Other<'a> {
    ingest_config: &'a IngestConfig,
    ingest: Option<&'a IngestResults>,
    cluster_config: &'a ClusterConfig,
    cluster: Option<&'a ClusterResults>,
}

struct Results {
    memory: Option<MemoryResult>,
    latency: Option<LatencyResult>,
    throughput: Option<ThroughputResult>,
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

async fn measure(cli: &Cli, server: &Server) -> anyhow::Result<Results> {
    let api = client::Api::new(server.port)?;
    let idle_rss = server.memory()?.rss;
    let mut results = Results {
        memory: None,
        latency: None,
        throughput: None,
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
    results.load_end = load_average();
    Ok(results)
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

fn cpu_json(cpu: &phases::Cpu) -> Value {
    let round = |value: f64| (value * 100.0).round() / 100.0;
    json!({
        "server_cpu_seconds": round(cpu.server),
        "bench_cpu_seconds": round(cpu.bench),
        "other_processes_cpu_seconds": round(cpu.others()),
        "wall_seconds": round(cpu.wall),
    })
}

fn statuses_text(statuses: &std::collections::BTreeMap<String, u64>) -> String {
    statuses.iter().map(|(status, count)| format!("{status}: {count}")).collect::<Vec<_>>().join(", ")
}

fn to_markdown(cli: &Cli, main: Option<&(Results, LogSummary)>, other: &Other<'_>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();
    if let Some((results, log)) = main {
        main_table(&mut out, &mut notes, results, log);
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
         --cluster-nodes {} --server-log {})",
        cli.only.iter().map(|phase| format!("{phase:?}").to_lowercase()).collect::<Vec<_>>().join(","),
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
        cli.server_log
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
        let _ = writeln!(
            out,
            "| **Broadcast latency p50 / p99 / max** | **{} / {} / {}** |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
            ms(percentile(samples, 100.0))
        );
        let _ = writeln!(
            out,
            "| **Time until the last subscriber has it, p50 / p99** (per round) | **{} / {}** (max {}) |",
            ms(percentile(&latency.last_us, 50.0)),
            ms(percentile(&latency.last_us, 99.0)),
            ms(percentile(&latency.last_us, 100.0))
        );
        let _ = writeln!(
            out,
            "| Trigger HTTP call during broadcast, p50 / max | {} / {} |",
            ms(percentile(&latency.trigger_us, 50.0)),
            ms(percentile(&latency.trigger_us, 100.0))
        );
        let _ = writeln!(out, "| CPU during the rounds: server / bench | {} |", cpu_text(&latency.cpu));
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
        let _ = writeln!(out, "| CPU while firing: server / bench | {} |", cpu_text(&throughput.cpu));
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
    let _ =
        writeln!(out, "| Server log | {} WARN, {} ERROR, {} panics |", log.warnings, log.errors, log.panics);
    for sample in &log.samples {
        notes.push(format!("server log: {sample}"));
    }
}

fn to_json(
    cli: &Cli,
    main: Option<&(Results, LogSummary)>,
    other: &Other<'_>,
    bin: &std::path::Path,
) -> Value {
    let mut value = match main {
        Some((results, log)) => main_json(cli, results, log, bin),
        None => json!({ "herald_bin": bin.display().to_string() }),
    };
    value["ingest"] = other.ingest.map_or(Value::Null, |ingest| ingest::to_json(other.ingest_config, ingest));
    value["cluster"] =
        other.cluster.map_or(Value::Null, |cluster| cluster::to_json(other.cluster_config, cluster));
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
    })
}
