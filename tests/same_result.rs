//! One recorded day, four ways in, one result: the same 20,000 messages through `FEED=replay`,
//! the SSI double with a drop in the middle, `POST /api/ingest` in batches, and `/ws/ingest`
//! give four identical final snapshots, the futures contract's bid and ask included.
//!
//! The SSI double sends, as SSI does, only what the server's default channels subscribe, so
//! the SSI run also proves the subscription covers everything the day carries (the VN30, its
//! futures contract's trades and quotes, foreign room, the two indices).
//!
//! Every server runs with `CLOCK_FIXED_AT`, so the time each event is applied at is the same in
//! every run (the processor stamps flows and series with it). The SSI run turns off the foreign
//! re-seed after a reconnect: the double resumes exactly where it stopped, so there is no gap to
//! protect against, and the re-seed would (by design) leave one delta per symbol out of the
//! speed window. The re-seed itself is tested in `src/market/foreign.rs`.

mod common;

use common::ssi_double::{DoubleConfig, SsiDouble};
use common::*;
use futures_util::SinkExt;
use marketcast::market::watchlist::DEFAULT_VN30;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: usize = 20_000;
const AT: &str = "2026-11-26T14:00:00+07:00";
const TOKEN: &str = "same-token";

async fn final_snapshot(server: &ServerProcess) -> serde_json::Value {
    let h = server.get("/health").await.json();
    assert_eq!(h["feed"]["malformed"], 0, "{h}");
    server.get("/api/market/snapshot").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_ssi_post_and_websocket_ingest_give_the_same_snapshot() {
    let lines = simulated_day(MESSAGES, 21);
    let dir = std::env::temp_dir().join(format!("marketcast-same-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("day.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let file_s = file.display().to_string();

    // 1. Replay, as fast as it goes.
    let replay = {
        let server = ServerProcess::start(&[
            ("FEED", "replay"),
            ("REPLAY_FILE", &file_s),
            ("REPLAY_SPEED", "max"),
            ("CLOCK_FIXED_AT", AT),
        ]);
        server
            .wait_health(|h| h["feed"]["state"] == "finished")
            .await;
        final_snapshot(&server).await
    };
    let quotes = replay["quotes"].as_object().unwrap().len();
    assert!(quotes >= 25, "the day traded most of the VN30: {quotes}");
    // The futures' bid and ask are the day's last X-QUOTE for the contract.
    let (futures, bid, ask) = last_futures_quote(&lines);
    let d = &replay["derivatives"];
    assert_eq!(d["symbol"], futures, "{d}");
    assert_eq!(d["bid_price"].as_f64(), Some(bid), "{d}");
    assert_eq!(d["ask_price"].as_f64(), Some(ask), "{d}");
    assert!(bid > 0.0 && ask > bid, "{d}");

    // 2. The SSI double, dropping the stream halfway; it resumes where it stopped.
    let ssi = {
        let envelopes: Vec<String> = lines.iter().map(|l| envelope_of(l).to_string()).collect();
        let double = SsiDouble::start(DoubleConfig {
            messages: envelopes,
            batch: 10,
            drop_after: vec![MESSAGES / 2],
            vn30: DEFAULT_VN30.iter().map(|s| s.to_string()).collect(),
            route_by_symbol: true,
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
            ("SSI_RECONNECT_MIN", "0.05"),
            ("SSI_RESEED_FOREIGN", "false"),
            ("CLOCK_FIXED_AT", AT),
        ]);
        server
            .wait_health(|h| h["feed"]["messages"] == MESSAGES && h["feed"]["reconnects"] == 1)
            .await;
        let log = double.log();
        assert_eq!(log.connects.len(), 2, "one drop, one reconnect");
        assert!(log.unsubscribed.is_empty(), "{:?}", log.unsubscribed);
        final_snapshot(&server).await
    };

    // 3. POST /api/ingest, 1,000 lines a batch.
    let post = {
        let server = ServerProcess::start(&[
            ("FEED", "ingest"),
            ("INGEST_TOKEN", TOKEN),
            ("CLOCK_FIXED_AT", AT),
        ]);
        let auth = format!("Bearer {TOKEN}");
        for batch in lines.chunks(1000) {
            let r = http_request(
                server.addr,
                "POST",
                "/api/ingest",
                &[("Authorization", &auth)],
                batch.join("\n").as_bytes(),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json()["rejected"], 0);
        }
        final_snapshot(&server).await
    };

    // 4. /ws/ingest: one message a frame for the first half, 50 lines a frame after.
    let websocket = {
        let server = ServerProcess::start(&[
            ("FEED", "ingest"),
            ("INGEST_TOKEN", TOKEN),
            ("CLOCK_FIXED_AT", AT),
        ]);
        let mut req = server.ws_url("/ws/ingest").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let (first, second) = lines.split_at(MESSAGES / 2);
        for line in first {
            ws.feed(Message::text(line.clone())).await.unwrap();
        }
        for chunk in second.chunks(50) {
            ws.feed(Message::text(chunk.join("\n"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        server
            .wait_health(|h| h["feed"]["messages"] == MESSAGES)
            .await;
        final_snapshot(&server).await
    };

    let _ = std::fs::remove_dir_all(&dir);
    for (name, snapshot) in [("SSI", &ssi), ("POST", &post), ("WebSocket", &websocket)] {
        if snapshot != &replay {
            let a = serde_json::to_string_pretty(&replay).unwrap();
            let b = serde_json::to_string_pretty(snapshot).unwrap();
            let first_diff = a
                .lines()
                .zip(b.lines())
                .enumerate()
                .find(|(_, (x, y))| x != y)
                .map(|(i, (x, y))| format!("line {i}: replay {x:?} vs {y:?}"));
            panic!("{name} differs from replay: {first_diff:?}");
        }
    }
}
