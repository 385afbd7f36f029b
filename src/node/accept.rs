//! The accept loop: TCP (and TLS) connections in, HTTP/1.1 served on each by hyper.
//!
//! Written out instead of `axum::serve` for two limits that function does not expose: the
//! time a client may take to send its request head (`WS_HANDSHAKE_TIMEOUT`: a client that
//! trickles a handshake is cut off instead of holding a descriptor forever) and the size of
//! that head (`MAX_REQUEST_HEAD`). Each connection is served with upgrades on, so the
//! WebSocket doors can take the socket over.

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::HTTP_GRACE;

/// TLS handshakes in progress at once, at most.
const MAX_TLS_HANDSHAKES: usize = 256;

/// The most a request line and headers may take; more gets 431 (or 414 for the line).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Accepts connections and serves HTTP/1.1 on them until `stop` resolves, then gives in-flight
/// requests [`HTTP_GRACE`]. A failed `accept` (out of descriptors, say) is retried after a
/// pause instead of ending the server.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::Service;

    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    // Shared, and borrowed inside each connection's task: a connection that owned a copy of the
    // builder would keep about 1.4 KB per WebSocket client alive for the client's whole life.
    let http = Arc::new(http.http1_only().clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // TLS handshakes in progress at once: each costs a signature, and a flood of ClientHellos
    // must not take the cores the clients already connected need. Past the bound a new
    // connection is closed at once (the client retries).
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_TLS_HANDSHAKES));
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
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTP connection ended: {e}");
                    }
                });
            }
            Some(acceptor) => {
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes in progress; closing");
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The TLS handshake has its own WS_HANDSHAKE_TIMEOUT, before the one on the
                    // request head: a client that trickles its ClientHello is dropped too.
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                drop(permit);
                                stream
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
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
