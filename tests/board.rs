//! The trader's board (`/ws/board`, `GET /api/market/board`) against the real server: its rows
//! equal the last messages the feed sent for each symbol, whichever way they came in (replay,
//! the SSI double, `POST /api/ingest`); its messages carry `BOARD_DEPTH` levels and the REST
//! route answers the same body; the phase follows `CLOCK_FIXED_AT`; the token guards it.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::ssi_double::{DoubleConfig, SsiDouble};
use common::*;
use marketcast::market::watchlist::DEFAULT_VN30;
use serde_json::Value;

const MESSAGES: usize = 6_000;
const AT: &str = "2026-11-26T10:00:00+07:00";
const TOKEN: &str = "board-token";
const DEPTH: usize = 5;

fn without_stamp(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("seq");
        o.remove("ts");
    }
    v
}

/// What the board must show per symbol: the fields of the last message of each kind the feed
/// sent for it, by SSI's names, as (board field, value).
fn expected_rows(lines: &[String]) -> HashMap<String, Vec<(String, f64)>> {
    let mut quotes: HashMap<String, Value> = HashMap::new();
    let mut trades: HashMap<String, Value> = HashMap::new();
    let mut rooms: HashMap<String, Value> = HashMap::new();
    for line in lines {
        let outer: Value = serde_json::from_str(envelope_of(line)).unwrap();
        let inner: Value = serde_json::from_str(outer["Content"].as_str().unwrap()).unwrap();
        let Some(symbol) = inner["Symbol"].as_str().map(str::to_string) else {
            continue;
        };
        match inner["RType"].as_str() {
            Some("X-QUOTE") => quotes.insert(symbol, inner),
            Some("X-TRADE") => trades.insert(symbol, inner),
            Some("R") => rooms.insert(symbol, inner),
            _ => None,
        };
    }
    let mut out: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    let num = |o: &Value, key: &str| o[key].as_f64().unwrap_or_else(|| panic!("{key}: {o}"));
    for (symbol, q) in &quotes {
        let row = out.entry(symbol.clone()).or_default();
        for i in 0..DEPTH {
            let n = i + 1;
            row.push((format!("bids/{i}/price"), num(q, &format!("BidPrice{n}"))));
            row.push((format!("bids/{i}/volume"), num(q, &format!("BidVol{n}"))));
            row.push((format!("asks/{i}/price"), num(q, &format!("AskPrice{n}"))));
            row.push((format!("asks/{i}/volume"), num(q, &format!("AskVol{n}"))));
        }
    }
    for (symbol, t) in &trades {
        let row = out.entry(symbol.clone()).or_default();
        for (field, key) in [
            ("high", "Highest"),
            ("low", "Lowest"),
            ("avg_price", "AvgPrice"),
            ("last_price", "LastPrice"),
            ("last_volume", "LastVol"),
            ("total_volume", "TotalVol"),
            ("total_value", "TotalVal"),
            ("ref_price", "RefPrice"),
            ("ceiling", "Ceiling"),
            ("floor", "Floor"),
            ("change_pct", "RatioChange"),
        ] {
            row.push((field.to_string(), num(t, key)));
        }
    }
    for (symbol, r) in &rooms {
        let row = out.entry(symbol.clone()).or_default();
        for (field, key) in [
            ("foreign_room", "CurrentRoom"),
            ("foreign_total_room", "TotalRoom"),
            ("foreign_buy_volume", "BuyVol"),
            ("foreign_sell_volume", "SellVol"),
        ] {
            row.push((field.to_string(), num(r, key)));
        }
    }
    out
}

/// The differences between `board` and what the feed last sent (empty when they agree).
fn differences(board: &Value, expected: &HashMap<String, Vec<(String, f64)>>) -> Vec<String> {
    let mut out = Vec::new();
    let symbols = &board["symbols"];
    if symbols.as_object().map(|o| o.len()) != Some(expected.len()) {
        out.push(format!(
            "{} rows, the feed sent {} symbols",
            symbols.as_object().map_or(0, |o| o.len()),
            expected.len()
        ));
    }
    for (symbol, fields) in expected {
        for (field, want) in fields {
            let got = symbols[symbol]
                .pointer(&format!("/{field}"))
                .and_then(Value::as_f64);
            if got != Some(*want) {
                out.push(format!("{symbol} {field}: board {got:?}, feed {want}"));
            }
        }
    }
    out
}

