//! `herald test-broadcast`: sends realistic sample domain events through the real pipeline
//! (signed ingest → queue → driver), listens with real WebSockets on every channel they should
//! reach, and reports what arrived and how long it took.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herald_server::config::AdminVisibility;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{percentile, Socket, Style, Target, TargetArgs};

const TYPES: [&str; 8] =
    ["notification", "donation", "campaign", "approval", "payment", "security", "maintenance", "compliance"];
const USER: &str = "herald-test";
const ORG: &str = "herald-test-org";
const CAMPAIGN: &str = "herald-test-campaign";

#[derive(Debug, clap::Args)]
pub(crate) struct TestBroadcastArgs {
    /// Which sample to send
    #[arg(long = "type", default_value = "all", value_parser = clap::builder::PossibleValuesParser::new(
        ["notification", "donation", "campaign", "approval", "payment", "security", "maintenance", "compliance", "all"]))]
    kind: String,
    /// How many of each sample
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,
    /// Seconds to wait for the last broadcasts after sending
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    target: TargetArgs,
}

/// The domain event of a sample, its broadcast name and logical channels; `marker` makes it unique.
fn sample(kind: &str, marker: &str) -> (Value, &'static str, Vec<String>) {
    let admin = ["admin-dashboard".to_owned(), format!("organization.{ORG}"), format!("campaign.{CAMPAIGN}")];
    match kind {
        "notification" => (
            json!({ "type": "notification.created", "data": { "notification": { "user_id": USER, "type": "herald_test", "title": marker, "message": "A test notification from herald test-broadcast", "priority": "normal" } } }),
            "notification.created",
            vec![format!("user.notifications.{USER}")],
        ),
        "donation" => (
            json!({ "type": "donation.large_received", "data": { "donation_id": marker, "amount": 5000, "currency": "EUR", "campaign_id": CAMPAIGN, "organization_id": ORG, "donor_name": "Test Donor", "threshold": 1000 } }),
            "donation.large",
            admin.to_vec(),
        ),
        "campaign" => (
            json!({ "type": "campaign.milestone_reached", "data": { "campaign_id": CAMPAIGN, "campaign_title": marker, "organization_id": ORG, "milestone": 50, "amount_raised": 5000, "goal_amount": 10000, "currency": "EUR" } }),
            "campaign.milestone",
            admin.to_vec(),
        ),
        "approval" => (
            json!({ "type": "campaign.approval_needed", "data": { "campaign_id": CAMPAIGN, "campaign_title": marker, "organization_id": ORG, "submitted_by": { "id": USER, "name": "Test Submitter" } } }),
            "campaign.approval_needed",
            vec!["admin-dashboard".into(), "admin-role-csr_admin".into(), "admin-role-super_admin".into()],
        ),
        "payment" => (
            json!({ "type": "payment.failed", "data": { "payment_id": marker, "donation_id": "herald-test-donation", "amount": 25, "currency": "EUR", "reason": "test: card declined", "user_id": USER, "organization_id": ORG } }),
            "payment.failed",
            vec![
                "payment-notifications".into(),
                "admin-role-finance_admin".into(),
                format!("user.notifications.{USER}"),
            ],
        ),
        "security" => (
            json!({ "type": "security.alert", "data": { "alert_type": "herald_test", "message": marker, "severity": "low", "details": { "source": "herald test-broadcast" } } }),
            "security.alert",
            vec!["security-alerts".into()],
        ),
        "maintenance" => (
            json!({ "type": "system.maintenance", "data": { "maintenance_type": "scheduled", "scheduled_for": "2030-01-01T02:00:00Z", "duration_minutes": 1, "affected_services": [marker] } }),
            "system.maintenance",
            vec!["system-maintenance".into()],
        ),
        _ => (
            json!({ "type": "compliance.issue", "data": { "issue_type": "herald_test", "severity": "low", "message": marker, "organization_id": ORG, "details": {} } }),
            "compliance.issue",
            vec!["compliance-notifications".into(), "admin-role-csr_admin".into()],
        ),
    }
}

fn wire(target: &Target, logical: &str) -> String {
    let public_admin = target.loaded.config.channels.admin_visibility == AdminVisibility::Public;
    herald_notify::CatalogChannel::new(logical).wire(public_admin)
}

