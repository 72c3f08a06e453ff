//! The subscriber on `private-security-alerts` that counts (and times) the broadcasts, and the
//! `security.alert` events the steps send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{answer_ping, close, connect_subscribed, ws_url, Ws};
use crate::server::Server;

/// The channel `security.alert` broadcasts go to (private: the bench signs the subscription).
const CHANNEL: &str = "private-security-alerts";
/// Broadcast event name of `security.alert`.
const EVENT: &str = "security.alert";

/// A `security.alert` domain event (severity low: the ordinary `broadcasts` lane).
pub(super) fn alert(id: &str, details: Value) -> Value {
    json!({
        "id": id,
        "type": "security.alert",
        "data": {
            "alert_type": "bench_load",
            "message": "herald-bench ingest",
            "severity": "low",
            "details": details,
        },
    })
}

/// `{"event":"security.alert",...,"data":"{...\"details\":{\"n\":N,\"t\":T}...}"}` → (N, T).
fn parse_alert(text: &str) -> Option<(u64, u64)> {
    let frame: Value = serde_json::from_str(text).ok()?;
    if frame["event"] != EVENT {
        return None;
    }
    let data: Value = serde_json::from_str(frame["data"].as_str()?).ok()?;
    Some((data["details"]["n"].as_u64()?, data["details"]["t"].as_u64()?))
}

/// Holds the subscription: counts `security.alert` frames (and when the last one came); with
/// `samples`, sends (event number, nanoseconds since it was sent) for each.
async fn listener(
    mut ws: Ws,
    epoch: Instant,
    delivered: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    samples: Option<mpsc::UnboundedSender<(u64, u64)>>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            biased;
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let arrived = epoch.elapsed().as_nanos() as u64;
                    if text.as_str().contains("\"security.alert\"") {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        last_ns.store(arrived, Ordering::Relaxed);
                        if let (Some(samples), Some((n, sent))) = (&samples, parse_alert(text.as_str())) {
                            let _ = samples.send((n, arrived.saturating_sub(sent)));
                        }
                    } else {
                        answer_ping(&mut ws, text.as_str()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            _ = stopped(&mut stop) => {
                close(ws).await;
                return true;
            }
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

pub(super) struct Subscriber {
    delivered: Arc<AtomicU64>,
    pub(super) last_ns: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<bool>,
}

impl Subscriber {
    pub(super) async fn open(
        server: &Server,
        epoch: Instant,
        samples: Option<mpsc::UnboundedSender<(u64, u64)>>,
    ) -> anyhow::Result<Subscriber> {
        let ws = connect_subscribed(&ws_url(server.port), Some(CHANNEL))
            .await
            .with_context(|| format!("cannot subscribe to {CHANNEL}"))?;
        let delivered = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listener(ws, epoch, delivered.clone(), last_ns.clone(), samples, stopped));
        Ok(Subscriber { delivered, last_ns, stop, task })
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Closes the subscription; true when the server dropped it before.
    pub(super) async fn close(self) -> bool {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(stopped)) => !stopped,
            _ => {
                abort.abort();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alert_frames() {
        let frame = r#"{"event":"security.alert","channel":"private-security-alerts","data":"{\"details\":{\"n\":4,\"t\":99},\"severity\":\"low\"}"}"#;
        assert_eq!(parse_alert(frame), Some((4, 99)));
        assert_eq!(parse_alert(r#"{"event":"pusher:ping","data":"{}"}"#), None);
    }
}
