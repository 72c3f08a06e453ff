//! Herald's configuration: one tree, layered defaults → TOML file → environment, validated whole.
//!
//! The environment is read through [`EnvSource`] so tests never touch the process environment.
//! Every problem is collected and reported at once; nothing falls back to a default silently.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use herald_auth::PolicySpec;
use herald_protocol::Limits;
use serde::{Deserialize, Serialize};

mod auth;
mod cluster;
mod credentials;
mod describe;
mod notifications;
mod webhooks;

pub use auth::{AdminVisibility, AuthConfig, ChannelsConfig, DatabaseConfig, DEV_JWT_SECRET};
pub use cluster::ClusterConfig;
pub use credentials::{
    is_loopback_host, provision, read_generated, sqlite_dir, Provisioned, CREDENTIALS_FILE,
};
pub use describe::{describe, Described};
pub use notifications::{DriverName, NotificationsConfig, UpstreamConfig};
pub use webhooks::{WebhookConfig, WebhookKind, WebhooksConfig};

/// Key, id and secret of the development app used when none is configured.
pub const DEV_APP: (&str, &str, &str) = ("1000001", "app-key", "app-secret");

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub channels: ChannelsConfig,
    pub notifications: NotificationsConfig,
    pub admin: AdminConfig,
    /// Several nodes sharing Redis and PostgreSQL; off unless `redis_url` is set.
    pub cluster: ClusterConfig,
    /// How webhooks are delivered; each app names its receivers in `apps.webhooks`.
    pub webhooks: WebhooksConfig,
    /// Apps served; empty means the `PUSHER_APP_*` app, or the development app.
    pub apps: Vec<AppConfig>,
    /// Channel policies, before the platform's defaults (see docs/authorization.md).
    pub policies: Vec<PolicySpec>,
}

/// The listener and connection timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the WebSocket + HTTP API listener binds.
    pub host: String,
    /// Port of that listener (6001, the port Laravel's Pusher-compatible servers use).
    pub port: u16,
    /// Seconds of silence after which the server pings a client; also sent to clients.
    pub activity_timeout_secs: u64,
    /// Seconds a client has to answer a server ping before it is closed with 4201.
    pub pong_timeout_secs: u64,
    /// Seconds graceful shutdown waits for sockets to close.
    pub shutdown_grace_secs: u64,
    /// Frames queued per socket before it counts as a slow consumer (closed with 4100).
    pub outbox_capacity: usize,
    /// Connections (HTTP and WebSocket) open at once on this listener; 0: as many as the
    /// file-descriptor limit allows after `fd_reserve` and the admin listener's share.
    pub max_connections: usize,
    /// Connections open at once from one client IP address; 0: no per-IP limit.
    pub max_connections_per_ip: usize,
    /// Client addresses the per-IP limit does not apply to (a reverse proxy on this host).
    pub ip_limit_exempt: Vec<IpAddr>,
    /// Seconds a client has to send a request's headers, counted from the connection's opening
    /// or the end of the previous response (so also the keep-alive idle timeout).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body; then 408.
    pub body_timeout_secs: u64,
    /// File descriptors kept for the process itself (database, logs, refusals) when the
    /// connection capacity is derived from the limit.
    pub fd_reserve: usize,
    /// Development mode (`herald serve --dev`): with no token secret or app configured, the
    /// public development ones are used even off loopback. Never in production.
    pub development: bool,
    /// PEM certificate chain: with `tls_key`, this listener serves `wss://` and `https://`
    /// itself (plain connections are still accepted on the same port). Empty: plain only.
    pub tls_cert: String,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1); reread with it on SIGHUP.
    pub tls_key: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "0.0.0.0".into(),
            port: 6001,
            activity_timeout_secs: 120,
            pong_timeout_secs: 30,
            shutdown_grace_secs: 10,
            outbox_capacity: herald_hub::OUTBOX_CAPACITY,
            max_connections: 0,
            max_connections_per_ip: 1000,
            ip_limit_exempt: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)],
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            fd_reserve: 128,
            development: false,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// The admin listener: metrics, health, the admin API and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub host: String,
    pub port: u16,
    /// Token for the admin API and dashboard (`HERALD_ADMIN_TOKEN`); required unless `host` is
    /// a loopback address.
    pub token: String,
    /// Connections open at once on the admin listener (kept apart from the main listener's, so
    /// metrics and probes answer while the main listener is full).
    pub max_connections: usize,
    /// With no `token`: a platform bearer token (JWT) with the `super_admin` role is the admin
    /// credential. Off by default; cannot be combined with `token` (the token is then the only
    /// credential, never bypassed by a JWT).
    pub allow_jwt: bool,
    /// `Host` names the admin listener answers to besides `localhost`, `127.0.0.1`, `[::1]` and
    /// `host` itself (always accepted, with or without a port). Others get 421 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain of the admin listener (its own, like `server.tls_cert`); empty:
    /// plain HTTP.
    pub tls_cert: String,
    /// PEM private key of `admin.tls_cert`.
    pub tls_key: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            host: "127.0.0.1".into(),
            port: 9601,
            token: String::new(),
            max_connections: 64,
            allow_jwt: false,
            allowed_hosts: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// One app: its credentials, switches and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    /// A disabled app refuses connections (4003) and API calls (403).
    pub enabled: bool,
    /// Whether clients may send `client-*` events.
    pub client_events: bool,
    /// Connections must sign in (or join an authorized channel) within the timeout, or get 4009.
    pub user_authentication_required: bool,
    pub user_authentication_timeout_secs: u64,
    /// Connections at once; 0 means no limit. Over it: 4004.
    pub max_connections: usize,
    /// `Origin`s allowed to connect: `*`, exact origins, or `*.example.com` patterns.
    pub allowed_origins: Vec<String>,
    /// Signed HTTP API requests per second; 0 means no limit. Over it: 429.
    pub max_api_requests_per_second: u32,
    /// Only TLS WebSocket connections (`wss://` to Herald, or through a trusted proxy that
    /// terminated TLS): a plain one gets 4000, and pusher-js reconnects with TLS.
    pub tls_only: bool,
    pub limits: Limits,
    /// Subscription counting: `subscription_count` webhooks on every change of a channel's
    /// subscriptions.
    pub subscription_count: bool,
    /// Receivers of this app's webhooks (`[[apps.webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Events that happen together go to a receiver in one request (`webhooks.batch_ms`);
    /// off: one request per event.
    pub webhook_batching: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            enabled: true,
            client_events: true,
            user_authentication_required: false,
            user_authentication_timeout_secs: 30,
            max_connections: 0,
            allowed_origins: vec!["*".into()],
            max_api_requests_per_second: 0,
            tls_only: false,
            limits: Limits::default(),
            subscription_count: false,
            webhooks: Vec::new(),
            webhook_batching: false,
        }
    }
}

