//! History on PostgreSQL (`DATABASE_URL`), the server `scripts/test` starts: the same imported
//! morning gives the same candles and the same answers from every route as on SQLite.

mod common;

use common::history::*;

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
