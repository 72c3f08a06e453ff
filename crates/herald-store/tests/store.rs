//! The store against real SQLite files and a real PostgreSQL (required when
//! HERALD_REQUIRE_SERVICES=1, as in CI; skipped with a message otherwise).

use std::str::FromStr;

use herald_store::{Backend, Store};
use sqlx::postgres::PgConnectOptions;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    (Store::connect(&url).await.expect("sqlite opens"), dir)
}

/// A PostgreSQL store in a fresh schema, or `None` when PostgreSQL is absent and not required.
async fn postgres() -> Option<Store> {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned());
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
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("schema created");
    let options = PgConnectOptions::from_str(&url).expect("url").options([("search_path", schema.as_str())]);
    Some(Store::connect_postgres(options).await.expect("postgres store"))
}

async fn campaigns_are_learnt_and_updated(store: &Store) {
    assert_eq!(store.campaign_organization("3").await.expect("query"), None);
    store.learn_campaign("3", "7").await.expect("learn");
    assert_eq!(store.campaign_organization("3").await.expect("query").as_deref(), Some("7"));
    store.learn_campaign("3", "8").await.expect("relearn");
    assert_eq!(store.campaign_organization("3").await.expect("query").as_deref(), Some("8"));
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn sqlite_campaigns() {
    let (store, _dir) = sqlite().await;
    assert_eq!(store.backend(), Backend::Sqlite);
    campaigns_are_learnt_and_updated(&store).await;
}

#[tokio::test]
async fn postgres_campaigns() {
    let Some(store) = postgres().await else {
        return;
    };
    assert_eq!(store.backend(), Backend::Postgres);
    campaigns_are_learnt_and_updated(&store).await;
}

#[tokio::test]
async fn sqlite_migrations_run_once_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let first = Store::connect(&url).await.expect("first open");
    first.learn_campaign("1", "2").await.expect("learn");
    drop(first);
    let second = Store::connect(&url).await.expect("second open");
    assert_eq!(second.campaign_organization("1").await.expect("query").as_deref(), Some("2"));
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let error = Store::connect("mysql://localhost/x").await.expect_err("unsupported");
    assert!(error.to_string().contains("mysql://localhost/x"));
}
