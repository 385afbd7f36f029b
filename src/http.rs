//! The HTTP face: routes, and nothing else.
//!
//! * `GET /ws/market`: the WebSocket stream (upgrade checked by [`handshake`], then the socket is
//!   handed to its own task in [`connection`]).
//! * `GET /api/market/snapshot`, `/api/market/foreign-detail`, `/api/market/volume-stats`,
//!   `/api/market/basis-trend?minutes=N`, `/api/vn30-components`: the REST routes the original
//!   frontend polls, with the original's shapes; CORS from `CORS_ORIGINS`.
//! * `/api/history/...`: the history routes (see [`crate::history::api`]).
//!
//! On an edge (`ROLE=edge`) there is no processor: the snapshot route serves the latest tick,
//! and the others answer from the producer's state in Redis ([`crate::bridge::edge`]).
//! * `POST /api/ingest` and `GET /ws/ingest` (when `INGEST_TOKEN` is set): SSI messages pushed
//!   by a feed that runs elsewhere, bearer-token protected and size-bounded; the lines go to
//!   [`crate::feed::ingest`]. The ingest WebSocket is served by tungstenite: it is not the
//!   fan-out's hot path, so a library's frame reader is the right one there.
//! * `GET /health`, `GET /metrics` (Prometheus text), `GET /` (a live dashboard page).
//!
//! Handlers are small: state comes in through [`AppState`], the work happens in the market and
//! broadcast modules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::base::time::Clock;
use crate::broadcast::admission::Admission;
use crate::broadcast::channels::Channels;
use crate::broadcast::connection;
use crate::broadcast::handshake;
use crate::broadcast::hub::Hub;
use crate::broadcast::ticker::SnapshotSource;
use crate::broadcast::wire::Wire;
use crate::feed::ingest::Ingest;
use crate::feed::recorder::Recorder;
use crate::feed::FeedStats;
use crate::market::route_state::RouteState;
use crate::market::SharedMarket;

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    /// The `/ws/market` channel's hub (also `channels.primary()`).
    pub hub: Hub,
    /// Every channel's hub, by name (`market`, `foreign`, `index`, `alerts`).
    pub channels: Channels,
    /// The history database, when history is on.
    pub history: Option<Arc<crate::history::History>>,
    pub market: SharedMarket,
    /// What `/ws/market` broadcasts; the REST snapshot serves the same body.
    pub source: Arc<dyn SnapshotSource>,
    pub clock: Arc<dyn Clock>,
    pub feed: Arc<FeedStats>,
    /// The ingest endpoints, when `INGEST_TOKEN` is set.
    pub ingest: Option<Arc<Ingest>>,
    pub recorder: Option<Arc<Recorder>>,
    pub auth_token: Arc<str>,
    /// Who may open a WebSocket, and how many.
    pub admission: Arc<Admission>,
    /// The checkpoint writer's record, when checkpoints are on.
    pub checkpoint: Option<Arc<crate::checkpoint::CheckpointStatus>>,
    /// Which browser origins may open a WebSocket.
    pub origins: Arc<OriginPolicy>,
    /// An edge's view of the producer's state (`ROLE=edge`): the REST routes answer from it.
    pub remote: Option<Arc<crate::bridge::edge::RemoteState>>,
    /// The Redis bridge's state (`ROLE=producer` or `edge`).
    pub broker: Option<Arc<crate::bridge::BrokerStatus>>,
    pub started: Instant,
}

/// Which browser pages may open a WebSocket: the `Origin` header, when present, must be one
/// of `CORS_ORIGINS` (or `*` there) or the server's own origin (its dashboard); a request
/// without `Origin` (not from a browser) is let through or not by `WS_ALLOW_NO_ORIGIN`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    pub allowed: Vec<String>,
    pub allow_missing: bool,
}

impl OriginPolicy {
    /// `Err` with the reason when the request's origin may not connect.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err("a WebSocket request without an Origin header is refused here (WS_ALLOW_NO_ORIGIN=false)".into())
            };
        };
        let origin = origin.to_str().unwrap_or("").trim().trim_end_matches('/');
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        // The server's own pages: the origin's host:port is the Host the request was sent to.
        // Only for a host that is an address or `localhost`: a name could be an attacker's
        // domain rebound to this server's address (DNS rebinding), with `Host` to match. Under
        // a name of its own, a deployment lists its origin in `CORS_ORIGINS`.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !host.is_empty()
            && origin_host.eq_ignore_ascii_case(host)
            && is_address_or_localhost(host)
        {
            return Ok(());
        }
        Err(format!(
            "origin {origin:?} is not allowed to open a WebSocket here (CORS_ORIGINS)"
        ))
    }
}

