//! Native TLS: `wss://` and `https://` on the main port beside plain connections, `tls_only`
//! apps (4000), the certificate reload, the admin listener's own certificate, and the
//! configuration checks. Certificates are generated per test (rcgen); the clients trust only
//! the certificate they are given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_protocol::ApiSigner;
use herald_server::config::{AppConfig, Config};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::harness::{app, data_of, default_apps, now, Client, TestServer};

/// A self-signed certificate for 127.0.0.1 and localhost, and its files.
struct Certificate {
    der: CertificateDer<'static>,
    pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificate {
    /// Generates a new certificate and writes it (and its key) as `{name}.pem` / `{name}.key`.
    fn generate(dir: &Path, name: &str) -> Certificate {
        let generated =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate generated");
        let certificate = Certificate {
            der: generated.cert.der().clone(),
            pem: generated.cert.pem(),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&certificate.cert, &certificate.pem).expect("certificate written");
        std::fs::write(&certificate.key, generated.signing_key.serialize_pem()).expect("key written");
        certificate
    }

    /// Puts this certificate's files where `other`'s are (a renewal writing over the old ones).
    fn install_at(&self, other: &Certificate) {
        std::fs::copy(&self.cert, &other.cert).expect("certificate copied");
        std::fs::copy(&self.key, &other.key).expect("key copied");
    }

    fn path(path: &Path) -> String {
        path.to_str().expect("utf-8 path").to_owned()
    }
}

/// A TLS connector that trusts `certificate` alone.
fn trusting(certificate: &Certificate) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.der.clone()).expect("root added");
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `address`, checked against `certificate`.
async fn tls_connect(
    address: std::net::SocketAddr,
    certificate: &Certificate,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::IpAddress(address.ip().into());
    trusting(certificate).connect(name, tcp).await
}

/// A `wss://` client of `key`, already past `pusher:connection_established`.
async fn wss_client(
    server: &TestServer,
    certificate: &Certificate,
    key: &str,
) -> Client<TlsStream<TcpStream>> {
    let stream = tls_connect(server.address, certificate).await.expect("TLS handshake");
    let url = format!("wss://{}/app/{key}?protocol=7&client=js&version=8.4.0", server.address);
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.expect("websocket over TLS");
    Client::over(socket).established().await
}

/// The test apps plus `tlsonly`, whose plain connections get 4000.
fn apps_with_tls_only() -> Vec<AppConfig> {
    let mut apps = default_apps();
    apps.push(AppConfig { tls_only: true, ..app("tlsonly") });
    apps
}

async fn tls_server(certificate: &Certificate) -> TestServer {
    let (cert, key) = (Certificate::path(&certificate.cert), Certificate::path(&certificate.key));
    TestServer::with_config(move |config| {
        config.server.tls_cert = cert;
        config.server.tls_key = key;
        config.apps = apps_with_tls_only();
    })
    .await
}

