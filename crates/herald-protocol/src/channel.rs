//! Channel names: validation and the kind a name's prefix selects.

use std::fmt;

/// Prefix of the server-to-user channel a signed-in connection may subscribe to.
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// What a channel is, decided by its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: only the connection signed in as `{id}` may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Short lower-case label, used in metrics and `herald status`.
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::PrivateEncrypted => "private-encrypted",
            ChannelKind::Presence => "presence",
            ChannelKind::ServerToUser => "server-to-user",
        }
    }

    /// Private, encrypted and presence channels need a signed `auth` to subscribe.
    pub fn requires_auth(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("channel name contains a character outside [A-Za-z0-9_-=@,.;]")]
    InvalidCharacter,
    #[error("channel names starting with # are reserved for the server")]
    Reserved,
    #[error("{USER_CHANNEL_PREFIX} needs the user id after it")]
    MissingUserId,
    #[error("channel name is only the prefix {0:?}: add a name after it")]
    BarePrefix(&'static str),
}

/// Prefixes that select a channel kind; a name that is only one of them names no channel.
pub const CHANNEL_PREFIXES: [&str; 7] = [
    "private-",
    "presence-",
    "private-encrypted-",
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
];

/// A channel's name without Pusher's access prefix (`private-`, `presence-`,
/// `private-encrypted-`, and their `-cache-` forms): the name the application gives it, as
/// Laravel's `Echo.private('orders.1')` subscribes `private-orders.1`. Public names, `cache-`
/// included, come back unchanged.
pub fn base_name(name: &str) -> &str {
    for prefix in [
        "private-encrypted-cache-",
        "private-encrypted-",
        "private-cache-",
        "presence-cache-",
        "private-",
        "presence-",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest;
        }
    }
    name
}

