//! `marketcast watch` against a running server: `--once` prints the board, `--json` prints the
//! messages, `--token` gets through auth, and the live view draws in a terminal and quits on `q`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A replayed morning, finished before the test looks: every snapshot is the same full one.
async fn frozen_server(extra: &[(&str, &str)]) -> ServerProcess {
    let dir = std::env::temp_dir().join(format!("marketcast-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("morning-{}.jsonl", extra.len()));
    std::fs::write(&file, simulated_day(20_000, 11).join("\n")).unwrap();
    let file = file.to_string_lossy().into_owned();
    let mut env = vec![
        ("FEED", "replay"),
        ("REPLAY_FILE", file.as_str()),
        ("REPLAY_SPEED", "max"),
        ("WS_BROADCAST_INTERVAL", "0.2"),
    ];
    env.extend_from_slice(extra);
    let server = ServerProcess::start(&env);
    server
        .wait_health(|h| h["feed"]["state"] == "finished")
        .await;
    server
}

/// Kills the child (and so the watcher under it) however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .arg("watch")
        .args(args)
        .env_remove("WS_AUTH_TOKEN")
        .output()
        .unwrap()
}

/// `marketcast watch URL` in a pseudo-terminal of 100x50 (`script`, as an SSH session gives
/// one); returns the child and what it draws, as it comes.
fn watch_in_terminal(url: &str) -> (Reap, std::sync::mpsc::Receiver<Vec<u8>>) {
    // A new pseudo-terminal has no size until one is set, as a terminal window would.
    let cmd = format!(
        "stty cols 100 rows 50; exec {} watch {url}",
        env!("CARGO_BIN_EXE_marketcast")
    );
    let mut child = Reap(
        Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env_remove("WS_AUTH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs"),
    );
    let mut out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads the screen until `drawn` holds; panics with what was drawn after 30 s.
fn screen_until(rx: &std::sync::mpsc::Receiver<Vec<u8>>, drawn: impl Fn(&str) -> bool) -> String {
    let mut screen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !drawn(&String::from_utf8_lossy(&screen)) {
        assert!(
            Instant::now() < deadline,
            "not drawn: {}",
            String::from_utf8_lossy(&screen)
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            screen.extend_from_slice(&chunk);
        }
    }
    String::from_utf8_lossy(&screen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_the_board_and_the_token_gets_through() {
    let server = frozen_server(&[("WS_AUTH_TOKEN", "s3cret")]).await;
    let url = server.ws_url("/ws/market");

    let refused = watch(&["--once", &url]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401"), "{err}");

    let http = format!("http://{}", server.addr);
    let out = watch(&["--once", "--token", "s3cret", &http]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("marketcast  seq "), "{text}");
    assert!(
        text.contains("\nVN30 ") && text.contains("\nVNINDEX "),
        "{text}"
    );
    assert!(text.contains("basis"), "{text}");
    assert!(text.contains("foreign  buy"), "{text}");
    // The board: a header, then one row per VN30 symbol, each with a price.
    let snapshot = server.get("/api/market/snapshot?token=s3cret").await.json();
    let symbols = snapshot["prices"].as_object().unwrap();
    assert_eq!(symbols.len(), 30);
    for (symbol, p) in symbols {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(symbol.as_str()))
            .unwrap_or_else(|| panic!("no row for {symbol}: {text}"));
        let price: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(
            (price - p["last_price"].as_f64().unwrap() / 1000.0).abs() < 0.006,
            "{row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_one_message_per_line() {
    let server = frozen_server(&[]).await;
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .args(["watch", "--json", &server.ws_url("/ws/market")])
            .env_remove("WS_AUTH_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        seqs.push(v["seq"].as_u64().unwrap());
    }
    drop(child);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_draws_in_a_terminal_and_quits_on_q() {
    let server = frozen_server(&[]).await;
    let (mut child, rx) = watch_in_terminal(&server.ws_url("/ws/market"));
    // Wait until the board was drawn with data, then press q.
    let text = screen_until(&rx, |s| s.contains("VNINDEX") && s.contains("msg/s"));
    child.0.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "q did not quit the watcher");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(
        text.contains("board") && text.contains("active buy"),
        "{text}"
    );
}

#[test]
fn q_quits_while_a_connection_hangs() {
    // A server that takes the TCP connection and never answers the upgrade: the watcher waits
    // up to 15 s for it, and `q` must not wait with it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws/market", silent.local_addr().unwrap());
    let (mut child, rx) = watch_in_terminal(&url);
    screen_until(&rx, |s| s.contains("connecting"));
    let pressed = Instant::now();
    child.0.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        // The connection attempt alone would take 15 s.
        assert!(
            pressed.elapsed() < Duration::from_secs(10),
            "q did not quit while connecting"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(silent);
}
