//! The admin listener's guard: the `Host` allow-list (DNS rebinding), its one credential (the
//! admin token, or platform JWTs with `super_admin` when `admin.allow_jwt` is on and no token is
//! set), the dashboard's server-side sessions, and the per-IP throttle on failed sign-ins.
//! Every table here is bounded in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::warn;

use crate::authorizer::Authorizer;
use crate::config::AdminConfig;

/// The dashboard's session cookie (its value is a random session id, never the token).
pub(crate) const SESSION_COOKIE: &str = "herald_admin_session";
/// The paths the session cookie is sent to: the page and the admin API, nothing else.
pub(crate) const SESSION_PATHS: [&str; 2] = ["/dashboard", "/admin"];
/// How long a dashboard session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past it, the oldest is forgotten.
const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins from one IP within `FAILURE_WINDOW` before it gets 429.
pub(crate) const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at once; past it, the oldest window is forgotten.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// The client address the guard saw, for handlers (`Extension<ClientAddress>`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

/// Admin access: what opens the admin API and the dashboard.
#[derive(Debug)]
pub(crate) struct AdminGuard {
    /// `None`: no token, the listener is loopback-only and open.
    token: Option<String>,
    allow_jwt: bool,
    /// Lower-case host names accepted in `Host`, without ports.
    hosts: Vec<String>,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AdminGuard {
    pub(crate) fn new(config: &AdminConfig) -> AdminGuard {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .into_iter()
            .chain(config.allowed_hosts.iter().map(String::as_str))
            .chain(std::iter::once(config.host.as_str()))
            .map(|host| bare_host(host).to_ascii_lowercase())
            .collect();
        hosts.sort();
        hosts.dedup();
        AdminGuard {
            token: (!config.token.is_empty()).then(|| config.token.clone()),
            allow_jwt: config.allow_jwt,
            hosts,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a credential is required (an admin token, or `admin.allow_jwt`): the dashboard
    /// then has a login and a sign-out.
    pub(crate) fn requires_sign_in(&self) -> bool {
        self.token.is_some() || self.allow_jwt
    }

    /// Whether `given` is the configured credential: the admin token when one is set (then
    /// nothing else, ever), else with `admin.allow_jwt` a platform JWT with `super_admin`.
    pub(crate) fn accepts(&self, authorizer: &Authorizer, given: &str) -> bool {
        if self.token.is_some() {
            self.is_token(given)
        } else {
            self.is_admin_jwt(authorizer, given)
        }
    }

    /// Whether the admin listener answers to `host`: a listed name, or any IP address (DNS
    /// rebinding needs a name the attacker controls; Prometheus scraping a pod by IP needs none).
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        let host = bare_host(host).to_ascii_lowercase();
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        ip.parse::<IpAddr>().is_ok() || self.hosts.iter().any(|allowed| *allowed == host || allowed == "*")
    }

    /// Whether `given` is the admin token (constant time on the digests).
    fn is_token(&self, given: &str) -> bool {
        let Some(expected) = self.token.as_deref() else { return false };
        let digest = |text: &str| herald_protocol::hmac_sha256_hex("herald-admin", text);
        let (given, expected) = (digest(given), digest(expected));
        given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Whether `token` is a platform JWT with `super_admin`, and JWTs are allowed.
    fn is_admin_jwt(&self, authorizer: &Authorizer, token: &str) -> bool {
        if !self.allow_jwt {
            return false;
        }
        let mut bearer = HeaderMap::new();
        let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else { return false };
        bearer.insert(header::AUTHORIZATION, value);
        authorizer.identify(&bearer).is_ok_and(|identity| identity.has_role("super_admin"))
    }

    /// A new session; its id is what the cookie holds.
    pub(crate) fn open_session(&self) -> String {
        let id = random_hex(32);
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, expires| *expires > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) =
                sessions.iter().min_by_key(|(_, expires)| **expires).map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now + SESSION_TTL);
        id
    }

    pub(crate) fn session_valid(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sessions.get(id) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    /// Revokes a session (sign-out).
    pub(crate) fn close_session(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }

    /// Seconds until `client` may try again, when it failed too often.
    pub(crate) fn throttled(&self, client: Option<IpAddr>) -> Option<u64> {
        let client = client?;
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (since, count) = failures.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    /// Counts a failed sign-in and logs it with the client address (never the tried token).
    pub(crate) fn record_failure(&self, client: Option<IpAddr>, via: &'static str) {
        let count = match client {
            Some(client) => {
                let now = Instant::now();
                let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if failures.len() >= MAX_TRACKED_CLIENTS && !failures.contains_key(&client) {
                    failures.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
                    if failures.len() >= MAX_TRACKED_CLIENTS {
                        if let Some(oldest) =
                            failures.iter().min_by_key(|(_, (since, _))| *since).map(|(ip, _)| *ip)
                        {
                            failures.remove(&oldest);
                        }
                    }
                }
                let entry = failures.entry(client).or_insert((now, 0));
                if now.duration_since(entry.0) >= FAILURE_WINDOW {
                    *entry = (now, 0);
                }
                entry.1 += 1;
                entry.1
            }
            None => 0,
        };
        let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        warn!(client = %client, failures = count, via, "failed admin sign-in");
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` without the port.
fn bare_host(host: &str) -> &str {
    let host = host.trim();
    if let Some(end) = host.strip_prefix('[').and_then(|rest| rest.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `bytes` random bytes from the operating system, as hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system provides random bytes");
    hex::encode(buffer)
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// The dashboard session id from the `Cookie` header(s).
pub(crate) fn session_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|id| !id.is_empty())
}

/// Whether a state-changing request comes from another site's page (the cookie is
/// `SameSite=Strict` already; this also covers browsers that ignore it). Requests without
/// `Origin` are not a browser's cross-site form or script.
pub(crate) fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")));
    origin.is_none() || origin != host
}

pub(crate) fn cross_origin_refused() -> Response {
    let body = json!({ "error": "cross-origin requests to the admin listener are refused" });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// 429 with `Retry-After` for a client that failed to sign in too often.
pub(crate) fn too_many_failures(retry_after: u64) -> Response {
    let body = json!({
        "error": format!("too many failed admin sign-ins from this address; retry in {retry_after} s"),
    });
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after.to_string())], Json(body))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9601"));
        assert!(!cross_origin(&headers), "no Origin: not a browser's cross-site request");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:9601"));
        assert!(!cross_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin(&headers));
    }

    #[test]
    fn hosts_compare_without_ports() {
        assert_eq!(bare_host("localhost:9601"), "localhost");
        assert_eq!(bare_host("[::1]:9601"), "[::1]");
        assert_eq!(bare_host("[::1]"), "[::1]");
        assert_eq!(bare_host("127.0.0.1"), "127.0.0.1");
        let guard = AdminGuard::new(&AdminConfig {
            allowed_hosts: vec!["Admin.Internal".into()],
            ..AdminConfig::default()
        });
        for host in [
            "localhost",
            "LOCALHOST:9601",
            "127.0.0.1:1",
            "[::1]:9601",
            "admin.internal:80",
            "10.1.2.3:9601",
            "[fd00::5]:9601",
        ] {
            assert!(guard.host_allowed(host), "{host}");
        }
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:9601",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!guard.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn sessions_are_bounded_and_revocable() {
        let guard = AdminGuard::new(&AdminConfig { token: "t".into(), ..AdminConfig::default() });
        let first = guard.open_session();
        assert_eq!(first.len(), 64);
        assert!(guard.session_valid(&first));
        guard.close_session(&first);
        assert!(!guard.session_valid(&first));
        for _ in 0..MAX_SESSIONS + 10 {
            guard.open_session();
        }
        assert!(guard.sessions.lock().expect("lock").len() <= MAX_SESSIONS);
    }

    #[test]
    fn failures_are_counted_per_address_and_bounded() {
        let guard = AdminGuard::new(&AdminConfig::default());
        let client = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..MAX_FAILURES {
            assert_eq!(guard.throttled(client), None);
            guard.record_failure(client, "test");
        }
        assert!(guard.throttled(client).is_some_and(|secs| (1..=60).contains(&secs)));
        assert_eq!(guard.throttled(Some(IpAddr::from([10, 0, 0, 2]))), None);
        for n in 0..(MAX_TRACKED_CLIENTS as u32 + 10) {
            guard.record_failure(Some(IpAddr::from(n.to_be_bytes())), "test");
        }
        assert!(guard.failures.lock().expect("lock").len() <= MAX_TRACKED_CLIENTS);
    }
}
