//! Several nodes sharing one queue (issue 11): real `herald serve` processes on one PostgreSQL
//! database (and, when Redis answers, one cluster), each delivering with the `log` driver into a
//! JSON-lines file of its own, so every delivery is recorded with the node that made it.
//!
//! The backlog is ingested through the signed HTTP API by a node without workers
//! (`notifications.workers = 0`: an API-only node), then two worker nodes are started together
//! and drain it. PostgreSQL is required: the test is skipped with a message when it is not
//! reachable, and fails instead with `HERALD_REQUIRE_SERVICES=1` (as in CI). Redis is used when
//! it answers (the cluster a user would run); the queue itself needs only PostgreSQL.

mod common;

use common::{read_banner, signed_ingest};

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const EVENTS: usize = 5_000;
const BATCH: usize = 100;
const APP: (&str, &str, &str) = ("queue", "queue-key", "queue-secret");
/// Queue workers on each draining node.
const WORKERS: usize = 4;
/// How long the nodes have to drain the backlog.
const DRAIN: Duration = Duration::from_secs(40);

/// The two tests start four servers each: run one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A fresh database on the shared PostgreSQL, dropped when the test ends well.
struct Database {
    admin: sqlx::PgPool,
    name: String,
    url: String,
    pool: sqlx::PgPool,
}

impl Database {
    /// `None` (with the reason printed) when PostgreSQL is absent and not required.
    async fn fresh() -> Option<Database> {
        let base = std::env::var("HERALD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        // A few seconds, not the pool's default 30, to find that PostgreSQL is not there.
        let connect =
            sqlx::postgres::PgPoolOptions::new().acquire_timeout(Duration::from_secs(3)).connect(&base);
        let admin = match connect.await {
            Ok(pool) => pool,
            Err(error) if !required() => {
                eprintln!(
                    "skipping the queue test: PostgreSQL is unreachable at {base}: {error} \
                     (set HERALD_REQUIRE_SERVICES=1 to make this a failure)"
                );
                return None;
            }
            Err(error) => panic!(
                "PostgreSQL is required (HERALD_REQUIRE_SERVICES=1) but unreachable at {base}: {error}"
            ),
        };
        let name = unique("herald_queue");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("database created");
        let (prefix, _) = base.rsplit_once('/').expect("the URL names a database");
        let url = format!("{prefix}/{name}");
        let pool = sqlx::PgPool::connect(&url).await.expect("the test opens the new database");
        Some(Database { admin, name, url, pool })
    }

    /// Every job's `(id, status, attempts, locked_until)`.
    async fn jobs(&self) -> Vec<(String, String, i64, i64)> {
        sqlx::query_as("SELECT id, status, attempts, locked_until FROM broadcasts")
            .fetch_all(&self.pool)
            .await
            .expect("broadcasts read")
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.expect("count read")
    }

    /// Open connections named `application_name`.
    async fn connections(&self, application_name: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(application_name)
            .fetch_one(&self.pool)
            .await
            .expect("connections read")
    }

    /// Waits until no connection named `application_name` is open: every statement it had
    /// sent has finished (committed or rolled back).
    async fn wait_for_no_connections(&self, application_name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let open = self.connections(application_name).await;
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{open} connections of {application_name} still open after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await;
    }
}

/// The shared Redis, if it answers (then the nodes run as a cluster).
fn redis() -> Option<&'static str> {
    let address: SocketAddr = "127.0.0.1:6379".parse().expect("address");
    match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
        Ok(_) => Some("redis://127.0.0.1:6379"),
        Err(error) if required() => {
            panic!("Redis is required (HERALD_REQUIRE_SERVICES=1) but unreachable at {address}: {error}")
        }
        Err(error) => {
            eprintln!("Redis is unreachable at {address} ({error}): the nodes share the database without the cluster");
            None
        }
    }
}

/// One `herald serve` process; killed when dropped.
struct Node {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
    stderr: PathBuf,
}

