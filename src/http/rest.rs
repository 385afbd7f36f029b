//! The market's REST routes, with the original's paths and shapes (the frontend's fallback
//! while its socket is down, and the pages that poll).
//!
//! Every handler asks the node's [`MarketView`](super::view::MarketView) and shapes the answer;
//! none knows whether the data comes from a processor here or from a producer through the
//! broker. Bad parameters get FastAPI-shaped 422s, as the original's did.

use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{json_bytes, AppState};
use crate::market::alerts::{AlertType, Severity};

/// An edge that has not yet heard from a producer.
fn no_state_yet() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "detail": "No market data from the producer yet" })),
    )
        .into_response()
}

/// `GET /api/market/snapshot`: the current `MarketSnapshot`.
pub async fn snapshot(State(app): State<AppState>) -> Response {
    match app.view.snapshot().await {
        Some(body) => json_bytes(body),
        None => no_state_yet(),
    }
}

/// `GET /api/market/board`: the trader's board, as `/ws/board` sends it.
pub async fn board(State(app): State<AppState>) -> Response {
    match app.view.board().await {
        Some(body) => json_bytes(body),
        None => no_state_yet(),
    }
}

/// `GET /api/market/foreign-detail`.
pub async fn foreign_detail(State(app): State<AppState>) -> Response {
    match app.view.foreign_detail().await {
        Some((summary, stocks)) => {
            Json(json!({ "summary": summary, "stocks": stocks })).into_response()
        }
        None => no_state_yet(),
    }
}

/// `GET /api/market/volume-stats`.
pub async fn volume_stats(State(app): State<AppState>) -> Response {
    match app.view.volume_stats().await {
        Some(stats) => Json(json!({ "stats": stats })).into_response(),
        None => no_state_yet(),
    }
}

#[derive(Deserialize)]
pub struct TrendQuery {
    minutes: Option<String>,
}

/// `GET /api/market/basis-trend?minutes=N` (1-120, default 30).
pub async fn basis_trend(State(app): State<AppState>, Query(q): Query<TrendQuery>) -> Response {
    let minutes = match q.minutes.as_deref().map(str::trim) {
        None => 30,
        Some(m) => match m.parse::<u32>() {
            Ok(n) if (1..=120).contains(&n) => n,
            _ => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({
                        "detail": [{
                            "loc": ["query", "minutes"],
                            "msg": "minutes must be a whole number from 1 to 120",
                            "input": m,
                        }]
                    })),
                )
                    .into_response()
            }
        },
    };
    match app.view.basis_trend(minutes, app.clock.now()).await {
        Some(points) => Json(points).into_response(),
        None => no_state_yet(),
    }
}

/// `GET /api/market/alerts?limit&type&severity`: the session's alerts, newest first; `limit`
/// 1-200 (default 50), `type` and `severity` exact lower-case names; anything else is a 422 as
/// the original's.
pub async fn alerts(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let mut params = crate::query::Params::parse(query.as_deref());
    let limit = params.int("limit", Some(50), Some(1), Some(200));
    let types: Vec<&str> = AlertType::ALL.iter().map(|t| t.as_str()).collect();
    let kind = params.one_of("type", &types);
    let severities: Vec<&str> = Severity::ALL.iter().map(|t| t.as_str()).collect();
    let severity = params.one_of("severity", &severities);
    if let Some(body) = params.failure() {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    let limit = limit.unwrap_or(50) as usize;
    let kind = kind.as_deref().and_then(AlertType::parse);
    let severity = severity.as_deref().and_then(Severity::parse);
    match app.view.alerts(limit, kind, severity).await {
        Some(list) => Json(list).into_response(),
        None => no_state_yet(),
    }
}

/// `GET /api/vn30-components`.
pub async fn vn30_components(State(app): State<AppState>) -> Response {
    match app.view.vn30().await {
        Some(symbols) => Json(json!({ "symbols": symbols })).into_response(),
        None => no_state_yet(),
    }
}

/// The snapshot's JSON Schema, generated from the types (as `docs/snapshot.schema.json`).
pub async fn schema() -> Response {
    Json(crate::market::snapshot::json_schema()).into_response()
}

/// The board's JSON Schema, generated from the types (as `docs/board.schema.json`).
pub async fn board_schema() -> Response {
    Json(crate::market::board_message::json_schema()).into_response()
}
