//! The original's `/api/history/...` routes (reference A.1), with their parameters, bounds,
//! 422s, response shapes and order: a JSON array of flat objects by time, `[]` when nothing
//! matches (a contract that expired long ago included), 503 `{"detail":"Database unavailable"}`
//! while the database is away.
//!
//! Date windows are whole UTC days, `start 00:00 <= timestamp < (end + 1 day) 00:00`, as the
//! original's Docker deployment (UTC) answered them; the frontend asks for the UTC date, and a
//! VN session (09:00-15:00 +07:00) lies inside one UTC day. Where the original failed, this
//! answers: a negative `limit` on ticks is `[]` (the original's database refused it with a
//! 500), and a query error is a 503 with the same body, not a bare 500. One difference in
//! routing: a fixed segment wins over a symbol, so `/api/history/index/candles` is the index
//! named `CANDLES` (the original matched it as the ticker `INDEX`'s candles); no ticker is
//! called `INDEX` or `DERIVATIVES`.
//!
//! Every answer is bounded, where the original's were not (a year of index snapshots was one
//! answer): a date range of more than `HISTORY_MAX_RANGE_DAYS` days ([`QueryBounds`]) is a 422
//! on `end` that says so, in the shape of the other 422s; each route returns at most
//! `HISTORY_MAX_ROWS` rows (default [`MAX_ROWS`]), the earliest of its range (the ticks
//! route's own `limit` is at most that too); `foreign/daily` returns a row a day of at most
//! 365 days. Dates past Python's years
//! are 422s (see [`crate::query`]), never an overflow.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde_json::json;

use super::store::{self, Col};
use super::History;
use crate::query::Params;

/// Rows a route answers with, at most, by default: the ticks route's own most `limit`, and
/// more than a month of 1-minute candles of a whole day's trading (31 x 1,440).
pub const MAX_ROWS: i64 = 50_000;

/// What a history query may ask for.
#[derive(Debug, Clone, Copy)]
pub struct QueryBounds {
    /// The longest date range, in days, `start` and `end` included (`HISTORY_MAX_RANGE_DAYS`).
    pub max_range_days: u32,
    /// The most rows of one answer (`HISTORY_MAX_ROWS`).
    pub max_rows: i64,
}

impl Default for QueryBounds {
    fn default() -> Self {
        QueryBounds {
            max_range_days: 31,
            max_rows: MAX_ROWS,
        }
    }
}

/// The routes, to be nested at `/api/history`.
pub fn router(history: Option<Arc<History>>) -> Router {
    Router::new()
        .route("/{symbol}/candles", dated_route(&CANDLES))
        .route("/{symbol}/ticks", dated_route(&TICKS))
        .route("/{symbol}/foreign", dated_route(&FOREIGN))
        .route("/{symbol}/foreign/daily", get(foreign_daily))
        .route("/index/{name}", dated_route(&INDEX))
        .route("/index/{name}/candles", dated_route(&INDEX_CANDLES))
        .route("/derivatives/{contract}", dated_route(&DERIVATIVES))
        .with_state(history)
}

type St = State<Option<Arc<History>>>;

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"detail": "Database unavailable"})),
    )
        .into_response()
}

fn unprocessable(body: serde_json::Value) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// `[start 00:00, end + 1 day 00:00)` in UTC microseconds.
fn window(start: NaiveDate, end: NaiveDate) -> (i64, i64) {
    let micros = |d: NaiveDate| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros()
    };
    (micros(start), micros(end + chrono::Duration::days(1)))
}

/// A date-window route's query: `$1` the upper-cased path value, `$2..$3` the window, `$4`
/// the most rows: the `limit` parameter's when the route takes one (its default and most),
/// else [`MAX_ROWS`].
struct Table {
    sql: &'static str,
    columns: &'static [(&'static str, Col)],
    limit: Option<(i64, i64)>,
}

/// The handler of a date-window route.
fn dated_route(table: &'static Table) -> MethodRouter<Option<Arc<History>>> {
    get(move |State(h): St, Path(key): Path<String>, RawQuery(q): RawQuery| dated(h, key, q, table))
}

/// A date-window route: validates `start` and `end`, then runs the table's query.
async fn dated(
    history: Option<Arc<History>>,
    key: String,
    query: Option<String>,
    table: &Table,
) -> Response {
    let Table {
        sql,
        columns,
        limit,
    } = *table;
    let bounds = history.as_ref().map(|h| h.bounds).unwrap_or_default();
    let mut params = Params::parse(query.as_deref());
    let start = params.date("start");
    let end = params.date("end");
    if let (Some(start), Some(end)) = (start, end) {
        params.span_at_most(
            "end",
            (start, end),
            bounds.max_range_days,
            "HISTORY_MAX_RANGE_DAYS",
        );
    }
    let limit = match limit {
        Some((default, max)) => params
            .int("limit", Some(default), None, Some(max))
            .map(|l| l.min(bounds.max_rows)),
        None => Some(bounds.max_rows),
    };
    if let Some(body) = params.failure() {
        return unprocessable(body);
    }
    let (Some(start), Some(end)) = (start, end) else {
        return unprocessable(json!({"detail": []}));
    };
    let Some(pool) = history.and_then(|h| h.pool()) else {
        return unavailable();
    };
    if end < start || limit.is_some_and(|l| l <= 0) {
        return Json(json!([])).into_response();
    }
    let (from, until) = window(start, end);
    match store::rows(
        &pool,
        sql,
        &key.to_uppercase(),
        from,
        Some(until),
        limit,
        columns,
    )
    .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => {
            tracing::warn!("history query failed: {e}");
            unavailable()
        }
    }
}

