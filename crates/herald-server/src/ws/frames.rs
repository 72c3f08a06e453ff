//! The session's handling of the client's frames: the message window, subscriptions (with their
//! auth), sign-in and client events (with their rate window).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use herald_hub::SubscribeError;
use herald_protocol::{
    channel_auth_string, encode_server_event, signin_auth_string, verify_auth, ChannelKind, ChannelName,
    ClientEvent, CloseCode, PresenceChannelData, SigninData, SubscribeData, UserData,
};
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::debug;

use super::session::{Handled, Next, Session};
use super::Frames;
use crate::config::WebhookKind;
use crate::tenant::Change;
use crate::webhooks::WebhookEvent;

impl Session<'_> {
    /// Handles one frame from the client.
    pub(super) async fn on_message<S: Frames>(&mut self, socket: &mut S, message: Message) -> Handled {
        self.app.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        self.last_seen = now;
        self.ping_sent = None;
        if !self.admit_message(now) {
            let limit = self.app.config.limits.max_messages_per_second;
            let reason = format!("more than {limit} messages per second");
            return Err(Next::CloseBecause(CloseCode::OverCapacity, reason));
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.send_error(socket, None, "binary frames are not supported; send JSON text frames")
                    .await?;
                return Ok(Next::Continue);
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(Next::Continue),
            Message::Close(_) => return Ok(Next::ClientClosed),
        };
        let event = match ClientEvent::parse(text.as_str()) {
            Ok(event) => event,
            Err(error) => {
                self.send_error(socket, None, &error.to_string()).await?;
                return Ok(Next::Continue);
            }
        };
        match event {
            ClientEvent::Ping => {
                self.send(socket, encode_server_event("pusher:pong", None, "{}", None)).await?;
                Ok(Next::Continue)
            }
            ClientEvent::Pong => Ok(Next::Continue),
            ClientEvent::Subscribe(data) => self.on_subscribe(socket, data).await,
            ClientEvent::Unsubscribe { channel } => {
                if let Some((name, user_id)) = self.channels.remove_entry(channel.as_str()) {
                    let change = self.app.hub.unsubscribe(self.handle.key, &name);
                    if let Some(change) = change.filter(|_| self.app.observed()) {
                        let socket_id = self.handle.id.as_str();
                        Box::pin(self.app.left(&name, socket_id, user_id.as_deref(), change.into())).await;
                    }
                }
                Ok(Next::Continue)
            }
            ClientEvent::Signin(data) => self.on_signin(socket, data).await,
            ClientEvent::Client { event, channel, data } => {
                self.on_client_event(socket, event, channel, data).await
            }
        }
    }

    /// Counts one inbound message; false when the connection is over `max_messages_per_second`.
    fn admit_message(&mut self, now: Instant) -> bool {
        let limit = self.app.config.limits.max_messages_per_second;
        let (window_start, count) = &mut self.messages_window;
        if now.duration_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *count = 0;
        }
        *count += 1;
        limit == 0 || *count <= limit
    }

    async fn on_subscribe<S: Frames>(&mut self, socket: &mut S, data: SubscribeData) -> Handled {
        let limits = &self.app.config.limits;
        let channel = match ChannelName::parse(&data.channel, limits.max_channel_name_len) {
            Ok(channel) => channel,
            Err(error) => {
                self.send_subscription_error(
                    socket,
                    &data.channel,
                    "InvalidChannel",
                    &error.to_string(),
                    400,
                )
                .await?;
                return Ok(Next::Continue);
            }
        };
        if !self.channels.contains_key(&channel) && self.channels.len() >= limits.max_channels_per_connection
        {
            let message = format!(
                "a connection may subscribe to at most {} channels",
                limits.max_channels_per_connection
            );
            self.send_subscription_error(socket, channel.as_str(), "LimitReached", &message, 400).await?;
            return Ok(Next::Continue);
        }
        let member = match self.authorize(&channel, &data) {
            Ok(member) => member,
            Err((message, status)) => {
                debug!(channel = %channel, ?message, "subscription refused");
                self.send_subscription_error(socket, channel.as_str(), "AuthError", &message, status).await?;
                return Ok(Next::Continue);
            }
        };
        let user_id: Option<Arc<str>> = member.as_ref().map(|(id, _)| Arc::from(id.as_str()));
        // In a cluster (or to webhooks) the member is told after the hub has it.
        let cluster_member = if self.app.observed() { member.clone() } else { None };
        let outcome =
            match self.app.hub.subscribe(&self.handle, &channel, member, limits.max_presence_members) {
                Ok(outcome) => outcome,
                Err(SubscribeError::PresenceFull { max }) => {
                    let message = format!("presence channel is full ({max} members)");
                    self.send_subscription_error(socket, channel.as_str(), "LimitReached", &message, 403)
                        .await?;
                    return Ok(Next::Continue);
                }
                Err(SubscribeError::SocketGone) => return Ok(Next::End),
            };
        let local = Change::from(&outcome);
        let mut presence = outcome.presence;
        if self.app.observed() {
            let socket_id = self.handle.id.as_str();
            let max = limits.max_presence_members;
            match Box::pin(self.app.joined(&channel, socket_id, cluster_member.as_ref(), local, max)).await {
                Ok(Some(members)) => presence = Some(members),
                Ok(None) => {}
                Err(max) => {
                    self.app.hub.unsubscribe(self.handle.key, &channel);
                    let message = format!("presence channel is full ({max} members)");
                    self.send_subscription_error(socket, channel.as_str(), "LimitReached", &message, 403)
                        .await?;
                    return Ok(Next::Continue);
                }
            }
        }
        // Recorded before any reply is written, so that a session ending mid-reply still leaves
        // the channel (and its presence) when it finishes.
        self.channels.insert(channel.clone(), user_id);
        if channel.kind().requires_auth() {
            self.authorized = true;
        }
        let succeeded_data = presence.map_or_else(|| "{}".to_owned(), |presence| presence.to_data());
        let succeeded = encode_server_event(
            "pusher_internal:subscription_succeeded",
            Some(channel.as_str()),
            &succeeded_data,
            None,
        );
        self.send(socket, succeeded).await?;
        if channel.is_cache() {
            let frame = match outcome.cached {
                Some(frame) => frame,
                None => {
                    let name = channel.as_str();
                    self.app.webhook(WebhookKind::CacheMiss, || {
                        WebhookEvent::channel(WebhookKind::CacheMiss, name)
                    });
                    encode_server_event("pusher:cache_miss", Some(name), "{}", None).into()
                }
            };
            self.send(socket, frame).await?;
        }
        Ok(Next::Continue)
    }

    /// Checks the subscription's auth; returns the presence member for presence channels.
    fn authorize(
        &self,
        channel: &ChannelName,
        data: &SubscribeData,
    ) -> Result<Option<(String, Value)>, (String, u16)> {
        let config = &self.app.config;
        match channel.kind() {
            ChannelKind::Public => Ok(None),
            ChannelKind::ServerToUser => match (&self.user_id, channel.server_to_user_id()) {
                (Some(user), Some(owner)) if user == owner => Ok(None),
                _ => Err(("only the connection signed in as this user may subscribe".into(), 403)),
            },
            kind => {
                let auth = data
                    .auth
                    .as_deref()
                    .ok_or_else(|| ("auth is required for this channel".to_owned(), 401))?;
                let channel_data =
                    if kind == ChannelKind::Presence {
                        Some(data.channel_data.as_deref().ok_or_else(|| {
                            ("channel_data is required for presence channels".to_owned(), 400)
                        })?)
                    } else {
                        None
                    };
                let signed = channel_auth_string(self.handle.id.as_str(), channel.as_str(), channel_data);
                verify_auth(&config.key, &config.secret, &signed, auth)
                    .map_err(|error| (error.to_string(), 401))?;
                match channel_data {
                    Some(text) => {
                        let limits = &config.limits;
                        let member = PresenceChannelData::parse(
                            text,
                            limits.max_presence_user_id_len,
                            limits.max_presence_user_info_bytes,
                        )
                        .map_err(|error| (error.to_string(), 400))?;
                        Ok(Some((member.user_id, member.user_info)))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    async fn on_signin<S: Frames>(&mut self, socket: &mut S, data: SigninData) -> Handled {
        let config = &self.app.config;
        let signed = signin_auth_string(self.handle.id.as_str(), &data.user_data);
        if let Err(error) = verify_auth(&config.key, &config.secret, &signed, &data.auth) {
            debug!(?error, "sign-in refused");
            return Ok(Next::Close(CloseCode::Unauthorized));
        }
        let user = match UserData::parse(&data.user_data) {
            Ok(user) => user,
            Err(error) => {
                return Ok(Next::CloseBecause(CloseCode::Unauthorized, error.to_string()));
            }
        };
        // Over 100 ids: 4302 (an error, not a close), and the sign-in goes on watching nobody.
        let watchlist = if user.watchlist_len > 100 {
            let code = CloseCode::WatchlistLimit;
            self.send_error(socket, Some(code.code()), code.message()).await?;
            Vec::new()
        } else {
            user.watchlist
        };
        if let Some(previous) = self.user_id.take() {
            Box::pin(self.app.signed_out(self.handle.key, &previous)).await;
        }
        let online = Box::pin(self.app.signed_in(self.handle.key, &user.id, &watchlist)).await;
        self.user_id = Some(user.id);
        self.authorized = true;
        let reply = json!({ "user_data": data.user_data }).to_string();
        let success = encode_server_event("pusher:signin_success", None, &reply, None);
        self.send(socket, success).await?;
        if !watchlist.is_empty() {
            let online: Vec<&str> = online.iter().map(String::as_str).collect();
            let frame: Utf8Bytes = herald_hub::watchlist_event("online", &online);
            self.send(socket, frame).await?;
        }
        Ok(Next::Continue)
    }

    async fn on_client_event<S: Frames>(
        &mut self,
        socket: &mut S,
        event: String,
        channel: String,
        data: Value,
    ) -> Handled {
        let config = &self.app.config;
        if !config.client_events {
            self.send_error(socket, None, "client events are not enabled for this app").await?;
            return Ok(Next::Continue);
        }
        let Some((name, user_id)) = self.channels.get_key_value(channel.as_str()) else {
            self.send_error(
                socket,
                None,
                "client events may only be sent on a channel this connection is subscribed to",
            )
            .await?;
            return Ok(Next::Continue);
        };
        if !matches!(name.kind(), ChannelKind::Private | ChannelKind::Presence) {
            self.send_error(socket, None, "client events may only be sent on private and presence channels")
                .await?;
            return Ok(Next::Continue);
        }
        if event.len() > config.limits.max_event_name_len {
            self.send_error(socket, None, "event name is too long").await?;
            return Ok(Next::Continue);
        }
        let now = Instant::now();
        let (window_start, count) = &mut self.client_events_window;
        if now.duration_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *count = 0;
        }
        *count += 1;
        if *count > config.limits.client_events_per_second {
            let code = CloseCode::ClientEventRateLimit;
            self.send_error(socket, Some(code.code()), code.message()).await?;
            return Ok(Next::Continue);
        }
        let data = match data {
            Value::String(text) => text,
            other => other.to_string(),
        };
        if data.len() > config.limits.max_event_data_bytes {
            let message = format!("event data is larger than {} bytes", config.limits.max_event_data_bytes);
            self.send_error(socket, None, &message).await?;
            return Ok(Next::Continue);
        }
        let socket_id = self.handle.id.as_str();
        self.app.relay(name, &event, &data, socket_id, user_id.as_deref()).await;
        self.app.webhook(WebhookKind::ClientEvent, || {
            WebhookEvent::client_event(name.as_str(), &event, &data, socket_id, user_id.as_deref())
        });
        Ok(Next::Continue)
    }
}
