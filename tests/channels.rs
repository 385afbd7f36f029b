//! The channels besides `/ws/market` (`/ws/foreign`, `/ws/index`), and publishing on change
//! (`WS_PUBLISH_MODE=on_change`, `WS_THROTTLE_INTERVAL_MS`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "channels-token";

fn body_without_stamp(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("seq");
        o.remove("ts");
    }
    v
}

/// The text messages that arrive within `window` (Pings answered by tungstenite, not counted).
async fn messages_within(ws: &mut Ws, window: Duration) -> Vec<serde_json::Value> {
    let until = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return out,
            Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the channel ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_index_channels_carry_their_part_with_their_own_seq() {
    let server = ServerProcess::start(&[("WS_BROADCAST_INTERVAL", "0.1"), ("SIM_RATE", "2000")]);
    let mut foreign = connect(&server.ws_url("/ws/foreign")).await;
    let mut index = connect(&server.ws_url("/ws/index")).await;
    let mut f_seqs = Vec::new();
    let mut i_seqs = Vec::new();
    for _ in 0..4 {
        let (_, f) = next_json(&mut foreign, Duration::from_secs(10)).await;
        for key in [
            "total_buy_value",
            "total_sell_value",
            "total_net_value",
            "total_buy_volume",
            "total_sell_volume",
            "total_net_volume",
            "top_buy",
            "top_sell",
        ] {
            assert!(f.get(key).is_some(), "foreign message lacks {key}: {f}");
        }
        assert!(
            f.get("quotes").is_none(),
            "the foreign channel carries only the summary"
        );
        f_seqs.push(f["seq"].as_u64().unwrap());
        assert!(f["ts"].as_i64().unwrap() > 0);

        let (_, i) = next_json(&mut index, Duration::from_secs(10)).await;
        i_seqs.push(i["seq"].as_u64().unwrap());
        if i.as_object().unwrap().len() == 2 {
            // Before the feed's first index message the map is empty (`{}` with the stamp),
            // as the original sent it.
            continue;
        }
        let vn30 = &i["VN30"];
        assert_eq!(vn30["index_id"], "VN30", "{i:.300}");
        for key in ["value", "advances", "declines", "intraday", "advance_ratio"] {
            assert!(vn30.get(key).is_some(), "index lacks {key}");
        }
        assert!(i.get("VNINDEX").is_some());
    }
    // The simulator sends indices from its first second on.
    let mut seen_index = false;
    for _ in 0..50 {
        let (_, i) = next_json(&mut index, Duration::from_secs(10)).await;
        i_seqs.push(i["seq"].as_u64().unwrap());
        if i.get("VN30").is_some() {
            seen_index = true;
            break;
        }
    }
    assert!(seen_index, "no index data in 50 messages");
    for seqs in [&f_seqs, &i_seqs] {
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    // The market channel had no client: it built nothing, and its seq did not move.
    let h = server.get("/health").await.json();
    assert_eq!(h["channels"]["market"]["seq"], 0, "{h}");
    assert_eq!(h["channels"]["foreign"]["clients"], 1);
    assert_eq!(h["channels"]["index"]["clients"], 1);
    assert_eq!(h["clients"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_channels_follow_the_same_token_and_origin_rules() {
    let server = ServerProcess::start(&[("WS_AUTH_TOKEN", "t0ken")]);
    for path in ["/ws/foreign", "/ws/index"] {
        let r = http_get(
            server.addr,
            path,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
        let r = http_get(
            server.addr,
            &format!("{path}?token=t0ken"),
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Origin", "https://elsewhere.example"),
            ],
        )
        .await;
        assert_eq!(r.status, 403, "{path}");
        let mut ws = connect(&server.ws_url(&format!("{path}?token=t0ken"))).await;
        next_json(&mut ws, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_change_sends_nothing_without_a_change_and_one_message_per_throttle_in_a_burst() {
    let throttle = Duration::from_millis(300);
    let server = ServerProcess::start(&[
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("WS_PUBLISH_MODE", "on_change"),
        ("WS_THROTTLE_INTERVAL_MS", "300"),
        // Heartbeats keep coming; they are not data.
        ("WS_HEARTBEAT_INTERVAL", "0.2"),
        ("WS_HEARTBEAT_TIMEOUT", "5"),
    ]);
    let lines = simulated_day(1000, 11);
    post_ingest(&server, TOKEN, &lines[..100].join("\n")).await;

    // A client gets the current state at once, then nothing while nothing changes.
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (_, first) = next_json(&mut ws, Duration::from_secs(10)).await;
    let quiet = messages_within(&mut ws, throttle * 5).await;
    assert!(quiet.is_empty(), "no change, yet {} messages", quiet.len());

    // A burst: nine batches 100 ms apart.
    let started = Instant::now();
    for chunk in lines[100..].chunks(100) {
        let r = post_ingest(&server, TOKEN, &chunk.join("\n")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let burst = started.elapsed();
    // The trailing message comes within one throttle interval of the last change; three more
    // intervals of silence follow.
    let got = messages_within(&mut ws, throttle * 4).await;
    let bound = (burst.as_millis() / throttle.as_millis()) as usize + 2;
    assert!(
        got.len() >= 2,
        "a burst of changes gave {} messages",
        got.len()
    );
    assert!(
        got.len() <= bound,
        "{} messages in {burst:?} at one per {throttle:?}",
        got.len()
    );
    let seqs: Vec<u64> = std::iter::once(&first)
        .chain(&got)
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // The last message is the final state of the burst.
    let snapshot = server.get("/api/market/snapshot").await.json();
    assert_eq!(body_without_stamp(got.last().unwrap()), snapshot);
    let after = messages_within(&mut ws, throttle * 3).await;
    assert!(after.is_empty(), "{} messages after the burst", after.len());

    // A client connecting now gets that same state at once, with the same seq.
    let mut late = connect(&server.ws_url("/ws/market")).await;
    let (_, v) = next_json(&mut late, Duration::from_secs(10)).await;
    assert_eq!(v["seq"], got.last().unwrap()["seq"]);
}