/// Polls `GET /api/market/board` until it shows what the feed last sent (a generous deadline:
/// the suite also runs with both cores busy).
async fn board_matches(
    server: &ServerProcess,
    expected: &HashMap<String, Vec<(String, f64)>>,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.get("/api/market/board").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let board = r.json();
        let diff = differences(&board, expected);
        if diff.is_empty() {
            return board;
        }
        assert!(
            Instant::now() < deadline,
            "the board never showed the feed's last messages: {:?}",
            &diff[..diff.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_last_messages_sent_through_replay_ssi_and_ingest() {
    let lines = simulated_day(MESSAGES, 33);
    let expected = expected_rows(&lines);
    assert!(
        expected.len() >= 30,
        "the day mentions the VN30 and the futures"
    );
    let dir = std::env::temp_dir().join(format!("marketcast-board-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("day.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let file_s = file.display().to_string();
    let depth = DEPTH.to_string();

    // 1. Replay: the board, its WebSocket message and its REST body.
    let replay = {
        let server = ServerProcess::start(&[
            ("FEED", "replay"),
            ("REPLAY_FILE", &file_s),
            ("REPLAY_SPEED", "max"),
            ("CLOCK_FIXED_AT", AT),
            ("BOARD_DEPTH", &depth),
            ("WS_BROADCAST_INTERVAL", "0.1"),
        ]);
        server
            .wait_health(|h| h["feed"]["state"] == "finished")
            .await;
        let rest = board_matches(&server, &expected).await;
        assert_eq!(rest["depth"], DEPTH);
        assert_eq!(rest["phase"]["name"], "continuous");
        assert_eq!(rest["phase"]["feed_session"], "LO");
        for (symbol, row) in rest["symbols"].as_object().unwrap() {
            assert_eq!(row["bids"].as_array().unwrap().len(), DEPTH, "{symbol}");
            assert_eq!(row["asks"].as_array().unwrap().len(), DEPTH, "{symbol}");
            assert_eq!(row["session"], "LO", "{symbol}");
        }
        // The channel sends the same body, stamped; the feed has finished, so every message
        // from now on is this one.
        let mut ws = connect(&server.ws_url("/ws/board")).await;
        let (_, message) = next_json(&mut ws, Duration::from_secs(20)).await;
        assert!(message["seq"].as_u64().is_some() && message["ts"].as_i64().is_some());
        assert_eq!(
            without_stamp(&message),
            rest,
            "/ws/board and /api/market/board"
        );
        rest
    };

    // 2. The SSI double.
    let ssi = {
        let envelopes: Vec<String> = lines.iter().map(|l| envelope_of(l).to_string()).collect();
        let double = SsiDouble::start(DoubleConfig {
            messages: envelopes,
            batch: 10,
            vn30: DEFAULT_VN30.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await;
        let (base, stream) = (double.base_url(), double.stream_url());
        let server = ServerProcess::start(&[
            ("FEED", "ssi"),
            ("SSI_CONSUMER_ID", "test-id"),
            ("SSI_CONSUMER_SECRET", "test-secret"),
            ("SSI_BASE_URL", &base),
            ("SSI_STREAM_URL", &stream),
            ("CLOCK_FIXED_AT", AT),
            ("BOARD_DEPTH", &depth),
        ]);
        server
            .wait_health(|h| h["feed"]["messages"] == MESSAGES)
            .await;
        board_matches(&server, &expected).await
    };

    // 3. POST /api/ingest.
    let ingest = {
        let server = ServerProcess::start(&[
            ("FEED", "ingest"),
            ("INGEST_TOKEN", TOKEN),
            ("CLOCK_FIXED_AT", AT),
            ("BOARD_DEPTH", &depth),
        ]);
        for batch in lines.chunks(1000) {
            let r = post_ingest(&server, TOKEN, &batch.join("\n")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json()["rejected"], 0);
        }
        board_matches(&server, &expected).await
    };

    // The three boards agree in every field (the worked-out ones and the order too).
    assert_eq!(ssi, replay, "SSI and replay");
    assert_eq!(ingest, replay, "ingest and replay");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phase_follows_the_exchange_clock_and_the_simulator_labels_its_matches() {
    // (fixed time, phase, since, next, next_at, the simulator's session code)
    let cases = [
        (
            "2026-11-26T09:05:00+07:00",
            "ato",
            "2026-11-26T09:00:00.000000+07:00",
            "continuous",
            "2026-11-26T09:15:00.000000+07:00",
            "ATO",
        ),
        (
            "2026-11-26T11:45:00+07:00",
            "break",
            "2026-11-26T11:30:00.000000+07:00",
            "continuous",
            "2026-11-26T13:00:00.000000+07:00",
            "BREAK",
        ),
        (
            "2026-11-26T14:40:00+07:00",
            "atc",
            "2026-11-26T14:30:00.000000+07:00",
            "put_through",
            "2026-11-26T14:45:00.000000+07:00",
            "ATC",
        ),
        // A Saturday: closed since Friday's close, until Monday's open.
        (
            "2026-11-28T10:00:00+07:00",
            "closed",
            "2026-11-27T15:00:00.000000+07:00",
            "ato",
            "2026-11-30T09:00:00.000000+07:00",
            "C",
        ),
    ];
    let servers: Vec<_> = cases
        .iter()
        .map(|(at, ..)| {
            ServerProcess::start(&[
                ("CLOCK_FIXED_AT", at),
                ("SIM_BACKFILL", "120"),
                ("BOARD_DEPTH", "2"),
                ("WS_BROADCAST_INTERVAL", "0.1"),
            ])
        })
        .collect();
    for (server, (at, name, since, next, next_at, code)) in servers.iter().zip(cases) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let board = loop {
            let board = server.get("/api/market/board").await.json();
            if board["phase"]["feed_session"] == code {
                break board;
            }
            assert!(
                Instant::now() < deadline,
                "at {at}: the simulator's matches never said {code}: {:.300}",
                board.to_string()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let phase = &board["phase"];
        assert_eq!(phase["name"], name, "at {at}: {phase}");
        assert_eq!(phase["since"], since, "at {at}");
        assert_eq!(phase["next"], next, "at {at}");
        assert_eq!(phase["next_at"], next_at, "at {at}");
        // The channel says the same, with BOARD_DEPTH levels a side.
        let mut ws = connect(&server.ws_url("/ws/board")).await;
        let (_, message) = next_json(&mut ws, Duration::from_secs(20)).await;
        assert_eq!(message["phase"]["name"], name, "at {at}");
        let rows = message["symbols"].as_object().unwrap();
        assert!(!rows.is_empty(), "at {at}");
        for (symbol, row) in rows {
            assert_eq!(row["bids"].as_array().unwrap().len(), 2, "{symbol}");
            assert_eq!(row["asks"].as_array().unwrap().len(), 2, "{symbol}");
        }
    }
}

#[tokio::test]
async fn the_board_schema_is_served_and_the_token_guards_the_board() {
    let server = ServerProcess::start(&[("WS_AUTH_TOKEN", TOKEN)]);
    let r = server.get("/api/market/board").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(server.get("/ws/board").await.status, 401);
    let r = server
        .get(&format!("/api/market/board?token={TOKEN}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["depth"], 3, "BOARD_DEPTH's default");
    let r = server
        .get(&format!("/api/schema/board?token={TOKEN}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/docs/board.schema.json"
            ))
            .unwrap()
        )
        .unwrap()
    );
    let mut ws = connect(&server.ws_url(&format!("/ws/board?token={TOKEN}"))).await;
    let (_, message) = next_json(&mut ws, Duration::from_secs(20)).await;
    assert!(message["symbols"].is_object() && message["phase"]["name"].is_string());
}

#[test]
fn board_depth_out_of_range_is_refused_with_its_range() {
    for bad in ["0", "11", "three"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .args(["serve"])
            .env("BOARD_DEPTH", bad)
            .env("APP_PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "BOARD_DEPTH={bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("BOARD_DEPTH"), "BOARD_DEPTH={bad}: {err}");
    }
}
