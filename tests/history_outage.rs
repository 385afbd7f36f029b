//! The history database goes away mid-session and comes back (PostgreSQL, stopped and started
//! under a running server): streaming never stops, `/api/history` answers 503 meanwhile and
//! `/health` says the database is down, records queue up, and history resumes by itself when
//! the database is back, with what was queued written. Its own test binary: it stops the test
//! PostgreSQL server that the other history tests use.

mod common;

use std::time::{Duration, Instant};

use common::history::*;
use common::*;

fn pg_ctl(action: &str) {
    let ctl = std::env::var("MARKETCAST_TEST_PG_CTL").unwrap_or_else(|_| {
        panic!("MARKETCAST_TEST_PG_CTL is not set: run scripts/test, which starts PostgreSQL")
    });
    let extra = if action == "stop" { " -m fast" } else { "" };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{ctl} {action}{extra} >/dev/null"))
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl {action} failed");
}

/// Starts the database again however the test ends, so the other tests find it.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(|| pg_ctl("start"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_the_database_going_away_and_resumes_when_it_is_back() {
    let url = fresh_postgres_database("outage").await;
    let server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("SIM_RATE", "500"),
        ("WS_BROADCAST_INTERVAL", "0.2"),
    ]);
    let h = server
        .wait_health(|h| h["database"] == "connected" && h["history"]["written"].as_u64() > Some(0))
        .await;
    let written_before = h["history"]["written"].as_u64().unwrap();
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    next_json(&mut ws, Duration::from_secs(10)).await;

    let _restart = Restart;
    pg_ctl("stop");
    let down = server
        .wait_health(|h| {
            h["database"] == "unavailable" && h["history"]["queued"].as_u64() > Some(0)
        })
        .await;
    assert!(down["history"]["last_error"].is_string(), "{down}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = server
        .get(&format!(
            "/api/history/FPT/candles?start={today}&end={today}"
        ))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"detail": "Database unavailable"})
    );
    // Streaming goes on the whole time.
    let until = Instant::now() + Duration::from_secs(2);
    let mut seqs = Vec::new();
    while Instant::now() < until {
        let (_, v) = next_json(&mut ws, Duration::from_secs(10)).await;
        seqs.push(v["seq"].as_u64().unwrap());
    }
    assert!(
        seqs.len() >= 3 && seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{seqs:?}"
    );
    let queued = server.get("/health").await.json()["history"]["queued"]
        .as_u64()
        .unwrap();

    pg_ctl("start");
    let back = server
        .wait_health(|h| {
            h["database"] == "connected"
                && h["history"]["queued"] == 0
                && h["history"]["written"].as_u64().unwrap() >= written_before + queued
        })
        .await;
    assert_eq!(back["history"]["dropped"], 0, "{back}");
    let candles = server
        .get(&format!(
            "/api/history/FPT/candles?start={today}&end={today}"
        ))
        .await;
    assert_eq!(candles.status, 200);
    assert!(!candles.json().as_array().unwrap().is_empty());
    next_json(&mut ws, Duration::from_secs(10)).await;
}
