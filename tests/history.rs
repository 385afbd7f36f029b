//! History on the embedded database (SQLite): a replayed day imported with `marketcast import`
//! gives candles equal to candles computed here from the raw messages; every `/api/history`
//! route answers with the original's shapes, bounds and 422s, a range over
//! `HISTORY_MAX_RANGE_DAYS` with a 422 and at most `HISTORY_MAX_ROWS` rows; retention deletes
//! every raw series and keeps candles; a live session's candles grow as it trades; an
//! unreachable database leaves streaming alone and answers 503.

mod common;

use std::time::Duration;

use common::history::*;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_candles_equal_candles_summed_from_the_messages() {
    let day = Imported::new("candles", "");
    let server = day.server("").await;
    check_candles(&day, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_the_originals_shapes_and_bounds() {
    let day = Imported::new("routes", "");
    let server = day.server("").await;
    check_routes(&day, &server, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_writes_candles_that_grow() {
    let server = ServerProcess::start(&[("SIM_RATE", "1000")]);
    server.wait_health(|h| h["database"] == "connected").await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let path = format!("/api/history/FPT/candles?start={today}&end={today}");
    let volume = |v: &Value| -> i64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["volume"].as_i64().unwrap())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let v = server.get(&path).await.json();
        if volume(&v) > 0 {
            break volume(&v);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no candle was written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        let v = server.get(&path).await.json();
        if volume(&v) > first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the candles did not grow"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_and_streaming_goes_on() {
    // Nothing listens on port 1.
    let server = ServerProcess::start(&[
        (
            "DATABASE_URL",
            "postgres://marketcast:secret@127.0.0.1:1/marketcast",
        ),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    for _ in 0..3 {
        next_json(&mut ws, Duration::from_secs(10)).await;
    }
    let r = server
        .get(&format!("/api/history/FPT/candles?start={DAY}&end={DAY}"))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"detail": "Database unavailable"})
    );
    let h = server
        .wait_health(|h| h["history"]["last_error"].is_string())
        .await;
    assert_eq!(h["database"], "unavailable");
    assert_eq!(h["history"]["connected"], false);
    let shown = h["history"].to_string();
    assert!(!shown.contains("secret"), "{shown}");
    next_json(&mut ws, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_raw_series_past_the_retention_is_deleted_and_candles_kept() {
    let day = Imported::new("retention", "");
    check_retention(&day, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_keeps_to_its_row_limit_and_range() {
    let day = Imported::new("row-limit", "");
    check_row_limit(&day, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_written_in_two_runs_merges_the_minute_they_share() {
    // As a restart in mid-minute does: the second run's first candle holds only its own ticks,
    // and merges into the stored one.
    let dir = std::env::temp_dir().join(format!("marketcast-history-{}-split", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lines = simulated_morning();
    let half = lines.len() / 2;
    for (i, part) in [&lines[..half], &lines[half..]].iter().enumerate() {
        let file = dir.join(format!("part{i}.jsonl"));
        std::fs::write(&file, part.join("\n") + "\n").unwrap();
        import(&file, &dir.join("data"), "");
    }
    let server = ServerProcess::start(&[
        ("FEED", "ingest"),
        ("INGEST_TOKEN", "t"),
        ("DATA_DIR", dir.join("data").to_str().unwrap()),
    ]);
    server.wait_health(|h| h["database"] == "connected").await;
    for symbol in ["FPT", "VCB"] {
        assert_eq!(
            served_candles(&server, symbol).await,
            candles_from_messages(&lines, symbol),
            "{symbol}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
