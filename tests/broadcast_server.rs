//! The broadcast server against a real client: cadence, identical bytes, slow and dead clients,
//! bad frames, shutdown, and the REST face.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);

/// The keys and types of a stamped snapshot message.
fn assert_snapshot_schema(v: &serde_json::Value) {
    assert!(v["seq"].is_u64(), "seq: {v}");
    assert!(v["ts"].is_i64(), "ts");
    for key in ["quotes", "prices", "indices"] {
        assert!(v[key].is_object(), "{key} is an object");
    }
    assert!(v["foreign"].is_object(), "foreign is present");
    assert!(v["derivatives"].is_object() || v["derivatives"].is_null());
    // The whole message (minus the stamp) reads back as the typed snapshot.
    let snap: marketcast::market::MarketSnapshot =
        serde_json::from_value(v.clone()).expect("matches MarketSnapshot");
    for (symbol, stats) in &snap.quotes {
        assert_eq!(&stats.symbol, symbol);
        assert_eq!(
            stats.mua_chu_dong_volume + stats.ban_chu_dong_volume + stats.neutral_volume,
            stats.total_volume
        );
    }
}

#[tokio::test]
async fn snapshot_at_once_on_connect_then_one_per_interval() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.2")]);
    // Let the simulator fill the session a little.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    // From the moment the connection is established (the handshake is done).
    let connected = Instant::now();
    let (_, first) = next_json(&mut ws, SECOND).await;
    let first_latency = connected.elapsed();
    assert_snapshot_schema(&first);
    assert!(
        first_latency < Duration::from_millis(200),
        "first snapshot took {first_latency:?}"
    );
    let mut seq = first["seq"].as_u64().unwrap();
    let mut last_ts = first["ts"].as_i64().unwrap();
    let window = Instant::now();
    for _ in 0..10 {
        let (_, v) = next_json(&mut ws, SECOND).await;
        assert_snapshot_schema(&v);
        let next = v["seq"].as_u64().unwrap();
        assert_eq!(next, seq + 1, "seq increases by one per broadcast");
        let ts = v["ts"].as_i64().unwrap();
        assert!(ts > last_ts, "ts moves forward");
        seq = next;
        last_ts = ts;
    }
    // Ten intervals of 0.2 s: about 2 s, certainly neither 1 s nor 5 s.
    let took = window.elapsed();
    assert!(
        took > Duration::from_millis(1500) && took < Duration::from_secs(5),
        "10 broadcasts took {took:?}"
    );
    let prices = first["prices"].as_object().unwrap();
    assert!(!prices.is_empty(), "the simulator traded in 0.5 s");
}

#[tokio::test]
async fn snapshot_on_connect_does_not_wait_for_a_long_interval() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "30")]);
    let started = Instant::now();
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(v["seq"], 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A second client gets the same, still fresh, snapshot at once.
    let mut ws2 = connect(&server.ws_url("/ws/market")).await;
    let (_, v2) = next_json(&mut ws2, Duration::from_secs(5)).await;
    assert_eq!(v2["seq"], 1);
}

