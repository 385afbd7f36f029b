//! The accept loop: TCP (and TLS) connections in, HTTP/1.1 served on each by hyper.
//!
//! Written out instead of `axum::serve` for two limits that function does not expose: the
//! time a client may take to send its request head (`WS_HANDSHAKE_TIMEOUT`: a client that
//! trickles a handshake is cut off instead of holding a descriptor forever) and the size of
//! that head (`MAX_REQUEST_HEAD`). Each connection is served with upgrades on, so the
//! WebSocket doors can take the socket over.
//!
//! The loop itself stays a loop: who may connect is the [`gate`](super::gate)'s to say, TLS
//! handshake slots are [`tls_slots`](super::tls_slots)', and the response write timeout is
//! [`WriteTimeout`]'s.

use std::sync::Arc;
use std::time::Duration;

use super::gate::Gate;
use super::lifecycle::HTTP_GRACE;
use super::tls_slots::HandshakeSlots;
use crate::http::write_timeout::WriteTimeout;

/// The most a request line and headers may take; more gets 431 (or 414 for the line).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The accept loop's timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The request head, and with TLS the handshake (`WS_HANDSHAKE_TIMEOUT`).
    pub handshake: Duration,
    /// A response waiting for the client to read it (`HTTP_WRITE_TIMEOUT`).
    pub write: Duration,
    /// A new TLS connection's first byte (`TLS_FIRST_BYTE_TIMEOUT`).
    pub tls_first_byte: Duration,
}

/// TLS on the listener: the acceptor and its handshake slots.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub slots: HandshakeSlots,
}

/// Accepts connections and serves HTTP/1.1 on them until `stop` resolves, then gives in-flight
/// requests [`HTTP_GRACE`]. A failed `accept` (out of descriptors, say) is retried after a
/// pause instead of ending the server. Every connection passes the [`Gate`] first.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    gate: Arc<Gate>,
    tls: Option<Tls>,
    timeouts: Timeouts,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::Service;

    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.handshake)
        .max_buf_size(MAX_REQUEST_HEAD);
    // Shared, and borrowed inside each connection's task: a connection that owned a copy of the
    // builder would keep about 1.4 KB per WebSocket client alive for the client's whole life.
    let http = Arc::new(http.http1_only().clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}; pausing new connections for 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Held by the connection's task while it speaks HTTP; an upgrade ends that task.
        let permit = match gate.admit(peer) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::debug!(%peer, "connection refused: {refusal}");
                // A TLS client could not read a plain-text answer: it is just closed.
                if tls.is_none() {
                    gate.answer_refusal(tcp, &refusal);
                }
                continue;
            }
        };
        let router = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: ::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut router = router.clone();
                router.call(req)
            });
        let (http, watcher) = (http.clone(), graceful.watcher());
        // Two tasks of two types, not one task with a branch: a task's future is as large as
        // its largest state, and the TLS one holds a rustls connection, which a plain
        // connection would otherwise carry (about a kilobyte) for the WebSocket's whole life.
        match &tls {
            None => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let io = TokioIo::new(WriteTimeout::new(tcp, timeouts.write));
                    let conn = http.serve_connection_with_upgrades(io, service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTP connection ended: {e}");
                    }
                });
            }
            Some(tls) => {
                let (acceptor, slots) = (tls.acceptor.clone(), tls.slots.clone());
                // `permit` is the task's until it ends, as in the plain one.
                tokio::spawn(async move {
                    // A connection that says nothing takes no handshake slot, and is closed
                    // after TLS_FIRST_BYTE_TIMEOUT: idle sockets cannot keep others out.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(timeouts.tls_first_byte, tcp.peek(&mut first)).await
                    {
                        Ok(Ok(1..)) => {}
                        Ok(_) => return,
                        Err(_) => {
                            tracing::debug!(%peer, "no ClientHello in time; closing");
                            return;
                        }
                    }
                    let slot = match slots.acquire(permit.address()).await {
                        Ok(slot) => slot,
                        Err(e) => {
                            tracing::debug!(%peer, "closing: {e}");
                            return;
                        }
                    };
                    // The handshake has its own WS_HANDSHAKE_TIMEOUT, before the one on the
                    // request head: a client that trickles its ClientHello is dropped too.
                    let stream = match tokio::time::timeout(
                        timeouts.handshake,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    drop(slot);
                    let io = TokioIo::new(WriteTimeout::new(stream, timeouts.write));
                    let conn = http.serve_connection_with_upgrades(io, service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTPS connection ended: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(HTTP_GRACE, graceful.shutdown()).await;
}
