//! The ingest doors: `POST /api/ingest` and `GET /ws/ingest` (when `INGEST_TOKEN` is set), for
//! SSI messages pushed by a feed that runs elsewhere; bearer-token protected and size-bounded.
//!
//! The lines go to [`mod@crate::feed::ingest`], which applies them off the async workers, as
//! the bytes came (no copy of the body is made: it is checked as UTF-8 where it lies). At most
//! `INGEST_MAX_CONCURRENT` batches are in flight: a `POST` past that is answered at once with
//! 429 and `Retry-After: 1` (before its body is read, so waiting bodies never pile up in
//! memory), and a WebSocket's next message waits for a turn (its sender is slowed, as TCP would
//! slow it). A `POST`'s batch is in `GET /api/market/snapshot` as soon as it is answered. The
//! ingest WebSocket is served by tungstenite: it is not the fan-out's hot path, so a library's
//! frame reader is the right one there (the channels' doors are in [`super::upgrade`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::guard::{bearer, same_token, too_many};
use super::upgrade::{handshake_refusal, switching_protocols, WsQuery};
use super::{plain, AppState};
use crate::broadcast::handshake;
use crate::feed::ingest::Ingest;

/// Refuses an ingest request without the right bearer token (`Authorization: Bearer` or
/// `?token=`); `None` when it may go on. A wrong token spends its address's connect rate, as at
/// every other door (429 past it), and the warning is logged at most once a second per address.
fn ingest_refusal(
    app: &AppState,
    ingest: &Ingest,
    headers: &axum::http::HeaderMap,
    query_token: Option<&str>,
    peer: SocketAddr,
) -> Option<Response> {
    let given = bearer(headers).or(query_token);
    if same_token(given.unwrap_or(""), ingest.settings.token.expose()) {
        return None;
    }
    ingest
        .counters()
        .rejected_unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client = app.admission.client_ip(peer, headers);
    if given.is_some() {
        if let Err(refusal) = app.admission.charge_failure(client) {
            app.denials
                .warn(client, "ingest", "wrong token, past the connect rate");
            return Some(too_many(&refusal));
        }
        app.denials.warn(client, "ingest", "wrong token");
    } else {
        app.admission.count_unauthorized();
        app.denials.warn(client, "ingest", "missing token");
    }
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

fn busy(ingest: &Ingest) -> Response {
    ingest
        .counters()
        .rejected_busy
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"detail": format!("{} ingest batches are already in flight (INGEST_MAX_CONCURRENT); send this one again in a second", ingest.settings.max_concurrent)})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Applies a batch off the async workers (checking it is UTF-8 there too: a 16 MiB body takes
/// milliseconds either way); `Err` with the offset of the first byte that is not UTF-8.
async fn apply_batch(
    ingest: Arc<Ingest>,
    body: Bytes,
    lines_before: usize,
) -> Result<crate::feed::ingest::BatchResult, usize> {
    ingest.room_for_history().await;
    let worker = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body).map_err(|e| e.valid_up_to())?;
        Ok(ingest.apply(text, lines_before))
    });
    worker.await.unwrap_or_else(|_| Ok(Default::default()))
}

/// `POST /api/ingest`: a batch of SSI messages, one per line.
pub async fn ingest_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    req: Request,
) -> Response {
    let Some(ingest) = app.ingest.clone() else {
        return ingest_off();
    };
    if let Some(refusal) = ingest_refusal(&app, &ingest, req.headers(), q.token.as_deref(), peer) {
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
    // The turn is taken before the body is read and held until the batch is applied.
    let Some(_turn) = ingest.try_turn() else {
        return busy(&ingest);
    };
    let body = match axum::body::to_bytes(req.into_body(), ingest.settings.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(&ingest),
    };
    match apply_batch(ingest, body, 0).await {
        Ok(result) => {
            // The poster reads its batch back at once: not from the last tick's body.
            app.view.outdate_snapshot();
            Json(result).into_response()
        }
        Err(at) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": format!("the body is not UTF-8 (first bad byte at {at})")})),
        )
            .into_response(),
    }
}

/// `GET /ws/ingest`: a WebSocket whose text messages are batches of lines.
pub async fn ws_ingest(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    mut req: Request,
) -> Response {
    let Some(ingest) = app.ingest.clone() else {
        return ingest_off();
    };
    if app.clients.is_ending() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    if let Some(refusal) = ingest_refusal(&app, &ingest, req.headers(), q.token.as_deref(), peer) {
        return refusal;
    }
    let accepted = match handshake::accept_request(req.version(), req.headers(), false) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = app.clients.listener();
    let heartbeat = app.channels.primary().settings().heartbeat_interval;
    app.clients.spawn(async move {
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
        let consumed = text.trim_end_matches('\n').split('\n').count();
        // A turn, waiting for one if need be (this sender is slowed, not refused).
        let Some(_turn) = ingest.turn().await else {
            return;
        };
        let result = apply_batch(ingest.clone(), Bytes::from(text), lines)
            .await
            .unwrap_or_default();
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
