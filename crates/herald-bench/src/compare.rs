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

/// A row of one cell per target; `—` where the target has no measurement or `cell` no value.
fn row<T>(label: String, targets: &[Option<T>], cell: impl Fn(&T) -> Option<(String, Option<f64>)>) -> Row {
    let cells =
        targets.iter().map(|target| target.as_ref().and_then(&cell).unwrap_or(("—".to_owned(), None)));
    (label, cells.collect())
}

fn latency_rows(label: &str, latencies: &[Option<&LatencyResult>], rows: &mut Vec<Row>) {
    if latencies.iter().all(Option::is_none) {
        return;
    }
    for p in [50.0, 99.0] {
        rows.push(row(format!("{label}: latency p{p}"), latencies, |latency| {
            let value = (!latency.samples_us.is_empty()).then(|| percentile(&latency.samples_us, p))?;
            Some((ms(value), Some(value as f64)))
        }));
    }
    for (pick, what) in ["user", "system", "total"].iter().enumerate() {
        rows.push(row(format!("{label}: server CPU per delivery, {what}"), latencies, |latency| {
            let (user, system, total) = latency.cpu.per_delivery_us(latency.deliveries)?;
            let value = [user, system, total][pick];
            Some((format!("{value:.2} µs"), Some(value)))
        }));
    }
    rows.push(row(format!("{label}: deliveries missing"), latencies, |latency| {
        Some((latency.missing.to_string(), None))
    }));
}

/// The comparison table.
pub(crate) fn to_markdown(targets: &[Target]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let memory: Vec<_> = targets.iter().map(|t| t.results.memory.as_ref()).collect();
    if memory.iter().any(Option::is_some) {
        rows.push(row("Memory per idle subscribed connection".to_owned(), &memory, |m| {
            Some((format!("{:.0} B", m.per_connection()), Some(m.per_connection())))
        }));
        rows.push(row("Open + subscribe the idle connections".to_owned(), &memory, |m| {
            Some((format!("{:.1} s ({})", m.connect_secs, m.connected), Some(m.connect_secs)))
        }));
    }
    let latencies: Vec<_> = targets.iter().map(|t| t.results.latency.as_ref()).collect();
    latency_rows("Broadcast rounds", &latencies, &mut rows);
    let throughput: Vec<_> = targets.iter().map(|t| t.results.throughput.as_ref()).collect();
    if throughput.iter().any(Option::is_some) {
        rows.push(row("HTTP trigger throughput".to_owned(), &throughput, |t| {
            Some((format!("{:.0} req/s", t.per_second()), Some(t.per_second())))
        }));
        rows.push(row("Throughput: server CPU per delivery, total".to_owned(), &throughput, |t| {
            let (user, system, total) = t.cpu.per_delivery_us(t.delivered)?;
            Some((format!("{total:.2} µs ({user:.2} + {system:.2})"), Some(total)))
        }));
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
