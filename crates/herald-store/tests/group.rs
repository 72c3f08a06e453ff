//! Group commit on both backends: concurrent requests share transactions, yet each is answered
//! as if it had been stored alone.

use std::sync::Arc;

use herald_store::{
    AuditFilter, AuditKind, Delivered, EventRecord, IngestQueue, IngestResult, Lane, Lanes, NewAudit,
    NewBroadcast, NewEvent, NewNotification, Store, StoreError,
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

/// More rows than one multi-row statement takes (300 events: statements of 256, 32, 8 and 4
/// rows), with a repeat inside the group and an id stored before: every table gets every row once.
async fn a_large_group_is_stored_whole(store: &Store) {
    store.ingest(&[record("big-7")]).await.expect("stored before");
    let mut batch: Vec<EventRecord> = (0..300).map(|n| record(&format!("big-{n}"))).collect();
    for record in &mut batch {
        record.audits.push(NewAudit { broadcast_id: None, kind: AuditKind::Received, detail: "{}".into() });
        record.broadcasts[0].channels.push("admin.security".into());
    }
    batch.push(record("big-42"));
    let before = pending_jobs(store).await;
    let results = store.ingest(&batch).await.expect("stored");
    assert_eq!(results.len(), 301);
    for (index, result) in results.iter().enumerate() {
        let repeat = index == 7 || index == 300;
        assert_eq!(matches!(result, IngestResult::Duplicate { .. }), repeat, "{index}: {result:?}");
    }
    assert_eq!(results[300], IngestResult::Duplicate { outcome: r#"{"id":"big-42"}"#.into() });
    assert_eq!(pending_jobs(store).await, before + 299);
    assert!(store.notification_exists("n-big-299").await.expect("query"));
    for channel in ["user.notifications.1", "admin.security"] {
        let history = store.channel_events(channel, 0, 1000).await.expect("history");
        let mine = history.iter().filter(|event| event.broadcast_id.starts_with("b-big-")).count();
        assert_eq!(mine, if channel == "admin.security" { 299 } else { 300 }, "{channel}");
    }
    let filter = AuditFilter { event_id: "big-42".into(), ..Default::default() };
    let kinds: Vec<AuditKind> = store.audit(&filter).await.expect("audit").iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [AuditKind::Duplicate, AuditKind::Received], "newest first");

    // Their deliveries, recorded set-based: a stale attempt among them records nothing.
    let jobs = store.claim(Lanes::Broadcasts, 1000, 60_000).await.expect("claim");
    assert!(jobs.len() >= 299, "{}", jobs.len());
    let mut delivered: Vec<Delivered> = jobs
        .iter()
        .map(|job| Delivered { job_id: job.id.clone(), attempt: job.attempts, detail: r#"{"n":1}"#.into() })
        .collect();
    delivered[3].attempt += 1;
    let recorded = store.complete_all(&delivered).await.expect("recorded");
    assert_eq!(recorded.iter().filter(|recorded| !**recorded).count(), 1);
    assert!(!recorded[3]);
    assert_eq!(pending_jobs(store).await, 1, "only the stale one is left");
    let filter =
        AuditFilter { event_id: "big-42".into(), kind: Some(AuditKind::Delivered), ..Default::default() };
    let entries = store.audit(&filter).await.expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].broadcast_id.as_deref(), entries[0].detail.as_str()),
        (Some("b-big-42"), r#"{"n":1}"#)
    );
    assert!(store.complete_all(&[]).await.expect("nothing").is_empty());
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
    a_large_group_is_stored_whole(store).await;
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
