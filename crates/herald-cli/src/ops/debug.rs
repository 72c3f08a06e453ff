//! `herald debug`: the effective configuration and where it came from, mistakes in the
//! environment, and live checks of the WebSocket handshake and of every channel family.

use herald_notify::printable;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herald_server::config::{describe, AdminVisibility, DriverName};
use herald_server::{EnvSource as _, ProcessEnv};
use serde_json::json;

use super::{Socket, Style, Target, TargetArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct DebugArgs {
    /// Print the effective configuration with each value's source (secrets redacted)
    #[arg(long)]
    show_config: bool,
    /// Look for mistakes in BROADCAST_CONNECTION, PUSHER_* and the front end's VITE_/MIX_ variables
    #[arg(long)]
    check_env: bool,
    /// Open a real WebSocket to the server and report the handshake and a ping
    #[arg(long)]
    test_connection: bool,
    /// Subscribe to one channel of every family of the catalog (minting a token and auth itself)
    #[arg(long)]
    test_channels: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub(crate) async fn run(mut args: DebugArgs) -> ExitCode {
    if !(args.show_config || args.check_env || args.test_connection || args.test_channels) {
        args.check_env = true;
        args.test_connection = true;
    }
    let target = match Target::load(&args.target) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let style = Style::stdout();
    let mut failed = false;
    if args.show_config {
        show_config(&target, &style);
    }
    if args.check_env {
        failed |= !check_env(&target, &style);
    }
    if args.test_connection {
        failed |= !test_connection(&target, &style).await;
    }
    if args.test_channels {
        failed |= !test_channels(&target, &style).await;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn show_config(target: &Target, style: &Style) {
    out!("{}", style.bold("Effective configuration"));
    match &target.loaded.file {
        Some(file) => out!("  file: {}", file.display()),
        None => out!("  file: none (defaults and environment)"),
    }
    for entry in describe(&target.loaded, &ProcessEnv, &target.overrides) {
        out!(
            "  {:<44} = {:<32} {}",
            entry.key,
            printable(&entry.value),
            style.dim(&format!("# {}", printable(&entry.source)))
        );
    }
    out!();
}

/// Prints findings; false when one is an error.
fn check_env(target: &Target, style: &Style) -> bool {
    let env = ProcessEnv;
    let config = &target.loaded.config;
    let mut findings: Vec<(bool, String)> = Vec::new();
    let mut note = |error: bool, text: String| findings.push((error, text));
    match env.var("BROADCAST_CONNECTION").as_deref() {
        None => note(
            false,
            "BROADCAST_CONNECTION is not set: broadcasts go to this server's channels (herald)".into(),
        ),
        Some("herald" | "pusher" | "log" | "null") => {}
        Some(other) => note(
            true,
            format!("BROADCAST_CONNECTION={other:?}: Herald understands herald, pusher, log or null"),
        ),
    }
    let credentials =
        ["PUSHER_APP_ID", "PUSHER_APP_KEY", "PUSHER_APP_SECRET"].map(|name| (name, env.var(name)));
    let set = credentials.iter().filter(|(_, value)| value.is_some()).count();
    if set != 0 && set != 3 {
        let missing: Vec<&str> =
            credentials.iter().filter(|(_, value)| value.is_none()).map(|(name, _)| *name).collect();
        note(true, format!("{} must be set with the other PUSHER_APP_* variables", missing.join(", ")));
    } else if set == 0 && config.apps.iter().any(|app| app.key == "app-key") {
        note(
            false,
            "no PUSHER_APP_* set and no app in the config: the development app (app-key) is served".into(),
        );
    }
    if let Some(scheme) = env.var("PUSHER_SCHEME") {
        if scheme != "http" && scheme != "https" {
            note(true, format!("PUSHER_SCHEME={scheme:?} must be http or https"));
        }
    }
    if let Some(port) = env.var("PUSHER_PORT") {
        match port.parse::<u16>() {
            Ok(0) | Err(_) => note(true, format!("PUSHER_PORT={port:?} is not a port number")),
            Ok(port) => {
                let scheme = env.var("PUSHER_SCHEME").unwrap_or_else(|| "https".into());
                if (scheme == "http" && port == 443) || (scheme == "https" && port == 80) {
                    note(true, format!("PUSHER_SCHEME={scheme} with PUSHER_PORT={port}: the scheme and the port disagree"));
                }
            }
        }
    }
    if config.notifications.driver == DriverName::Pusher {
        let upstream = &config.notifications.upstream;
        let own_ip = config.server.host.parse().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        if upstream.is_server_at(std::net::SocketAddr::new(own_ip, config.server.port)) {
            let (_, host, port) = upstream.address();
            note(
                false,
                format!(
                    "BROADCAST_CONNECTION=pusher points at {host}:{port}, which is this server itself: it delivers \
                     with the herald driver instead; set BROADCAST_CONNECTION=herald to say so"
                ),
            );
        }
    } else if env.var("PUSHER_HOST").is_some() {
        note(false, "PUSHER_HOST is set but BROADCAST_CONNECTION is not pusher: Herald ignores it (it is for Laravel's side)".into());
    }
    for name in ["VITE_PUSHER_APP_KEY", "MIX_PUSHER_APP_KEY"] {
        if let Some(key) = env.var(name) {
            if !config.apps.iter().any(|app| app.key == key) {
                note(
                    true,
                    format!("{name}={key:?} is no app's key: the front end would be refused with 4001"),
                );
            }
        }
    }
    for name in ["VITE_PUSHER_PORT", "MIX_PUSHER_PORT"] {
        if let Some(port) = env.var(name) {
            if port != config.server.port.to_string() {
                note(
                    false,
                    format!(
                        "{name}={port} but Herald listens on {} (fine behind a proxy)",
                        config.server.port
                    ),
                );
            }
        }
    }
    if config.auth.jwt_secret == herald_server::config::DEV_JWT_SECRET {
        note(false, "HERALD_JWT_SECRET is not set: tokens are checked with the development secret".into());
    }
    if config.channels.admin_visibility == AdminVisibility::Public {
        note(
            false,
            "admin channels are public (channels.admin_visibility): anyone with the app key can listen"
                .into(),
        );
    }
    out!("{}", style.bold("Environment"));
    if findings.is_empty() {
        out!("  {} nothing to report", style.ok("ok"));
    }
    let mut clean = true;
    for (error, text) in findings {
        clean &= !error;
        let mark = if error { style.bad("error") } else { style.dim("note ") };
        out!("  {mark} {}", printable(&text));
    }
    out!();
    clean
}

async fn test_connection(target: &Target, style: &Style) -> bool {
    out!("{}", style.bold("Connection"));
    match target.found_through() {
        Some(file) => out!("  server {} and admin {}, found through {file}", target.http, target.admin),
        None => out!(
            "  server {} and admin {}, from the configuration (no running server's {} in {})",
            target.http,
            target.admin,
            crate::runtime::RUNTIME_FILE,
            target.loaded.data_dir().display()
        ),
    }
    let url = match target.ws_url() {
        Ok(url) => url,
        Err(error) => {
            out!("  {} {error}", style.bad("FAIL"));
            out!();
            return false;
        }
    };
    let mut socket = match Socket::connect(&url).await {
        Ok(socket) => socket,
        Err(error) => {
            out!("  {} {}", style.bad("FAIL"), printable(&error.to_string()));
            out!();
            return false;
        }
    };
    out!(
        "  {} handshake with {url} in {:.1} ms: socket_id {}, activity_timeout {} s",
        style.ok("ok  "),
        socket.handshake.as_secs_f64() * 1000.0,
        printable(&socket.socket_id.to_string()),
        socket.activity_timeout
    );
    let started = Instant::now();
    let pong = async {
        socket.send(json!({ "event": "pusher:ping", "data": {} })).await?;
        loop {
            let frame = socket.next(Duration::from_secs(5)).await?;
            if frame["event"] == "pusher:pong" {
                return Ok::<(), String>(());
            }
        }
    };
    let ok = match pong.await {
        Ok(()) => {
            out!(
                "  {} pusher:ping answered in {:.1} ms",
                style.ok("ok  "),
                started.elapsed().as_secs_f64() * 1000.0
            );
            true
        }
        Err(error) => {
            out!("  {} pusher:ping: {}", style.bad("FAIL"), printable(&error.to_string()));
            false
        }
    };
    out!();
    ok
}

async fn test_channels(target: &Target, style: &Style) -> bool {
    out!("{}", style.bold("Channels"));
    let user = "herald-debug";
    let org = "herald-debug-org";
    let token = match target.token(user, org, &["super_admin", "csr_admin", "finance_admin", "hr_manager"]) {
        Ok(token) => token,
        Err(error) => {
            out!("  {} cannot mint a token: {}", style.bad("FAIL"), printable(&error.to_string()));
            return false;
        }
    };
    let public_admin = target.loaded.config.channels.admin_visibility == AdminVisibility::Public;
    let mut channels: Vec<String> = [
        "system-maintenance".to_owned(),
        format!("user.notifications.{user}"),
        format!("organization.{org}"),
        "campaign.herald-debug-campaign".to_owned(),
        "admin-dashboard".to_owned(),
        "admin-role-super_admin".to_owned(),
        "security-alerts".to_owned(),
        "compliance-notifications".to_owned(),
        "payment-notifications".to_owned(),
    ]
    .iter()
    .map(|logical| herald_notify::CatalogChannel::new(logical.as_str()).wire(public_admin))
    .collect();
    channels.push(format!("presence-organization.{org}"));
    let url = match target.ws_url() {
        Ok(url) => url,
        Err(error) => {
            out!("  {} {error}", style.bad("FAIL"));
            return false;
        }
    };
    let mut socket = match Socket::connect(&url).await {
        Ok(socket) => socket,
        Err(error) => {
            out!("  {} cannot connect: {}", style.bad("FAIL"), printable(&error.to_string()));
            return false;
        }
    };
    let mut all = true;
    for channel in &channels {
        let started = Instant::now();
        match socket.subscribe(target, channel, &token).await {
            Ok(()) => out!(
                "  {} {channel:<44} {:.1} ms",
                style.ok("ok  "),
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(error) => {
                all = false;
                out!("  {} {channel:<44} {}", style.bad("FAIL"), printable(&error.to_string()));
            }
        }
    }
    out!();
    all
}
