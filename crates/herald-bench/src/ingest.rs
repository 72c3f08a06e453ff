//! 4. The notification layer: signed domain-event ingest (`POST /apps/{id}/domain-events`).
//!
//! For each backend (a fresh SQLite file, and a fresh PostgreSQL database) and each step, a
//! server of its own with an empty store:
//! - *load* (one per `--ingest-batch`): `--ingest-clients` signed clients send batches of B
//!   `security.alert` events (severity low, unique ids) for `--ingest-duration` seconds; events
//!   answered `accepted` are counted. A subscriber on `private-security-alerts` counts the
//!   broadcasts, during the window and then while the queue drains (bounded by
//!   `--ingest-drain-secs`).
//! - *latency*: `--ingest-events` single events, one at a time, each carrying its send instant in
//!   `details`; the subscriber records when its broadcast arrives.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{answer_ping, close, connect_subscribed, ws_url, Api, Ws};
use crate::phases::{percentile, Cpu, CpuClock};
use crate::server::{cpu_secs, LogSummary, Server};

/// The channel `security.alert` broadcasts go to (private: the bench signs the subscription).
const CHANNEL: &str = "private-security-alerts";
/// Broadcast event name of `security.alert`.
const EVENT: &str = "security.alert";
/// How long the latency step waits for one event's broadcast.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors kept to show per step.
const KEEP_ERRORS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What the ingest phase does (from the command line).
pub(crate) struct IngestConfig {
    pub(crate) bin: PathBuf,
    pub(crate) server_log: String,
    pub(crate) server_env: Vec<(String, String)>,
    pub(crate) backends: Vec<Backend>,
    /// A database on the PostgreSQL server to connect to for `CREATE DATABASE`.
    pub(crate) postgres_url: String,
    pub(crate) clients: usize,
    pub(crate) duration: Duration,
    pub(crate) batches: Vec<usize>,
    pub(crate) drain: Duration,
    pub(crate) events: usize,
    pub(crate) warmup: usize,
    pub(crate) interval: Duration,
}

pub(crate) struct IngestResults {
    pub(crate) backends: Vec<BackendResult>,
}

pub(crate) struct BackendResult {
    pub(crate) backend: Backend,
    /// Why the backend was not measured.
    pub(crate) skipped: Option<String>,
    pub(crate) latency: Option<LatencyResult>,
    pub(crate) loads: Vec<LoadResult>,
    /// Steps that failed: (step, error).
    pub(crate) failures: Vec<(String, String)>,
    pub(crate) log: LogSummary,
    pub(crate) load_start: String,
    pub(crate) load_end: String,
}

/// CPU seconds of the processes around the server during a step.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    pub(crate) cpu: Cpu,
    /// The server's threads, grouped by name (`tokio-runtime-worker`, `sqlx-sqlite-worker`),
    /// busiest first.
    pub(crate) threads: Vec<(String, f64)>,
    /// PostgreSQL: the server's backend processes, and the WAL writer + checkpointer + background
    /// writer (shared by the whole cluster).
    pub(crate) postgres_backends: Option<f64>,
    pub(crate) postgres_aux: Option<f64>,
    /// PostgreSQL: `pg_stat_wal` growth (cluster-wide).
    pub(crate) wal: Option<Wal>,
    /// The server's `/proc/<pid>/io`: bytes sent to storage, write syscalls (`syscw`: files and
    /// sockets alike).
    pub(crate) write_bytes: u64,
    pub(crate) write_calls: u64,
}

impl Usage {
    /// CPU of every other process, without the PostgreSQL processes counted above.
    pub(crate) fn others(&self) -> f64 {
        (self.cpu.others() - self.postgres_backends.unwrap_or(0.0) - self.postgres_aux.unwrap_or(0.0))
            .max(0.0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wal {
    pub(crate) records: i64,
    pub(crate) bytes: i64,
    pub(crate) writes: i64,
    pub(crate) syncs: i64,
}

pub(crate) struct LoadResult {
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    /// HTTP status codes (`error: ...` for requests without an answer).
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Per-event `status` of the answers.
    pub(crate) outcomes: BTreeMap<String, u64>,
    pub(crate) accepted: u64,
    /// Request latency, microseconds, sorted.
    pub(crate) latencies_us: Vec<u64>,
    /// Broadcasts the subscriber had when the window closed, and in the end.
    pub(crate) delivered_in_window: u64,
    pub(crate) delivered: u64,
    /// Broadcasts received after the window, while the queue drained.
    pub(crate) delivered_in_drain: u64,
    /// From the start of the window to the last broadcast received.
    pub(crate) delivery_secs: f64,
    /// From the end of the window until everything accepted was delivered (or the wait ended).
    pub(crate) drain_secs: f64,
    pub(crate) usage: Usage,
    /// CPU and storage while the queue drained (no more ingest).
    pub(crate) drain_usage: Usage,
    pub(crate) errors: Vec<String>,
    pub(crate) dropped: bool,
    /// PostgreSQL: transactions (committed, rolled back) in the database over the whole step,
    /// window and drain, read after the server stopped.
    pub(crate) transactions: Option<(i64, i64)>,
}

impl LoadResult {
    pub(crate) fn per_second(&self) -> f64 {
        self.accepted as f64 / self.seconds.max(1e-9)
    }

    pub(crate) fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.delivery_secs.max(1e-9)
    }
}

pub(crate) struct LatencyResult {
    pub(crate) events: usize,
    pub(crate) warmup: usize,
    pub(crate) interval_ms: u64,
    /// Ingest → broadcast received, microseconds, sorted.
    pub(crate) samples_us: Vec<u64>,
    /// The ingest call itself (until its 202), microseconds, sorted.
    pub(crate) post_us: Vec<u64>,
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) outcomes: BTreeMap<String, u64>,
    /// Events whose broadcast did not arrive within 5 s.
    pub(crate) missing: usize,
    /// The slowest samples: (event number, microseconds).
    pub(crate) worst: Vec<(u64, u64)>,
    pub(crate) usage: Usage,
    pub(crate) errors: Vec<String>,
    pub(crate) dropped: bool,
    pub(crate) transactions: Option<(i64, i64)>,
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per server

/// Databases created and not dropped yet, for the watchdog: (admin URL, names).
static CREATED: Mutex<Option<(String, Vec<String>)>> = Mutex::new(None);

fn remember(admin_url: &str, name: &str, created: bool) {
    let mut guard = CREATED.lock().unwrap_or_else(|p| p.into_inner());
    let (_, names) = guard.get_or_insert_with(|| (admin_url.to_owned(), Vec::new()));
    if created {
        names.push(name.to_owned());
    } else {
        names.retain(|known| known != name);
    }
}

/// Drops the databases a run left behind (the watchdog calls it after killing the servers).
pub(crate) fn drop_leftover_databases() {
    let Some((admin_url, names)) = CREATED.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    if names.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    runtime.block_on(async {
        let Ok(Ok(mut admin)) =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
        else {
            eprintln!("herald-bench: cannot drop the databases {names:?}; drop them by hand");
            return;
        };
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ =
                tokio::time::timeout(Duration::from_secs(10), sqlx::query(&sql).execute(&mut admin)).await;
        }
    });
}

/// `postgres://user@host:port/db?query` → (`postgres://user@host:port`, `?query`). Only a server
/// on this machine is accepted.
fn split_postgres_url(url: &str) -> anyhow::Result<(String, String)> {
    let (scheme, rest) = url.split_once("://").context("a PostgreSQL URL is postgres://user@host:port/db")?;
    if scheme != "postgres" && scheme != "postgresql" {
        bail!("{url:?} is not a postgres:// URL");
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "::1" | "") {
        bail!("the bench only talks to 127.0.0.1; {host:?} is not this machine");
    }
    Ok((format!("{scheme}://{authority}"), query))
}

/// A connection to the PostgreSQL server, for creating and dropping the databases and reading
/// its statistics.
struct Postgres {
    admin_url: String,
    admin: PgConnection,
    base: String,
    query: String,
    created: usize,
}

impl Postgres {
    async fn connect(admin_url: &str) -> anyhow::Result<Postgres> {
        let (base, query) = split_postgres_url(admin_url)?;
        let admin = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(admin_url))
            .await
            .context("no answer within 5 s")?
            .context("cannot connect")?;
        Ok(Postgres { admin_url: admin_url.to_owned(), admin, base, query, created: 0 })
    }

