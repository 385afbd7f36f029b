//! The original React frontend's view of marketcast: the test plays its client code as the
//! spec (sections 5.3 and 6) describes it, page by page, then checks the REST fallbacks it polls
//! when the socket is down answer the same data.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A replay of a simulated morning, played as fast as possible, so the state is frozen when
/// the test looks and every route must agree.
fn replay_file(name: &str) -> std::path::PathBuf {
    // One file per test: tests run in parallel and must not read each other's half-written file.
    let dir =
        std::env::temp_dir().join(format!("marketcast-frontend-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("morning.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["simulate", "--events", "20000", "--seed", "11"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&path, out.stdout).unwrap();
    path
}

async fn start_frozen(name: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let path = replay_file(name);
    let mut env = vec![
        ("FEED", "replay"),
        ("REPLAY_FILE", path.to_str().unwrap()),
        ("REPLAY_SPEED", "max"),
        ("WS_BROADCAST_INTERVAL", "0.2"),
    ];
    env.extend_from_slice(extra);
    let server = ServerProcess::start(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = server.health().await;
        if h["feed"]["state"] == "finished" {
            assert_eq!(h["feed"]["malformed"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "replay did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// The hook's URL: `ws:` + `//` + host + `/ws/<channel>`, plus `?token=` + encoded token.
fn hook_url(host: &str, channel: &str, token: Option<&str>) -> String {
    let mut url = format!("ws://{host}/ws/{channel}");
    if let Some(t) = token {
        url.push_str("?token=");
        for b in t.bytes() {
            match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')' => url.push(b as char),
                _ => url.push_str(&format!("%{b:02X}")),
            }
        }
    }
    url
}

/// The hook's `onmessage`: JSON-parse every text frame, ignore `type: "status"` and anything
/// unparsable, replace the data wholesale with anything else. Returns the frames it took.
async fn hook_receive(ws: &mut Ws, frames: usize) -> Vec<Value> {
    let mut data = Vec::new();
    while data.len() < frames {
        let msg = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no error");
        let Message::Text(text) = msg else { continue };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if value["type"] == "status" {
            continue;
        }
        data.push(value);
    }
    data
}

fn without_stamp(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    obj.remove("seq");
    obj.remove("ts");
    v
}

#[tokio::test]
async fn pages_read_what_they_need_and_rest_fallbacks_agree() {
    let server = start_frozen("pages", &[]).await;
    let host = server.addr.to_string();

    // Price board: the VN30 list once, then the market channel.
    let components = server.get("/api/vn30-components").await;
    assert_eq!(components.status, 200);
    let symbols: Vec<String> =
        serde_json::from_value(components.json()["symbols"].clone()).unwrap();
    assert_eq!(symbols.len(), 30);
    let (mut ws, _) = tokio_tungstenite::connect_async(hook_url(&host, "market", None))
        .await
        .unwrap();
    let frames = hook_receive(&mut ws, 3).await;
    for frame in &frames {
        // Every frame is a complete snapshot: it replaces the last one.
        for key in ["quotes", "prices", "indices", "foreign", "derivatives"] {
            assert!(frame.get(key).is_some(), "frame lacks {key}");
        }
    }
    let data = frames.last().unwrap().clone();
    let rows: Vec<&String> = symbols
        .iter()
        .filter(|s| {
            data["prices"][s.as_str()]["last_price"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        })
        .collect();
    assert_eq!(rows.len(), 30, "every VN30 symbol has a row with a price");
    for s in &rows {
        let q = &data["quotes"][s.as_str()];
        assert!(q["total_volume"].as_i64().unwrap() > 0, "{s}");
        let p = &data["prices"][s.as_str()];
        for key in ["change", "change_pct", "ref_price", "ceiling", "floor"] {
            assert!(p[key].is_f64(), "{s}.{key}");
        }
        assert!(p["floor"].as_f64() < p["ceiling"].as_f64());
    }

    // Derivatives page: the snapshot's derivatives and the basis trend.
    let d = &data["derivatives"];
    assert!(d["symbol"].as_str().unwrap().starts_with("VN30F"));
    for key in [
        "last_price",
        "change",
        "change_pct",
        "bid_price",
        "ask_price",
        "basis",
        "basis_pct",
    ] {
        assert!(d[key].is_f64(), "derivatives.{key}");
    }
    assert!(d["volume"].is_i64() && d["is_premium"].is_boolean());
    let trend = server.get("/api/market/basis-trend?minutes=30").await;
    assert_eq!(trend.status, 200);
    let trend = trend.json();
    let points = trend.as_array().unwrap();
    assert!(!points.is_empty());
    for key in [
        "timestamp",
        "futures_symbol",
        "futures_price",
        "spot_value",
        "basis",
        "basis_pct",
        "is_premium",
    ] {
        assert!(points[0].get(key).is_some(), "basis point lacks {key}");
    }
    assert_eq!(points.last().unwrap()["basis"], d["basis"]);
    assert_eq!(server.get("/api/market/basis-trend").await.json(), trend);
    assert_eq!(
        server
            .get("/api/market/basis-trend?minutes=60")
            .await
            .status,
        200
    );
    for bad in ["0", "121", "abc", "-5"] {
        let r = server
            .get(&format!("/api/market/basis-trend?minutes={bad}"))
            .await;
        assert_eq!(r.status, 422, "minutes={bad}");
        assert_eq!(r.json()["detail"][0]["loc"][1], "minutes");
    }

    // Foreign page: the summary and the per-stock rows.
    let detail = server.get("/api/market/foreign-detail").await.json();
    assert_eq!(detail["summary"], data["foreign"]);
    let stocks = detail["stocks"].as_array().unwrap();
    assert_eq!(stocks.len(), 30);
    for key in [
        "symbol",
        "buy_volume",
        "sell_volume",
        "net_volume",
        "buy_value",
        "sell_value",
        "net_value",
        "total_room",
        "current_room",
        "buy_speed_per_min",
        "sell_speed_per_min",
        "buy_acceleration",
        "sell_acceleration",
        "last_updated",
    ] {
        assert!(stocks[0].get(key).is_some(), "foreign stock lacks {key}");
    }

    // Volume analysis: the same stats as `quotes`, in the same order.
    let stats = server.get("/api/market/volume-stats").await.json();
    let stats = stats["stats"].as_array().unwrap();
    let quotes: Vec<&Value> = data["quotes"].as_object().unwrap().values().collect();
    assert_eq!(stats.len(), quotes.len());
    for (a, b) in stats.iter().zip(quotes) {
        assert_eq!(a, b);
    }

    // The socket goes down: the fallback the hook polls answers the same snapshot.
    drop(ws);
    let rest = server.get("/api/market/snapshot").await.json();
    assert_eq!(rest, without_stamp(data));

    // The chart page's history calls answer with arrays (the session's candles are written a
    // second at a time; tests/history.rs checks their content), and a path the original did not
    // have is a 404.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for path in [
        format!("/api/history/FPT/candles?start={today}&end={today}"),
        format!("/api/history/index/VN30/candles?start={today}&end={today}"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = server.get(&path).await;
            if h.status == 200 {
                assert!(h.json().is_array(), "{path}: {}", h.body);
                break;
            }
            // 503 only until the history database is open.
            assert_eq!(h.status, 503, "{path}: {}", h.body);
            assert!(
                Instant::now() < deadline,
                "{path}: the database never opened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(server.get("/api/history/candles/FPT").await.status, 404);
}

/// `CORS_ORIGINS='*'`, as the README documents it: any origin may read the REST routes (the
/// server once panicked at start-up on it).
#[tokio::test]
async fn cors_origins_star_lets_any_origin_read() {
    let server = start_frozen("cors-any", &[("CORS_ORIGINS", "*")]).await;
    for origin in ["http://localhost:5173", "https://anything.example"] {
        let r = http_get(server.addr, "/api/market/snapshot", &[("Origin", origin)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
}

#[tokio::test]
async fn token_in_the_hook_url_and_cors_for_the_dev_server() {
    let server = start_frozen(
        "token",
        &[
            ("WS_AUTH_TOKEN", "a b&c/é"),
            ("CORS_ORIGINS", "http://localhost:5173, http://dash.example"),
        ],
    )
    .await;
    let host = server.addr.to_string();
    assert!(
        tokio_tungstenite::connect_async(hook_url(&host, "market", None))
            .await
            .is_err()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(hook_url(&host, "market", Some("a b&c/é")))
        .await
        .unwrap();
    let frames = hook_receive(&mut ws, 1).await;
    assert!(frames[0]["quotes"].is_object());

    // The REST data takes the same token (WS_AUTH_TOKEN guards the data, #20); the dev server's
    // pages read the answer, and a refusal, across origins.
    let with_token = "/api/market/snapshot?token=a%20b%26c%2F%C3%A9";
    for origin in ["http://localhost:5173", "http://dash.example"] {
        let r = http_get(server.addr, with_token, &[("Origin", origin)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        let r = http_get(server.addr, "/api/market/snapshot", &[("Origin", origin)]).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    }
    let r = http_get(
        server.addr,
        with_token,
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A preflight for the bearer header is answered without a token, and allows the header.
    let r = common::http_request(
        server.addr,
        "OPTIONS",
        "/api/market/snapshot",
        &[
            ("Origin", "http://dash.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-headers")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("authorization")
    );
}

#[tokio::test]
async fn api_schema_is_the_checked_in_schema_and_live_snapshots_validate_against_it() {
    let server = start_frozen("schema", &[]).await;
    let served = server.get("/api/schema").await;
    assert_eq!(served.status, 200);
    let path = format!("{}/docs/snapshot.schema.json", env!("CARGO_MANIFEST_DIR"));
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(served.json(), checked_in);

    // A WebSocket message (with seq and ts) and the REST snapshot (without), both of a session
    // with every part filled, validated by an independent validator.
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    let (text, message) = next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(message["derivatives"].is_object() && message["foreign"]["top_buy"][0].is_object());
    let rest = server.get("/api/market/snapshot").await.body;
    let dir = std::env::temp_dir().join(format!("marketcast-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ws_doc, rest_doc) = (dir.join("message.json"), dir.join("rest.json"));
    std::fs::write(&ws_doc, text).unwrap();
    std::fs::write(&rest_doc, rest).unwrap();
    let out = std::process::Command::new("python3")
        .arg(format!(
            "{}/tests/e2e/validate_schema.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&path)
        .arg(&ws_doc)
        .arg(&rest_doc)
        .output()
        .expect("python3 runs (scripts/test installs jsonschema)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"validated\": 2"));
}
