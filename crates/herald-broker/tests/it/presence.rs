//! Cluster-wide subscriptions and presence on a single Redis.

use herald_broker::{BrokerError, ChannelCounts, Member};

use crate::harness::{node, prefix, shared_redis, APP};

const ALICE: Member<'static> = Member { user_id: "alice", user_info: "{\"name\":\"Alice\"}" };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_on_two_nodes_is_added_once_and_removed_once() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    let (c, _c_in) = node(&url, &prefix, "c").await;
    let channel = "presence-room";

    let joined = a.join(APP, channel, "1.1", Some(ALICE)).await.expect("join on a");
    assert!(joined.first_for_user);
    assert_eq!((joined.subscription_count, joined.user_count), (1, 1));
    let joined = b.join(APP, channel, "2.1", Some(ALICE)).await.expect("join on b");
    assert!(!joined.first_for_user, "alice already has a socket on a");
    assert_eq!((joined.subscription_count, joined.user_count), (2, 1));
    let again = b.join(APP, channel, "2.1", Some(ALICE)).await.expect("join twice");
    assert_eq!((again.first_for_user, again.subscription_count), (false, 2), "joining twice is a no-op");

    let bob = Member { user_id: "bob", user_info: "{}" };
    assert!(c.join(APP, channel, "3.1", Some(bob)).await.expect("bob").first_for_user);
    let expected =
        vec![("alice".to_owned(), ALICE.user_info.to_owned()), ("bob".to_owned(), "{}".to_owned())];
    for broker in [&a, &b, &c] {
        assert_eq!(broker.members(APP, channel).await.expect("members"), expected);
    }

    let left = a.leave(APP, channel, "1.1", Some("alice")).await.expect("leave a");
    assert!(!left.last_for_user, "alice is still on b");
    assert_eq!((left.subscription_count, left.user_count), (2, 2));
    let left = b.leave(APP, channel, "2.1", Some("alice")).await.expect("leave b");
    assert!(left.last_for_user);
    assert_eq!((left.subscription_count, left.user_count), (1, 1));
    let repeated = b.leave(APP, channel, "2.1", Some("alice")).await.expect("leave twice");
    assert!(!repeated.last_for_user, "a repeated leave announces nothing");
    assert_eq!(a.members(APP, channel).await.expect("members"), vec![("bob".to_owned(), "{}".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_channel_lists_agree_from_every_node() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;

    a.join(APP, "private-orders", "1.1", None).await.expect("join");
    b.join(APP, "private-orders", "2.1", None).await.expect("join");
    b.join(APP, "public-news", "2.1", None).await.expect("join");
    a.join(APP, "presence-room", "1.1", Some(ALICE)).await.expect("join");
    b.join(APP, "presence-room", "2.2", Some(Member { user_id: "bob", user_info: "{}" }))
        .await
        .expect("join");

    let orders = ChannelCounts { subscription_count: 2, user_count: 0 };
    let room = ChannelCounts { subscription_count: 2, user_count: 2 };
    let news = ChannelCounts { subscription_count: 1, user_count: 0 };
    for broker in [&a, &b] {
        assert_eq!(broker.channel(APP, "private-orders").await.expect("counts"), orders);
        assert_eq!(broker.channel(APP, "nobody-here").await.expect("counts"), ChannelCounts::default());
        assert_eq!(
            broker.channels(APP, None).await.expect("channels"),
            vec![
                ("presence-room".to_owned(), room),
                ("private-orders".to_owned(), orders),
                ("public-news".to_owned(), news)
            ]
        );
        assert_eq!(
            broker.channels(APP, Some("pr")).await.expect("channels"),
            vec![("presence-room".to_owned(), room), ("private-orders".to_owned(), orders)]
        );
    }

    b.leave(APP, "public-news", "2.1", None).await.expect("leave");
    let names: Vec<String> =
        a.channels(APP, None).await.expect("channels").into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["presence-room", "private-orders"], "an emptied channel leaves the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_keep_the_index_and_counts_right() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    for round in 0..20 {
        let socket_a = format!("1.{round}");
        let socket_b = format!("2.{round}");
        let (joined, left) = tokio::join!(
            async {
                a.join(APP, "churn", &socket_a, None).await?;
                a.leave(APP, "churn", &socket_a, None).await
            },
            b.join(APP, "churn", &socket_b, None),
        );
        joined.expect("a");
        left.expect("b");
        let listed = a.channels(APP, None).await.expect("channels");
        assert_eq!(listed.len(), 1, "round {round}: the occupied channel is listed");
        b.leave(APP, "churn", &socket_b, None).await.expect("leave");
        assert!(a.channels(APP, None).await.expect("channels").is_empty(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_would_break_hash_tags_are_refused() {
    let Some(url) = shared_redis() else { return };
    let (a, _a_in) = node(&url, &prefix(), "a").await;
    let error = a.join(APP, "bad{channel}", "1.1", None).await.expect_err("refused");
    assert!(matches!(error, BrokerError::InvalidName { what: "channel", .. }), "{error:?}");
}
