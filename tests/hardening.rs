//! Who may connect and how many, bad handshakes and bad frames of every kind, and slow
//! clients: each refusal asserts its status or close code, and that a bystander kept receiving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECOND: Duration = Duration::from_secs(1);

/// Sends an upgrade request with `extra` headers; returns the status and the whole head.
async fn upgrade(server: &ServerProcess, path: &str, extra: &str) -> (u16, String, TcpStream) {
    let (s, head) = raw_connect(server.addr, path, extra).await;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, head.to_ascii_lowercase(), s)
}

/// A client that stays connected through a test's refusals and must still be served after.
struct Bystander {
    ws: Ws,
}

impl Bystander {
    async fn start(server: &ServerProcess) -> Bystander {
        let mut ws = connect(&server.ws_url("/ws/market")).await;
        next_json(&mut ws, Duration::from_secs(5)).await;
        Bystander { ws }
    }

    /// Two more snapshots arrive, in order (whatever queued up meanwhile is read first).
    async fn still_receives(mut self) {
        let (_, a) = next_json(&mut self.ws, Duration::from_secs(5)).await;
        let (_, b) = next_json(&mut self.ws, Duration::from_secs(5)).await;
        assert!(b["seq"].as_u64() > a["seq"].as_u64(), "{a} then {b}");
    }
}

