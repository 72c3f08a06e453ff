//! The operations tools that talk to a running server: `status`, `debug`, `test-broadcast`.
//! They find it from the same configuration the server reads, and speak to it as clients do:
//! signed HTTP API calls, `/broadcasting/auth`, and real WebSockets.

pub(crate) mod debug;
pub(crate) mod status;
pub(crate) mod test_broadcast;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use herald_protocol::ApiSigner;
use herald_server::config::AppConfig;
use herald_server::{Config, Loaded, Overrides, ProcessEnv};

use crate::runtime::{self, Running};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Where the server is and who to be: the runtime file of a running `herald serve` (beside its
/// database), the configuration, and flags, the flags winning.
#[derive(Debug, clap::Args)]
pub(crate) struct TargetArgs {
    /// TOML configuration file [env: HERALD_CONFIG]
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Server URL [default: the running server's, from herald-runtime.json beside the database; else http://127.0.0.1:<server.port>]
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) url: Option<String>,
    /// Admin URL [default: the running server's, from herald-runtime.json; else the --url host with <admin.port>]
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) admin_url: Option<String>,
    /// The server runs in development mode (`herald serve --dev`): use the public development
    /// credentials [default: as the runtime file says]
    #[arg(long, global = true)]
    pub(crate) dev: bool,
}

/// A running server as the tools see it.
pub(crate) struct Target {
    pub(crate) loaded: Loaded,
    pub(crate) overrides: Overrides,
    /// `http://host:port` of the WebSocket + API listener.
    pub(crate) http: String,
    pub(crate) admin: String,
    /// The app the tools speak for; `None` when nothing is configured and no server generated one here.
    pub(crate) app: Option<AppConfig>,
    pub(crate) http_client: reqwest::Client,
    /// The runtime file the server was found through, if any.
    pub(crate) running: Option<Running>,
}

fn local(host: &str) -> &str {
    if host == "0.0.0.0" || host == "::" {
        "127.0.0.1"
    } else {
        host
    }
}

impl Target {
    pub(crate) fn load(args: &TargetArgs) -> Result<Target, String> {
        let mut overrides =
            Overrides { config_file: args.config.clone(), development: args.dev, ..Overrides::default() };
        let load =
            |overrides: &Overrides| Config::load_for_tools(&ProcessEnv, overrides).map_err(|e| e.to_string());
        let mut loaded = load(&overrides)?;
        let running = runtime::read(&loaded);
        if running.as_ref().is_some_and(|running| running.development) && !overrides.development {
            // The server runs with the development credentials: so do the tools.
            overrides.development = true;
            loaded = load(&overrides)?;
        }
        let config = &loaded.config;
        // A flag wins; then the running server's own word; then the configuration.
        let (http, admin) = match (&args.url, &running) {
            (Some(url), Some(running)) if same_url(url, &running.url) => {
                (url.clone(), args.admin_url.clone().unwrap_or_else(|| running.admin_url.clone()))
            }
            (Some(url), _) => {
                (url.clone(), args.admin_url.clone().unwrap_or_else(|| with_port(url, config.admin.port)))
            }
            (None, Some(running)) => {
                (running.url.clone(), args.admin_url.clone().unwrap_or_else(|| running.admin_url.clone()))
            }
            (None, None) => (
                format!("http://{}:{}", local(&config.server.host), config.server.port),
                args.admin_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}:{}", local(&config.admin.host), config.admin.port)),
            ),
        };
        let app = if config.notifications.app_id.is_empty() {
            config.apps.first()
        } else {
            config.apps.iter().find(|app| app.id == config.notifications.app_id)
        }
        .cloned();
        let http_client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Target {
            loaded,
            overrides,
            http: http.trim_end_matches('/').to_owned(),
            admin: admin.trim_end_matches('/').to_owned(),
            app,
            http_client,
            running,
        })
    }

    /// Where the tools found the server, for the reports: `./herald-runtime.json (pid 123)`.
    pub(crate) fn found_through(&self) -> Option<String> {
        self.running.as_ref().map(|running| format!("{} (pid {})", running.path.display(), running.pid))
    }

    /// The app the tools speak for, or why there is none.
    pub(crate) fn app(&self) -> Result<&AppConfig, String> {
        self.app.as_ref().ok_or_else(|| {
            "no app configured: set PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET (or --config), or run the tool where `herald serve` keeps its database".to_owned()
        })
    }

    pub(crate) fn ws_url(&self) -> Result<String, String> {
        let base = self.http.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
        Ok(format!(
            "{base}/app/{}?protocol=7&client=herald-cli&version={}",
            self.app()?.key,
            env!("CARGO_PKG_VERSION")
        ))
    }

    /// A signed request to the app's HTTP API (`path` below `/apps/{id}`).
    pub(crate) async fn signed(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let app = self.app()?;
        let path = format!("/apps/{}{path}", app.id);
        let body = body.map(Value::to_string).unwrap_or_default();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signer = ApiSigner { key: &app.key, secret: &app.secret };
        let query = signer.query(method, &path, body.as_bytes(), timestamp, &[]);
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|error| error.to_string())?;
        let mut request = self.http_client.request(method, format!("{}{path}", self.http)).query(&query);
        if !body.is_empty() {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.map_err(|error| unreachable(&self.http, &error))?;
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// A bearer token for a test identity, minted with the configured secret.
    pub(crate) fn token(&self, user: &str, organization: &str, roles: &[&str]) -> Result<String, String> {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        let settings = self.loaded.config.auth.token_settings()?;
        herald_auth::mint_for(&settings, user, Some(organization), &roles, Some("Herald CLI"), 600)
            .map_err(|error| error.to_string())
    }
}