impl AppConfig {
    /// Whether a browser page from `origin` may connect.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.iter().any(|allowed| allowed == "*") {
            return true;
        }
        // Non-browser clients send no Origin; only browsers are constrained by the list.
        let Some(origin) = origin else { return true };
        self.allowed_origins.iter().any(|allowed| match allowed.strip_prefix("*.") {
            Some(suffix) => origin
                .split_once("://")
                .map(|(_, host)| host)
                .is_some_and(|host| host.ends_with(&format!(".{suffix}")) || host == suffix),
            None => allowed.trim_end_matches('/') == origin,
        })
    }
}

/// Where environment variables come from: the process, or a map in tests.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `prefix`.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        std::env::vars().filter(|(name, _)| name.starts_with(prefix)).collect()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|value| !value.is_empty()).cloned()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Every problem found in a configuration, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The configuration after loading, with what start-up should warn about.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Where generated credentials came from (`credentials::provision`), if they are in use.
    pub credentials_file: Option<PathBuf>,
}

impl Loaded {
    /// Where Herald keeps its own files (generated credentials, the runtime file that the tools
    /// read): the SQLite database's directory, else the configuration file's, else the working
    /// directory.
    pub fn data_dir(&self) -> PathBuf {
        sqlite_dir(&self.config.database.url)
            .or_else(|| {
                let file = self.file.as_deref()?;
                Some(
                    file.parent()
                        .filter(|dir| !dir.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .to_path_buf(),
                )
            })
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database_url: Option<String>,
    /// `--redis-url`: joins a cluster of nodes (`cluster.redis_url`).
    pub redis_url: Option<String>,
    /// `--dev`: development mode (`server.development`).
    pub development: bool,
}

impl Config {
    /// Loads defaults → file (`--config` or `HERALD_CONFIG`) → environment → command line.
    pub fn load(env: &dyn EnvSource, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let file = overrides.config_file.clone().or_else(|| env.var("HERALD_CONFIG").map(PathBuf::from));
        let mut tree = match &file {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let mut problems = Vec::new();
        apply_env(&mut tree, env, &mut problems);
        if let Some(host) = &overrides.host {
            set_path(&mut tree, &["server", "host"], toml::Value::String(host.clone()));
        }
        if let Some(port) = overrides.port {
            set_path(&mut tree, &["server", "port"], toml::Value::Integer(port.into()));
        }
        if overrides.development {
            set_path(&mut tree, &["server", "development"], toml::Value::Boolean(true));
        }
        // Named variables that Laravel deployments already have.
        let database_url = overrides.database_url.clone().or_else(|| env.var("DATABASE_URL"));
        if let Some(url) = database_url {
            set_path(&mut tree, &["database", "url"], toml::Value::String(url));
        }
        if let Some(url) = overrides.redis_url.clone().or_else(|| env.var("REDIS_URL")) {
            set_path(&mut tree, &["cluster", "redis_url"], toml::Value::String(url));
        }
        for (variable, path) in [
            ("BROADCAST_CONNECTION", ["notifications", "driver"]),
            ("PUSHER_HOST", ["upstream", "host"]),
            ("PUSHER_SCHEME", ["upstream", "scheme"]),
            ("PUSHER_APP_CLUSTER", ["upstream", "cluster"]),
        ] {
            if let Some(value) = env.var(variable) {
                if variable == "BROADCAST_CONNECTION"
                    && !matches!(value.as_str(), "herald" | "pusher" | "log" | "null")
                {
                    problems.push(format!(
                        "BROADCAST_CONNECTION={value:?}: Herald delivers with herald, pusher, log or null"
                    ));
                    continue;
                }
                let keys: Vec<&str> = if path[0] == "upstream" {
                    vec!["notifications", "upstream", path[1]]
                } else {
                    path.to_vec()
                };
                set_path(&mut tree, &keys, toml::Value::String(value));
            }
        }
        if let Some(port) = env.var("PUSHER_PORT") {
            set_path(&mut tree, &["notifications", "upstream", "port"], env_value(&port));
        }
        if let Some(token) = env.var("HERALD_ADMIN_TOKEN") {
            set_path(&mut tree, &["admin", "token"], toml::Value::String(token));
        }
        if let Some(secret) = env.var("HERALD_JWT_SECRET") {
            set_path(&mut tree, &["auth", "jwt_secret"], toml::Value::String(secret));
        }
        let (mut config, mut warnings) = Config::from_table(tree, env, problems)?;
        // The public development credentials only in development mode or on a loopback
        // listener; elsewhere `credentials::provision` generates and stores private ones.
        let why = if config.server.development {
            Some("development mode")
        } else if is_loopback_host(&config.server.host) {
            Some("loopback listener")
        } else {
            None
        };
        if let Some(why) = why {
            if config.auth.jwt_secret.is_empty() && config.auth.algorithm == herald_auth::Algorithm::HS256 {
                config.auth.jwt_secret = DEV_JWT_SECRET.into();
                warnings.push(format!(
                    "no token secret configured ({why}): bearer tokens are checked with the public development secret; set HERALD_JWT_SECRET for anything but development"
                ));
            }
            if config.apps.is_empty() {
                warnings.push(format!(
                    "no app configured ({why}): using the development app (id {:?}, key {:?}, secret {:?}); set PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET for anything but development",
                    DEV_APP.0, DEV_APP.1, DEV_APP.2
                ));
                config.apps.push(AppConfig {
                    id: DEV_APP.0.into(),
                    key: DEV_APP.1.into(),
                    secret: DEV_APP.2.into(),
                    ..AppConfig::default()
                });
            }
        }
        if config.channels.admin_visibility == AdminVisibility::Public {
            warnings.push("channels.admin_visibility = \"public\": admin channels are public, anyone holding the app key can listen to them".into());
        }
        Ok(Loaded { config, warnings, file, credentials_file: None })
    }

    /// `load`, then the generated credentials when the configuration has none
    /// (`credentials::provision`): what `herald serve`, `herald token` and the tools use.
    pub fn load_provisioned(
        env: &dyn EnvSource,
        overrides: &Overrides,
    ) -> Result<(Loaded, Option<Provisioned>), ConfigError> {
        let mut loaded = Config::load(env, overrides)?;
        let provisioned = provision(&mut loaded)?;
        Ok((loaded, provisioned))
    }

    /// `load`, then the credentials a server generated, if any, without ever creating them
    /// (`credentials::read_generated`): what the read-only tools use.
    pub fn load_for_tools(env: &dyn EnvSource, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let mut loaded = Config::load(env, overrides)?;
        read_generated(&mut loaded)?;
        Ok(loaded)
    }

    /// Parses a TOML document alone (no environment), as the documented example is checked.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let tree: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| ConfigError { problems: vec![error.message().to_owned()] })?;
        let empty: BTreeMap<String, String> = BTreeMap::new();
        Config::from_table(tree, &empty, Vec::new()).map(|(config, _)| config)
    }

    fn from_table(
        tree: toml::Table,
        env: &dyn EnvSource,
        mut problems: Vec<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut tree = toml::Value::Table(tree);
        if let toml::Value::Table(table) = &mut tree {
            unknown_keys(table, &mut problems);
        }
        let warnings = Vec::new();
        let Some(mut config) = deserialize_every_problem(tree, &mut problems) else {
            return Err(ConfigError { problems });
        };
        apply_pusher_env(&mut config, env, &mut problems);
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok((config, warnings))
        } else {
            Err(ConfigError { problems })
        }
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if self.server.host.parse::<IpAddr>().is_err() && self.server.host != "localhost" {
            problems.push(format!("server.host: {:?} is not an IP address", self.server.host));
        }
        if self.server.activity_timeout_secs == 0 {
            problems.push("server.activity_timeout_secs: must be at least 1".into());
        }
        if self.server.pong_timeout_secs == 0 {
            problems.push("server.pong_timeout_secs: must be at least 1".into());
        }
        if self.server.outbox_capacity == 0 {
            problems.push("server.outbox_capacity: must be at least 1".into());
        }
        for (key, value) in [
            ("server.header_timeout_secs", self.server.header_timeout_secs),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("admin.max_connections", self.admin.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        validate_tls("server", &self.server.tls_cert, &self.server.tls_key, problems);
        validate_tls("admin", &self.admin.tls_cert, &self.admin.tls_key, problems);
        let app_ids: Vec<&str> = self.apps.iter().map(|app| app.id.as_str()).collect();
        auth::validate(&self.auth, &self.policies, &app_ids, problems);
        notifications::validate(&self.notifications, &app_ids, problems);
        cluster::validate(&self.cluster, &self.database.url, problems);
        webhooks::validate(&self.webhooks, problems);
        if self.admin.allow_jwt && !self.admin.token.is_empty() {
            problems.push(
                "admin.allow_jwt: cannot be combined with admin.token, which is then the only admin credential; unset one of them".into(),
            );
        }
        match self.admin.host.parse::<IpAddr>() {
            Ok(ip) if !ip.is_loopback() && self.admin.token.is_empty() && !self.admin.allow_jwt => {
                problems.push(format!(
                "admin.token: required when admin.host ({}) is not a loopback address (HERALD_ADMIN_TOKEN), unless admin.allow_jwt is on",
                self.admin.host
            ))
            }
            Ok(_) => {}
            Err(_) if self.admin.host == "localhost" => {}
            Err(_) => problems.push(format!("admin.host: {:?} is not an IP address", self.admin.host)),
        }
        for (index, name) in self.admin.allowed_hosts.iter().enumerate() {
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
                problems.push(format!("admin.allowed_hosts[{index}]: {name:?} is not a host name"));
            }
        }
        if !self.database.url.starts_with("sqlite:")
            && !self.database.url.starts_with("postgres://")
            && !self.database.url.starts_with("postgresql://")
        {
            problems.push(format!(
                "database.url: {:?} is neither sqlite:... nor postgres://...",
                self.database.url
            ));
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (index, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{index}]");
            for (field, value) in [("id", &app.id), ("key", &app.key), ("secret", &app.secret)] {
                if value.is_empty() {
                    problems.push(format!("{at}.{field}: must not be empty"));
                } else if value.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
                    problems.push(format!("{at}.{field}: must not contain spaces, '/' or ':'"));
                }
            }
            if !app.id.is_empty() && !ids.insert(app.id.clone()) {
                problems.push(format!("{at}.id: {:?} is declared twice", app.id));
            }
            if !app.key.is_empty() && !keys.insert(app.key.clone()) {
                problems.push(format!("{at}.key: {:?} is used by two apps", app.key));
            }
            if app.allowed_origins.is_empty() {
                problems.push(format!("{at}.allowed_origins: must list at least one origin (\"*\" for any)"));
            }
            webhooks::validate_app(&at, &app.webhooks, problems);
            let limits = &app.limits;
            for (field, value) in [
                ("max_event_data_bytes", limits.max_event_data_bytes),
                ("max_channels_per_trigger", limits.max_channels_per_trigger),
                ("max_batch_events", limits.max_batch_events),
                ("max_channel_name_len", limits.max_channel_name_len),
                ("max_event_name_len", limits.max_event_name_len),
                ("max_presence_members", limits.max_presence_members),
                ("max_ws_message_bytes", limits.max_ws_message_bytes),
                ("max_http_body_bytes", limits.max_http_body_bytes),
            ] {
                if value == 0 {
                    problems.push(format!("{at}.limits.{field}: must be at least 1"));
                }
            }
        }
    }
}

/// A section's `tls_cert` and `tls_key`: both or neither, and when both, files that load (so a
/// bad certificate stops start-up with the other problems, exit 64, not at bind time).
fn validate_tls(section: &'static str, cert: &str, key: &str, problems: &mut Vec<String>) {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => {}
        (false, true) => problems.push(format!("{section}.tls_key: required with {section}.tls_cert")),
        (true, false) => problems.push(format!("{section}.tls_cert: required with {section}.tls_key")),
        (false, false) => {
            if let Some(Err(error)) = crate::tls::CertFiles::of(section, cert, key).map(|files| files.load())
            {
                problems.push(error.to_string());
            }
        }
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        problems: vec![format!("config file {}: {error}", path.display())],
    })?;
    text.parse().map_err(|error: toml::de::Error| ConfigError {
        problems: vec![format!("config file {}: {}", path.display(), error.to_string().trim())],
    })
}

