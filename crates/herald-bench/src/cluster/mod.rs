//! Phase 5, cluster: cross-node delivery. The latency and throughput measurements (the same
//! code and load as phases 2 and 3) on three set-ups, one after the other, each on a fresh
//! PostgreSQL database (a cluster refuses SQLite, and the baseline uses the same store so that
//! only Redis differs):
//! - *1 node*: one `herald serve`, no Redis (the single-node baseline);
//! - *1 node + Redis*: one node with the cluster on (`REDIS_URL`): every trigger is published to
//!   Redis before it is delivered, and every subscription is registered there;
//! - *N nodes + Redis*: `--cluster-nodes` nodes sharing Redis (a prefix of their own,
//!   `HERALD_CLUSTER__PREFIX`) and the database, the subscribers spread evenly over them, every
//!   trigger sent to node A; the other nodes deliver what they receive from Redis.
//!
//! The report puts them side by side with the ratios to the baseline (measured in the same run:
//! on a noisy machine only those compare).

mod json;
mod redis;
mod report;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::client::Api;
use crate::phases::{self, LatencyLoad, LatencyResult, ThroughputLoad, ThroughputResult};
use crate::postgres::Postgres;
use crate::server::{LogSummary, Server};

pub(crate) use json::to_json;
pub(crate) use redis::delete_leftover_keys;
pub(crate) use report::to_markdown;

use redis::Redis;

/// What the cluster phase does (from the command line).
pub(crate) struct ClusterConfig {
    pub(crate) bin: PathBuf,
    pub(crate) server_log: String,
    pub(crate) server_env: Vec<(String, String)>,
    /// A database on the PostgreSQL server to connect to for `CREATE DATABASE`.
    pub(crate) postgres_url: String,
    /// The Redis the nodes share (127.0.0.1 only).
    pub(crate) redis_url: String,
    /// Nodes of the cluster set-up.
    pub(crate) nodes: usize,
    pub(crate) latency: LatencyLoad,
    pub(crate) throughput: ThroughputLoad,
}

/// One of the three set-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// One node, no Redis: the baseline.
    Single,
    /// One node with the cluster on.
    SingleRedis,
    /// Several nodes sharing Redis.
    Cluster,
}

impl Setup {
    /// The name in the JSON report.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Setup::Single => "single",
            Setup::SingleRedis => "single_redis",
            Setup::Cluster => "cluster",
        }
    }
}

/// What one set-up measured.
pub(crate) struct SetupResult {
    pub(crate) setup: Setup,
    pub(crate) nodes: usize,
    pub(crate) latency: Option<LatencyResult>,
    pub(crate) throughput: Option<ThroughputResult>,
    /// Redis CPU seconds during the latency rounds and while the triggers were fired.
    pub(crate) redis_cpu: RedisCpu,
    /// What went wrong (the set-up, or one of its measurements, did not finish).
    pub(crate) failures: Vec<String>,
    /// The nodes' logs, summed up.
    pub(crate) log: LogSummary,
    pub(crate) load_start: String,
    pub(crate) load_end: String,
}

impl SetupResult {
    /// "1 node", "1 node + Redis", "3 nodes + Redis".
    pub(crate) fn label(&self) -> String {
        match self.setup {
            Setup::Single => "1 node".to_owned(),
            Setup::SingleRedis => "1 node + Redis".to_owned(),
            Setup::Cluster => format!("{} nodes + Redis", self.nodes),
        }
    }
}

/// Redis CPU seconds per measurement (`None` without Redis).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RedisCpu {
    pub(crate) latency: Option<f64>,
    pub(crate) throughput: Option<f64>,
}

pub(crate) struct ClusterResults {
    pub(crate) setups: Vec<SetupResult>,
    /// Set-ups not measured, and why.
    pub(crate) skipped: Vec<String>,
}

/// Runs the three set-ups; those that cannot run (no PostgreSQL, no Redis) are skipped with a
/// reason.
pub(crate) async fn run(config: &ClusterConfig) -> ClusterResults {
    let mut results = ClusterResults { setups: Vec::new(), skipped: Vec::new() };
    let mut postgres = match Postgres::connect(&config.postgres_url).await {
        Ok(pg) => pg,
        Err(error) => {
            let why = format!("PostgreSQL at {} is unreachable: {error:#}", config.postgres_url);
            eprintln!("cluster: {why}; skipping the phase");
            results.skipped.push(why);
            return results;
        }
    };
    let redis = tokio::task::block_in_place(|| Redis::connect(&config.redis_url));
    let mut redis = match redis {
        Ok(redis) => Some(redis),
        Err(error) => {
            let why = format!(
                "Redis at {} is unreachable: {error:#}; only the single node was measured",
                config.redis_url
            );
            eprintln!("cluster: {why}");
            results.skipped.push(why);
            None
        }
    };
    results.setups.push(run_setup(config, Setup::Single, 1, &mut postgres, None).await);
    if let Some(redis) = redis.as_mut() {
        results.setups.push(run_setup(config, Setup::SingleRedis, 1, &mut postgres, Some(redis)).await);
        let nodes = config.nodes.max(1);
        results.setups.push(run_setup(config, Setup::Cluster, nodes, &mut postgres, Some(redis)).await);
    }
    results
}

