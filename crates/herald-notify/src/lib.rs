//! The notification layer: the platform's domain events in; validated, routed to the catalog's
//! channels, stored with their broadcast jobs in one transaction, and delivered by queue workers
//! (critical lane first, retries with backoff, dead letters) through the configured driver.

mod amount;
mod audit;
mod broadcaster;
mod catalog;
mod driver;
mod fields;
mod lanes;
mod printable;
mod records;
mod service;
mod views;
mod webhooks;

pub use amount::{Amount, AmountError};
pub use audit::AuditDetail;
pub use broadcaster::{Campaign, Donation, NotificationBroadcaster, Payment, UserNotification};
pub use catalog::{
    plan, CatalogChannel, CatalogSettings, Plan, PlannedBroadcast, PlannedNotification, EVENT_TYPES,
};
pub use driver::{check_upstream, DeliveryError, Driver, LocalPublish, Published, PusherUpstream};
pub use fields::{parse_since, rfc3339, FieldError};
/// Milliseconds since the Unix epoch, the clock every record is written with.
pub use herald_store::now_ms;
/// The store's error: what a reader of `Records` answers 503 for.
pub use herald_store::StoreError;
pub use herald_store::{AuditKind, DeadLetters, Lane};
pub use lanes::PerLane;
pub use printable::{printable, printable_json};
pub use records::{AuditFilter, InboxQuery, Preference, Records};
pub use service::{
    backoff_ms, new_id, DeliveryCounters, EventOutcome, IngestError, Notifier, NotifySettings, CLAIM_BATCH,
    MAX_BATCH, MAX_FIELD_ERRORS, MAX_PAYLOAD_BYTES,
};
pub use views::{
    AuditEntry, AuditRecord, DeadLetterView, HistoryEvent, InboxItem, InboxPage, LaneView, PreferenceView,
    Preferences,
};
pub use webhooks::{
    WebhookCounters, WebhookSettings, WebhookTarget, Webhooks, LATENCY_BUCKETS_MS, WEBHOOK_JOB,
};
