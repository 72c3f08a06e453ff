//! A tenant: one configured Pusher app at run time, with its hub, its counters and its API rate
//! window. Every surface (sessions, the HTTP API, authorization, the notification driver) finds
//! tenants through `State`, but a tenant knows nothing of the server around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use herald_broker::{Broker, BrokerError, Message};
use herald_hub::{ChannelInfo, Hub, PresenceSnapshot, SocketKey};
use herald_protocol::{ChannelKind, ChannelName};

use crate::config::{AppConfig, WebhookKind};
use crate::subscription_count::{Decision, SubscriptionCounts};
use crate::webhooks::{removal_subject, AppWebhooks, Settle, WebhookEvent};

/// A closed socket's subscriptions, for the cluster and the webhooks to be told: each channel
/// with the presence user it joined as and what leaving it changed on this node.
#[derive(Debug)]
pub(crate) struct Departure {
    pub(crate) tenant: std::sync::Arc<Tenant>,
    pub(crate) socket_id: String,
    pub(crate) channels: Vec<(ChannelName, Option<std::sync::Arc<str>>, Change)>,
    /// The signed-in user whose last socket on this node this was.
    pub(crate) user_gone_here: Option<String>,
}

impl Departure {
    /// The socket's goodbye: it left its channels, its user may be offline, and its connection
    /// closed.
    pub(crate) async fn tell(self) {
        for (channel, user_id, change) in &self.channels {
            self.tenant.left(channel, &self.socket_id, user_id.as_deref(), *change).await;
        }
        if let Some(user_id) = &self.user_gone_here {
            self.tenant.user_gone_here(user_id).await;
        }
        self.tenant.connection_closed().await;
    }
}

/// What a subscription or an unsubscription changed: the channel's subscriptions after it, and
/// whether the presence user arrived (or left) with it. On this node (the hub's) or across the
/// cluster (Redis's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) subscription_count: u64,
    pub(crate) user_changed: bool,
}

impl From<&herald_hub::SubscribeOutcome<Utf8Bytes>> for Change {
    fn from(outcome: &herald_hub::SubscribeOutcome<Utf8Bytes>) -> Change {
        Change { subscription_count: outcome.subscription_count as u64, user_changed: outcome.first_for_user }
    }
}

impl From<herald_hub::Unsubscribed> for Change {
    fn from(left: herald_hub::Unsubscribed) -> Change {
        Change { subscription_count: left.subscription_count as u64, user_changed: left.last_for_user }
    }
}

/// Where a tenant's publications go besides this node's hub: nowhere (one node), or to every
/// other node through Redis. Every publisher goes through `Tenant::publish`, so none knows which.
#[derive(Debug, Clone)]
pub enum Fanout {
    Local,
    Redis(Broker),
}