#[tokio::test]
async fn three_clients_receive_identical_bytes_per_seq() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1")]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server.ws_url("/ws/market")).await);
    }
    let mut by_seq: Vec<HashMap<u64, String>> = Vec::new();
    for ws in clients.iter_mut() {
        let mut seen = HashMap::new();
        for _ in 0..8 {
            let (text, v) = next_json(ws, SECOND).await;
            seen.insert(v["seq"].as_u64().unwrap(), text);
        }
        by_seq.push(seen);
    }
    let mut common_seqs = 0;
    for (seq, text) in &by_seq[0] {
        if let (Some(b), Some(c)) = (by_seq[1].get(seq), by_seq[2].get(seq)) {
            assert_eq!(text, b, "seq {seq}");
            assert_eq!(text, c, "seq {seq}");
            common_seqs += 1;
        }
    }
    assert!(common_seqs >= 5, "only {common_seqs} seqs in common");
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_slow_the_others() {
    // 480 KB at 25 Hz: the stalled client falls behind by ~12 MB a second.
    let server = ServerProcess::start(&[
        ("FEED", "static"),
        ("SNAPSHOT_FILE", &fixture("snapshot-large.json")),
        ("WS_BROADCAST_INTERVAL", "0.04"),
        ("WS_QUEUE_SIZE", "8"),
        ("WS_COMPRESSION", "false"),
    ]);
    let mut reader = connect(&server.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut reader, SECOND).await;
    let rss_before = server.rss_kib();
    // The stalled client: handshake, then never reads again.
    let (stalled, head) = raw_connect(server.addr, "/ws/market", "").await;
    assert!(head.starts_with("HTTP/1.1 101"));

    let mut seq = v["seq"].as_u64().unwrap();
    let mut received = 0;
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(4) {
        // Only the stamp is read: parsing 480 KB per message would make this client the slow one.
        let text = next_text(&mut reader, SECOND).await;
        let next = stamped_seq(&text);
        assert_eq!(next, seq + 1, "the reading client misses nothing");
        seq = next;
        received += 1;
    }
    // At 25 Hz for 4 s the reader got about 100; allow for a slow machine.
    assert!(received > 50, "reader received only {received} in 4 s");

    let health = server.get("/health?clients=true").await.json();
    let list = health["client_list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let stalled_view = list.iter().max_by_key(|c| c["id"].as_u64()).unwrap();
    let reader_view = list.iter().min_by_key(|c| c["id"].as_u64()).unwrap();
    assert!(
        stalled_view["dropped"].as_u64().unwrap() > 50,
        "the stalled client's drops are counted: {stalled_view}"
    );
    assert_eq!(reader_view["dropped"], 0);
    assert!(health["broadcast"]["messages_dropped"].as_u64().unwrap() > 50);
    // ~200 frames of 480 KB were not delivered to it; the server holds none of them.
    let growth_kib = server.rss_kib().saturating_sub(rss_before);
    assert!(
        growth_kib < 24 * 1024,
        "server memory grew by {growth_kib} KiB for a stalled client"
    );
    drop(stalled);
}

#[tokio::test]
async fn heartbeat_closes_a_silent_client_and_keeps_an_answering_one() {
    let server = ServerProcess::start(&[
        ("WS_HEARTBEAT_INTERVAL", "1"),
        ("WS_HEARTBEAT_TIMEOUT", "1"),
        ("WS_BROADCAST_INTERVAL", "0.5"),
    ]);
    let mut answering = connect(&server.ws_url("/ws/market")).await;
    let answering_task = tokio::spawn(async move {
        let mut received = 0;
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            next_json(&mut answering, SECOND).await;
            received += 1;
        }
        (received, answering)
    });
    let (mut silent, _) = raw_connect(server.addr, "/ws/market", "").await;
    let started = Instant::now();
    let mut pings = 0;
    let mut close_code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(6), read_frame(&mut silent)).await {
            Ok(Ok((first, payload))) => match first & 0x0f {
                0x9 => pings += 1,
                0x8 => {
                    close_code = Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
                _ => {}
            },
            Ok(Err(_)) => break, // EOF after the close
            Err(_) => panic!("the silent client was not closed within 6 s"),
        }
    }
    let closed_after = started.elapsed();
    assert_eq!(pings, 1, "one ping, then the timeout");
    assert_eq!(close_code, Some(1011));
    assert!(
        closed_after > Duration::from_millis(1500) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, expected about 2 s"
    );
    // The answering client was read all along (tungstenite answers Pings while it reads), and
    // is still served after several heartbeat rounds.
    let (received, _still_open) = answering_task.await.unwrap();
    assert!(received >= 6, "answering client received {received}");
    let health = server.get("/health").await.json();
    assert_eq!(health["clients"], 1);
    assert_eq!(health["broadcast"]["heartbeat_timeouts"], 1);
}

