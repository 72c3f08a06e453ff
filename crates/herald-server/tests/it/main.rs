//! Integration tests: the real `App` on 127.0.0.1:0, driven by real WebSocket and HTTP clients.
//! Every test runs on a multi-thread runtime (two workers), as the server does in production.
#![allow(unreachable_pub)]

mod admin;
mod api;
mod authorization;
mod cluster;
mod counting;
mod dashboard;
mod harness;
mod hostile;
mod hostile_events;
mod http_transports;
mod notify;
mod protocol;
mod routes;
mod sessions;
mod slow_clients;
mod tls;
mod upstream;
mod webhooks;
