//! The `herald` command: `serve` runs the server; the operations tools come beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald_server::{banner, App, Config, Overrides, ProcessEnv};
use tracing_subscriber::EnvFilter;

/// Exit code for bad configuration (EX_CONFIG-like "usage" code that init systems show).
const EXIT_CONFIG: u8 = 64;

/// `println!` that ignores a closed stdout (`herald audit | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod ops;
mod records;
mod runtime;

/// Runs a command's future on a small runtime.
fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Herald: a Pusher-compatible real-time notification server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (WebSocket + Pusher HTTP API) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Mint a bearer token (HS256, with the configured auth.jwt_secret) for development and tests.
    Token(TokenArgs),
    /// List, replay or purge broadcasts that failed for good.
    DeadLetters {
        #[command(subcommand)]
        command: records::DeadLetterCommand,
        #[command(flatten)]
        store: records::StoreArgs,
    },
    /// What a running server is doing: connections, channels, queues, deliveries, errors.
    Status(ops::status::StatusArgs),
    /// Show the effective configuration, find mistakes in the environment, test connections and channels.
    Debug(ops::debug::DebugArgs),
    /// Send sample domain events through the real pipeline and check they reach their channels.
    TestBroadcast(ops::test_broadcast::TestBroadcastArgs),
    /// Show the audit trail: every domain event, its routing, attempts and outcome.
    Audit {
        #[command(flatten)]
        filters: records::AuditArgs,
        #[command(flatten)]
        store: records::StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// User id (the `sub` claim)
    #[arg(long)]
    user: String,
    /// Organization id (the `organization_id` claim)
    #[arg(long)]
    org: Option<String>,
    /// Roles, comma-separated (e.g. super_admin,csr_admin)
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Display name (the `name` claim)
    #[arg(long)]
    name: Option<String>,
    /// Lifetime: 90s, 30m, 1h, 7d, or seconds
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: u64,
    /// TOML configuration file whose auth.jwt_secret signs the token [env: HERALD_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Sign with the public development secret, as `herald serve --dev` checks it
    #[arg(long)]
    dev: bool,
}

