//! `FEED=ssi` against a local SSI FastConnect double (tests/common/ssi_double.rs) that follows
//! the reference transcript: the session, token renewal, drops and reconnects with status
//! messages, hub errors, malformed frames, silence, recording, and `ssi-check`.
//!
//! The tests run on a multi-threaded runtime: the double lives in the test process, and
//! starting the server blocks the test's own thread until the server's listening line.

mod common;

use std::time::{Duration, Instant};

use common::ssi_double::{envelope, DoubleConfig, SsiDouble};
use common::*;
use marketcast::market::watchlist::DEFAULT_VN30;
use serde_json::json;

const SECRET: &str = "test-secret";

fn envelopes(n: usize, seed: u64) -> Vec<String> {
    simulated_day(n, seed)
        .iter()
        .map(|l| envelope_of(l).to_string())
        .collect()
}

/// The settings that point `FEED=ssi` at the double, plus `extra`.
fn ssi_env<'a>(double: &'a SsiDouble, urls: &'a (String, String)) -> Vec<(&'a str, &'a str)> {
    let _ = double;
    vec![
        ("FEED", "ssi"),
        ("SSI_CONSUMER_ID", "test-id"),
        ("SSI_CONSUMER_SECRET", SECRET),
        ("SSI_BASE_URL", urls.0.as_str()),
        ("SSI_STREAM_URL", urls.1.as_str()),
        ("SSI_RECONNECT_MIN", "0.05"),
        ("SSI_RECONNECT_MAX", "0.2"),
    ]
}

fn urls(double: &SsiDouble) -> (String, String) {
    (double.base_url(), double.stream_url())
}

async fn health(server: &ServerProcess) -> serde_json::Value {
    server.get("/health").await.json()
}

