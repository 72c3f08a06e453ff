//! Webhooks: each app's receivers (`[[apps.webhooks]]`, with `apps.webhook_batching`) and how
//! they are delivered (`[webhooks]`: timeout, retry window, workers, the 3 s removal delay).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of webhook event, as Pusher names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl WebhookKind {
    pub const ALL: [WebhookKind; 7] = [
        WebhookKind::ChannelOccupied,
        WebhookKind::ChannelVacated,
        WebhookKind::MemberAdded,
        WebhookKind::MemberRemoved,
        WebhookKind::ClientEvent,
        WebhookKind::CacheMiss,
        WebhookKind::SubscriptionCount,
    ];

    /// The `name` of the event in the webhook body.
    pub fn name(self) -> &'static str {
        match self {
            WebhookKind::ChannelOccupied => "channel_occupied",
            WebhookKind::ChannelVacated => "channel_vacated",
            WebhookKind::MemberAdded => "member_added",
            WebhookKind::MemberRemoved => "member_removed",
            WebhookKind::ClientEvent => "client_event",
            WebhookKind::CacheMiss => "cache_miss",
            WebhookKind::SubscriptionCount => "subscription_count",
        }
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One receiver of an app's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://…`) the events are POSTed to.
    pub url: String,
    /// The kinds this receiver wants; empty or absent: every kind.
    #[serde(default)]
    pub event_types: Vec<WebhookKind>,
    /// Extra request headers (an API token of the receiver, say); shown redacted.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebhookConfig {
    /// Whether this receiver wants events of `kind`.
    pub fn wants(&self, kind: WebhookKind) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&kind)
    }
}

/// How webhooks are delivered (every app alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Deliveries in flight at once on this node, across every receiver.
    pub workers: usize,
    /// Seconds one attempt may take, connection and answer included.
    pub timeout_secs: u64,
    /// Seconds a failing webhook is retried (capped exponential backoff) before it becomes a
    /// dead letter.
    pub retry_window_secs: u64,
    /// First retry delay; each further one doubles, up to `backoff_cap_ms`.
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// Milliseconds `channel_vacated` and `member_removed` wait: one that is undone within them
    /// (a page reload) sends nothing at all.
    pub removal_delay_ms: u64,
    /// With `webhook_batching` on an app: how long events gather before they go in one request.
    pub batch_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            workers: 8,
            timeout_secs: 5,
            retry_window_secs: 300,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
            removal_delay_ms: 3_000,
            batch_ms: 250,
        }
    }
}

/// Headers Herald writes itself; a receiver's configuration may not replace them.
const RESERVED_HEADERS: [&str; 4] = ["content-type", "content-length", "x-pusher-key", "x-pusher-signature"];

pub(crate) fn validate_app(at: &str, hooks: &[WebhookConfig], problems: &mut Vec<String>) {
    for (index, hook) in hooks.iter().enumerate() {
        let at = format!("{at}.webhooks[{index}]");
        let url = hook.url.parse::<axum::http::Uri>();
        let usable = url.is_ok_and(|url| {
            matches!(url.scheme_str(), Some("http" | "https"))
                && url.host().is_some_and(|host| !host.is_empty())
        });
        if !usable {
            problems.push(format!("{at}.url: {:?} is not an http:// or https:// URL", hook.url));
        }
        if hooks[..index].iter().any(|earlier| earlier.url == hook.url) {
            problems.push(format!("{at}.url: {:?} is configured twice for this app", hook.url));
        }
        for name in hook.headers.keys() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
            if !valid {
                problems.push(format!("{at}.headers: {name:?} is not a header name"));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                problems.push(format!("{at}.headers: {name:?} is set by Herald itself"));
            }
        }
        for (name, value) in &hook.headers {
            if value.bytes().any(|byte| byte == b'\r' || byte == b'\n' || byte == 0) {
                problems.push(format!("{at}.headers.{name}: must be one line"));
            }
        }
    }
}

pub(crate) fn validate(config: &WebhooksConfig, problems: &mut Vec<String>) {
    for (key, value) in [
        ("webhooks.workers", config.workers as u64),
        ("webhooks.timeout_secs", config.timeout_secs),
        ("webhooks.backoff_base_ms", config.backoff_base_ms),
    ] {
        if value == 0 {
            problems.push(format!("{key}: must be at least 1"));
        }
    }
    if config.backoff_cap_ms < config.backoff_base_ms {
        problems.push("webhooks.backoff_cap_ms: must be at least webhooks.backoff_base_ms".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> WebhookConfig {
        WebhookConfig { url: url.into(), event_types: Vec::new(), headers: BTreeMap::new() }
    }

    #[test]
    fn every_bad_receiver_is_named() {
        let mut bad_headers = hook("https://hooks.example.com/pusher");
        bad_headers.headers.insert("X-Pusher-Signature".into(), "forged".into());
        bad_headers.headers.insert("Bad Name".into(), "x".into());
        bad_headers.headers.insert("X-Token".into(), "a\r\nInjected: 1".into());
        let hooks = [hook("ftp://example.com"), hook("not a url"), bad_headers, hook("ftp://example.com")];
        let mut problems = Vec::new();
        validate_app("apps[0]", &hooks, &mut problems);
        assert_eq!(
            problems,
            [
                "apps[0].webhooks[0].url: \"ftp://example.com\" is not an http:// or https:// URL",
                "apps[0].webhooks[1].url: \"not a url\" is not an http:// or https:// URL",
                "apps[0].webhooks[2].headers: \"Bad Name\" is not a header name",
                "apps[0].webhooks[2].headers: \"X-Pusher-Signature\" is set by Herald itself",
                "apps[0].webhooks[2].headers.X-Token: must be one line",
                "apps[0].webhooks[3].url: \"ftp://example.com\" is not an http:// or https:// URL",
                "apps[0].webhooks[3].url: \"ftp://example.com\" is configured twice for this app",
            ]
        );
    }

    #[test]
    fn an_empty_kind_list_means_every_kind() {
        let all = hook("https://example.com/");
        assert!(WebhookKind::ALL.iter().all(|kind| all.wants(*kind)));
        let some = WebhookConfig { event_types: vec![WebhookKind::ChannelVacated], ..all };
        assert!(some.wants(WebhookKind::ChannelVacated) && !some.wants(WebhookKind::ChannelOccupied));
        let names: Vec<String> = WebhookKind::ALL
            .iter()
            .map(|kind| serde_json::to_value(kind).expect("json").as_str().expect("a string").to_owned())
            .collect();
        assert_eq!(names, WebhookKind::ALL.map(|kind| kind.name().to_owned()));
    }
}