/// Builds the router.
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::OPTIONS])
        .allow_headers(tower_http::cors::Any);
    let api = Router::new()
        .route("/api/market/snapshot", get(snapshot))
        .route("/api/market/foreign-detail", get(foreign_detail))
        .route("/api/market/volume-stats", get(volume_stats))
        .route("/api/market/basis-trend", get(basis_trend))
        .route("/api/market/alerts", get(alerts))
        .route("/api/vn30-components", get(vn30_components))
        .route("/api/schema", get(schema))
        .nest_service(
            "/api/history",
            crate::history::api::router(state.history.clone()),
        )
        .layer(cors);
    Router::new()
        .route("/ws/market", get(ws_market))
        .route("/ws/foreign", get(ws_foreign))
        .route("/ws/index", get(ws_index))
        .route("/ws/alerts", get(ws_alerts))
        .route("/ws/ingest", get(ws_ingest))
        .route("/api/ingest", post(ingest_post))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard))
        .route("/assets/{*path}", get(asset))
        .route("/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .merge(api)
        .with_state(state)
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn snapshot(State(app): State<AppState>) -> Response {
    if app.remote.is_some() {
        return match app.hub.latest() {
            Some(tick) => json_bytes(tick.payload()),
            None => no_state_yet(),
        };
    }
    json_bytes(app.source.snapshot_json(app.clock.now()))
}

/// An edge that has not yet heard from a producer.
fn no_state_yet() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "detail": "No market data from the producer yet" })),
    )
        .into_response()
}

/// Where a REST route's data comes from: the processor, or (an edge) the producer's state.
enum Data {
    Local(SharedMarket),
    Remote(Arc<RouteState>),
}

impl AppState {
    async fn data(&self) -> Result<Data, Response> {
        match &self.remote {
            None => Ok(Data::Local(self.market.clone())),
            Some(remote) => remote
                .get()
                .await
                .map(Data::Remote)
                .ok_or_else(no_state_yet),
        }
    }
}

async fn foreign_detail(State(app): State<AppState>) -> Response {
    let (summary, stocks) = match app.data().await {
        Ok(Data::Local(m)) => m.with(|p| (p.foreign_summary(), p.foreign_stocks())),
        Ok(Data::Remote(s)) => (s.foreign_summary.clone(), s.foreign_stocks.clone()),
        Err(r) => return r,
    };
    Json(json!({ "summary": summary, "stocks": stocks })).into_response()
}

async fn volume_stats(State(app): State<AppState>) -> Response {
    let stats = match app.data().await {
        Ok(Data::Local(m)) => m.with(|p| p.volume_stats()),
        Ok(Data::Remote(s)) => s.volume_stats.clone(),
        Err(r) => return r,
    };
    Json(json!({ "stats": stats })).into_response()
}

#[derive(Deserialize)]
struct TrendQuery {
    minutes: Option<String>,
}

async fn basis_trend(State(app): State<AppState>, Query(q): Query<TrendQuery>) -> Response {
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
    let now = app.clock.now();
    let points = match app.data().await {
        Ok(Data::Local(m)) => m.with(|p| p.basis_trend(minutes, now)),
        Ok(Data::Remote(s)) => s.basis_trend(minutes, now),
        Err(r) => return r,
    };
    Json(points).into_response()
}

/// `GET /api/market/alerts?limit&type&severity`: the session's alerts, newest first; `limit`
/// 1-200 (default 50), `type` and `severity` exact lower-case names; anything else is a 422 as
/// the original's.
async fn alerts(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    use crate::market::alerts::{AlertType, Severity};
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
    let list = match app.data().await {
        Ok(Data::Local(m)) => m.with(|p| p.alerts().recent(limit, kind, severity)),
        Ok(Data::Remote(s)) => s.recent_alerts(limit, kind, severity),
        Err(r) => return r,
    };
    Json(list).into_response()
}

async fn vn30_components(State(app): State<AppState>) -> Response {
    let symbols = match app.data().await {
        Ok(Data::Local(m)) => m.with(|p| p.vn30_symbols().to_vec()),
        Ok(Data::Remote(s)) => s.vn30.clone(),
        Err(r) => return r,
    };
    Json(json!({ "symbols": symbols })).into_response()
}

