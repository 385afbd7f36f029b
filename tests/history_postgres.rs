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