#[tokio::test]
async fn oversized_and_binary_messages_are_closed_and_others_keep_going() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1")]);
    let mut bystander = connect(&server.ws_url("/ws/market")).await;

    let mut big = connect(&server.ws_url("/ws/market")).await;
    big.send(Message::text("x".repeat(5000))).await.unwrap();
    assert_eq!(close_code_of(&mut big).await, Some(CloseCode::Size));

    let mut binary = connect(&server.ws_url("/ws/market")).await;
    binary.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        close_code_of(&mut binary).await,
        Some(CloseCode::Unsupported)
    );

    // Invalid UTF-8 in a text frame: 1007.
    let (mut raw, _) = raw_connect(server.addr, "/ws/market", "").await;
    write_frame(&mut raw, 0x81, &[0xff, 0xfe]).await;
    let mut code = None;
    while let Ok((first, payload)) = read_frame(&mut raw).await {
        if first & 0x0f == 0x8 {
            code = Some(u16::from_be_bytes([payload[0], payload[1]]));
            break;
        }
    }
    assert_eq!(code, Some(1007));

    let (_, a) = next_json(&mut bystander, SECOND).await;
    let (_, b) = next_json(&mut bystander, SECOND).await;
    assert!(b["seq"].as_u64() > a["seq"].as_u64());
    let health = server.get("/health").await.json();
    assert_eq!(health["broadcast"]["protocol_closes"], 3);
}