/// Prefixes used so far by this process: each is `herald-bench-<pid>-<n>`.
static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// Starts `nodes` nodes of `setup` on a fresh database, measures, stops them and removes the
/// database and the Redis keys.
async fn run_setup(
    config: &ClusterConfig,
    setup: Setup,
    nodes: usize,
    postgres: &mut Postgres,
    mut redis: Option<&mut Redis>,
) -> SetupResult {
    let mut result = SetupResult {
        setup,
        nodes,
        latency: None,
        throughput: None,
        redis_cpu: RedisCpu::default(),
        failures: Vec::new(),
        log: LogSummary::default(),
        load_start: crate::load_average(),
        load_end: String::new(),
    };
    let label = result.label();
    let (database, url) = match postgres.fresh().await {
        Ok(created) => created,
        Err(error) => {
            result.failures.push(format!("{error:#}"));
            result.load_end = crate::load_average();
            return result;
        }
    };
    let mut env = config.server_env.clone();
    let prefix = redis
        .is_some()
        .then(|| format!("herald-bench-{}-{}", std::process::id(), PREFIXES.fetch_add(1, Ordering::Relaxed)));
    if let Some(prefix) = &prefix {
        redis::remember(&config.redis_url, prefix, true);
        env.push(("REDIS_URL".to_owned(), config.redis_url.clone()));
        env.push(("HERALD_CLUSTER__PREFIX".to_owned(), prefix.clone()));
    }
    let mut servers = Vec::with_capacity(nodes);
    for node in 0..nodes {
        let started =
            tokio::task::block_in_place(|| Server::start(&config.bin, &config.server_log, &env, Some(&url)));
        match started {
            Ok(server) => {
                eprintln!(
                    "cluster [{label}]: started node {} (pid {}) on 127.0.0.1:{}, database {database}",
                    node_name(node),
                    server.pid,
                    server.port
                );
                servers.push(server);
            }
            Err(error) => {
                result.failures.push(format!("node {}: {error:#}", node_name(node)));
                break;
            }
        }
    }
    if servers.len() == nodes {
        if let Err(error) = measure(config, &servers, redis.as_deref_mut(), &mut result).await {
            result.failures.push(format!("{error:#}"));
        }
    }
    for (node, server) in servers.into_iter().enumerate() {
        if let Some(status) = server.exited() {
            result.failures.push(format!("node {} exited during the run ({status})", node_name(node)));
        }
        result.log.merge(server.stop());
    }
    postgres.drop_database(&database).await;
    if let (Some(redis), Some(prefix)) = (redis, prefix) {
        match tokio::task::block_in_place(|| redis.delete_prefix(&prefix)) {
            Ok(_) => redis::remember(&config.redis_url, &prefix, false),
            Err(error) => eprintln!("cluster: cannot remove the Redis keys of {prefix}: {error:#}"),
        }
    }
    result.load_end = crate::load_average();
    result
}

/// Latency, then throughput, with the triggers sent to the first node; Redis's CPU around each.
async fn measure(
    config: &ClusterConfig,
    nodes: &[Server],
    mut redis: Option<&mut Redis>,
    result: &mut SetupResult,
) -> anyhow::Result<()> {
    let api = Api::new(nodes[0].port)?;
    let mut redis_cpu =
        || redis.as_deref_mut().and_then(|redis| tokio::task::block_in_place(|| redis.cpu_secs()));
    let before = redis_cpu();
    result.latency = Some(phases::latency(nodes, &api, &config.latency).await?);
    let middle = redis_cpu();
    result.redis_cpu.latency = before.zip(middle).map(|(before, after)| after - before);
    result.throughput = Some(phases::throughput(nodes, &api, &config.throughput).await?);
    result.redis_cpu.throughput = middle.zip(redis_cpu()).map(|(before, after)| after - before);
    Ok(())
}

/// A, B, C, … (node 0 is A, the one the triggers go to).
pub(crate) fn node_name(node: usize) -> String {
    match u8::try_from(node).ok().filter(|node| *node < 26) {
        Some(node) => char::from(b'A' + node).to_string(),
        None => format!("#{}", node + 1),
    }
}
