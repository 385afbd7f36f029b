//! Shared by the history tests (SQLite and PostgreSQL): a simulated morning, its import, the
//! candles computed from its raw messages, and a PostgreSQL database of a test's own.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ServerProcess;

/// The morning's date (UTC and exchange time agree on it).
pub const DAY: &str = "2026-11-26";

/// 20,000 simulator messages at 15 a second: 22 minutes of a morning, in the replay format.
pub fn simulated_morning() -> Vec<String> {
    super::simulate(&["--events", "20000", "--seed", "7", "--rate", "15"])
}

/// Runs `marketcast import --replay file` into `DATABASE_URL` (empty: SQLite in `data_dir`);
/// panics with its message when it fails.
pub fn import(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    database_url: &str,
) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["import", "--replay", file.to_str().unwrap()])
        .env("DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A morning imported with `marketcast import` into `DATA_DIR` (SQLite) or `DATABASE_URL`.
pub struct Imported {
    pub dir: std::path::PathBuf,
    pub lines: Vec<String>,
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Imported {
    /// Imports the morning; `database_url` empty: the SQLite file in `dir/data`.
    pub fn new(tag: &str, database_url: &str) -> Imported {
        let dir =
            std::env::temp_dir().join(format!("marketcast-history-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lines = simulated_morning();
        let file = dir.join("day.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = import(&file, &dir.join("data"), database_url);
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["malformed"], 0);
        assert!(
            summary["tables"]["candles_1m"].as_i64().unwrap() > 30,
            "{summary}"
        );
        Imported { dir, lines }
    }

    /// A server on that history (once it is connected), with a feed that adds nothing.
    pub async fn server(&self, database_url: &str) -> ServerProcess {
        self.server_with(database_url, &[]).await
    }

    /// The same, with more settings.
    pub async fn server_with(&self, database_url: &str, extra: &[(&str, &str)]) -> ServerProcess {
        let data = self.dir.join("data");
        let mut env = vec![
            ("FEED", "ingest"),
            ("INGEST_TOKEN", "t"),
            ("DATA_DIR", data.to_str().unwrap()),
            ("DATABASE_URL", database_url),
        ];
        env.extend_from_slice(extra);
        let server = ServerProcess::start(&env);
        server.wait_health(|h| h["database"] == "connected").await;
        server
    }
}

/// One candle's prices and volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Ohlcv {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// 1-minute candles of `symbol` from the replay lines themselves: each trade message whose
/// cumulative volume did not go down, bucketed by its receive time's UTC minute.
pub fn candles_from_messages(lines: &[String], symbol: &str) -> BTreeMap<String, Ohlcv> {
    let mut out: BTreeMap<String, Ohlcv> = BTreeMap::new();
    let mut total = 0i64;
    for line in lines {
        let (at, msg) = line.split_once('\t').unwrap();
        let envelope: Value = serde_json::from_str(msg).unwrap();
        if envelope["DataType"] != "X-TRADE" {
            continue;
        }
        let c: Value = serde_json::from_str(envelope["Content"].as_str().unwrap()).unwrap();
        if c["Symbol"] != symbol {
            continue;
        }
        let tv = c["TotalVol"].as_f64().unwrap() as i64;
        if tv < total {
            continue;
        }
        total = tv;
        let price = c["LastPrice"].as_f64().unwrap();
        let vol = c["LastVol"].as_f64().unwrap() as i64;
        let t = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&chrono::Utc);
        let minute = t.format("%Y-%m-%dT%H:%M:00+00:00").to_string();
        let e = out.entry(minute).or_insert(Ohlcv {
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0,
        });
        e.high = e.high.max(price);
        e.low = e.low.min(price);
        e.close = price;
        e.volume += vol;
    }
    out
}

/// The `/api/history/{symbol}/candles` rows of the morning, by minute.
pub async fn served_candles(server: &ServerProcess, symbol: &str) -> BTreeMap<String, Ohlcv> {
    let r = server
        .get(&format!(
            "/api/history/{symbol}/candles?start={DAY}&end={DAY}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(candle_row)
        .collect()
}

/// A candle row of the history API: its minute and its numbers.
fn candle_row(c: &Value) -> (String, Ohlcv) {
    (
        c["timestamp"].as_str().unwrap().to_string(),
        Ohlcv {
            open: c["open"].as_f64().unwrap(),
            high: c["high"].as_f64().unwrap(),
            low: c["low"].as_f64().unwrap(),
            close: c["close"].as_f64().unwrap(),
            volume: c["volume"].as_i64().unwrap(),
        },
    )
}

/// The test PostgreSQL server's URL (`scripts/test` starts one and sets it).
pub fn postgres_admin_url() -> String {
    std::env::var("MARKETCAST_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "the PostgreSQL history tests need a server: run scripts/test (it installs \
             PostgreSQL from the distribution's packages and starts one on a loopback port), or \
             set MARKETCAST_TEST_DATABASE_URL to a postgres:// URL of a role that may create \
             databases"
        )
    })
}

/// A fresh, empty database of the test's own on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_database(tag: &str) -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("marketcast_{}_{tag}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.into()
}

/// The served candles of three symbols equal those summed from the messages, and their first
/// minute's ticks add up to it, by side too.
pub async fn check_candles(day: &Imported, server: &ServerProcess) {
    for symbol in ["FPT", "VCB", "HPG"] {
        let expected = candles_from_messages(&day.lines, symbol);
        assert!(expected.len() > 5, "{symbol}: the morning has minutes");
        let r = server
            .get(&format!(
                "/api/history/{}/candles?start={DAY}&end={DAY}",
                symbol.to_lowercase()
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rows = r.json();
        let got: BTreeMap<String, Ohlcv> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["symbol"], symbol);
                let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
                assert_eq!(
                    keys,
                    [
                        "symbol",
                        "timestamp",
                        "open",
                        "high",
                        "low",
                        "close",
                        "volume",
                        "active_buy_vol",
                        "active_sell_vol"
                    ]
                );
                let buy = c["active_buy_vol"].as_i64().unwrap();
                let sell = c["active_sell_vol"].as_i64().unwrap();
                assert!(buy + sell <= c["volume"].as_i64().unwrap());
                candle_row(c)
            })
            .collect();
        assert_eq!(got, expected, "{symbol}");
        // The ticks of the first minute add up to its candle, by side too.
        let first = &rows[0];
        let ticks = server
            .get(&format!(
                "/api/history/{symbol}/ticks?start={DAY}&end={DAY}&limit=50000"
            ))
            .await
            .json();
        let in_minute: Vec<&Value> = ticks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["timestamp"].as_str().unwrap()[..16] == first["timestamp"].as_str().unwrap()[..16]
            })
            .collect();
        let sum = |side: Option<&str>| -> i64 {
            in_minute
                .iter()
                .filter(|t| side.is_none_or(|s| t["side"] == s))
                .map(|t| t["volume"].as_i64().unwrap())
                .sum()
        };
        assert_eq!(sum(None), first["volume"].as_i64().unwrap());
        assert_eq!(
            sum(Some("mua_chu_dong")),
            first["active_buy_vol"].as_i64().unwrap()
        );
        assert_eq!(
            sum(Some("ban_chu_dong")),
            first["active_sell_vol"].as_i64().unwrap()
        );
    }
}

