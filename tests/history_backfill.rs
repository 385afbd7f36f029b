//! History loses nothing while its database is there: a simulated back-fill (`SIM_BACKFILL`)
//! produces records faster than the writer takes them, and used to overflow its bounded queue
//! (a full simulated day, release build, dropped 3.25 million of 4.6 million records); now the
//! back-fill waits for the writer, and ends with `history.dropped` at 0, every record the
//! processor made written, and as many rows in the database file.
//!
//! The queue is made small (`HISTORY_BUFFER=2000`) so that a short back-fill is many times
//! its size: a debug build's simulator is slower than its writer and would not fill the
//! default queue of 200,000 in a test's time (measured: 540,000 events back-filled, no drop),
//! while the code before this test, with `HISTORY_BUFFER=1000` and ten simulated minutes,
//! wrote 9,000 records and dropped 116,875.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Seven simulated minutes: about 120,000 events and 84,000 records, forty times the queue.
const BACKFILL_SECONDS: &str = "400";

/// The writer's queue, in records.
const BUFFER: &str = "2000";

/// The history block of `/health` once the back-fill is over and every record is written
/// (the clock is stopped, so nothing comes after it). A guard against a hang, not a timing
/// bound: the back-fill takes as long as the database needs.
async fn when_all_written(server: &ServerProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let h = server.get("/health").await.json();
        let history = &h["history"];
        if h["feed"]["state"] == "running"
            && history["queued"] == 0
            && history["recorded"].as_u64().is_some_and(|r| r > 0)
            && history["written"] == history["recorded"]
        {
            return h;
        }
        assert!(
            history["dropped"] == 0,
            "records were dropped while the database was there: {h}"
        );
        assert!(Instant::now() < deadline, "the back-fill never ended: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Rows of the raw series in the SQLite file.
async fn raw_rows(file: &std::path::Path) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut total = 0;
    for table in [
        "tick_data",
        "foreign_flow",
        "index_snapshots",
        "derivatives",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        total += n;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_waits_for_the_history_writer_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("marketcast-backfill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = ServerProcess::start(&[
        ("DATA_DIR", dir.to_str().unwrap()),
        ("SIM_BACKFILL", BACKFILL_SECONDS),
        ("HISTORY_BUFFER", BUFFER),
        // A stopped clock: the back-fill is the whole session, and nothing comes after it.
        ("CLOCK_FIXED_AT", "2026-11-26T13:00:00+07:00"),
        ("CHECKPOINT_INTERVAL", "0"),
    ]);
    let h = when_all_written(&server).await;
    let history = &h["history"];
    assert_eq!(history["dropped"], 0, "{h}");
    let written = history["written"].as_u64().unwrap();
    assert!(
        written > 60_000,
        "the back-fill made many times the records the queue holds: {h}"
    );
    assert_eq!(h["database"], "connected", "{h}");
    // Every record is a row.
    assert_eq!(
        raw_rows(&dir.join("history.sqlite3")).await,
        written as i64,
        "{h}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
