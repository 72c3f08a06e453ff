//! Two nodes in one process sharing a real Redis and a real PostgreSQL database: fan-out,
//! exclusion, presence and counts across nodes. (The multi-process suite with pusher-js, node
//! crashes and Redis outages is `tests/node/test/cluster*.test.js`.)

use std::time::Duration;

use serde_json::{json, Value};

use crate::counting::{counting, next_count, next_watch_event, sign_in, subscribed, watch_event};
use crate::harness::{data_of, postgres_database, Client, TestServer};

/// Redis for the cluster tests, or `None` (skipped) when it is absent and not required.
async fn redis_url() -> Option<String> {
    let url = std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url.trim_start_matches("redis://").to_owned();
    match tokio::net::TcpStream::connect(&address).await {
        Ok(_) => Some(url),
        Err(error) if std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|value| value == "1") => {
            panic!("Redis is required but unreachable at {url}: {error}")
        }
        Err(error) => {
            eprintln!("skipping cluster test: Redis at {url}: {error}");
            None
        }
    }
}

/// Two nodes of one cluster (a prefix of their own in Redis, one fresh database).
async fn two_nodes() -> Option<(TestServer, TestServer)> {
    two_nodes_with(|_| {}).await
}

/// Two nodes of one cluster, `change` applied to both configurations.
pub async fn two_nodes_with(
    change: impl Fn(&mut herald_server::config::Config) + Clone,
) -> Option<(TestServer, TestServer)> {
    let redis = redis_url().await?;
    let database = postgres_database().await?;
    let prefix = format!("herald-it-{}", fastrand::u64(..));
    let node = |redis: String, database: String, prefix: String| {
        let change = change.clone();
        TestServer::with_config(move |config| {
            change(config);
            config.database.url = database;
            config.cluster.redis_url = redis;
            config.cluster.prefix = prefix;
        })
    };
    let a = node(redis.clone(), database.clone(), prefix.clone()).await;
    let b = node(redis, database, prefix).await;
    Some((a, b))
}

