//! The operators' routes: `/health` (status and counters, for load balancers and people),
//! `/metrics` (Prometheus text), and the embedded dashboard and its assets.
//!
//! They read counters at request time and add nothing to the hot path: every figure is kept by
//! the part it describes (hubs, admission, feed, broker, history) and only gathered here.
//!
//! Who may read what: `/health` without a token answers the plain status a load balancer needs
//! (status, role, the feed's state) and nothing about clients, addresses or databases. The
//! details and `/metrics` need the operators' token when one is set ([`Door::Operations`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::guard::{client_ip, refuse, request_token, Door, Verdict};
use super::{plain, AppState};

#[derive(Deserialize)]
pub struct HealthQuery {
    #[serde(default)]
    clients: bool,
}

/// `GET /health[?clients=true]`: the details with the operators' token (or when none is set),
/// the plain status without one, 401 for a wrong token or for `?clients=true` without one.
pub async fn health(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HealthQuery>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let given = request_token(&headers, query.as_deref());
    match app.tokens.judge(Door::Operations, given.as_deref()) {
        Verdict::Open | Verdict::Granted => health_details(&app, q.clients),
        Verdict::Missing if !q.clients => plain_health(&app),
        verdict => refuse(
            &app,
            Door::Operations,
            verdict,
            client_ip(&app.admission, Some(peer), &headers),
        ),
    }
}

/// What anyone may read: whether the node serves, its role, and its feed's state.
fn plain_health(app: &AppState) -> Response {
    let feed = app.feed.status();
    Json(json!({
        "status": status(app),
        "role": app.role,
        "feed": { "kind": feed.kind, "state": feed.state, "connected": feed.connected },
    }))
    .into_response()
}

fn status(app: &AppState) -> &'static str {
    if app.channels.primary().is_accepting() {
        "ok"
    } else {
        "shutting_down"
    }
}

/// Everything: clients, channels, counters, history, broker (`clients`: every client's row).
fn health_details(app: &AppState, clients: bool) -> Response {
    let hub = app.channels.primary();
    let totals = hub.totals();
    let last_tick = hub
        .latest()
        .map(|t| json!({ "seq": t.seq, "ts": t.ts_ms, "bytes": t.payload_len }));
    let channels: serde_json::Map<String, serde_json::Value> = app
        .channels
        .iter()
        .map(|(name, hub)| {
            let t = hub.totals();
            let v = json!({
                "clients": t.clients,
                "seq": hub.last_seq(),
                "ticks": t.ticks,
                "messages_sent": t.messages_sent,
                "messages_dropped": t.messages_dropped,
            });
            (name.to_string(), v)
        })
        .collect();
    let mut body = json!({
        "status": status(app),
        "role": app.role,
        "clients": app.channels.totals().clients,
        "channels": channels,
        "last_tick": last_tick,
        "feed": app.feed.status(),
        // An edge's processor is the producer's (as of its last state in the broker).
        "processor": app.view.counters(),
        "broadcast": totals,
        "admission": {
            "connections": app.admission.admitted(),
            "refused": app.admission.refused(),
        },
        "uptime_seconds": app.started.elapsed().as_secs(),
    });
    if let Some(ingest) = &app.ingest {
        body["ingest"] = json!({
            "messages": ingest.stats().status(),
            "endpoints": ingest.counters(),
        });
    }
    if let Some(cp) = &app.checkpoint {
        body["checkpoint"] = json!(cp.as_ref());
    }
    // The original's key, then the details.
    body["database"] = json!(match &app.history {
        Some(h) if h.is_connected() => "connected",
        _ => "unavailable",
    });
    if let Some(h) = &app.history {
        body["history"] = json!(h.status());
    }
    if let Some(broker) = &app.broker {
        // Named like `database`: whether this node reaches its broker, then the details.
        body["redis"] = json!(if broker.is_connected() {
            "connected"
        } else {
            "unavailable"
        });
        body["broker"] = broker.json();
    }
    if let Some(rec) = &app.recorder {
        body["recorder"] = json!({
            "file": rec.path().display().to_string(),
            "counters": rec.counters(),
        });
    }
    // Per-client counters only on request (`/health?clients=true`): 19,000 rows otherwise.
    if clients {
        body["client_list"] = json!(hub.clients());
    }
    Json(body).into_response()
}

/// `GET /metrics`: OpenMetrics text, gathered at scrape time; with the operators' token when
/// one is set (Prometheus sends it as a bearer token).
pub async fn metrics(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let given = request_token(&headers, query.as_deref());
    let verdict = app.tokens.judge(Door::Operations, given.as_deref());
    if !matches!(verdict, Verdict::Open | Verdict::Granted) {
        let client = client_ip(&app.admission, Some(peer), &headers);
        return refuse(&app, Door::Operations, verdict, client);
    }
    let text = crate::metrics::render(&crate::metrics::Sources {
        channels: &app.channels,
        admission: &app.admission,
        feed: &app.feed,
        processor: app.market.as_ref(),
        ingest: app.ingest.as_ref(),
        broker: app.broker.as_ref(),
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// `GET /`: the live dashboard.
pub async fn dashboard() -> Response {
    embedded("dashboard/index.html")
}

/// `GET /assets/...`: the dashboard's scripts, styles and vendored charts.
pub async fn asset(Path(path): Path<String>) -> Response {
    embedded(&path)
}

/// `GET /favicon.svg` and `/favicon.ico`.
pub async fn favicon() -> Response {
    embedded("favicon.svg")
}

/// An embedded file, revalidated by the browser on every load (a new binary may bring a new
/// dashboard), or 404.
fn embedded(path: &str) -> Response {
    match crate::assets::get(path) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => plain(StatusCode::NOT_FOUND, "no such file"),
    }
}
