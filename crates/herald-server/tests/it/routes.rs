//! Walks every route of both listeners as `herald_server::routes::table()` declares them (the
//! routers are built from the same table) and proves that each signed, admin and bearer route
//! refuses a request without credentials, whatever the method: 401, or 405 for a method the
//! route does not serve. No route of those kinds answers anything else without credentials.

use herald_server::routes::{table, Access, Listener};

use crate::harness::TestServer;

/// The route's path with sample values for its parameters (a real app id and key).
fn concrete(path: &str) -> String {
    path.replace("{app_id}", "main")
        .replace("{key}", "main-key")
        .replace("{channel}", "private-walk")
        .replace("{user_id}", "42")
        .replace("{id}", "walk-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_admin_and_bearer_route_refuses_an_unauthenticated_request() {
    let server = TestServer::with_config(|config| config.admin.token = "walk-admin-token".into()).await;
    let http = reqwest::Client::new();
    let routes = table();
    let guarded: Vec<_> = routes.iter().filter(|route| route.access != Access::Open).collect();
    // Every kind of guard is walked, on both listeners.
    for access in [Access::Signed, Access::Admin, Access::Bearer] {
        assert!(guarded.iter().any(|route| route.access == access), "{access:?} routes exist");
    }
    for route in guarded {
        let address = match route.listener {
            Listener::Main => server.address,
            Listener::Admin => server.admin_address,
        };
        let url = format!("http://{address}{}", concrete(route.path));
        let mut refused = 0;
        for method in
            [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE]
        {
            let response = http
                .request(method.clone(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            assert!(
                status == 401 || status == 405,
                "{method} {url} ({:?}) answered {status} without credentials",
                route.access
            );
            if status == 401 {
                refused += 1;
            }
        }
        assert!(refused > 0, "{url}: no method reached the guard");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_routes_are_the_documented_ones() {
    let open: Vec<(Listener, &str)> = table()
        .into_iter()
        .filter(|route| route.access == Access::Open)
        .map(|route| (route.listener, route.path))
        .collect();
    assert_eq!(
        open,
        [
            (Listener::Main, "/app/{key}"),
            (Listener::Main, "/pusher/app/{key}/{server}/{session}/xhr_streaming"),
            (Listener::Main, "/pusher/app/{key}/{server}/{session}/xhr"),
            (Listener::Main, "/pusher/app/{key}/{server}/{session}/xhr_send"),
            (Listener::Main, "/up"),
            (Listener::Main, "/live"),
            (Listener::Admin, "/metrics"),
            (Listener::Admin, "/up"),
            (Listener::Admin, "/live"),
            (Listener::Admin, "/dashboard"),
            (Listener::Admin, "/dashboard/style.css"),
            (Listener::Admin, "/dashboard/icon.svg"),
            (Listener::Admin, "/dashboard/login"),
            (Listener::Admin, "/dashboard/logout"),
        ]
    );
}
