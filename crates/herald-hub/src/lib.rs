//! One node's registry for one app: sockets, channel subscriptions, presence members, signed-in
//! users and cache-channel last events, with fan-out into bounded per-socket outboxes.
//!
//! The hub never awaits while holding a lock. It hands shared bytes to each socket without
//! waiting: written straight to the socket through the writer its idle session lends
//! (`Direct`), or else queued in its bounded outbox; a full outbox marks a slow consumer that its
//! session then closes (4100).
//! It knows nothing of axum, sqlx or redis.

mod registry;
mod socket;

pub use registry::{
    member_added, member_removed, watchlist_event, ChannelInfo, Hub, HubStats, PresenceSnapshot,
    Registration, SubscribeError, SubscribeOutcome, Unsubscribed,
};
pub use socket::{Direct, Frame, Outbox, SocketHandle, SocketKey, OUTBOX_CAPACITY};