#[tokio::test]
async fn a_token_is_taken_from_the_query_or_a_bearer_header_and_refusals_say_why() {
    let server = ServerProcess::start(&[
        ("WS_AUTH_TOKEN", "s3cret-token"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let bystander = {
        let mut ws = connect(&server.ws_url("/ws/market?token=s3cret-token")).await;
        next_json(&mut ws, SECOND * 5).await;
        ws
    };
    for (path, extra) in [
        ("/ws/market", ""),
        ("/ws/market?token=wrong", ""),
        ("/ws/market", "Authorization: Bearer wrong\r\n"),
        ("/ws/market", "Authorization: Basic czNjcmV0LXRva2Vu\r\n"),
    ] {
        let (status, head, mut s) = upgrade(&server, path, extra).await;
        assert_eq!(status, 401, "{path} {extra}: {head}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body).await;
        assert!(
            body.contains("Authorization: Bearer"),
            "the refusal says what to send: {body}"
        );
    }
    let (status, _, _) = upgrade(
        &server,
        "/ws/market",
        "Authorization: Bearer s3cret-token\r\n",
    )
    .await;
    assert_eq!(status, 101, "a bearer header is accepted");
    let (status, _, _) = upgrade(&server, "/ws/market?token=s3cret-token", "").await;
    assert_eq!(status, 101);
    let mut ws = bystander;
    next_json(&mut ws, SECOND * 5).await;
    let logs = server.drain_logs().join("\n");
    // One line a second per address, with a count (#20): the first refusal's.
    assert!(logs.contains("WebSocket refused: missing token"), "{logs}");
    assert!(!logs.contains("s3cret-token"), "the token is never logged");
}

#[tokio::test]
async fn origins_outside_cors_origins_are_refused_and_the_server_s_own_page_is_not() {
    let server = ServerProcess::start(&[("CORS_ORIGINS", "http://desk.example:5173")]);
    let own = format!("Origin: http://{}\r\n", server.addr);
    for (extra, expected) in [
        ("Origin: http://desk.example:5173\r\n", 101),
        ("Origin: http://evil.example\r\n", 403),
        ("Origin: null\r\n", 403),
        (own.as_str(), 101),
        ("", 101),
    ] {
        let (status, head, _) = upgrade(&server, "/ws/market", extra).await;
        assert_eq!(status, expected, "{extra:?}: {head}");
    }
    let strict = ServerProcess::start(&[("WS_ALLOW_NO_ORIGIN", "false")]);
    let (status, _, _) = upgrade(&strict, "/ws/market", "").await;
    assert_eq!(
        status, 403,
        "no Origin refused when WS_ALLOW_NO_ORIGIN=false"
    );
    let own = format!("Origin: http://{}\r\n", strict.addr);
    let (status, _, _) = upgrade(&strict, "/ws/market", &own).await;
    assert_eq!(status, 101);
}

fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"))
}

#[tokio::test]
async fn connections_per_address_are_limited_and_a_proxy_s_clients_are_told_apart() {
    let server = ServerProcess::start(&[
        ("WS_MAX_CONNECTIONS_PER_IP", "3"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let bystander = Bystander::start(&server).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (status, _, s) = upgrade(&server, "/ws/market", "").await;
        assert_eq!(status, 101);
        open.push(s);
    }
    let (status, head, _) = upgrade(&server, "/ws/market", "").await;
    assert_eq!(status, 429, "{head}");
    assert!(retry_after(&head) >= 1);
    // Behind a trusted proxy (loopback by default), the forwarded address counts.
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..3 {
            let (status, head, s) = upgrade(
                &server,
                "/ws/market",
                &format!("X-Forwarded-For: {client}\r\n"),
            )
            .await;
            assert_eq!(status, 101, "{client}: {head}");
            open.push(s);
        }
        let (status, _, _) = upgrade(
            &server,
            "/ws/market",
            &format!("X-Forwarded-For: {client}\r\n"),
        )
        .await;
        assert_eq!(status, 429, "{client}'s fourth");
    }
    // A connection that ends gives its place back.
    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, s) = upgrade(&server, "/ws/market", "").await;
        if status == 101 {
            open.push(s);
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = server.get("/health").await.json();
    assert!(
        h["admission"]["refused"]["per_ip"].as_u64().unwrap() >= 3,
        "{h}"
    );
    bystander.still_receives().await;
}

#[tokio::test]
async fn the_process_limit_answers_503_and_the_rate_limit_429() {
    let server = ServerProcess::start(&[
        ("WS_MAX_CONNECTIONS", "2"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let bystander = Bystander::start(&server).await;
    let (status, _, _kept) = upgrade(&server, "/ws/market", "").await;
    assert_eq!(status, 101);
    let (status, head, _) = upgrade(&server, "/ws/market", "").await;
    assert_eq!(status, 503, "{head}");
    assert!(retry_after(&head) >= 1);
    bystander.still_receives().await;

    // One new connection every five seconds, one saved up: the second in a row waits.
    let server = ServerProcess::start(&[("WS_CONNECT_RATE", "0.2")]);
    let (status, _, _first) = upgrade(&server, "/ws/market", "").await;
    assert_eq!(status, 101);
    let (status, head, _) = upgrade(&server, "/ws/market", "").await;
    assert_eq!(status, 429, "{head}");
    assert!(retry_after(&head) >= 1);
    let m = server.get("/metrics").await.body;
    assert!(
        m.contains("marketcast_connections_refused_total{reason=\"rate\"} 1"),
        "{m}"
    );
}

/// Sends raw request bytes and returns the status line's code (0 when the server just closed).
async fn raw_status(server: &ServerProcess, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    // Up to the end of the answer's head (the server may keep the connection open after it).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(15);
    while !head.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn bad_handshakes_get_clear_statuses() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1")]);
    let bystander = Bystander::start(&server).await;
    let addr = server.addr;
    let up = |extra: &str, version: &str| {
        format!("GET /ws/market HTTP/{version}\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n")
    };
    // Plain HTTP to the WebSocket path: 426 with the headers that say what to send.
    let r = server.get("/ws/market").await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.body.contains("WebSocket"));
    // No key, a key that is not 16 bytes, a wrong version.
    let cases = [
        (up("Sec-WebSocket-Version: 13\r\n", "1.1"), 400),
        (
            up(
                "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n",
                "1.1",
            ),
            400,
        ),
        (
            up(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
                "1.1",
            ),
            426,
        ),
        (
            up(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                "1.0",
            ),
            400,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            raw_status(&server, request.as_bytes()).await,
            expected,
            "{request}"
        );
    }
    // The wrong path.
    assert_eq!(server.get("/ws/nowhere").await.status, 404);
    // Headers far over any sane size.
    let huge = format!(
        "GET /ws/market HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let status = raw_status(&server, huge.as_bytes()).await;
    assert_eq!(status, 431, "oversized headers");
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        "a".repeat(200_000)
    );
    let status = raw_status(&server, long_line.as_bytes()).await;
    assert_eq!(
        status, 431,
        "an oversized request line makes the head too large"
    );
    bystander.still_receives().await;
    assert_eq!(server.get("/health").await.json()["status"], "ok");
}

#[tokio::test]
async fn a_handshake_that_trickles_in_is_cut_off() {
    let server = ServerProcess::start(&[("WS_HANDSHAKE_TIMEOUT", "1")]);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /ws/market HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header byte every 200 ms, never finishing: the server gives up after about 1 s.
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                closed = true; // an error status, then the close
                break;
            }
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "the server kept a trickling handshake open for 10 s"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// Reads server frames until a Close; returns its code (`None` if the socket just ended).
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), read_frame(s)).await {
            Ok(Ok((first, payload))) if first & 0x0f == 0x8 => {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            Ok(Ok(_)) => continue,
            _ => return None,
        }
    }
    None
}

/// A client frame to send as it is: first byte, masked or not, payload.
type RawFrame = (u8, bool, Vec<u8>);

/// Writes one client frame with an explicit first byte and mask flag.
async fn write_raw(s: &mut TcpStream, first: u8, masked: bool, payload: &[u8]) {
    try_write_raw(s, first, masked, payload)
        .await
        .expect("the server reads the frame");
}

/// Writes one client frame; an error when the server has closed the connection.
async fn try_write_raw(
    s: &mut TcpStream,
    first: u8,
    masked: bool,
    payload: &[u8],
) -> std::io::Result<()> {
    let mask = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
    s.write_all(&client_frame(first, mask, payload)).await
}

/// Reads frames until a text frame that is not a snapshot, or a control frame of `opcode`.
async fn next_reply(s: &mut TcpStream, opcode: u8) -> Vec<u8> {
    loop {
        let (first, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(s))
            .await
            .expect("a reply in time")
            .expect("the connection stays open");
        if first & 0x0f == opcode && !(opcode == 0x1 && payload.starts_with(b"{\"seq\"")) {
            return payload;
        }
    }
}

#[tokio::test]
async fn bad_frames_are_answered_by_the_rfc_and_the_others_carry_on() {
    let server = ServerProcess::start(&[
        ("WS_BROADCAST_INTERVAL", "0.1"),
        // A connection per case, from one address, faster than its connect rate (#20).
        ("WS_CONNECT_RATE", "0"),
    ]);
    let bystander = Bystander::start(&server).await;
    // (what, frames as (first byte, masked, payload), the close code expected)
    let close_with_code = |code: u16, reason: &[u8]| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    };
    let cases: Vec<(&str, Vec<RawFrame>, u16)> = vec![
        ("unmasked frame", vec![(0x81, false, b"{}".to_vec())], 1002),
        ("RSV2 set", vec![(0x81 | 0x20, true, b"{}".to_vec())], 1002),
        ("RSV3 set", vec![(0x81 | 0x10, true, b"{}".to_vec())], 1002),
        (
            "RSV1 without deflate",
            vec![(0xC1, true, b"{}".to_vec())],
            1002,
        ),
        ("reserved data opcode 3", vec![(0x83, true, vec![])], 1002),
        (
            "reserved control opcode 0xB",
            vec![(0x8B, true, vec![])],
            1002,
        ),
        ("fragmented ping", vec![(0x09, true, b"x".to_vec())], 1002),
        (
            "ping over 125 bytes",
            vec![(0x89, true, vec![b'p'; 126])],
            1002,
        ),
        (
            "continuation with nothing to continue",
            vec![(0x80, true, b"x".to_vec())],
            1002,
        ),
        (
            "a new text message inside a fragmented one",
            vec![(0x01, true, b"{".to_vec()), (0x81, true, b"}".to_vec())],
            1002,
        ),
        (
            "invalid UTF-8 in the final fragment",
            vec![
                (0x01, true, b"{\"a\":\"".to_vec()),
                (0x80, true, vec![0xc3, 0x28, b'"', b'}']),
            ],
            1007,
        ),
        ("close with one byte", vec![(0x88, true, vec![0x03])], 1002),
        (
            "close with code 999",
            vec![(0x88, true, close_with_code(999, b""))],
            1002,
        ),
        (
            "close with code 1005",
            vec![(0x88, true, close_with_code(1005, b""))],
            1002,
        ),
        (
            "close with code 1016",
            vec![(0x88, true, close_with_code(1016, b""))],
            1002,
        ),
        (
            "close with an invalid UTF-8 reason",
            vec![(0x88, true, close_with_code(1000, &[0xff, 0xfe]))],
            1007,
        ),
        (
            "close with 1000",
            vec![(0x88, true, close_with_code(1000, b"bye"))],
            1000,
        ),
        (
            "close with 4001",
            vec![(0x88, true, close_with_code(4001, b""))],
            4001,
        ),
        ("close with no body", vec![(0x88, true, vec![])], 1000),
    ];
    for (what, frames, expected) in cases {
        let (mut s, _) = raw_connect(server.addr, "/ws/market", "").await;
        for (first, masked, payload) in frames {
            write_raw(&mut s, first, masked, &payload).await;
        }
        assert_eq!(close_code(&mut s).await, Some(expected), "{what}");
    }

    // A text message split inside a UTF-8 sequence is whole again once complete.
    let (mut s, _) = raw_connect(server.addr, "/ws/market", "").await;
    let message = "{\"type\":\"ping\",\"note\":\"κόσμε\"}".as_bytes();
    let split = message.iter().position(|b| *b >= 0x80).unwrap() + 1;
    write_raw(&mut s, 0x01, true, &message[..split]).await;
    write_raw(&mut s, 0x00, true, &message[split..split + 3]).await;
    // A ping between fragments is answered at once, with its payload.
    write_raw(&mut s, 0x89, true, b"between").await;
    assert_eq!(next_reply(&mut s, 0xA).await, b"between");
    write_raw(&mut s, 0x80, true, &message[split + 3..]).await;
    assert_eq!(next_reply(&mut s, 0x1).await, b"{\"type\":\"pong\"}");

    // A ping flood from a client that never reads: its pongs pile up and it is closed 1008.
    let (mut s, _) = raw_connect(server.addr, "/ws/market", "").await;
    let mut flood_closed = false;
    for _ in 0..200_000 {
        let write = tokio::time::timeout(
            Duration::from_secs(2),
            try_write_raw(&mut s, 0x89, true, &[b'f'; 125]),
        );
        if !matches!(write.await, Ok(Ok(()))) {
            flood_closed = true; // the server stopped reading: it has given up on this client
            break;
        }
    }
    assert!(flood_closed, "200,000 unanswered pings were all read");
    let h = server
        .wait_health(|h| h["broadcast"]["protocol_closes"].as_u64().unwrap() >= 17)
        .await;
    assert_eq!(h["status"], "ok");
    bystander.still_receives().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_among_200_is_closed_and_the_readers_keep_their_cadence() {
    let server = ServerProcess::start(&[
        ("FEED", "static"),
        ("SNAPSHOT_FILE", &fixture("snapshot-small.json")),
        ("WS_BROADCAST_INTERVAL", "0.05"),
        ("WS_QUEUE_SIZE", "50"),
        ("WS_SLOW_CLIENT_TIMEOUT", "2"),
        // 201 clients from one address at once: past the per-address connect rate (#20).
        ("WS_MAX_CONNECTIONS_PER_IP", "0"),
        ("WS_CONNECT_RATE", "0"),
        ("WS_COMPRESSION", "false"),
    ]);
    let mut readers = Vec::new();
    for _ in 0..200 {
        let (s, head) = raw_connect(server.addr, "/ws/market", "").await;
        assert!(head.starts_with("HTTP/1.1 101"));
        readers.push(s);
    }
    let rss_before = server.rss_kib();
    let (mut slow, _) = raw_connect(server.addr, "/ws/market", "").await;
    // Each reader reads every frame for 8 s and checks that no seq is missing.
    let until = Instant::now() + Duration::from_secs(8);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut last = 0u64;
                let mut gaps = 0u64;
                let mut received = 0u64;
                while Instant::now() < until {
                    let (first, payload) = read_frame(&mut s).await.unwrap();
                    if first & 0x0f != 0x1 {
                        continue;
                    }
                    let text = std::str::from_utf8(&payload[..payload.len().min(40)]).unwrap_or("");
                    let seq: u64 = text
                        .strip_prefix("{\"seq\":")
                        .and_then(|r| r.split(',').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap();
                    if last > 0 && seq != last + 1 {
                        gaps += 1;
                    }
                    last = seq;
                    received += 1;
                }
                (received, gaps, s)
            })
        })
        .collect();
    let mut total = 0;
    let mut still_open = Vec::new();
    for t in tasks {
        let (received, gaps, s) = t.await.unwrap();
        assert_eq!(gaps, 0, "a reader missed a message");
        total += received;
        still_open.push(s);
    }
    // 8 s at 20 Hz: 160 each; half of that is a generous floor for a busy machine.
    assert!(total >= 200 * 80, "readers received {total}");
    // The slow one was closed: its last frame is a Close with 4008 (after the frames it never
    // read), or the socket is simply gone.
    // Closed (its Close frame given up to a second to get through), and only it.
    let h = server
        .wait_health(|h| h["broadcast"]["slow_client_closes"] == 1 && h["clients"] == 200)
        .await;
    assert_eq!(h["broadcast"]["heartbeat_timeouts"], 0, "{h}");
    let code = close_code(&mut slow).await;
    assert!(code == Some(4008) || code.is_none(), "{code:?}");
    let growth = server.rss_kib().saturating_sub(rss_before);
    drop(still_open);
    // The slow client's outbox holds at most 50 shared 12 KB frames (600 KB); the bound below
    // leaves the allocator and the 200 readers' buffers their slack.
    assert!(growth < 16 * 1024, "server memory grew by {growth} KiB");
}