/// A validated channel name with its kind and whether it is a cache channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Validates a name a client or an API caller sent. `#server-to-user-{id}` is accepted here;
    /// whether the caller may use it is decided by the caller (only sign-in subscriptions may).
    pub fn parse(name: &str, max_len: usize) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > max_len {
            return Err(ChannelNameError::TooLong { max: max_len });
        }
        let body = if let Some(user) = name.strip_prefix(USER_CHANNEL_PREFIX) {
            if user.is_empty() {
                return Err(ChannelNameError::MissingUserId);
            }
            user
        } else if name.starts_with('#') {
            return Err(ChannelNameError::Reserved);
        } else {
            name
        };
        if !body.bytes().all(valid_channel_byte) {
            return Err(ChannelNameError::InvalidCharacter);
        }
        if let Some(prefix) = CHANNEL_PREFIXES.iter().find(|prefix| **prefix == name) {
            return Err(ChannelNameError::BarePrefix(prefix));
        }
        Ok(ChannelName(name.to_owned()))
    }

    /// The server-to-user channel of a signed-in user.
    pub fn for_user(user_id: &str) -> Self {
        ChannelName(format!("{USER_CHANNEL_PREFIX}{user_id}"))
    }

    /// The name without Pusher's access prefix (`base_name`).
    pub fn base_name(&self) -> &str {
        base_name(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> ChannelKind {
        let name = self.0.as_str();
        if name.starts_with(USER_CHANNEL_PREFIX) {
            ChannelKind::ServerToUser
        } else if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// `cache-`, `private-cache-`, `private-encrypted-cache-` and `presence-cache-` keep their last event.
    pub fn is_cache(&self) -> bool {
        let name = self.0.as_str();
        name.starts_with("cache-")
            || name.starts_with("private-cache-")
            || name.starts_with("private-encrypted-cache-")
            || name.starts_with("presence-cache-")
    }

    /// The user id of a `#server-to-user-{id}` channel.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.0.strip_prefix(USER_CHANNEL_PREFIX)
    }
}

fn valid_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets maps keyed by `ChannelName` be searched with a `&str` (hash and order are the string's).
impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_drop_the_access_prefixes_only() {
        assert_eq!(base_name("private-user.notifications.42"), "user.notifications.42");
        assert_eq!(base_name("presence-campaign.3"), "campaign.3");
        assert_eq!(base_name("private-encrypted-admin-dashboard"), "admin-dashboard");
        assert_eq!(base_name("private-encrypted-cache-x"), "x");
        assert_eq!(base_name("private-cache-organization.7"), "organization.7");
        assert_eq!(base_name("presence-cache-room"), "room");
        assert_eq!(base_name("cache-news"), "cache-news", "a public name stays whole");
        assert_eq!(base_name("system-maintenance"), "system-maintenance");
        assert_eq!(base_name("private-private-x"), "private-x", "one prefix only");
    }

    fn kind(name: &str) -> ChannelKind {
        ChannelName::parse(name, 200).expect("valid name").kind()
    }

    #[test]
    fn prefixes_select_kinds() {
        assert_eq!(kind("my-channel"), ChannelKind::Public);
        assert_eq!(kind("private-user.notifications.42"), ChannelKind::Private);
        assert_eq!(kind("private-encrypted-x"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("presence-room"), ChannelKind::Presence);
        assert_eq!(kind("#server-to-user-42"), ChannelKind::ServerToUser);
        assert_eq!(kind("cache-x"), ChannelKind::Public);
        assert_eq!(kind("private-encrypted-cache-x"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("presence-cache-x"), ChannelKind::Presence);
    }

    #[test]
    fn cache_variants_are_recognised() {
        for name in ["cache-a", "private-cache-a", "private-encrypted-cache-a", "presence-cache-a"] {
            assert!(ChannelName::parse(name, 200).expect("valid").is_cache(), "{name}");
        }
        assert!(!ChannelName::parse("private-a", 200).expect("valid").is_cache());
    }

    #[test]
    fn invalid_names_are_refused() {
        assert_eq!(ChannelName::parse("", 200), Err(ChannelNameError::Empty));
        assert_eq!(ChannelName::parse(&"a".repeat(201), 200), Err(ChannelNameError::TooLong { max: 200 }));
        assert_eq!(ChannelName::parse("a b", 200), Err(ChannelNameError::InvalidCharacter));
        assert_eq!(ChannelName::parse("a/b", 200), Err(ChannelNameError::InvalidCharacter));
        assert_eq!(ChannelName::parse("#other", 200), Err(ChannelNameError::Reserved));
        assert_eq!(ChannelName::parse("#server-to-user-", 200), Err(ChannelNameError::MissingUserId));
        for prefix in CHANNEL_PREFIXES {
            assert_eq!(ChannelName::parse(prefix, 200), Err(ChannelNameError::BarePrefix(prefix)));
        }
        assert!(ChannelName::parse("private-a", 200).is_ok());
        assert!(ChannelName::parse("a_-=@,.;Z9", 200).is_ok());
        assert!(ChannelName::parse(&"a".repeat(200), 200).is_ok());
    }

    #[test]
    fn kinds_have_the_labels_the_metrics_document() {
        // docs/operations.md: herald_channels{kind} is public, private, private-encrypted,
        // presence or server-to-user.
        let labels = [
            ("news", "public"),
            ("private-a", "private"),
            ("private-encrypted-a", "private-encrypted"),
            ("presence-a", "presence"),
            ("#server-to-user-42", "server-to-user"),
        ];
        for (name, label) in labels {
            assert_eq!(kind(name).label(), label, "{name}");
        }
    }

    #[test]
    fn private_encrypted_and_presence_channels_need_a_signed_auth() {
        assert!(kind("private-a").requires_auth());
        assert!(kind("private-encrypted-a").requires_auth());
        assert!(kind("presence-a").requires_auth());
        assert!(kind("private-cache-a").requires_auth());
        assert!(!kind("news").requires_auth(), "public channels: anyone");
        assert!(!kind("cache-a").requires_auth());
        // Decided by the connection's sign-in, not by an auth signature.
        assert!(!kind("#server-to-user-42").requires_auth());
    }

    #[test]
    fn server_to_user_channels_name_their_user() {
        let channel = ChannelName::parse("#server-to-user-42", 200).expect("valid");
        assert_eq!(channel.server_to_user_id(), Some("42"));
        assert_eq!(ChannelName::for_user("ada").server_to_user_id(), Some("ada"));
        assert_eq!(ChannelName::parse("private-42", 200).expect("valid").server_to_user_id(), None);
    }

    #[test]
    fn a_channel_name_reads_back_as_sent() {
        let channel = ChannelName::parse("presence-room.7", 200).expect("valid");
        assert_eq!(channel.to_string(), "presence-room.7");
        assert_eq!(channel.as_ref(), "presence-room.7");
        // Maps keyed by channel names are searched with the plain name.
        let mut hashed = std::collections::HashMap::new();
        hashed.insert(channel.clone(), 1);
        assert_eq!(hashed.get("presence-room.7"), Some(&1));
        assert_eq!(hashed.get("presence-room.8"), None);
        let mut ordered = std::collections::BTreeMap::new();
        ordered.insert(channel, 1);
        ordered.insert(ChannelName::parse("news", 200).expect("valid"), 2);
        assert_eq!(ordered.get("presence-room.7"), Some(&1));
        assert_eq!(ordered.get("news"), Some(&2));
    }
}
