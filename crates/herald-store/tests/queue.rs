//! The notification tables on both backends: ingest and idempotency, the queue, dead letters,
//! the inbox, preferences, channel history and the audit trail.

use herald_store::{
    AuditFilter, DeadLetters, EventRecord, IngestResult, Lane, Lanes, NewAudit, NewBroadcast, NewEvent,
    NewNotification, Preference, Store,
};

mod support;

use support::{postgres, sqlite};

fn record(id: &str, lane: Lane, user: Option<&str>) -> EventRecord {
    EventRecord {
        event: NewEvent {
            id: id.into(),
            event_type: "notification.created".into(),
            occurred_at: 1,
            payload: "{}".into(),
            status: "accepted".into(),
        },
        notifications: user
            .map(|user| NewNotification {
                id: format!("n-{id}"),
                user_id: user.into(),
                notification_type: "receipt".into(),
                title: "Title".into(),
                message: "Message".into(),
                priority: "normal".into(),
                data: "{}".into(),
                action_url: None,
            })
            .into_iter()
            .collect(),
        broadcasts: vec![NewBroadcast {
            id: format!("b-{id}"),
            event_name: "notification.created".into(),
            channels: vec!["user.notifications.1".into(), "odd,name".into()],
            payload: format!(r#"{{"id":"b-{id}"}}"#),
            lane,
        }],
        audits: vec![NewAudit {
            broadcast_id: None,
            kind: herald_store::AuditKind::Received,
            detail: "{}".into(),
        }],
        outcome: format!(r#"{{"id":"{id}"}}"#),
        campaign: Some(("c1".into(), "o1".into())),
    }
}

async fn exercise(store: &Store) {
    // Ingest, then the same ids again: duplicates answer the original outcome, store nothing.
    let first = store
        .ingest(&[record("e1", Lane::Normal, Some("1")), record("e2", Lane::Critical, None)])
        .await
        .expect("ingest");
    assert_eq!(first, vec![IngestResult::Stored, IngestResult::Stored]);
    let again = store.ingest(&[record("e1", Lane::Normal, Some("1"))]).await.expect("ingest");
    assert_eq!(again, vec![IngestResult::Duplicate { outcome: r#"{"id":"e1"}"#.into() }]);

    // A failing batch stores nothing: the second record repeats a notification id.
    let mut broken = record("e3", Lane::Normal, Some("1"));
    broken.notifications[0].id = "n-e1".into();
    assert!(store.ingest(&[record("e4", Lane::Normal, None), broken]).await.is_err());
    assert_eq!(
        store.ingest(&[record("e4", Lane::Normal, None)]).await.expect("ingest"),
        vec![IngestResult::Stored]
    );

    assert_eq!(store.campaign_organization("c1").await.expect("lookup").as_deref(), Some("o1"));
    assert!(store.notification_exists("n-e1").await.expect("query"));
    assert!(store.notification_exists("b-e2").await.expect("query"), "broadcast ids count too");
    assert!(!store.notification_exists("n-zz").await.expect("query"));
    assert!(store.event_exists("e1").await.expect("query"));
    assert!(!store.event_exists("zz").await.expect("query"));

    // Critical first, then normal; channel lists survive any character.
    let jobs = store.claim(Lanes::Broadcasts, 10, 30_000).await.expect("claim");
    assert_eq!(jobs.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), vec!["b-e2", "b-e1", "b-e4"]);
    assert_eq!(jobs[0].channels, vec!["user.notifications.1", "odd,name"]);
    assert_eq!(jobs[0].attempts, 1);
    assert!(
        store.claim(Lanes::Broadcasts, 10, 30_000).await.expect("claim").is_empty(),
        "leased jobs are not claimed twice"
    );
    let stats = store.lane_stats().await.expect("stats");
    assert_eq!(stats.iter().map(|s| s.pending).sum::<i64>(), 3);

    assert!(store.complete("b-e2", 1, r#"{"ms":1}"#).await.expect("complete"));
    assert!(store.retry_later("b-e1", 1, 0, "upstream 503", "{}").await.expect("retry"));
    assert!(store.dead_letter("b-e4", 1, "upstream 400", "{}").await.expect("dead"));
    let retried = store.claim(Lanes::Broadcasts, 10, 30_000).await.expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id.as_str(), retried[0].attempts), ("b-e1", 2));
    assert!(store.complete("b-e1", 2, "{}").await.expect("complete"));

    let letters = store.dead_letters(10).await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].last_error, "upstream 400");
    assert_eq!(store.replay_dead_letters(herald_store::DeadLetters::All).await.expect("replay"), 1);
    assert_eq!(store.dead_letter_count().await.expect("count"), 0);
    let replayed = store.claim(Lanes::Broadcasts, 10, 30_000).await.expect("claim");
    assert_eq!(replayed[0].id, "b-e4");
    assert!(store.dead_letter("b-e4", replayed[0].attempts, "again", "{}").await.expect("dead"));
    // An empty id names no dead letter (never "all of them").
    assert_eq!(store.replay_dead_letters(herald_store::DeadLetters::One("")).await.expect("replay"), 0);
    assert_eq!(store.purge_dead_letters(herald_store::DeadLetters::One("")).await.expect("purge"), 0);
    assert_eq!(store.dead_letter_count().await.expect("count"), 1);
    assert_eq!(store.purge_dead_letters(herald_store::DeadLetters::One("b-e4")).await.expect("purge"), 1);
    assert!(store.claim(Lanes::Broadcasts, 10, 30_000).await.expect("claim").is_empty());

    // Inbox pages, catch-up and read marks.
    for index in 0..5 {
        store.ingest(&[record(&format!("i{index}"), Lane::Normal, Some("7"))]).await.expect("ingest");
    }
    let page = store.inbox("7", false, None, None, 2).await.expect("inbox");
    assert_eq!(page.items.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["n-i4", "n-i3"]);
    let next = store.inbox("7", false, page.next_cursor, None, 10).await.expect("inbox");
    assert_eq!(next.items.len(), 3);
    assert_eq!(next.next_cursor, None);
    let missed = store.inbox("7", false, None, Some("n-i2"), 10).await.expect("inbox");
    assert_eq!(missed.items.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["n-i3", "n-i4"]);
    assert!(store.mark_read("7", "n-i4").await.expect("read"));
    assert!(!store.mark_read("8", "n-i3").await.expect("read"), "other users' notifications are untouched");
    assert_eq!(store.inbox("7", true, None, None, 10).await.expect("inbox").items.len(), 4);
    assert_eq!(store.mark_all_read("7").await.expect("all"), 4);
    assert!(store.inbox("7", true, None, None, 10).await.expect("inbox").items.is_empty());

    // Preferences.
    assert_eq!(
        store.preference("7", "receipt").await.expect("pref"),
        Preference { notification_type: "receipt".into(), realtime: true, in_app: true }
    );
    let muted = Preference { notification_type: "receipt".into(), realtime: false, in_app: true };
    store.set_preferences("7", std::slice::from_ref(&muted)).await.expect("set");
    assert_eq!(store.preference("7", "receipt").await.expect("pref"), muted);
    assert_eq!(store.preferences("7").await.expect("prefs"), vec![muted]);

    // Channel history and audit.
    let history = store.channel_events("user.notifications.1", 0, 100).await.expect("history");
    assert_eq!(history.len(), 8);
    let tail = store.channel_events("user.notifications.1", history[5].seq, 100).await.expect("history");
    assert_eq!(tail.len(), 2);
    let delivered = store
        .audit(&AuditFilter { kind: Some(herald_store::AuditKind::Delivered), ..AuditFilter::default() })
        .await
        .expect("audit");
    assert_eq!(delivered.len(), 2);
    let for_e1 =
        store.audit(&AuditFilter { event_id: "e1".into(), ..AuditFilter::default() }).await.expect("audit");
    let kinds: Vec<&str> = for_e1.iter().rev().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(kinds, vec!["received", "duplicate", "attempt_failed", "delivered"]);
}

#[tokio::test]
async fn sqlite_notification_tables() {
    let (store, _dir) = sqlite().await;
    exercise(&store).await;
}

#[tokio::test]
async fn postgres_notification_tables() {
    let Some(store) = postgres().await else { return };
    exercise(&store).await;
}

async fn leases_released(store: &Store) {
    store.ingest(&[record("x", Lane::Normal, None)]).await.expect("ingest");
    assert_eq!(store.claim(Lanes::Broadcasts, 1, 60_000).await.expect("claim").len(), 1);
    assert!(store.claim(Lanes::Broadcasts, 1, 60_000).await.expect("claim").is_empty());
    assert_eq!(store.release_leases().await.expect("release"), 1);
    assert_eq!(store.claim(Lanes::Broadcasts, 1, 60_000).await.expect("claim")[0].attempts, 2);
}

#[tokio::test]
async fn sqlite_release_leases_makes_claimed_jobs_due_again() {
    let (store, _dir) = sqlite().await;
    leases_released(&store).await;
}

#[tokio::test]
async fn postgres_release_leases_makes_claimed_jobs_due_again() {
    let Some(store) = postgres().await else { return };
    leases_released(&store).await;
}

/// A worker whose lease ran out (a stall) finishes after another worker claimed the job again:
/// only the current attempt's outcome is recorded, so a stale failure cannot dead-letter a job
/// the other attempt delivered, and the audit has one outcome.
async fn stale_outcomes_are_not_recorded(store: &Store) {
    store.ingest(&[record("s", Lane::Normal, None)]).await.expect("ingest");
    let first = store.claim(Lanes::Broadcasts, 1, 0).await.expect("claim").remove(0);
    let second = store
        .claim(Lanes::Broadcasts, 1, 60_000)
        .await
        .expect("claim again once the lease ran out")
        .remove(0);
    assert_eq!((first.attempts, second.attempts), (1, 2));
    assert!(store.complete(&second.id, second.attempts, "{}").await.expect("complete"));
    assert!(!store.dead_letter(&first.id, first.attempts, "stalled", "{}").await.expect("stale dead letter"));
    assert!(!store.retry_later(&first.id, first.attempts, 0, "stalled", "{}").await.expect("stale retry"));
    assert!(!store.complete(&first.id, first.attempts, "{}").await.expect("stale complete"));
    assert_eq!(store.dead_letter_count().await.expect("count"), 0);
    let filter = AuditFilter { event_id: "s".into(), ..Default::default() };
    let outcomes: Vec<_> = store
        .audit(&filter)
        .await
        .expect("audit")
        .into_iter()
        .filter(|entry| {
            matches!(
                entry.kind,
                herald_store::AuditKind::Delivered
                    | herald_store::AuditKind::DeadLettered
                    | herald_store::AuditKind::AttemptFailed
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(
        store.claim(Lanes::Broadcasts, 1, 60_000).await.expect("claim").is_empty(),
        "delivered stays delivered"
    );
}

#[tokio::test]
async fn sqlite_stale_outcomes_are_not_recorded() {
    let (store, _dir) = sqlite().await;
    stale_outcomes_are_not_recorded(&store).await;
}

#[tokio::test]
async fn postgres_stale_outcomes_are_not_recorded() {
    let Some(store) = postgres().await else { return };
    stale_outcomes_are_not_recorded(&store).await;
}

/// Webhook jobs go to their own lane: broadcast workers never claim them, webhook workers claim
/// nothing else, and a dead webhook is listed, replayed and purged like any dead letter.
async fn webhooks_have_a_lane_of_their_own(store: &Store) {
    store.ingest(&[record("w", Lane::Normal, None)]).await.expect("ingest");
    let job = |n: u32| NewBroadcast {
        id: format!("hook-{n}"),
        event_name: "webhook".into(),
        channels: vec!["http://127.0.0.1:9/hook".into()],
        payload: format!(r#"{{"time_ms":{n},"events":[]}}"#),
        lane: Lane::Webhooks,
    };
    store.enqueue("webhook:app-1", &[job(1), job(2)]).await.expect("enqueue");
    let stats = store.lane_stats().await.expect("stats");
    let pending: Vec<(Lane, i64)> = stats.iter().map(|lane| (lane.lane, lane.pending)).collect();
    assert_eq!(pending, [(Lane::Critical, 0), (Lane::Normal, 1), (Lane::Webhooks, 2)]);

    let broadcasts = store.claim(Lanes::Broadcasts, 10, 60_000).await.expect("claim");
    assert_eq!(broadcasts.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["b-w"]);
    let hooks = store.claim(Lanes::Webhooks, 10, 60_000).await.expect("claim");
    let ids: Vec<&str> = hooks.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, ["hook-1", "hook-2"]);
    assert_eq!((hooks[0].lane, hooks[0].event_id.as_str()), (Lane::Webhooks, "webhook:app-1"));
    assert_eq!(hooks[0].channels, ["http://127.0.0.1:9/hook"]);

    assert!(store.dead_letter("hook-1", 1, "HTTP 410", "{}").await.expect("dead letter"));
    let letters = store.dead_letters(10).await.expect("list");
    assert_eq!((letters[0].broadcast_id.as_str(), letters[0].event_name.as_str()), ("hook-1", "webhook"));
    assert_eq!(store.replay_dead_letters(DeadLetters::One("hook-1")).await.expect("replay"), 1);
    assert_eq!(store.claim(Lanes::Webhooks, 10, 60_000).await.expect("claim")[0].id, "hook-1");

    // A receiver that has its share of deliveries is passed over; others' jobs are claimed.
    let other =
        NewBroadcast { id: "hook-9".into(), channels: vec!["http://127.0.0.1:9/other".into()], ..job(9) };
    store.enqueue("webhook:app-2", &[job(4), other]).await.expect("enqueue");
    let busy = ["http://127.0.0.1:9/hook".to_owned()];
    let claimed = store.claim_skipping(Lanes::Webhooks, 10, 60_000, &busy).await.expect("claim");
    assert_eq!(claimed.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["hook-9"]);
    assert_eq!(store.claim(Lanes::Webhooks, 10, 60_000).await.expect("claim")[0].id, "hook-4");

    // A batch that collides with a stored id stores none of its jobs.
    assert!(store.enqueue("webhook:app-1", &[job(3), job(2)]).await.is_err());
    assert!(store.claim(Lanes::Webhooks, 10, 60_000).await.expect("claim").is_empty());
}

#[tokio::test]
async fn sqlite_webhooks_have_a_lane_of_their_own() {
    let (store, _dir) = sqlite().await;
    webhooks_have_a_lane_of_their_own(&store).await;
}

#[tokio::test]
async fn postgres_webhooks_have_a_lane_of_their_own() {
    let Some(store) = postgres().await else { return };
    webhooks_have_a_lane_of_their_own(&store).await;
}
