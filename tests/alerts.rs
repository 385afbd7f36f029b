//! Signals end to end: a replay made to contain one of each alert yields exactly those four, in
//! order, on `/ws/alerts` (pushed as they fire, and as one array to a page that connects later),
//! in `GET /api/market/alerts` with its filters and 422s, and from `marketcast snapshot
//! --replay FILE --alerts`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn envelope(data_type: &str, content: Value) -> String {
    json!({ "DataType": data_type, "Content": content.to_string() }).to_string()
}

fn line(time: &str, data_type: &str, content: Value) -> String {
    format!("2026-11-26T{time}+07:00\t{}", envelope(data_type, content))
}

fn trade(
    time: &str,
    symbol: &str,
    price: f64,
    vol: i64,
    total: i64,
    band: (f64, f64, f64),
) -> String {
    line(
        time,
        "X-TRADE",
        json!({
            "RType": "X-TRADE", "TradingDate": "26/11/2026", "Time": time, "Symbol": symbol,
            "Ceiling": band.0, "Floor": band.1, "RefPrice": band.2,
            "LastPrice": price, "LastVol": vol as f64, "TotalVol": total as f64,
            "TradingSession": "LO", "Change": price - band.2, "RatioChange": 0.0,
        }),
    )
}

fn index(time: &str, value: f64) -> String {
    line(
        time,
        "MI",
        json!({
            "RType": "MI", "IndexId": "VN30", "IndexValue": value, "PriorIndexValue": 1338.12,
            "TradingDate": "26/11/2026", "Time": time, "TotalQtty": 1000.0, "Advances": 15,
            "NoChanges": 5, "Declines": 10, "Change": value - 1338.12, "RatioChange": 0.3,
            "TradingSession": "LO",
        }),
    )
}

fn foreign(time: &str, symbol: &str, buy_val: f64, sell_val: f64) -> String {
    line(
        time,
        "R",
        json!({
            "RType": "R", "TradingDate": "26/11/2026", "Time": time, "Symbol": symbol,
            "TotalRoom": 1e9, "CurrentRoom": 5e8, "BuyVol": buy_val / 1e5, "SellVol": sell_val / 1e5,
            "BuyVal": buy_val, "SellVal": sell_val,
        }),
    )
}

/// One volume spike (FPT), one breakout (VNM at its ceiling), one foreign acceleration (VCB)
/// and one basis flip (VN30F2612), in that order, and nothing else that could fire.
fn four_alerts_day() -> Vec<String> {
    let fpt = (127_200.0, 110_600.0, 118_900.0);
    let mut lines = vec![index("09:15:00", 1342.67)];
    for i in 0..10 {
        lines.push(trade(
            &format!("09:20:{i:02}"),
            "FPT",
            119_000.0,
            1000,
            1000 * (i + 1),
            fpt,
        ));
    }
    lines.push(trade("09:20:10", "FPT", 119_100.0, 5000, 15_000, fpt));
    lines.push(trade(
        "09:21:00",
        "VNM",
        68_400.0,
        200,
        200,
        (68_400.0, 59_600.0, 64_000.0),
    ));
    // Fifteen minutes apart: one to two foreign windows both offline with a ten-minute window
    // (on the recorded clock) and in the server's replay at 100x with a six-second one.
    lines.push(foreign("09:22:00", "VCB", 20e9, 10e9));
    lines.push(foreign("09:37:00", "VCB", 30e9, 10e9));
    let futures = (1436.0, 1248.0, 1342.0);
    lines.push(trade("09:38:00", "VN30F2612", 1345.0, 10, 10, futures));
    lines.push(trade("09:39:00", "VN30F2612", 1340.0, 10, 20, futures));
    lines
}

const ORDER: [&str; 4] = [
    "volume_spike",
    "price_breakout",
    "foreign_acceleration",
    "basis_divergence",
];