#[derive(Deserialize)]
struct HealthQuery {
    #[serde(default)]
    clients: bool,
}

async fn health(State(app): State<AppState>, Query(q): Query<HealthQuery>) -> Response {
    let totals = app.hub.totals();
    let last_tick = app
        .hub
        .latest()
        .map(|t| json!({ "seq": t.seq, "ts": t.ts_ms, "bytes": t.payload_len }));
    let counters = match &app.remote {
        // An edge's processor is the producer's (as of its last state in Redis).
        Some(remote) => remote.cached().map(|s| s.counters).unwrap_or_default(),
        None => app.market.with(|p| p.counters()),
    };
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
        "status": if app.hub.is_accepting() { "ok" } else { "shutting_down" },
        "clients": app.channels.totals().clients,
        "channels": channels,
        "last_tick": last_tick,
        "feed": app.feed.status(),
        "processor": counters,
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
    if q.clients {
        body["client_list"] = json!(app.hub.clients());
    }
    Json(body).into_response()
}

/// The snapshot's JSON Schema, generated from the types (as `docs/snapshot.schema.json`).
async fn schema() -> Response {
    Json(crate::market::snapshot::json_schema()).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let text = crate::metrics::render(&crate::metrics::Sources {
        channels: &app.channels,
        admission: &app.admission,
        feed: &app.feed,
        market: &app.market,
        ingest: app.ingest.as_ref(),
        broker: app.broker.as_ref(),
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

async fn dashboard() -> Response {
    embedded("dashboard/index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    embedded(&path)
}

async fn favicon() -> Response {
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

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// `fossil`: the client takes delta messages (see [`crate::broadcast::delta`]); any other
    /// value, or none, gets full messages only.
    delta: Option<String>,
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
pub(crate) fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

/// True for `127.0.0.1:8000`, `[::1]:8000`, `localhost:8000` (with or without the port).
fn is_address_or_localhost(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The answer to a request that cannot be upgraded: 426 (with the `Upgrade` and version
/// headers a client needs) or 400.
fn handshake_refusal(e: &handshake::HandshakeError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = plain(status, &e.to_string());
    let h = resp.headers_mut();
    h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    if status == StatusCode::UPGRADE_REQUIRED {
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    resp
}

async fn ws_market(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    let hub = app.hub.clone();
    ws_channel(app, hub, peer, q, req)
}

async fn ws_foreign(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    channel_or_404(app, "foreign", peer, q, req)
}

async fn ws_alerts(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    channel_or_404(app, "alerts", peer, q, req)
}

async fn ws_index(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    channel_or_404(app, "index", peer, q, req)
}

fn channel_or_404(
    app: AppState,
    name: &str,
    peer: SocketAddr,
    q: WsQuery,
    req: Request,
) -> Response {
    match app.channels.get(name).cloned() {
        Some(hub) => ws_channel(app, hub, peer, q, req),
        None => plain(StatusCode::NOT_FOUND, "no such channel"),
    }
}

/// A WebSocket upgrade onto one channel: the same token, origin, handshake and admission rules
/// for every channel.
fn ws_channel(
    app: AppState,
    channel: Hub,
    peer: SocketAddr,
    q: WsQuery,
    mut req: Request,
) -> Response {
    if !channel.is_accepting() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    if !app.auth_token.is_empty() {
        let given = bearer(req.headers()).or(q.token.as_deref()).unwrap_or("");
        if !same_token(given, &app.auth_token) {
            tracing::warn!(%peer, "WebSocket refused: wrong or missing token");
            let mut resp = plain(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send ?token=<WS_AUTH_TOKEN> or Authorization: Bearer <WS_AUTH_TOKEN>",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    if let Err(why) = app.origins.check(req.headers()) {
        tracing::warn!(%peer, "WebSocket refused: {why}");
        return plain(StatusCode::FORBIDDEN, &why);
    }
    let accepted = match handshake::accept_request(
        req.version(),
        req.headers(),
        channel.settings().compression,
    ) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let client_ip = app.admission.client_ip(peer, req.headers());
    let permit = match app.admission.admit(client_ip) {
        Ok(p) => p,
        Err(refusal) => {
            tracing::info!(%peer, client = %client_ip, "WebSocket refused: {refusal}");
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut resp = plain(status, &refusal.to_string());
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(refusal.retry_after_secs()),
            );
            return resp;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let hub = channel.clone();
    let deflate = accepted.deflate;
    let delta =
        channel.settings().deltas && q.delta.as_deref() == Some(crate::broadcast::delta::FORMAT);
    channel.spawn_client(async move {
        // The connection's place, given back when this task ends.
        let _permit = permit;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        let Some((wire, leftover)) = into_wire(upgraded) else {
            tracing::error!("upgraded connection is neither TCP nor TLS over TCP; closing it");
            return;
        };
        let client = hub.register_client(peer, deflate, delta, wire);
        connection::serve(client, leftover).await;
    });
    switching_protocols(&accepted)
}

/// Takes the socket (and its TLS state) back from hyper after an upgrade, with a copy of what
/// hyper read past the handshake (usually nothing). hyper's read buffer is let go: kept, it
/// would pin several KiB per connection for the connection's life.
fn into_wire(upgraded: hyper::upgrade::Upgraded) -> Option<(Wire, Vec<u8>)> {
    use hyper_util::server::conn::auto::upgrade::downcast;
    let upgraded = match downcast::<TokioIo<TcpStream>>(upgraded) {
        Ok(parts) => {
            let leftover = parts.read_buf.to_vec();
            return Some((Wire::Plain(parts.io.into_inner()), leftover));
        }
        Err(other) => other,
    };
    match downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>(upgraded) {
        Ok(parts) => {
            let leftover = parts.read_buf.to_vec();
            let (tcp, conn) = parts.io.into_inner().into_inner();
            Some((Wire::tls(tcp, conn), leftover))
        }
        Err(_) => None,
    }
}

/// The `101 Switching Protocols` answer to an accepted handshake.
fn switching_protocols(accepted: &handshake::Handshake) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accepted.accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if accepted.deflate {
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(handshake::DEFLATE_RESPONSE),
        );
    }
    resp
}

/// Refuses an ingest request without the right bearer token (`Authorization: Bearer` or
/// `?token=`); `None` when it may go on.
fn ingest_refusal(
    ingest: &Ingest,
    headers: &axum::http::HeaderMap,
    query_token: Option<&str>,
    peer: SocketAddr,
) -> Option<Response> {
    let given = bearer(headers).or(query_token).unwrap_or("");
    if same_token(given, ingest.settings.token.expose()) {
        return None;
    }
    ingest
        .counters()
        .rejected_unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(%peer, "ingest refused: wrong or missing token");
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"detail": "ingest needs the INGEST_TOKEN as `Authorization: Bearer <token>` or `?token=`"})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(resp)
}

fn ingest_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"detail": "ingest is off: set INGEST_TOKEN to enable /api/ingest and /ws/ingest"})),
    )
        .into_response()
}

fn too_large(ingest: &Ingest) -> Response {
    ingest
        .counters()
        .rejected_too_large
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({"detail": format!("the body is over {} bytes (INGEST_MAX_BODY_SIZE); send smaller batches", ingest.settings.max_body)})),
    )
        .into_response()
}