/// The same listener, give or take a trailing slash.
fn same_url(left: &str, right: &str) -> bool {
    left.trim_end_matches('/') == right.trim_end_matches('/')
}

/// `url`'s scheme and host with another port: the admin listener of a server given by `--url`.
fn with_port(url: &str, port: u16) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else { return format!("http://127.0.0.1:{port}") };
    if parsed.set_port(Some(port)).is_err() {
        return format!("http://127.0.0.1:{port}");
    }
    parsed.set_path("");
    parsed.to_string().trim_end_matches('/').to_owned()
}

pub(crate) fn unreachable(url: &str, error: &reqwest::Error) -> String {
    if error.is_connect() {
        format!("nothing answers at {url}: is `herald serve` running? ({error})")
    } else {
        format!("{url}: {error}")
    }
}

/// A real WebSocket client speaking Pusher frames.
pub(crate) struct Socket {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    pub(crate) socket_id: String,
    pub(crate) activity_timeout: u64,
    pub(crate) handshake: Duration,
}

impl Socket {
    pub(crate) async fn connect(url: &str) -> Result<Socket, String> {
        let started = Instant::now();
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("{url}: no WebSocket handshake within 5 s"))?
            .map_err(|error| format!("{url}: {error}"))?;
        let mut socket =
            Socket { stream, socket_id: String::new(), activity_timeout: 0, handshake: Duration::ZERO };
        let hello = socket.next(Duration::from_secs(5)).await?;
        if hello["event"] == "pusher:error" {
            return Err(format!("refused: {}", hello["data"]));
        }
        let data = data_of(&hello);
        socket.socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
        socket.activity_timeout = data["activity_timeout"].as_u64().unwrap_or_default();
        socket.handshake = started.elapsed();
        Ok(socket)
    }

    pub(crate) async fn send(&mut self, frame: Value) -> Result<(), String> {
        self.stream.send(Message::Text(frame.to_string().into())).await.map_err(|error| error.to_string())
    }

    /// The next Pusher frame within `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return Err("nothing arrived in time".into()),
                Ok(None) => return Err("the server closed the connection".into()),
                Ok(Some(Err(error))) => return Err(error.to_string()),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(text.as_str()).map_err(|error| error.to_string())
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(format!(
                        "closed: {}",
                        frame.map_or("no code".into(), |f| format!("{} {}", f.code, f.reason))
                    ))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Subscribes to `channel`, asking Herald's `/broadcasting/auth` with `token` when needed.
    pub(crate) async fn subscribe(
        &mut self,
        target: &Target,
        channel: &str,
        token: &str,
    ) -> Result<(), String> {
        let mut data = json!({ "channel": channel });
        if channel.starts_with("private-") || channel.starts_with("presence-") {
            let response = target
                .http_client
                .post(format!("{}/broadcasting/auth", target.http))
                .bearer_auth(token)
                .form(&[("socket_id", self.socket_id.as_str()), ("channel_name", channel)])
                .send()
                .await
                .map_err(|error| unreachable(&target.http, &error))?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status != 200 {
                return Err(format!(
                    "/broadcasting/auth answered {status}: {}",
                    answer["error"].as_str().unwrap_or("?")
                ));
            }
            data["auth"] = answer["auth"].clone();
            if let Some(channel_data) = answer.get("channel_data") {
                data["channel_data"] = channel_data.clone();
            }
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data })).await?;
        let reply = self.next(Duration::from_secs(5)).await?;
        match reply["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => Ok(()),
            Some("pusher:subscription_error") => {
                Err(format!("subscription refused: {}", reply["data"].as_str().unwrap_or("?")))
            }
            _ => Err(format!("unexpected answer: {reply}")),
        }
    }
}

pub(crate) fn data_of(frame: &Value) -> Value {
    frame["data"].as_str().and_then(|text| serde_json::from_str(text).ok()).unwrap_or(Value::Null)
}

/// Terminal styling: colours only on a terminal, and never with NO_COLOR.
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    pub(crate) fn stdout() -> Style {
        Style { colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn ok(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub(crate) fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub(crate) fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(crate) fn is_terminal(&self) -> bool {
        self.colour
    }
}

/// p-th percentile (0–100) of sorted durations, in milliseconds.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