/// `HERALD_SECTION__KEY=value` sets `section.key`. Variables without `__` (such as
/// `HERALD_CONFIG`) name files or switches, not config keys, and are left alone.
fn apply_env(tree: &mut toml::Table, env: &dyn EnvSource, problems: &mut Vec<String>) {
    for (name, value) in env.vars_with_prefix("HERALD_") {
        let path = &name["HERALD_".len()..];
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) || keys.first().is_some_and(|key| key == "apps") {
            problems.push(format!(
                "{name}: not a configuration key (apps are set in the file or with PUSHER_APP_*)"
            ));
            continue;
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        set_path(tree, &keys, env_value(&value));
    }
}

/// An environment value as TOML: integers and booleans as such, lists as `[..]`, else a string.
fn env_value(value: &str) -> toml::Value {
    if let Ok(number) = value.parse::<i64>() {
        return toml::Value::Integer(number);
    }
    match value {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    if value.starts_with('[') {
        if let Ok(table) = format!("v = {value}").parse::<toml::Table>() {
            if let Some(list) = table.get("v") {
                return list.clone();
            }
        }
    }
    toml::Value::String(value.to_owned())
}

fn set_path(tree: &mut toml::Table, keys: &[&str], value: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut table = tree;
    for key in parents {
        let entry = table.entry((*key).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("made a table just above");
    }
    table.insert((*last).to_owned(), value);
}

/// `PUSHER_APP_ID` / `_KEY` / `_SECRET` define the default app: they replace the file's app with
/// the same id, or are added to the file's apps.
fn apply_pusher_env(config: &mut Config, env: &dyn EnvSource, problems: &mut Vec<String>) {
    let id = env.var("PUSHER_APP_ID");
    let key = env.var("PUSHER_APP_KEY");
    let secret = env.var("PUSHER_APP_SECRET");
    match (id, key, secret) {
        (None, None, None) => {}
        (Some(id), Some(key), Some(secret)) => {
            if let Some(app) = config.apps.iter_mut().find(|app| app.id == id) {
                app.key = key;
                app.secret = secret;
            } else {
                config.apps.push(AppConfig { id, key, secret, ..AppConfig::default() });
            }
        }
        (id, key, secret) => {
            for (name, value) in
                [("PUSHER_APP_ID", id), ("PUSHER_APP_KEY", key), ("PUSHER_APP_SECRET", secret)]
            {
                if value.is_none() {
                    problems
                        .push(format!("{name}: must be set together with the other PUSHER_APP_* variables"));
                }
            }
        }
    }
}

/// The most values `deserialize_every_problem` reports before it gives up.
const MAX_VALUE_PROBLEMS: usize = 100;

/// Deserializes the tree, reporting every value of the wrong type or out of range, not just the
/// first: each bad value is reported, taken out (its default applies) and the rest read again.
/// `None` when any problem was found, also the unknown keys already in `problems`.
fn deserialize_every_problem(mut tree: toml::Value, problems: &mut Vec<String>) -> Option<Config> {
    for _ in 0..MAX_VALUE_PROBLEMS {
        match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return problems.is_empty().then_some(config),
            Err(error) => {
                let error: serde_path_to_error::Error<toml::de::Error> = error;
                problems.push(format!("{}: {}", error.path(), error.inner().message().trim()));
                if !remove_path(&mut tree, error.path()) {
                    return None;
                }
            }
        }
    }
    None
}

/// Takes the value at `path` out of the tree; false when there is nothing there to take.
fn remove_path(tree: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut node = tree;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, toml::Value::Table(table)) => match table.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, toml::Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, toml::Value::Table(table)) => table.remove(key).is_some(),
        // An element of a list cannot default on its own: the list goes.
        _ => false,
    }
}