/// Applies a batch off the async workers: a large one holds the processor for milliseconds.
async fn apply_batch(
    ingest: Arc<Ingest>,
    text: String,
    lines_before: usize,
) -> crate::feed::ingest::BatchResult {
    let worker = tokio::task::spawn_blocking(move || ingest.apply(&text, lines_before));
    worker.await.unwrap_or_default()
}

async fn ingest_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    let Some(ingest) = app.ingest.clone() else {
        return ingest_off();
    };
    if let Some(refusal) = ingest_refusal(&ingest, req.headers(), q.token.as_deref(), peer) {
        return refusal;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ingest.settings.max_body as u64) {
        return too_large(&ingest);
    }
    let body = match axum::body::to_bytes(req.into_body(), ingest.settings.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(&ingest),
    };
    let text = match String::from_utf8(body.to_vec()) {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"detail": format!("the body is not UTF-8 (first bad byte at {})", e.utf8_error().valid_up_to())})),
            )
                .into_response()
        }
    };
    Json(apply_batch(ingest, text, 0).await).into_response()
}

async fn ws_ingest(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    mut req: Request,
) -> Response {
    let Some(ingest) = app.ingest.clone() else {
        return ingest_off();
    };
    if !app.hub.is_accepting() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    if let Some(refusal) = ingest_refusal(&ingest, req.headers(), q.token.as_deref(), peer) {
        return refusal;
    }
    let accepted = match handshake::accept_request(req.version(), req.headers(), false) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = app.hub.closing();
    let heartbeat = app.hub.settings().heartbeat_interval;
    app.hub.spawn_client(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, "ingest upgrade failed: {e}");
                return;
            }
        };
        ingest
            .counters()
            .websocket_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let max = ingest.settings.max_body;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(config),
        )
        .await;
        serve_ingest(ws, ingest, shutdown, heartbeat, peer).await;
    });
    switching_protocols(&accepted)
}

