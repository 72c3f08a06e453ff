//! The ingest phase as a Markdown table (one column per backend, and PostgreSQL / SQLite when
//! both were measured) and its notes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::latency::LatencyResult;
use super::load::LoadResult;
use super::usage::Usage;
use super::{Backend, BackendResult, IngestConfig, IngestResults};
use crate::phases::percentile;

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
    let columns: Vec<&BackendResult> = results.backends.iter().filter(|b| b.skipped.is_none()).collect();
    for skipped in results.backends.iter().filter_map(|b| b.skipped.as_ref()) {
        notes.push(format!("ingest: skipped: {skipped}"));
    }
    if columns.is_empty() {
        return "Notification layer: ingest: no backend was measured (see the notes).\n".to_owned();
    }
    let mut table = Table::new(columns);
    table.row(
        "Load average at start / end".to_owned(),
        &|b| format!("{} / {}", b.load_start, b.load_end),
        None,
    );
    for &batch in &config.batches {
        load_rows(&mut table, config, batch);
        load_usage_rows(&mut table, batch);
        load_notes(&table, batch, notes);
    }
    if table.columns.iter().any(|b| b.latency.is_some()) {
        latency_rows(&mut table);
        latency_notes(&table, notes);
    }
    table.row(
        "Server log (all steps)".to_owned(),
        &|b| format!("{} WARN, {} ERROR, {} panics", b.log.warnings, b.log.errors, b.log.panics),
        None,
    );
    for column in &table.columns {
        for (step, error) in &column.failures {
            notes.push(format!("ingest {step}: FAILED: {error}"));
        }
        for sample in &column.log.samples {
            notes.push(format!("ingest {} server log: {sample}", column.backend.label()));
        }
    }
    table.out
}

/// The table as it is written: a row per measure, a column per measured backend, and the
/// PostgreSQL / SQLite column when both were measured.
struct Table<'a> {
    out: String,
    columns: Vec<&'a BackendResult>,
    both: Option<(&'a BackendResult, &'a BackendResult)>,
}

