//! `herald status`: what a running server is doing, from its admin API.

use std::process::ExitCode;

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
    let deps_ok = status["deps"].as_object().is_none_or(|deps| deps.values().all(|dep| dep["ok"] == true));
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

fn number(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::Number(number) => number.to_string(),
        other => other.to_string(),
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
    let status = &status;
    let mut out = String::new();
    let state = if status["draining"] == true { style.bad("draining") } else { style.ok("serving") };
    let _ = writeln!(
        out,
        "{} {} — {state}, up {}",
        style.bold("Herald"),
        status["version"].as_str().unwrap_or("?"),
        uptime(status["uptime_secs"].as_u64().unwrap_or(0))
    );
    let _ =
        writeln!(out, "  {:<14}{}", "WebSocket/API", status["listen"]["websocket"].as_str().unwrap_or("?"));
    let _ = writeln!(out, "  {:<14}{}", "Admin", status["listen"]["admin"].as_str().unwrap_or("?"));
    let main = &status["connections"]["main"];
    if main.is_object() {
        let refused =
            main["refused"]["full"].as_u64().unwrap_or(0) + main["refused"]["per_ip"].as_u64().unwrap_or(0);
        let refused =
            if refused == 0 { style.dim("none refused") } else { style.bad(&format!("{refused} refused")) };
        let _ = writeln!(
            out,
            "  {:<14}{} open of {} ({refused})",
            "Connections",
            number(&main["open"]),
            number(&main["capacity"])
        );
    }
    let _ = writeln!(out, "  {:<14}{}", "Driver", status["driver"].as_str().unwrap_or("?"));
    let database = if status["database"]["up"] == true { style.ok("up") } else { style.bad("DOWN") };
    let _ = writeln!(
        out,
        "  {:<14}{} ({database})",
        "Database",
        status["database"]["backend"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "  {:<14}{}", "Redis", style.dim("not configured (single node)"));
    let _ = writeln!(out, "\n{}", style.bold("Apps"));
    let _ = writeln!(
        out,
        "  {:<16} {:<20} {:>11} {:>13} {:>10} {:>10}",
        "ID", "KEY", "CONNECTIONS", "SUBSCRIPTIONS", "MSGS IN", "MSGS OUT"
    );
    for app in status["apps"].as_array().into_iter().flatten() {
        let id = app["id"].as_str().unwrap_or("?");
        let id = if app["enabled"] == true { id.to_owned() } else { format!("{id} (off)") };
        let _ = writeln!(
            out,
            "  {:<16} {:<20} {:>11} {:>13} {:>10} {:>10}",
            id,
            app["key"].as_str().unwrap_or("?"),
            number(&app["connections"]),
            number(&app["subscriptions"]),
            number(&app["messages_in"]),
            number(&app["messages_out"])
        );
        if detailed {
            let kinds: Vec<String> = app["channels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            let kinds = if kinds.is_empty() { "none occupied".to_owned() } else { kinds.join(", ") };
            let _ = writeln!(
                out,
                "    channels: {kinds}; slow-consumer disconnects: {}",
                number(&app["slow_consumer_disconnects"])
            );
        }
    }
    let _ = writeln!(out, "\n{}", style.bold("Queue"));
    let _ = writeln!(out, "  {:<22} {:>8} {:>12}", "LANE", "PENDING", "OLDEST");
    for lane in ["critical-broadcasts", "broadcasts"] {
        let entry = &status["queue"][lane];
        let age = entry["oldest_age_secs"].as_f64().map_or("-".to_owned(), |age| format!("{age:.1}s"));
        let _ = writeln!(out, "  {:<22} {:>8} {:>12}", lane, number(&entry["pending"]), age);
    }
    let dead = status["dead_letters"].as_i64().unwrap_or(0);
    let dead_text = if dead == 0 { style.ok("0") } else { style.bad(&dead.to_string()) };
    let _ = writeln!(out, "  {:<22} {:>8}   (herald dead-letters list)", "dead letters", dead_text);
    let delivery = &status["delivery"];
    let sum = |key: &str| {
        delivery[key]["critical-broadcasts"].as_u64().unwrap_or(0)
            + delivery[key]["broadcasts"].as_u64().unwrap_or(0)
    };
    let _ = writeln!(
        out,
        "\n{}  {} events accepted, {} ignored; {} delivered, {} retried, {} dead-lettered, {} suppressed",
        style.bold("Since start"),
        number(&delivery["accepted_events"]),
        number(&delivery["ignored_events"]),
        sum("delivered"),
        sum("retried"),
        sum("dead_lettered"),
        number(&delivery["suppressed"])
    );
    let rates = &status["rates"];
    if rates["window_secs"].as_f64().unwrap_or(0.0) > 0.0 {
        let _ = writeln!(
            out,
            "{}  {}/s events accepted, {}/s broadcasts delivered, {}/s failed attempts, {}/s frames out (last {}s)",
            style.bold("Rates"),
            number(&rates["accepted_events"]),
            number(&rates["delivered"]),
            number(&rates["failed_attempts"]),
            number(&rates["messages_out"]),
            number(&rates["window_secs"])
        );
    }
    if detailed {
        for key in ["delivered", "retried", "dead_lettered"] {
            let _ = writeln!(
                out,
                "  {key:<14} critical {}  normal {}",
                number(&delivery[key]["critical-broadcasts"]),
                number(&delivery[key]["broadcasts"])
            );
        }
        let errors = status["recent_errors"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(out, "\n{}", style.bold("Recent errors"));
        if errors.is_empty() {
            let _ = writeln!(out, "  {}", style.dim("none"));
        }
        for error in errors {
            let _ = writeln!(
                out,
                "  {}  {:<14} {:<22} {}",
                error["at"].as_str().unwrap_or("?"),
                error["status"].as_str().unwrap_or("?"),
                error["type"].as_str().unwrap_or("?"),
                error["detail"]["error"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(deps) = status["deps"].as_object() {
        let _ = writeln!(out, "\n{}", style.bold("Dependencies"));
        for (name, dep) in deps {
            let mark = if dep["ok"] == true { style.ok("ok  ") } else { style.bad("FAIL") };
            let _ = writeln!(out, "  {mark} {name:<10} {}", dep["detail"].as_str().unwrap_or(""));
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
