//! The cluster phase as a Markdown table: a column per set-up, and a column per set-up with
//! Redis giving its ratio to the single node (both measured in the same run).

use std::fmt::Write as _;

use super::{node_name, ClusterConfig, ClusterResults, Setup, SetupResult};
use crate::phases::{percentile, Cpu, LatencyResult, ThroughputResult};
use crate::{ms, statuses_text};

/// `value / base` as `1.23×`, or `—` when either is missing or zero.
pub(super) fn ratio(base: f64, value: f64) -> String {
    if base > 0.0 && value > 0.0 {
        format!("{:.2}×", value / base)
    } else {
        "—".to_owned()
    }
}

/// p50 / p99 of sorted samples, or `—` without any.
fn p50_p99(samples: &[u64]) -> String {
    if samples.is_empty() {
        return "—".to_owned();
    }
    format!("{} / {}", ms(percentile(samples, 50.0)), ms(percentile(samples, 99.0)))
}

/// The ratios of the p50s and of the p99s.
fn p50_p99_ratio(base: &[u64], samples: &[u64]) -> String {
    if base.is_empty() || samples.is_empty() {
        return "—".to_owned();
    }
    let at = |samples: &[u64], p: f64| percentile(samples, p) as f64;
    format!("{} / {}", ratio(at(base, 50.0), at(samples, 50.0)), ratio(at(base, 99.0), at(samples, 99.0)))
}

/// The samples of the subscribers on node A (the one the triggers go to).
pub(super) fn on_first(latency: &LatencyResult) -> Vec<u64> {
    latency.samples_on(0..1)
}

/// The samples of the subscribers on the other nodes (none with one node).
pub(super) fn on_others(latency: &LatencyResult) -> Vec<u64> {
    latency.samples_on(1..latency.node_samples_us.len())
}

/// The other nodes' names: `B, C`.
fn others(nodes: usize) -> String {
    (1..nodes).map(node_name).collect::<Vec<_>>().join(", ")
}

fn cpu_text(cpu: &Cpu, redis: Option<f64>) -> String {
    let redis = redis.unwrap_or(0.0);
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1} s over {:.1} s",
        cpu.server,
        redis,
        cpu.bench,
        (cpu.others() - redis).max(0.0),
        cpu.wall
    )
}

/// A compared set-up's cell from the baseline and the set-up.
type Ratio<'r> = &'r dyn Fn(&SetupResult, &SetupResult) -> String;

/// The table as it is written: a row per measure, a column per set-up, and a ratio column per
/// set-up other than the baseline.
struct Table<'a> {
    out: String,
    columns: Vec<&'a SetupResult>,
    base: Option<&'a SetupResult>,
    /// The set-ups compared with the baseline.
    compared: Vec<&'a SetupResult>,
}

