//! `TestServer`: the real server on a free port with test apps; `Client`: a real WebSocket client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use herald_protocol::{channel_auth_string, hmac_sha256_hex, signin_auth_string, ApiSigner};
use herald_server::config::{AppConfig, Config};
use herald_server::{App, SharedState};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn app(id: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        key: format!("{id}-key"),
        secret: format!("{id}-secret"),
        ..AppConfig::default()
    }
}

/// The apps every test server has: `main`, plus variants with one switch changed.
pub fn default_apps() -> Vec<AppConfig> {
    vec![
        app("main"),
        AppConfig { enabled: false, ..app("disabled") },
        AppConfig { max_connections: 1, ..app("quota") },
        AppConfig { client_events: false, ..app("noclient") },
        AppConfig {
            user_authentication_required: true,
            user_authentication_timeout_secs: 1,
            ..app("signin")
        },
        AppConfig { allowed_origins: vec!["https://good.example".into()], ..app("origin") },
        AppConfig { max_api_requests_per_second: 2, ..app("limited") },
    ]
}

/// The database engine the test servers run on: SQLite, or PostgreSQL with
/// `HERALD_TEST_BACKEND=postgres` (`scripts/test` runs the suite once on each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("HERALD_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("HERALD_TEST_BACKEND={other:?}: sqlite or postgres"),
    }
}

/// A fresh PostgreSQL database (`herald_it_…`) on `HERALD_TEST_POSTGRES_URL`'s server.
pub async fn fresh_postgres_database() -> String {
    postgres_database()
        .await
        .expect("PostgreSQL is required: HERALD_TEST_BACKEND=postgres or HERALD_REQUIRE_SERVICES=1")
}

/// A fresh PostgreSQL database, or `None` when PostgreSQL is absent and not required
/// (`HERALD_REQUIRE_SERVICES=1` or `HERALD_TEST_BACKEND=postgres` make its absence a failure).
pub async fn postgres_database() -> Option<String> {
    let base = std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
        || backend() == Backend::Postgres;
    let admin = match sqlx::PgPool::connect(&base).await {
        Ok(pool) => pool,
        Err(error) if !required => {
            eprintln!("skipping PostgreSQL test: {error}");
            return None;
        }
        Err(error) => panic!("PostgreSQL is required but unreachable at {base}: {error}"),
    };
    let name = format!("herald_it_{}", fastrand::u64(..));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("database created");
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("url has a database");
    Some(format!("{prefix}/{name}"))
}

pub const JWT_SECRET: &str = "test-jwt-secret";
pub const FRONT_END: &str = "https://csr.example";