/// An HTTPS client of the signed API that trusts `certificate` alone.
fn https_client(certificate: &Certificate) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.pem.as_bytes()).expect("pem"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_share_the_port_with_plain_connections() {
    let dir = tempfile::tempdir().expect("dir");
    let certificate = Certificate::generate(dir.path(), "server");
    let mut server = tls_server(&certificate).await;

    let mut secure = wss_client(&server, &certificate, "main-key").await;
    assert_eq!(secure.subscribe("news").await["event"], "pusher_internal:subscription_succeeded");
    let mut plain = server.client().await;
    assert_eq!(plain.subscribe("news").await["event"], "pusher_internal:subscription_succeeded");

    // A signed API call over HTTPS, as the Pusher SDKs make it with useTLS.
    let path = "/apps/main/events";
    let body = json!({ "name": "story", "channels": ["news"], "data": "{\"n\":1}" }).to_string();
    let query =
        ApiSigner { key: "main-key", secret: "main-secret" }.query("POST", path, body.as_bytes(), now(), &[]);
    let response = https_client(&certificate)
        .post(format!("https://{}{path}", server.address))
        .query(&query)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(response.status().as_u16(), 200);

    for client_event in [secure.recv_event("story").await, plain.recv_event("story").await] {
        assert_eq!(data_of(&client_event), json!({ "n": 1 }));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_to_a_tls_only_app_gets_4000() {
    let dir = tempfile::tempdir().expect("dir");
    let certificate = Certificate::generate(dir.path(), "server");
    let mut server = tls_server(&certificate).await;

    let mut plain = Client::connect(&server.ws_url("tlsonly-key")).await;
    let error = plain.recv().await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4000, "{error}");
    assert_eq!(plain.expect_close().await, 4000);

    // Over TLS the same app accepts the connection.
    let mut secure = wss_client(&server, &certificate, "tlsonly-key").await;
    assert_eq!(secure.subscribe("news").await["event"], "pusher_internal:subscription_succeeded");

    // A proxy on this host that terminated TLS says so; loopback is a trusted proxy.
    let mut request = server.ws_url("tlsonly-key").into_client_request().expect("request");
    request.headers_mut().insert("x-forwarded-proto", "https".parse().expect("header"));
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("connects");
    let proxied = Client::over(socket).established().await;
    assert!(!proxied.socket_id.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_app_without_a_certificate_still_takes_a_trusted_proxy() {
    let mut server = TestServer::with_config(|config| config.apps = apps_with_tls_only()).await;
    let mut plain = Client::connect(&server.ws_url("tlsonly-key")).await;
    assert_eq!(plain.recv().await["data"]["code"], 4000);
    let mut request = server.ws_url("tlsonly-key").into_client_request().expect("request");
    request.headers_mut().insert("x-forwarded-proto", "https".parse().expect("header"));
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("connects");
    Client::over(socket).established().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_for_new_handshakes_only() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Certificate::generate(dir.path(), "server");
    let second = Certificate::generate(dir.path(), "renewed");
    let mut server = tls_server(&first).await;
    let mut open = wss_client(&server, &first, "main-key").await;
    assert_eq!(open.subscribe("news").await["event"], "pusher_internal:subscription_succeeded");

    second.install_at(&first);
    server.tls.reload().expect("reloaded");
    assert!(tls_connect(server.address, &first).await.is_err(), "the old certificate is no longer presented");
    let mut renewed = wss_client(&server, &second, "main-key").await;

    // The connection opened before the reload goes on.
    let (status, _) = server.trigger(&["news"], "after-reload", "{}").await;
    assert_eq!(status, 200);
    open.recv_event("after-reload").await;
    renewed.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(renewed.recv_event("pusher:pong").await["event"], "pusher:pong");

    // A reload that fails (a half-written file) keeps the certificate in use.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("written");
    let failures = server.tls.reload().expect_err("a broken file is refused");
    assert!(failures[0].to_string().starts_with("server.tls_cert:"), "{}", failures[0]);
    wss_client(&server, &second, "main-key").await;
    open.send(json!({ "event": "pusher:ping", "data": {} })).await;
    open.recv_event("pusher:pong").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_its_own_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let main = Certificate::generate(dir.path(), "main");
    let admin = Certificate::generate(dir.path(), "admin");
    let (cert, key) = (Certificate::path(&main.cert), Certificate::path(&main.key));
    let (admin_cert, admin_key) = (Certificate::path(&admin.cert), Certificate::path(&admin.key));
    let mut server = TestServer::with_config(move |config| {
        config.server.tls_cert = cert;
        config.server.tls_key = key;
        config.admin.tls_cert = admin_cert;
        config.admin.tls_key = admin_key;
    })
    .await;
    let up = https_client(&admin)
        .get(format!("https://{}/up", server.admin_address))
        .send()
        .await
        .expect("HTTPS to the admin listener");
    assert_eq!(up.status().as_u16(), 200);
    assert!(
        tls_connect(server.admin_address, &main).await.is_err(),
        "the admin certificate, not the main one"
    );
    assert!(tls_connect(server.address, &main).await.is_ok());
    let plain = server.http().get(format!("http://{}/up", server.admin_address)).send().await.expect("plain");
    assert_eq!(plain.status().as_u16(), 200);
    server.shutdown().await;
}

#[test]
fn bad_tls_settings_name_their_key() {
    let dir = tempfile::tempdir().expect("dir");
    let certificate = Certificate::generate(dir.path(), "server");
    let other = Certificate::generate(dir.path(), "other");
    let problems = |toml: String| -> Vec<String> { Config::from_toml(&toml).expect_err("refused").problems };
    let (cert, key) = (Certificate::path(&certificate.cert), Certificate::path(&certificate.key));

    let alone = problems(format!("[server]\ntls_cert = {cert:?}\n[admin]\ntls_key = {key:?}\n"));
    assert_eq!(
        alone,
        vec!["server.tls_key: required with server.tls_cert", "admin.tls_cert: required with admin.tls_key"]
    );

    let missing = dir.path().join("missing.pem");
    let unreadable =
        problems(format!("[server]\ntls_cert = {:?}\ntls_key = {key:?}\n", Certificate::path(&missing)));
    assert!(unreadable[0].starts_with("server.tls_cert: cannot read"), "{unreadable:?}");

    let not_a_key = problems(format!("[admin]\ntls_cert = {cert:?}\ntls_key = {cert:?}\n"));
    assert!(not_a_key[0].starts_with("admin.tls_key:"), "{not_a_key:?}");

    let mismatch =
        problems(format!("[server]\ntls_cert = {cert:?}\ntls_key = {:?}\n", Certificate::path(&other.key)));
    assert!(mismatch[0].starts_with("server.tls_key:") && mismatch[0].contains("match"), "{mismatch:?}");
    // Never the key's contents in a message.
    let key_text = std::fs::read_to_string(&other.key).expect("key");
    let secret_line = key_text.lines().nth(1).expect("a base64 line");
    assert!(mismatch.iter().all(|problem| !problem.contains(secret_line)));

    let fine =
        Config::from_toml(&format!("[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\n")).expect("loads");
    assert_eq!(fine.server.tls_cert, cert);
}