/// One ingest bridge: each text message is a batch of lines; bad lines are answered with
/// `{"type":"error","line":N,"field":...,"reason":...}` (lines numbered over the connection),
/// `{"type":"ping"}` with `{"type":"pong"}`. Binary closes 1003, oversize 1009. A bridge that
/// sends nothing for `heartbeat` is pinged; one that then stays silent for as long again (its
/// host gone without a FIN) is closed with 1011, so its task and socket are not held forever.
async fn serve_ingest<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    ingest: Arc<Ingest>,
    shutdown: crate::base::shutdown::Shutdown,
    heartbeat: std::time::Duration,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut lines = 0usize;
    let close = |code: CloseCode, reason: &'static str| {
        WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    let mut pinged = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.recv() => {
                let _ = ws.send(close(CloseCode::Away, "server shutting down")).await;
                return;
            }
            next = tokio::time::timeout(heartbeat, ws.next()) => match next {
                Ok(next) => next,
                Err(_) if pinged => {
                    tracing::debug!(%peer, "ingest bridge silent after a ping; closing");
                    let _ = ws.send(close(CloseCode::Error, "heartbeat timeout")).await;
                    return;
                }
                Err(_) => {
                    pinged = true;
                    if ws.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
        };
        pinged = false;
        let text = match next {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Binary(_))) => {
                let _ = ws
                    .send(close(CloseCode::Unsupported, "send SSI messages as text"))
                    .await;
                return;
            }
            Some(Ok(WsMessage::Close(_))) | None => return,
            Some(Ok(_)) => continue,
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                too_large(&ingest);
                let _ = ws
                    .send(close(CloseCode::Size, "message over INGEST_MAX_BODY_SIZE"))
                    .await;
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(%peer, "ingest connection ended: {e}");
                return;
            }
        };
        if text.len() < 64 && is_app_ping(&text) {
            if ws
                .send(WsMessage::text(r#"{"type":"pong"}"#))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let text = text.as_str().to_string();
        let consumed = text.trim_end_matches('\n').split('\n').count();
        let result = apply_batch(ingest.clone(), text, lines).await;
        lines += consumed;
        for e in result.errors {
            let reply =
                json!({"type": "error", "line": e.line, "field": e.field, "reason": e.reason});
            if ws.send(WsMessage::text(reply.to_string())).await.is_err() {
                return;
            }
        }
    }
}

fn is_app_ping(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("ping"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_only_under_an_address_or_localhost() {
        for host in [
            "127.0.0.1:8000",
            "[::1]:8000",
            "localhost:8000",
            "10.1.2.3",
            "::1",
        ] {
            assert!(is_address_or_localhost(host), "{host}");
        }
        for host in [
            "evil.example:8000",
            "marketcast.example",
            "localhost.evil.example",
        ] {
            assert!(!is_address_or_localhost(host), "{host}");
        }
        let policy = OriginPolicy {
            allowed: vec!["https://desk.example".into()],
            allow_missing: true,
        };
        let headers = |origin: &str, host: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::ORIGIN, origin.parse().unwrap());
            h.insert(header::HOST, host.parse().unwrap());
            h
        };
        assert!(policy
            .check(&headers("http://127.0.0.1:8000", "127.0.0.1:8000"))
            .is_ok());
        assert!(policy
            .check(&headers("http://rebound.example", "rebound.example"))
            .is_err());
        assert!(policy
            .check(&headers("https://desk.example", "marketcast.example"))
            .is_ok());
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("secret", "secret"));
        assert!(!same_token("secret", "secreT"));
        assert!(!same_token("secre", "secret"));
        assert!(!same_token("", "secret"));
        assert!(same_token("", ""));
    }
}