pub(crate) async fn run(args: TestBroadcastArgs) -> ExitCode {
    let style = Style::stdout();
    let target = match Target::load(&args.target) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let kinds: Vec<&str> = if args.kind == "all" { TYPES.to_vec() } else { vec![args.kind.as_str()] };
    let token = match target.token(USER, ORG, &["super_admin", "csr_admin", "finance_admin", "hr_manager"]) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("herald: cannot mint a test token: {error}");
            return ExitCode::FAILURE;
        }
    };
    // One listening socket per channel the samples reach.
    let mut channels: Vec<String> =
        kinds.iter().flat_map(|kind| sample(kind, "").2).map(|c| wire(&target, &c)).collect();
    channels.sort();
    channels.dedup();
    let (arrivals, mut arrived) = mpsc::channel::<(String, String, Instant)>(4096);
    for channel in &channels {
        let url = match target.ws_url() {
            Ok(url) => url,
            Err(error) => {
                eprintln!("herald: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut socket = match Socket::connect(&url).await {
            Ok(socket) => socket,
            Err(error) => {
                eprintln!(
                    "herald: cannot connect to {}: {}",
                    target.http,
                    herald_notify::printable(&error.to_string())
                );
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = socket.subscribe(&target, channel, &token).await {
            eprintln!("herald: cannot listen on {channel}: {}", herald_notify::printable(&error.to_string()));
            return ExitCode::FAILURE;
        }
        let arrivals = arrivals.clone();
        let channel = channel.clone();
        let wait = Duration::from_secs(args.timeout + 60 + u64::from(args.count));
        tokio::spawn(async move {
            while let Ok(frame) = socket.next(wait).await {
                let event = frame["event"].as_str().unwrap_or_default();
                if !event.starts_with("pusher") {
                    let data = frame["data"].as_str().unwrap_or_default().to_owned();
                    if arrivals.send((channel.clone(), data, Instant::now())).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    drop(arrivals);
    let run_id = herald_notify::new_id()[..8].to_owned();
    let total = kinds.len() * args.count as usize;
    // marker -> (kind, sent at, channels still expected)
    let mut pending: HashMap<String, (&str, Instant, HashSet<String>)> = HashMap::new();
    let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    let mut sent = 0;
    let mut received = 0;
    let expected: usize =
        kinds.iter().map(|kind| sample(kind, "").2.len()).sum::<usize>() * args.count as usize;
    for round in 0..args.count {
        for (index, kind) in kinds.iter().enumerate() {
            let marker = format!("herald-test-{run_id}-{index}-{round}");
            let (mut event, _, logical) = sample(kind, &marker);
            event["id"] = json!(marker);
            let started = Instant::now();
            match target.signed("POST", "/domain-events", Some(&event)).await {
                Ok((202, body)) if body["events"][0]["status"] == "accepted" => {
                    let wires = logical.iter().map(|c| wire(&target, c)).collect();
                    pending.insert(marker, (kind, started, wires));
                }
                Ok((status, body)) => refused.push(format!("{kind}: ingest answered {status} {body}")),
                Err(error) => {
                    eprintln!("herald: {error}");
                    return ExitCode::FAILURE;
                }
            }
            sent += 1;
            while let Ok((channel, data, at)) = arrived.try_recv() {
                received += record(&mut pending, &mut latencies, &channel, &data, at);
            }
            progress(&style, sent, total, received, expected);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while pending.values().any(|(_, _, left)| !left.is_empty()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, arrived.recv()).await {
            Ok(Some((channel, data, at))) => {
                received += record(&mut pending, &mut latencies, &channel, &data, at)
            }
            _ => break,
        }
        progress(&style, sent, total, received, expected);
    }
    if style.is_terminal() {
        out!();
    }
    report(&style, &kinds, &latencies, &pending, &refused, args.count)
}

/// Matches an arrival to its sample; returns 1 when it was expected.
fn record<'a>(
    pending: &mut HashMap<String, (&'a str, Instant, HashSet<String>)>,
    latencies: &mut BTreeMap<&'a str, Vec<f64>>,
    channel: &str,
    data: &str,
    at: Instant,
) -> usize {
    let Some((marker, (kind, sent, left))) =
        pending.iter_mut().find(|(marker, _)| data.contains(marker.as_str()))
    else {
        return 0;
    };
    let _ = marker;
    if left.remove(channel) {
        latencies.entry(kind).or_default().push(at.duration_since(*sent).as_secs_f64() * 1000.0);
        1
    } else {
        0
    }
}

fn progress(style: &Style, sent: usize, total: usize, received: usize, expected: usize) {
    if !style.is_terminal() || total < 10 {
        return;
    }
    let width = 30;
    let done = (received * width).checked_div(expected).unwrap_or(width).min(width);
    out_inline!(
        "\r  [{}{}] sent {sent}/{total}, received {received}/{expected}",
        "#".repeat(done),
        " ".repeat(width - done)
    );
    let _ = std::io::stdout().flush();
}

fn report(
    style: &Style,
    kinds: &[&str],
    latencies: &BTreeMap<&str, Vec<f64>>,
    pending: &HashMap<String, (&str, Instant, HashSet<String>)>,
    refused: &[String],
    count: u32,
) -> ExitCode {
    out!("{:<14} {:<26} {:>10} {:>10} {:>10}", "SAMPLE", "EVENT", "ARRIVED", "p50 ms", "p99 ms");
    let mut all: Vec<f64> = Vec::new();
    let mut missing_total = 0;
    for kind in kinds {
        let (_, event, channels) = sample(kind, "");
        let mut times = latencies.get(kind).cloned().unwrap_or_default();
        times.sort_by(f64::total_cmp);
        all.extend(&times);
        let expected = channels.len() * count as usize;
        let arrived = times.len();
        missing_total += expected - arrived.min(expected);
        let cell = format!("{arrived}/{expected}");
        let cell = if arrived == expected { style.ok(&cell) } else { style.bad(&cell) };
        let pad = 10 + cell.len() - format!("{arrived}/{expected}").len();
        out!(
            "{:<14} {:<26} {:>pad$} {:>10.1} {:>10.1}",
            kind,
            event,
            cell,
            percentile(&times, 50.0),
            percentile(&times, 99.0)
        );
    }
    for (marker, (kind, _, left)) in pending {
        for channel in left {
            out!("  {} {kind} ({marker}) never reached {channel}", style.bad("missing"));
        }
    }
    for line in refused {
        out!("  {} {line}", style.bad("refused"));
    }
    all.sort_by(f64::total_cmp);
    out!(
        "\n{} broadcasts arrived, {} missing; ingest → client p50 {:.1} ms, p99 {:.1} ms",
        all.len(),
        missing_total,
        percentile(&all, 50.0),
        percentile(&all, 99.0)
    );
    if missing_total == 0 && refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
