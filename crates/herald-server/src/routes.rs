//! Every route of both listeners, each declared with who may call it. The routers are built from
//! these tables and nothing else, so a route cannot be added without saying its access, and the
//! tests walk the same tables (`table()`) to prove that every signed and admin route refuses an
//! unauthenticated request.
//!
//! - `Signed` routes are the Pusher HTTP API: their handlers take `signed::Signed`, which checks
//!   the signature before the handler runs.
//! - `Admin` routes sit behind `guard::require_admin` (admin token or dashboard session, and no
//!   cross-origin writes), applied here to all of them at once.
//! - `Bearer` routes are the browser's, behind CORS: they check the platform's bearer token.
//! - `Open` routes are the probes, the WebSocket upgrade and pusher-js's HTTP fallback transports
//!   (the protocol checks the app key, and an `xhr_send` needs a live session), and
//!   the dashboard's page, style, icon, login and logout.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};

use crate::state::SharedState;
use crate::{admin, api, authorize, dashboard, inbox, notifications, ws};

/// The two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// WebSocket, Pusher HTTP API, notifications (default port 6001).
    Main,
    /// Metrics, probes, admin API and dashboard (default 127.0.0.1:9601).
    Admin,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    /// Signed with the app's secret (Pusher HTTP API).
    Signed,
    /// The platform's bearer token (browser routes, behind CORS).
    Bearer,
    /// The admin token or a dashboard session.
    Admin,
}

/// One route as the tables declare it: `path` in axum's syntax (`/apps/{app_id}/events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub listener: Listener,
    pub path: &'static str,
    pub access: Access,
}

type Entry = (&'static str, Access, MethodRouter<SharedState>);

fn main_routes() -> Vec<Entry> {
    use Access::{Bearer, Open, Signed};
    vec![
        ("/app/{key}", Open, get(ws::upgrade)),
        // pusher-js's HTTP fallback transports (ws/http.rs): the session id is in the path.
        (
            "/pusher/app/{key}/{server}/{session}/xhr_streaming",
            Open,
            post(ws::http::xhr_streaming).options(ws::http::preflight),
        ),
        (
            "/pusher/app/{key}/{server}/{session}/xhr",
            Open,
            post(ws::http::xhr_polling).options(ws::http::preflight),
        ),
        (
            "/pusher/app/{key}/{server}/{session}/xhr_send",
            Open,
            post(ws::http::xhr_send).options(ws::http::preflight),
        ),
        ("/apps/{app_id}/events", Signed, post(api::trigger)),
        ("/apps/{app_id}/batch_events", Signed, post(api::trigger_batch)),
        ("/apps/{app_id}/channels", Signed, get(api::list_channels)),
        ("/apps/{app_id}/channels/{channel}", Signed, get(api::channel_info)),
        ("/apps/{app_id}/channels/{channel}/users", Signed, get(api::channel_users)),
        ("/apps/{app_id}/users/{user_id}/terminate_connections", Signed, post(api::terminate_connections)),
        // The Python SDK's form: the signed query's auth_key names the app.
        ("/users/{user_id}/terminate_connections", Signed, post(api::terminate_connections)),
        ("/apps/{app_id}/domain-events", Signed, post(notifications::ingest)),
        ("/apps/{app_id}/audit", Signed, get(notifications::audit)),
        ("/broadcasting/auth", Bearer, post(authorize::channel_auth)),
        ("/broadcasting/user-auth", Bearer, post(authorize::user_auth)),
        ("/api/v1/notifications", Bearer, get(inbox::list)),
        ("/api/v1/notifications/read-all", Bearer, post(inbox::mark_all_read)),
        ("/api/v1/notifications/{id}/read", Bearer, post(inbox::mark_read)),
        ("/api/v1/preferences", Bearer, get(inbox::get_preferences).put(inbox::put_preferences)),
        ("/api/v1/channels/{channel}/events", Bearer, get(inbox::channel_history)),
        ("/up", Open, get(admin::up)),
        ("/live", Open, get(admin::live)),
    ]
}

fn admin_routes() -> Vec<Entry> {
    use Access::{Admin, Open};
    vec![
        ("/metrics", Open, get(admin::metrics)),
        ("/up", Open, get(admin::up)),
        ("/live", Open, get(admin::live)),
        // The page answers the login form itself when there is no session.
        ("/dashboard", Open, get(dashboard::page)),
        ("/dashboard/style.css", Open, get(dashboard::style)),
        ("/dashboard/icon.svg", Open, get(dashboard::icon)),
        ("/dashboard/login", Open, post(dashboard::login)),
        ("/dashboard/logout", Open, post(dashboard::logout)),
        ("/dashboard/app.js", Admin, get(dashboard::script)),
        ("/admin/api/status", Admin, get(admin::status)),
        ("/admin/api/stream", Admin, get(dashboard::stream)),
        ("/admin/api/test-broadcast", Admin, post(dashboard::test_broadcast)),
        ("/admin/api/dead-letters", Admin, get(dashboard::dead_letters)),
        ("/admin/api/dead-letters/{id}/retry", Admin, post(dashboard::retry_dead_letter)),
    ]
}

/// Every route of both listeners, as the routers are built from them.
pub fn table() -> Vec<Route> {
    let main =
        main_routes().into_iter().map(|(path, access, _)| Route { listener: Listener::Main, path, access });
    let admin =
        admin_routes().into_iter().map(|(path, access, _)| Route { listener: Listener::Admin, path, access });
    main.chain(admin).collect()
}

/// The main listener's routes; the caller adds the fallback and the listener-wide layers.
pub(crate) fn main_router(state: &SharedState) -> Router<SharedState> {
    let mut open = Router::new();
    let mut browser = Router::new();
    for (path, access, route) in main_routes() {
        match access {
            Access::Bearer => browser = browser.route(path, route),
            Access::Open | Access::Signed => open = open.route(path, route),
            Access::Admin => unreachable!("no admin route on the main listener"),
        }
    }
    open.merge(browser.layer(from_fn_with_state(state.clone(), authorize::cors)))
}

/// The admin listener: its routes behind `guard::guard` (Host allow-list, sign-in throttle) and
/// the HTTP metrics. The listener (`listener::serve`) gives every request its peer address
/// (`ConnectInfo`) for the throttle.
pub(crate) fn admin_listener(state: SharedState) -> Router {
    admin_router(&state)
        .layer(from_fn_with_state(state.clone(), crate::admin::guard))
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

/// The admin listener's routes; `admin_listener` adds the listener-wide layers.
fn admin_router(state: &SharedState) -> Router<SharedState> {
    let mut open = Router::new();
    let mut guarded = Router::new();
    for (path, access, route) in admin_routes() {
        match access {
            Access::Admin => guarded = guarded.route(path, route),
            Access::Open => open = open.route(path, route),
            Access::Signed | Access::Bearer => {
                unreachable!("no signed or bearer route on the admin listener")
            }
        }
    }
    let guarded = guarded
        .route_layer(from_fn_with_state(state.clone(), crate::admin::require_admin))
        .layer(Extension(dashboard::feed()));
    open.merge(guarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once_per_listener() {
        let table = table();
        for route in &table {
            let same =
                table.iter().filter(|other| other.listener == route.listener && other.path == route.path);
            assert_eq!(same.count(), 1, "{route:?}");
        }
        assert!(table.iter().all(|route| route.listener == Listener::Admin || route.access != Access::Admin));
    }
}
