//! Cluster-wide subscriptions and presence: `join`, `leave`, `members`, `channel`, `channels`.
//! One Lua script per change, on the three hashes of `{prefix:app:channel}`; the per-app index
//! of occupied channels and the per-node registrations live in other slots and are kept
//! consistent by ordering (registration first, index after; see `unindex`).

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};

use crate::broker::{error_chain, Inner};
use crate::keys::check_name;
use crate::{Broker, BrokerError};

/// A presence channel member: the user and their info (JSON text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The user id.
    pub user_id: &'a str,
    /// The user info, JSON text as the auth endpoint signed it.
    pub user_info: &'a str,
}

/// The outcome of [`Broker::join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The user had no socket in the channel anywhere before: announce `member_added`.
    pub first_for_user: bool,
    /// Sockets subscribed to the channel, cluster-wide, after the join.
    pub subscription_count: u64,
    /// Distinct users in the channel, cluster-wide, after the join.
    pub user_count: u64,
}

/// The outcome of [`Broker::leave`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Left {
    /// That was the user's last socket in the channel anywhere: announce `member_removed`.
    pub last_for_user: bool,
    /// Sockets subscribed to the channel, cluster-wide, after the leave.
    pub subscription_count: u64,
    /// Distinct users in the channel, cluster-wide, after the leave.
    pub user_count: u64,
}

/// A channel's cluster-wide counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Subscribed sockets.
    pub subscription_count: u64,
    /// Distinct presence users.
    pub user_count: u64,
}

/// One local subscription, as [`Broker::restore`] re-registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The app id.
    pub app: String,
    /// The channel.
    pub channel: String,
    /// The socket id.
    pub socket_id: String,
    /// `(user_id, user_info)` on presence channels.
    pub member: Option<(String, String)>,
}

/// What the leave script found, for reaping and restore as well as `leave`.
pub(crate) struct Removal {
    pub(crate) left: Left,
    /// The user the socket belonged to ("" for none or when nothing was found).
    pub(crate) user_id: String,
}

/// The field of a registration in a node's registrations hash.
pub(crate) fn registration_field(app: &str, channel: &str, socket_id: &str) -> String {
    serde_json::json!([app, channel, socket_id]).to_string()
}

/// Reads a registration field back: (app, channel, socket id).
pub(crate) fn parse_registration_field(field: &str) -> Option<(String, String, String)> {
    serde_json::from_str(field).ok()
}

impl Broker {
    /// Subscribes `socket_id` (on this node) to `channel`, cluster-wide; with `member` on a
    /// presence channel. Joining twice is a no-op.
    pub async fn join(
        &self,
        app: &str,
        channel: &str,
        socket_id: &str,
        member: Option<Member<'_>>,
    ) -> Result<Joined, BrokerError> {
        self.inner.join(app, channel, socket_id, member).await
    }

    /// Unsubscribes `socket_id` (on this node) from `channel`. `user_id` is not needed: the
    /// socket's entry names its user (it is kept so callers can state what they expect).
    pub async fn leave(
        &self,
        app: &str,
        channel: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) -> Result<Left, BrokerError> {
        check_name("app", app)?;
        check_name("channel", channel)?;
        let inner = &self.inner;
        let removal = inner.remove(&inner.config.node_id, app, channel, socket_id).await?;
        if let Some(expected) = user_id {
            if !removal.user_id.is_empty() && removal.user_id != expected {
                tracing::warn!(channel, "leave named another user than the one that joined");
            }
        }
        // The leave is done: a registration left behind by a failure here is harmless (the
        // leave script finds nothing when reaping or restore runs it again), while an error
        // would make the caller retry and lose `last_for_user`.
        let field = registration_field(app, channel, socket_id);
        let registrations = inner.keys.registrations(&inner.config.node_id);
        if let Err(error) = inner.query::<()>("HDEL", redis::cmd("HDEL").arg(registrations).arg(field)).await
        {
            tracing::warn!(error = %error_chain(&error), "registration not removed after leave");
        }
        Ok(removal.left)
    }

    /// A presence channel's members, cluster-wide: `(user_id, user_info)` sorted by user id.
    pub async fn members(&self, app: &str, channel: &str) -> Result<Vec<(String, String)>, BrokerError> {
        check_name("app", app)?;
        check_name("channel", channel)?;
        let keys = self.inner.keys.channel(app, channel);
        let members: HashMap<String, String> =
            self.inner.query("HGETALL", redis::cmd("HGETALL").arg(keys.info)).await?;
        let mut members: Vec<(String, String)> = members.into_iter().collect();
        members.sort();
        Ok(members)
    }

    /// A channel's cluster-wide counts (zero for an empty channel).
    pub async fn channel(&self, app: &str, channel: &str) -> Result<ChannelCounts, BrokerError> {
        check_name("app", app)?;
        check_name("channel", channel)?;
        self.inner.counts(app, channel).await
    }

