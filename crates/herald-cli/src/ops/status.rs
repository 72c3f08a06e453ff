//! `herald status`: what a running server is doing, from its admin API.

use std::process::ExitCode;

use herald_notify::Lane;
use herald_server::status::StatusDocument;
use serde_json::Value;

use super::{unreachable, Style, Target, TargetArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Also list every app's channels by kind, per-lane delivery counts and recent errors
    #[arg(long)]
    detailed: bool,
    /// Check the database and (with BROADCAST_CONNECTION=pusher) the upstream API; exit 1 if one fails
    #[arg(long)]
    check_deps: bool,
    /// Print the status document as JSON
    #[arg(long)]
    json: bool,
    /// Admin token [env: HERALD_ADMIN_TOKEN, or admin.token from the config]
    #[arg(long)]
    token: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
}

pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    let target = match Target::load(&args.target) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let token = args.token.clone().or_else(|| {
        let configured = &target.loaded.config.admin.token;
        (!configured.is_empty()).then(|| configured.clone())
    });
    let url = format!("{}/admin/api/status?check_deps={}", target.admin, args.check_deps);
    let mut request = target.http_client.get(&url);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("herald: {}", unreachable(&target.admin, &error));
            return ExitCode::FAILURE;
        }
    };
    if response.status().as_u16() == 401 {
        eprintln!("herald: the admin API wants a token: --token or HERALD_ADMIN_TOKEN");
        return ExitCode::FAILURE;
    }
    let status: Value = match response.json().await {
        Ok(status) => status,
        Err(error) => {
            eprintln!("herald: {url} did not answer with a status document: {error}");
            return ExitCode::FAILURE;
        }
    };
    let document: StatusDocument = serde_json::from_value(status.clone()).unwrap_or_default();
    let deps_ok = document.deps.is_none_or(|deps| deps.values().all(|dep| dep.ok));
    if args.json {
        out!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
    } else {
        out_inline!("{}", render(&status, args.detailed, &Style::stdout()));
    }
    if deps_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn uptime(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// The status document as an aligned report. Every string in it came over the network: each is
/// shown with its control characters escaped.
pub(crate) fn render(status: &Value, detailed: bool, style: &Style) -> String {
    use std::fmt::Write as _;
    let mut status = status.clone();
    herald_notify::printable_json(&mut status);
    let status: StatusDocument = serde_json::from_value(status).unwrap_or_default();
    let mut out = String::new();
    let state = if status.draining { style.bad("draining") } else { style.ok("serving") };
    let _ = writeln!(
        out,
        "{} {} — {state}, up {}",
        style.bold("Herald"),
        status.version,
        uptime(status.uptime_secs)
    );
    let _ = writeln!(out, "  {:<14}{}", "WebSocket/API", status.listen.websocket);
    let _ = writeln!(out, "  {:<14}{}", "Admin", status.listen.admin);
    if let Some(connections) = &status.connections {
        let main = &connections.main;
        let refused = main.refused.full + main.refused.per_ip;
        let refused =
            if refused == 0 { style.dim("none refused") } else { style.bad(&format!("{refused} refused")) };
        let _ = writeln!(out, "  {:<14}{} open of {} ({refused})", "Connections", main.open, main.capacity);
    }
    let mut transports = herald_server::status::TransportCounts::default();
    for app in &status.apps {
        transports.ws += app.transports.ws;
        transports.xhr_streaming += app.transports.xhr_streaming;
        transports.xhr_polling += app.transports.xhr_polling;
    }
    let by_transport: Vec<String> =
        transports.named().iter().map(|(name, count)| format!("{name} {count}")).collect();
    let _ = writeln!(out, "  {:<14}{}", "Transports", by_transport.join(", "));
    let _ = writeln!(out, "  {:<14}{}", "Driver", status.driver);
    let database = if status.database.up { style.ok("up") } else { style.bad("DOWN") };
    let _ = writeln!(out, "  {:<14}{} ({database})", "Database", status.database.backend);
    match &status.cluster {
        None => {
            let _ = writeln!(out, "  {:<14}{}", "Redis", style.dim("not configured (single node)"));
        }
        Some(cluster) => {
            let redis = match (cluster.redis.up, cluster.redis.latency_ms) {
                (true, Some(ms)) => style.ok(&format!("up, {ms:.2} ms")),
                (true, None) => style.ok("up"),
                (false, _) => style.bad(&format!(
                    "degraded: Redis unreachable ({})",
                    cluster.redis.error.as_deref().unwrap_or("no answer")
                )),
            };
            let _ = writeln!(out, "  {:<14}{redis}", "Redis");
            let _ = writeln!(out, "\n{} (asked node {})", style.bold("Cluster"), cluster.node);
            let _ = writeln!(out, "  {:<12} {:<22} {:>11}  LAST HEARTBEAT", "NODE", "ADDRESS", "CONNECTIONS");
            for node in &cluster.nodes {
                let mark = if node.id == cluster.node { " (this node)" } else { "" };
                let _ = writeln!(
                    out,
                    "  {:<12} {:<22} {:>11}  {}{mark}",
                    node.id, node.address, node.connections, node.last_heartbeat
                );
            }
            if cluster.dropped > 0 {
                let dropped =
                    format!("{} messages from other nodes dropped (this node fell behind)", cluster.dropped);
                let _ = writeln!(out, "  {}", style.bad(&dropped));
            }
        }
    }
    let _ = writeln!(out, "\n{}", style.bold("Apps"));
    let _ = writeln!(
        out,
        "  {:<16} {:<20} {:>11} {:>13} {:>10} {:>10}",
        "ID", "KEY", "CONNECTIONS", "SUBSCRIPTIONS", "MSGS IN", "MSGS OUT"
    );
    for app in &status.apps {
        let id = if app.enabled { app.id.clone() } else { format!("{} (off)", app.id) };
        let _ = writeln!(
            out,
            "  {:<16} {:<20} {:>11} {:>13} {:>10} {:>10}",
            id, app.key, app.connections, app.subscriptions, app.messages_in, app.messages_out
        );
        if detailed {
            let kinds: Vec<String> =
                app.channels.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
            let kinds = if kinds.is_empty() { "none occupied".to_owned() } else { kinds.join(", ") };
            let _ = writeln!(
                out,
                "    channels: {kinds}; slow-consumer disconnects: {}",
                app.slow_consumer_disconnects
            );
        }
    }
    let _ = writeln!(out, "\n{}", style.bold("Queue"));
    let _ = writeln!(out, "  {:<22} {:>8} {:>12}", "LANE", "PENDING", "OLDEST");
    for lane in Lane::ALL {
        let entry = status.queue.get(lane.name());
        let pending = entry.map_or("-".to_owned(), |entry| entry.pending.to_string());
        let age =
            entry.and_then(|entry| entry.oldest_age_secs).map_or("-".to_owned(), |age| format!("{age:.1}s"));
        let _ = writeln!(out, "  {:<22} {:>8} {:>12}", lane.name(), pending, age);
    }
    let dead = status.dead_letters.unwrap_or(0);
    let dead_text = if dead == 0 { style.ok("0") } else { style.bad(&dead.to_string()) };
    let _ = writeln!(out, "  {:<22} {:>8}   (herald dead-letters list)", "dead letters", dead_text);
    let delivery = &status.delivery;
    let _ = writeln!(
        out,
        "\n{}  {} events accepted, {} ignored; {} delivered, {} retried, {} dead-lettered, {} suppressed",
        style.bold("Since start"),
        delivery.accepted_events,
        delivery.ignored_events,
        delivery.delivered.broadcasts(),
        delivery.retried.broadcasts(),
        delivery.dead_lettered.broadcasts(),
        delivery.suppressed
    );
    let rates = &status.rates;
    if rates.window_secs > 0.0 {
        let _ = writeln!(
            out,
            "{}  {:.1}/s events accepted, {:.1}/s broadcasts delivered, {:.1}/s failed attempts, {:.1}/s frames out (last {}s)",
            style.bold("Rates"),
            rates.accepted_events,
            rates.delivered,
            rates.failed_attempts,
            rates.messages_out,
            rates.window_secs
        );
    }
    if detailed {
        for (name, counts) in [
            ("delivered", delivery.delivered),
            ("retried", delivery.retried),
            ("dead_lettered", delivery.dead_lettered),
        ] {
            let _ = writeln!(out, "  {name:<14} critical {}  normal {}", counts.critical, counts.normal);
        }
        let _ = writeln!(out, "\n{}", style.bold("Recent errors"));
        if status.recent_errors.is_empty() {
            let _ = writeln!(out, "  {}", style.dim("none"));
        }
        for error in &status.recent_errors {
            let _ = writeln!(
                out,
                "  {}  {:<14} {:<22} {}",
                error.at,
                error.status,
                error.event_type,
                error.error().unwrap_or("")
            );
        }
    }
    if let Some(deps) = &status.deps {
        let _ = writeln!(out, "\n{}", style.bold("Dependencies"));
        for (name, dep) in deps {
            let mark = if dep.ok { style.ok("ok  ") } else { style.bad("FAIL") };
            let _ = writeln!(out, "  {mark} {name:<10} {}", dep.detail);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_the_server_are_shown_escaped() {
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\r\nfake line\u{9b}";
        let status = serde_json::json!({
            "version": hostile, "uptime_secs": 1, "draining": false, "driver": hostile,
            "listen": { "websocket": hostile, "admin": hostile },
            "database": { "backend": hostile, "up": true },
            "apps": [{ "id": hostile, "key": hostile, "enabled": true, "channels": { hostile: 1 } }],
            "queue": {}, "dead_letters": 0, "delivery": {},
            "recent_errors": [{ "at": hostile, "status": hostile, "type": hostile, "detail": { "error": hostile } }],
            "deps": { hostile: { "ok": false, "detail": hostile } },
        });
        let shown = render(&status, true, &Style { colour: false });
        for raw in ['\u{1b}', '\u{7}', '\r', '\u{9b}'] {
            assert!(!shown.contains(raw), "{raw:?} in {shown:?}");
        }
        assert!(!shown.lines().any(|line| line.starts_with("fake line")), "{shown}");
        assert!(shown.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r\\nfake line\\u{9b}"), "{shown}");
    }
}
