//! Herald's storage. One [`Store`] over SQLite (a file, WAL: the embedded default) or PostgreSQL
//! (many nodes), chosen by the database URL. Migrations are plain SQL per backend, embedded in
//! the binary and applied at start-up in order, each once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use tracing::info;

/// Runs `$body` with `$pool` bound to the backend's pool. SQL in the body uses `$1, $2, ...` in
/// order of first use, which both SQLite and PostgreSQL accept, so each query is written once.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite($pool, _) => $body,
            $crate::Store::Postgres($pool) => $body,
        }
    };
}

/// `with_pool!` for writes made in the store's turn to write (`Store::writing`): on SQLite the
/// one writer connection, whose page cache no other connection's commit invalidates; on
/// PostgreSQL the pool.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite(_, write) => {
                let $pool = &write.pool;
                $body
            }
            $crate::Store::Postgres($pool) => $body,
        }
    };
}

mod audit;
mod group;
mod inbox;
mod queue;
mod records;

pub use audit::{AuditEntry, AuditFilter, AuditKind};
pub use group::{IngestQueue, MAX_GROUP_EVENTS};
pub use inbox::{ChannelEvent, InboxNotification, InboxPage, Preference};
pub use queue::{ClaimedJob, DeadLetter, DeadLetters, Delivered, LaneStats};
pub use records::{
    now_ms, EventRecord, IngestResult, Lane, Lanes, NewAudit, NewBroadcast, NewEvent, NewNotification,
};

/// `(version, name, sql)` of each SQLite migration, in order.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "campaigns", include_str!("../migrations/sqlite/0001_campaigns.sql")),
    (2, "notifications", include_str!("../migrations/sqlite/0002_notifications.sql")),
    (3, "claim_index", include_str!("../migrations/sqlite/0003_claim_index.sql")),
];
/// `(version, name, sql)` of each PostgreSQL migration, in order.
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "campaigns", include_str!("../migrations/postgres/0001_campaigns.sql")),
    (2, "notifications", include_str!("../migrations/postgres/0002_notifications.sql")),
    (3, "claim_index", include_str!("../migrations/postgres/0003_claim_index.sql")),
];

/// Why a storage operation failed. Callers answer 503 for `Unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:... nor postgres://...")]
    UnsupportedUrl(String),
    #[error("database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row with the same unique key exists (e.g. a notification id sent twice): the caller's fault.
    #[error("conflicts with a stored record: {0}")]
    Conflict(#[source] sqlx::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration { version: i64, name: &'static str, source: sqlx::Error },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict(error),
            _ => StoreError::Unavailable(error),
        }
    }
}

/// The database, one of the two supported backends.
#[derive(Debug, Clone)]
pub enum Store {
    /// The pool for reads, and the turn to write with the connection that writes (see `writing`).
    Sqlite(SqlitePool, Arc<SqliteWrite>),
    Postgres(PgPool),
}

/// SQLite's writing side: one write transaction at a time, on one connection of its own.
#[derive(Debug)]
pub struct SqliteWrite {
    turn: tokio::sync::Mutex<()>,
    pool: SqlitePool,
}

