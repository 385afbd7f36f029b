//! Delta messages (`?delta=fossil`) against the real server: every rebuilt message is the full
//! message of its `seq`, byte for byte, through dropped ticks, reconnects and the full-message
//! interval; the Python client and the dashboard's applier in Chromium check the same from
//! outside Rust.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use marketcast::broadcast::delta::{self, Rebuilder};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

/// A moving market, fast: the simulator at 20 ticks a second.
fn moving_market(extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![
        ("WS_BROADCAST_INTERVAL", "0.05"),
        ("SIM_RATE", "2000"),
        ("HISTORY", "false"),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}

/// What a delta client saw.
#[derive(Default, Debug)]
struct Seen {
    messages: BTreeMap<u64, Vec<u8>>,
    order: Vec<u64>,
    /// Whether each message in `order` came as a delta.
    was_delta: Vec<bool>,
    full: usize,
    deltas: usize,
    delta_bytes: usize,
    full_bytes: usize,
}

impl Seen {
    fn take(&mut self, rebuild: &mut Rebuilder, binary: bool, payload: &[u8]) {
        let message = if binary {
            self.deltas += 1;
            self.delta_bytes += payload.len();
            rebuild.delta(payload).expect("every delta applies")
        } else {
            rebuild.full(payload);
            payload.to_vec()
        };
        let Some(seq) = seq_of(&message) else {
            return; // a status message
        };
        if !binary {
            self.full += 1;
            self.full_bytes += payload.len();
        }
        self.order.push(seq);
        self.was_delta.push(binary);
        self.messages.insert(seq, message);
    }
}

/// `n` messages on a raw socket with `?delta=fossil` (and permessage-deflate when `deflate`),
/// pausing `stall` after the fifth.
async fn delta_client(
    server: &ServerProcess,
    path: &str,
    deflate: bool,
    n: usize,
    stall: Duration,
) -> Seen {
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    // A small receive window when the client will pause: the kernel's buffers then hold only
    // a few ticks, and the server's outbox, not the network, has to deal with the pause.
    let mut s = if stall.is_zero() {
        tokio::net::TcpStream::connect(server.addr).await.unwrap()
    } else {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&server.addr.into()).unwrap();
        sock.set_nonblocking(true).unwrap();
        tokio::net::TcpStream::from_std(sock.into()).unwrap()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
        server.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "closed in the handshake"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut rebuild = Rebuilder::default();
    let mut seen = Seen::default();
    while seen.order.len() < n {
        if seen.order.len() == 5 && !stall.is_zero() {
            tokio::time::sleep(stall).await;
        }
        let (first, payload) = tokio::time::timeout(Duration::from_secs(30), read_frame(&mut s))
            .await
            .expect("a frame in time")
            .expect("a frame");
        let payload = if first & 0x40 != 0 {
            inflate(&payload)
        } else {
            payload
        };
        match first & 0x0f {
            0x1 => seen.take(&mut rebuild, false, &payload),
            0x2 => seen.take(&mut rebuild, true, &payload),
            0x9 => {}
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    let _ = s.read(&mut [0u8; 1]).await;
    seen
}

/// Every message of a plain client, read as they come, until it has the `seq` in `until`.
async fn plain_until(
    mut ws: Ws,
    until: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = msg {
            if let Some(seq) = seq_of(t.as_bytes()) {
                out.insert(seq, t.as_bytes().to_vec());
                if seq >= until.load(std::sync::atomic::Ordering::Relaxed) {
                    return out;
                }
            }
        }
    }
}

/// Checks every rebuilt message against the plain client's for the same seq.
fn same_bytes(seen: &Seen, plain: &BTreeMap<u64, Vec<u8>>, what: &str) -> usize {
    let mut compared = 0;
    for (seq, message) in &seen.messages {
        if let Some(full) = plain.get(seq) {
            assert_eq!(message, full, "{what}: seq {seq} rebuilt differs");
            compared += 1;
        }
    }
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuilt_messages_are_the_full_messages_byte_for_byte() {
    let server = moving_market(&[("WS_DELTA_FULL_EVERY", "7")]);
    let plain_ws = connect(&server.ws_url("/ws/market")).await;
    let until = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let plain = tokio::spawn(plain_until(plain_ws, until.clone()));
    let (zipped, unzipped) = tokio::join!(
        delta_client(&server, "/ws/market?delta=fossil", true, 60, Duration::ZERO),
        delta_client(
            &server,
            "/ws/market?delta=fossil",
            false,
            60,
            Duration::ZERO
        ),
    );
    let last = *zipped
        .order
        .last()
        .unwrap()
        .max(unzipped.order.last().unwrap());
    until.store(last, std::sync::atomic::Ordering::Relaxed);
    let plain = plain.await.unwrap();
    for (seen, what) in [(&zipped, "deflate + delta"), (&unzipped, "delta")] {
        assert!(
            seen.order.windows(2).all(|w| w[0] < w[1]),
            "{what}: {:?}",
            seen.order
        );
        let compared = same_bytes(seen, &plain, what);
        assert!(compared >= 40, "{what}: compared {compared}");
        assert!(seen.deltas >= 30, "{what}: {seen:?}");
        // The first is full, and the interval sends one in seven ticks full anyway.
        assert!(seen.full >= 60 / 7, "{what}: {} full", seen.full);
        let (avg_delta, avg_full) = (
            seen.delta_bytes / seen.deltas.max(1),
            seen.full_bytes / seen.full.max(1),
        );
        assert!(
            avg_delta * 3 < avg_full,
            "{what}: a delta {avg_delta} B, a full message {avg_full} B"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_falls_behind_gets_full_messages_and_stays_exact() {
    // Two ticks of room, and every other message full at 480 KB, 10 ticks a second: a pause of
    // a few seconds is more than the kernel's buffers hold, so ticks are lost for this client,
    // and the next it gets must be one it can use.
    let server = large_static_server(
        "0.1",
        &[("WS_QUEUE_SIZE", "2"), ("WS_DELTA_FULL_EVERY", "2")],
    );
    // The plain client reads all along (it would lose ticks too if it waited).
    let plain_ws = connect(&server.ws_url("/ws/market")).await;
    let until = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let plain = tokio::spawn(plain_until(plain_ws, until.clone()));
    let stalled = delta_client(
        &server,
        "/ws/market?delta=fossil",
        false,
        50,
        Duration::from_secs(5),
    )
    .await;
    until.store(
        *stalled.order.last().unwrap(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let plain = plain.await.unwrap();
    let skipped = stalled.order.windows(2).filter(|w| w[1] > w[0] + 1).count();
    assert!(skipped > 0, "the pause lost ticks: {:?}", stalled.order);
    // What follows a loss is full: the client does not hold its base.
    for (i, w) in stalled.order.windows(2).enumerate() {
        if w[1] > w[0] + 1 {
            assert!(
                !stalled.was_delta[i + 1],
                "a delta right after a loss at {}",
                w[1]
            );
        }
    }
    assert!(
        stalled.full >= 2,
        "a full message after the loss: {stalled:?}"
    );
    assert!(
        stalled.deltas > 5,
        "deltas again once caught up: {stalled:?}"
    );
    assert!(same_bytes(&stalled, &plain, "after a pause") >= 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_starts_full_and_other_channels_get_deltas_too() {
    let server = moving_market(&[]);
    for _ in 0..2 {
        let (mut s, _) = raw_connect(server.addr, "/ws/market?delta=fossil", "").await;
        let (first, payload) = read_frame(&mut s).await.unwrap();
        assert_eq!(first, 0x81, "the first message is full text");
        assert!(seq_of(&payload).is_some());
    }
    let index = delta_client(&server, "/ws/index?delta=fossil", false, 20, Duration::ZERO).await;
    assert!(index.deltas > 5, "{index:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_ask_and_servers_that_do_not_offer_get_full_messages() {
    let server = moving_market(&[("WS_DELTA", "false")]);
    let seen = delta_client(
        &server,
        "/ws/market?delta=fossil",
        false,
        10,
        Duration::ZERO,
    )
    .await;
    assert_eq!((seen.deltas, seen.full), (0, 10));
    let server = moving_market(&[]);
    for path in ["/ws/market", "/ws/market?delta=vcdiff"] {
        let seen = delta_client(&server, path, false, 10, Duration::ZERO).await;
        assert_eq!((seen.deltas, seen.full), (0, 10), "{path}");
    }
    // The delta message's form, as documented.
    let (mut s, _) = raw_connect(server.addr, "/ws/market?delta=fossil", "").await;
    loop {
        let (first, payload) = read_frame(&mut s).await.unwrap();
        if first == 0x82 {
            let (header, _) = delta::parse(&payload).unwrap();
            assert_eq!(header.delta, "fossil");
            assert_eq!(header.base + 1, header.seq);
            let line = payload.split(|b| *b == b'\n').next().unwrap();
            assert!(
                line.starts_with(b"{\"seq\":"),
                "{}",
                String::from_utf8_lossy(line)
            );
            break;
        }
    }
}

#[test]
fn a_python_client_with_its_own_applier_rebuilds_every_message() {
    let server = moving_market(&[("WS_DELTA_FULL_EVERY", "10")]);
    let url = server.ws_url("/ws/market");
    let v = run_python("delta_client.py", &["--url", &url, "--messages", "60"]);
    assert!(v["compared"].as_u64().unwrap() >= 30, "{v}");
    assert!(v["deltas"].as_u64().unwrap() >= 30, "{v}");
    let server = large_static_server(
        "0.1",
        &[("WS_QUEUE_SIZE", "2"), ("WS_DELTA_FULL_EVERY", "2")],
    );
    let url = server.ws_url("/ws/market");
    let v = run_python(
        "delta_client.py",
        &["--url", &url, "--messages", "40", "--stall-seconds", "5"],
    );
    assert!(v["compared"].as_u64().unwrap() >= 20, "{v}");
    assert!(
        v["skipped"].as_u64().unwrap() > 0,
        "the pause lost ticks: {v}"
    );
    assert!(
        v["deltas_after_stall"].as_u64().unwrap() > 0,
        "deltas resumed after the pause: {v}"
    );
}

#[test]
fn the_dashboards_applier_in_chromium_rebuilds_every_message() {
    let server = moving_market(&[
        ("WS_DELTA_FULL_EVERY", "10"),
        ("WS_BROADCAST_INTERVAL", "0.2"),
    ]);
    let http = format!("http://{}", server.addr);
    let v = run_python("delta_browser.py", &["--http", &http, "--messages", "60"]);
    assert!(v["same"].as_u64().unwrap() >= 30, "{v}");
    assert!(v["deltas"].as_u64().unwrap() >= 30, "{v}");
    assert!(
        v["extensions"]
            .as_str()
            .unwrap_or("")
            .contains("permessage-deflate"),
        "Chromium took deltas compressed: {v}"
    );
    assert_eq!(v["reconnects"], 1, "{v}");
    assert_eq!(v["firstAfterReconnect"], "full", "{v}");
    // A declared size far above what the base and the delta could make is refused.
    assert!(
        v["oversize"]
            .as_str()
            .is_some_and(|e| e.contains("result too large")),
        "{v}"
    );
}
