//! The documented Python example (`docs/examples/send_domain_events.py`, standard library only)
//! posts a signed domain event that the real server accepts: the docs say nothing the code does
//! not do.

mod common;

use std::path::Path;
use std::process::Command;

use common::start;

#[test]
fn the_documented_python_example_sends_a_domain_event() {
    let Ok(python) = which_python() else {
        assert!(std::env::var("CI").is_err(), "python3 is required in CI");
        eprintln!("skipping: python3 not found");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n[admin]\nport = 0\n\n[database]\nurl = \"sqlite://{}\"\n\n\
             [auth]\njwt_secret = \"py-secret\"\n\n[[apps]]\nid = \"424242\"\nkey = \"py-key\"\nsecret = \"py-secret\"\n",
            dir.path().join("herald.db").display()
        ),
    )
    .expect("config written");
    let (mut server, port) = start(&config);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/send_domain_events.py");
    let output = Command::new(python)
        .arg(&script)
        .env("HERALD_URL", format!("http://127.0.0.1:{port}"))
        .env("PUSHER_APP_ID", "424242")
        .env("PUSHER_APP_KEY", "py-key")
        .env("PUSHER_APP_SECRET", "py-secret")
        .output()
        .expect("python runs");
    let _ = server.kill();
    let _ = server.wait();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.starts_with("202 "), "{printed}");
    assert!(printed.contains("\"status\": \"accepted\""), "{printed}");
}

fn which_python() -> Result<&'static str, ()> {
    let found = Command::new("python3").arg("--version").output().is_ok_and(|output| output.status.success());
    if found {
        Ok("python3")
    } else {
        Err(())
    }
}
