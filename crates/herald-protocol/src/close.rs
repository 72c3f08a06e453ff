//! WebSocket close codes and `pusher:error` codes, with the client reaction each range triggers.

/// Every code Herald sends, as `pusher:error` data and/or as the WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1002: the client broke the WebSocket framing rules (RFC 6455: unmasked frame, reserved
    /// bits, stray continuation, bad opcode, fragmented or oversized control frame).
    ProtocolViolation,
    /// 1007: a text message that is not UTF-8.
    InvalidPayload,
    /// 1009: a message above the configured maximum (a WebSocket code, not a Pusher one).
    MessageTooBig,
    /// 4000: the app only accepts TLS connections; pusher-js reconnects with `wss://`.
    SslOnly,
    /// 4001: no app has this key.
    AppNotFound,
    /// 4003: the app is disabled.
    AppDisabled,
    /// 4004: the app is over its connection quota.
    OverConnectionQuota,
    /// 4005: the path is not `/app/{key}`.
    PathNotFound,
    /// 4006: the protocol version is not a number.
    InvalidVersionFormat,
    /// 4007: the protocol version is not supported.
    UnsupportedProtocol,
    /// 4008: no protocol version given.
    NoProtocolVersion,
    /// 4009: the connection is unauthorized (sign-in required, or terminated).
    Unauthorized,
    /// 4100: over capacity; also a slow consumer or a backend that is down.
    OverCapacity,
    /// 4200: generic reconnect; sent on graceful shutdown.
    Reconnect,
    /// 4201: pong not received.
    PongNotReceived,
    /// 4202: closed after inactivity.
    ClosedAfterInactivity,
    /// 4301: client event rate limit (error only, never a close).
    ClientEventRateLimit,
    /// 4302: watchlist over its limit (error only, never a close).
    WatchlistLimit,
}

impl CloseCode {
    pub const ALL: [CloseCode; 18] = [
        CloseCode::ProtocolViolation,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::SslOnly,
        CloseCode::AppNotFound,
        CloseCode::AppDisabled,
        CloseCode::OverConnectionQuota,
        CloseCode::PathNotFound,
        CloseCode::InvalidVersionFormat,
        CloseCode::UnsupportedProtocol,
        CloseCode::NoProtocolVersion,
        CloseCode::Unauthorized,
        CloseCode::OverCapacity,
        CloseCode::Reconnect,
        CloseCode::PongNotReceived,
        CloseCode::ClosedAfterInactivity,
        CloseCode::ClientEventRateLimit,
        CloseCode::WatchlistLimit,
    ];