    /// The app's occupied channels, cluster-wide, whose name starts with `prefix`, sorted.
    pub async fn channels(
        &self,
        app: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, ChannelCounts)>, BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        let names: Vec<String> =
            inner.query("SMEMBERS", redis::cmd("SMEMBERS").arg(inner.keys.channel_index(app))).await?;
        let wanted = names.into_iter().filter(|name| prefix.is_none_or(|prefix| name.starts_with(prefix)));
        let counted: Vec<Result<(String, ChannelCounts), BrokerError>> = stream::iter(wanted)
            .map(|name| async move {
                let counts = inner.counts(app, &name).await?;
                Ok((name, counts))
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut channels = Vec::new();
        for entry in counted {
            let (name, counts) = entry?;
            if counts.subscription_count > 0 {
                channels.push((name, counts));
            }
        }
        channels.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(channels)
    }
}

impl Inner {
    pub(crate) async fn join(
        &self,
        app: &str,
        channel: &str,
        socket_id: &str,
        member: Option<crate::Member<'_>>,
    ) -> Result<Joined, BrokerError> {
        check_name("app", app)?;
        check_name("channel", channel)?;
        let node = &self.config.node_id;
        let (user_id, user_info) = member.map_or(("", ""), |member| (member.user_id, member.user_info));
        // The registration first: if this node dies right after, the reaper still finds it.
        let field = registration_field(app, channel, socket_id);
        self.query::<()>(
            "HSET",
            redis::cmd("HSET").arg(self.keys.registrations(node)).arg(field).arg(user_id),
        )
        .await?;
        let keys = self.keys.channel(app, channel);
        let (first, subscription_count, user_count): (u8, u64, u64) = self
            .invoke(
                "join script",
                self.scripts
                    .join
                    .key(&keys.sockets)
                    .key(&keys.users)
                    .key(&keys.info)
                    .arg(format!("{node}/{socket_id}"))
                    .arg(user_id)
                    .arg(user_info),
            )
            .await?;
        // The index after the script, so that a concurrent `unindex` either sees this socket or
        // runs before this SADD. The join is done either way: failing it now would make the
        // caller retry and lose `first_for_user`, so a missed index entry is only logged.
        let index = self.keys.channel_index(app);
        if let Err(error) = self.query::<()>("SADD", redis::cmd("SADD").arg(index).arg(channel)).await {
            tracing::warn!(error = %error_chain(&error), "channel not indexed after join");
        }
        Ok(Joined { first_for_user: first == 1, subscription_count, user_count })
    }

    /// Runs the leave script for `node/socket_id` and keeps the channel index; does not touch
    /// the node's registrations hash.
    pub(crate) async fn remove(
        &self,
        node: &str,
        app: &str,
        channel: &str,
        socket_id: &str,
    ) -> Result<Removal, BrokerError> {
        let keys = self.keys.channel(app, channel);
        let (_found, last, subscription_count, user_count, user_id): (u8, u8, u64, u64, String) = self
            .invoke(
                "leave script",
                self.scripts
                    .leave
                    .key(&keys.sockets)
                    .key(&keys.users)
                    .key(&keys.info)
                    .arg(format!("{node}/{socket_id}")),
            )
            .await?;
        if subscription_count == 0 {
            // As in `join`: the removal is done, an index left stale is only logged (`channels`
            // skips empty channels anyway).
            if let Err(error) = self.unindex(app, channel, &keys.sockets).await {
                tracing::warn!(error = %error_chain(&error), "emptied channel not unindexed");
            }
        }
        Ok(Removal { left: Left { last_for_user: last == 1, subscription_count, user_count }, user_id })
    }

    /// Drops an emptied channel from the index, then puts it back if a join raced in: a join
    /// adds to the index after its script, so either it re-adds after this SREM, or its socket
    /// is visible to the HLEN here.
    async fn unindex(&self, app: &str, channel: &str, sockets: &str) -> Result<(), BrokerError> {
        let index = self.keys.channel_index(app);
        self.query::<()>("SREM", redis::cmd("SREM").arg(&index).arg(channel)).await?;
        let occupied: u64 = self.query("HLEN", redis::cmd("HLEN").arg(sockets)).await?;
        if occupied > 0 {
            self.query::<()>("SADD", redis::cmd("SADD").arg(&index).arg(channel)).await?;
        }
        Ok(())
    }

    pub(crate) async fn counts(&self, app: &str, channel: &str) -> Result<ChannelCounts, BrokerError> {
        let keys = self.keys.channel(app, channel);
        let mut pipe = redis::pipe();
        pipe.hlen(&keys.sockets).hlen(&keys.users);
        let (subscription_count, user_count): (u64, u64) = self.pipe("HLEN", &pipe).await?;
        Ok(ChannelCounts { subscription_count, user_count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_fields_round_trip_any_characters() {
        let field = registration_field("app/1", "presence-a,b;c", "1.2");
        assert_eq!(
            parse_registration_field(&field),
            Some(("app/1".into(), "presence-a,b;c".into(), "1.2".into()))
        );
        assert_eq!(parse_registration_field("nonsense"), None);
    }
}
