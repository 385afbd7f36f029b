//! The limits on connections in their HTTP phase, with real sockets from several loopback
//! addresses: per address (`HTTP_MAX_CONNECTIONS_PER_IP`, trusted proxies aside), TLS handshake
//! slots and the first-byte timeout (a lock-out attempt from one address), and the write
//! timeout that cuts a response the client does not read (`HTTP_WRITE_TIMEOUT`).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::tls::TestCa;
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A guard against a hang, never a timing bound.
const PATIENCE: Duration = Duration::from_secs(30);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP connection to `server` from the local address `from` (any port).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    socket_from(from).connect(server).await.expect("connect")
}

fn socket_from(from: &str) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
    socket
}

/// Sends `request` on `s` and reads the whole answer (until the server closes; a reset after
/// the answer still leaves it readable).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the server answers and closes");
    String::from_utf8_lossy(&raw).into_owned()
}

/// `GET /health` from `from`, answered on a connection of its own; the status (0: no answer).
async fn health_from(from: &str, server: SocketAddr) -> (u16, String) {
    let mut s = connect_from(from, server).await;
    let answer = exchange(
        &mut s,
        "GET /health HTTP/1.1\r\nHost: marketcast\r\nConnection: close\r\n\r\n",
    )
    .await;
    (status_of(&answer), answer)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls `GET /health` from `from` until it is answered 200.
async fn wait_for_a_place(from: &str, server: SocketAddr, why: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, answer) = health_from(from, server).await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 429, "{answer}");
        assert!(Instant::now() < deadline, "{why}: still {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket upgrade from `from`; the status and the socket.
async fn upgrade_from(from: &str, server: SocketAddr) -> (u16, TcpStream) {
    let mut s = connect_from(from, server).await;
    let req = format!(
        "GET /ws/market HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    (status_of(&String::from_utf8_lossy(&head)), s)
}

/// Waits until the server ends `s` (end of stream, or a reset); the bytes read meanwhile.
async fn wait_closed(s: &mut TcpStream, what: &str) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    let ended = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    tokio::time::timeout(PATIENCE, ended)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server never closed it"));
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_limited_per_address_and_upgraded_ones_are_not() {
    let server = ServerProcess::start(&[
        ("HTTP_MAX_CONNECTIONS_PER_IP", "3"),
        // Only 127.0.0.1 is a proxy here: 127.0.0.2 and up are clients of their own.
        ("TRUSTED_PROXIES", "127.0.0.1"),
        // Idle connections stay open for the whole test unless a limit closes them.
        ("WS_HANDSHAKE_TIMEOUT", "120"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let addr = server.addr;

    // Three idle connections from 127.0.0.2 fill its places: the next is told why, and when
    // to try again, without reaching the routes.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.2", addr).await);
    }
    let (status, answer) = health_from("127.0.0.2", addr).await;
    assert_eq!(status, 429, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: "), "{answer}");
    assert!(
        answer.contains(
            "too many connections from 127.0.0.2: at most 3 (HTTP_MAX_CONNECTIONS_PER_IP)"
        ),
        "{answer}"
    );

    // Other addresses are not affected, and neither is a trusted proxy, however many
    // connections it holds (its clients are told apart per request).
    let (status, answer) = health_from("127.0.0.3", addr).await;
    assert_eq!(status, 200, "{answer}");
    let mut proxy = Vec::new();
    for _ in 0..5 {
        proxy.push(connect_from("127.0.0.1", addr).await);
    }
    let (status, answer) = health_from("127.0.0.1", addr).await;
    assert_eq!(status, 200, "{answer}");
    drop(proxy);

    // A connection that ends gives its place back.
    drop(idle.remove(0));
    wait_for_a_place(
        "127.0.0.2",
        addr,
        "a closed connection's place never came back",
    )
    .await;

    // WebSockets from one address, twice the HTTP limit: once upgraded they are admission's to
    // count (WS_MAX_CONNECTIONS_PER_IP, 100 here), not the HTTP limit's. An upgrade answered
    // before its HTTP phase was let go may still find the places full: it is tried again.
    let mut sockets = Vec::new();
    while sockets.len() < 6 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, s) = upgrade_from("127.0.0.4", addr).await;
            if status == 101 {
                sockets.push(s);
                break;
            }
            assert_eq!(status, 429, "upgrade {}", sockets.len() + 1);
            assert!(
                Instant::now() < deadline,
                "upgrade {} never got a place",
                sockets.len() + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for s in &mut sockets {
        let (first, payload) = tokio::time::timeout(PATIENCE, read_frame(s))
            .await
            .expect("a tick in time")
            .expect("a frame");
        assert_eq!(first & 0x0f, 1, "a text frame");
        assert!(payload.starts_with(b"{"), "a JSON message");
    }
    // With six WebSockets open, 127.0.0.4 still has its three HTTP places.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from("127.0.0.4", addr).await);
    }
    wait_for_a_place("127.0.0.4", addr, "upgraded connections held HTTP places").await;
    let h = server.get("/health").await.json();
    assert_eq!(h["clients"], 6, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_idle_and_stalled_tls_sockets_cannot_lock_others_out() {
    let ca = TestCa::new("limits");
    let cert = ca.issue("server");
    let (c, k) = (
        cert.cert.to_string_lossy().into_owned(),
        cert.key.to_string_lossy().into_owned(),
    );
    let server = ServerProcess::start(&[
        ("TLS_CERT", c.as_str()),
        ("TLS_KEY", k.as_str()),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("TLS_MAX_HANDSHAKES", "4"),
        ("TLS_MAX_HANDSHAKES_PER_IP", "2"),
        ("TLS_FIRST_BYTE_TIMEOUT", "2"),
        // A handshake that stalls after its first byte holds its slot this long.
        ("WS_HANDSHAKE_TIMEOUT", "120"),
    ]);
    let addr = server.addr;

    // 127.0.0.2 opens 24 connections that never send a byte, more than every slot there is,
    // and 10 that send the first byte of a ClientHello and stop, five times its own slots
    // and more than the total: without per-address slots they would hold them all.
    let mut silent = Vec::new();
    for _ in 0..24 {
        silent.push(connect_from("127.0.0.2", addr).await);
    }
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut s = connect_from("127.0.0.2", addr).await;
        s.write_all(&[0x16]).await.unwrap();
        stalled.push(s);
    }

    // A real client from another address completes its handshake and is served.
    let tcp = connect_from("127.0.0.3", addr).await;
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("the handshake is not kept waiting")
        .expect("TLS handshake");
    let answer = exchange(
        &mut tls,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");

    // The silent ones are closed after TLS_FIRST_BYTE_TIMEOUT, and so are the stalled ones
    // that found 127.0.0.2's slots taken (after waiting for one in vain); the two holding
    // slots are WS_HANDSHAKE_TIMEOUT's.
    for (i, s) in silent.iter_mut().enumerate() {
        wait_closed(s, &format!("silent connection {i}")).await;
    }
    let mut closed = 0;
    let deadline = Instant::now() + PATIENCE;
    while closed < stalled.len() - 2 {
        assert!(
            Instant::now() < deadline,
            "{closed} stalled connections closed"
        );
        closed = 0;
        for s in &stalled {
            let mut byte = [0u8; 1];
            // Closed: end of stream or a reset; open: nothing to read yet.
            match s.try_read(&mut byte) {
                Ok(_) => closed += 1,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => closed += 1,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_does_not_read_is_cut_after_the_write_timeout() {
    // The 480 KB late-session snapshot, asked for sixteen times in one go (HTTP/1.1
    // pipelining): more than the kernel's socket buffers on both sides can hold, so the
    // server's writes must wait for a client that never reads.
    let server = large_static_server(
        "1",
        &[
            ("HTTP_WRITE_TIMEOUT", "2"),
            ("HTTP_MAX_CONNECTIONS_PER_IP", "1"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("WS_HANDSHAKE_TIMEOUT", "120"),
        ],
    );
    let addr = server.addr;
    let one = server.get("/api/market/snapshot").await;
    assert_eq!(one.status, 200);
    let whole = 16 * one.body.len();
    assert!(whole > 7_000_000, "{whole} bytes");

    let socket = socket_from("127.0.0.2");
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    let request = "GET /api/market/snapshot HTTP/1.1\r\nHost: marketcast\r\n\r\n".repeat(16);
    let asked = Instant::now();
    slow.write_all(request.as_bytes()).await.unwrap();

    // Meanwhile the server serves others.
    let (status, answer) = health_from("127.0.0.3", addr).await;
    assert_eq!(status, 200, "{answer}");
    // The slow reader holds 127.0.0.2's one place until it is cut.
    wait_for_a_place("127.0.0.2", addr, "the unread response was never cut").await;
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "cut before HTTP_WRITE_TIMEOUT: {:?}",
        asked.elapsed()
    );
    // What reaches the slow reader is what the buffers held when it was cut, then the end.
    let read = wait_closed(&mut slow, "the slow reader's connection").await;
    assert!(read < whole, "read {read} of {whole} bytes");
}

#[test]
fn invalid_limits_stop_start_up_naming_the_setting_and_its_range() {
    for (name, value, says) in [
        (
            "HTTP_MAX_CONNECTIONS_PER_IP",
            "-1",
            "HTTP_MAX_CONNECTIONS_PER_IP must be a whole number from 0 to 10000000",
        ),
        (
            "HTTP_WRITE_TIMEOUT",
            "0",
            "HTTP_WRITE_TIMEOUT must be a number from 0.1 to 3600",
        ),
        (
            "TLS_MAX_HANDSHAKES",
            "0",
            "TLS_MAX_HANDSHAKES must be a whole number from 1 to 100000",
        ),
        (
            "TLS_MAX_HANDSHAKES_PER_IP",
            "lots",
            "TLS_MAX_HANDSHAKES_PER_IP must be a whole number from 0 to 100000",
        ),
        (
            "TLS_FIRST_BYTE_TIMEOUT",
            "never",
            "TLS_FIRST_BYTE_TIMEOUT must be a number from 0.1 to 3600",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .current_dir(std::env::temp_dir())
            .env(name, value)
            .env("APP_PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}={value}: {err}");
    }
}