impl<'a> Table<'a> {
    /// Starts the table with its header.
    fn new(columns: Vec<&'a BackendResult>) -> Table<'a> {
        let find = |backend: Backend| columns.iter().copied().find(|b| b.backend == backend);
        let both = find(Backend::Sqlite).zip(find(Backend::Postgres));
        let mut out = "| Notification layer: ingest |".to_owned();
        for column in &columns {
            let _ = write!(out, " {} |", column.backend.label());
        }
        if both.is_some() {
            out.push_str(" PostgreSQL / SQLite |");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "|---|{}{}",
            "---|".repeat(columns.len()),
            if both.is_some() { "---|" } else { "" }
        );
        Table { out, columns, both }
    }

    /// One row: `label`, each column's `cell`, and `ratio` in the ratio column when there is one.
    fn row(&mut self, label: String, cell: &dyn Fn(&BackendResult) -> String, ratio: Option<String>) {
        let _ = write!(self.out, "| {label} |");
        for column in &self.columns {
            let _ = write!(self.out, " {} |", cell(column));
        }
        if self.both.is_some() {
            let _ = write!(self.out, " {} |", ratio.unwrap_or_default());
        }
        self.out.push('\n');
    }

    /// PostgreSQL / SQLite of `measure` for the load step of `batch`, when both have one.
    fn load_ratio(&self, batch: usize, measure: &dyn Fn(&LoadResult) -> f64) -> Option<String> {
        let (sqlite, postgres) = self.both?;
        let (sqlite, postgres) = load_of(sqlite, batch).zip(load_of(postgres, batch))?;
        Some(ratio(measure(sqlite), measure(postgres)))
    }

    /// PostgreSQL / SQLite of `measure` for the latency step, when both have one.
    fn latency_ratio(&self, measure: &dyn Fn(&LatencyResult) -> f64) -> Option<String> {
        let (sqlite, postgres) = self.both?;
        let (sqlite, postgres) = latency_of(sqlite).zip(latency_of(postgres))?;
        Some(ratio(measure(sqlite), measure(postgres)))
    }
}

/// The load step of `batch`: throughput, request latency, answers, broadcasts.
fn load_rows(table: &mut Table<'_>, config: &IngestConfig, batch: usize) {
    table.row(
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
        table.load_ratio(batch, &|l| l.per_second()),
    );
    table.row(
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
        table.load_ratio(batch, &|l| percentile(&l.latencies_us, 50.0) as f64).map(|r| format!("{r} (p50)")),
    );
    table.row(
        format!("HTTP statuses; event outcomes, B = {batch}"),
        &|b| {
            load_of(b, batch)
                .map_or("—".to_owned(), |l| format!("{}; {}", counts(&l.statuses), counts(&l.outcomes)))
        },
        None,
    );
    table.row(
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
        table.load_ratio(batch, &|l| l.delivered_per_second()).map(|r| format!("{r} (delivered/s)")),
    );
}

/// The load step of `batch`: CPU, threads, storage, the drain, PostgreSQL transactions.
fn load_usage_rows(table: &mut Table<'_>, batch: usize) {
    table.row(
        format!("CPU in the window, B = {batch}"),
        &|b| load_of(b, batch).map_or("—".to_owned(), |l| usage_text(&l.usage)),
        None,
    );
    table.row(
        format!("Busiest server threads, B = {batch}"),
        &|b| load_of(b, batch).map_or("—".to_owned(), |l| threads_text(&l.usage)),
        None,
    );
    table.row(
        format!("Storage writes in the window, B = {batch}"),
        &|b| load_of(b, batch).map_or("—".to_owned(), |l| storage_text(&l.usage, l.accepted)),
        None,
    );
    table.row(
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
        table.load_ratio(batch, &|l| l.delivered_in_drain as f64 / l.drain_usage.cpu.wall.max(1e-9)),
    );
    if table.columns.iter().any(|b| load_of(b, batch).is_some_and(|l| l.transactions.is_some())) {
        table.row(
            format!(
                "PostgreSQL transactions in the database per accepted event (window + drain), B = {batch}"
            ),
            &|b| {
                load_of(b, batch).and_then(|l| l.transactions.map(|t| (l, t))).map_or(
                    "—".to_owned(),
                    |(l, (commits, rollbacks))| {
                        format!(
                            "{:.2} ({commits} commits, {rollbacks} rollbacks)",
                            (commits + rollbacks) as f64 / l.accepted.max(1) as f64
                        )
                    },
                )
            },
            None,
        );
    }
}

/// A note for each backend whose load step of `batch` saw errors or lost broadcasts.
fn load_notes(table: &Table<'_>, batch: usize, notes: &mut Vec<String>) {
    for column in &table.columns {
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

/// The latency step: ingest → subscriber, the ingest call, answers, transactions, CPU.
fn latency_rows(table: &mut Table<'_>) {
    let (events, warmup, interval) = table
        .columns
        .iter()
        .find_map(|b| b.latency.as_ref())
        .map(|l| (l.events, l.warmup, l.interval_ms))
        .unwrap_or_default();
    table.row(
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
        table.latency_ratio(&|l| percentile(&l.samples_us, 50.0) as f64).map(|r| format!("{r} (p50)")),
    );
    table.row(
        "… of which the ingest call (until its 202), p50 / p99".to_owned(),
        &|b| {
            latency_of(b).map_or("—".to_owned(), |l| {
                format!("{} / {}", ms(percentile(&l.post_us, 50.0)), ms(percentile(&l.post_us, 99.0)))
            })
        },
        table.latency_ratio(&|l| percentile(&l.post_us, 50.0) as f64).map(|r| format!("{r} (p50)")),
    );
    table.row(
        "Latency events: statuses; outcomes; broadcasts missing".to_owned(),
        &|b| {
            latency_of(b).map_or("—".to_owned(), |l| {
                format!("{}; {}; {} missing", counts(&l.statuses), counts(&l.outcomes), l.missing)
            })
        },
        None,
    );
    if table.columns.iter().any(|b| latency_of(b).is_some_and(|l| l.transactions.is_some())) {
        table.row(
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
    table.row(
        "CPU during the latency events".to_owned(),
        &|b| latency_of(b).map_or("—".to_owned(), |l| usage_text(&l.usage)),
        None,
    );
}

/// A note per backend with its slowest latency events (and errors, if any).
fn latency_notes(table: &Table<'_>, notes: &mut Vec<String>) {
    for column in &table.columns {
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