    /// Creates an empty database; returns its name and the URL the server uses.
    async fn fresh(&mut self) -> anyhow::Result<(String, String)> {
        let name = format!("herald_bench_{}_{}", std::process::id(), self.created);
        self.created += 1;
        let sql = format!("CREATE DATABASE {name}");
        tokio::time::timeout(Duration::from_secs(30), sqlx::query(&sql).execute(&mut self.admin))
            .await
            .context("CREATE DATABASE took over 30 s")?
            .with_context(|| format!("cannot create the database {name}"))?;
        remember(&self.admin_url, &name, true);
        let url = format!("{}/{name}{}", self.base, self.query);
        Ok((name, url))
    }

    async fn drop_database(&mut self, name: &str) {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        match tokio::time::timeout(Duration::from_secs(30), sqlx::query(&sql).execute(&mut self.admin)).await
        {
            Ok(Ok(_)) => remember(&self.admin_url, name, false),
            Ok(Err(error)) => eprintln!("ingest: cannot drop the database {name}: {error}"),
            Err(_) => eprintln!("ingest: DROP DATABASE {name} took over 30 s"),
        }
    }

    /// Transactions committed and rolled back in `database` so far (its backends report them
    /// when idle or when they exit).
    async fn transactions(&mut self, database: &str) -> Option<(i64, i64)> {
        sqlx::query_as("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1")
            .bind(database)
            .fetch_one(&mut self.admin)
            .await
            .ok()
    }

    async fn wal(&mut self) -> Option<Wal> {
        let row: (i64, i64, i64, i64) =
            sqlx::query_as("SELECT wal_records, wal_bytes::bigint, wal_write, wal_sync FROM pg_stat_wal")
                .fetch_one(&mut self.admin)
                .await
                .ok()?;
        Some(Wal { records: row.0, bytes: row.1, writes: row.2, syncs: row.3 })
    }

    /// The processes serving `database`, and the cluster's WAL writer, checkpointer and
    /// background writer: (pid, is a backend of `database`).
    async fn processes(&mut self, database: &str) -> Vec<(i32, bool)> {
        let rows: Vec<(i32, bool)> = sqlx::query_as(
            "SELECT pid, datname IS NOT DISTINCT FROM $1 FROM pg_stat_activity \
             WHERE datname = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
        )
        .bind(database)
        .fetch_all(&mut self.admin)
        .await
        .unwrap_or_default();
        rows
    }
}

// ---------------------------------------------------------------------------------------------
// CPU and I/O around a step

/// The server's threads: tid → (name, CPU seconds).
fn server_threads(pid: u32) -> HashMap<String, (String, f64)> {
    let mut threads = HashMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        // `sqlx-sqlite-worker-3` and `sqlx-sqlite-worker-0` are one group.
        let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
        let name = if name.is_empty() { comm.trim() } else { name };
        threads.insert(tid.clone(), (name.to_owned(), cpu_secs(&format!("{pid}/task/{tid}"))));
    }
    threads
}

/// `write_bytes` and `syscw` of `/proc/<pid>/io`.
fn server_io(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("syscw:"))
}

/// The PostgreSQL server and the database of the server under test, to read their CPU and WAL.
struct Probe<'a> {
    pg: &'a mut Postgres,
    database: &'a str,
}

struct UsageClock {
    cpu: CpuClock,
    threads: HashMap<String, (String, f64)>,
    io: (u64, u64),
    postgres: Option<(String, HashMap<i32, f64>, Option<Wal>)>,
}

impl UsageClock {
    async fn start(server: &Server, postgres: Option<&mut Probe<'_>>) -> UsageClock {
        let postgres = match postgres {
            Some(Probe { pg, database }) => {
                let processes = pg.processes(database).await;
                let cpu = processes.iter().map(|(pid, _)| (*pid, cpu_secs(&pid.to_string()))).collect();
                Some((database.to_owned(), cpu, pg.wal().await))
            }
            None => None,
        };
        UsageClock {
            cpu: CpuClock::start(server),
            threads: server_threads(server.pid),
            io: server_io(server.pid),
            postgres,
        }
    }

    async fn stop(self, server: &Server, postgres: Option<&mut Probe<'_>>) -> Usage {
        let cpu = self.cpu.stop(server);
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (name, secs)) in server_threads(server.pid) {
            let before = self.threads.get(&tid).map_or(0.0, |(_, secs)| *secs);
            *groups.entry(name).or_default() += secs - before;
        }
        let mut threads: Vec<(String, f64)> = groups.into_iter().filter(|(_, secs)| *secs >= 0.05).collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let io = server_io(server.pid);
        let mut usage = Usage {
            cpu,
            threads,
            write_bytes: io.0.saturating_sub(self.io.0),
            write_calls: io.1.saturating_sub(self.io.1),
            ..Usage::default()
        };
        if let (Some((database, before, wal_before)), Some(Probe { pg, .. })) = (self.postgres, postgres) {
            let (mut backends, mut aux) = (0.0, 0.0);
            for (pid, is_backend) in pg.processes(&database).await {
                let secs = cpu_secs(&pid.to_string()) - before.get(&pid).copied().unwrap_or(0.0);
                if is_backend {
                    backends += secs;
                } else {
                    aux += secs;
                }
            }
            usage.postgres_backends = Some(backends);
            usage.postgres_aux = Some(aux);
            if let (Some(before), Some(after)) = (wal_before, pg.wal().await) {
                usage.wal = Some(Wal {
                    records: after.records - before.records,
                    bytes: after.bytes - before.bytes,
                    writes: after.writes - before.writes,
                    syncs: after.syncs - before.syncs,
                });
            }
        }
        usage
    }
}

