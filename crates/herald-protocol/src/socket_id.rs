//! Socket ids: `{digits}.{digits}`, unique per connection.

use std::fmt;

/// A connection's id as pusher-js sees it (`"1234.5678"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketId(String);

impl SocketId {
    /// Builds the id from two numbers; the server uses a node prefix and a counter.
    pub fn from_parts(high: u64, low: u64) -> Self {
        SocketId(format!("{high}.{low}"))
    }

    /// Accepts `^\d+\.\d+$` only, as sent by API callers for exclusion and auth.
    pub fn parse(text: &str) -> Option<Self> {
        let (high, low) = text.split_once('.')?;
        let digits =
            |part: &str| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit());
        (digits(high) && digits(low)).then(|| SocketId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_digit_pairs() {
        assert!(SocketId::parse("1234.1234").is_some());
        assert!(SocketId::parse("1234").is_none());
        assert!(SocketId::parse("12a.1").is_none());
        assert!(SocketId::parse(".1").is_none());
        assert!(SocketId::parse("1.2.3").is_none());
        assert_eq!(SocketId::from_parts(7, 9).as_str(), "7.9");
    }

    #[test]
    fn a_socket_id_prints_as_pusher_js_sees_it() {
        assert_eq!(SocketId::from_parts(1234, 5678).to_string(), "1234.5678");
        assert_eq!(SocketId::parse("1.2").expect("valid").to_string(), "1.2");
    }
}
