//! `herald dead-letters` and `herald audit`: read and repair the notification layer's records
//! straight from the database the server uses.

use herald_notify::{printable, AuditFilter, AuditKind, AuditRecord, DeadLetters, Records};
use std::path::PathBuf;
use std::process::ExitCode;

use herald_server::config::AdminVisibility;
use herald_server::{Config, Overrides, ProcessEnv};

/// Where the database is: the same configuration the server reads.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// TOML configuration file [env: HERALD_CONFIG]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// sqlite://FILE or postgres://... [default: from the config, else sqlite://herald.db] [env: DATABASE_URL]
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeadLetterCommand {
    /// List dead letters, newest first
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put dead letters back in the queue: one by broadcast id, or --all
    Retry {
        /// Broadcast id (see `list`)
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Forget dead letters for good: one by broadcast id, or --all
    Purge {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Only this domain event type (e.g. payment.failed)
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only entries since an RFC 3339 time or a span back from now (15m, 1h, 2d)
    #[arg(long)]
    since: Option<String>,
    /// Only this status: received, routed, delivered, attempt_failed, dead_lettered, suppressed, ignored, duplicate, replayed
    #[arg(long, value_parser = parse_kind)]
    status: Option<AuditKind>,
    /// Only this domain event id
    #[arg(long = "event", value_name = "ID")]
    event_id: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

/// The records in the database the configuration names, and the configuration.
async fn open(args: &StoreArgs) -> Result<(Records, herald_server::Config), ExitCode> {
    let overrides = Overrides {
        config_file: args.config.clone(),
        database_url: args.database_url.clone(),
        ..Overrides::default()
    };
    let loaded = Config::load(&ProcessEnv, &overrides).map_err(|error| {
        eprintln!("herald: {error}");
        ExitCode::from(crate::EXIT_CONFIG)
    })?;
    let url = &loaded.config.database.url;
    match Records::open(url).await {
        Ok(records) => Ok((records, loaded.config)),
        Err(error) => {
            eprintln!("herald: cannot open the database {}: {error}", herald_server::redact_url(url));
            Err(ExitCode::FAILURE)
        }
    }
}

fn failed(error: herald_notify::StoreError) -> ExitCode {
    eprintln!("herald: {error}");
    ExitCode::FAILURE
}

pub(crate) async fn dead_letters(store_args: StoreArgs, command: DeadLetterCommand) -> ExitCode {
    let (records, config) = match open(&store_args).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let admin_channels_public = config.channels.admin_visibility == AdminVisibility::Public;
    let which = |id: Option<String>, all: bool| -> Result<Option<String>, ExitCode> {
        match (id, all) {
            (Some(id), false) => Ok(Some(id)),
            (None, true) => Ok(None),
            _ => {
                eprintln!("herald: name a broadcast id, or pass --all");
                Err(ExitCode::from(2))
            }
        }
    };
    match command {
        DeadLetterCommand::List { limit } => match records.dead_letters(limit, admin_channels_public).await {
            Ok(letters) if store_args.json => {
                out!("{}", serde_json::to_string(&letters).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(letters) if letters.is_empty() => {
                out!("no dead letters");
                ExitCode::SUCCESS
            }
            Ok(letters) => {
                out!(
                    "{:<36}  {:<24}  {:>8}  {:<20}  {:<32}  LAST ERROR",
                    "BROADCAST",
                    "EVENT",
                    "ATTEMPTS",
                    "FAILED AT",
                    "CHANNELS (WEBHOOK: URL)"
                );
                for letter in letters {
                    let at = &letter.failed_at;
                    out!(
                        "{:<36}  {:<24}  {:>8}  {:<20}  {:<32}  {}",
                        printable(&letter.broadcast_id),
                        printable(&letter.event),
                        letter.attempts,
                        at.get(..19).unwrap_or(at),
                        printable(&letter.channels.join(", ")),
                        printable(&letter.last_error)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(error) => failed(error),
        },
        DeadLetterCommand::Retry { id, all } => {
            let id = match which(id, all) {
                Ok(id) => id,
                Err(code) => return code,
            };
            match records.replay(id.as_deref().map_or(DeadLetters::All, DeadLetters::One)).await {
                // `--all` with nothing to retry is done, as `purge --all` is; a named id that is
                // not a dead letter is a mistake.
                Ok(0) if id.is_none() => {
                    out!("0 broadcast(s) queued again: there are no dead letters");
                    ExitCode::SUCCESS
                }
                Ok(0) => {
                    eprintln!("herald: no matching dead letter");
                    ExitCode::FAILURE
                }
                Ok(count) => {
                    out!("{count} broadcast(s) queued again; a running server delivers them");
                    ExitCode::SUCCESS
                }
                Err(error) => failed(error),
            }
        }
        DeadLetterCommand::Purge { id, all } => {
            let id = match which(id, all) {
                Ok(id) => id,
                Err(code) => return code,
            };
            match records.purge(id.as_deref().map_or(DeadLetters::All, DeadLetters::One)).await {
                Ok(count) => {
                    out!("{count} dead letter(s) purged");
                    ExitCode::SUCCESS
                }
                Err(error) => failed(error),
            }
        }
    }
}

fn parse_kind(name: &str) -> Result<AuditKind, String> {
    AuditKind::parse(name)
}

pub(crate) async fn audit(store_args: StoreArgs, args: AuditArgs) -> ExitCode {
    let since_ms = match args.since.as_deref().map(herald_notify::parse_since) {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(problem)) => {
            eprintln!("herald: --since: {problem}");
            return ExitCode::from(2);
        }
    };
    let (records, _) = match open(&store_args).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let filter = AuditFilter {
        event_type: args.event_type.unwrap_or_default(),
        kind: args.status,
        event_id: args.event_id.unwrap_or_default(),
        since_ms,
        limit: args.limit,
    };
    match records.audit(&filter).await {
        Ok(entries) if store_args.json => {
            let list: Vec<AuditRecord> = entries.iter().map(herald_notify::AuditEntry::record).collect();
            out!("{}", serde_json::to_string(&list).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(entries) if entries.is_empty() => {
            out!("no audit entries match");
            ExitCode::SUCCESS
        }
        Ok(entries) => {
            out!("{:<23}  {:<26}  {:<24}  {:<14}  DETAIL", "AT", "EVENT ID", "TYPE", "STATUS");
            for entry in entries.iter().rev() {
                let at = herald_notify::rfc3339(entry.at_ms);
                out!(
                    "{:<23}  {:<26}  {:<24}  {:<14}  {}",
                    at.get(..23).unwrap_or(&at),
                    printable(&entry.event_id),
                    printable(&entry.event_type),
                    entry.kind,
                    printable(&entry.raw_detail)
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => failed(error),
    }
}