impl Node {
    /// Spawns a node (its banner is read by [`Node::ready`], so several start together).
    fn spawn(
        dir: &Path,
        name: &'static str,
        db: &Database,
        workers: usize,
        lease_secs: u64,
        cluster: &Cluster,
    ) -> Node {
        let log = dir.join(format!("{name}.jsonl"));
        let stderr = dir.join(format!("{name}.stderr"));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace_secs = 1\n\n[admin]\nport = 0\n\n\
                 [database]\nurl = \"{}?application_name=herald-{name}\"\n\n[auth]\njwt_secret = \"queue-nodes\"\n\n\
                 [notifications]\nlog_file = \"{}\"\nworkers = {workers}\nlease_secs = {lease_secs}\n\
                 poll_interval_ms = 50\n\n\
                 [[apps]]\nid = \"{}\"\nkey = \"{}\"\nsecret = \"{}\"\n",
                // Named connections: the test tells this node's from the others'.
                db.url,
                log.display(),
                APP.0,
                APP.1,
                APP.2
            ),
        )
        .expect("config written");
        let mut command = common::herald();
        command
            .args(["serve", "--config"])
            .arg(&config)
            // As a Laravel deployment sets it.
            .env("BROADCAST_CONNECTION", "log")
            .env("HERALD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        if let Some(url) = cluster.redis {
            command.env("REDIS_URL", url).env("HERALD_CLUSTER__PREFIX", &cluster.prefix);
        }
        let child = command.spawn().expect("herald starts");
        Node { name, child, port: 0, log, stderr }
    }

    fn ready(mut self) -> Node {
        self.port = read_banner(&mut self.child).port;
        self
    }

    /// SIGKILL: no shutdown, no lease released, no goodbye to the cluster.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("killed");
    }

    /// Every delivery this node logged, in order: (broadcast id, time in ms).
    fn deliveries(&self, tail: Tail) -> Vec<(String, u64)> {
        deliveries(&self.log, tail)
    }

    fn diagnostics(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        format!(
            "{} stderr (last lines):\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    redis: Option<&'static str>,
    prefix: String,
}

/// What may follow the last newline of a `log` driver file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing: the node is idle (the queue is empty), so its last line is whole.
    Whole,
    /// A line being written (the node is delivering) or cut short by a SIGKILL: not counted.
    MayBeCut,
}

/// The deliveries in a `log` driver file: (broadcast id, time in ms), in order. Every complete
/// line must be a delivery.
fn deliveries(log: &Path, tail: Tail) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (complete, rest) = text.rsplit_once('\n').unwrap_or(("", &text));
    assert!(
        rest.is_empty() || tail == Tail::MayBeCut,
        "{}: the last line of an idle node's log is cut short: {rest:?}",
        log.display()
    );
    let mut found = Vec::with_capacity(text.len() / 256);
    for (index, line) in complete.lines().enumerate() {
        let parsed = serde_json::from_str::<Value>(line).ok().and_then(|line| {
            let data: Value = serde_json::from_str(line["data"].as_str()?).ok()?;
            Some((data["id"].as_str()?.to_owned(), line["time_ms"].as_u64()?))
        });
        match parsed {
            Some(delivery) => found.push(delivery),
            None => panic!("{}: line {} is not a delivery: {line:?}", log.display(), index + 1),
        }
    }
    found
}

/// Fails if one node's log has an id more than once (a node delivered a job twice).
fn assert_each_once(node: &str, deliveries: &[(String, u64)]) {
    let mut seen = HashMap::<&str, usize>::new();
    for (id, _) in deliveries {
        *seen.entry(id).or_default() += 1;
    }
    let repeated: Vec<_> = seen.into_iter().filter(|(_, count)| *count > 1).collect();
    assert!(
        repeated.is_empty(),
        "node {node} delivered {} jobs more than once, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(3)]
    );
}

