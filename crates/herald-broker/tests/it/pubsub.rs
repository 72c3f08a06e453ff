//! Fan-out on a single Redis: a publication reaches every other node once, never its origin.

use std::time::Duration;

use herald_broker::{Broker, BrokerError, Message};

use crate::harness::{event, next_message, node, prefix, shared_redis, APP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publication_reaches_every_other_node_once_and_not_its_origin() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, mut a_in) = node(&url, &prefix, "a").await;
    let (_b, mut b_in) = node(&url, &prefix, "b").await;
    let (_c, mut c_in) = node(&url, &prefix, "c").await;

    let message = Message::Event {
        channel: "presence-room".into(),
        event: "client-typing".into(),
        data: "{\"typing\":true}".into(),
        except: Some("123.456".into()),
        user_id: Some("user-1".into()),
    };
    a.publish(APP, &message).await.expect("publish");
    for inbound in [&mut b_in, &mut c_in] {
        let (app, received) = next_message(inbound, Duration::from_secs(2)).await.expect("a message");
        assert_eq!(app, APP);
        assert_eq!(received, message, "exclusion and user id are carried");
        assert!(next_message(inbound, Duration::from_millis(200)).await.is_none(), "exactly once");
    }
    assert!(next_message(&mut a_in, Duration::from_millis(300)).await.is_none(), "the origin drops its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_kind_round_trips_in_order() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (_b, mut b_in) = node(&url, &prefix, "b").await;
    let messages = vec![
        event("private-x", "1"),
        Message::MemberAdded { channel: "presence-x".into(), user_id: "u".into(), user_info: "{}".into() },
        Message::MemberRemoved { channel: "presence-x".into(), user_id: "u".into() },
        Message::TerminateUser { user_id: "u".into() },
        Message::CacheEvent { channel: "cache-x".into(), event: "e".into(), data: "d".into() },
    ];
    for message in &messages {
        a.publish(APP, message).await.expect("publish");
    }
    for message in messages {
        let (_, received) = next_message(&mut b_in, Duration::from_secs(2)).await.expect("a message");
        assert_eq!(received, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_for_an_app_no_node_serves_is_refused() {
    let Some(url) = shared_redis() else { return };
    let (a, _a_in) = node(&url, &prefix(), "a").await;
    let error = a.publish("other-app", &event("c", "d")).await.expect_err("unknown app");
    assert!(matches!(error, BrokerError::UnknownApp { ref app } if app == "other-app"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_channel_drops_and_counts_instead_of_growing() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let mut config = crate::harness::config(std::slice::from_ref(&url), &prefix, "b");
    config.inbound_capacity = 2;
    let (b, mut b_in) = Broker::connect(config).await.expect("connect");
    for i in 0..5 {
        a.publish(APP, &event("c", &i.to_string())).await.expect("publish");
    }
    assert!(
        crate::harness::eventually(Duration::from_secs(2), || async { b.dropped() == 3 }).await,
        "three of five dropped, got {}",
        b.dropped()
    );
    let (_, first) = next_message(&mut b_in, Duration::from_secs(1)).await.expect("first kept");
    assert_eq!(first, event("c", "0"));
}