const CANDLES: Table = Table {
    sql: "SELECT symbol, ts, open, high, low, close, volume, active_buy_vol, active_sell_vol \
         FROM candles_1m WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("symbol", Col::Text),
        ("timestamp", Col::Time),
        ("open", Col::Float),
        ("high", Col::Float),
        ("low", Col::Float),
        ("close", Col::Float),
        ("volume", Col::Int),
        ("active_buy_vol", Col::Int),
        ("active_sell_vol", Col::Int),
    ],
    limit: None,
};

const TICKS: Table = Table {
    sql: "SELECT symbol, ts, price, volume, side, bid, ask \
         FROM tick_data WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("symbol", Col::Text),
        ("timestamp", Col::Time),
        ("price", Col::Float),
        ("volume", Col::Int),
        ("side", Col::Text),
        ("bid", Col::Float),
        ("ask", Col::Float),
    ],
    limit: Some((10_000, 50_000)),
};

const FOREIGN: Table = Table {
    sql: "SELECT symbol, ts, buy_vol, sell_vol, net_vol, buy_value, sell_value \
         FROM foreign_flow WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("symbol", Col::Text),
        ("timestamp", Col::Time),
        ("buy_vol", Col::Int),
        ("sell_vol", Col::Int),
        ("net_vol", Col::Int),
        ("buy_value", Col::Float),
        ("sell_value", Col::Float),
    ],
    limit: None,
};

const INDEX: Table = Table {
    sql: "SELECT index_name, ts, value, change_pct, volume \
         FROM index_snapshots WHERE index_name = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("index_name", Col::Text),
        ("timestamp", Col::Time),
        ("value", Col::Float),
        ("change_pct", Col::Float),
        ("volume", Col::Int),
    ],
    limit: None,
};

const INDEX_CANDLES: Table = Table {
    sql: "SELECT index_name, ts, open, high, low, close, volume \
         FROM index_candles_1m WHERE index_name = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("index_name", Col::Text),
        ("timestamp", Col::Time),
        ("open", Col::Float),
        ("high", Col::Float),
        ("low", Col::Float),
        ("close", Col::Float),
        ("volume", Col::Int),
    ],
    limit: None,
};

const DERIVATIVES: Table = Table {
    sql: "SELECT contract, ts, price, basis, open_interest \
         FROM derivatives WHERE contract = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
    columns: &[
        ("contract", Col::Text),
        ("timestamp", Col::Time),
        ("price", Col::Float),
        ("basis", Col::Float),
        ("open_interest", Col::Int),
    ],
    limit: None,
};

/// `days` (default 30, at most 365): one row per UTC day since `now - days`, each column the
/// day's largest value (the end-of-day figure of the cumulative counters), as the original.
async fn foreign_daily(
    State(h): St,
    Path(symbol): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut params = Params::parse(q.as_deref());
    let days = params.int("days", Some(30), None, Some(365));
    if let Some(body) = params.failure() {
        return unprocessable(body);
    }
    let bounds = h.as_ref().map(|h| h.bounds).unwrap_or_default();
    let Some(pool) = h.and_then(|h| h.pool()) else {
        return unavailable();
    };
    let days = days.unwrap_or(30);
    if days <= 0 {
        return Json(json!([])).into_response();
    }
    let from = chrono::Utc::now().timestamp_micros() - days * 86_400_000_000;
    let sql = "SELECT (ts / 86400000000) * 86400000000 AS day, MAX(buy_vol), MAX(sell_vol), \
               MAX(net_vol), MAX(buy_value), MAX(sell_value) FROM foreign_flow \
               WHERE symbol = $1 AND ts >= $2 GROUP BY (ts / 86400000000) ORDER BY day \
               LIMIT $3";
    let columns = [
        ("day", Col::Time),
        ("buy_vol", Col::Int),
        ("sell_vol", Col::Int),
        ("net_vol", Col::Int),
        ("buy_value", Col::Float),
        ("sell_value", Col::Float),
    ];
    match store::rows(
        &pool,
        sql,
        &symbol.to_uppercase(),
        from,
        None,
        Some(bounds.max_rows),
        &columns,
    )
    .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => {
            tracing::warn!("history query failed: {e}");
            unavailable()
        }
    }
}