/// Parses `90s`, `30m`, `1h`, `7d` or plain seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => text.split_at(index),
        None => (text, "s"),
    };
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match number.checked_mul(scale) {
        Some(0) | None => Err(format!("{text:?} must be between 1s and many years")),
        Some(seconds) => Ok(seconds),
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0, or server.host from the config]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on [default: 6001, or server.port from the config]
    #[arg(long)]
    port: Option<u16>,
    /// TOML configuration file (see docs/herald.example.toml) [env: HERALD_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// sqlite://FILE or postgres://... [default: sqlite://herald.db] [env: DATABASE_URL]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// redis://HOST:6379 (comma-separated seeds for a Redis Cluster): join a cluster of nodes
    /// sharing Redis and a PostgreSQL database (docs/scaling.md) [env: REDIS_URL]
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Development mode: with no token secret or app configured, use the public development ones
    /// even off loopback (server.development) [env: HERALD_SERVER__DEVELOPMENT]
    #[arg(long)]
    dev: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server reports what it does; the tools print their answers and only warnings besides.
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HERALD_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => token(args),
        Command::DeadLetters { command, store } => block_on(records::dead_letters(store, command)),
        Command::Audit { filters, store } => block_on(records::audit(store, filters)),
        Command::Status(args) => block_on(ops::status::run(args)),
        Command::Debug(args) => block_on(ops::debug::run(args)),
        Command::TestBroadcast(args) => block_on(ops::test_broadcast::run(args)),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config,
        host: args.host,
        port: args.port,
        database_url: args.database_url,
        redis_url: args.redis_url,
        development: args.dev,
    };
    let (loaded, provisioned) = match Config::load_provisioned(&ProcessEnv, &overrides) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Sockets are file descriptors: take all the process may have, then size the caps to it.
    if let Err(error) = herald_server::raise_fd_limit() {
        eprintln!("herald: cannot raise the open-file limit: {error}");
    }
    let result = runtime.block_on(async move {
        // Listening for SIGTERM/SIGINT from here on: a signal that comes while the server starts
        // (it has joined the cluster before the banner) still means a graceful stop.
        let shutdown = shutdown_signal();
        let app = App::build(&loaded.config).await?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(file) = &loaded.file {
            tracing::info!(file = %file.display(), "configuration read");
        }
        if let Some(provisioned) = &provisioned {
            log_provisioned(provisioned);
        }
        // The tools find this server through the runtime file; it goes when the server stops.
        let runtime_file = match runtime::write(&loaded, app.address(), app.admin_address()) {
            Ok(guard) => Some(guard),
            Err(error) => {
                tracing::warn!("cannot write the runtime file the herald tools read: {error}");
                None
            }
        };
        if let Some(guard) = &runtime_file {
            tracing::debug!(file = %guard.path().display(), "runtime file written");
        }
        out!("{}", banner(&loaded.config, app.address(), app.admin_address(), app.capacity()));
        let reload = app.tls_reload();
        if reload.is_enabled() {
            tokio::spawn(reload_on_hangup(reload));
        }
        let result = app.run(shutdown).await;
        drop(runtime_file);
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Says where generated credentials are (never the secrets: the app key and id are public).
fn log_provisioned(provisioned: &herald_server::config::Provisioned) {
    let file = provisioned.path.display();
    let (missing, what) = match (provisioned.jwt_secret, &provisioned.app) {
        (true, Some(_)) => ("token secret and no app", "token secret and app"),
        (true, None) => ("token secret", "token secret"),
        (false, _) => ("app", "app"),
    };
    let (app_id, app_key) = provisioned.app.clone().unwrap_or_default();
    if provisioned.created {
        tracing::warn!(
            %file, app_id, app_key,
            "no {missing} configured, not in development mode (--dev) nor on a loopback host: generated a private {what}, stored in the file (mode 0600) and reused on every start; `herald token` and the tools read it there, and configured values (HERALD_JWT_SECRET, PUSHER_APP_*) take precedence"
        );
    } else {
        tracing::info!(%file, app_id, app_key, "using the {what} generated on an earlier start");
    }
}

fn token(args: TokenArgs) -> ExitCode {
    let overrides = Overrides { config_file: args.config, development: args.dev, ..Overrides::default() };
    let loaded = match Config::load_provisioned(&ProcessEnv, &overrides).map(|(loaded, _)| loaded) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let auth = &loaded.config.auth;
    if auth.algorithm != herald_auth::Algorithm::HS256 {
        eprintln!("herald: herald token mints HS256 tokens; auth.algorithm is {:?}, whose tokens the platform signs", auth.algorithm);
        return ExitCode::from(EXIT_CONFIG);
    }
    if auth.jwt_secret == herald_server::config::DEV_JWT_SECRET {
        eprintln!(
            "herald: note: signing with the public development secret (set HERALD_JWT_SECRET to match the server)"
        );
    } else if let Some(file) = &loaded.credentials_file {
        eprintln!("herald: note: signing with the token secret generated in {}", file.display());
    }
    let settings = match auth.token_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match herald_auth::mint_for(
        &settings,
        &args.user,
        args.org.as_deref(),
        &args.roles,
        args.name.as_deref(),
        args.ttl,
    ) {
        Ok(token) => {
            out!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("herald: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Rereads the TLS certificates on every SIGHUP (a renewal), for as long as the process runs. Only
/// installed when a listener serves TLS: otherwise SIGHUP keeps its default meaning (stop).
async fn reload_on_hangup(reload: herald_server::TlsReload) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; TLS certificates reload only on restart");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificates");
            // Failures are logged by `reload`, and the certificates in use stay.
            let _ = reload.reload();
        }
    }
    #[cfg(not(unix))]
    drop(reload);
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let wait = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