async fn join(client: &mut Client, channel: &str, user_id: &str) -> Value {
    let channel_data =
        json!({ "user_id": user_id, "user_info": { "name": format!("user {user_id}") } }).to_string();
    let reply = client.subscribe_signed(channel, Some(&channel_data)).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded", "{reply}");
    data_of(&reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_on_one_node_reaches_the_other_once_and_honours_exclusion() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut on_b = b.client().await;
    let mut excluded = b.client().await;
    on_b.subscribe("news").await;
    excluded.subscribe("news").await;
    let body = json!({ "name": "flash", "channels": ["news"], "data": "{\"n\":1}", "socket_id": excluded.socket_id });
    let (status, reply) = a.signed("main", "POST", "/events", &[], Some(&body)).await;
    assert_eq!(status, 200, "{reply}");
    let frame = on_b.recv_event("flash").await;
    assert_eq!(frame["channel"], "news");
    assert_eq!(frame["data"], "{\"n\":1}");
    on_b.expect_silence(Duration::from_millis(300)).await;
    excluded.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_one_member_per_user_across_nodes_and_counts_agree() {
    let Some((a, b)) = two_nodes().await else { return };
    let channel = "presence-room";
    let mut one_on_a = a.client().await;
    let first = join(&mut one_on_a, channel, "1").await;
    assert_eq!(first["presence"]["ids"], json!(["1"]));

    let mut two_on_b = b.client().await;
    let second = join(&mut two_on_b, channel, "2").await;
    assert_eq!(second["presence"]["ids"], json!(["1", "2"]), "B sees the member on A");
    assert_eq!(second["presence"]["hash"]["1"]["name"], "user 1");
    let added = one_on_a.recv_event("pusher_internal:member_added").await;
    assert_eq!(data_of(&added)["user_id"], "2");
    // User 1's member_added went from A to B through Redis when user 1 joined, and B may apply it
    // after two_on_b took its snapshot (which lists user 1 already): a late copy, not a new
    // announcement. An event on the channel from A travels behind it: skip to that.
    let (status, body) = a.trigger(&[channel], "sync", "{}").await;
    assert_eq!(status, 200, "{body}");
    one_on_a.recv_event("sync").await;
    loop {
        let frame = two_on_b.recv().await;
        if frame["event"] == "sync" {
            break;
        }
        assert_eq!(frame["event"], "pusher_internal:member_added", "{frame}");
        assert_eq!(data_of(&frame)["user_id"], "1", "{frame}");
    }

    // User 1 again, on B: still one member, announced to nobody.
    let mut one_on_b = b.client().await;
    let again = join(&mut one_on_b, channel, "1").await;
    assert_eq!(again["presence"]["count"], 2);
    one_on_a.expect_silence(Duration::from_millis(300)).await;
    two_on_b.expect_silence(Duration::from_millis(300)).await;

    for node in [&a, &b] {
        let (status, info) = node
            .signed(
                "main",
                "GET",
                "/channels/presence-room",
                &[("info", "subscription_count,user_count")],
                None,
            )
            .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(
            (info["occupied"].clone(), info["subscription_count"].clone(), info["user_count"].clone()),
            (json!(true), json!(3), json!(2))
        );
        let (_, users) = node.signed("main", "GET", "/channels/presence-room/users", &[], None).await;
        assert_eq!(users["users"], json!([{ "id": "1" }, { "id": "2" }]));
        let (_, list) = node
            .signed(
                "main",
                "GET",
                "/channels",
                &[("filter_by_prefix", "presence-"), ("info", "user_count")],
                None,
            )
            .await;
        assert_eq!(list["channels"]["presence-room"]["user_count"], 2);
    }

    // User 1 leaves A: still present through B, so nobody hears of it.
    drop(one_on_a);
    two_on_b.expect_silence(Duration::from_millis(500)).await;
    // And leaves B too: one member_removed, on the node that did not see the socket go.
    drop(one_on_b);
    let removed = two_on_b.recv_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "1");
    two_on_b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_counts_are_cluster_wide_and_reach_every_node_once() {
    let Some((a, b)) = two_nodes_with(counting).await else { return };
    let mut on_a = a.client().await;
    subscribed(&mut on_a, "news").await;
    assert_eq!(next_count(&mut on_a, "news").await, 1);
    let mut on_b = b.client().await;
    subscribed(&mut on_b, "news").await;
    assert_eq!(next_count(&mut on_b, "news").await, 2, "the count is the cluster's");
    assert_eq!(next_count(&mut on_a, "news").await, 2, "the other node's subscribers hear it");
    let mut also_on_b = b.client().await;
    subscribed(&mut also_on_b, "news").await;
    assert_eq!(next_count(&mut also_on_b, "news").await, 3);
    assert_eq!(next_count(&mut on_b, "news").await, 3);
    assert_eq!(next_count(&mut on_a, "news").await, 3);
    drop(also_on_b);
    assert_eq!(next_count(&mut on_a, "news").await, 2);
    assert_eq!(next_count(&mut on_b, "news").await, 2);
    on_a.expect_silence(Duration::from_millis(300)).await;
    on_b.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_online_and_offline_across_nodes() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut watcher = b.client().await;
    assert_eq!(sign_in(&mut watcher, "watcher", &["ada"]).await, Some(watch_event("online", &[])));
    let mut ada_on_a = a.client().await;
    sign_in(&mut ada_on_a, "ada", &[]).await;
    assert_eq!(next_watch_event(&mut watcher).await, watch_event("online", &["ada"]));

    let mut late = b.client().await;
    let first = sign_in(&mut late, "late", &["ada", "bob"]).await;
    assert_eq!(first, Some(watch_event("online", &["ada"])), "online on the other node counts");

    let mut ada_on_b = b.client().await;
    sign_in(&mut ada_on_b, "ada", &[]).await;
    drop(ada_on_a);
    watcher.expect_silence(Duration::from_millis(400)).await;
    drop(ada_on_b);
    assert_eq!(next_watch_event(&mut watcher).await, watch_event("offline", &["ada"]));
    assert_eq!(next_watch_event(&mut late).await, watch_event("offline", &["ada"]));
    watcher.expect_silence(Duration::from_millis(200)).await;
}
