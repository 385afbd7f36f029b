//! `simulate` then `snapshot --replay`: the final snapshot agrees with an independent sum over
//! the file, computed here from the raw JSON without marketcast's parser or processor.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

fn marketcast(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run marketcast")
}

#[derive(Default, Debug)]
struct Expected {
    volume: HashMap<String, i64>,
    last_price: HashMap<String, f64>,
    foreign_buy: HashMap<String, i64>,
    foreign_sell: HashMap<String, i64>,
    futures_volume: HashMap<String, i64>,
    last_index: HashMap<String, f64>,
    messages: usize,
}

fn independent_sum(file: &str) -> Expected {
    let mut e = Expected::default();
    for line in file.lines() {
        let (_, message) = line.split_once('\t').expect("recorded time, tab, message");
        let envelope: Value = serde_json::from_str(message).unwrap();
        let content: Value =
            serde_json::from_str(envelope["Content"].as_str().expect("Content is a string"))
                .unwrap();
        e.messages += 1;
        let symbol = content["Symbol"].as_str().unwrap_or_default().to_string();
        match content["RType"].as_str().unwrap() {
            "X-TRADE" => {
                let vol = content["LastVol"].as_f64().unwrap() as i64;
                if symbol.starts_with("VN30F") {
                    *e.futures_volume.entry(symbol).or_default() += vol;
                } else {
                    *e.volume.entry(symbol.clone()).or_default() += vol;
                    e.last_price
                        .insert(symbol, content["LastPrice"].as_f64().unwrap());
                }
            }
            "R" => {
                e.foreign_buy
                    .insert(symbol.clone(), content["BuyVol"].as_f64().unwrap() as i64);
                e.foreign_sell
                    .insert(symbol, content["SellVol"].as_f64().unwrap() as i64);
            }
            "MI" => {
                let id = content["IndexId"].as_str().unwrap().to_string();
                e.last_index
                    .insert(id, content["IndexValue"].as_f64().unwrap());
            }
            _ => {}
        }
    }
    e
}

#[test]
fn simulate_then_replay_agrees_with_an_independent_sum() {
    let dir = std::env::temp_dir().join(format!("marketcast-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("day.jsonl");
    let out = marketcast(&[
        "simulate",
        "--events",
        "100000",
        "--seed",
        "7",
        "--start",
        "2026-11-26T09:15:00+07:00",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&path, &out.stdout).unwrap();
    let file = String::from_utf8(out.stdout).unwrap();
    assert_eq!(file.lines().count(), 100_000);

    let out = marketcast(&["snapshot", "--replay", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON on stdout");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("100000 messages"), "{report}");
    assert!(report.contains("0 malformed"), "{report}");

    let e = independent_sum(&file);
    assert_eq!(e.messages, 100_000);
    let quotes = snap["quotes"].as_object().unwrap();
    assert_eq!(quotes.len(), e.volume.len());
    assert_eq!(e.volume.len(), 30, "all 30 symbols traded");
    for (symbol, volume) in &e.volume {
        let q = &quotes[symbol];
        assert_eq!(q["total_volume"].as_i64().unwrap(), *volume, "{symbol}");
        let sides = q["mua_chu_dong_volume"].as_i64().unwrap()
            + q["ban_chu_dong_volume"].as_i64().unwrap()
            + q["neutral_volume"].as_i64().unwrap();
        assert_eq!(sides, *volume, "{symbol}: sides add up");
        assert_eq!(
            snap["prices"][symbol]["last_price"].as_f64().unwrap(),
            e.last_price[symbol]
        );
        assert!(snap["prices"][symbol]["ceiling"].as_f64().unwrap() > 0.0);
    }
    let total_buy: i64 = e.foreign_buy.values().sum();
    let total_sell: i64 = e.foreign_sell.values().sum();
    assert_eq!(
        snap["foreign"]["total_buy_volume"].as_i64().unwrap(),
        total_buy
    );
    assert_eq!(
        snap["foreign"]["total_sell_volume"].as_i64().unwrap(),
        total_sell
    );
    let (contract, futures_volume) = e.futures_volume.iter().next().expect("futures traded");
    assert_eq!(snap["derivatives"]["symbol"], contract.as_str());
    assert_eq!(
        snap["derivatives"]["volume"].as_i64().unwrap(),
        *futures_volume
    );
    for (id, value) in &e.last_index {
        assert_eq!(
            snap["indices"][id]["value"].as_f64().unwrap(),
            *value,
            "{id}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_seed_same_file() {
    let args = [
        "simulate",
        "--events",
        "2000",
        "--seed",
        "3",
        "--start",
        "2026-11-26T09:15:00+07:00",
    ];
    assert_eq!(marketcast(&args).stdout, marketcast(&args).stdout);
}

#[test]
fn unreadable_replay_fails_with_the_line_number() {
    let dir = std::env::temp_dir().join(format!("marketcast-badreplay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.jsonl");
    std::fs::write(
        &path,
        b"{\"RType\":\"MI\",\"IndexId\":\"VN30\",\"IndexValue\":1.0}\nnot-a-time\t{}\n",
    )
    .unwrap();
    let out = marketcast(&["snapshot", "--replay", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");

    // A malformed message is counted and skipped, unless --strict.
    std::fs::write(
        &path,
        b"{\"RType\":\"X-TRADE\",\"Symbol\":\"FPT\",\"LastPrice\":\"abc\"}\n{\"RType\":\"MI\",\"IndexId\":\"VN30\",\"IndexValue\":1300.5}\n",
    )
    .unwrap();
    let out = marketcast(&["snapshot", "--replay", path.to_str().unwrap()]);
    assert!(out.status.success());
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["indices"]["VN30"]["value"], 1300.5);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 malformed") && err.contains("line 1") && err.contains("LastPrice"),
        "{err}"
    );
    let out = marketcast(&["snapshot", "--strict", "--replay", path.to_str().unwrap()]);
    assert!(!out.status.success());

    let out = marketcast(&[
        "snapshot",
        "--replay",
        dir.join("missing.jsonl").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
    let _ = std::fs::remove_dir_all(&dir);
}
