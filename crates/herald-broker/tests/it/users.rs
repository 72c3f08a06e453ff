//! Signed-in users across nodes (watchlists): a user is online while some node has them, a
//! dead node's users are announced offline once when it is reaped, and restore re-registers.

use std::time::{Duration, Instant};

use herald_broker::{Inbound, Message};

use crate::harness::{drain, next, node, prefix, shared_redis, APP};

fn offline(items: &[Inbound]) -> Vec<String> {
    let mut users: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            Inbound::Message { message: Message::UserOffline { user_id }, .. } => Some(user_id.clone()),
            _ => None,
        })
        .collect();
    users.sort();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_online_while_any_node_has_them() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    assert!(a.user_online(APP, "ada").await.expect("online"), "first node: news");
    assert!(!a.user_online(APP, "ada").await.expect("online"), "a node counts a user once");
    assert!(!b.user_online(APP, "ada").await.expect("online"), "second node: not news");
    let watched = ["ada".to_owned(), "bob".to_owned()];
    assert_eq!(b.online_users(APP, &watched).await.expect("online users"), vec!["ada".to_owned()]);
    assert!(!a.user_offline(APP, "ada").await.expect("offline"), "still on b");
    assert!(!a.user_offline(APP, "ada").await.expect("offline"), "a repeat changes nothing");
    assert!(b.user_offline(APP, "ada").await.expect("offline"), "gone everywhere");
    assert!(b.online_users(APP, &watched).await.expect("online users").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_are_announced_offline_once_unless_online_elsewhere() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, mut a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    b.user_online(APP, "ada").await.expect("online");
    b.user_online(APP, "bob").await.expect("online");
    a.user_online(APP, "bob").await.expect("online");
    b.abandon();
    let died = Instant::now();
    let mut items = Vec::new();
    while offline(&items).is_empty() && died.elapsed() < Duration::from_secs(5) {
        if let Some(item) = next(&mut a_in, Duration::from_millis(100)).await {
            items.push(item);
        }
    }
    items.extend(drain(&mut a_in, Duration::from_millis(700)).await);
    assert_eq!(offline(&items), vec!["ada".to_owned()], "bob is still on a");
    let watched = ["ada".to_owned(), "bob".to_owned()];
    assert_eq!(a.online_users(APP, &watched).await.expect("online users"), vec!["bob".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_makes_a_nodes_users_exactly_what_it_has() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    a.user_online(APP, "ada").await.expect("online");
    a.user_online(APP, "bob").await.expect("online");
    let (online, offline) =
        a.restore_users(APP, &["bob".to_owned(), "carol".to_owned()]).await.expect("restored");
    assert_eq!((online, offline), (vec!["carol".to_owned()], vec!["ada".to_owned()]));
    let (online, offline) =
        a.restore_users(APP, &["bob".to_owned(), "carol".to_owned()]).await.expect("restored");
    assert!(online.is_empty() && offline.is_empty(), "a repeat changes nothing");
}
