//! Market data core benchmark: parse + process throughput on one core, and the cost of
//! serialising a snapshot. Run with `cargo bench --bench core`; it prints a table and one JSON
//! line (for BENCHMARKS.md). No timing is asserted anywhere: this measures, tests check.
//!
//! * parse only: SSI message text to `MarketEvent` (the envelope and the JSON inside it).
//! * parse + process: the same, then `MarketProcessor::apply`, one thread, a simulator day.
//! * serialise: `MarketSnapshot` to JSON for the two reference fixtures (12 KB without intraday
//!   series, 480 KB with 3,600 points per index), read back into the typed snapshot first.

use std::hint::black_box;
use std::time::{Duration, Instant};

use marketcast::feed::simulator::{Simulator, SimulatorConfig};
use marketcast::feed::ssi::{parse_message, Message};
use marketcast::market::time::Timestamp;
use marketcast::market::{MarketProcessor, MarketSnapshot};

/// Runs `f` repeatedly for at least `budget`, in batches of `batch` calls; returns the best
/// batch's time per call (the least disturbed by the rest of the machine) and the median.
fn measure(budget: Duration, batch: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(t.elapsed() / batch as u32);
    }
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn main() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let start = Timestamp::parse_rfc3339("2026-11-26T09:15:00+07:00").unwrap();
    let mut sim = Simulator::new(SimulatorConfig::new(7, start.0));
    let messages: Vec<(Timestamp, String)> = (0..events)
        .map(|_| {
            let (at, text) = sim.next_message();
            (Timestamp(at), text)
        })
        .collect();
    let bytes: usize = messages.iter().map(|(_, m)| m.len()).sum();

    // Parse only.
    let t = Instant::now();
    let mut parsed = 0;
    for (_, text) in &messages {
        if let Ok(Message::Event(e)) = parse_message(text) {
            black_box(&e);
            parsed += 1;
        }
    }
    let parse_secs = t.elapsed().as_secs_f64();

    // Parse + process, three passes over a fresh processor; keep the best.
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut p = MarketProcessor::default();
        let t = Instant::now();
        for (at, text) in &messages {
            if let Ok(Message::Event(e)) = parse_message(text) {
                p.apply(&e, *at);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
        black_box(p.snapshot());
    }
    let rate_parse = parsed as f64 / parse_secs;
    let rate_full = events as f64 / best;

    let mut rows = Vec::new();
    for name in ["snapshot-small.json", "snapshot-large.json"] {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let snap: MarketSnapshot =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let size = snap.to_json_vec().len();
        let batch = if size > 100_000 { 5 } else { 500 };
        let (best, median) = measure(Duration::from_secs(2), batch, || {
            black_box(snap.to_json_vec());
        });
        rows.push((name, size, best, median));
    }

    println!(
        "marketcast core benchmark ({events} simulator messages, {:.0} bytes each on average)",
        bytes as f64 / events as f64
    );
    println!(
        "{:<34} {:>16}",
        "parse only",
        format!("{:.0} msg/s", rate_parse)
    );
    println!(
        "{:<34} {:>16}",
        "parse + process (one core)",
        format!("{:.0} msg/s", rate_full)
    );
    for (name, size, best, median) in &rows {
        println!(
            "{:<34} {:>16}",
            format!("serialise {name} ({size} B)"),
            format!(
                "{:.1} us (median {:.1})",
                best.as_secs_f64() * 1e6,
                median.as_secs_f64() * 1e6
            )
        );
    }
    let json = serde_json::json!({
        "messages": events,
        "avg_message_bytes": bytes / events,
        "parse_msgs_per_sec": rate_parse.round(),
        "parse_process_msgs_per_sec": rate_full.round(),
        "serialise_us": rows.iter().map(|(n, s, b, m)| serde_json::json!({
            "fixture": n, "bytes": s, "best_us": b.as_secs_f64() * 1e6, "median_us": m.as_secs_f64() * 1e6
        })).collect::<Vec<_>>(),
    });
    println!("{json}");
}