/// Reports every key of `tree` that the configuration does not have, by comparing with the
/// defaults serialized (so the list of keys can never drift from the structs), and takes them
/// out, so that the values around them are still checked.
fn unknown_keys(tree: &mut toml::Table, problems: &mut Vec<String>) {
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let app_defaults = toml::Table::try_from(AppConfig::default()).expect("defaults serialize");
    tree.retain(|key, value| match (key, value) {
        ("apps", toml::Value::Array(apps)) => {
            for (index, app) in apps.iter_mut().enumerate() {
                if let toml::Value::Table(app) = app {
                    compare_keys(app, &app_defaults, &format!("apps[{index}]"), problems);
                }
            }
            true
        }
        ("apps", _) | ("policies", _) => true,
        (key, toml::Value::Table(section)) => match defaults.get(key) {
            Some(toml::Value::Table(known)) => {
                compare_keys(section, known, key, problems);
                true
            }
            _ => {
                problems.push(format!("{key}: unknown key"));
                false
            }
        },
        (key, _) if !defaults.contains_key(key) => {
            problems.push(format!("{key}: unknown key"));
            false
        }
        _ => true,
    });
}

fn compare_keys(given: &mut toml::Table, known: &toml::Table, at: &str, problems: &mut Vec<String>) {
    given.retain(|key, value| match known.get(key) {
        None => {
            problems.push(format!("{at}.{key}: unknown key"));
            false
        }
        Some(toml::Value::Table(inner)) => {
            if let toml::Value::Table(value) = value {
                compare_keys(value, inner, &format!("{at}.{key}"), problems);
            }
            true
        }
        Some(_) => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher app ids are numeric, and the official Python SDK refuses any other.
    #[test]
    fn the_development_app_id_is_numeric() {
        assert!(DEV_APP.0.bytes().all(|byte| byte.is_ascii_digit()), "{}", DEV_APP.0);
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_development_credentials_need_development_mode_or_loopback() {
        let loopback = Overrides { host: Some("127.0.0.1".into()), ..Overrides::default() };
        let loaded = Config::load(&env(&[]), &loopback).expect("loads");
        assert_eq!(loaded.config.apps.len(), 1);
        assert_eq!(loaded.config.apps[0].key, "app-key");
        assert_eq!(loaded.config.auth.jwt_secret, DEV_JWT_SECRET);
        assert!(loaded.warnings.iter().any(|w| w.contains("development app") && w.contains("loopback")));

        let public = Config::load(&env(&[]), &Overrides::default()).expect("loads");
        assert_eq!(public.config.server.host, "0.0.0.0");
        assert!(public.config.apps.is_empty(), "left to credentials::provision");
        assert!(public.config.auth.jwt_secret.is_empty());

        let dev = Overrides { development: true, ..Overrides::default() };
        let loaded = Config::load(&env(&[]), &dev).expect("loads");
        assert_eq!(loaded.config.apps[0].key, "app-key");
        assert!(loaded.warnings.iter().any(|w| w.contains("development mode")));
        let loaded = Config::load(&env(&[("HERALD_SERVER__DEVELOPMENT", "true")]), &Overrides::default())
            .expect("loads");
        assert_eq!(loaded.config.auth.jwt_secret, DEV_JWT_SECRET);
    }

    #[test]
    fn the_cluster_needs_postgres_and_names_every_bad_key() {
        let dev = ("HERALD_SERVER__DEVELOPMENT", "true");
        let sqlite =
            Config::load(&env(&[dev, ("REDIS_URL", "redis://127.0.0.1:6379")]), &Overrides::default())
                .expect_err("SQLite refused with the cluster on");
        assert!(
            sqlite
                .problems
                .iter()
                .any(|p| p.starts_with("cluster.redis_url:") && p.contains("DATABASE_URL=postgres")),
            "{sqlite:?}"
        );
        let vars = env(&[
            dev,
            ("DATABASE_URL", "postgres://herald@db/herald"),
            ("REDIS_URL", "redis://a:6379, http://b:6379"),
            ("HERALD_CLUSTER__HEARTBEAT_SECS", "10"),
            ("HERALD_CLUSTER__NODE_TTL_SECS", "15"),
            ("HERALD_CLUSTER__PREFIX", "a{b}"),
        ]);
        let error = Config::load(&vars, &Overrides::default()).expect_err("refused");
        for key in ["cluster.redis_url: \"http://b:6379\"", "cluster.node_ttl_secs:", "cluster.prefix:"] {
            assert!(error.problems.iter().any(|p| p.starts_with(key)), "{key} in {:?}", error.problems);
        }
        let vars = env(&[
            dev,
            ("DATABASE_URL", "postgres://herald@db/herald"),
            ("REDIS_URL", "redis://:secret@a:6379,redis://b:6379"),
        ]);
        let loaded =
            Config::load(&vars, &Overrides::default()).expect("a Redis Cluster with PostgreSQL loads");
        assert!(loaded.config.cluster.enabled());
        assert_eq!(loaded.config.cluster.urls(), ["redis://:secret@a:6379", "redis://b:6379"]);
        assert!(Config::load(&env(&[dev]), &Overrides::default())
            .expect("loads")
            .config
            .cluster
            .urls()
            .is_empty());
    }

    #[test]
    fn generated_credentials_are_stored_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("herald-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = format!("sqlite://{}", dir.join("herald.db").display());
        let vars = env(&[("DATABASE_URL", &url)]);
        let (first, provisioned) = Config::load_provisioned(&vars, &Overrides::default()).expect("loads");
        let provisioned = provisioned.expect("generated");
        assert!(provisioned.created && provisioned.jwt_secret);
        assert_eq!(provisioned.path, dir.join(CREDENTIALS_FILE));
        assert!(first.config.apps[0].id.parse::<u64>().is_ok(), "numeric app id");
        assert_ne!(first.config.auth.jwt_secret, DEV_JWT_SECRET);
        assert_eq!(first.config.auth.jwt_secret.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&provisioned.path).expect("stored").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, again) = Config::load_provisioned(&vars, &Overrides::default()).expect("loads");
        assert!(!again.expect("read").created);
        assert_eq!(second.config.apps, first.config.apps);
        assert_eq!(second.config.auth.jwt_secret, first.config.auth.jwt_secret);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn postgres_without_credentials_names_the_variables() {
        let vars = env(&[("DATABASE_URL", "postgres://herald@db/herald")]);
        let error = Config::load_provisioned(&vars, &Overrides::default()).expect_err("refused");
        let all = error.problems.join("\n");
        assert!(all.contains("auth.jwt_secret: required") && all.contains("HERALD_JWT_SECRET"), "{all}");
        assert!(all.contains("apps: required") && all.contains("PUSHER_APP_ID"), "{all}");
    }

    #[test]
    fn pusher_variables_define_the_default_app() {
        let vars = env(&[("PUSHER_APP_ID", "1"), ("PUSHER_APP_KEY", "k"), ("PUSHER_APP_SECRET", "s")]);
        let loaded = Config::load(&vars, &Overrides::default()).expect("loads");
        assert_eq!(loaded.config.apps[0].id, "1");
        assert!(!loaded.warnings.iter().any(|w| w.contains("development app")));
        let partial = env(&[("PUSHER_APP_ID", "1")]);
        let error = Config::load(&partial, &Overrides::default()).expect_err("incomplete");
        assert_eq!(error.problems.len(), 2);
    }

    #[test]
    fn herald_variables_nest_with_double_underscores() {
        let vars = env(&[
            ("HERALD_SERVER__PORT", "7001"),
            ("HERALD_CONFIG", ""),
            ("HERALD_SERVER__HOST", "127.0.0.1"),
        ]);
        let loaded = Config::load(&vars, &Overrides::default()).expect("loads");
        assert_eq!(loaded.config.server.port, 7001);
    }

    #[test]
    fn every_bad_value_is_named_with_the_unknown_keys() {
        let error = Config::from_toml(
            "[server]\nprot = 1\nport = \"x\"\n[auth]\nalgorithm = \"HS512\"\nleeway_secs = -1\n\
             [[apps]]\nid = 'a'\nkey = 'b'\nsecret = 'c'\nenabled = 'yes'\n",
        )
        .expect_err("bad values");
        let keys: Vec<&str> =
            error.problems.iter().map(|problem| problem.split(':').next().unwrap_or_default()).collect();
        assert_eq!(
            keys,
            ["server.prot", "apps[0].enabled", "auth.algorithm", "auth.leeway_secs", "server.port"]
        );
    }

    #[test]
    fn every_unknown_key_is_named() {
        let error = Config::from_toml(
            "colour = 1\n[server]\nprot = 1\n[[apps]]\nid='a'\nkey='b'\nsecret='c'\nlimit = 2\n[apps.limits]\nmax = 1\n",
        )
        .expect_err("unknown keys");
        assert_eq!(
            error.problems,
            vec![
                "apps[0].limit: unknown key",
                "apps[0].limits.max: unknown key",
                "colour: unknown key",
                "server.prot: unknown key"
            ]
        );
    }

    #[test]
    fn bad_values_are_all_reported() {
        let error = Config::from_toml(
            "[server]\nhost = 'nowhere'\n[[apps]]\nid=''\nkey='k'\nsecret='s'\n[[apps]]\nid='b'\nkey='k'\nsecret='s s'\n",
        )
        .expect_err("bad values");
        assert_eq!(error.problems.len(), 4, "{:?}", error.problems);
    }

    #[test]
    fn wrong_types_name_the_key() {
        let error = Config::from_toml("[server]\nport = 'high'\n").expect_err("bad type");
        assert_eq!(error.problems, vec!["server.port: invalid type: string \"high\", expected u16"]);
    }

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let app = AppConfig {
            allowed_origins: vec!["https://app.example.com".into(), "*.acme.test".into()],
            ..AppConfig::default()
        };
        assert!(app.origin_allowed(Some("https://app.example.com")));
        assert!(app.origin_allowed(Some("https://csr.acme.test")));
        assert!(!app.origin_allowed(Some("https://evil.test")));
        assert!(app.origin_allowed(None));
    }

    #[test]
    fn bad_policies_and_auth_settings_are_named() {
        let error = Config::from_toml(
            "[auth]\nalgorithm = \"RS256\"\nencryption_master_key_base64 = \"c2hvcnQ=\"\n\
             [[policies]]\nchannel = \"team.{teamId}\"\nallow = [\"member:{teamId}\"]\n",
        )
        .expect_err("refused");
        let all = error.problems.join("\n");
        assert!(all.contains("auth.public_key_file: required for RS256"), "{all}");
        assert!(all.contains("auth.encryption_master_key_base64: must decode to 32 bytes"), "{all}");
        assert!(all.contains("policies[0].allow: \"member:{teamId}\": unknown rule"), "{all}");
    }

    #[test]
    fn documented_example_parses_to_the_defaults() {
        let text = include_str!("../../../../docs/herald.example.toml");
        let config = Config::from_toml(text).expect("example parses");
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.admin, AdminConfig::default());
        assert_eq!(config.auth, AuthConfig::default());
        assert_eq!(config.database, DatabaseConfig::default());
        assert_eq!(config.notifications, NotificationsConfig::default());
        assert_eq!(config.apps.len(), 1);
        assert_eq!(
            config.apps[0],
            AppConfig {
                id: "1000001".into(),
                key: "app-key".into(),
                secret: "app-secret".into(),
                ..AppConfig::default()
            }
        );
    }
}
