//! History on PostgreSQL (`DATABASE_URL`), the server `scripts/test` starts: the same imported
//! morning gives the same candles and the same answers from every route as on SQLite.

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

/// Two producers on one feed and one PostgreSQL: only the one that holds the lease writes, so
/// the session is in the database once (a standby's records would double every volume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_publishing_producer_writes_history() {
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
    let leader = common::ServerProcess::start(&env);
    leader.wait_health(|h| h["broker"]["leader"] == true).await;
    let standby = common::ServerProcess::start(&env);
    standby
        .wait_health(|h| h["redis"] == "connected" && h["database"] == "connected")
        .await;
    let lines = common::simulated_day(4000, 3);
    for chunk in lines.chunks(500) {
        let body: Vec<&str> = chunk.iter().map(|l| common::envelope_of(l)).collect();
        let body = body.join("\n");
        for node in [&leader, &standby] {
            assert_eq!(common::post_ingest(node, TOKEN, &body).await.status, 200);
        }
    }
    let traded = |snapshot: &Value| snapshot["quotes"]["FPT"]["total_volume"].as_i64().unwrap();
    let expected = traded(&leader.get("/api/market/snapshot").await.json());
    assert_eq!(
        expected,
        traded(&standby.get("/api/market/snapshot").await.json())
    );
    assert!(expected > 0);
    let candle_volume = || async {
        let r = leader
            .get(&format!("/api/history/fpt/candles?start={DAY}&end={DAY}"))
            .await;
        r.json()
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["volume"].as_i64().unwrap_or(0))
                    .sum::<i64>()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while candle_volume().await != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "candles never held the session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Both writers' batches would have landed by now (one a second); still once.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        candle_volume().await,
        expected,
        "the session is written once"
    );
    let h = standby.get("/health").await.json();
    assert_eq!(h["history"]["written"], 0, "the standby wrote nothing: {h}");
}