impl<'a> Table<'a> {
    fn new(columns: Vec<&'a SetupResult>) -> Table<'a> {
        let base = columns.iter().copied().find(|s| s.setup == Setup::Single);
        let compared: Vec<&SetupResult> = if base.is_some() {
            columns.iter().copied().filter(|s| s.setup != Setup::Single).collect()
        } else {
            Vec::new()
        };
        let mut out = "| Cluster: cross-node delivery |".to_owned();
        for column in &columns {
            let _ = write!(out, " {} |", column.label());
        }
        for column in &compared {
            let _ = write!(out, " {} / 1 node |", column.label());
        }
        out.push('\n');
        let _ = writeln!(out, "|---|{}", "---|".repeat(columns.len() + compared.len()));
        Table { out, columns, base, compared }
    }

    /// One row: `label`, each column's `cell`, and each compared set-up's `ratio` to the
    /// baseline (empty cells without `ratio`).
    fn row(&mut self, label: String, cell: &dyn Fn(&SetupResult) -> String, ratio: Option<Ratio<'_>>) {
        let _ = write!(self.out, "| {label} |");
        for column in &self.columns {
            let _ = write!(self.out, " {} |", cell(column));
        }
        for column in &self.compared {
            let text = match (ratio, self.base) {
                (Some(ratio), Some(base)) => ratio(base, column),
                _ => String::new(),
            };
            let _ = write!(self.out, " {text} |");
        }
        self.out.push('\n');
    }
}

/// A cell from the latency result, `—` without one.
fn latency_cell(s: &SetupResult, cell: impl Fn(&LatencyResult) -> String) -> String {
    s.latency.as_ref().map_or("—".to_owned(), cell)
}

/// A cell from the throughput result, `—` without one.
fn throughput_cell(s: &SetupResult, cell: impl Fn(&ThroughputResult) -> String) -> String {
    s.throughput.as_ref().map_or("—".to_owned(), cell)
}

/// A ratio of two latency results, `—` unless both have one.
fn latency_ratio(
    base: &SetupResult,
    s: &SetupResult,
    ratio: impl Fn(&LatencyResult, &LatencyResult) -> String,
) -> String {
    base.latency.as_ref().zip(s.latency.as_ref()).map_or("—".to_owned(), |(b, l)| ratio(b, l))
}

/// A ratio of two throughput results, `—` unless both have one.
fn throughput_ratio(
    base: &SetupResult,
    s: &SetupResult,
    ratio: impl Fn(&ThroughputResult, &ThroughputResult) -> String,
) -> String {
    base.throughput.as_ref().zip(s.throughput.as_ref()).map_or("—".to_owned(), |(b, t)| ratio(b, t))
}

/// The Markdown table of the cluster phase; its notes go to `notes`.
pub(crate) fn to_markdown(
    config: &ClusterConfig,
    results: &ClusterResults,
    notes: &mut Vec<String>,
) -> String {
    for skipped in &results.skipped {
        notes.push(format!("cluster: skipped: {skipped}"));
    }
    if results.setups.is_empty() {
        return "Cluster: cross-node delivery: nothing was measured (see the notes).\n".to_owned();
    }
    let mut table = Table::new(results.setups.iter().collect());
    table.row(
        "Nodes (subscribers spread evenly; every trigger sent to node A)".to_owned(),
        &|s| if s.nodes == 1 { "A".to_owned() } else { format!("A, {}", others(s.nodes)) },
        None,
    );
    table.row(
        "Load average at start / end".to_owned(),
        &|s| format!("{} / {}", s.load_start, s.load_end),
        None,
    );
    latency_rows(&mut table, config);
    throughput_rows(&mut table, config);
    table.row(
        "Server log (all nodes)".to_owned(),
        &|s| format!("{} WARN, {} ERROR, {} panics", s.log.warnings, s.log.errors, s.log.panics),
        None,
    );
    for setup in &results.setups {
        setup_notes(setup, notes);
    }
    table.out
}

fn latency_rows(table: &mut Table<'_>, config: &ClusterConfig) {
    let load = &config.latency;
    table.row(
        format!(
            "Broadcast: subscribers × measured rounds (+{} warm-up, {} ms apart); connected in",
            load.warmup_rounds,
            load.pause.as_millis()
        ),
        &|s| latency_cell(s, |l| format!("{} × {}; {:.1} s", l.subscribers, l.rounds, l.connect_secs)),
        Some(&|base, s| {
            latency_ratio(base, s, |b, l| format!("{} (connect)", ratio(b.connect_secs, l.connect_secs)))
        }),
    );
    table.row(
        "**Broadcast latency p50 / p99**, every subscriber".to_owned(),
        &|s| latency_cell(s, |l| format!("**{}**", p50_p99(&l.samples_us))),
        Some(&|base, s| latency_ratio(base, s, |b, l| p50_p99_ratio(&b.samples_us, &l.samples_us))),
    );
    table.row(
        "… subscribers on node A (the triggered node), p50 / p99".to_owned(),
        &|s| latency_cell(s, |l| p50_p99(&on_first(l))),
        Some(&|base, s| latency_ratio(base, s, |b, l| p50_p99_ratio(&b.samples_us, &on_first(l)))),
    );
    table.row(
        "… subscribers on the other nodes (through Redis), p50 / p99".to_owned(),
        &|s| latency_cell(s, |l| p50_p99(&on_others(l))),
        Some(&|base, s| latency_ratio(base, s, |b, l| p50_p99_ratio(&b.samples_us, &on_others(l)))),
    );
    table.row(
        "Time until the last subscriber has it, p50 / p99 (per round)".to_owned(),
        &|s| latency_cell(s, |l| p50_p99(&l.last_us)),
        Some(&|base, s| latency_ratio(base, s, |b, l| p50_p99_ratio(&b.last_us, &l.last_us))),
    );
    table.row(
        "Trigger HTTP call (to node A), p50 / p99".to_owned(),
        &|s| latency_cell(s, |l| p50_p99(&l.trigger_us)),
        Some(&|base, s| latency_ratio(base, s, |b, l| p50_p99_ratio(&b.trigger_us, &l.trigger_us))),
    );
    table.row(
        "CPU during the rounds: nodes / Redis / bench / others".to_owned(),
        &|s| latency_cell(s, |l| cpu_text(&l.cpu, s.redis_cpu.latency)),
        Some(&|base, s| {
            latency_ratio(base, s, |b, l| format!("{} (nodes)", ratio(b.cpu.server, l.cpu.server)))
        }),
    );
    table.row(
        "Round trigger statuses".to_owned(),
        &|s| latency_cell(s, |l| statuses_text(&l.statuses)),
        None,
    );
}

fn throughput_rows(table: &mut Table<'_>, config: &ClusterConfig) {
    let load = &config.throughput;
    table.row(
        format!(
            "**Deliveries/s** ({} subscribers, {} concurrent triggers to node A for {:.0} s)",
            load.subscribers,
            load.concurrency,
            load.duration.as_secs_f64()
        ),
        &|s| {
            throughput_cell(s, |t| {
                format!("**{:.0}** ({} of {} delivered)", t.deliveries_per_second(), t.delivered, t.expected)
            })
        },
        Some(&|base, s| {
            throughput_ratio(base, s, |b, t| ratio(b.deliveries_per_second(), t.deliveries_per_second()))
        }),
    );
    table.row(
        "Trigger requests/s; request latency p50 / p99".to_owned(),
        &|s| throughput_cell(s, |t| format!("{:.0}; {}", t.per_second(), p50_p99(&t.latencies_us))),
        Some(&|base, s| {
            throughput_ratio(base, s, |b, t| {
                format!(
                    "{}; {}",
                    ratio(b.per_second(), t.per_second()),
                    p50_p99_ratio(&b.latencies_us, &t.latencies_us)
                )
            })
        }),
    );
    table.row(
        "Deliveries per node".to_owned(),
        &|s| {
            throughput_cell(s, |t| {
                t.node_delivered
                    .iter()
                    .enumerate()
                    .map(|(node, count)| format!("{} {count}", node_name(node)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        },
        None,
    );
    table.row(
        "CPU while firing: nodes / Redis / bench / others".to_owned(),
        &|s| throughput_cell(s, |t| cpu_text(&t.cpu, s.redis_cpu.throughput)),
        Some(&|base, s| {
            throughput_ratio(base, s, |b, t| format!("{} (nodes)", ratio(b.cpu.server, t.cpu.server)))
        }),
    );
    table.row(
        "Trigger statuses while firing".to_owned(),
        &|s| throughput_cell(s, |t| statuses_text(&t.statuses)),
        None,
    );
}

/// Failures, lost deliveries, the slowest samples and the log samples of one set-up.
fn setup_notes(s: &SetupResult, notes: &mut Vec<String>) {
    let label = s.label();
    for failure in &s.failures {
        notes.push(format!("cluster [{label}]: FAILED: {failure}"));
    }
    if let Some(l) = &s.latency {
        if l.missing > 0 || l.dropped > 0 || l.failed > 0 || l.incomplete_rounds > 0 {
            notes.push(format!(
                "cluster [{label}] latency: {} deliveries missing, {} incomplete rounds, {} subscribers dropped, {} handshakes failed; first errors: {:?}",
                l.missing, l.incomplete_rounds, l.dropped, l.failed, l.errors
            ));
        }
        if !l.worst.is_empty() {
            notes.push(format!("cluster [{label}] latency: slowest samples (round, µs): {:?}", l.worst));
        }
    }
    if let Some(t) = &s.throughput {
        if t.ok != t.requests || t.delivered != t.expected || t.dropped > 0 || t.failed > 0 {
            notes.push(format!(
                "cluster [{label}] throughput: {} of {} requests were not 200, {} of {} deliveries missing, {} subscribers dropped, {} handshakes failed; first errors: {:?}",
                t.requests - t.ok,
                t.requests,
                t.expected.saturating_sub(t.delivered),
                t.expected,
                t.dropped,
                t.failed,
                t.errors
            ));
        }
    }
    for sample in &s.log.samples {
        notes.push(format!("cluster [{label}] server log: {sample}"));
    }
}