/// A tenant: one configured Pusher app at run time (its hub, counters and API rate window).
/// The server as a whole is `app::App`.
#[derive(Debug)]
pub struct Tenant {
    pub config: AppConfig,
    pub hub: Hub<Utf8Bytes>,
    pub fanout: Fanout,
    /// Where this app's webhook events go; `None` without a receiver.
    pub(crate) webhooks: Option<AppWebhooks>,
    /// The pacing of `pusher_internal:subscription_count` (with `config.subscription_count`).
    counts: SubscriptionCounts,
    /// Start of the current one-second window and the API requests counted in it.
    api_window: Mutex<(Instant, u32)>,
    /// Sockets closed with 4100 because they did not read fast enough.
    pub slow_consumers: AtomicU64,
    /// Frames received from clients.
    pub messages_in: AtomicU64,
    /// Frames queued for sockets, and their bytes.
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Tenant {
    pub(crate) fn new(
        config: AppConfig,
        node: u64,
        outbox_capacity: usize,
        fanout: Fanout,
        webhooks: Option<AppWebhooks>,
    ) -> Tenant {
        let hub = Hub::with_outbox_capacity(node, outbox_capacity);
        Tenant {
            config,
            hub: match fanout {
                Fanout::Local => hub,
                Fanout::Redis(_) => hub.without_presence_announcements(),
            },
            fanout,
            webhooks,
            counts: SubscriptionCounts::default(),
            api_window: Mutex::new((Instant::now(), 0)),
            slow_consumers: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Publishes one event on one channel, on every node: to the other nodes first (so a
    /// Redis outage fails the publication before anything is delivered), then here.
    /// `except` is a socket id, on any node; `user_id` marks client events relayed on presence
    /// channels. Returns the sockets reached on this node.
    pub async fn publish(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<usize, BrokerError> {
        if let Fanout::Redis(broker) = &self.fanout {
            let message = Message::Event {
                channel: channel.as_str().to_owned(),
                event: event.to_owned(),
                data: data.to_owned(),
                except: except.map(str::to_owned),
                user_id: user_id.map(str::to_owned),
            };
            broker.publish(&self.config.id, &message).await?;
        }
        Ok(self.deliver(channel, event, data, except, user_id))
    }

    /// Relays a client event: to the other nodes when Redis takes it, and here whatever happens
    /// (nobody waits for an answer, and this node's subscribers can still have it).
    pub async fn relay(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &str,
        from: &str,
        user_id: Option<&str>,
    ) {
        match self.publish(channel, event, data, Some(from), user_id).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, channel = %channel, "client event reached this node only");
                self.deliver(channel, event, data, Some(from), user_id);
            }
        }
    }

    /// Delivers one event to this node's subscribers only: encoded once, queued for every
    /// subscriber but the excluded socket, counted.
    pub fn deliver(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
        user_id: Option<&str>,
    ) -> usize {
        let frame = Utf8Bytes::from(herald_protocol::encode_server_event(
            event,
            Some(channel.as_str()),
            data,
            user_id,
        ));
        let reached = self.hub.publish(channel, &frame, data, except);
        self.count_out(reached, &frame);
        reached
    }

    /// `pusher_internal:subscription_count` to this node's subscribers of `channel` only, counted
    /// (a count decided here, or by the node that changed it).
    pub(crate) fn deliver_count(&self, channel: &str, count: u64) {
        let frame = subscription_count_frame(channel, count);
        let reached = self.hub.send_to_channel(channel, &frame, None);
        self.count_out(reached, &frame);
    }

    /// Counts `frame` queued for `reached` sockets (the app's messages and bytes out).
    fn count_out(&self, reached: usize, frame: &Utf8Bytes) {
        self.messages_out.fetch_add(reached as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(reached as u64 * frame.len() as u64, Ordering::Relaxed);
    }

    /// Closes every connection of `user_id`, on every node, with 4009.
    pub async fn terminate_user(&self, user_id: &str) -> Result<usize, BrokerError> {
        if let Fanout::Redis(broker) = &self.fanout {
            broker.publish(&self.config.id, &Message::TerminateUser { user_id: user_id.to_owned() }).await?;
        }
        Ok(self.hub.terminate_user(user_id))
    }

    /// A channel's counts across the cluster, `None` when nobody is subscribed anywhere.
    pub async fn channel_info(&self, channel: &ChannelName) -> Result<Option<ChannelInfo>, BrokerError> {
        match &self.fanout {
            Fanout::Local => Ok(self.hub.channel_info(channel)),
            Fanout::Redis(broker) => {
                let counts = broker.channel(&self.config.id, channel.as_str()).await?;
                Ok(counts_info(channel.kind(), counts))
            }
        }
    }

    /// Every occupied channel whose name starts with `prefix`, with its counts across the
    /// cluster, sorted by name.
    pub async fn channels(&self, prefix: &str) -> Result<Vec<(ChannelName, ChannelInfo)>, BrokerError> {
        match &self.fanout {
            Fanout::Local => {
                let mut all = self.hub.channels();
                all.retain(|(channel, _)| channel.as_str().starts_with(prefix));
                Ok(all)
            }
            Fanout::Redis(broker) => {
                let prefix = (!prefix.is_empty()).then_some(prefix);
                let mut all: Vec<(ChannelName, ChannelInfo)> = broker
                    .channels(&self.config.id, prefix)
                    .await?
                    .into_iter()
                    .filter_map(|(name, counts)| {
                        let channel = ChannelName::parse(&name, usize::MAX).ok()?;
                        let info = counts_info(channel.kind(), counts)?;
                        Some((channel, info))
                    })
                    .collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(all)
            }
        }
    }

    /// The user ids present in a presence channel across the cluster, sorted.
    pub async fn presence_users(&self, channel: &ChannelName) -> Result<Vec<String>, BrokerError> {
        match &self.fanout {
            Fanout::Local => Ok(self.hub.presence_users(channel)),
            Fanout::Redis(broker) => {
                let mut ids: Vec<String> = broker
                    .members(&self.config.id, channel.as_str())
                    .await?
                    .into_iter()
                    .map(|(user_id, _)| user_id)
                    .collect();
                ids.sort();
                Ok(ids)
            }
        }
    }

    /// Whether this tenant is one of a cluster's (its sessions register with Redis).
    pub fn clustered(&self) -> bool {
        matches!(self.fanout, Fanout::Redis(_))
    }

    /// Whether subscriptions must be told (`joined`, `left`): to a cluster, to webhooks, or to
    /// subscription counting.
    pub fn observed(&self) -> bool {
        self.clustered() || self.webhooks.is_some() || self.config.subscription_count
    }

    /// A channel's subscriptions changed to `count` (this node's, or the cluster's): with
    /// subscription counting on, its subscribers hear `pusher_internal:subscription_count`, now
    /// or when the channel's pacing allows (see `subscription_count`). Not on presence channels
    /// (they have members) nor `#server-to-user-` channels.
    async fn count_changed(self: &Arc<Self>, channel: &ChannelName, count: u64) {
        if !self.config.subscription_count
            || matches!(channel.kind(), ChannelKind::Presence | ChannelKind::ServerToUser)
        {
            return;
        }
        match self.counts.changed(channel.as_str(), count, tokio::time::Instant::now()) {
            Decision::Send(count) => self.send_count(channel.as_str(), count).await,
            Decision::Wait => {}
            Decision::Later(due) => {
                let tenant = Arc::downgrade(self);
                let channel = channel.as_str().to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep_until(due).await;
                    let Some(tenant) = tenant.upgrade() else { return };
                    if let Some(count) = tenant.counts.due(&channel, tokio::time::Instant::now()) {
                        tenant.send_count(&channel, count).await;
                    }
                });
            }
        }
    }

    /// Sends `pusher_internal:subscription_count` to the channel's subscribers here, and to
    /// the other nodes' (which deliver it without deciding anything themselves). Never through
    /// `publish`: it is not a cache channel's last event.
    async fn send_count(&self, channel: &str, count: u64) {
        self.deliver_count(channel, count);
        if let Fanout::Redis(broker) = &self.fanout {
            let message =
                Message::SubscriptionCount { channel: channel.to_owned(), subscription_count: count };
            if let Err(error) = broker.publish(&self.config.id, &message).await {
                tracing::warn!(%error, channel, "subscription_count reached this node only");
            }
        }
    }

    /// Socket `key` signed in as `user_id`, watching `watchlist`: the user's watchers hear
    /// `online` when this is the user's first signed-in socket (on this node alone, or across
    /// the cluster). Returns the watched users that are online, for the socket's first
    /// `watchlist_events`.
    pub(crate) async fn signed_in(&self, key: SocketKey, user_id: &str, watchlist: &[String]) -> Vec<String> {
        let first_here = self.hub.sign_in(key, user_id);
        let online_here = self.hub.watch(key, watchlist);
        let Fanout::Redis(broker) = &self.fanout else { return online_here };
        let app = self.config.id.as_str();
        if first_here {
            match broker.user_online(app, user_id).await {
                Ok(true) => {
                    self.hub.tell_watchers(user_id, true);
                    let message = Message::UserOnline { user_id: user_id.to_owned() };
                    if let Err(error) = broker.publish(app, &message).await {
                        tracing::warn!(%error, "watchlist online reached this node only");
                    }
                }
                Ok(false) => {}
                // Registered with the rest of this node's state when Redis is back.
                Err(error) => tracing::warn!(%error, "sign-in not registered with the cluster yet"),
            }
        }
        if watchlist.is_empty() {
            return online_here;
        }
        match broker.online_users(app, watchlist).await {
            Ok(online) => {
                // In the watchlist's order, as on one node.
                let mut ordered: Vec<String> =
                    watchlist.iter().filter(|id| online.contains(*id)).cloned().collect();
                ordered.dedup();
                ordered
            }
            Err(error) => {
                tracing::warn!(%error, "watchlist of this node's users only");
                online_here
            }
        }
    }

    /// Socket `key` is no longer signed in as `user_id` (it signed in again as someone else).
    pub(crate) async fn signed_out(&self, key: SocketKey, user_id: &str) {
        if self.hub.unregister_user(key, user_id) {
            self.user_gone_here(user_id).await;
        }
    }

    /// `user_id`'s last signed-in socket on this node went. On one node the hub already told
    /// the watchers; in a cluster they hear `offline` when it was the user's last node.
    pub(crate) async fn user_gone_here(&self, user_id: &str) {
        let Fanout::Redis(broker) = &self.fanout else { return };
        let app = self.config.id.as_str();
        match broker.user_offline(app, user_id).await {
            Ok(true) => {
                self.hub.tell_watchers(user_id, false);
                let message = Message::UserOffline { user_id: user_id.to_owned() };
                if let Err(error) = broker.publish(app, &message).await {
                    tracing::warn!(%error, "watchlist offline reached this node only");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "sign-out not told to the cluster yet"),
        }
    }

    /// Emits a webhook event of `kind` when a receiver wants it; `event` builds it only then.
    pub(crate) fn webhook(&self, kind: WebhookKind, event: impl FnOnce() -> WebhookEvent) {
        if let Some(hooks) = self.webhooks.as_ref().filter(|hooks| hooks.wants(kind)) {
            hooks.emit(event(), None);
        }
    }

    /// The webhooks of an occupancy change, decided on `change` (this node's or the cluster's):
    /// `channel_occupied` then `member_added` on arrival, `member_removed` then `channel_vacated`
    /// on departure. In a cluster, a removal is filed in Redis and an arrival takes back one
    /// filed on any node, so a reload onto another node sends nothing either.
    async fn occupancy_webhooks(
        &self,
        channel: &ChannelName,
        user_id: Option<&str>,
        change: Change,
        arrived: bool,
    ) {
        let Some(hooks) = &self.webhooks else { return };
        let name = channel.as_str();
        let member = user_id.filter(|_| change.user_changed);
        if self.config.subscription_count && hooks.wants(WebhookKind::SubscriptionCount) {
            hooks.emit(WebhookEvent::subscription_count(name, change.subscription_count), None);
        }
        let emptied_or_filled =
            if arrived { change.subscription_count == 1 } else { change.subscription_count == 0 };
        let occupancy = emptied_or_filled && hooks.pairs(WebhookKind::ChannelOccupied);
        let membership = member.filter(|_| hooks.pairs(WebhookKind::MemberAdded));
        if arrived {
            if occupancy && self.announces_return(hooks, name).await {
                hooks.emit(WebhookEvent::channel(WebhookKind::ChannelOccupied, name), None);
            }
            if let Some(user_id) = membership {
                if self.announces_return(hooks, &removal_subject(name, Some(user_id))).await {
                    hooks.emit(WebhookEvent::member(WebhookKind::MemberAdded, name, user_id), None);
                }
            }
        } else {
            if let Some(user_id) = membership {
                let event = WebhookEvent::member(WebhookKind::MemberRemoved, name, user_id);
                self.file_removal(hooks, event, removal_subject(name, Some(user_id))).await;
            }
            if occupancy {
                let event = WebhookEvent::channel(WebhookKind::ChannelVacated, name);
                self.file_removal(hooks, event, removal_subject(name, None)).await;
            }
        }
    }

    /// A dead node's socket this node reaped from `channel` (`change`: the cluster's counts after
    /// it): its webhooks are this node's to send.
    pub(crate) async fn reaped(&self, channel: &ChannelName, user_id: Option<&str>, change: Change) {
        self.occupancy_webhooks(channel, user_id, change, false).await;
    }

    /// Whether an arrival is announced: in a cluster, not when it takes back a removal that is
    /// still waiting out its delay (on any node).
    async fn announces_return(&self, hooks: &AppWebhooks, subject: &str) -> bool {
        let Fanout::Redis(broker) = &self.fanout else { return true };
        match broker.undo_removal(&self.config.id, subject).await {
            Ok(true) => {
                hooks.suppressed();
                false
            }
            Ok(false) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot check pending webhook removals; announcing the arrival");
                true
            }
        }
    }

    /// Hands a removal to the dispatcher; in a cluster, filed in Redis first, to be settled when
    /// its delay is over.
    async fn file_removal(&self, hooks: &AppWebhooks, event: WebhookEvent, subject: String) {
        let settle = match &self.fanout {
            Fanout::Local => None,
            Fanout::Redis(broker) => {
                let token = format!("{:032x}", fastrand::u128(..));
                let app = self.config.id.as_str();
                match broker.file_removal(app, &subject, &token, hooks.removal_ttl()).await {
                    Ok(()) => Some(Settle { broker: broker.clone(), app: app.into(), subject, token }),
                    Err(error) => {
                        tracing::warn!(%error, "cannot file a webhook removal with the cluster; this node decides alone");
                        None
                    }
                }
            }
        };
        hooks.emit(event, settle);
    }

    /// A socket the hub just subscribed (`local`: what that changed here), told to the webhooks
    /// and the cluster: counted there, and for presence channels a user new to the whole cluster
    /// is announced (here and on the other nodes); webhooks follow the cluster's counts.
    /// Returns the cluster-wide members for `subscription_succeeded` (`None`: the hub's own),
    /// or `Err(max)` when the presence channel is full across the cluster (the subscription was
    /// taken back there; the caller takes it back from the hub).
    pub(crate) async fn joined(
        self: &Arc<Self>,
        channel: &ChannelName,
        socket_id: &str,
        member: Option<&(String, serde_json::Value)>,
        local: Change,
        max_presence_members: usize,
    ) -> Result<Option<PresenceSnapshot>, usize> {
        let user_id = member.map(|(user_id, _)| user_id.as_str());
        let Fanout::Redis(broker) = &self.fanout else {
            self.occupancy_webhooks(channel, user_id, local, true).await;
            self.count_changed(channel, local.subscription_count).await;
            return Ok(None);
        };
        let app = self.config.id.as_str();
        let info_text = member.map(|(_, info)| info.to_string());
        let as_member = member
            .zip(info_text.as_deref())
            .map(|((user_id, _), user_info)| herald_broker::Member { user_id: user_id.as_str(), user_info });
        let joined = match broker.join(app, channel.as_str(), socket_id, as_member).await {
            Ok(joined) => joined,
            Err(error) => {
                // Re-registered with the rest of this node's state when Redis is back.
                tracing::warn!(%error, channel = %channel, "subscription not registered with the cluster yet");
                return Ok(None);
            }
        };
        let Some((user_id, info)) = member else {
            let change = Change { subscription_count: joined.subscription_count, user_changed: false };
            self.occupancy_webhooks(channel, None, change, true).await;
            self.count_changed(channel, change.subscription_count).await;
            return Ok(None);
        };
        if joined.first_for_user && joined.user_count as usize > max_presence_members {
            let _ = broker.leave(app, channel.as_str(), socket_id, Some(user_id)).await;
            return Err(max_presence_members);
        }
        let change =
            Change { subscription_count: joined.subscription_count, user_changed: joined.first_for_user };
        self.occupancy_webhooks(channel, Some(user_id), change, true).await;
        if joined.first_for_user {
            let frame = herald_hub::member_added(channel.as_str(), user_id, info);
            self.hub.send_to_channel(channel.as_str(), &frame, Some(socket_id));
            let added = Message::MemberAdded {
                channel: channel.as_str().to_owned(),
                user_id: user_id.clone(),
                user_info: info_text.unwrap_or_default(),
            };
            if let Err(error) = broker.publish(app, &added).await {
                tracing::warn!(%error, channel = %channel, "member_added reached this node only");
            }
        }
        match broker.members(app, channel.as_str()).await {
            Ok(members) => {
                let mut ids = Vec::with_capacity(members.len());
                let mut hash = serde_json::Map::new();
                for (id, info) in members {
                    hash.insert(id.clone(), serde_json::from_str(&info).unwrap_or(serde_json::Value::Null));
                    ids.push(id);
                }
                ids.sort();
                Ok(Some(PresenceSnapshot { ids, hash }))
            }
            Err(error) => {
                tracing::warn!(%error, channel = %channel, "presence members of this node only");
                Ok(None)
            }
        }
    }

    /// A socket the hub just let go of (`local`: what that changed here), told to the webhooks
    /// and the cluster: a presence user whose last socket anywhere it was is announced gone
    /// (here and on the other nodes); webhooks follow the cluster's counts.
    pub(crate) async fn left(
        self: &Arc<Self>,
        channel: &ChannelName,
        socket_id: &str,
        user_id: Option<&str>,
        local: Change,
    ) {
        let Fanout::Redis(broker) = &self.fanout else {
            self.occupancy_webhooks(channel, user_id, local, false).await;
            self.count_changed(channel, local.subscription_count).await;
            return;
        };
        let app = self.config.id.as_str();
        let left = match broker.leave(app, channel.as_str(), socket_id, user_id).await {
            Ok(left) => left,
            Err(error) => {
                tracing::warn!(%error, channel = %channel, "unsubscription not told to the cluster yet");
                return;
            }
        };
        let change = Change { subscription_count: left.subscription_count, user_changed: left.last_for_user };
        self.occupancy_webhooks(channel, user_id, change, false).await;
        self.count_changed(channel, change.subscription_count).await;
        if let (true, Some(user_id)) = (left.last_for_user, user_id) {
            let frame = herald_hub::member_removed(channel.as_str(), user_id);
            self.hub.send_to_channel(channel.as_str(), &frame, None);
            let removed =
                Message::MemberRemoved { channel: channel.as_str().to_owned(), user_id: user_id.to_owned() };
            if let Err(error) = broker.publish(app, &removed).await {
                tracing::warn!(%error, channel = %channel, "member_removed reached this node only");
            }
        }
    }

    /// A new connection, counted against the app's `max_connections` across the cluster;
    /// false when the cluster is full (this node's own count is the hub's). A Redis outage
    /// leaves the node's own limit in force.
    pub async fn admit_connection(&self) -> bool {
        let (Fanout::Redis(broker), max) = (&self.fanout, self.config.max_connections) else { return true };
        if max == 0 {
            return true;
        }
        broker.connection_opened(&self.config.id, Some(max as u64)).await.unwrap_or(true)
    }

    /// A connection admitted by `admit_connection` closed.
    pub async fn connection_closed(&self) {
        if let (Fanout::Redis(broker), 1..) = (&self.fanout, self.config.max_connections) {
            let _ = broker.connection_closed(&self.config.id).await;
        }
    }

    /// Counts one API request across the cluster; false when the app is over
    /// `max_api_requests_per_second`. A Redis outage leaves this node's own window in force.
    pub async fn admit_api_call(&self) -> bool {
        let limit = self.config.max_api_requests_per_second;
        match &self.fanout {
            Fanout::Redis(broker) if limit > 0 => {
                match broker.admit_api_request(&self.config.id, limit).await {
                    Ok(admitted) => admitted,
                    Err(_) => self.admit_api_request(),
                }
            }
            _ => self.admit_api_request(),
        }
    }

    /// Counts one API request in this node's window; false when the app is over
    /// `max_api_requests_per_second`.
    pub fn admit_api_request(&self) -> bool {
        let limit = self.config.max_api_requests_per_second;
        if limit == 0 {
            return true;
        }
        let mut window = self.api_window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        window.1 += 1;
        window.1 <= limit
    }
}

/// `pusher_internal:subscription_count` on `channel`: `{"subscription_count": N}`.
fn subscription_count_frame(channel: &str, count: u64) -> Utf8Bytes {
    let data = serde_json::json!({ "subscription_count": count }).to_string();
    Utf8Bytes::from(herald_protocol::encode_server_event(
        "pusher_internal:subscription_count",
        Some(channel),
        &data,
        None,
    ))
}

/// The cluster's counts as the HTTP API reports them; `None` for an empty channel.
fn counts_info(kind: ChannelKind, counts: herald_broker::ChannelCounts) -> Option<ChannelInfo> {
    (counts.subscription_count > 0).then(|| ChannelInfo {
        subscription_count: counts.subscription_count as usize,
        user_count: (kind == ChannelKind::Presence).then_some(counts.user_count as usize),
    })
}
