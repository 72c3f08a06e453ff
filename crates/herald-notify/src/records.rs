//! The notification layer's records, read (and repaired) by their readers: the users' inbox and
//! preferences, channel history, the audit trail, dead letters and the queue's lanes. The server's
//! surfaces and the `herald` command go through `Records`, never the store, and get the shapes of
//! `views.rs` back: the same serializable value wherever it is shown.

use herald_store::{Store, StoreError};

use crate::views::{AuditEntry, DeadLetterView, HistoryEvent, InboxItem, InboxPage, LaneView, Preferences};
use crate::{DeadLetters, PerLane};

pub use herald_store::{AuditFilter, Preference};

/// Which page of an inbox: newest first below `cursor`, or everything newer than the
/// notification `after`, oldest first (catch-up after being offline).
#[derive(Debug, Clone, Copy, Default)]
pub struct InboxQuery<'a> {
    pub unread_only: bool,
    pub cursor: Option<i64>,
    pub after: Option<&'a str>,
    pub limit: i64,
}

/// The stored records of the notification layer (a handle: cheap to clone).
#[derive(Debug, Clone)]
pub struct Records {
    store: Store,
}

impl Records {
    /// Opens (and migrates) the database at `url`: `sqlite://FILE` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Records, StoreError> {
        Ok(Records { store: Store::connect(url).await? })
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.store.backend() {
            herald_store::Backend::Sqlite => "sqlite",
            herald_store::Backend::Postgres => "postgres",
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Waits for the open connections to close.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// A page of `user_id`'s inbox.
    pub async fn inbox(&self, user_id: &str, query: InboxQuery<'_>) -> Result<InboxPage, StoreError> {
        let page =
            self.store.inbox(user_id, query.unread_only, query.cursor, query.after, query.limit).await?;
        Ok(InboxPage {
            data: page.items.iter().map(InboxItem::new).collect(),
            next_cursor: page.next_cursor.map(|cursor| cursor.to_string()),
        })
    }

    /// Marks one notification read; false when the user has no such notification.
    pub async fn mark_read(&self, user_id: &str, notification_id: &str) -> Result<bool, StoreError> {
        self.store.mark_read(user_id, notification_id).await
    }

    /// Marks every notification of the user read; how many changed.
    pub async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError> {
        self.store.mark_all_read(user_id).await
    }

    /// The user's stored preferences (types not listed are on).
    pub async fn preferences(&self, user_id: &str) -> Result<Preferences, StoreError> {
        Ok(Preferences::new(&self.store.preferences(user_id).await?))
    }

    /// Replaces the listed types' preferences and answers what is stored now.
    pub async fn set_preferences(
        &self,
        user_id: &str,
        preferences: &[Preference],
    ) -> Result<Preferences, StoreError> {
        self.store.set_preferences(user_id, preferences).await?;
        self.preferences(user_id).await
    }

    /// What a catalog channel (logical name) was sent after `after`, oldest first.
    pub async fn channel_history(
        &self,
        logical_channel: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let events = self.store.channel_events(logical_channel, after, limit).await?;
        Ok(events.iter().map(HistoryEvent::new).collect())
    }

    /// Audit entries matching `filter`, newest first, with their details decoded.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.store.audit(filter).await?.into_iter().map(AuditEntry::new).collect())
    }

    /// Dead letters, newest first, with their channels as clients see them
    /// (`admin_channels_public`: `[channels] admin_visibility = "public"`).
    pub async fn dead_letters(
        &self,
        limit: i64,
        admin_channels_public: bool,
    ) -> Result<Vec<DeadLetterView>, StoreError> {
        let letters = self.store.dead_letters(limit).await?;
        Ok(letters.iter().map(|letter| DeadLetterView::new(letter, admin_channels_public)).collect())
    }

    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        self.store.dead_letter_count().await
    }

    /// Puts dead letters back in the queue; how many.
    pub async fn replay(&self, which: DeadLetters<'_>) -> Result<u64, StoreError> {
        self.store.replay_dead_letters(which).await
    }

    /// Forgets dead letters for good; how many.
    pub async fn purge(&self, which: DeadLetters<'_>) -> Result<u64, StoreError> {
        self.store.purge_dead_letters(which).await
    }

    /// Each lane's backlog now.
    pub async fn lanes(&self) -> Result<PerLane<LaneView>, StoreError> {
        let now = herald_store::now_ms();
        let mut lanes = PerLane::<LaneView>::default();
        for stats in self.store.lane_stats().await? {
            *lanes.get_mut(stats.lane) = LaneView {
                pending: stats.pending,
                oldest_age_secs: stats.oldest_created_at.map(|at| (now - at).max(0) as f64 / 1000.0),
            };
        }
        Ok(lanes)
    }

    /// The organization that owns a campaign, as learnt from the campaigns' events.
    pub async fn campaign_owner(&self, campaign_id: &str) -> Result<Option<String>, StoreError> {
        self.store.campaign_organization(campaign_id).await
    }
}