/// The next text message, unparsed.
async fn next_text(ws: &mut Ws, timeout: Duration) -> String {
    loop {
        match tokio::time::timeout(timeout, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// `seq` from the stamp at the start of a message (`{"seq":N,...`).
fn stamped_seq(text: &str) -> u64 {
    let rest = text
        .strip_prefix("{\"seq\":")
        .expect("message starts with its seq");
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

/// Reads until the server's Close frame and returns its code.
async fn close_code_of(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn app_level_ping_gets_pong_and_other_text_is_ignored() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.2")]);
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    ws.send(Message::text(r#"{"action":"subscribe","channel":"x"}"#))
        .await
        .unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let mut got_pong = false;
    for _ in 0..10 {
        let (_, v) = next_json(&mut ws, SECOND).await;
        if v == serde_json::json!({"type": "pong"}) {
            got_pong = true;
            break;
        }
        assert!(v["seq"].is_u64(), "only snapshots and the pong: {v}");
    }
    assert!(got_pong);
}

#[tokio::test]
async fn sigterm_sends_close_1001_to_every_client_and_exits_zero() {
    let mut server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.2")]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&server.ws_url("/ws/market")).await;
        next_json(&mut ws, SECOND).await;
        clients.push(ws);
    }
    let asked = Instant::now();
    server.sigterm();
    for ws in clients.iter_mut() {
        assert_eq!(close_code_of(ws).await, Some(CloseCode::Away));
    }
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("the server exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn rest_snapshot_and_health() {
    let server = ServerProcess::start(&[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = server.get("/api/market/snapshot").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = r.json();
    assert!(v.get("seq").is_none(), "the REST snapshot is not stamped");
    let snap: marketcast::market::MarketSnapshot = serde_json::from_value(v).unwrap();
    assert!(snap.foreign.is_some());

    let h = server.get("/health").await;
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["clients"], 0);
    assert_eq!(h["feed"]["kind"], "simulator");
    assert_eq!(h["feed"]["state"], "running");
    assert!(h["feed"]["events"].as_u64().unwrap() > 0);

    let m = server.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.body.contains("marketcast_clients{channel=\"market\"} 0"));
    assert!(m.body.contains("# TYPE marketcast_messages_sent counter"));
}

#[tokio::test]
async fn handshake_errors_get_http_errors() {
    let server = ServerProcess::start(&[]);
    // Plain HTTP to the WebSocket path: 426 Upgrade Required, saying what to send.
    let r = server.get("/ws/market").await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.body.contains("WebSocket upgrade"));
    let r = http_get(
        server.addr,
        "/ws/market",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "8"),
        ],
    )
    .await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
}

#[tokio::test]
async fn token_is_required_when_set() {
    let server = ServerProcess::start(&[("WS_AUTH_TOKEN", "s3cret")]);
    let err = tokio_tungstenite::connect_async(server.ws_url("/ws/market")).await;
    assert!(err.is_err(), "no token: rejected");
    let err = tokio_tungstenite::connect_async(server.ws_url("/ws/market?token=wrong")).await;
    assert!(err.is_err(), "wrong token: rejected");
    let mut ws = connect(&server.ws_url("/ws/market?token=s3cret")).await;
    next_json(&mut ws, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn deflate_is_negotiated_and_one_compressed_frame_decodes_to_the_plain_message() {
    let server = ServerProcess::start(&[
        ("FEED", "static"),
        ("SNAPSHOT_FILE", &fixture("snapshot-large.json")),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    let (mut zipped, head) = raw_connect(
        server.addr,
        "/ws/market",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover"),
        "{head}"
    );
    let (mut plain, head) = raw_connect(server.addr, "/ws/market", "").await;
    assert!(!head.to_ascii_lowercase().contains("permessage-deflate"));
    let mut compressed = HashMap::new();
    for _ in 0..3 {
        let (first, payload) = read_frame(&mut zipped).await.unwrap();
        assert_eq!(first, 0xC1, "FIN + RSV1 + text");
        let text = String::from_utf8(inflate(&payload)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        compressed.insert(v["seq"].as_u64().unwrap(), (payload.len(), text));
    }
    let mut matched = 0;
    for _ in 0..5 {
        let (first, payload) = read_frame(&mut plain).await.unwrap();
        assert_eq!(first, 0x81);
        let text = String::from_utf8(payload).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some((zlen, ztext)) = compressed.get(&v["seq"].as_u64().unwrap()) {
            assert_eq!(ztext, &text, "same message either way");
            // The issue's bar for the large snapshot: at most a quarter of the plain bytes.
            assert!(
                zlen * 4 <= text.len(),
                "{zlen} compressed vs {} plain",
                text.len()
            );
            matched += 1;
        }
    }
    assert!(matched >= 1);
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(10), zipped.read_to_end(&mut sink)).await;
}

/// The exact race behind the old flake: the latest snapshot was built while no deflate client
/// was connected (a plain client asked for it), and then a deflate client connects and is handed
/// that snapshot at once. With a 30 s interval no other tick can come between, so the order of
/// events is fixed by the test, not by timing.
#[tokio::test]
async fn a_deflate_client_gets_the_snapshot_built_before_it_came_compressed() {
    let server = ServerProcess::start(&[
        ("FEED", "static"),
        ("SNAPSHOT_FILE", &fixture("snapshot-large.json")),
        ("WS_BROADCAST_INTERVAL", "30"),
    ]);
    let (mut plain, _) = raw_connect(server.addr, "/ws/market", "").await;
    let (first, payload) = read_frame(&mut plain).await.unwrap();
    assert_eq!(first, 0x81, "a plain client gets a plain frame");
    let plain_text = String::from_utf8(payload).unwrap();
    assert_eq!(stamped_seq(&plain_text), 1);
    let health = server.get("/health").await.json();
    assert_eq!(health["broadcast"]["ticks"], 1, "{health}");

    let (mut zipped, head) = raw_connect(
        server.addr,
        "/ws/market",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    assert!(head.to_ascii_lowercase().contains("permessage-deflate"));
    let (first, payload) = read_frame(&mut zipped).await.unwrap();
    assert_eq!(first, 0xC1, "FIN + RSV1 + text: the same tick, compressed");
    assert_eq!(
        String::from_utf8(inflate(&payload)).unwrap(),
        plain_text,
        "the same message, seq 1"
    );
    let health = server.get("/health").await.json();
    assert_eq!(
        health["broadcast"]["ticks"], 1,
        "no new tick was built for it"
    );
}
