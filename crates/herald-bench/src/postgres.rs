//! PostgreSQL around the ingest and cluster phases: a fresh database per server (or cluster of
//! nodes), dropped afterwards (by the watchdog too), and the statistics read around each step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sqlx::{Connection as _, PgConnection};

/// Databases created so far by this process: each name is `herald_bench_<pid>_<n>`.
static CREATED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Databases created and not dropped yet, for the watchdog: (admin URL, names).
static CREATED: Mutex<Option<(String, Vec<String>)>> = Mutex::new(None);

fn remember(admin_url: &str, name: &str, created: bool) {
    let mut guard = CREATED.lock().unwrap_or_else(|p| p.into_inner());
    let (_, names) = guard.get_or_insert_with(|| (admin_url.to_owned(), Vec::new()));
    if created {
        names.push(name.to_owned());
    } else {
        names.retain(|known| known != name);
    }
}

/// Drops the databases a run left behind (the watchdog calls it after killing the servers).
pub(crate) fn drop_leftover_databases() {
    let Some((admin_url, names)) = CREATED.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    if names.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    runtime.block_on(async {
        let Ok(Ok(mut admin)) =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
        else {
            eprintln!("herald-bench: cannot drop the databases {names:?}; drop them by hand");
            return;
        };
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ =
                tokio::time::timeout(Duration::from_secs(10), sqlx::query(&sql).execute(&mut admin)).await;
        }
    });
}

/// `postgres://user@host:port/db?query` → (`postgres://user@host:port`, `?query`). Only a server
/// on this machine is accepted.
fn split_postgres_url(url: &str) -> anyhow::Result<(String, String)> {
    let (scheme, rest) = url.split_once("://").context("a PostgreSQL URL is postgres://user@host:port/db")?;
    if scheme != "postgres" && scheme != "postgresql" {
        bail!("{url:?} is not a postgres:// URL");
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "::1" | "") {
        bail!("the bench only talks to 127.0.0.1; {host:?} is not this machine");
    }
    Ok((format!("{scheme}://{authority}"), query))
}

/// PostgreSQL's write-ahead log counters (`pg_stat_wal`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wal {
    pub(crate) records: i64,
    pub(crate) bytes: i64,
    pub(crate) writes: i64,
    pub(crate) syncs: i64,
}

/// A connection to the PostgreSQL server, for creating and dropping the databases and reading
/// its statistics.
pub(crate) struct Postgres {
    admin_url: String,
    admin: PgConnection,
    base: String,
    query: String,
}

impl Postgres {
    pub(crate) async fn connect(admin_url: &str) -> anyhow::Result<Postgres> {
        let (base, query) = split_postgres_url(admin_url)?;
        let admin = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(admin_url))
            .await
            .context("no answer within 5 s")?
            .context("cannot connect")?;
        Ok(Postgres { admin_url: admin_url.to_owned(), admin, base, query })
    }

    /// Creates an empty database; returns its name and the URL the server uses.
    pub(crate) async fn fresh(&mut self) -> anyhow::Result<(String, String)> {
        let number = CREATED_COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("herald_bench_{}_{number}", std::process::id());
        let sql = format!("CREATE DATABASE {name}");
        tokio::time::timeout(Duration::from_secs(30), sqlx::query(&sql).execute(&mut self.admin))
            .await
            .context("CREATE DATABASE took over 30 s")?
            .with_context(|| format!("cannot create the database {name}"))?;
        remember(&self.admin_url, &name, true);
        let url = format!("{}/{name}{}", self.base, self.query);
        Ok((name, url))
    }

    pub(crate) async fn drop_database(&mut self, name: &str) {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        match tokio::time::timeout(Duration::from_secs(30), sqlx::query(&sql).execute(&mut self.admin)).await
        {
            Ok(Ok(_)) => remember(&self.admin_url, name, false),
            Ok(Err(error)) => eprintln!("herald-bench: cannot drop the database {name}: {error}"),
            Err(_) => eprintln!("herald-bench: DROP DATABASE {name} took over 30 s"),
        }
    }

    /// Transactions committed and rolled back in `database` so far (its backends report them
    /// when idle or when they exit).
    pub(crate) async fn transactions(&mut self, database: &str) -> Option<(i64, i64)> {
        sqlx::query_as("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1")
            .bind(database)
            .fetch_one(&mut self.admin)
            .await
            .ok()
    }

    pub(crate) async fn wal(&mut self) -> Option<Wal> {
        let row: (i64, i64, i64, i64) =
            sqlx::query_as("SELECT wal_records, wal_bytes::bigint, wal_write, wal_sync FROM pg_stat_wal")
                .fetch_one(&mut self.admin)
                .await
                .ok()?;
        Some(Wal { records: row.0, bytes: row.1, writes: row.2, syncs: row.3 })
    }

    /// The processes serving `database`, and the cluster's WAL writer, checkpointer and
    /// background writer: (pid, is a backend of `database`).
    pub(crate) async fn processes(&mut self, database: &str) -> Vec<(i32, bool)> {
        let rows: Vec<(i32, bool)> = sqlx::query_as(
            "SELECT pid, datname IS NOT DISTINCT FROM $1 FROM pg_stat_activity \
             WHERE datname = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
        )
        .bind(database)
        .fetch_all(&mut self.admin)
        .await
        .unwrap_or_default();
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_postgres_urls() {
        assert_eq!(
            split_postgres_url("postgres://postgres@127.0.0.1:5432/test").unwrap(),
            ("postgres://postgres@127.0.0.1:5432".to_owned(), String::new())
        );
        assert_eq!(
            split_postgres_url("postgresql://u:p@localhost/db?sslmode=disable").unwrap(),
            ("postgresql://u:p@localhost".to_owned(), "?sslmode=disable".to_owned())
        );
        assert!(split_postgres_url("postgres://postgres@db.example.com:5432/test").is_err());
        assert!(split_postgres_url("mysql://127.0.0.1/test").is_err());
    }
}
