//! A local stand-in for the upstream Pusher API of the `pusher` driver. It checks every request
//! as a real upstream would, so a driver that signs wrongly cannot pass a test that uses it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use herald_protocol::{api_string_to_sign, body_md5_hex, verify_hex_signature};

/// The credentials the driver falls back to: the notification app `main` of every test server.
const KEY: &str = "main-key";
const SECRET: &str = "main-secret";

pub struct Upstream {
    pub port: u16,
    /// Every request received, refused or not.
    pub calls: Arc<AtomicUsize>,
}

/// Serves `POST /apps/main/events`: 401 to a request not signed with `main`'s key and secret
/// (or whose `body_md5` is not its body's); of the correctly signed, the first `failures` get
/// `status`, the others 200.
pub async fn upstream(failures: usize, status: u16) -> Upstream {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let signed = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/apps/main/events",
        axum::routing::post(move |method: Method, uri: Uri, body: Bytes| {
            counter.fetch_add(1, Ordering::SeqCst);
            let signed = signed.clone();
            async move {
                if let Err(problem) = check_signature(&method, &uri, &body) {
                    return (StatusCode::UNAUTHORIZED, format!(r#"{{"error":"{problem}"}}"#));
                }
                let call = signed.fetch_add(1, Ordering::SeqCst);
                let code = if call < failures { status } else { 200 };
                (StatusCode::from_u16(code).expect("status"), "{}".to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream { port, calls }
}

/// An upstream that answers every correctly signed request with 200 after `delay`, and says
/// when a request has arrived (the driver then has a delivery in hand).
pub async fn slow_upstream(delay: std::time::Duration) -> (Upstream, Arc<tokio::sync::Notify>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (counter, signal) = (calls.clone(), arrived.clone());
    let app = axum::Router::new().route(
        "/apps/main/events",
        axum::routing::post(move |method: Method, uri: Uri, body: Bytes| {
            counter.fetch_add(1, Ordering::SeqCst);
            signal.notify_one();
            async move {
                if let Err(problem) = check_signature(&method, &uri, &body) {
                    return (StatusCode::UNAUTHORIZED, format!(r#"{{"error":"{problem}"}}"#));
                }
                tokio::time::sleep(delay).await;
                (StatusCode::OK, "{}".to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Upstream { port, calls }, arrived)
}

/// What `shared/PROTOCOL.md` asks of a signed request, checked with herald-protocol's pieces.
fn check_signature(method: &Method, uri: &Uri, body: &[u8]) -> Result<(), &'static str> {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).map_err(|_| "query is not urlencoded")?;
    let get = |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    if get("auth_key") != Some(KEY) {
        return Err("auth_key is not main's");
    }
    if get("auth_version") != Some("1.0") || get("auth_timestamp").is_none() {
        return Err("auth_version or auth_timestamp is missing");
    }
    if get("body_md5") != Some(body_md5_hex(body).as_str()) {
        return Err("body_md5 does not match the body");
    }
    let signature = get("auth_signature").ok_or("auth_signature is missing")?;
    let string = api_string_to_sign(
        method.as_str(),
        uri.path(),
        query.iter().map(|(key, value)| (key.as_str(), value.as_str())),
    );
    if verify_hex_signature(SECRET, &string, signature) {
        Ok(())
    } else {
        Err("invalid signature")
    }
}