fn replay_file(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("marketcast-alerts-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("day.jsonl");
    std::fs::write(&path, four_alerts_day().join("\n") + "\n").unwrap();
    path
}

/// Takes alerts from a `/ws/alerts` message: an array (what a page gets when it connects) or a
/// single alert; status messages are not alerts.
fn alerts_in(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text).unwrap() {
        Value::Array(list) => list,
        v if v.get("type").is_some() => vec![],
        v => vec![v],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_one_of_each_alert_yields_those_four_everywhere() {
    let path = replay_file("ws");
    // The server's replay re-times events to the present at the replay's speed, so at 100x
    // the recorded fifteen minutes between the two foreign updates are nine seconds: the
    // foreign window is set to six (the rule wants the earlier value one to two windows old).
    let server = ServerProcess::start(&[
        ("FEED", "replay"),
        ("REPLAY_FILE", path.to_str().unwrap()),
        ("REPLAY_SPEED", "100"),
        ("ALERT_FOREIGN_WINDOW_MINUTES", "0.1"),
    ]);
    let (mut live, _) = tokio_tungstenite::connect_async(server.ws_url("/ws/alerts"))
        .await
        .unwrap();
    // The page's hook: take arrays and single alerts, drop ids already seen.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 4 {
        assert!(Instant::now() < deadline, "got {seen:#?}");
        let msg = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .expect("an alert in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            for a in alerts_in(&text) {
                if !seen.iter().any(|s| s["id"] == a["id"]) {
                    seen.push(a);
                }
            }
        }
    }
    seen.sort_by_key(|a| a["timestamp"].as_str().unwrap().to_string());
    let kinds: Vec<&str> = seen
        .iter()
        .map(|a| a["alert_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ORDER);
    assert_eq!(seen[0]["symbol"], "FPT");
    assert_eq!(seen[0]["message"], "FPT vol spike: 5,000 (5.0x avg)");
    assert_eq!(seen[1]["message"], "VNM hit ceiling 68,400");
    assert_eq!(seen[1]["severity"], "critical");
    assert_eq!(seen[2]["message"], "VCB foreign buying accel 100% in 6s");
    assert_eq!(seen[3]["symbol"], "VN30F2612");
    assert!(seen[3]["message"]
        .as_str()
        .unwrap()
        .starts_with("Basis flipped premium→discount: -"));
    assert!(seen[0]["timestamp"].as_str().unwrap().ends_with("+07:00"));
    let h = server
        .wait_health(|h| h["feed"]["state"] == "finished")
        .await;
    assert_eq!(h["feed"]["malformed"], 0, "{h}");

    // A page that opens now gets the four at once, newest first, in one array.
    let (mut late, _) = tokio_tungstenite::connect_async(server.ws_url("/ws/alerts"))
        .await
        .unwrap();
    let first = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), late.next())
            .await
            .expect("the recent alerts at once")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    let kinds: Vec<&str> = first
        .as_array()
        .expect("an array")
        .iter()
        .map(|a| a["alert_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ORDER.iter().rev().copied().collect::<Vec<_>>());

    // REST: newest first, filters, limit, and the original's 422s.
    let all = server.get("/api/market/alerts").await;
    assert_eq!(all.status, 200);
    let all = all.json();
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ORDER.iter().rev().copied().collect::<Vec<_>>());
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut sorted_seen: Vec<String> = seen
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    sorted_seen.reverse();
    assert_eq!(
        ids(&all),
        sorted_seen,
        "REST and WebSocket carry the same alerts"
    );
    let one = server
        .get("/api/market/alerts?type=volume_spike")
        .await
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["symbol"], "FPT");
    let critical = server
        .get("/api/market/alerts?severity=critical")
        .await
        .json();
    assert_eq!(critical.as_array().unwrap().len(), 1);
    assert_eq!(critical[0]["alert_type"], "price_breakout");
    let none = server.get("/api/market/alerts?severity=info").await.json();
    assert_eq!(none, json!([]));
    let two = server.get("/api/market/alerts?limit=2").await.json();
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0]["alert_type"], "basis_divergence");
    for (query, kind) in [
        ("limit=0", "greater_than_equal"),
        ("limit=201", "less_than_equal"),
        ("limit=ten", "int_parsing"),
        ("type=VOLUME_SPIKE", "enum"),
        ("severity=loud", "enum"),
    ] {
        let r = server.get(&format!("/api/market/alerts?{query}")).await;
        assert_eq!(r.status, 422, "{query}");
        assert_eq!(r.json()["detail"][0]["type"], kind, "{query}: {}", r.body);
    }
}

#[test]
fn snapshot_alerts_prints_the_days_alerts_offline_and_the_same_every_time() {
    let path = replay_file("offline");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .args(["snapshot", "--replay", path.to_str().unwrap(), "--alerts"])
            .env("ALERT_FOREIGN_WINDOW_MINUTES", "10")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let alerts: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ORDER);
    assert_eq!(
        alerts[2]["message"],
        "VCB foreign buying accel 100% in 10min"
    );
    // Event time, not the wall clock: the same day gives the same alerts, ids included.
    assert_eq!(run(), first);
    assert_eq!(alerts[0]["timestamp"], "2026-11-26T09:20:10.000000+07:00");

    // Thresholds are tunable: a desk that wants only bigger spikes gets no volume alert.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["snapshot", "--replay", path.to_str().unwrap(), "--alerts"])
        .env("ALERT_FOREIGN_WINDOW_MINUTES", "10")
        .env("ALERT_VOLUME_SPIKE_RATIO", "6")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains("volume_spike"));
}
