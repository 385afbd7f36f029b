//! A restart loses nothing of the session: the state is checkpointed to `DATA_DIR` and read back
//! after `kill -9`; bad or stale checkpoints are reported and ignored; `seq` carries on.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const TOKEN: &str = "restart-token";

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("marketcast-restart-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn written(h: &serde_json::Value) -> u64 {
    h["checkpoint"]["written"].as_u64().unwrap_or(0)
}

fn total_volume(snapshot: &serde_json::Value) -> i64 {
    snapshot["quotes"]
        .as_object()
        .unwrap()
        .values()
        .map(|q| q["total_volume"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn kill_9_and_restart_give_back_the_same_session_and_seq_carries_on() {
    let dir = data_dir("exact");
    let dir_s = dir.display().to_string();
    let env = [
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("CLOCK_FIXED_AT", "2026-11-26T11:00:00+07:00"),
        ("DATA_DIR", dir_s.as_str()),
        ("CHECKPOINT_INTERVAL", "0.2"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ];
    let server = ServerProcess::start(&env);
    let r = post_ingest(&server, TOKEN, &simulated_day(3000, 31).join("\n")).await;
    assert_eq!(r.status, 200);
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut ws, Duration::from_secs(5)).await;
    let seq_seen = v["seq"].as_u64().unwrap();
    // Two more checkpoints: one was surely taken after everything above.
    let before = written(&server.get("/health").await.json());
    server.wait_health(|h| written(h) >= before + 2).await;
    let saved = server.get("/api/market/snapshot").await.json();
    assert!(total_volume(&saved) > 0);
    drop(ws);
    drop(server); // SIGKILL: no shutdown, no last checkpoint.

    let server = ServerProcess::start(&env);
    let restored = server.get("/api/market/snapshot").await.json();
    assert_eq!(restored, saved, "the whole session is back");
    let h = server.get("/health").await.json();
    assert!(
        h["checkpoint"]["restore"]
            .as_str()
            .unwrap()
            .starts_with("restored the session"),
        "{h}"
    );
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut ws, Duration::from_secs(5)).await;
    assert!(
        v["seq"].as_u64().unwrap() > seq_seen,
        "seq carries on after a restart: {} after {seq_seen}",
        v["seq"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_the_simulator_a_kill_loses_at_most_one_checkpoint_interval() {
    let dir = data_dir("sim");
    let dir_s = dir.display().to_string();
    let env = [
        ("SIM_RATE", "2000"),
        ("DATA_DIR", dir_s.as_str()),
        ("CHECKPOINT_INTERVAL", "1"),
    ];
    let server = ServerProcess::start(&env);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Totals a little over two intervals before the kill: a checkpoint taken after this is
    // surely on disk when the process dies.
    let early = total_volume(&server.get("/api/market/snapshot").await.json());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = total_volume(&server.get("/api/market/snapshot").await.json());
    assert!(late > early, "the simulator trades");
    drop(server);
    let server = ServerProcess::start(&env);
    let restored = total_volume(&server.get("/api/market/snapshot").await.json());
    assert!(
        restored >= early,
        "restored {restored}: less than the totals ({early}) of more than one interval before the kill"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn corrupt_and_stale_checkpoints_are_reported_and_ignored() {
    let dir = data_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.display().to_string();
    let day1 = [
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("CLOCK_FIXED_AT", "2026-11-26T11:00:00+07:00"),
        ("DATA_DIR", dir_s.as_str()),
        ("CHECKPOINT_INTERVAL", "0.2"),
    ];
    // A truncated file: reported, ignored, the server starts empty.
    std::fs::write(
        dir.join("checkpoint.json"),
        br#"{"writer":"marketcast","format":1,"written_at":"#,
    )
    .unwrap();
    let server = ServerProcess::start(&day1);
    let h = server.get("/health").await.json();
    assert!(
        h["checkpoint"]["restore"]
            .as_str()
            .unwrap()
            .contains("not a checkpoint"),
        "{h}"
    );
    assert_eq!(
        total_volume(&server.get("/api/market/snapshot").await.json()),
        0
    );
    // Fill the session and let it be checkpointed.
    post_ingest(&server, TOKEN, &simulated_day(500, 31).join("\n")).await;
    let before = written(&server.get("/health").await.json());
    server.wait_health(|h| written(h) >= before + 2).await;
    drop(server);
    // The next day (past the 15:00 reset) the checkpoint is the old session's: discarded.
    let mut day2 = day1;
    day2[2] = ("CLOCK_FIXED_AT", "2026-11-27T09:30:00+07:00");
    let server = ServerProcess::start(&day2);
    let h = server.get("/health").await.json();
    assert!(
        h["checkpoint"]["restore"]
            .as_str()
            .unwrap()
            .contains("discarded"),
        "{h}"
    );
    assert_eq!(
        total_volume(&server.get("/api/market/snapshot").await.json()),
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
