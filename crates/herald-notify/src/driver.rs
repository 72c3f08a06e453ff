//! Where delivered broadcasts go (`BROADCAST_CONNECTION`): Herald's own channels, an upstream
//! Pusher-compatible HTTP API, a JSON-lines log file, or nowhere.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::ApiSigner;
use serde_json::json;

/// Why a delivery failed: retry later, or give up at once (dead letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

/// What `LocalPublish::publish` returns: the sockets reached on this node.
pub type Published<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, DeliveryError>> + Send + 'a>>;

/// Publishes into this server's own channels, on every node of a cluster. Implemented by the
/// server, which owns the hubs and the broker.
pub trait LocalPublish: Send + Sync + std::fmt::Debug {
    /// Publishes `data` as `event` on each wire channel; returns the sockets reached on this
    /// node. A `Retryable` error means the cluster did not take it (nothing was delivered).
    fn publish<'a>(&'a self, channels: &'a [String], event: &'a str, data: &'a str) -> Published<'a>;
}

/// Where an upstream Pusher-compatible API lives and the credentials that sign for it. Its
/// `Debug` shows everything but the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PusherUpstream {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl std::fmt::Debug for PusherUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherUpstream")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"***")
            .finish()
    }
}

impl PusherUpstream {
    /// Signs requests with the upstream's key and secret.
    fn signer(&self) -> ApiSigner<'_> {
        ApiSigner { key: &self.key, secret: &self.secret }
    }
}

/// Seconds since the Unix epoch: the `auth_timestamp` of a request signed now.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// The closed set of delivery drivers.
#[derive(Debug, Clone)]
pub enum Driver {
    Herald(Arc<dyn LocalPublish>),
    Pusher { upstream: PusherUpstream, client: reqwest::Client },
    Log { path: PathBuf, file: Arc<Mutex<Option<std::fs::File>>> },
    Null,
}

impl Driver {
    pub fn pusher(upstream: PusherUpstream) -> Driver {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Driver::Pusher { upstream, client }
    }

    pub fn log(path: PathBuf) -> Driver {
        Driver::Log { path, file: Arc::new(Mutex::new(None)) }
    }

    /// The `BROADCAST_CONNECTION` name of this driver.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Herald(_) => "herald",
            Driver::Pusher { .. } => "pusher",
            Driver::Log { .. } => "log",
            Driver::Null => "null",
        }
    }

    /// Delivers one broadcast to its wire channels.
    pub async fn deliver(&self, channels: &[String], event: &str, data: &str) -> Result<(), DeliveryError> {
        match self {
            Driver::Herald(local) => local.publish(channels, event, data).await.map(drop),
            Driver::Pusher { upstream, client } => {
                for chunk in channels.chunks(100) {
                    trigger_upstream(client, upstream, chunk, event, data).await?;
                }
                Ok(())
            }
            Driver::Log { path, file } => {
                let line = json!({
                    "time_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                    "event": event,
                    "channels": channels,
                    "data": data,
                })
                .to_string();
                let mut guard = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if guard.is_none() {
                    let opened = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(
                        |error| DeliveryError::Retryable(format!("cannot open {}: {error}", path.display())),
                    )?;
                    *guard = Some(opened);
                }
                let file = guard.as_mut().expect("opened just above");
                writeln!(file, "{line}").and_then(|()| file.flush()).map_err(|error| {
                    DeliveryError::Retryable(format!("cannot write {}: {error}", path.display()))
                })
            }
            Driver::Null => Ok(()),
        }
    }
}

/// Checks that the upstream answers and accepts the credentials (a signed `GET /channels`).
pub async fn check_upstream(client: &reqwest::Client, upstream: &PusherUpstream) -> Result<String, String> {
    let path = format!("/apps/{}/channels", upstream.app_id);
    let query = upstream.signer().query("GET", &path, b"", unix_seconds(), &[]);
    let url = format!("{}://{}:{}{path}", upstream.scheme, upstream.host, upstream.port);
    let response = client.get(&url).query(&query).send().await.map_err(|error| {
        format!(
            "{}://{}:{}: unreachable: {}",
            upstream.scheme,
            upstream.host,
            upstream.port,
            error.without_url()
        )
    })?;
    match response.status().as_u16() {
        200 => Ok(format!("{} accepts the credentials", upstream.host)),
        401 | 403 => Err(format!("{} refused the credentials ({})", upstream.host, response.status())),
        status => Err(format!("{} answered {status}", upstream.host)),
    }
}

/// One signed `POST /apps/{id}/events` to the upstream API.
async fn trigger_upstream(
    client: &reqwest::Client,
    upstream: &PusherUpstream,
    channels: &[String],
    event: &str,
    data: &str,
) -> Result<(), DeliveryError> {
    let body = json!({ "name": event, "channels": channels, "data": data }).to_string();
    let path = format!("/apps/{}/events", upstream.app_id);
    let query = upstream.signer().query("POST", &path, body.as_bytes(), unix_seconds(), &[]);
    let url = format!("{}://{}:{}{path}", upstream.scheme, upstream.host, upstream.port);
    let response = client
        .post(url)
        .query(&query)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|error| {
            DeliveryError::Retryable(format!("upstream unreachable: {}", error.without_url()))
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The upstream's body is attacker-controlled text: stored, logged and shown escaped.
    let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
    let message = format!("upstream answered {status}: {}", crate::printable(&text));
    if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
        Err(DeliveryError::Permanent(message))
    } else {
        Err(DeliveryError::Retryable(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_upstream_secret() {
        let upstream = PusherUpstream {
            scheme: "https".into(),
            host: "api.example".into(),
            port: 443,
            app_id: "1".into(),
            key: "public-key".into(),
            secret: "very-secret".into(),
        };
        let shown = format!("{upstream:?}");
        assert!(shown.contains("public-key") && !shown.contains("very-secret"), "{shown}");
    }
}
