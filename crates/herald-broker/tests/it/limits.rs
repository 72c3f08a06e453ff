//! Cluster-wide connection limits and API rate on a single Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{node, prefix, shared_redis, APP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_counts_every_node() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    let max = Some(3);
    assert!(a.connection_opened(APP, max).await.expect("1"));
    assert!(a.connection_opened(APP, max).await.expect("2"));
    assert!(b.connection_opened(APP, max).await.expect("3"));
    assert!(!b.connection_opened(APP, max).await.expect("4 is over"), "a's two count on b");
    assert!(!a.connection_opened(APP, max).await.expect("4 is over"), "nothing was counted");
    a.connection_closed(APP).await.expect("close");
    assert!(b.connection_opened(APP, max).await.expect("room again"));
    assert!(b.connection_opened(APP, None).await.expect("no limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rate_is_shared_by_every_node_within_one_second() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    // Start just after a second boundary so the six requests fall within one second.
    let into_second = SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch").subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1010 - into_second))).await;
    let mut admitted = 0;
    for i in 0..6 {
        let broker = if i % 2 == 0 { &a } else { &b };
        if broker.admit_api_request(APP, 5).await.expect("admit") {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(a.admit_api_request(APP, 5).await.expect("admit"), "a new second starts afresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_is_settled_by_its_filer_unless_something_came_back_anywhere() {
    let Some(url) = shared_redis() else { return };
    let prefix = prefix();
    let (a, _a_in) = node(&url, &prefix, "a").await;
    let (b, _b_in) = node(&url, &prefix, "b").await;
    let ttl = Duration::from_secs(10);

    // Nothing came back: the filer settles it, once.
    a.file_removal(APP, "news", "t1", ttl).await.expect("file");
    assert!(a.settle_removal(APP, "news", "t1").await.expect("settle"));
    assert!(!a.settle_removal(APP, "news", "t1").await.expect("settled already"));

    // The channel came back on another node: the return takes the removal back, nothing is said.
    a.file_removal(APP, "news", "t2", ttl).await.expect("file");
    assert!(b.undo_removal(APP, "news").await.expect("undo"));
    assert!(!a.settle_removal(APP, "news", "t2").await.expect("settle"));
    assert!(!b.undo_removal(APP, "news").await.expect("nothing pending"), "a later return is a real one");

    // A later removal (on b) replaces a's: only b's is settled.
    a.file_removal(APP, "news", "t3", ttl).await.expect("file");
    b.file_removal(APP, "news", "t4", ttl).await.expect("file");
    assert!(!a.settle_removal(APP, "news", "t3").await.expect("replaced"));
    assert!(b.settle_removal(APP, "news", "t4").await.expect("settle"));
}