/// Waits until the feed has counted `n` messages, and checks it counted no more.
async fn wait_for_feed_messages(server: &ServerProcess, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = health(server).await;
        let got = h["feed"]["messages"].as_u64().unwrap();
        if got >= n {
            assert_eq!(got, n, "no message counted twice: {h}");
            return h;
        }
        assert!(Instant::now() < deadline, "{got} of {n} messages: {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_follows_the_transcript_and_data_flows() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(2000, 11),
        batch: 7,
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let mut env = ssi_env(&double, &u);
    env.push(("LOG_LEVEL", "debug"));
    let server = ServerProcess::start(&env);
    let h = wait_for_feed_messages(&server, 2000).await;
    assert_eq!(h["feed"]["kind"], "ssi");
    assert_eq!(h["feed"]["connected"], true);
    assert_eq!(h["feed"]["reconnects"], 0);
    assert_eq!(h["feed"]["malformed"], 0);
    assert!(h["feed"]["events"].as_u64().unwrap() > 1500, "{h}");
    assert!(h["feed"]["last_message_age_ms"].is_u64());

    let log = double.log();
    let logs = server.drain_logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("VN30 constituents from SSI")),
        "{logs:#?}"
    );
    // 1. Token: POST with exactly the two camelCase fields.
    assert_eq!(
        log.token_bodies[0],
        serde_json::json!({"consumerID": "test-id", "consumerSecret": SECRET})
    );
    let bearer = format!("Bearer {}", log.tokens_issued[0]);
    // 2. VN30 members, with the bearer.
    assert!(log.index_component_requests[0].contains("indexCode=VN30"));
    // 3. Negotiate with the bearer, protocol 1.5 and the hub in connectionData.
    let n = &log.negotiates[0];
    assert_eq!(n.authorization.as_deref(), Some(bearer.as_str()));
    assert!(n.path_and_query.starts_with("/v2.0/signalr/negotiate?"));
    assert!(n.path_and_query.contains("clientProtocol=1.5"));
    assert!(n
        .path_and_query
        .contains("connectionData=%5B%7B%22name%22%3A%22FcMarketDataV2Hub%22%7D%5D"));
    // 4. Connect with the bearer and the (percent-encoded) connection token.
    let c = &log.connects[0];
    assert_eq!(c.authorization.as_deref(), Some(bearer.as_str()));
    assert!(c.path_and_query.contains("transport=webSockets"));
    assert!(c.path_and_query.contains("connectionToken="));
    // 5. Start.
    assert_eq!(log.starts.len(), 1);
    // 6. One SwitchChannels call per channel, on the one connection, in order.
    let calls: Vec<&serde_json::Value> = log.invocations.iter().map(|(_, v)| v).collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let channels: Vec<&str> = calls.iter().map(|v| v["A"][0].as_str().unwrap()).collect();
    assert!(channels[0].starts_with("X-TRADE:ACB-BCM-"), "{channels:?}");
    assert!(
        channels[0].contains("-VN30F"),
        "futures are traded: {channels:?}"
    );
    assert!(channels[1].starts_with("X-QUOTE:ACB-"));
    assert!(
        channels[1].contains("-VN30F"),
        "futures are quoted: {channels:?}"
    );
    assert!(!channels[2].contains("VN30F"), "futures have no room");
    assert!(channels[2].starts_with("R:ACB-"));
    assert_eq!(channels[3], "MI:VN30-VNINDEX");
    for (i, v) in calls.iter().enumerate() {
        assert_eq!(v["H"], "FcMarketDataV2Hub");
        assert_eq!(v["M"], "SwitchChannels");
        assert_eq!(v["I"], i.to_string());
    }
    assert!(log
        .invocations
        .iter()
        .all(|(conn, _)| *conn == log.invocations[0].0));

    // The snapshot is built from the stream.
    let snap = server.get("/api/market/snapshot").await.json();
    assert!(snap["quotes"].as_object().unwrap().len() >= 20, "{snap}");
    // The VN30 list came from SSI.
    let comps = server.get("/api/vn30-components").await.json();
    assert_eq!(comps["symbols"].as_array().unwrap().len(), 30);
    // The secret and the token never reach the log, even at debug level.
    for line in logs.iter().chain(server.drain_logs().iter()) {
        assert!(!line.contains(SECRET), "secret in the log: {line}");
        assert!(
            !line.contains(&log.tokens_issued[0]),
            "token in the log: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_mid_stream_reconnects_resubscribes_tells_clients_and_loses_nothing() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(3000, 12),
        batch: 5,
        hold: true,
        drop_after: vec![1000, 2000],
        // Each type flows only once its channel is subscribed, so every connection's four
        // calls are in the double's log before the drop that ends it.
        route_by_channel: true,
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let server = ServerProcess::start(&ssi_env(&double, &u));
    // A client is watching before anything flows.
    let mut ws = connect(&server.ws_url("/ws/market")).await;
    next_json(&mut ws, Duration::from_secs(5)).await;
    double.release(3000);
    wait_for_feed_messages(&server, 3000).await;
    let h = server.wait_health(|h| h["feed"]["reconnects"] == 2).await;
    assert_eq!(h["feed"]["connected"], true);
    let log = double.log();
    assert_eq!(log.connects.len(), 3, "{log:#?}");
    assert_eq!(log.connections_closed_by_double, 2);
    // Every connection subscribed the same channels.
    let per_conn = |n: usize| -> Vec<String> {
        log.invocations
            .iter()
            .filter(|(c, _)| *c == n)
            .map(|(_, v)| v["A"][0].as_str().unwrap().to_string())
            .collect()
    };
    let conns: std::collections::BTreeSet<usize> =
        log.invocations.iter().map(|(c, _)| *c).collect();
    let conns: Vec<usize> = conns.into_iter().collect();
    assert_eq!(conns.len(), 3);
    assert_eq!(per_conn(conns[0]), per_conn(conns[1]));
    assert_eq!(per_conn(conns[0]), per_conn(conns[2]));
    // The client saw the link go down and come back, twice, between snapshots.
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses.len() < 4 && Instant::now() < deadline {
        let (_, v) = next_json(&mut ws, Duration::from_secs(5)).await;
        if v["type"] == "status" {
            statuses.push((v["connected"].as_bool().unwrap(), v["feed"].clone()));
        }
    }
    let connected: Vec<bool> = statuses.iter().map(|(c, _)| *c).collect();
    assert_eq!(connected, [false, true, false, true], "{statuses:?}");
    assert!(statuses.iter().all(|(_, feed)| feed == "ssi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_renewed_before_it_expires_and_refetched_when_refused() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(400, 13),
        token_lifetime: Duration::from_secs(4),
        hold: true,
        drop_after: vec![200],
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let server = ServerProcess::start(&ssi_env(&double, &u));
    // Renewed in the background (a quarter of the lifetime before exp) while the stream stays up.
    let log = double
        .wait_until(|l| l.token_requests >= 3, Duration::from_secs(20))
        .await;
    assert_eq!(
        log.connects.len(),
        1,
        "renewal does not reconnect the stream"
    );
    double.release(200);
    wait_for_feed_messages(&server, 200).await;
    // Now every token is refused: the reconnect after the drop gets 401, fetches a fresh one.
    double.revoke_tokens();
    let before = double.log().token_requests;
    double.release(400);
    wait_for_feed_messages(&server, 400).await;
    let log = double.log();
    assert!(log.unauthorized >= 1, "{log:#?}");
    assert!(log.token_requests > before);
    let newest = log.tokens_issued.last().unwrap();
    assert_eq!(
        log.connects.last().unwrap().authorization.as_deref(),
        Some(format!("Bearer {newest}").as_str()),
        "the reconnect used a fresh token"
    );
    assert_eq!(health(&server).await["feed"]["connected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_errors_and_malformed_frames_are_counted_and_the_stream_goes_on() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(600, 14),
        error_after: Some((
            100,
            "Connection has been blocked, quota 5 exceeded by 1".into(),
        )),
        malformed_after: Some(300),
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let server = ServerProcess::start(&ssi_env(&double, &u));
    let h = server.wait_health(|h| h["feed"]["events"] == 600).await;
    // The malformed frames: one that is not JSON, one that is not an object (both skipped as
    // frames), and a Broadcast whose message is not JSON (a message, counted and skipped).
    assert_eq!(h["feed"]["messages"], 601, "{h}");
    assert_eq!(h["feed"]["malformed"], 3, "{h}");
    assert_eq!(h["feed"]["upstream_errors"], 1, "{h}");
    assert!(h["feed"]["last_error"].is_string());
    assert_eq!(h["feed"]["reconnects"], 0, "neither ends the session");
    assert_eq!(double.log().connects.len(), 1);
    let m = server.get("/metrics").await.body;
    assert!(
        m.contains("marketcast_feed_upstream_errors_total{feed=\"ssi\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("marketcast_feed_connected{feed=\"ssi\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_request_from_the_hub_is_followed() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(400, 19),
        reconnect_after: Some(150),
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let server = ServerProcess::start(&ssi_env(&double, &u));
    wait_for_feed_messages(&server, 400).await;
    let h = server.wait_health(|h| h["feed"]["reconnects"] == 1).await;
    assert!(
        h["feed"]["last_error"]
            .as_str()
            .unwrap()
            .contains("asked the client to reconnect"),
        "{h}"
    );
    assert_eq!(double.log().connects.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_abandoned_after_the_keepalive_timeout_and_resumed() {
    let double = SsiDouble::start(DoubleConfig {
        messages: envelopes(500, 15),
        keepalive: Duration::from_millis(200),
        keepalive_timeout_secs: Some(1.0),
        silent_after: Some(250),
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let server = ServerProcess::start(&ssi_env(&double, &u));
    let h = wait_for_feed_messages(&server, 500).await;
    assert_eq!(double.log().connects.len(), 2);
    let h = if h["feed"]["reconnects"] == 1 {
        h
    } else {
        server.wait_health(|h| h["feed"]["reconnects"] == 1).await
    };
    assert!(
        h["feed"]["last_error"]
            .as_str()
            .unwrap()
            .contains("no frame for"),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_raw_message_is_recorded_in_the_replay_format() {
    let messages = envelopes(800, 16);
    let double = SsiDouble::start(DoubleConfig {
        messages: messages.clone(),
        drop_after: vec![300],
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("marketcast-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("today.jsonl");
    let _ = std::fs::remove_file(&file);
    let u = urls(&double);
    let file_s = file.display().to_string();
    let mut env = ssi_env(&double, &u);
    env.push(("RECORD_FILE", file_s.as_str()));
    let server = ServerProcess::start(&env);
    wait_for_feed_messages(&server, 800).await;
    let h = server
        .wait_health(|h| h["recorder"]["counters"]["written"] == 800)
        .await;
    assert_eq!(h["recorder"]["counters"]["dropped"], 0);
    let live = server.get("/api/market/snapshot").await.json();
    let text = std::fs::read_to_string(&file).unwrap();
    let recorded: Vec<&str> = text.lines().collect();
    assert_eq!(recorded.len(), 800);
    for (line, sent) in recorded.iter().zip(&messages) {
        let (time, message) = line.split_once('\t').unwrap();
        assert!(time.starts_with("20") && time.ends_with("+07:00"), "{time}");
        assert_eq!(message, sent, "recorded exactly as received");
    }
    // The recording replays to the same session totals.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["snapshot", "--replay", &file_s])
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (symbol, stats) in live["quotes"].as_object().unwrap() {
        assert_eq!(
            stats["total_volume"], replayed["quotes"][symbol]["total_volume"],
            "{symbol}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn ssi_check(env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .args(["ssi-check", "--timeout", "10"])
        .env_remove("SSI_CONSUMER_ID")
        .env_remove("SSI_CONSUMER_SECRET")
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ssi-check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssi_check_passes_with_good_settings_and_says_what_to_fix_otherwise() {
    // A futures quote first, then the extras' messages, then a day; the double sends only what
    // was subscribed, in this order, so each channel's first message is known.
    let futures_quote = envelope(
        "X-QUOTE",
        &json!({"RType": "X-QUOTE", "Symbol": "VN30F2612", "BidPrice1": 1340.7,
            "AskPrice1": 1340.9, "TradingSession": "LO"}),
    );
    let mut messages = vec![futures_quote];
    messages.extend(extra_messages());
    messages.extend(envelopes(3000, 17));
    let double = SsiDouble::start(DoubleConfig {
        messages,
        route_by_symbol: true,
        ..Default::default()
    })
    .await;
    let (base, stream) = urls(&double);
    let (base1, stream1) = (base.clone(), stream.clone());
    let check = tokio::task::spawn_blocking(move || {
        ssi_check(&[
            ("SSI_CONSUMER_ID", "test-id"),
            ("SSI_CONSUMER_SECRET", SECRET),
            ("SSI_BASE_URL", base1.as_str()),
            ("SSI_STREAM_URL", stream1.as_str()),
            // The contract the messages name, whatever today's date.
            ("FUTURES_OVERRIDE", "VN30F2612"),
            ("EXTRA_SYMBOLS", "HPX,VN100,HNXIndex"),
        ])
    });
    let (ok, text) = check.await.unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("ok   access token (expires in "), "{text}");
    assert!(
        text.contains("ok   VN30 constituents: 30 symbols (ACB BCM"),
        "{text}"
    );
    assert!(
        text.contains("ok   SwitchChannels MI:VN30-VNINDEX-VN100-HNXIndex: accepted"),
        "{text}"
    );
    for kind in ["X-TRADE", "X-QUOTE", "R", "MI"] {
        assert!(text.contains(&format!("msg  {kind}: ")), "{kind}: {text}");
    }
    // Each subscribed channel, with the first message it delivered.
    let lines: Vec<&str> = text.lines().collect();
    let first_of = |channel: &str| -> &str {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("chan {channel}")))
            .unwrap_or_else(|| panic!("no line for {channel}: {text}"));
        lines[at + 1]
            .strip_prefix("     first: ")
            .unwrap_or_else(|| panic!("no first message for {channel}: {text}"))
    };
    let listed = "-VRE-HPX-VN30F2612 (32 symbols)";
    assert!(
        first_of("X-QUOTE:ACB-BCM-").contains("\"VN30F2612\""),
        "{text}"
    );
    assert!(first_of("X-TRADE:ACB-BCM-").contains("\"HPX\""), "{text}");
    assert!(first_of("R:ACB-BCM-").contains("\"HPX\""), "{text}");
    assert!(
        first_of("MI:VN30-VNINDEX-VN100-HNXIndex (4 symbols)").contains("\"VN100\""),
        "{text}"
    );
    for channel in ["X-QUOTE", "X-TRADE"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("chan {channel}:ACB-")) && l.ends_with(listed)),
            "{text}"
        );
    }
    assert!(text.contains("ssi-check passed"), "{text}");
    assert!(!text.contains(SECRET));

    // Wrong credentials: one line that says which settings to check.
    let (base2, stream2) = (base.clone(), stream.clone());
    let (ok, text) = tokio::task::spawn_blocking(move || {
        ssi_check(&[
            ("SSI_CONSUMER_ID", "test-id"),
            ("SSI_CONSUMER_SECRET", "wrong"),
            ("SSI_BASE_URL", base2.as_str()),
            ("SSI_STREAM_URL", stream2.as_str()),
        ])
    })
    .await
    .unwrap();
    assert!(!ok);
    let fail: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{text}");
    assert!(fail[0].contains("SSI refused the credentials"), "{text}");
    assert!(
        fail[0].contains("Fix: check SSI_CONSUMER_ID and SSI_CONSUMER_SECRET"),
        "{text}"
    );

    // Nothing listening: the network line.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (ok, text) = tokio::task::spawn_blocking(move || {
        ssi_check(&[
            ("SSI_CONSUMER_ID", "test-id"),
            ("SSI_CONSUMER_SECRET", SECRET),
            ("SSI_BASE_URL", dead.as_str()),
            ("SSI_STREAM_URL", dead.as_str()),
        ])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL access token: cannot reach")
                && l.contains("Fix: check the network")),
        "{text}"
    );

    // No credentials at all.
    let (ok, text) = tokio::task::spawn_blocking(|| ssi_check(&[]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(text.contains("FAIL SSI_CONSUMER_ID is not set"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssi_check_reports_a_stream_with_no_data() {
    // Credentials fine, but nothing streams (outside trading hours).
    let double = SsiDouble::start(DoubleConfig::default()).await;
    let (base, stream) = urls(&double);
    let (ok, text) = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .args(["ssi-check", "--timeout", "1"])
            .envs([
                ("SSI_CONSUMER_ID", "test-id"),
                ("SSI_CONSUMER_SECRET", SECRET),
                ("SSI_BASE_URL", base.as_str()),
                ("SSI_STREAM_URL", stream.as_str()),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(text.contains("ok   access token"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL no message in 1s") && l.contains("trading hours")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_without_credentials_names_the_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .arg("serve")
        .env("FEED", "ssi")
        .env("APP_PORT", "0")
        .env_remove("SSI_CONSUMER_ID")
        .env("SSI_CONSUMER_SECRET", SECRET)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSI_CONSUMER_ID is not set"), "{err}");
    assert!(!err.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_index_components_the_configured_list_is_used() {
    let double = SsiDouble::start(DoubleConfig {
        index_components_fail: true,
        messages: envelopes(100, 18),
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let mut env = ssi_env(&double, &u);
    env.push(("VN30_SYMBOLS", "FPT,VNM,HPG"));
    let server = ServerProcess::start(&env);
    wait_for_feed_messages(&server, 100).await;
    let comps = server.get("/api/vn30-components").await.json();
    assert_eq!(comps["symbols"], serde_json::json!(["FPT", "VNM", "HPG"]));
    let log = double.log();
    let x_trade = log.invocations[0].1["A"][0].as_str().unwrap().to_string();
    assert!(
        x_trade.starts_with("X-TRADE:FPT-VNM-HPG-VN30F"),
        "{x_trade}"
    );
}

/// The messages of an extra stock (HPX: a quote, a trade at its ask, its foreign room), two
/// extra indices (one spelled in SSI's mixed case) and a stock nobody follows (AAA).
fn extra_messages() -> Vec<String> {
    let stock = |symbol: &str| {
        vec![
            envelope(
                "X-QUOTE",
                &json!({"RType": "X-QUOTE", "Symbol": symbol, "BidPrice1": 20000.0,
                    "BidVol1": 1000.0, "AskPrice1": 20100.0, "AskVol1": 2000.0,
                    "TradingSession": "LO"}),
            ),
            envelope(
                "X-TRADE",
                &json!({"RType": "X-TRADE", "Symbol": symbol, "LastPrice": 20100.0,
                    "LastVol": 500.0, "TotalVol": 500.0, "RefPrice": 20000.0,
                    "Ceiling": 21400.0, "Floor": 18600.0, "Change": 100.0, "RatioChange": 0.5,
                    "TradingSession": "LO"}),
            ),
            envelope(
                "R",
                &json!({"RType": "R", "Symbol": symbol, "TotalRoom": 90000000.0,
                    "CurrentRoom": 80000000.0, "BuyVol": 700000000.0, "SellVol": 0.0,
                    "BuyVal": 9.0e15, "SellVal": 0.0}),
            ),
        ]
    };
    let index = |id: &str, value: f64| {
        envelope(
            "MI",
            &json!({"RType": "MI", "IndexId": id, "IndexValue": value,
                "PriorIndexValue": value - 5.0, "Change": 5.0, "RatioChange": 0.4}),
        )
    };
    let mut messages = stock("HPX");
    messages.push(index("VN100", 1300.5));
    messages.push(index("HNXIndex", 250.25));
    messages.extend(stock("AAA"));
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_quotes_and_extra_symbols_are_subscribed_and_kept() {
    // The simulated day starts on 2026-11-26, past November's expiry, so it trades VN30F2612;
    // with the server's clock on that day, the contracts followed are VN30F2612 and VN30F2701.
    let mut messages = envelopes(3000, 22);
    let (futures, bid, ask) = last_futures_quote(&messages);
    assert_eq!(futures, "VN30F2612");
    messages.splice(1500..1500, extra_messages());
    let total = messages.len();
    // Like SSI, the double sends a message only to a connection that subscribed its symbol.
    let double = SsiDouble::start(DoubleConfig {
        messages,
        batch: 5,
        route_by_symbol: true,
        vn30: DEFAULT_VN30.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await;
    let u = urls(&double);
    let mut env = ssi_env(&double, &u);
    env.push(("CLOCK_FIXED_AT", "2026-11-26T14:00:00+07:00"));
    env.push(("EXTRA_SYMBOLS", " hpx, VN100 ,HNXINDEX"));
    let server = ServerProcess::start(&env);
    let log = double
        .wait_until(
            |l| l.messages_sent + l.unsubscribed.len() == total,
            Duration::from_secs(30),
        )
        .await;
    // Everything was subscribed but the stock nobody follows: every futures quote went out.
    assert_eq!(
        log.unsubscribed,
        ["X-QUOTE AAA", "X-TRADE AAA", "R AAA"],
        "{log:#?}"
    );
    wait_for_feed_messages(&server, log.messages_sent as u64).await;

    let channels: Vec<&str> = log
        .invocations
        .iter()
        .map(|(_, v)| v["A"][0].as_str().unwrap())
        .collect();
    let traded = "-VRE-HPX-VN30F2612-VN30F2701";
    assert!(channels[0].starts_with("X-TRADE:ACB-") && channels[0].ends_with(traded));
    assert!(
        channels[1].starts_with("X-QUOTE:ACB-") && channels[1].ends_with(traded),
        "{channels:?}"
    );
    assert!(channels[2].starts_with("R:ACB-") && channels[2].ends_with("-VRE-HPX"));
    assert_eq!(channels[3], "MI:VN30-VNINDEX-VN100-HNXIndex");
    assert_eq!(channels.len(), 4);

    let snap = server.get("/api/market/snapshot").await.json();
    // The futures' bid and ask are the last X-QUOTE's for the contract.
    let d = &snap["derivatives"];
    assert_eq!(d["symbol"], futures, "{d}");
    assert_eq!(d["bid_price"].as_f64(), Some(bid), "{d}");
    assert_eq!(d["ask_price"].as_f64(), Some(ask), "{d}");
    // The extra stock's quote (its trade at the ask is an active buy), trade and room.
    assert_eq!(snap["quotes"]["HPX"]["mua_chu_dong_volume"], 500, "{snap}");
    assert_eq!(snap["prices"]["HPX"]["last_price"], 20100.0);
    let top = &snap["foreign"]["top_buy"][0];
    assert_eq!(top["symbol"], "HPX", "{}", snap["foreign"]);
    assert_eq!(top["buy_volume"], 700000000);
    assert_eq!(top["current_room"], 80000000);
    // The extra indices, one in SSI's mixed-case spelling.
    assert_eq!(snap["indices"]["VN100"]["value"], 1300.5);
    assert_eq!(snap["indices"]["HNXIndex"]["value"], 250.25);
    assert!(snap["quotes"].get("AAA").is_none());
}