    /// The code with this number, if Herald has one.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|known| known.code() == code)
    }

    pub fn code(self) -> u16 {
        match self {
            CloseCode::ProtocolViolation => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::SslOnly => 4000,
            CloseCode::AppNotFound => 4001,
            CloseCode::AppDisabled => 4003,
            CloseCode::OverConnectionQuota => 4004,
            CloseCode::PathNotFound => 4005,
            CloseCode::InvalidVersionFormat => 4006,
            CloseCode::UnsupportedProtocol => 4007,
            CloseCode::NoProtocolVersion => 4008,
            CloseCode::Unauthorized => 4009,
            CloseCode::OverCapacity => 4100,
            CloseCode::Reconnect => 4200,
            CloseCode::PongNotReceived => 4201,
            CloseCode::ClosedAfterInactivity => 4202,
            CloseCode::ClientEventRateLimit => 4301,
            CloseCode::WatchlistLimit => 4302,
        }
    }

    /// The human message sent beside the code.
    pub fn message(self) -> &'static str {
        match self {
            CloseCode::ProtocolViolation => "protocol error",
            CloseCode::InvalidPayload => "invalid UTF-8 in a text message",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::SslOnly => "SSL only: this app accepts TLS connections only, reconnect with wss://",
            CloseCode::AppNotFound => "app does not exist",
            CloseCode::AppDisabled => "app is disabled",
            CloseCode::OverConnectionQuota => "app is over its connection quota",
            CloseCode::PathNotFound => "path not found",
            CloseCode::InvalidVersionFormat => "invalid version string format",
            CloseCode::UnsupportedProtocol => "unsupported protocol version",
            CloseCode::NoProtocolVersion => "no protocol version supplied",
            CloseCode::Unauthorized => "connection is unauthorized",
            CloseCode::OverCapacity => "over capacity",
            CloseCode::Reconnect => "server is restarting, reconnect",
            CloseCode::PongNotReceived => "pong reply not received",
            CloseCode::ClosedAfterInactivity => "closed after inactivity",
            CloseCode::ClientEventRateLimit => "client event rejected: rate limit exceeded",
            CloseCode::WatchlistLimit => "watchlist over its limit",
        }
    }

    /// RFC 6455 codes (1xxx) close the WebSocket itself: no `pusher:error` goes before them.
    pub fn is_websocket_level(self) -> bool {
        self.code() < 4000
    }

    /// 4300–4399 are fatal to pusher-js if used as close codes: send them as errors only.
    pub fn closes_connection(self) -> bool {
        !matches!(self, CloseCode::ClientEventRateLimit | CloseCode::WatchlistLimit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_number() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(0), None);
        assert_eq!(CloseCode::from_code(4999), None);
    }

    #[test]
    fn ranges_match_pusher_js_reactions() {
        assert!((4000..4100).contains(&CloseCode::AppNotFound.code()));
        // 4000 is a Pusher code: a `pusher:error` goes before the close frame.
        assert!(!CloseCode::SslOnly.is_websocket_level());
        assert!(CloseCode::MessageTooBig.is_websocket_level());
        assert!((4100..4200).contains(&CloseCode::OverCapacity.code()));
        assert!((4200..4300).contains(&CloseCode::Reconnect.code()));
        assert!(!CloseCode::ClientEventRateLimit.closes_connection());
        assert!(CloseCode::PongNotReceived.closes_connection());
    }

    /// Every code with its number, from the close-code table of the protocol (docs/protocol.md).
    const TABLE: [(CloseCode, u16); 18] = [
        (CloseCode::ProtocolViolation, 1002),
        (CloseCode::InvalidPayload, 1007),
        (CloseCode::MessageTooBig, 1009),
        (CloseCode::SslOnly, 4000),
        (CloseCode::AppNotFound, 4001),
        (CloseCode::AppDisabled, 4003),
        (CloseCode::OverConnectionQuota, 4004),
        (CloseCode::PathNotFound, 4005),
        (CloseCode::InvalidVersionFormat, 4006),
        (CloseCode::UnsupportedProtocol, 4007),
        (CloseCode::NoProtocolVersion, 4008),
        (CloseCode::Unauthorized, 4009),
        (CloseCode::OverCapacity, 4100),
        (CloseCode::Reconnect, 4200),
        (CloseCode::PongNotReceived, 4201),
        (CloseCode::ClosedAfterInactivity, 4202),
        (CloseCode::ClientEventRateLimit, 4301),
        (CloseCode::WatchlistLimit, 4302),
    ];

    #[test]
    fn codes_are_the_protocol_numbers() {
        for (code, number) in TABLE {
            assert_eq!(code.code(), number, "{code:?}");
        }
    }

    #[test]
    fn only_rfc_6455_codes_close_without_a_pusher_error() {
        for (code, number) in TABLE {
            let websocket_level = matches!(number, 1002 | 1007 | 1009);
            assert_eq!(code.is_websocket_level(), websocket_level, "{code:?}");
        }
    }

    #[test]
    fn each_code_has_its_own_message_that_fits_a_close_frame() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in TABLE {
            let message = code.message();
            assert!(!message.is_empty(), "{code:?}");
            assert!(seen.insert(message), "{code:?} shares its message {message:?}");
            // RFC 6455 5.5: a control frame carries at most 125 bytes, 2 of them the code.
            assert!(message.len() <= 123, "{code:?}");
        }
    }
}