fn ids(deliveries: &[(String, u64)]) -> HashSet<String> {
    deliveries.iter().map(|(id, _)| id.clone()).collect()
}

/// Ingests `EVENTS` security alerts through an API-only node (no workers), in concurrent
/// batches of 100; one in ten is `high` (the critical lane). Returns the queued broadcast ids.
async fn backlog(dir: &Path, db: &Database, cluster: &Cluster) -> HashSet<String> {
    let api = Node::spawn(dir, "api", db, 0, 30, cluster).ready();
    let started = Instant::now();
    let run = unique("e");
    let mut batches = Vec::new();
    for batch in 0..EVENTS / BATCH {
        let events: Vec<Value> = (0..BATCH)
            .map(|n| {
                let severity = if n % 10 == 0 { "high" } else { "low" };
                json!({ "id": format!("{run}-{batch}-{n}"), "type": "security.alert",
                        "data": { "alert_type": "test", "message": "backlog", "severity": severity } })
            })
            .collect();
        batches.push(json!({ "events": events }));
    }
    for group in batches.chunks(4) {
        let answers =
            futures_util::future::join_all(group.iter().map(|body| signed_ingest(api.port, APP, body))).await;
        assert!(answers.iter().all(|status| *status == 202), "every batch accepted: {answers:?}");
    }
    eprintln!("ingested {EVENTS} events through the API node in {:?}", started.elapsed());
    drop(api);
    let jobs = db.jobs().await;
    assert_eq!(jobs.len(), EVENTS, "one broadcast job per event");
    assert!(
        jobs.iter().all(|(_, status, attempts, _)| status == "pending" && *attempts == 0),
        "nothing claimed yet"
    );
    jobs.into_iter().map(|(id, ..)| id).collect()
}

/// Polls until `done` holds or `DRAIN` has passed; returns whether it held.
async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

