//! The reports of a fixed result, pinned byte for byte.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{node_name, to_json, to_markdown, ClusterConfig, ClusterResults, RedisCpu, Setup, SetupResult};
use crate::phases::{Cpu, LatencyLoad, LatencyResult, ThroughputLoad, ThroughputResult};
use crate::server::LogSummary;

fn fixed_config() -> ClusterConfig {
    ClusterConfig {
        bin: "herald".into(),
        server_log: "info".to_owned(),
        server_env: Vec::new(),
        postgres_url: "postgres://postgres@127.0.0.1:5432/test".to_owned(),
        redis_url: "redis://127.0.0.1:6379".to_owned(),
        nodes: 3,
        latency: LatencyLoad {
            subscribers: 300,
            rounds: 20,
            warmup_rounds: 2,
            connect_concurrency: 200,
            pause: Duration::from_millis(100),
            channels: 1,
            rate: None,
            round_timeout: Duration::from_secs(10),
        },
        throughput: ThroughputLoad {
            subscribers: 30,
            concurrency: 32,
            duration: Duration::from_secs(5),
            connect_concurrency: 200,
        },
    }
}

/// Samples growing with `node` and `scale` (per mille of the baseline).
fn samples(count: u64, node: u64, scale: u64) -> Vec<u64> {
    (1..=count).map(|n| (n * 40 + node * 300) * scale / 1000).collect()
}

fn latency(nodes: usize, scale: u64, missing: u64) -> LatencyResult {
    let node_samples_us: Vec<Vec<u64>> = (0..nodes as u64).map(|node| samples(100, node, scale)).collect();
    let mut samples_us: Vec<u64> = node_samples_us.iter().flatten().copied().collect();
    samples_us.sort_unstable();
    LatencyResult {
        subscribers: 300,
        failed: 0,
        errors: Vec::new(),
        connect_secs: 0.5 * scale as f64 / 1000.0,
        rounds: 20,
        warmup_rounds: 2,
        samples_us,
        node_samples_us,
        last_us: samples(20, 2, scale),
        trigger_us: samples(20, 0, scale),
        statuses: BTreeMap::from([("200".to_owned(), 20)]),
        missing,
        incomplete_rounds: usize::from(missing > 0),
        dropped: 0,
        worst: vec![(7, 9_000), (3, 8_500)],
        cpu: Cpu {
            server: 1.5 * scale as f64 / 1000.0,
            server_user: 1.0 * scale as f64 / 1000.0,
            server_system: 0.5 * scale as f64 / 1000.0,
            bench: 2.0,
            machine: 5.0,
            wall: 4.0,
        },
        deliveries: 22 * 30,
    }
}

fn throughput(nodes: usize, per_second: u64) -> ThroughputResult {
    let requests = per_second * 5;
    let node_delivered: Vec<u64> = (0..nodes as u64).map(|_| requests * 30 / nodes as u64).collect();
    ThroughputResult {
        subscribers: 30,
        failed: 0,
        errors: Vec::new(),
        concurrency: 32,
        seconds: 5.0,
        requests,
        ok: requests,
        statuses: BTreeMap::from([("200".to_owned(), requests)]),
        latencies_us: samples(200, 0, 1000 * 4000 / per_second),
        delivered: node_delivered.iter().sum(),
        expected: requests * 30,
        node_delivered,
        dropped: 0,
        cpu: Cpu { server: 7.5, server_user: 5.0, server_system: 2.5, bench: 1.5, machine: 9.75, wall: 5.0 },
    }
}

/// The three set-ups: the cluster lost a few deliveries and has a log warning and a failure.
fn fixed_results() -> ClusterResults {
    let setup = |setup: Setup, nodes: usize, scale: u64, per_second: u64, redis: bool| SetupResult {
        setup,
        nodes,
        latency: Some(latency(nodes, scale, u64::from(nodes > 1) * 3)),
        throughput: Some(throughput(nodes, per_second)),
        redis_cpu: if redis {
            RedisCpu { latency: Some(0.25), throughput: Some(1.5) }
        } else {
            RedisCpu::default()
        },
        failures: if nodes > 1 {
            vec!["node C exited during the run (signal: 9)".to_owned()]
        } else {
            Vec::new()
        },
        log: LogSummary {
            warnings: usize::from(nodes > 1),
            errors: 0,
            panics: 0,
            samples: if nodes > 1 { vec!["WARN redis slow".to_owned()] } else { Vec::new() },
        },
        load_start: "1.00 0.50 0.25".to_owned(),
        load_end: "2.00 1.00 0.50".to_owned(),
    };
    ClusterResults {
        setups: vec![
            setup(Setup::Single, 1, 1000, 4000, false),
            setup(Setup::SingleRedis, 1, 1250, 3000, true),
            setup(Setup::Cluster, 3, 1500, 2000, true),
        ],
        skipped: Vec::new(),
    }
}

/// The reports of the fixed result (Markdown and JSON), then without Redis (only the single
/// node), then with nothing measured.
fn reports() -> String {
    let config = fixed_config();
    let mut results = fixed_results();
    let mut out = String::new();
    for round in 0..3 {
        let mut notes = Vec::new();
        let markdown = to_markdown(&config, &results, &mut notes);
        out.push_str(&format!("## round {round}: markdown\n{markdown}\n## notes\n{}\n", notes.join("\n")));
        if round == 0 {
            out.push_str(&format!("## json\n{:#}\n", to_json(&config, &results)));
        }
        if round == 0 {
            results.setups.truncate(1);
            results.skipped.push("Redis at redis://127.0.0.1:6379 is unreachable".to_owned());
        } else {
            results.setups.clear();
        }
    }
    out
}

/// The reports are byte for byte those of `testdata/cluster_report.txt` (regenerate it on
/// purpose with `HERALD_BENCH_BLESS=1`).
#[test]
fn reports_of_a_fixed_result_are_unchanged() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster_report.txt");
    crate::golden::assert_unchanged(path, &reports());
}

#[test]
fn nodes_are_named_by_letter() {
    assert_eq!(node_name(0), "A");
    assert_eq!(node_name(2), "C");
    assert_eq!(node_name(25), "Z");
    assert_eq!(node_name(26), "#27");
}
