//! A misbehaving feed: corrupt, truncated and out-of-order messages, numbers of the wrong type
//! and unknown symbols are skipped and counted by reason while the feed goes on; a feed that
//! goes quiet is marked stale (and fresh again) and clients are told, while snapshots flow.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "faults-token";

fn trade(symbol: &str, price: &str, last_vol: u64, total_vol: u64) -> String {
    let content = format!(
        r#"{{"RType":"X-TRADE","Symbol":"{symbol}","LastPrice":{price},"LastVol":{last_vol},"TotalVol":{total_vol},"RefPrice":119000,"Ceiling":127300,"Floor":110700,"TradingSession":"LO"}}"#
    );
    serde_json::json!({"DataType": "X-TRADE", "Content": content}).to_string()
}

async fn post(server: &ServerProcess, body: &str) -> serde_json::Value {
    let r = post_ingest(server, TOKEN, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn bad_messages_are_skipped_and_counted_by_reason_and_the_feed_goes_on() {
    let server = ServerProcess::start(&[("FEED", "ingest"), ("INGEST_TOKEN", TOKEN)]);
    let good1 = trade("FPT", "119100", 100, 1000);
    let good2 = trade("FPT", "119200", 200, 1200);
    let late = trade("FPT", "119100", 100, 1000); // from before good2
    let wrong_type = trade("FPT", "\"a lot\"", 100, 1300);
    let unknown = trade("NOTVN30", "10000", 100, 100);
    let truncated = &good1[..good1.len() / 2];
    let body = [
        good1.as_str(),
        "{corrupt",
        truncated,
        good2.as_str(),
        late.as_str(),
        wrong_type.as_str(),
        unknown.as_str(),
        "[1,2,3]",
    ]
    .join("\n");
    let r = post(&server, &body).await;
    assert_eq!(r["rejected"], 4, "{r}");
    // The feed goes on: a later good message is applied.
    post(&server, &trade("FPT", "119300", 300, 1500)).await;
    let h = server.get("/health").await.json();
    let reasons = &h["feed"]["malformed_by_reason"];
    assert_eq!(reasons["not_json"], 2, "{h}");
    assert_eq!(reasons["invalid_field"], 1, "{h}");
    assert_eq!(reasons["not_an_object"], 1, "{h}");
    assert_eq!(h["processor"]["out_of_order"], 1, "{h}");
    assert_eq!(h["processor"]["filtered"], 1, "{h}");
    let snap = server.get("/api/market/snapshot").await.json();
    assert_eq!(
        snap["quotes"]["FPT"]["total_volume"], 600,
        "100 + 200 + 300: the late copy was not counted again"
    );
    let m = server.get("/metrics").await.body;
    assert!(m.contains("reason=\"not_json\"} 2"), "{m}");
    assert!(
        m.contains("marketcast_processor_out_of_order_total 1"),
        "{m}"
    );
}

async fn next_status(ws: &mut Ws) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no status message");
        let (_, v) = next_json(ws, Duration::from_secs(10)).await;
        if v["type"] == "status" {
            return v;
        }
    }
}

#[tokio::test]
async fn a_quiet_feed_is_marked_stale_and_fresh_again_and_snapshots_keep_flowing() {
    let server = ServerProcess::start(&[
        ("FEED", "ingest"),
        ("INGEST_TOKEN", TOKEN),
        ("FEED_STALE_AFTER", "0.5"),
        ("WS_BROADCAST_INTERVAL", "0.1"),
    ]);
    // Nothing has come since start: stale.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/health").await.json()["feed"]["stale"] != true {
        assert!(Instant::now() < deadline, "never marked stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (_, first) = next_json(&mut ws, Duration::from_secs(5)).await;
    post(&server, &trade("FPT", "119100", 100, 1000)).await;
    let fresh = next_status(&mut ws).await;
    assert_eq!(fresh["stale"], false, "{fresh}");
    assert_eq!(fresh["feed"], "ingest");
    let stale = next_status(&mut ws).await;
    assert_eq!(stale["stale"], true, "{stale}");
    assert!(stale["quiet_ms"].as_u64().unwrap() >= 500);
    // Snapshots went on all along.
    let (_, later) = next_json(&mut ws, Duration::from_secs(5)).await;
    assert!(later["seq"].as_u64().unwrap() > first["seq"].as_u64().unwrap() + 3);
    let m = server.get("/metrics").await.body;
    assert!(
        m.contains("marketcast_feed_stale{feed=\"ingest\"} 1"),
        "{m}"
    );
}
