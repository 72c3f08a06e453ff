//! The Pusher Channels protocol v7 as data: names, close codes, limits, frames and signatures.
//!
//! This crate does no IO and knows nothing of tokio or axum, so every rule of the protocol can be
//! tested here alone, against the golden vectors of `shared/PROTOCOL.md`.

mod channel;
mod close;
mod frame;
mod limits;
mod sign;
mod socket_id;

pub use channel::{
    base_name, ChannelKind, ChannelName, ChannelNameError, CHANNEL_PREFIXES, USER_CHANNEL_PREFIX,
};
pub use close::CloseCode;
pub use frame::{
    encode_error, encode_server_event, ClientEvent, FrameError, PresenceChannelData, SigninData,
    SubscribeData, UserData, ValidatedUserData,
};
pub use limits::Limits;
pub use sign::{
    api_string_to_sign, body_md5_hex, channel_auth_string, hmac_sha256_hex, signin_auth_string, verify_auth,
    verify_hex_signature, ApiSigner, AuthError,
};
pub use socket_id::SocketId;

/// The protocol version Herald speaks; clients announcing another are refused with 4007.
pub const PROTOCOL_VERSION: u32 = 7;
/// Lowest protocol version the server accepts (pusher-js sends 7).
pub const MIN_PROTOCOL_VERSION: u32 = 5;

/// A Pusher event name is valid when non-empty and at most `max_len` bytes.
pub fn valid_event_name(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_non_empty_and_at_most_the_limit() {
        assert!(!valid_event_name("", 200), "an empty name names no event");
        assert!(valid_event_name("my-event", 200));
        assert!(valid_event_name(&"e".repeat(200), 200), "200 characters is the limit itself");
        assert!(!valid_event_name(&"e".repeat(201), 200));
    }
}