async fn setup() -> Option<(Database, Cluster, tempfile::TempDir)> {
    let started = Instant::now();
    let db = Database::fresh().await?;
    let cluster = Cluster { redis: redis(), prefix: unique("queue") };
    let how = if cluster.redis.is_some() { "a cluster on Redis" } else { "no cluster" };
    eprintln!("database {} created in {:?}; {how}", db.name, started.elapsed());
    Some((db, cluster, tempfile::tempdir().expect("temp dir")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_drain_one_queue_each_job_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some((db, cluster, dir)) = setup().await else { return };
    let all = backlog(dir.path(), &db, &cluster).await;

    let started = Instant::now();
    let a = Node::spawn(dir.path(), "a", &db, WORKERS, 30, &cluster);
    let b = Node::spawn(dir.path(), "b", &db, WORKERS, 30, &cluster);
    let (a, b) = (a.ready(), b.ready());
    let drained = wait_for(|| {
        deliveries(&a.log, Tail::MayBeCut).len() + deliveries(&b.log, Tail::MayBeCut).len() >= EVENTS
    })
    .await;
    assert!(drained, "the backlog drained within {DRAIN:?}\n{}\n{}", a.diagnostics(), b.diagnostics());
    let took = started.elapsed();
    // Anything further would be a second delivery: give it a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (from_a, from_b) = (a.deliveries(Tail::Whole), b.deliveries(Tail::Whole));
    drop((a, b));
    eprintln!(
        "two nodes delivered {EVENTS} jobs in {took:?}: node a {} ({:.1} %), node b {} ({:.1} %)",
        from_a.len(),
        100.0 * from_a.len() as f64 / EVENTS as f64,
        from_b.len(),
        100.0 * from_b.len() as f64 / EVENTS as f64
    );

    // Exactly once: no id twice in a log, none in both, and together every job.
    assert_each_once("a", &from_a);
    assert_each_once("b", &from_b);
    let (ids_a, ids_b) = (ids(&from_a), ids(&from_b));
    let both: Vec<_> = ids_a.intersection(&ids_b).collect();
    assert!(both.is_empty(), "{} jobs delivered by both nodes, e.g. {:?}", both.len(), both.first());
    let union: HashSet<String> = ids_a.union(&ids_b).cloned().collect();
    assert_eq!(union.len(), EVENTS, "every job delivered");
    assert_eq!(union, all, "the delivered ids are the queued ones");
    // Both nodes took a real share: they start together with the same workers on one backlog
    // (about half each on a two-core machine; the split is printed), so a tenth is a loose bound.
    let share = EVENTS / 10;
    assert!(
        from_a.len() >= share && from_b.len() >= share,
        "both nodes delivered at least {share}: a {}, b {}",
        from_a.len(),
        from_b.len()
    );

    // The database agrees: each job claimed once (one attempt), delivered, lease cleared, one
    // `delivered` audit entry each; nothing pending, nothing dead.
    let jobs = db.jobs().await;
    let claimed_again: Vec<_> = jobs.iter().filter(|(_, _, attempts, _)| *attempts != 1).collect();
    assert!(
        claimed_again.is_empty(),
        "{} jobs claimed more than once, e.g. {:?}",
        claimed_again.len(),
        claimed_again.first()
    );
    assert!(
        jobs.iter().all(|(_, status, _, locked)| status == "delivered" && *locked == 0),
        "the queue is empty"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM broadcasts WHERE status = 'pending'").await, 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM dead_letters").await, 0);
    assert_eq!(
        db.count("SELECT COUNT(DISTINCT broadcast_id) FROM audit_entries WHERE kind = 'delivered'").await,
        EVENTS as i64
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM audit_entries WHERE kind = 'delivered'").await, EVENTS as i64);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_drain_leaves_its_leased_jobs_to_the_survivor() {
    const LEASE_SECS: u64 = 2;
    let _serial = SERIAL.lock().await;
    let Some((db, cluster, dir)) = setup().await else { return };
    let all = backlog(dir.path(), &db, &cluster).await;

    let a = Node::spawn(dir.path(), "a", &db, WORKERS, LEASE_SECS, &cluster);
    let b = Node::spawn(dir.path(), "b", &db, WORKERS, LEASE_SECS, &cluster);
    let (mut a, b) = (a.ready(), b.ready());
    let started = Instant::now();
    let half = wait_for(|| {
        deliveries(&a.log, Tail::MayBeCut).len() + deliveries(&b.log, Tail::MayBeCut).len() >= EVENTS / 2
    })
    .await;
    assert!(half, "half the backlog delivered within {DRAIN:?}\n{}\n{}", a.diagnostics(), b.diagnostics());
    assert!(db.connections("herald-a").await > 0, "node a's connections are named");
    a.kill();
    let killed_at = unix_ms();
    let killed_after = started.elapsed();
    // A statement a had sent may still run after the SIGKILL (a claim then commits a lease
    // for a dead node); its connections close once their statements are done.
    db.wait_for_no_connections("herald-a").await;
    // The jobs claimed and not finished at the moment of the kill (a's, and b's current ones;
    // a finished job's lease is cleared): id → lease end.
    let held: HashMap<String, i64> = db
        .jobs()
        .await
        .into_iter()
        .filter(|(_, status, _, locked)| status == "pending" && *locked > 0)
        .map(|(id, _, _, locked)| (id, locked))
        .collect();
    let from_a = a.deliveries(Tail::MayBeCut);
    let ids_a = ids(&from_a);
    eprintln!("node a killed after {killed_after:?}, having delivered {}", from_a.len());
    assert!(ids_a.len() < EVENTS, "node a was killed mid-drain");

    let drained = wait_for(|| {
        let ids_b = ids(&deliveries(&b.log, Tail::MayBeCut));
        ids_a.union(&ids_b).count() >= EVENTS
    })
    .await;
    assert!(drained, "node b delivered the rest within {DRAIN:?}\n{}", b.diagnostics());
    // Wait for b's last outcomes to be recorded (the queue empties once they are).
    let empty = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pending = db.count("SELECT COUNT(*) FROM broadcasts WHERE status <> 'delivered'").await;
            if pending == 0 || Instant::now() > deadline {
                break pending == 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let from_b = b.deliveries(Tail::Whole);
    drop(b);
    let ids_b = ids(&from_b);
    eprintln!(
        "node a delivered {} before the SIGKILL, node b {} (all in {:?})",
        from_a.len(),
        from_b.len(),
        started.elapsed()
    );

    // Every job reached a log; each node delivered each job at most once.
    assert_each_once("a", &from_a);
    assert_each_once("b", &from_b);
    let union: HashSet<String> = ids_a.union(&ids_b).cloned().collect();
    assert_eq!(union, all, "every queued job is in a's log or b's");
    assert!(empty, "the queue is empty at the end");

    // The jobs a held a lease on when it died were claimed again once the lease expired: they
    // are the only jobs with a second attempt (at most a claim batch per worker) (b finishes each job well within its 2 s lease:
    // a few milliseconds with the log driver).
    let jobs = db.jobs().await;
    let leased_by_a: HashSet<String> =
        jobs.iter().filter(|(_, _, attempts, _)| *attempts == 2).map(|(id, ..)| id.clone()).collect();
    let odd: Vec<_> = jobs.iter().filter(|(_, _, attempts, _)| !matches!(attempts, 1 | 2)).collect();
    assert!(
        odd.is_empty(),
        "every job claimed once, or twice after a's death: {} were not, e.g. {:?}",
        odd.len(),
        odd.first()
    );
    assert!(
        leased_by_a.len() <= WORKERS * herald_notify::CLAIM_BATCH,
        "a held at most one claim batch per worker, yet {} jobs were claimed twice",
        leased_by_a.len()
    );
    assert!(
        jobs.iter().all(|(_, status, _, locked)| status == "delivered" && *locked == 0),
        "every lease cleared"
    );
    // b delivered all of them, after the kill: its own jobs, the ones a never reached, and
    // the ones a had leased.
    let missing: Vec<_> = leased_by_a.iter().filter(|id| !ids_b.contains(*id)).collect();
    assert!(missing.is_empty(), "b delivered every job a had leased: missing {missing:?}");
    let times_b: HashMap<&str, u64> = from_b.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    for id in &leased_by_a {
        let Some(&lease_end) = held.get(id) else {
            let at = |from: &[(String, u64)]| {
                from.iter().find(|(seen, _)| seen == id).map(|(_, at)| *at as i64 - killed_at as i64)
            };
            panic!(
                "{id} was claimed twice but was not in hand when a died (ms from the kill: a's log {:?}, \
                 b's log {:?}; held then: {held:?})",
                at(&from_a),
                at(&from_b)
            )
        };
        let at = times_b[id.as_str()];
        // The lease is honoured: b claimed the job only once a's lease had run out.
        assert!(at as i64 >= lease_end, "{id} delivered by b at {at}, before a's lease ended at {lease_end}");
        eprintln!(
            "a's leased job {id} delivered by b {} ms after the kill, {} ms after the lease ended",
            at - killed_at,
            at as i64 - lease_end
        );
    }
    // At-least-once for a killed worker: a job a had written to its log but not yet recorded
    // as delivered when it died is delivered again by b. Those are the only ids in both logs,
    // and there are at most as many as the jobs a had leased.
    let both: HashSet<String> = ids_a.intersection(&ids_b).cloned().collect();
    assert!(
        both.is_subset(&leased_by_a),
        "only jobs leased by a when it died are in both logs: {} others are, e.g. {:?}",
        both.difference(&leased_by_a).count(),
        both.difference(&leased_by_a).next()
    );
    eprintln!(
        "jobs leased by a when it died: {}; delivered by both (a logged them, then died before recording): {}",
        leased_by_a.len(),
        both.len()
    );
    db.drop_database().await;
}
