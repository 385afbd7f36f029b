//! Helpers for the broadcast layer's unit tests: a connected pair of real TCP sockets on
//! loopback, and a peer address. Real sockets, not mocks, because what the hub and the outbox
//! do depends on what the kernel takes in one non-blocking `write`.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// A connected (server side, client side) pair of sockets on loopback.
pub(super) async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

/// A peer address for a registered client.
pub(super) fn peer() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}
