//! The stores the integration tests run on: a fresh SQLite file, and a fresh schema on
//! PostgreSQL (skipped when it is absent, unless `HERALD_REQUIRE_SERVICES=1`).

use std::str::FromStr;

use herald_store::Store;
use sqlx::postgres::PgConnectOptions;

/// A store on a new SQLite file; keep the directory alive as long as the store.
pub(crate) async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    (Store::connect(&url).await.expect("sqlite opens"), dir)
}

/// A store on a new schema of `HERALD_TEST_POSTGRES_URL`'s database, or `None` (skipped).
pub(crate) async fn postgres() -> Option<Store> {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|value| value == "1");
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) if !required => {
            eprintln!("skipping PostgreSQL test: {error} (set HERALD_REQUIRE_SERVICES=1 to fail instead)");
            return None;
        }
        Err(error) => {
            panic!("PostgreSQL is required (HERALD_REQUIRE_SERVICES=1) but unreachable at {url}: {error}")
        }
    };
    let schema = format!("herald_test_{}", fastrand::u64(..));
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("schema");
    let options = PgConnectOptions::from_str(&url).expect("url").options([("search_path", schema.as_str())]);
    Some(Store::connect_postgres(options).await.expect("postgres store"))
}