/// Every route's shape, order, bounds and 422s, on the imported morning.
pub async fn check_routes(day: &Imported, server: &ServerProcess, engine: &str) {
    let get = |path: String| async move { server.get(&path).await };
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };

    let index = get(format!("/api/history/index/VN30?start={DAY}&end={DAY}"))
        .await
        .json();
    assert_eq!(
        keys(&index[0]),
        ["index_name", "timestamp", "value", "change_pct", "volume"]
    );
    let ic = get(format!(
        "/api/history/index/vn30/candles?start={DAY}&end={DAY}"
    ))
    .await
    .json();
    assert_eq!(
        keys(&ic[0]),
        [
            "index_name",
            "timestamp",
            "open",
            "high",
            "low",
            "close",
            "volume"
        ]
    );
    assert!(ic.as_array().unwrap().len() > 5);
    let f = get(format!("/api/history/VCB/foreign?start={DAY}&end={DAY}"))
        .await
        .json();
    assert_eq!(
        keys(&f[0]),
        [
            "symbol",
            "timestamp",
            "buy_vol",
            "sell_vol",
            "net_vol",
            "buy_value",
            "sell_value"
        ]
    );
    let ticks = get(format!(
        "/api/history/FPT/ticks?start={DAY}&end={DAY}&limit=3"
    ))
    .await
    .json();
    assert_eq!(ticks.as_array().unwrap().len(), 3);
    assert_eq!(
        keys(&ticks[0]),
        [
            "symbol",
            "timestamp",
            "price",
            "volume",
            "side",
            "bid",
            "ask"
        ]
    );
    let times: Vec<&str> = ticks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "ascending: {times:?}"
    );
    assert!(times[0].ends_with("+00:00"));
    // The derivatives page reads the day's rows of the active contract; open interest is 0.
    let snapshot_contract = {
        let lines = &day.lines;
        lines
            .iter()
            .find_map(|l| {
                let v: Value = serde_json::from_str(l.split_once('\t').unwrap().1).ok()?;
                let c: Value = serde_json::from_str(v["Content"].as_str()?).ok()?;
                let s = c["Symbol"].as_str()?;
                s.starts_with("VN30F").then(|| s.to_string())
            })
            .unwrap()
    };
    let d = get(format!(
        "/api/history/derivatives/{snapshot_contract}?start={DAY}&end={DAY}"
    ))
    .await
    .json();
    assert_eq!(
        keys(&d[0]),
        ["contract", "timestamp", "price", "basis", "open_interest"]
    );
    assert_eq!(d[0]["open_interest"], 0);
    // The chart page opens on a contract that expired in 2025: an empty list, not an error.
    let old = get(format!(
        "/api/history/VN30F2503/candles?start={DAY}&end={DAY}"
    ))
    .await;
    assert_eq!((old.status, old.body.trim()), (200, "[]"));
    // Another day, and an end before the start: nothing.
    let none = get("/api/history/FPT/candles?start=2026-11-27&end=2026-11-27".into())
        .await
        .json();
    assert_eq!(none, Value::Array(vec![]));
    let none = get(format!(
        "/api/history/FPT/candles?start={DAY}&end=2026-11-25"
    ))
    .await
    .json();
    assert_eq!(none, Value::Array(vec![]));
    // Foreign daily: rows only inside the last `days` days (the imported day is in the past).
    let daily = get("/api/history/VCB/foreign/daily?days=365".into()).await;
    assert_eq!(daily.status, 200);

    for (path, kind) in [
        (
            "/api/history/FPT/candles?end=2026-11-26".to_string(),
            "missing",
        ),
        (
            "/api/history/FPT/candles?start=26/11/2026&end=2026-11-26".to_string(),
            "date_from_datetime_parsing",
        ),
        (
            "/api/history/FPT/candles?start=2026-11-26T10:00:00&end=2026-11-26".to_string(),
            "date_from_datetime_inexact",
        ),
        // A year chrono reads and Python does not: once a panic that dropped the connection.
        (
            "/api/history/FPT/candles?start=2020-01-01&end=%2B262142-12-31".to_string(),
            "date_from_datetime_parsing",
        ),
        (
            format!("/api/history/FPT/ticks?start=10000-01-01&end={DAY}"),
            "date_from_datetime_parsing",
        ),
        (
            format!("/api/history/FPT/ticks?start={DAY}&end={DAY}&limit=50001"),
            "less_than_equal",
        ),
        (
            format!("/api/history/FPT/ticks?start={DAY}&end={DAY}&limit=many"),
            "int_parsing",
        ),
        (
            "/api/history/FPT/foreign/daily?days=366".to_string(),
            "less_than_equal",
        ),
        // More than HISTORY_MAX_RANGE_DAYS (31 by default), on every dated route.
        (
            "/api/history/FPT/candles?start=2026-01-01&end=2026-02-01".to_string(),
            "value_error",
        ),
        (
            "/api/history/FPT/ticks?start=2026-01-01&end=2026-12-31".to_string(),
            "value_error",
        ),
        (
            "/api/history/VCB/foreign?start=0001-01-01&end=9999-12-31".to_string(),
            "value_error",
        ),
        (
            "/api/history/index/VN30?start=2026-01-01&end=2026-02-01".to_string(),
            "value_error",
        ),
        (
            "/api/history/index/VN30/candles?start=2026-01-01&end=2026-02-01".to_string(),
            "value_error",
        ),
        (
            "/api/history/derivatives/VN30F2612?start=2026-01-01&end=2026-02-01".to_string(),
            "value_error",
        ),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert_eq!(r.json()["detail"][0]["type"], kind, "{path}");
        if kind == "value_error" {
            let e = &r.json()["detail"][0];
            assert_eq!(e["loc"], serde_json::json!(["query", "end"]), "{path}");
            let msg = e["msg"].as_str().unwrap();
            assert!(msg.contains("HISTORY_MAX_RANGE_DAYS (31)"), "{path}: {msg}");
        }
    }
    // 31 days, both ends included, is within the bound.
    let month = get("/api/history/FPT/candles?start=2026-11-01&end=2026-12-01".into()).await;
    assert_eq!(month.status, 200, "{}", month.body);
    assert!(!month.json().as_array().unwrap().is_empty());
    let h = server.get("/health").await.json();
    assert_eq!(h["database"], "connected", "{h}");
    assert_eq!(h["history"]["engine"], engine);
}