pub struct TestServer {
    pub address: std::net::SocketAddr,
    /// The database the server runs on (SQLite file or PostgreSQL), to read it after shutdown.
    pub database_url: String,
    /// A connection of the test's own to the server's database, to seed and inspect it.
    pub store: herald_store::Store,
    pub admin_address: std::net::SocketAddr,
    _data: tempfile::TempDir,
    pub state: SharedState,
    /// Rereads the listeners' certificates, as SIGHUP does in `herald serve`.
    pub tls: herald_server::TlsReload,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with_config(|_| {}).await
    }

    pub async fn with_config(change: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::default();
        config.server.host = "127.0.0.1".into();
        config.server.port = 0;
        config.admin.port = 0;
        config.server.shutdown_grace_secs = 2;
        config.apps = default_apps();
        let data = tempfile::tempdir().expect("temp dir");
        config.database.url = match backend() {
            Backend::Sqlite => format!("sqlite://{}", data.path().join("herald.db").display()),
            Backend::Postgres => fresh_postgres_database().await,
        };
        config.auth.jwt_secret = JWT_SECRET.into();
        config.auth.cors_origins = vec![FRONT_END.into()];
        config.notifications.workers = 2;
        config.notifications.poll_interval_ms = 50;
        config.notifications.backoff_base_ms = 20;
        config.notifications.backoff_cap_ms = 100;
        change(&mut config);
        let database_url = config.database.url.clone();
        let app = App::build(&config).await.expect("server binds");
        let address = app.address();
        let admin_address = app.admin_address();
        let state = app.state();
        let tls = app.tls_reload();
        let store =
            herald_store::Store::connect(&database_url).await.expect("the test opens the server's database");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            database_url,
            store,
            admin_address,
            _data: data,
            state,
            tls,
            stop: Some(stop),
            done: Some(done),
            http: reqwest::Client::new(),
        }
    }

    /// Starts graceful shutdown and waits for it to finish.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .expect("shutdown finishes")
                .expect("task joins")
                .expect("server ran cleanly");
        }
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!("ws://{}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false", self.address)
    }

    /// Connects to `main` and reads `pusher:connection_established`.
    pub async fn client(&self) -> Client {
        self.client_for("main-key").await
    }

    pub async fn client_for(&self, key: &str) -> Client {
        let mut client = Client::connect(&self.ws_url(key)).await;
        let hello = client.recv().await;
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        let data: Value =
            serde_json::from_str(hello["data"].as_str().expect("data is a string")).expect("json data");
        client.socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        client
    }

    /// A signed request to the HTTP API, as the Pusher SDKs make them.
    pub async fn signed(
        &self,
        app: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let secret = format!("{app}-secret");
        self.signed_with(app, &format!("{app}-key"), &secret, method, path, query, body, now()).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn signed_with(
        &self,
        app: &str,
        key: &str,
        secret: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        timestamp: u64,
    ) -> (u16, Value) {
        let path = format!("/apps/{app}{path}");
        let body = body.map(Value::to_string).unwrap_or_default();
        let params = ApiSigner { key, secret }.query(method, &path, body.as_bytes(), timestamp, query);
        self.raw(method, &path, &params, body).await
    }

    /// A request with exactly the query `params` (as [`ApiSigner::query`] makes them) and `body`.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
        body: String,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.address);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url).query(params);
        if !body.is_empty() {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A browser-style form POST with an optional bearer token and `Origin`.
    pub async fn post_form(&self, path: &str, token: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.http.post(format!("http://{}{path}", self.address)).form(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request with a bearer token (the inbox API).
    pub async fn with_token(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request =
            self.http.request(method, format!("http://{}{path}", self.address)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `POST /apps/main/domain-events`
    pub async fn ingest(&self, body: &Value) -> (u16, Value) {
        self.signed("main", "POST", "/domain-events", &[], Some(body)).await
    }

    /// `POST /apps/main/events`
    pub async fn trigger(&self, channels: &[&str], name: &str, data: &str) -> (u16, Value) {
        let body = json!({ "name": name, "channels": channels, "data": data });
        self.signed("main", "POST", "/events", &[], Some(&body)).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A raw WebSocket client speaking Pusher frames.
/// A WebSocket client over a plain socket, or over any stream (`Client::over`: TLS in tls.rs).
pub struct Client<S = MaybeTlsStream<TcpStream>> {
    socket: WebSocketStream<S>,
    pub socket_id: String,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { socket, socket_id: String::new() }
    }

    pub async fn connect_with_origin(url: &str, origin: &str) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert("origin", origin.parse().expect("header"));
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        Client { socket, socket_id: String::new() }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on a WebSocket opened some other way.
    pub fn over(socket: WebSocketStream<S>) -> Client<S> {
        Client { socket, socket_id: String::new() }
    }

    /// Reads `pusher:connection_established` and keeps the socket id.
    pub async fn established(mut self) -> Client<S> {
        let hello = self.recv().await;
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        self.socket_id = data_of(&hello)["socket_id"].as_str().expect("socket_id").to_owned();
        self
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.expect("frame sent");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("frame sent");
    }

    /// The next text frame as JSON; panics on close or after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        self.recv_by(tokio::time::Instant::now() + WAIT).await
    }

    /// The next `event`, within `within` in all: for an event due later than one frame's `WAIT`.
    pub async fn recv_event_within(&mut self, event: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = self.recv_by(deadline).await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// The next text frame as JSON; panics on close or at `deadline`.
    async fn recv_by(&mut self, deadline: tokio::time::Instant) -> Value {
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a frame arrives in time")
                .expect("socket open")
                .expect("frame readable");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next WebSocket message of any kind (pings and pongs included); panics after `WAIT`.
    pub async fn recv_message(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.socket.next())
            .await
            .expect("a message arrives in time")
            .expect("socket open")
            .expect("message readable")
    }

    /// Reads frames until one has `event`; returns it.
    pub async fn recv_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Asserts nothing arrives within `wait` and the socket is still open: a closed socket is
    /// not silence.
    pub async fn expect_silence(&mut self, wait: Duration) {
        match tokio::time::timeout(wait, self.socket.next()).await {
            Err(_) => {}
            Ok(Some(Ok(message))) => panic!("expected silence, got {message:?}"),
            Ok(Some(Err(error))) => panic!("expected silence, the socket failed: {error}"),
            Ok(None) => panic!("expected silence, the socket is closed"),
        }
    }

    /// Reads until the close frame; returns its code (skipping any text frames before it).
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next()).await.expect("closes in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(WsCloseCode::Status),
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket failed before a close frame: {error}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({ "event": "pusher:subscribe", "data": { "channel": channel } })).await;
        self.recv().await
    }

    /// Subscribes with a valid signature from the `main` app's secret.
    pub async fn subscribe_signed(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let auth = auth_for("main", &self.socket_id, channel, channel_data);
        let mut data = json!({ "channel": channel, "auth": auth });
        if let Some(channel_data) = channel_data {
            data["channel_data"] = Value::String(channel_data.to_owned());
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data })).await;
        self.recv().await
    }

    pub async fn signin(&mut self, app: &str, user_data: &str) {
        let signature =
            hmac_sha256_hex(&format!("{app}-secret"), &signin_auth_string(&self.socket_id, user_data));
        let auth = format!("{app}-key:{signature}");
        self.send(json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": user_data } }))
            .await;
    }
}

pub fn auth_for(app: &str, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let signature =
        hmac_sha256_hex(&format!("{app}-secret"), &channel_auth_string(socket_id, channel, channel_data));
    format!("{app}-key:{signature}")
}

/// Parses a server frame's string `data`.
pub fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("data is JSON")
}
