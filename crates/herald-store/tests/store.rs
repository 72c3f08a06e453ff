//! The store against real SQLite files and a real PostgreSQL (required when
//! HERALD_REQUIRE_SERVICES=1, as in CI; skipped with a message otherwise).

use herald_store::{Backend, Store};

mod support;

use support::{postgres, sqlite};

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