// ---------------------------------------------------------------------------------------------
// The subscriber and the events

/// A `security.alert` domain event (severity low: the ordinary `broadcasts` lane).
fn alert(id: &str, details: Value) -> Value {
    json!({
        "id": id,
        "type": "security.alert",
        "data": {
            "alert_type": "bench_load",
            "message": "herald-bench ingest",
            "severity": "low",
            "details": details,
        },
    })
}

/// `{"event":"security.alert",...,"data":"{...\"details\":{\"n\":N,\"t\":T}...}"}` → (N, T).
fn parse_alert(text: &str) -> Option<(u64, u64)> {
    let frame: Value = serde_json::from_str(text).ok()?;
    if frame["event"] != EVENT {
        return None;
    }
    let data: Value = serde_json::from_str(frame["data"].as_str()?).ok()?;
    Some((data["details"]["n"].as_u64()?, data["details"]["t"].as_u64()?))
}

/// Holds the subscription: counts `security.alert` frames (and when the last one came); with
/// `samples`, sends (event number, nanoseconds since it was sent) for each.
async fn listener(
    mut ws: Ws,
    epoch: Instant,
    delivered: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    samples: Option<mpsc::UnboundedSender<(u64, u64)>>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            biased;
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let arrived = epoch.elapsed().as_nanos() as u64;
                    if text.as_str().contains("\"security.alert\"") {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        last_ns.store(arrived, Ordering::Relaxed);
                        if let (Some(samples), Some((n, sent))) = (&samples, parse_alert(text.as_str())) {
                            let _ = samples.send((n, arrived.saturating_sub(sent)));
                        }
                    } else {
                        answer_ping(&mut ws, text.as_str()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            _ = stopped(&mut stop) => {
                close(ws).await;
                return true;
            }
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

struct Subscriber {
    delivered: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<bool>,
}

impl Subscriber {
    async fn open(
        server: &Server,
        epoch: Instant,
        samples: Option<mpsc::UnboundedSender<(u64, u64)>>,
    ) -> anyhow::Result<Subscriber> {
        let ws = connect_subscribed(&ws_url(server.port), Some(CHANNEL))
            .await
            .with_context(|| format!("cannot subscribe to {CHANNEL}"))?;
        let delivered = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listener(ws, epoch, delivered.clone(), last_ns.clone(), samples, stopped));
        Ok(Subscriber { delivered, last_ns, stop, task })
    }

    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Closes the subscription; true when the server dropped it before.
    async fn close(self) -> bool {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(stopped)) => !stopped,
            _ => {
                abort.abort();
                true
            }
        }
    }
}

fn keep(errors: &mut Vec<String>, error: String) {
    if errors.len() < KEEP_ERRORS {
        errors.push(error);
    }
}

// ---------------------------------------------------------------------------------------------
// Load: accepted events per second

#[derive(Default)]
struct LoadWorker {
    statuses: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    errors: Vec<String>,
}

async fn load_worker(
    api: Api,
    run: String,
    batch: usize,
    worker: usize,
    deadline: Instant,
    max_requests: u64,
) -> LoadWorker {
    let mut out = LoadWorker::default();
    let mut sent = 0u64;
    while sent < max_requests && Instant::now() < deadline {
        let mut events: Vec<Value> = (0..batch)
            .map(|index| {
                let id = format!("{run}-b{batch}-w{worker}-r{sent}-e{index}");
                alert(&id, json!({ "w": worker, "r": sent, "e": index }))
            })
            .collect();
        let body =
            if batch == 1 { events.remove(0).to_string() } else { json!({ "events": events }).to_string() };
        let call = Instant::now();
        match api.domain_events(body).await {
            Ok((status, answer)) => {
                *out.statuses.entry(status.to_string()).or_default() += 1;
                let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
                match parsed.as_ref().and_then(|answer| answer["events"].as_array()) {
                    Some(outcomes) if (200..300).contains(&status) => {
                        for outcome in outcomes {
                            let status = outcome["status"].as_str().unwrap_or("(none)");
                            *out.outcomes.entry(status.to_owned()).or_default() += 1;
                        }
                    }
                    _ => keep(
                        &mut out.errors,
                        format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
                        ),
                    ),
                }
            }
            Err(error) => {
                *out.statuses.entry("error".to_owned()).or_default() += 1;
                keep(&mut out.errors, format!("{error:#}"));
            }
        }
        out.latencies_us.push(call.elapsed().as_micros() as u64);
        sent += 1;
    }
    out
}

