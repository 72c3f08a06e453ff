//! The notification layer's wiring on this node: the `herald` driver, which publishes into the
//! tenants' hubs, and the `Notifier` built from the configuration.

use std::sync::Arc;

use herald_notify::{
    DeliveryError, Driver, LocalPublish, Notifier, NotifySettings, Published, PusherUpstream, Records,
};
use herald_protocol::ChannelName;

use crate::config::{AdminVisibility, Config, DriverName};
use crate::tenant::Tenant;

/// The `herald` driver: publishes into one app's hub on this node.
#[derive(Debug)]
pub(crate) struct HubPublisher {
    app: Arc<Tenant>,
}

impl LocalPublish for HubPublisher {
    fn publish<'a>(&'a self, channels: &'a [String], event: &'a str, data: &'a str) -> Published<'a> {
        Box::pin(async move {
            let mut parsed = Vec::with_capacity(channels.len());
            for name in channels {
                parsed.push(
                    ChannelName::parse(name, usize::MAX)
                        .map_err(|error| DeliveryError::Permanent(format!("channel {name:?}: {error}")))?,
                );
            }
            let mut reached = 0;
            for channel in &parsed {
                reached += self
                    .app
                    .publish(channel, event, data, None, None)
                    .await
                    .map_err(|error| DeliveryError::Retryable(format!("the cluster's Redis: {error}")))?;
            }
            Ok(reached)
        })
    }
}

/// Builds the notifier from the configuration: driver, settings, records.
pub(crate) fn notifier(
    config: &Config,
    apps: &[Arc<Tenant>],
    records: Records,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Arc<Notifier>> {
    use anyhow::Context as _;
    let settings = &config.notifications;
    let app = if settings.app_id.is_empty() {
        apps.first()
    } else {
        apps.iter().find(|app| app.config.id == settings.app_id)
    }
    .context("notifications.app_id names no configured app")?
    .clone();
    let driver = match settings.driver {
        DriverName::Herald => Driver::Herald(Arc::new(HubPublisher { app: app.clone() })),
        // Forwarding to itself would publish through its own HTTP API: deliver directly.
        DriverName::Pusher if settings.upstream.is_server_at(listen) => {
            let (_, host, port) = settings.upstream.address();
            tracing::warn!(
                upstream = %format!("{host}:{port}"),
                "BROADCAST_CONNECTION=pusher points at this server itself (PUSHER_HOST/PUSHER_PORT, as in the \
                 Laravel .env): delivering with the herald driver instead of forwarding to itself"
            );
            Driver::Herald(Arc::new(HubPublisher { app: app.clone() }))
        }
        DriverName::Pusher => {
            let upstream = &settings.upstream;
            let (scheme, host, port) = upstream.address();
            let pick =
                |own: &str, fallback: &str| if own.is_empty() { fallback.to_owned() } else { own.to_owned() };
            Driver::pusher(PusherUpstream {
                scheme,
                host,
                port,
                app_id: pick(&upstream.app_id, &app.config.id),
                key: pick(&upstream.key, &app.config.key),
                secret: pick(&upstream.secret, &app.config.secret),
            })
        }
        DriverName::Log => Driver::log(settings.log_file.clone().into()),
        DriverName::Null => Driver::Null,
    };
    let notify = NotifySettings {
        catalog: herald_notify::CatalogSettings {
            // The TOML number, read once as its shortest decimal; amounts are exact from here on.
            large_donation_threshold: herald_notify::Amount::parse(
                &settings.large_donation_threshold.to_string(),
            )
            .map_err(|problem| anyhow::anyhow!("notifications.large_donation_threshold: {problem}"))?,
        },
        workers: settings.workers,
        max_attempts: settings.max_attempts,
        backoff_base_ms: settings.backoff_base_ms,
        backoff_cap_ms: settings.backoff_cap_ms,
        lease_ms: (settings.lease_secs * 1000) as i64,
        poll_interval_ms: settings.poll_interval_ms,
        admin_channels_public: config.channels.admin_visibility == AdminVisibility::Public,
    };
    Ok(Arc::new(Notifier::new(records, driver, notify)))
}
