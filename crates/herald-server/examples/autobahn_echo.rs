//! An echo server on Herald's WebSocket layer (the sessions' settings and protocol-error close
//! codes), for the Autobahn TestSuite's fuzzing client: `scripts/autobahn` runs it.
//! Prints `listening on ADDRESS`, then echoes every text and binary message on any path.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, herald_server::conformance_echo_router()).await
}