async fn load(
    server: &Server,
    postgres: Option<Probe<'_>>,
    config: &IngestConfig,
    batch: usize,
    label: &str,
) -> anyhow::Result<LoadResult> {
    let api = Api::new(server.port)?;
    let epoch = Instant::now();
    let subscriber = Subscriber::open(server, epoch, None).await?;
    let mut postgres = postgres;
    let clock = UsageClock::start(server, postgres.as_mut()).await;
    eprintln!(
        "ingest [{label}]: {} clients × batches of {batch} for {:.0} s",
        config.clients,
        config.duration.as_secs_f64()
    );
    let run = format!("p{}", std::process::id());
    let started = Instant::now();
    let deadline = started + config.duration;
    let max_requests = 1_000_000;
    let workers: Vec<JoinHandle<LoadWorker>> = (0..config.clients.max(1))
        .map(|worker| {
            tokio::spawn(load_worker(api.clone(), run.clone(), batch, worker, deadline, max_requests))
        })
        .collect();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies_us = Vec::new();
    let mut errors = Vec::new();
    let limit = tokio::time::Instant::now() + config.duration + Duration::from_secs(30);
    for worker in workers {
        let abort = worker.abort_handle();
        match tokio::time::timeout_at(limit, worker).await {
            Ok(Ok(output)) => {
                for (status, count) in output.statuses {
                    *statuses.entry(status).or_default() += count;
                }
                for (status, count) in output.outcomes {
                    *outcomes.entry(status).or_default() += count;
                }
                latencies_us.extend(output.latencies_us);
                for error in output.errors {
                    keep(&mut errors, error);
                }
            }
            Ok(Err(error)) => keep(&mut errors, format!("worker failed: {error}")),
            Err(_) => {
                abort.abort();
                keep(&mut errors, "worker still busy 30 s after the window".to_owned());
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let window_end = epoch.elapsed().as_nanos() as u64;
    let delivered_in_window = subscriber.delivered();
    let usage = clock.stop(server, postgres.as_mut()).await;
    latencies_us.sort_unstable();
    let requests: u64 = statuses.values().sum();
    let accepted = outcomes.get("accepted").copied().unwrap_or(0);
    eprintln!(
        "ingest [{label}]: {accepted} accepted in {seconds:.1} s ({:.0}/s); {delivered_in_window} delivered so far; \
         waiting up to {:.0} s for the rest",
        accepted as f64 / seconds.max(1e-9),
        config.drain.as_secs_f64()
    );
    // Let the queue deliver the backlog: until everything accepted arrived, the wait is over, or
    // nothing arrived for 10 s.
    let drain_clock = UsageClock::start(server, postgres.as_mut()).await;
    let drain_started = Instant::now();
    let drain_deadline = drain_started + config.drain;
    let mut last = (subscriber.delivered(), Instant::now());
    let mut next_report = Instant::now() + Duration::from_secs(10);
    while subscriber.delivered() < accepted && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = subscriber.delivered();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        if Instant::now() >= next_report {
            eprintln!("  [{label}] {now}/{accepted} delivered");
            next_report += Duration::from_secs(10);
        }
    }
    let drain_usage = drain_clock.stop(server, postgres.as_mut()).await;
    let delivered = subscriber.delivered();
    let last_ns = subscriber.last_ns.load(Ordering::Relaxed);
    let drain_secs = if delivered >= accepted {
        last_ns.saturating_sub(window_end) as f64 / 1e9
    } else {
        drain_started.elapsed().as_secs_f64()
    };
    let delivery_secs = last_ns.saturating_sub(started.duration_since(epoch).as_nanos() as u64) as f64 / 1e9;
    let dropped = subscriber.close().await;
    eprintln!(
        "ingest [{label}]: {delivered}/{accepted} delivered, the last {drain_secs:.1} s after the window"
    );
    Ok(LoadResult {
        batch,
        clients: config.clients,
        seconds,
        requests,
        statuses,
        outcomes,
        accepted,
        latencies_us,
        delivered_in_window,
        delivered,
        delivered_in_drain: delivered - delivered_in_window.min(delivered),
        delivery_secs,
        drain_secs: drain_secs.max(0.0),
        usage,
        errors,
        dropped,
        drain_usage,
        transactions: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Latency: ingest → subscriber

async fn latency(
    server: &Server,
    postgres: Option<Probe<'_>>,
    config: &IngestConfig,
    label: &str,
) -> anyhow::Result<LatencyResult> {
    let api = Api::new(server.port)?;
    let epoch = Instant::now();
    let (samples_in, mut samples) = mpsc::unbounded_channel();
    let subscriber = Subscriber::open(server, epoch, Some(samples_in)).await?;
    let mut postgres = postgres;
    let clock = UsageClock::start(server, postgres.as_mut()).await;
    let total = config.warmup + config.events;
    eprintln!(
        "ingest [{label}]: {} + {} warm-up single events, {} ms apart",
        config.events,
        config.warmup,
        config.interval.as_millis()
    );
    let run = format!("p{}", std::process::id());
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples_us = Vec::with_capacity(config.events);
    let mut post_us = Vec::with_capacity(config.events);
    let mut worst: Vec<(u64, u64)> = Vec::new();
    let mut errors = Vec::new();
    let mut missing = 0;
    for index in 0..total as u64 {
        let measured = index >= config.warmup as u64;
        let sent = epoch.elapsed().as_nanos() as u64;
        let body = alert(&format!("{run}-latency-{index}"), json!({ "n": index, "t": sent })).to_string();
        let call = Instant::now();
        let answer = api.domain_events(body).await;
        let took = call.elapsed().as_micros() as u64;
        let accepted = match answer {
            Ok((status, answer)) => {
                let outcome = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|answer| answer["events"][0]["status"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "(none)".to_owned());
                let accepted = outcome == "accepted";
                if !accepted {
                    keep(
                        &mut errors,
                        format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
                        ),
                    );
                }
                if measured {
                    *statuses.entry(status.to_string()).or_default() += 1;
                    *outcomes.entry(outcome).or_default() += 1;
                }
                accepted
            }
            Err(error) => {
                if measured {
                    *statuses.entry("error".to_owned()).or_default() += 1;
                }
                keep(&mut errors, format!("{error:#}"));
                false
            }
        };
        if measured {
            post_us.push(took);
        }
        if accepted {
            let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
            loop {
                match tokio::time::timeout_at(deadline, samples.recv()).await {
                    Ok(Some((n, nanos))) if n == index => {
                        if measured {
                            samples_us.push(nanos / 1000);
                            worst.push((index, nanos / 1000));
                        }
                        break;
                    }
                    // A late (or repeated) copy of an earlier event.
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        if measured {
                            missing += 1;
                        }
                        break;
                    }
                }
            }
        } else if measured {
            missing += 1;
        }
        if (index + 1) % 50 == 0 || index + 1 == total as u64 {
            eprintln!("  [{label}] {}/{total} events", index + 1);
        }
        tokio::time::sleep(config.interval).await;
    }
    let usage = clock.stop(server, postgres.as_mut()).await;
    let dropped = subscriber.close().await;
    samples_us.sort_unstable();
    post_us.sort_unstable();
    worst.sort_unstable_by_key(|&(_, micros)| std::cmp::Reverse(micros));
    worst.truncate(5);
    Ok(LatencyResult {
        events: config.events,
        warmup: config.warmup,
        interval_ms: config.interval.as_millis() as u64,
        samples_us,
        post_us,
        statuses,
        outcomes,
        missing,
        worst,
        usage,
        errors,
        dropped,
        transactions: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The phase

#[derive(Debug, Clone, Copy)]
enum Step {
    Latency,
    Load(usize),
}

fn load_average() -> String {
    crate::load_average()
}

/// Runs every step on every backend; a backend that cannot be reached is skipped and says why.
pub(crate) async fn run(config: &IngestConfig) -> IngestResults {
    let mut backends = Vec::new();
    for &backend in &config.backends {
        backends.push(run_backend(config, backend).await);
    }
    IngestResults { backends }
}

async fn run_backend(config: &IngestConfig, backend: Backend) -> BackendResult {
    let mut result = BackendResult {
        backend,
        skipped: None,
        latency: None,
        loads: Vec::new(),
        failures: Vec::new(),
        log: LogSummary::default(),
        load_start: load_average(),
        load_end: String::new(),
    };
    let mut postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match Postgres::connect(&config.postgres_url).await {
            Ok(pg) => Some(pg),
            Err(error) => {
                let why = format!("PostgreSQL at {} is unreachable: {error:#}", config.postgres_url);
                eprintln!("ingest: {why}; skipping that backend");
                result.skipped = Some(why);
                result.load_end = load_average();
                return result;
            }
        },
    };
    let latency_step = (config.events > 0).then_some(Step::Latency);
    let steps = latency_step.into_iter().chain(config.batches.iter().map(|&batch| Step::Load(batch)));
    for step in steps {
        let label = match step {
            Step::Latency => format!("{} latency", backend.label()),
            Step::Load(batch) => format!("{} B={batch}", backend.label()),
        };
        let database = match postgres.as_mut() {
            Some(pg) => match pg.fresh().await {
                Ok(created) => Some(created),
                Err(error) => {
                    result.failures.push((label, format!("{error:#}")));
                    continue;
                }
            },
            None => None,
        };
        let url = database.as_ref().map(|(_, url)| url.as_str());
        let started = tokio::task::block_in_place(|| {
            Server::start(&config.bin, &config.server_log, &config.server_env, url)
        });
        match started {
            Ok(server) => {
                eprintln!(
                    "ingest [{label}]: started the server (pid {}) on 127.0.0.1:{}{}",
                    server.pid,
                    server.port,
                    database.as_ref().map(|(name, _)| format!(", database {name}")).unwrap_or_default()
                );
                let mut transactions_before = None;
                if let (Some(pg), Some((name, _))) = (postgres.as_mut(), database.as_ref()) {
                    transactions_before = pg.transactions(name).await;
                }
                let pg = postgres
                    .as_mut()
                    .zip(database.as_ref())
                    .map(|(pg, (name, _))| Probe { pg, database: name.as_str() });
                let outcome = match step {
                    Step::Latency => {
                        latency(&server, pg, config, &label).await.map(|r| result.latency = Some(r))
                    }
                    Step::Load(batch) => {
                        load(&server, pg, config, batch, &label).await.map(|r| result.loads.push(r))
                    }
                };
                if let Some(status) = server.exited() {
                    result
                        .failures
                        .push((label.clone(), format!("the server exited during the step ({status})")));
                }
                let log = server.stop();
                // The server's backends report their last transactions as they exit.
                if let (Some(pg), Some((name, _)), Some(before), true) =
                    (postgres.as_mut(), database.as_ref(), transactions_before, outcome.is_ok())
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let transactions =
                        pg.transactions(name).await.map(|after| (after.0 - before.0, after.1 - before.1));
                    match step {
                        Step::Latency => {
                            if let Some(latency) = result.latency.as_mut() {
                                latency.transactions = transactions;
                            }
                        }
                        Step::Load(_) => {
                            if let Some(load) = result.loads.last_mut() {
                                load.transactions = transactions;
                            }
                        }
                    }
                }
                if let Err(error) = outcome {
                    result.failures.push((label, format!("{error:#}")));
                }
                merge_log(&mut result.log, log);
            }
            Err(error) => result.failures.push((label, format!("{error:#}"))),
        }
        if let (Some(pg), Some((name, _))) = (postgres.as_mut(), database.as_ref()) {
            pg.drop_database(name).await;
        }
    }
    result.load_end = load_average();
    result
}

fn merge_log(into: &mut LogSummary, log: LogSummary) {
    into.warnings += log.warnings;
    into.errors += log.errors;
    into.panics += log.panics;
    for sample in log.samples {
        if into.samples.len() < 8 {
            into.samples.push(sample);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter().map(|(key, count)| format!("{key}: {count}")).collect::<Vec<_>>().join(", ")
}

fn usage_text(usage: &Usage) -> String {
    let mut text = format!("server {:.1} s", usage.cpu.server);
    if let Some(backends) = usage.postgres_backends {
        text.push_str(&format!(
            ", postgres {backends:.1} s (+{:.1} s WAL/ckpt)",
            usage.postgres_aux.unwrap_or(0.0)
        ));
    }
    text.push_str(&format!(
        ", bench {:.1} s, others {:.1} s, over {:.1} s",
        usage.cpu.bench,
        usage.others(),
        usage.cpu.wall
    ));
    text
}

fn threads_text(usage: &Usage) -> String {
    if usage.threads.is_empty() {
        return "—".to_owned();
    }
    usage
        .threads
        .iter()
        .take(4)
        .map(|(name, secs)| format!("{name} {secs:.1} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn storage_text(usage: &Usage, accepted: u64) -> String {
    let per = |value: f64| value / accepted.max(1) as f64;
    let mut text = format!(
        "server wrote {:.1} MiB to storage ({:.0} B/event); {} write syscalls (files and sockets)",
        usage.write_bytes as f64 / (1024.0 * 1024.0),
        per(usage.write_bytes as f64),
        usage.write_calls
    );
    if let Some(wal) = usage.wal {
        text.push_str(&format!(
            "; WAL {:.1} MiB, {} records, {} syncs ({:.0} B, {:.1} records, {:.3} syncs per event)",
            wal.bytes as f64 / (1024.0 * 1024.0),
            wal.records,
            wal.syncs,
            per(wal.bytes as f64),
            per(wal.records as f64),
            per(wal.syncs as f64)
        ));
    }
    text
}

fn load_of(backend: &BackendResult, batch: usize) -> Option<&LoadResult> {
    backend.loads.iter().find(|load| load.batch == batch)
}

fn latency_of(backend: &BackendResult) -> Option<&LatencyResult> {
    backend.latency.as_ref()
}

fn ratio(sqlite: f64, postgres: f64) -> String {
    if sqlite > 0.0 && postgres > 0.0 {
        format!("{:.2}×", postgres / sqlite)
    } else {
        "—".to_owned()
    }
}

/// The Markdown table: one column per backend and PostgreSQL / SQLite.
pub(crate) fn to_markdown(config: &IngestConfig, results: &IngestResults, notes: &mut Vec<String>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let find =
        |backend: Backend| results.backends.iter().find(|b| b.backend == backend && b.skipped.is_none());
    let columns: Vec<&BackendResult> = results.backends.iter().filter(|b| b.skipped.is_none()).collect();
    for skipped in results.backends.iter().filter_map(|b| b.skipped.as_ref()) {
        notes.push(format!("ingest: skipped: {skipped}"));
    }
    if columns.is_empty() {
        out.push_str("Notification layer: ingest: no backend was measured (see the notes).\n");
        return out;
    }
    let both = find(Backend::Sqlite).zip(find(Backend::Postgres));
    let _ = write!(out, "| Notification layer: ingest |");
    for column in &columns {
        let _ = write!(out, " {} |", column.backend.label());
    }
    if both.is_some() {
        let _ = write!(out, " PostgreSQL / SQLite |");
    }
    let _ = writeln!(out);
    let _ =
        writeln!(out, "|---|{}{}", "---|".repeat(columns.len()), if both.is_some() { "---|" } else { "" });
    let row =
        |out: &mut String, label: String, cell: &dyn Fn(&BackendResult) -> String, ratio: Option<String>| {
            let _ = write!(out, "| {label} |");
            for column in &columns {
                let _ = write!(out, " {} |", cell(column));
            }
            if both.is_some() {
                let _ = write!(out, " {} |", ratio.unwrap_or_default());
            }
            let _ = writeln!(out);
        };
    row(
        &mut out,
        "Load average at start / end".to_owned(),
        &|b| format!("{} / {}", b.load_start, b.load_end),
        None,
    );
    for &batch in &config.batches {
        let pair = both.map(|(s, p)| (load_of(s, batch), load_of(p, batch)));
        let pair_ratio = |f: &dyn Fn(&LoadResult) -> f64| -> Option<String> {
            match pair {
                Some((Some(s), Some(p))) => Some(ratio(f(s), f(p))),
                _ => None,
            }
        };
        row(
            &mut out,
            format!(
                "**Accepted events/s, B = {batch}** ({} clients, {:.0} s)",
                config.clients,
                config.duration.as_secs_f64()
            ),
            &|b| {
                load_of(b, batch).map_or("failed".to_owned(), |l| {
                    format!(
                        "**{:.0}** ({} events, {:.0} requests/s)",
                        l.per_second(),
                        l.accepted,
                        l.requests as f64 / l.seconds.max(1e-9)
                    )
                })
            },
            pair_ratio(&|l| l.per_second()),
        );
        row(
            &mut out,
            format!("Request latency p50 / p99, B = {batch}"),
            &|b| {
                load_of(b, batch).map_or("—".to_owned(), |l| {
                    format!(
                        "{} / {}",
                        ms(percentile(&l.latencies_us, 50.0)),
                        ms(percentile(&l.latencies_us, 99.0))
                    )
                })
            },
            pair_ratio(&|l| percentile(&l.latencies_us, 50.0) as f64).map(|r| format!("{r} (p50)")),
        );
        row(
            &mut out,
            format!("HTTP statuses; event outcomes, B = {batch}"),
            &|b| {
                load_of(b, batch)
                    .map_or("—".to_owned(), |l| format!("{}; {}", counts(&l.statuses), counts(&l.outcomes)))
            },
            None,
        );
        row(
            &mut out,
            format!("Broadcasts received: in the window / in the end, B = {batch}"),
            &|b| {
                load_of(b, batch).map_or("—".to_owned(), |l| {
                    let end = if l.delivered >= l.accepted {
                        format!("all {} (the last {:.1} s after the window)", l.delivered, l.drain_secs)
                    } else {
                        format!(
                            "{} of {} (gave up {:.1} s after the window)",
                            l.delivered, l.accepted, l.drain_secs
                        )
                    };
                    format!(
                        "{} ({:.0}/s) / {end}; {:.0} delivered/s overall",
                        l.delivered_in_window,
                        l.delivered_in_window as f64 / l.seconds.max(1e-9),
                        l.delivered_per_second()
                    )
                })
            },
            pair_ratio(&|l| l.delivered_per_second()).map(|r| format!("{r} (delivered/s)")),
        );
        row(
            &mut out,
            format!("CPU in the window, B = {batch}"),
            &|b| load_of(b, batch).map_or("—".to_owned(), |l| usage_text(&l.usage)),
            None,
        );
        row(
            &mut out,
            format!("Busiest server threads, B = {batch}"),
            &|b| load_of(b, batch).map_or("—".to_owned(), |l| threads_text(&l.usage)),
            None,
        );
        row(
            &mut out,
            format!("Storage writes in the window, B = {batch}"),
            &|b| load_of(b, batch).map_or("—".to_owned(), |l| storage_text(&l.usage, l.accepted)),
            None,
        );
        row(
            &mut out,
            format!("Queue drain after the window (no ingest), B = {batch}"),
            &|b| {
                load_of(b, batch).map_or("—".to_owned(), |l| {
                    format!(
                        "{} broadcasts in {:.1} s ({:.0}/s); CPU {}",
                        l.delivered_in_drain,
                        l.drain_usage.cpu.wall,
                        l.delivered_in_drain as f64 / l.drain_usage.cpu.wall.max(1e-9),
                        usage_text(&l.drain_usage)
                    )
                })
            },
            pair_ratio(&|l| l.delivered_in_drain as f64 / l.drain_usage.cpu.wall.max(1e-9)),
        );
        if columns.iter().any(|b| load_of(b, batch).is_some_and(|l| l.transactions.is_some())) {
            row(
                &mut out,
                format!("PostgreSQL transactions in the database per accepted event (window + drain), B = {batch}"),
                &|b| {
                    load_of(b, batch).and_then(|l| l.transactions.map(|t| (l, t))).map_or("—".to_owned(), |(l, (commits, rollbacks))| {
                        format!(
                            "{:.2} ({commits} commits, {rollbacks} rollbacks)",
                            (commits + rollbacks) as f64 / l.accepted.max(1) as f64
                        )
                    })
                },
                None,
            );
        }
        for column in &columns {
            if let Some(l) = load_of(column, batch) {
                let not_ok = l.statuses.iter().filter(|(status, _)| status.as_str() != "202").count();
                if not_ok > 0 || !l.errors.is_empty() || l.dropped || l.delivered < l.accepted {
                    notes.push(format!(
                        "ingest {} B={batch}: statuses {}, {} of {} broadcasts not received by the end of the wait (still queued, or lost), subscriber dropped: {}; first errors: {:?}",
                        column.backend.label(),
                        counts(&l.statuses),
                        l.accepted.saturating_sub(l.delivered),
                        l.accepted,
                        l.dropped,
                        l.errors
                    ));
                }
            }
        }
    }
    let lat_pair = both.and_then(|(s, p)| latency_of(s).zip(latency_of(p)));
    if columns.iter().any(|b| b.latency.is_some()) {
        let (events, warmup, interval) = columns
            .iter()
            .find_map(|b| b.latency.as_ref())
            .map(|l| (l.events, l.warmup, l.interval_ms))
            .unwrap_or_default();
        row(
            &mut out,
            format!("**Ingest → subscriber latency p50 / p99 / max** ({events} single events + {warmup} warm-up, {interval} ms apart)"),
            &|b| {
                latency_of(b).map_or("failed".to_owned(), |l| {
                    format!(
                        "**{} / {} / {}**",
                        ms(percentile(&l.samples_us, 50.0)),
                        ms(percentile(&l.samples_us, 99.0)),
                        ms(percentile(&l.samples_us, 100.0))
                    )
                })
            },
            lat_pair.map(|(s, p)| {
                format!("{} (p50)", ratio(percentile(&s.samples_us, 50.0) as f64, percentile(&p.samples_us, 50.0) as f64))
            }),
        );
        row(
            &mut out,
            "… of which the ingest call (until its 202), p50 / p99".to_owned(),
            &|b| {
                latency_of(b).map_or("—".to_owned(), |l| {
                    format!("{} / {}", ms(percentile(&l.post_us, 50.0)), ms(percentile(&l.post_us, 99.0)))
                })
            },
            lat_pair.map(|(s, p)| {
                format!(
                    "{} (p50)",
                    ratio(percentile(&s.post_us, 50.0) as f64, percentile(&p.post_us, 50.0) as f64)
                )
            }),
        );
        row(
            &mut out,
            "Latency events: statuses; outcomes; broadcasts missing".to_owned(),
            &|b| {
                latency_of(b).map_or("—".to_owned(), |l| {
                    format!("{}; {}; {} missing", counts(&l.statuses), counts(&l.outcomes), l.missing)
                })
            },
            None,
        );
        if columns.iter().any(|b| latency_of(b).is_some_and(|l| l.transactions.is_some())) {
            row(
                &mut out,
                "PostgreSQL transactions per latency event".to_owned(),
                &|b| {
                    latency_of(b).and_then(|l| l.transactions.map(|t| (l, t))).map_or(
                        "—".to_owned(),
                        |(l, (commits, rollbacks))| {
                            format!(
                                "{:.2} ({commits} commits, {rollbacks} rollbacks)",
                                (commits + rollbacks) as f64 / (l.events + l.warmup).max(1) as f64
                            )
                        },
                    )
                },
                None,
            );
        }
        row(
            &mut out,
            "CPU during the latency events".to_owned(),
            &|b| latency_of(b).map_or("—".to_owned(), |l| usage_text(&l.usage)),
            None,
        );
        for column in &columns {
            if let Some(l) = latency_of(column) {
                notes.push(format!(
                    "ingest {} latency: slowest (event, µs): {:?}{}",
                    column.backend.label(),
                    l.worst,
                    if l.errors.is_empty() && !l.dropped {
                        String::new()
                    } else {
                        format!("; subscriber dropped: {}; first errors: {:?}", l.dropped, l.errors)
                    }
                ));
            }
        }
    }
    row(
        &mut out,
        "Server log (all steps)".to_owned(),
        &|b| format!("{} WARN, {} ERROR, {} panics", b.log.warnings, b.log.errors, b.log.panics),
        None,
    );
    for column in &columns {
        for (step, error) in &column.failures {
            notes.push(format!("ingest {step}: FAILED: {error}"));
        }
        for sample in &column.log.samples {
            notes.push(format!("ingest {} server log: {sample}", column.backend.label()));
        }
    }
    out
}

fn usage_json(usage: &Usage) -> Value {
    let round = |value: f64| (value * 100.0).round() / 100.0;
    json!({
        "server_cpu_seconds": round(usage.cpu.server),
        "bench_cpu_seconds": round(usage.cpu.bench),
        "postgres_backends_cpu_seconds": usage.postgres_backends.map(round),
        "postgres_wal_checkpoint_bgwriter_cpu_seconds": usage.postgres_aux.map(round),
        "other_processes_cpu_seconds": round(usage.others()),
        "wall_seconds": round(usage.cpu.wall),
        "server_threads_cpu_seconds": usage.threads.iter().map(|(name, secs)| json!([name, round(*secs)])).collect::<Vec<_>>(),
        "server_write_bytes": usage.write_bytes,
        "server_write_calls": usage.write_calls,
        "wal": usage.wal.map(|wal| json!({ "records": wal.records, "bytes": wal.bytes, "writes": wal.writes, "syncs": wal.syncs })),
    })
}

pub(crate) fn to_json(config: &IngestConfig, results: &IngestResults) -> Value {
    let backends: Vec<Value> = results
        .backends
        .iter()
        .map(|b| {
            let loads: Vec<Value> = b
                .loads
                .iter()
                .map(|l| {
                    json!({
                        "batch": l.batch,
                        "clients": l.clients,
                        "seconds": l.seconds,
                        "requests": l.requests,
                        "statuses": l.statuses,
                        "outcomes": l.outcomes,
                        "accepted": l.accepted,
                        "accepted_per_second": l.per_second(),
                        "latency_p50_us": percentile(&l.latencies_us, 50.0),
                        "latency_p99_us": percentile(&l.latencies_us, 99.0),
                        "delivered_in_window": l.delivered_in_window,
                        "delivered": l.delivered,
                        "delivered_per_second": l.delivered_per_second(),
                        "drain_seconds": l.drain_secs,
                        "subscriber_dropped": l.dropped,
                        "errors": l.errors,
                        "usage": usage_json(&l.usage),
                        "delivered_in_drain": l.delivered_in_drain,
                        "drain_usage": usage_json(&l.drain_usage),
                        "postgres_transactions": l.transactions.map(|(commits, rollbacks)| json!({ "commits": commits, "rollbacks": rollbacks })),
                    })
                })
                .collect();
            let latency = b.latency.as_ref().map(|l| {
                json!({
                    "events": l.events,
                    "warmup": l.warmup,
                    "interval_ms": l.interval_ms,
                    "samples": l.samples_us.len(),
                    "p50_us": percentile(&l.samples_us, 50.0),
                    "p99_us": percentile(&l.samples_us, 99.0),
                    "max_us": percentile(&l.samples_us, 100.0),
                    "ingest_call_p50_us": percentile(&l.post_us, 50.0),
                    "ingest_call_p99_us": percentile(&l.post_us, 99.0),
                    "statuses": l.statuses,
                    "outcomes": l.outcomes,
                    "missing": l.missing,
                    "worst": l.worst,
                    "subscriber_dropped": l.dropped,
                    "errors": l.errors,
                    "usage": usage_json(&l.usage),
                    "postgres_transactions": l.transactions.map(|(commits, rollbacks)| json!({ "commits": commits, "rollbacks": rollbacks })),
                })
            });
            json!({
                "backend": b.backend.label(),
                "skipped": b.skipped,
                "load_average_start": b.load_start,
                "load_average_end": b.load_end,
                "loads": loads,
                "latency": latency,
                "failures": b.failures.iter().map(|(step, error)| json!({ "step": step, "error": error })).collect::<Vec<_>>(),
                "server_log": { "warnings": b.log.warnings, "errors": b.log.errors, "panics": b.log.panics, "samples": b.log.samples },
            })
        })
        .collect();
    json!({
        "clients": config.clients,
        "duration": config.duration.as_secs_f64(),
        "batches": config.batches,
        "events": config.events,
        "drain_seconds": config.drain.as_secs_f64(),
        "interval_ms": config.interval.as_millis() as u64,
        "postgres_url": config.postgres_url,
        "backends": backends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::Cpu;

    #[test]
    fn splits_postgres_urls() {
        assert_eq!(
            split_postgres_url("postgres://postgres@127.0.0.1:5432/test").unwrap(),
            ("postgres://postgres@127.0.0.1:5432".to_owned(), String::new())
        );
        assert_eq!(
            split_postgres_url("postgresql://u:p@localhost/db?sslmode=disable").unwrap(),
            ("postgresql://u:p@localhost".to_owned(), "?sslmode=disable".to_owned())
        );
        assert!(split_postgres_url("postgres://postgres@db.example.com:5432/test").is_err());
        assert!(split_postgres_url("mysql://127.0.0.1/test").is_err());
    }

    /// A fixed result of both backends: two batch sizes (PostgreSQL failed the second), latency,
    /// transactions, errors, a dropped subscriber, a failed step and log samples.
    fn fixed_results() -> IngestResults {
        let usage = |server: f64, postgres: bool| Usage {
            cpu: Cpu { server, bench: 1.25, machine: server + 4.0, wall: 10.0 },
            threads: vec![
                ("tokio-runtime-worker".to_owned(), server * 0.75),
                ("sqlx-sqlite-worker".to_owned(), 0.5),
                ("herald-queue".to_owned(), 0.25),
                ("main".to_owned(), 0.125),
                ("signal".to_owned(), 0.0625),
            ],
            postgres_backends: postgres.then_some(2.5),
            postgres_aux: postgres.then_some(0.375),
            wal: postgres.then_some(Wal { records: 12_000, bytes: 3 * 1024 * 1024, writes: 40, syncs: 30 }),
            write_bytes: 5 * 1024 * 1024 + 17,
            write_calls: 4321,
        };
        let load = |batch: usize, accepted: u64, delivered: u64, postgres: bool| LoadResult {
            batch,
            clients: 8,
            seconds: 10.0,
            requests: accepted / batch as u64 + 3,
            statuses: BTreeMap::from([("202".to_owned(), accepted / batch as u64), ("503".to_owned(), 3)]),
            outcomes: BTreeMap::from([("accepted".to_owned(), accepted), ("duplicate".to_owned(), 2)]),
            accepted,
            latencies_us: (1..=200).map(|n| n * 37).collect(),
            delivered_in_window: delivered / 2,
            delivered,
            delivered_in_drain: delivered - delivered / 2,
            delivery_secs: 12.5,
            drain_secs: 2.5,
            usage: usage(6.5, postgres),
            drain_usage: usage(1.75, postgres),
            errors: if postgres { vec!["503: {\"error\":\"busy\"}".to_owned()] } else { Vec::new() },
            dropped: postgres,
            transactions: postgres.then_some((1500, 2)),
        };
        let latency = |postgres: bool| LatencyResult {
            events: 100,
            warmup: 10,
            interval_ms: 20,
            samples_us: (1..=100).map(|n| n * if postgres { 210 } else { 130 }).collect(),
            post_us: (1..=100).map(|n| n * 90).collect(),
            statuses: BTreeMap::from([("202".to_owned(), 100)]),
            outcomes: BTreeMap::from([("accepted".to_owned(), 100)]),
            missing: usize::from(postgres),
            worst: vec![(57, 21_000), (12, 19_500)],
            usage: usage(0.5, postgres),
            errors: if postgres { vec!["timeout".to_owned()] } else { Vec::new() },
            dropped: false,
            transactions: postgres.then_some((330, 0)),
        };
        let log = |postgres: bool| LogSummary {
            warnings: 2,
            errors: usize::from(postgres),
            panics: 0,
            samples: vec!["WARN slow statement".to_owned()],
        };
        IngestResults {
            backends: vec![
                BackendResult {
                    backend: Backend::Sqlite,
                    skipped: None,
                    latency: Some(latency(false)),
                    loads: vec![load(1, 20_000, 20_000, false), load(10, 90_000, 88_000, false)],
                    failures: Vec::new(),
                    log: log(false),
                    load_start: "0.50 0.40 0.30".to_owned(),
                    load_end: "1.50 0.90 0.50".to_owned(),
                },
                BackendResult {
                    backend: Backend::Postgres,
                    skipped: None,
                    latency: Some(latency(true)),
                    loads: vec![load(1, 12_000, 11_990, true)],
                    failures: vec![("PostgreSQL B=10".to_owned(), "the server exited".to_owned())],
                    log: log(true),
                    load_start: "1.50 0.90 0.50".to_owned(),
                    load_end: "2.00 1.20 0.70".to_owned(),
                },
            ],
        }
    }

    fn fixed_config() -> IngestConfig {
        IngestConfig {
            bin: "herald".into(),
            server_log: "warn".to_owned(),
            server_env: Vec::new(),
            backends: vec![Backend::Sqlite, Backend::Postgres],
            postgres_url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            clients: 8,
            duration: Duration::from_secs(10),
            batches: vec![1, 10],
            drain: Duration::from_secs(60),
            events: 100,
            warmup: 10,
            interval: Duration::from_millis(20),
        }
    }

    /// The reports of the fixed result: both backends (Markdown and JSON), PostgreSQL skipped, and
    /// nothing measured.
    fn reports() -> String {
        let config = fixed_config();
        let mut results = fixed_results();
        let mut out = String::new();
        for round in 0..3 {
            let mut notes = Vec::new();
            let markdown = to_markdown(&config, &results, &mut notes);
            out.push_str(&format!(
                "## round {round}: markdown\n{markdown}\n## notes\n{}\n",
                notes.join("\n")
            ));
            if round == 0 {
                out.push_str(&format!("## json\n{:#}\n", to_json(&config, &results)));
            }
            results.backends[1 - round.min(1)].skipped = Some(format!("skipped in round {}", round + 1));
        }
        out
    }

    /// The reports are byte for byte those of `testdata/ingest_report.txt` (written by the code
    /// before `ingest.rs` was split: regenerate it on purpose with `HERALD_BENCH_BLESS=1`).
    #[test]
    fn reports_of_a_fixed_result_are_unchanged() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ingest_report.txt");
        let reports = reports();
        if std::env::var_os("HERALD_BENCH_BLESS").is_some() {
            std::fs::write(path, &reports).expect("write the expected reports");
        }
        let expected = std::fs::read_to_string(path).expect("testdata/ingest_report.txt");
        assert!(reports == expected, "the reports changed; compare with {path}:\n{reports}");
    }

    #[test]
    fn parses_alert_frames() {
        let frame = r#"{"event":"security.alert","channel":"private-security-alerts","data":"{\"details\":{\"n\":4,\"t\":99},\"severity\":\"low\"}"}"#;
        assert_eq!(parse_alert(frame), Some((4, 99)));
        assert_eq!(parse_alert(r#"{"event":"pusher:ping","data":"{}"}"#), None);
    }
}
