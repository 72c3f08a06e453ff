//! Redis Cluster: three masters started by the test. Fan-out goes over sharded pub/sub
//! (SPUBLISH/SSUBSCRIBE, checked on the masters), presence and limits work across slots.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_broker::{Broker, Member};

use crate::harness::{config, event, next_message, prefix, raw, redis_binaries, RedisCluster, APP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fan_out_uses_sharded_pub_sub_and_presence_spans_slots() {
    if !redis_binaries() {
        return;
    }
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let prefix = prefix();
    let connect = |node: &'static str| {
        let mut config = config(&urls, &prefix, node);
        config.cluster = true;
        Broker::connect(config)
    };
    let (a, mut a_in) = connect("a").await.expect("connect a");
    let (_b, mut b_in) = connect("b").await.expect("connect b");
    let (c, mut c_in) = connect("c").await.expect("connect c");

    // Many channels, so every shard (and so every master) carries some.
    for i in 0..40 {
        a.publish(APP, &event(&format!("private-{i}"), &i.to_string())).await.expect("spublish");
    }
    for inbound in [&mut b_in, &mut c_in] {
        let mut seen = BTreeSet::new();
        while seen.len() < 40 {
            let (_, message) =
                next_message(inbound, Duration::from_secs(3)).await.expect("every message arrives");
            assert!(seen.insert(format!("{message:?}")), "no duplicate: {message:?}");
        }
    }
    assert!(next_message(&mut a_in, Duration::from_millis(300)).await.is_none(), "the origin drops its own");

    // Every shard channel is subscribed on its master, over sharded pub/sub only.
    let mut shard_channels = BTreeSet::new();
    for url in &urls {
        let mut master = raw(url).await;
        let sharded: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(format!("{{{prefix}*"))
            .query_async(&mut master)
            .await
            .expect("shardchannels");
        let plain: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("*{prefix}*"))
            .query_async(&mut master)
            .await
            .expect("channels");
        assert!(plain.is_empty(), "no plain pub/sub channel on {url}: {plain:?}");
        assert!(!sharded.is_empty(), "master {url} carries some shard channels");
        shard_channels.extend(sharded);
    }
    let expected: BTreeSet<String> = (0..16).map(|n| format!("{{{prefix}:{APP}:shard:{n}}}")).collect();
    assert_eq!(shard_channels, expected);

    // Presence and counts across slots.
    let alice = Member { user_id: "alice", user_info: "{}" };
    assert!(a.join(APP, "presence-room", "1.1", Some(alice)).await.expect("join").first_for_user);
    assert!(!c.join(APP, "presence-room", "3.1", Some(alice)).await.expect("join").first_for_user);
    for i in 0..10 {
        c.join(APP, &format!("private-{i}"), "3.1", None).await.expect("join");
    }
    assert_eq!(a.members(APP, "presence-room").await.expect("members"), vec![("alice".into(), "{}".into())]);
    assert_eq!(a.channels(APP, None).await.expect("channels").len(), 11);
    assert_eq!(c.channels(APP, Some("presence-")).await.expect("channels").len(), 1);
    assert!(!a.leave(APP, "presence-room", "1.1", Some("alice")).await.expect("leave").last_for_user);
    assert!(c.leave(APP, "presence-room", "3.1", Some("alice")).await.expect("leave").last_for_user);

    assert!(a.connection_opened(APP, Some(2)).await.expect("open"));
    assert!(c.connection_opened(APP, Some(2)).await.expect("open"));
    assert!(!a.connection_opened(APP, Some(2)).await.expect("full"));
    assert!(a.admit_api_request(APP, 100).await.expect("rate"));
    assert_eq!(c.nodes().await.expect("nodes").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_master_is_resubscribed_and_resynced() {
    if !redis_binaries() {
        return;
    }
    let mut cluster = RedisCluster::start();
    let urls = cluster.urls();
    let prefix = prefix();
    let connect = |node: &'static str| {
        let mut config = config(&urls, &prefix, node);
        config.cluster = true;
        Broker::connect(config)
    };
    let (a, _a_in) = connect("a").await.expect("connect a");
    let (_b, mut b_in) = connect("b").await.expect("connect b");

    // The master keeps its slots in its nodes file and comes back empty on the same port.
    cluster.servers[0].kill();
    let down = crate::harness::eventually(Duration::from_secs(5), || async {
        matches!(a.health(), herald_broker::Health::Down { .. })
    })
    .await;
    assert!(down, "a notices that a master is gone");
    cluster.servers[0].restart();
    let resynced = crate::harness::eventually(Duration::from_secs(15), || {
        let item = b_in.try_recv();
        async move { matches!(item, Ok(herald_broker::Inbound::Resync)) }
    })
    .await;
    assert!(resynced, "b resubscribes and asks for a resync");
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || async {
            matches!(a.health(), herald_broker::Health::Up { .. })
        })
        .await,
        "a is up again"
    );
    // Every shard works again, including those of the restarted master.
    for i in 0..40 {
        a.publish(APP, &event(&format!("private-{i}"), &i.to_string())).await.expect("spublish");
    }
    let mut seen = BTreeSet::new();
    while seen.len() < 40 {
        let (_, message) =
            next_message(&mut b_in, Duration::from_secs(3)).await.expect("every message arrives");
        seen.insert(format!("{message:?}"));
    }
}
