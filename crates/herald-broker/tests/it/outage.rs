//! A Redis outage on a server this test starts and kills: calls fail fast with `Unavailable`,
//! health is Down, and when Redis returns (empty) health is Up by itself, `Resync` arrives,
//! `restore` re-registers, and pub/sub works again.

use std::time::{Duration, Instant};

use herald_broker::{Broker, BrokerError, Health, Inbound, Member, Registration};

use crate::harness::{
    config, event, eventually, free_port, next_message, prefix, redis_binaries, RedisServer, APP,
};

async fn wait_for_resync(inbound: &mut tokio::sync::mpsc::Receiver<Inbound>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(Inbound::Resync)) =
            tokio::time::timeout(Duration::from_millis(100), inbound.recv()).await
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_then_heals_and_resyncs() {
    if !redis_binaries() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut server = RedisServer::start(free_port(), dir.path(), false);
    let urls = [server.url()];
    let prefix = prefix();
    let (a, mut a_in) = Broker::connect(config(&urls, &prefix, "a")).await.expect("connect a");
    let (b, mut b_in) = Broker::connect(config(&urls, &prefix, "b")).await.expect("connect b");
    let alice = Member { user_id: "alice", user_info: "{}" };
    a.join(APP, "presence-room", "1.1", Some(alice)).await.expect("join");
    b.join(APP, "presence-room", "2.1", Some(Member { user_id: "bob", user_info: "{}" }))
        .await
        .expect("join");
    assert!(a.connection_opened(APP, None).await.expect("open"));

    server.kill();
    let started = Instant::now();
    let error = a.publish(APP, &event("c", "lost")).await.expect_err("redis is gone");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "bounded by the command timeout");
    assert!(
        eventually(Duration::from_secs(2), || async { matches!(a.health(), Health::Down { .. }) }).await,
        "health reports down"
    );
    let started = Instant::now();
    let error = a.join(APP, "presence-room", "1.2", None).await.expect_err("still down");
    assert!(matches!(error, BrokerError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast while down: {:?}", started.elapsed());

    server.restart();
    assert!(
        eventually(Duration::from_secs(10), || async { matches!(a.health(), Health::Up { .. }) }).await,
        "health is up again by itself"
    );
    assert!(wait_for_resync(&mut a_in).await, "a is told to resync");
    assert!(wait_for_resync(&mut b_in).await, "b is told to resync");

    // The restarted Redis is empty: restore puts both nodes' state back.
    a.restore(
        &[Registration {
            app: APP.into(),
            channel: "presence-room".into(),
            socket_id: "1.1".into(),
            member: Some(("alice".into(), "{}".into())),
        }],
        &[(APP.to_owned(), 1)],
    )
    .await
    .expect("restore a");
    b.restore(
        &[Registration {
            app: APP.into(),
            channel: "presence-room".into(),
            socket_id: "2.1".into(),
            member: Some(("bob".into(), "{}".into())),
        }],
        &[],
    )
    .await
    .expect("restore b");
    assert_eq!(
        b.members(APP, "presence-room").await.expect("members"),
        vec![("alice".into(), "{}".into()), ("bob".into(), "{}".into())]
    );
    assert!(!b.connection_opened(APP, Some(1)).await.expect("a's restored connection counts"));

    a.publish(APP, &event("c", "back")).await.expect("publish after the outage");
    let (_, message) = next_message(&mut b_in, Duration::from_secs(2)).await.expect("b hears a again");
    assert_eq!(message, event("c", "back"));
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_with_unavailable() {
    let urls = [format!("redis://127.0.0.1:{}", free_port())];
    let started = Instant::now();
    let error = Broker::connect(config(&urls, &prefix(), "a")).await.expect_err("nothing listens");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
