//! Herald and its peers side by side: one column per server measured in the run, and the ratio
//! of each peer to herald (the first column).

use std::fmt::Write as _;

use crate::phases::{percentile, LatencyResult};
use crate::{ms, Target};

/// `value / base` as `1.23×`, or `—`.
fn ratio(base: Option<f64>, value: Option<f64>) -> String {
    match (base, value) {
        (Some(base), Some(value)) if base > 0.0 && value > 0.0 => format!("{:.2}×", value / base),
        _ => "—".to_owned(),
    }
}

/// A row: a label, and per target a text and a number to take ratios of.
type Row = (String, Vec<(String, Option<f64>)>);

fn latency_rows(label: &str, latencies: &[Option<&LatencyResult>], rows: &mut Vec<Row>) {
    if latencies.iter().all(Option::is_none) {
        return;
    }
    let cell = |latency: &Option<&LatencyResult>, p: f64| match latency {
        Some(latency) if !latency.samples_us.is_empty() => {
            let value = percentile(&latency.samples_us, p);
            (ms(value), Some(value as f64))
        }
        _ => ("—".to_owned(), None),
    };
    rows.push((format!("{label}: latency p50"), latencies.iter().map(|l| cell(l, 50.0)).collect()));
    rows.push((format!("{label}: latency p99"), latencies.iter().map(|l| cell(l, 99.0)).collect()));
    let cpu = |latency: &Option<&LatencyResult>, pick: usize| match latency
        .and_then(|latency| latency.cpu.per_delivery_us(latency.deliveries))
    {
        Some(split) => {
            let value = [split.0, split.1, split.2][pick];
            (format!("{value:.2} µs"), Some(value))
        }
        None => ("—".to_owned(), None),
    };
    for (pick, what) in ["user", "system", "total"].iter().enumerate() {
        rows.push((
            format!("{label}: server CPU per delivery, {what}"),
            latencies.iter().map(|l| cpu(l, pick)).collect(),
        ));
    }
    let missing = |latency: &Option<&LatencyResult>| match latency {
        Some(latency) => (latency.missing.to_string(), None),
        None => ("—".to_owned(), None),
    };
    rows.push((format!("{label}: deliveries missing"), latencies.iter().map(missing).collect()));
}

/// The comparison table.
pub(crate) fn to_markdown(targets: &[Target]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let memory: Vec<_> = targets.iter().map(|t| t.results.memory.as_ref()).collect();
    if memory.iter().any(Option::is_some) {
        rows.push((
            "Memory per idle subscribed connection".to_owned(),
            memory
                .iter()
                .map(|m| match m {
                    Some(m) => (format!("{:.0} B", m.per_connection()), Some(m.per_connection())),
                    None => ("—".to_owned(), None),
                })
                .collect(),
        ));
        rows.push((
            "Open + subscribe the idle connections".to_owned(),
            memory
                .iter()
                .map(|m| match m {
                    Some(m) => (format!("{:.1} s ({})", m.connect_secs, m.connected), Some(m.connect_secs)),
                    None => ("—".to_owned(), None),
                })
                .collect(),
        ));
    }
    let latencies: Vec<_> = targets.iter().map(|t| t.results.latency.as_ref()).collect();
    latency_rows("Broadcast rounds", &latencies, &mut rows);
    let throughput: Vec<_> = targets.iter().map(|t| t.results.throughput.as_ref()).collect();
    if throughput.iter().any(Option::is_some) {
        rows.push((
            "HTTP trigger throughput".to_owned(),
            throughput
                .iter()
                .map(|t| match t {
                    Some(t) => (format!("{:.0} req/s", t.per_second()), Some(t.per_second())),
                    None => ("—".to_owned(), None),
                })
                .collect(),
        ));
        rows.push((
            "Throughput: server CPU per delivery, total".to_owned(),
            throughput
                .iter()
                .map(|t| match t.and_then(|t| t.cpu.per_delivery_us(t.delivered)) {
                    Some((user, system, total)) => {
                        (format!("{total:.2} µs ({user:.2} + {system:.2})"), Some(total))
                    }
                    None => ("—".to_owned(), None),
                })
                .collect(),
        ));
    }
    if let Some(first) = targets.first() {
        for (index, (spec, _)) in first.results.fanout.iter().enumerate() {
            let latencies: Vec<_> = targets
                .iter()
                .map(|t| t.results.fanout.get(index).filter(|(s, _)| s == spec).map(|(_, l)| l))
                .collect();
            latency_rows(
                &format!("Fan-out {} subs / {} ch at {}/s", spec.subscribers, spec.channels, spec.rate),
                &latencies,
                &mut rows,
            );
        }
    }
    let mut out = String::new();
    let _ = write!(out, "| Measurement |");
    for target in targets {
        let _ = write!(out, " {} |", target.name);
    }
    for target in targets.iter().skip(1) {
        let _ = write!(out, " {} / {} |", target.name, targets[0].name);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---|".repeat(targets.len() * 2 - 1));
    for (label, cells) in rows {
        let _ = write!(out, "| {label} |");
        for (text, _) in &cells {
            let _ = write!(out, " {text} |");
        }
        for (_, value) in cells.iter().skip(1) {
            let _ = write!(out, " {} |", ratio(cells[0].1, *value));
        }
        let _ = writeln!(out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn ratios_need_both_values() {
        assert_eq!(ratio(Some(2.0), Some(3.0)), "1.50×");
        assert_eq!(ratio(Some(0.0), Some(3.0)), "—");
        assert_eq!(ratio(None, Some(3.0)), "—");
    }
}
