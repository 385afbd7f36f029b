//! The WebSocket doors of the channels (`/ws/market`, `/ws/foreign`, `/ws/index`,
//! `/ws/alerts`): the same token, origin, handshake and admission rules for every channel, then
//! the socket is taken back from hyper and handed to the channel's hub.
//!
//! The handshake is answered here rather than by a WebSocket library because the fan-out
//! writes pre-built shared frames on the raw socket ([`crate::broadcast::connection`]): after
//! the `101` only the socket (and its TLS state) is kept, not hyper's buffers.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::guard::{bearer, refuse, too_many, Door, Verdict};
use super::write_timeout::{PlainIo, TlsIo};
use super::{plain, AppState};
use crate::broadcast::connection;
use crate::broadcast::handshake;
use crate::broadcast::hub::Hub;
use crate::broadcast::wire::Wire;

/// The query of a WebSocket request.
#[derive(Deserialize)]
pub struct WsQuery {
    pub token: Option<String>,
    /// `fossil`: the client takes delta messages (see [`crate::broadcast::delta`]); any other
    /// value, or none, gets full messages only.
    pub delta: Option<String>,
}

/// `GET /ws/{channel}` for one named channel.
pub async fn channel(
    name: &'static str,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
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
    let client_ip = app.admission.client_ip(peer, req.headers());
    let given = bearer(req.headers()).or(q.token.as_deref());
    match app.tokens.judge(Door::Socket, given) {
        Verdict::Open | Verdict::Granted => {}
        verdict => return refuse(&app, Door::Socket, verdict, client_ip),
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
    let permit = match app.admission.admit(client_ip) {
        Ok(p) => p,
        Err(refusal) => {
            tracing::info!(%peer, client = %client_ip, "WebSocket refused: {refusal}");
            return too_many(&refusal);
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
/// would pin several KiB per connection for the connection's life; so is the HTTP phase's
/// [`WriteTimeout`](super::write_timeout::WriteTimeout): the fan-out gets the bare socket.
fn into_wire(upgraded: hyper::upgrade::Upgraded) -> Option<(Wire, Vec<u8>)> {
    use hyper_util::server::conn::auto::upgrade::downcast;
    let upgraded = match downcast::<PlainIo>(upgraded) {
        Ok(parts) => {
            let leftover = parts.read_buf.to_vec();
            return Some((Wire::Plain(parts.io.into_inner().into_inner()), leftover));
        }
        Err(other) => other,
    };
    match downcast::<TlsIo>(upgraded) {
        Ok(parts) => {
            let leftover = parts.read_buf.to_vec();
            let (tcp, conn) = parts.io.into_inner().into_inner().into_inner();
            Some((Wire::tls(tcp, conn), leftover))
        }
        Err(_) => None,
    }
}

/// The `101 Switching Protocols` answer to an accepted handshake.
pub fn switching_protocols(accepted: &handshake::Handshake) -> Response {
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

/// The answer to a request that cannot be upgraded: 426 (with the `Upgrade` and version
/// headers a client needs) or 400.
pub fn handshake_refusal(e: &handshake::HandshakeError) -> Response {
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
