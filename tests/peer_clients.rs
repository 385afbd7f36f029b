//! End-to-end checks with independent client implementations: Python `websockets` and headless
//! Chromium decode the shared permessage-deflate frame, and Chromium stays connected across
//! server heartbeats (browsers answer Pings by themselves), and the README's Python ingest bridge
//! feeds `/ws/ingest`; Python also reads `wss://` with the server's certificate. `scripts/test`
//! installs what they need.

mod common;

use std::process::Command;

use common::*;

/// What `python_client.py` reports after reading the 480 KB market: it negotiated
/// permessage-deflate, decoded the same text as a plain client for at least one seq, and its
/// last message was the whole market.
fn assert_read_the_large_market_compressed(v: &serde_json::Value) {
    assert!(v["extensions"]
        .as_str()
        .unwrap()
        .contains("permessage-deflate"));
    assert!(v["compared"].as_u64().unwrap() >= 1);
    assert!(v["bytes"].as_u64().unwrap() > 470_000, "{v}");
}

#[test]
fn python_websockets_decodes_the_shared_deflate_frame() {
    let server = large_static_server("0.2", &[]);
    let v = run_python(
        "python_client.py",
        &["--url", &server.ws_url("/ws/market"), "--messages", "4"],
    );
    assert_read_the_large_market_compressed(&v);
    let health = tokio_runtime().block_on(server.get("/health")).json();
    assert!(health["broadcast"]["messages_sent"].as_u64().unwrap() >= 10);
}

#[test]
fn python_websockets_reads_wss_trusting_the_servers_ca() {
    let ca = common::tls::TestCa::new("python");
    let cert = ca.issue("server");
    let server = large_static_server(
        "0.2",
        &[
            ("TLS_CERT", cert.cert.to_str().unwrap()),
            ("TLS_KEY", cert.key.to_str().unwrap()),
        ],
    );
    let url = format!("wss://localhost:{}/ws/market", server.addr.port());
    let v = run_python(
        "python_client.py",
        &[
            "--url",
            &url,
            "--messages",
            "4",
            "--cafile",
            ca.ca_file().to_str().unwrap(),
        ],
    );
    assert!(v["tls"].as_str().unwrap().starts_with("TLS"), "{v}");
    assert_read_the_large_market_compressed(&v);
}

#[test]
fn chromium_decodes_deflate_and_stays_connected_across_heartbeats() {
    let server = large_static_server(
        "0.2",
        &[
            ("WS_HEARTBEAT_INTERVAL", "1"),
            ("WS_HEARTBEAT_TIMEOUT", "1"),
        ],
    );
    let http = format!("http://{}", server.addr);
    let v = run_python(
        "chromium_client.py",
        &["--http", &http, "--messages", "3", "--hold", "4"],
    );
    assert!(v["extensions"]
        .as_str()
        .unwrap()
        .contains("permessage-deflate"));
    // Four seconds at 5 Hz, with four heartbeat rounds: every frame a snapshot, none missed.
    let messages = v["messages"].as_u64().unwrap();
    assert!(messages >= 15, "{v}");
    assert_eq!(
        v["last_seq"].as_u64().unwrap() - v["first_seq"].as_u64().unwrap() + 1,
        messages
    );
    let health = tokio_runtime().block_on(server.get("/health")).json();
    assert_eq!(health["broadcast"]["heartbeat_timeouts"], 0);
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The README's bridge for a feed that runs elsewhere (`examples/ingest_bridge.py`, Python
/// `websockets`) pushes a simulated session into `/ws/ingest`; every message is applied.
#[test]
fn the_python_ingest_bridge_forwards_every_message() {
    let server = ServerProcess::start(&[("FEED", "ingest"), ("INGEST_TOKEN", "bridge-token")]);
    let day = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["simulate", "--events", "2000", "--seed", "9"])
        .output()
        .expect("simulate");
    assert!(day.status.success());
    let mut bridge = Command::new("python3")
        .arg(format!(
            "{}/examples/ingest_bridge.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([server.ws_url("/ws/ingest").as_str(), "bridge-token"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the bridge");
    {
        use std::io::Write;
        let mut stdin = bridge.stdin.take().unwrap();
        stdin.write_all(&day.stdout).unwrap();
    }
    let status = bridge.wait().unwrap();
    assert!(status.success(), "the bridge exited with {status}");
    let rt = tokio_runtime();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let h = rt.block_on(server.get("/health")).json();
        let n = h["feed"]["messages"].as_u64().unwrap();
        if n == 2000 {
            assert_eq!(h["feed"]["malformed"], 0, "{h}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{n} of 2000: {h}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
