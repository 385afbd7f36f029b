//! Ingest throughput, end to end: the real server (`FEED=ingest`, release build) on loopback,
//! fed a simulated VN30 day through `POST /api/ingest` in batches and through `/ws/ingest`.
//! Run with `cargo bench --bench ingest`; it prints a table and one JSON line (BENCHMARKS.md).
//! Nothing is asserted: this measures, tests check.
//!
//! A pass sends every message, then waits until the server's `/health` has counted them all,
//! so the figure is messages parsed and applied per second, not merely sent. The sender runs on
//! the same two cores as the server.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use marketcast::base::time::Timestamp;
use marketcast::feed::replay::format_line;
use marketcast::feed::simulator::{Simulator, SimulatorConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

// The integration tests' harness: the real server process, and the SSI double.
#[path = "../tests/common/mod.rs"]
mod common;

use common::ssi_double::{DoubleConfig, SsiDouble};
use common::ServerProcess;

const TOKEN: &str = "bench-token";

fn start_server() -> ServerProcess {
    ServerProcess::start(&[("FEED", "ingest"), ("INGEST_TOKEN", TOKEN)])
}

/// Waits until the server's feed has counted `n` messages (polling `/health`).
async fn wait_for(server: &ServerProcess, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = server.get("/health").await.json();
        if h["feed"]["messages"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not count {n} messages: {h}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn main() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let start = Timestamp::parse_rfc3339("2026-11-26T09:15:00+07:00").unwrap();
    let mut sim = Simulator::new(SimulatorConfig::new(7, start.0));
    let lines: Vec<String> = (0..events)
        .map(|_| {
            let (at, text) = sim.next_message();
            format_line(Timestamp(at), &text)
        })
        .collect();
    let bodies: Vec<String> = lines.chunks(batch).map(|c| c.join("\n")).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    // Two workers: the SSI double runs in this process while the main thread waits for the
    // server's start-up line.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    runtime.block_on(async {
        // reqwest is built without a default TLS provider (marketcast installs ring's).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();

        // POST: batches back to back on one keep-alive connection.
        let mut best = f64::MAX;
        for _ in 0..3 {
            let server = start_server();
            let url = format!("http://{}/api/ingest", server.addr);
            let t = Instant::now();
            for body in &bodies {
                let r = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                let _ = r.bytes().await;
            }
            wait_for(&server, events as u64).await;
            best = best.min(t.elapsed().as_secs_f64());
        }
        results.push(("POST /api/ingest", best));

        // WebSocket: frames of 100 lines, as a bridge that batches would send them.
        let mut best = f64::MAX;
        for _ in 0..3 {
            let server = start_server();
            let mut req = server.ws_url("/ws/ingest").into_client_request().unwrap();
            req.headers_mut()
                .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            let frames: Vec<String> = lines.chunks(100).map(|c| c.join("\n")).collect();
            let t = Instant::now();
            for f in frames {
                ws.feed(Message::text(f)).await.unwrap();
            }
            ws.flush().await.unwrap();
            wait_for(&server, events as u64).await;
            best = best.min(t.elapsed().as_secs_f64());
        }
        results.push(("/ws/ingest (100 lines a frame)", best));

        // SSI: the same messages from the SignalR double (10 Broadcast calls a frame, each
        // envelope double-encoded as SSI sends it), from the server's connect to the last one
        // applied. The double's own encoding shares the two cores.
        let envelopes: Vec<String> = lines
            .iter()
            .map(|l| {
                l.split_once('\t')
                    .map_or(l.as_str(), |(_, m)| m)
                    .to_string()
            })
            .collect();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let double = SsiDouble::start(DoubleConfig {
                messages: envelopes.clone(),
                batch: 10,
                hold: true,
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
            ]);
            double
                .wait_until(|l| l.invocations.len() >= 4, Duration::from_secs(20))
                .await;
            let t = Instant::now();
            double.release(events);
            wait_for(&server, events as u64).await;
            best = best.min(t.elapsed().as_secs_f64());
        }
        results.push(("SSI stream (SignalR double, 10 messages a frame)", best));
    });

    println!(
        "ingest: {events} simulated SSI messages ({:.0} bytes each on average), best of 3 passes",
        bytes as f64 / events as f64
    );
    println!("| path | messages/s | MB/s |");
    println!("|---|---:|---:|");
    let mut json = serde_json::Map::new();
    for (name, secs) in &results {
        let rate = events as f64 / secs;
        println!(
            "| {name} | {:.0} | {:.1} |",
            rate,
            bytes as f64 / secs / 1e6
        );
        json.insert(name.to_string(), serde_json::json!(rate.round()));
    }
    json.insert("events".into(), serde_json::json!(events));
    json.insert("batch".into(), serde_json::json!(batch));
    println!("{}", serde_json::Value::Object(json));
}