/// With `HISTORY_MAX_ROWS=5`, every route answers the earliest 5 rows of its range (the ticks
/// route too, whatever its `limit`), and the 422 for a long range follows
/// `HISTORY_MAX_RANGE_DAYS`.
pub async fn check_row_limit(day: &Imported, database_url: &str) {
    let server = day
        .server_with(
            database_url,
            &[("HISTORY_MAX_ROWS", "5"), ("HISTORY_MAX_RANGE_DAYS", "2")],
        )
        .await;
    let contract = day
        .lines
        .iter()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l.split_once('\t').unwrap().1).ok()?;
            let c: Value = serde_json::from_str(v["Content"].as_str()?).ok()?;
            let s = c["Symbol"].as_str()?;
            s.starts_with("VN30F").then(|| s.to_string())
        })
        .unwrap();
    let window = format!("start={DAY}&end={DAY}");
    for path in [
        format!("/api/history/FPT/candles?{window}"),
        format!("/api/history/FPT/ticks?{window}&limit=50000"),
        format!("/api/history/VCB/foreign?{window}"),
        format!("/api/history/index/VN30?{window}"),
        format!("/api/history/index/VN30/candles?{window}"),
        format!("/api/history/derivatives/{contract}?{window}"),
    ] {
        let r = server.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let rows = r.json();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 5, "{path}");
        let times: Vec<&str> = rows
            .iter()
            .map(|t| t["timestamp"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{path}: {times:?}");
    }
    // The earliest of the range: the first candle is the morning's first minute.
    let first = candles_from_messages(&day.lines, "FPT")
        .into_keys()
        .next()
        .unwrap();
    let candles = server
        .get(&format!("/api/history/FPT/candles?{window}"))
        .await
        .json();
    assert_eq!(candles[0]["timestamp"], first.as_str());
    // Three days are more than HISTORY_MAX_RANGE_DAYS=2; two are not.
    let r = server
        .get("/api/history/FPT/candles?start=2026-11-25&end=2026-11-27")
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let msg = r.json()["detail"][0]["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("HISTORY_MAX_RANGE_DAYS (2)"), "{msg}");
    let r = server
        .get("/api/history/FPT/candles?start=2026-11-25&end=2026-11-26")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The imported morning is days old; with one day of retention every raw series (ticks,
/// foreign flow, index snapshots, basis points) is deleted at start-up, and the candles (of
/// symbols and of the index) stay.
pub async fn check_retention(day: &Imported, database_url: &str) {
    let server = day
        .server_with(database_url, &[("HISTORY_RETENTION_DAYS", "1")])
        .await;
    let window = format!("start={DAY}&end={DAY}");
    let contract = day
        .lines
        .iter()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l.split_once('\t').unwrap().1).ok()?;
            let c: Value = serde_json::from_str(v["Content"].as_str()?).ok()?;
            let s = c["Symbol"].as_str()?;
            s.starts_with("VN30F").then(|| s.to_string())
        })
        .unwrap();
    let raw = [
        format!("/api/history/FPT/ticks?{window}"),
        format!("/api/history/VCB/foreign?{window}"),
        format!("/api/history/index/VN30?{window}"),
        format!("/api/history/derivatives/{contract}?{window}"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for path in &raw {
        loop {
            let r = server.get(path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            if r.json().as_array().is_some_and(|t| t.is_empty()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: old rows were kept"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        served_candles(&server, "FPT").await,
        candles_from_messages(&day.lines, "FPT")
    );
    let ic = server
        .get(&format!("/api/history/index/VN30/candles?{window}"))
        .await
        .json();
    assert!(
        ic.as_array().unwrap().len() > 5,
        "index candles are kept: {ic}"
    );
}
