//! Integration tests of herald-broker against real Redis: the shared server on 127.0.0.1:6379
//! (each test under its own random prefix, so they run in parallel) and servers the tests start
//! themselves (outages, Redis Cluster). Without Redis they print a skip, unless
//! `HERALD_REQUIRE_SERVICES=1` makes that a failure.

mod cluster;
mod harness;
mod limits;
mod nodes;
mod outage;
mod presence;
mod pubsub;
mod users;
