//! Tests of the connection task.

use std::sync::Arc;

use axum::extract::ws::WebSocket;
use herald_protocol::CloseCode;

use super::{connection, SessionContext};
use crate::tenant::Tenant;

/// The size of the connection task's future, from its type alone.
fn size_of_task<F>(_: fn(SessionContext, Option<Arc<Tenant>>, Option<CloseCode>, WebSocket) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Every open connection carries this future for its whole life (docs/benchmarks.md, "bytes per
/// connection"): it must not grow unnoticed. Test profile: 2064 bytes before the session was
/// made generic over its frames, 2048 since.
#[test]
fn the_connection_task_stays_small() {
    let size = size_of_task(connection::<WebSocket>);
    assert!(size <= 2048, "the connection task grew to {size} bytes");
}
