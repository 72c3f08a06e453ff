//! The reports of a fixed result, pinned byte for byte.

use std::collections::BTreeMap;
use std::time::Duration;

use super::latency::LatencyResult;
use super::load::LoadResult;
use super::usage::Usage;
use super::{to_json, to_markdown, Backend, BackendResult, IngestConfig, IngestResults};
use crate::phases::Cpu;
use crate::postgres::Wal;
use crate::server::LogSummary;

/// A fixed result of both backends: two batch sizes (PostgreSQL failed the second), latency,
/// transactions, errors, a dropped subscriber, a failed step and log samples.
fn fixed_results() -> IngestResults {
    let usage = |server: f64, postgres: bool| Usage {
        cpu: Cpu {
            server,
            server_user: server * 0.75,
            server_system: server * 0.25,
            bench: 1.25,
            machine: server + 4.0,
            wall: 10.0,
        },
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
        out.push_str(&format!("## round {round}: markdown\n{markdown}\n## notes\n{}\n", notes.join("\n")));
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
    crate::golden::assert_unchanged(path, &reports());
}
