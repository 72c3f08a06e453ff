//! Heartbeats, the node registry, reaping of dead nodes and goodbye, on a single Redis.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_broker::{Inbound, Member, Message, Registration};
use redis::AsyncCommands;

use crate::harness::{drain, eventually, next, node, prefix, raw, shared_redis, APP};

fn member(user: &str) -> Member<'_> {
    Member { user_id: user, user_info: "{}" }
}

/// MemberRemoved events among `items`, as (channel, user) → how many times.
fn removed(items: &[Inbound]) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for item in items {
        if let Inbound::Message { message: Message::MemberRemoved { channel, user_id }, .. } = item {
            *seen.entry((channel.clone(), user_id.clone())).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_report_address_and_connections() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    b.set_connections(7);
    let reported = eventually(Duration::from_secs(2), || async {
        let nodes = a.nodes().await.expect("nodes");
        nodes.len() == 2
            && nodes[1].id == "b"
            && nodes[1].connections == 7
            && nodes[1].address == "b.test:6001"
    })
    .await;
    assert!(reported, "{:?}", a.nodes().await);
    assert!(matches!(a.health(), herald_broker::Health::Up { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_reaped_within_ttl_plus_heartbeat_and_its_gone_users_removed_once() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, mut a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    // alice: two sockets, both on b. carol: only on b, another channel. dave: on b and on a.
    b.join(APP, "presence-room", "2.1", Some(member("alice"))).await.expect("join");
    b.join(APP, "presence-room", "2.2", Some(member("alice"))).await.expect("join");
    b.join(APP, "presence-other", "2.3", Some(member("carol"))).await.expect("join");
    b.join(APP, "presence-room", "2.4", Some(member("dave"))).await.expect("join");
    b.join(APP, "private-b", "2.5", None).await.expect("join");
    a.join(APP, "presence-room", "1.1", Some(member("dave"))).await.expect("join");
    assert!(b.connection_opened(APP, Some(2)).await.expect("open"));
    assert!(b.connection_opened(APP, Some(2)).await.expect("open"));
    assert!(!a.connection_opened(APP, Some(2)).await.expect("full"));

    let died = Instant::now();
    b.abandon();
    // ttl (1 s) + heartbeat (200 ms), and 1 s for the reap itself on a loaded machine.
    let bound = Duration::from_secs(1) + Duration::from_millis(200) + Duration::from_secs(1);
    let mut items = Vec::new();
    while removed(&items).len() < 2 && died.elapsed() < bound + Duration::from_secs(2) {
        if let Some(item) = next(&mut a_in, Duration::from_millis(100)).await {
            items.push(item);
        }
    }
    assert!(
        died.elapsed() <= bound,
        "reaped after {:?}, bound {bound:?} (ttl + heartbeat + slack)",
        died.elapsed()
    );
    items.extend(drain(&mut a_in, Duration::from_millis(700)).await);
    let expected: BTreeMap<(String, String), usize> = [
        (("presence-other".to_owned(), "carol".to_owned()), 1),
        (("presence-room".to_owned(), "alice".to_owned()), 1),
    ]
    .into();
    assert_eq!(removed(&items), expected, "dave still has a socket on a");
    // The reaper's own server hears what the reaping changed (for its webhooks): channels that
    // emptied, users that left for good; dave's socket on a keeps presence-room occupied.
    // (channel, user, emptied, last for user): the reaper removes b's sockets in no set order.
    let mut reaped: Vec<(String, Option<String>, bool, bool)> = items
        .iter()
        .filter_map(|item| match item {
            Inbound::Reaped { channel, user_id, left, .. } => {
                Some((channel.clone(), user_id.clone(), left.subscription_count == 0, left.last_for_user))
            }
            _ => None,
        })
        .collect();
    reaped.sort();
    assert_eq!(
        reaped,
        [
            ("presence-other".to_owned(), Some("carol".to_owned()), true, true),
            ("presence-room".to_owned(), Some("alice".to_owned()), false, true),
            ("private-b".to_owned(), None, true, false),
        ]
    );

    assert_eq!(a.members(APP, "presence-room").await.expect("members"), vec![("dave".into(), "{}".into())]);
    assert_eq!(a.channel(APP, "presence-room").await.expect("counts").subscription_count, 1);
    let names: Vec<String> =
        a.channels(APP, None).await.expect("channels").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["presence-room"]);
    let ids: Vec<String> = a.nodes().await.expect("nodes").into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a"]);
    assert!(a.connection_opened(APP, Some(2)).await.expect("b's connections are forgotten"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_survivors_racing_reap_each_gone_user_exactly_once() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (_a, mut a_in) = node(&url, &prefix, "a").await;
    let (_c, mut c_in) = node(&url, &prefix, "c").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    let users: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    for (i, user) in users.iter().enumerate() {
        b.join(APP, "presence-crowd", &format!("2.{i}"), Some(member(user))).await.expect("join");
    }
    b.abandon();
    let mut seen_a = Vec::new();
    let mut seen_c = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (removed(&seen_a).len() < 20 || removed(&seen_c).len() < 20) && Instant::now() < deadline {
        tokio::select! {
            Some(item) = a_in.recv() => seen_a.push(item),
            Some(item) = c_in.recv() => seen_c.push(item),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    seen_a.extend(drain(&mut a_in, Duration::from_millis(700)).await);
    seen_c.extend(drain(&mut c_in, Duration::from_millis(100)).await);
    for (node, seen) in [("a", &seen_a), ("c", &seen_c)] {
        let counts = removed(seen);
        assert_eq!(counts.len(), 20, "node {node} hears of every user");
        assert!(counts.values().all(|n| *n == 1), "node {node} hears of each user once: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodbye_removes_the_node_and_announces_its_users() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, mut a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    b.join(APP, "presence-room", "2.1", Some(member("alice"))).await.expect("join");
    a.join(APP, "presence-room", "1.1", Some(member("dave"))).await.expect("join");
    b.join(APP, "presence-room", "2.2", Some(member("dave"))).await.expect("join");
    assert!(b.connection_opened(APP, None).await.expect("open"));
    b.shutdown().await;
    let items = drain(&mut a_in, Duration::from_millis(500)).await;
    let expected: BTreeMap<(String, String), usize> = [(("presence-room".into(), "alice".into()), 1)].into();
    assert_eq!(removed(&items), expected);
    let ids: Vec<String> = a.nodes().await.expect("nodes").into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(a.channel(APP, "presence-room").await.expect("counts").subscription_count, 1);
    assert!(a.connection_opened(APP, Some(1)).await.expect("b's connection is gone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_presumed_dead_resyncs_and_restore_announces_it_again() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, mut a_in) = node(&url, &prefix, "a").await;
    let (b, mut b_in) = node(&url, &prefix, "b").await;
    b.join(APP, "presence-room", "2.1", Some(member("alice"))).await.expect("join");
    // Cut b off as far as the others can tell: its liveness key disappears, a reaps it.
    let mut redis = raw(&url).await;
    let _: () = redis.del(format!("{{{prefix}:node:b}}:alive")).await.expect("del");
    let resynced = eventually(Duration::from_secs(3), || {
        let item = b_in.try_recv();
        async move { matches!(item, Ok(Inbound::Resync)) }
    })
    .await;
    assert!(resynced, "b notices and asks for a resync");
    let registrations = vec![Registration {
        app: APP.into(),
        channel: "presence-room".into(),
        socket_id: "2.1".into(),
        member: Some(("alice".into(), "{}".into())),
    }];
    b.restore(&registrations, &[(APP.to_owned(), 1)]).await.expect("restore");
    assert_eq!(a.members(APP, "presence-room").await.expect("members"), vec![("alice".into(), "{}".into())]);
    assert!(
        eventually(Duration::from_secs(2), || async { a.nodes().await.is_ok_and(|nodes| nodes.len() == 2) })
            .await,
        "b is back in the registry"
    );
    // Whether a reaped b before b's heartbeat came back is a race; if it did, a heard alice
    // leave, and then hears her come back.
    let items = drain(&mut a_in, Duration::from_millis(500)).await;
    let gone = removed(&items).len();
    let back = items
        .iter()
        .filter(|item| matches!(item, Inbound::Message { message: Message::MemberAdded { .. }, .. }))
        .count();
    assert_eq!(gone, back, "every removal is followed by an addition: {items:?}");
}
