//! The built-in dashboard in headless Chromium (Selenium over Debian's chromedriver): it loads
//! with no console error, fills the board, shows values changing, stacks on a phone, reconnects
//! by itself after a restart, and copes with a session that has no trades yet. The run refreshes
//! `docs/dashboard.png`, the screenshot in the README.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn browser(args: &[&str]) -> std::process::Child {
    let script = format!(
        "{}/tests/e2e/dashboard_browser.py",
        env!("CARGO_MANIFEST_DIR")
    );
    Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs selenium and chromedriver)")
}

/// Kills the browser driver however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn finish(child: &mut Reap, mut stdout: impl BufRead) -> serde_json::Value {
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "the browser check failed: {err}\n{rest}");
    serde_json::from_str(rest.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON from the browser check ({e}): {rest}\n{err}"))
}

#[test]
fn the_dashboard_fills_changes_stacks_and_reconnects_after_a_restart() {
    let port = free_port().to_string();
    let data_dir =
        std::env::temp_dir().join(format!("marketcast-dashboard-{}", std::process::id()));
    let data = data_dir.to_string_lossy().into_owned();
    let env = [
        ("APP_PORT", port.as_str()),
        ("DATA_DIR", data.as_str()),
        ("WS_BROADCAST_INTERVAL", "0.5"),
        ("SIM_RATE", "600"),
    ];
    let mut server = ServerProcess::start(&env);
    let screenshot = format!("{}/docs/dashboard.png", env!("CARGO_MANIFEST_DIR"));
    let http = format!("http://127.0.0.1:{port}");
    let mut child = Reap(browser(&[
        "--http",
        &http,
        "--screenshot",
        &screenshot,
        "--restart",
    ]));
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the browser check ended before the restart");
        if line.trim() == "RESTART" {
            break;
        }
    }
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    drop(server);
    let server = ServerProcess::start(&env);
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let seen = finish(&mut child, stdout);
    assert_eq!(seen["rows"], 30, "{seen}");
    assert_ne!(seen["seq_before"], seen["seq_after"]);
    assert!(seen["charts"].as_u64().unwrap() >= 2);
    assert_eq!(seen["reconnected"], true);
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn the_dashboard_shows_an_empty_session_without_errors() {
    let server = ServerProcess::start(&[("FEED", "ingest"), ("INGEST_TOKEN", "t")]);
    let http = format!("http://{}", server.addr);
    let mut child = Reap(browser(&["--http", &http, "--empty"]));
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let seen = finish(&mut child, stdout);
    assert_eq!(seen["empty_notice"], true, "{seen}");
    assert_eq!(seen["rows"], 0);
}

#[test]
fn the_original_frontends_six_pages_get_their_data_in_a_browser() {
    // A live simulated session, with the volume-spike rule made sensitive so the signals page
    // has alerts within seconds.
    let server = ServerProcess::start(&[
        ("SIM_RATE", "1000"),
        ("WS_BROADCAST_INTERVAL", "0.5"),
        ("ALERT_VOLUME_SPIKE_RATIO", "1.0"),
        ("ALERT_VOLUME_MIN_TRADES", "1"),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(server.wait_health(|h| {
        h["database"] == "connected" && h["history"]["written"].as_u64() > Some(2000)
    }));
    let http = format!("http://{}", server.addr);
    let script = format!("{}/tests/e2e/pages_browser.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([script.as_str(), "--http", http.as_str()])
        .output()
        .expect("python3 runs (scripts/test installs selenium and chromedriver)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pages: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(pages["board"]["symbols"].as_u64().unwrap() >= 20, "{pages}");
    assert!(pages["signals"]["received"].as_u64().unwrap() >= 1);
    assert_eq!(pages["derivatives"]["open_interest"], 0);
}
