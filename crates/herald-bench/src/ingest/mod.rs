//! 4. The notification layer: signed domain-event ingest (`POST /apps/{id}/domain-events`).
//!
//! For each backend (a fresh SQLite file, and a fresh PostgreSQL database) and each step, a
//! server of its own with an empty store:
//! - *load* (one per `--ingest-batch`): `--ingest-clients` signed clients send batches of B
//!   `security.alert` events (severity low, unique ids) for `--ingest-duration` seconds; events
//!   answered `accepted` are counted. A subscriber on `private-security-alerts` counts the
//!   broadcasts, during the window and then while the queue drains (bounded by
//!   `--ingest-drain-secs`).
//! - *latency*: `--ingest-events` single events, one at a time, each carrying its send instant in
//!   `details`; the subscriber records when its broadcast arrives.

mod json;
mod latency;
mod load;
mod report;
mod subscriber;
#[cfg(test)]
mod tests;
mod usage;

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::postgres::Postgres;
use crate::server::{LogSummary, Server};

pub(crate) use json::to_json;
pub(crate) use report::to_markdown;

use latency::LatencyResult;
use load::LoadResult;
use usage::Probe;

/// Errors kept to show per step.
const KEEP_ERRORS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What the ingest phase does (from the command line).
pub(crate) struct IngestConfig {
    pub(crate) bin: PathBuf,
    pub(crate) server_log: String,
    pub(crate) server_env: Vec<(String, String)>,
    pub(crate) backends: Vec<Backend>,
    /// A database on the PostgreSQL server to connect to for `CREATE DATABASE`.
    pub(crate) postgres_url: String,
    pub(crate) clients: usize,
    pub(crate) duration: Duration,
    pub(crate) batches: Vec<usize>,
    pub(crate) drain: Duration,
    pub(crate) events: usize,
    pub(crate) warmup: usize,
    pub(crate) interval: Duration,
}

pub(crate) struct IngestResults {
    pub(crate) backends: Vec<BackendResult>,
}

pub(crate) struct BackendResult {
    pub(crate) backend: Backend,
    /// Why the backend was not measured.
    pub(crate) skipped: Option<String>,
    pub(crate) latency: Option<LatencyResult>,
    pub(crate) loads: Vec<LoadResult>,
    /// Steps that failed: (step, error).
    pub(crate) failures: Vec<(String, String)>,
    pub(crate) log: LogSummary,
    pub(crate) load_start: String,
    pub(crate) load_end: String,
}

fn keep(errors: &mut Vec<String>, error: String) {
    if errors.len() < KEEP_ERRORS {
        errors.push(error);
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Latency,
    Load(usize),
}

fn load_average() -> String {
    crate::load_average()
}

/// Runs every step on every backend; a backend that cannot be reached is skipped and says why.
pub(crate) async fn run(config: &IngestConfig) -> IngestResults {
    let mut backends = Vec::new();
    for &backend in &config.backends {
        backends.push(run_backend(config, backend).await);
    }
    IngestResults { backends }
}

async fn run_backend(config: &IngestConfig, backend: Backend) -> BackendResult {
    let mut result = BackendResult {
        backend,
        skipped: None,
        latency: None,
        loads: Vec::new(),
        failures: Vec::new(),
        log: LogSummary::default(),
        load_start: load_average(),
        load_end: String::new(),
    };
    let mut postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match Postgres::connect(&config.postgres_url).await {
            Ok(pg) => Some(pg),
            Err(error) => {
                let why = format!("PostgreSQL at {} is unreachable: {error:#}", config.postgres_url);
                eprintln!("ingest: {why}; skipping that backend");
                result.skipped = Some(why);
                result.load_end = load_average();
                return result;
            }
        },
    };
    let latency_step = (config.events > 0).then_some(Step::Latency);
    let steps = latency_step.into_iter().chain(config.batches.iter().map(|&batch| Step::Load(batch)));
    for step in steps {
        let label = match step {
            Step::Latency => format!("{} latency", backend.label()),
            Step::Load(batch) => format!("{} B={batch}", backend.label()),
        };
        let database = match postgres.as_mut() {
            Some(pg) => match pg.fresh().await {
                Ok(created) => Some(created),
                Err(error) => {
                    result.failures.push((label, format!("{error:#}")));
                    continue;
                }
            },
            None => None,
        };
        let url = database.as_ref().map(|(_, url)| url.as_str());
        let started = tokio::task::block_in_place(|| {
            Server::start(&config.bin, &config.server_log, &config.server_env, url)
        });
        match started {
            Ok(server) => {
                eprintln!(
                    "ingest [{label}]: started the server (pid {}) on 127.0.0.1:{}{}",
                    server.pid,
                    server.port,
                    database.as_ref().map(|(name, _)| format!(", database {name}")).unwrap_or_default()
                );
                let mut transactions_before = None;
                if let (Some(pg), Some((name, _))) = (postgres.as_mut(), database.as_ref()) {
                    transactions_before = pg.transactions(name).await;
                }
                let pg = postgres
                    .as_mut()
                    .zip(database.as_ref())
                    .map(|(pg, (name, _))| Probe { pg, database: name.as_str() });
                let outcome = match step {
                    Step::Latency => {
                        latency::run(&server, pg, config, &label).await.map(|r| result.latency = Some(r))
                    }
                    Step::Load(batch) => {
                        load::run(&server, pg, config, batch, &label).await.map(|r| result.loads.push(r))
                    }
                };
                if let Some(status) = server.exited() {
                    result
                        .failures
                        .push((label.clone(), format!("the server exited during the step ({status})")));
                }
                let log = server.stop();
                // The server's backends report their last transactions as they exit.
                if let (Some(pg), Some((name, _)), Some(before), true) =
                    (postgres.as_mut(), database.as_ref(), transactions_before, outcome.is_ok())
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let transactions =
                        pg.transactions(name).await.map(|after| (after.0 - before.0, after.1 - before.1));
                    match step {
                        Step::Latency => {
                            if let Some(latency) = result.latency.as_mut() {
                                latency.transactions = transactions;
                            }
                        }
                        Step::Load(_) => {
                            if let Some(load) = result.loads.last_mut() {
                                load.transactions = transactions;
                            }
                        }
                    }
                }
                if let Err(error) = outcome {
                    result.failures.push((label, format!("{error:#}")));
                }
                result.log.merge(log);
            }
            Err(error) => result.failures.push((label, format!("{error:#}"))),
        }
        if let (Some(pg), Some((name, _))) = (postgres.as_mut(), database.as_ref()) {
            pg.drop_database(name).await;
        }
    }
    result.load_end = load_average();
    result
}