/// Which backend a store uses, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Connects to `url` (`sqlite://herald.db`, `sqlite::memory:`, `postgres://...`) and migrates.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // Statement journals (a multi-row INSERT's undo, a savepoint's) in memory, not in
                // temporary files: the WAL alone makes commits durable.
                .pragma("temp_store", "memory")
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
            let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
            Store::Sqlite(pool, Arc::new(SqliteWrite { turn: tokio::sync::Mutex::new(()), pool: writer }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options =
                PgConnectOptions::from_str(url).map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?;
            // Migrated by `connect_postgres`.
            return Store::connect_postgres(options).await;
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL with explicit options (tests use a schema of their own) and migrates.
    pub async fn connect_postgres(options: PgConnectOptions) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            // Plan each execution with its values: a generic plan of the claim query, made while
            // the queue was empty, sorts the whole backlog to take one job.
            .after_connect(|connection, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    connection.execute("SET plan_cache_mode = force_custom_plan").await.map(drop)
                })
            })
            .connect_with(options)
            .await?;
        let store = Store::Postgres(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// SQLite: waits for this store's turn to write, held until the write transaction ends. One
    /// write transaction at a time, and a waiting writer is woken as soon as the previous one
    /// ends, instead of sleeping 1 to 100 ms in SQLite's busy handler. PostgreSQL: no wait.
    pub(crate) async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            Store::Sqlite(_, write) => Some(write.turn.lock().await),
            Store::Postgres(_) => None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(..) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the migrations not yet recorded in `herald_migrations`.
    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool, _) => {
                sqlx::query("CREATE TABLE IF NOT EXISTS herald_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
                    .execute(pool)
                    .await?;
                for &(version, name, sql) in SQLITE_MIGRATIONS {
                    let done = sqlx::query("SELECT 1 FROM herald_migrations WHERE version = ?")
                        .bind(version)
                        .fetch_optional(pool)
                        .await?;
                    if done.is_none() {
                        let mut tx = pool.begin().await?;
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(|source| StoreError::Migration { version, name, source })?;
                        sqlx::query("INSERT INTO herald_migrations (version, name) VALUES (?, ?)")
                            .bind(version)
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        info!(version, name, "applied sqlite migration");
                    }
                }
            }
            Store::Postgres(pool) => {
                // Under the lock too: nodes starting together on a new database would otherwise
                // race on creating the table (a unique violation in PostgreSQL's catalog).
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7263017)").execute(&mut *tx).await?;
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass('herald_migrations')::text")
                        .fetch_one(&mut *tx)
                        .await?;
                if exists.is_none() {
                    sqlx::query(
                        "CREATE TABLE herald_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                for &(version, name, sql) in POSTGRES_MIGRATIONS {
                    let mut tx = pool.begin().await?;
                    // One node migrates at a time; the others wait, then find the work done.
                    sqlx::query("SELECT pg_advisory_xact_lock(7263017)").execute(&mut *tx).await?;
                    let done = sqlx::query("SELECT 1 FROM herald_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if done.is_none() {
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(|source| StoreError::Migration { version, name, source })?;
                        sqlx::query("INSERT INTO herald_migrations (version, name) VALUES ($1, $2)")
                            .bind(version)
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                        info!(version, name, "applied postgres migration");
                    }
                    tx.commit().await?;
                }
            }
        }
        Ok(())
    }

    /// Closes every connection; later operations fail with `Unavailable` (used on shutdown,
    /// and by tests to simulate an outage).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool, write) => {
                write.pool.close().await;
                pool.close().await
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }

    /// Checks that the database answers (for `/up` and `herald status --check-deps`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool, _) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Records (or updates) which organization runs a campaign.
    pub async fn learn_campaign(&self, campaign_id: &str, organization_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool, _) => {
                sqlx::query(
                    "INSERT INTO campaign_organizations (campaign_id, organization_id) VALUES (?, ?) \
                     ON CONFLICT (campaign_id) DO UPDATE SET organization_id = excluded.organization_id, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                )
                .bind(campaign_id)
                .bind(organization_id)
                .execute(pool)
                .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO campaign_organizations (campaign_id, organization_id) VALUES ($1, $2) \
                     ON CONFLICT (campaign_id) DO UPDATE SET organization_id = excluded.organization_id, updated_at = now()",
                )
                .bind(campaign_id)
                .bind(organization_id)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The organization running a campaign, if it has been learnt.
    pub async fn campaign_organization(&self, campaign_id: &str) -> Result<Option<String>, StoreError> {
        let row = match self {
            Store::Sqlite(pool, _) => {
                sqlx::query("SELECT organization_id FROM campaign_organizations WHERE campaign_id = ?")
                    .bind(campaign_id)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| row.try_get::<String, _>(0))
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT organization_id FROM campaign_organizations WHERE campaign_id = $1")
                    .bind(campaign_id)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| row.try_get::<String, _>(0))
            }
        };
        Ok(row.transpose()?)
    }
}
