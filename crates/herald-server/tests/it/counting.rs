//! Subscription counting (`pusher_internal:subscription_count`) and watchlist events
//! (`pusher_internal:watchlist_events`) on one node, with real WebSocket clients. Their cluster
//! versions are in cluster.rs.

use std::time::{Duration, Instant};

use herald_server::config::Config;
use serde_json::{json, Value};

use crate::harness::{data_of, Client, TestServer};

/// Subscription counting on for the `main` app.
pub fn counting(config: &mut Config) {
    for app in config.apps.iter_mut().filter(|app| app.id == "main") {
        app.subscription_count = true;
    }
}

/// The next `pusher_internal:subscription_count` on `channel`: its count.
pub async fn next_count(client: &mut Client, channel: &str) -> u64 {
    let frame = client.recv_event("pusher_internal:subscription_count").await;
    assert_eq!(frame["channel"], channel, "{frame}");
    let data = data_of(&frame);
    assert_eq!(data.as_object().map(|fields| fields.len()), Some(1), "only the count: {data}");
    data["subscription_count"].as_u64().expect("a number")
}

/// Subscribes to a public channel and reads its `subscription_succeeded`.
pub async fn subscribed(client: &mut Client, channel: &str) {
    let reply = client.subscribe(channel).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded", "{reply}");
}

/// Signs in to `main` as `user_id` watching `watchlist`; returns the frame after
/// `signin_success` when there is a watchlist (the first `watchlist_events`).
pub async fn sign_in(client: &mut Client, user_id: &str, watchlist: &[&str]) -> Option<Value> {
    let user_data = if watchlist.is_empty() {
        json!({ "id": user_id }).to_string()
    } else {
        json!({ "id": user_id, "watchlist": watchlist }).to_string()
    };
    client.signin("main", &user_data).await;
    let success = client.recv().await;
    assert_eq!(success["event"], "pusher:signin_success", "{success}");
    if watchlist.is_empty() {
        return None;
    }
    let first = client.recv().await;
    assert_eq!(first["event"], "pusher_internal:watchlist_events", "{first}");
    assert!(first.get("channel").is_none(), "watchlist events have no channel: {first}");
    Some(data_of(&first))
}

/// One watchlist event's data: `{"events": [{"name": name, "user_ids": ids}]}`.
pub fn watch_event(name: &str, ids: &[&str]) -> Value {
    json!({ "events": [{ "name": name, "user_ids": ids }] })
}

/// The next `pusher_internal:watchlist_events`' data.
pub async fn next_watch_event(client: &mut Client) -> Value {
    data_of(&client.recv_event("pusher_internal:watchlist_events").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_hears_the_count_as_connections_come_and_go() {
    let server = TestServer::with_config(counting).await;
    let mut first = server.client().await;
    subscribed(&mut first, "news").await;
    assert_eq!(next_count(&mut first, "news").await, 1, "the subscriber itself hears the count");
    let mut second = server.client().await;
    subscribed(&mut second, "news").await;
    assert_eq!(next_count(&mut second, "news").await, 2);
    assert_eq!(next_count(&mut first, "news").await, 2);
    second.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "news" } })).await;
    assert_eq!(next_count(&mut first, "news").await, 1, "an unsubscription counts");
    let mut third = server.client().await;
    subscribed(&mut third, "news").await;
    assert_eq!(next_count(&mut first, "news").await, 2);
    drop(third);
    assert_eq!(next_count(&mut first, "news").await, 1, "a closed connection counts");
    second.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_channels_and_apps_without_counting_hear_no_count() {
    let server = TestServer::with_config(counting).await;
    let mut member = server.client().await;
    let channel_data = json!({ "user_id": "1" }).to_string();
    let reply = member.subscribe_signed("presence-room", Some(&channel_data)).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded", "{reply}");
    member.expect_silence(Duration::from_millis(300)).await;

    let plain = TestServer::start().await;
    let mut client = plain.client().await;
    subscribed(&mut client, "news").await;
    let mut other = plain.client().await;
    subscribed(&mut other, "news").await;
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_over_100_subscribers_hears_at_most_every_5_seconds_and_the_last_count() {
    let server = TestServer::with_config(counting).await;
    let mut watcher = server.client().await;
    subscribed(&mut watcher, "crowd").await;
    assert_eq!(next_count(&mut watcher, "crowd").await, 1);
    let mut crowd = Vec::new();
    for expected in 2..=101 {
        let mut client = server.client().await;
        subscribed(&mut client, "crowd").await;
        assert_eq!(next_count(&mut watcher, "crowd").await, expected, "every change up to 101");
        crowd.push(client);
    }
    let burst = Instant::now();
    for _ in 0..3 {
        let mut client = server.client().await;
        subscribed(&mut client, "crowd").await;
        crowd.push(client);
    }
    drop(crowd.pop());
    // The trailing count comes up to 5 s after the last one sent: longer than one frame's WAIT
    // on a busy machine, so this wait has a bound of its own.
    let trailing =
        watcher.recv_event_within("pusher_internal:subscription_count", Duration::from_secs(15)).await;
    assert_eq!(trailing["channel"], "crowd");
    assert_eq!(data_of(&trailing)["subscription_count"], 103, "the burst ends with its last count");
    let waited = burst.elapsed();
    assert!(waited >= Duration::from_millis(4500), "paced: {waited:?}");
    watcher.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_a_users_first_sign_in_and_last_goodbye() {
    let server = TestServer::start().await;
    let mut ada = server.client().await;
    assert_eq!(sign_in(&mut ada, "ada", &[]).await, None);
    let mut watcher = server.client().await;
    let first = sign_in(&mut watcher, "watcher", &["ada", "bob"]).await;
    assert_eq!(first, Some(watch_event("online", &["ada"])), "who is online already");

    let mut bob_phone = server.client().await;
    sign_in(&mut bob_phone, "bob", &[]).await;
    assert_eq!(next_watch_event(&mut watcher).await, watch_event("online", &["bob"]));
    let mut bob_laptop = server.client().await;
    sign_in(&mut bob_laptop, "bob", &[]).await;
    drop(bob_phone);
    watcher.expect_silence(Duration::from_millis(300)).await;
    drop(bob_laptop);
    assert_eq!(next_watch_event(&mut watcher).await, watch_event("offline", &["bob"]));
    let mut carol = server.client().await;
    sign_in(&mut carol, "carol", &[]).await;
    drop(ada);
    assert_eq!(next_watch_event(&mut watcher).await, watch_event("offline", &["ada"]));
    watcher.expect_silence(Duration::from_millis(200)).await;
}
