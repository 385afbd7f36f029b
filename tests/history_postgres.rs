//! History on PostgreSQL (`DATABASE_URL`), the server `scripts/test` starts: the same imported
//! morning gives the same candles and the same answers from every route as on SQLite, the same
//! row limits, and the same retention of every raw series.

mod common;

use common::history::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_the_same_candles_and_routes_as_sqlite() {
    let url = fresh_postgres_database("routes").await;
    let day = Imported::new("pg-routes", &url);
    let server = day.server(&url).await;
    check_candles(&day, &server).await;
    check_routes(&day, &server, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_to_row_limits_and_deletes_every_raw_series_past_retention() {
    let url = fresh_postgres_database("bounds").await;
    let day = Imported::new("pg-bounds", &url);
    check_row_limit(&day, &url).await;
    check_retention(&day, &url).await;
}

/// An edge (`ROLE=edge`) runs no feed and writes nothing, yet answers `/api/history` from the
/// shared PostgreSQL the producers write: the same candles and routes as the node that wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_answers_history_from_the_shared_postgres() {
    let url = fresh_postgres_database("edge").await;
    let day = Imported::new("pg-edge", &url);
    let redis = common::redis_server::RedisServer::shared();
    let redis_url = redis.url();
    let edge = common::ServerProcess::start(&[
        ("ROLE", "edge"),
        ("REDIS_URL", redis_url.as_str()),
        ("DATABASE_URL", url.as_str()),
    ]);
    let h = edge
        .wait_health(|h| h["database"] == "connected" && h["redis"] == "connected")
        .await;
    assert_eq!(h["history"]["written"], 0, "an edge writes nothing: {h}");
    check_candles(&day, &edge).await;
    check_routes(&day, &edge, "postgres").await;
}

/// Two producers on one feed and one PostgreSQL: only the one holding the writer lock writes,
/// so the session is in the database once (a standby's records would double every volume);
/// when it is killed, the standby takes the lock and goes on writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_writes_a_shared_database_and_a_standby_takes_over() {
    const TOKEN: &str = "t";
    let url = fresh_postgres_database("two_producers").await;
    let redis = common::redis_server::RedisServer::shared();
    let redis_url = redis.url();
    let prefix = format!("mc-history-{}", std::process::id());
    // One stopped clock: every tick falls in one minute, whose candle holds the session.
    let env = [
        ("ROLE", "producer"),
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_CHANNEL_PREFIX", prefix.as_str()),
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("DATABASE_URL", url.as_str()),
        ("CLOCK_FIXED_AT", "2026-11-26T10:00:00+07:00"),
    ];
    let mut first = common::ServerProcess::start(&env);
    first.wait_health(|h| h["history"]["writer"] == true).await;
    let standby = common::ServerProcess::start(&env);
    let h = standby
        .wait_health(|h| h["database"] == "connected" && h["redis"] == "connected")
        .await;
    assert_eq!(h["history"]["writer"], false, "{h}");
    let lines = common::simulated_day(4000, 3);
    let bodies: Vec<String> = lines
        .chunks(500)
        .map(|c| {
            c.iter()
                .map(|l| common::envelope_of(l))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let (before, after) = bodies.split_at(bodies.len() / 2);
    for body in before {
        for node in [&first, &standby] {
            assert_eq!(common::post_ingest(node, TOKEN, body).await.status, 200);
        }
    }
    let traded = |snapshot: &Value| snapshot["quotes"]["FPT"]["total_volume"].as_i64().unwrap();
    let half = traded(&first.get("/api/market/snapshot").await.json());
    assert_eq!(
        half,
        traded(&standby.get("/api/market/snapshot").await.json())
    );
    assert!(half > 0);
    let candle_volume = |node: &common::ServerProcess| {
        let path = format!("/api/history/fpt/candles?start={DAY}&end={DAY}");
        let addr = node.addr;
        async move {
            common::http_get(addr, &path, &[])
                .await
                .json()
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| c["volume"].as_i64().unwrap_or(0))
                        .sum::<i64>()
                })
                .unwrap_or(0)
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while candle_volume(&standby).await != half {
        assert!(
            std::time::Instant::now() < deadline,
            "candles never held the first half"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Both nodes' batches would have landed by now (one a second): still once.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        candle_volume(&standby).await,
        half,
        "the session is written once"
    );
    let h = standby.get("/health").await.json();
    assert_eq!(h["history"]["written"], 0, "the standby wrote nothing: {h}");

    // The writer dies; the standby takes the lock and writes what comes next.
    let status = std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    first
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("killed");
    standby
        .wait_health(|h| h["history"]["writer"] == true)
        .await;
    for body in after {
        assert_eq!(common::post_ingest(&standby, TOKEN, body).await.status, 200);
    }
    let whole = traded(&standby.get("/api/market/snapshot").await.json());
    assert!(whole > half);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while candle_volume(&standby).await != whole {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never wrote the rest"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
