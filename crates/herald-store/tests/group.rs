//! Group commit on both backends: concurrent requests share transactions, yet each is answered
//! as if it had been stored alone.

use std::sync::Arc;

use herald_store::{
    EventRecord, IngestQueue, IngestResult, Lane, NewBroadcast, NewEvent, NewNotification, Store, StoreError,
};

mod support;

use support::{postgres, sqlite};

/// An event with one notification (`n-<id>`) and one broadcast job (`b-<id>`).
fn record(id: &str) -> EventRecord {
    EventRecord {
        event: NewEvent {
            id: id.into(),
            event_type: "notification.created".into(),
            occurred_at: 1,
            payload: "{}".into(),
            status: "accepted".into(),
        },
        notifications: vec![NewNotification {
            id: format!("n-{id}"),
            user_id: "1".into(),
            notification_type: "receipt".into(),
            title: "Title".into(),
            message: "Message".into(),
            priority: "normal".into(),
            data: "{}".into(),
            action_url: None,
        }],
        broadcasts: vec![NewBroadcast {
            id: format!("b-{id}"),
            event_name: "notification.created".into(),
            channels: vec!["user.notifications.1".into()],
            payload: "{}".into(),
            lane: Lane::Normal,
        }],
        audits: Vec::new(),
        outcome: format!(r#"{{"id":"{id}"}}"#),
        campaign: None,
    }
}

/// `record(id)` naming the notification id `n-<other>` (a collision once `other` is stored).
fn colliding(id: &str, other: &str) -> EventRecord {
    let mut record = record(id);
    record.notifications[0].id = format!("n-{other}");
    record
}

async fn pending_jobs(store: &Store) -> i64 {
    let stats = store.lane_stats().await.expect("stats");
    stats.iter().map(|lane| lane.pending).sum()
}

async fn concurrent_requests_are_all_committed_and_answered(store: &Store) {
    let queue = Arc::new(IngestQueue::new(store.clone()));
    let requests: Vec<_> = (0..96)
        .map(|n| {
            let queue = queue.clone();
            // Every fourth request repeats an earlier id: a duplicate, wherever its group falls.
            let id = if n % 4 == 3 { format!("c{}", n - 1) } else { format!("c{n}") };
            tokio::spawn(async move { (id.clone(), queue.ingest(vec![record(&id)]).await) })
        })
        .collect();
    let mut stored = 0;
    for request in requests {
        let (id, answer) = request.await.expect("request task");
        match answer.expect("stored").as_slice() {
            [IngestResult::Stored] => stored += 1,
            [IngestResult::Duplicate { outcome }] => assert_eq!(*outcome, format!(r#"{{"id":"{id}"}}"#)),
            other => panic!("unexpected answer {other:?}"),
        }
        assert!(store.event_exists(&id).await.expect("query"), "{id} is committed once answered");
    }
    assert_eq!(stored, 72, "each id stored once");
    assert_eq!(pending_jobs(store).await, 72, "one job per stored event");
}

async fn a_repeated_id_in_one_group_answers_the_first_outcome(store: &Store) {
    let answers = store.commit_group(&[&[record("d1")], &[record("d1"), record("d2")]]).await;
    assert_eq!(answers[0].as_deref().expect("stored"), [IngestResult::Stored]);
    assert_eq!(
        answers[1].as_deref().expect("stored"),
        [IngestResult::Duplicate { outcome: r#"{"id":"d1"}"#.into() }, IngestResult::Stored]
    );
}

async fn a_failing_request_leaves_the_others_of_its_group_committed(store: &Store) {
    let before = pending_jobs(store).await;
    let answers =
        store.commit_group(&[&[record("f1")], &[record("f2"), colliding("f3", "f1")], &[record("f4")]]).await;
    assert_eq!(answers[0].as_deref().expect("stored"), [IngestResult::Stored]);
    assert!(matches!(answers[1], Err(StoreError::Conflict(_))), "{:?}", answers[1]);
    assert_eq!(answers[2].as_deref().expect("stored"), [IngestResult::Stored]);
    for (id, stored) in [("f1", true), ("f2", false), ("f3", false), ("f4", true)] {
        assert_eq!(store.event_exists(id).await.expect("query"), stored, "{id}");
    }
    assert!(!store.notification_exists("n-f2").await.expect("query"), "nothing of the failed request");
    assert_eq!(pending_jobs(store).await, before + 2);

    // A request that failed does not count as a first: its id, again later in the group, is new.
    let answers = store.commit_group(&[&[colliding("r1", "f1")], &[record("r1")]]).await;
    assert!(matches!(answers[0], Err(StoreError::Conflict(_))), "{:?}", answers[0]);
    assert_eq!(answers[1].as_deref().expect("stored"), [IngestResult::Stored]);
}

async fn an_outage_answers_unavailable(store: &Store) {
    let queue = IngestQueue::new(store.clone());
    store.close().await;
    let answers = futures_join(&queue).await;
    for answer in answers {
        assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
    }
}

async fn futures_join(queue: &IngestQueue) -> Vec<Result<Vec<IngestResult>, StoreError>> {
    let (a, b) = tokio::join!(queue.ingest(vec![record("o1")]), queue.ingest(vec![record("o2")]));
    vec![a, b]
}

async fn exercise(store: &Store) {
    concurrent_requests_are_all_committed_and_answered(store).await;
    a_repeated_id_in_one_group_answers_the_first_outcome(store).await;
    a_failing_request_leaves_the_others_of_its_group_committed(store).await;
    an_outage_answers_unavailable(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit() {
    let (store, _dir) = sqlite().await;
    exercise(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit() {
    let Some(store) = postgres().await else { return };
    exercise(&store).await;
}
