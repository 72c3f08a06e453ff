//! Every Redis key and pub/sub channel name, in one place, with the hash tags that keep what one
//! Lua script touches in one Redis Cluster slot; and the slot and shard arithmetic.

use crate::BrokerError;

/// Refuses names that would break hash tags.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), BrokerError> {
    if value.contains(['{', '}']) {
        return Err(BrokerError::InvalidName { what, value: value.to_owned() });
    }
    Ok(())
}

/// The key names of one Herald cluster (one prefix).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// The three hashes of one (app, channel), all in the slot of `{prefix:app:channel}`.
pub(crate) struct ChannelKeys {
    /// `node/socket_id` → user id, or "" for a socket without a user.
    pub(crate) sockets: String,
    /// user id → number of sockets of that user in the channel, cluster-wide.
    pub(crate) users: String,
    /// user id → user info (JSON text).
    pub(crate) info: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub(crate) fn channel(&self, app: &str, channel: &str) -> ChannelKeys {
        let tag = format!("{{{}:{app}:{channel}}}", self.prefix);
        ChannelKeys {
            sockets: format!("{tag}:sockets"),
            users: format!("{tag}:users"),
            info: format!("{tag}:info"),
        }
    }

    /// Set of the app's occupied channels.
    pub(crate) fn channel_index(&self, app: &str) -> String {
        format!("{{{}:{app}}}:channels", self.prefix)
    }

    /// Hash node id → open connections of the app on that node.
    pub(crate) fn connections(&self, app: &str) -> String {
        format!("{{{}:{app}}}:connections", self.prefix)
    }

    /// Hash user id → the number of nodes where the user has a signed-in connection.
    pub(crate) fn online_users(&self, app: &str) -> String {
        format!("{{{}:{app}}}:online", self.prefix)
    }

    /// Set of the users with a signed-in connection on `node` (same slot as `online_users`).
    pub(crate) fn node_users(&self, app: &str, node: &str) -> String {
        format!("{{{}:{app}}}:online:node:{node}", self.prefix)
    }

    /// Counter of the app's API requests in one second.
    pub(crate) fn api_rate(&self, app: &str, second: u64) -> String {
        format!("{{{}:{app}}}:rate:{second}", self.prefix)
    }

    /// Set of every app any node has served (reaping clears a dead node's counts in each).
    pub(crate) fn apps(&self) -> String {
        format!("{{{}}}:apps", self.prefix)
    }

    /// Hash node id → `NodeInfo` JSON: the node registry.
    pub(crate) fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    /// A node's liveness key, set with PX `node_ttl` on every heartbeat.
    pub(crate) fn alive(&self, node: &str) -> String {
        format!("{{{}:node:{node}}}:alive", self.prefix)
    }

    /// Hash of a node's registrations: `RegistrationKey` JSON → user id or "".
    pub(crate) fn registrations(&self, node: &str) -> String {
        format!("{{{}:node:{node}}}:registrations", self.prefix)
    }

    /// Claimed (`SET NX PX`) by the one survivor that reaps a dead node.
    pub(crate) fn reaping(&self, node: &str) -> String {
        format!("{{{}:node:{node}}}:reaping", self.prefix)
    }

    /// Left by the reaper so that the node, if it comes back, announces its members again.
    pub(crate) fn reaped(&self, node: &str) -> String {
        format!("{{{}:node:{node}}}:reaped", self.prefix)
    }

    /// A removal (`channel_vacated`, `member_removed`) waiting out the webhook delay: holds the
    /// token of the node that filed it. `subject` names the channel (and user).
    pub(crate) fn pending_removal(&self, app: &str, subject: &str) -> String {
        format!("{{{}:{app}}}:removal:{subject}", self.prefix)
    }

    /// The plain pub/sub channel of an app (single Redis).
    pub(crate) fn pubsub(&self, app: &str) -> String {
        format!("{}:{app}", self.prefix)
    }

    /// Shard channel `shard` of an app (Redis Cluster), with its own hash tag.
    pub(crate) fn shard_channel(&self, app: &str, shard: u16) -> String {
        format!("{{{}:{app}:shard:{shard}}}", self.prefix)
    }
}

/// The shard (0..shards) of a Pusher channel or user id: FNV-1a, stable across builds and nodes.
pub(crate) fn shard_of(routing_key: &str, shards: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in routing_key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let shards = u32::from(shards.max(1));
    u16::try_from(hash % shards).expect("a value below a u16 fits a u16")
}

/// The Redis Cluster slot of a key or shard channel: CRC16 (XMODEM) of its hash tag, mod 16384.
pub(crate) fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|b| *b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_matches_the_redis_cluster_specification() {
        // The cluster spec's example: CRC16 of "123456789" is 0x31C3.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot_of("123456789"), 12739);
        assert_eq!(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    }

    #[test]
    fn channel_keys_share_one_hash_tag() {
        let keys = Keys::new("herald");
        let channel = keys.channel("app", "presence-room");
        assert_eq!(channel.sockets, "{herald:app:presence-room}:sockets");
        assert_eq!(slot_of(&channel.sockets), slot_of(&channel.users));
        assert_eq!(slot_of(&channel.users), slot_of(&channel.info));
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("presence-room", 16), shard_of("presence-room", 16));
        assert!((0..1000).all(|i| shard_of(&format!("channel-{i}"), 16) < 16));
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn braces_are_refused_in_names() {
        assert!(check_name("app", "a{b").is_err());
        assert!(check_name("app", "app-1").is_ok());
    }
}
