//! Market data core benchmark: parse + process throughput on one core, and the cost of
//! serialising a snapshot. Run with `cargo bench --bench core`; it prints a table and one JSON
//! line (for BENCHMARKS.md). No timing is asserted anywhere: this measures, tests check.
//!
//! * parse only: SSI message text to `MarketEvent` (the envelope and the JSON inside it).
//! * parse + process: the same, then `MarketProcessor::apply`, one thread, a simulator day.
//! * serialise: `MarketSnapshot` to JSON for the two reference fixtures (12 KB without intraday
//!   series, 480 KB with 3,600 points per index), read back into the typed snapshot first.
//! * the board (`/ws/board`): one tick's work (the rows copied, the message built and
//!   serialised) at `BOARD_DEPTH` 3 and 10 after a simulator day, and its size plain, deflated
//!   (the shared frame's level) and as a delta against the tick before (1 s of the day's
//!   messages earlier), beside the snapshot's at the same moment.
//! * history's cost: parse + process through the shared processor (batches of 100 messages a
//!   lock, as the feeds do), with history off, then on with the server's writer task writing
//!   to an SQLite file on another thread at the same time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use marketcast::base::time::Timestamp;
use marketcast::feed::simulator::{Simulator, SimulatorConfig};
use marketcast::feed::ssi::{parse_message, Message};
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

    let (shared_off, shared_on, written) = {
        let off = (0..3)
            .map(|_| shared(&messages, false).0)
            .fold(0.0, f64::max);
        let runs: Vec<(f64, u64)> = (0..3).map(|_| shared(&messages, true)).collect();
        let on = runs.iter().map(|r| r.0).fold(0.0, f64::max);
        (off, on, runs[0].1)
    };

    let board_rows = board(&messages);

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
    println!(
        "{:<34} {:>16}",
        "shared processor, history off",
        format!("{:.0} msg/s", shared_off)
    );
    println!(
        "{:<34} {:>16}",
        "shared processor, history to SQLite",
        format!(
            "{:.0} msg/s ({:.1} % less; {written} records written)",
            shared_on,
            (1.0 - shared_on / shared_off) * 100.0
        )
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
    for b in &board_rows {
        println!(
            "{:<34} {:>16}",
            format!("board tick, depth {} ({} rows)", b.depth, b.rows),
            format!(
                "{:.1} us (median {:.1}); {} B, deflate {} B, delta {} B (deflated {} B); snapshot {} B",
                b.best.as_secs_f64() * 1e6,
                b.median.as_secs_f64() * 1e6,
                b.plain,
                b.deflated,
                b.delta,
                b.delta_deflated,
                b.snapshot
            )
        );
    }
    let json = serde_json::json!({
        "messages": events,
        "avg_message_bytes": bytes / events,
        "parse_msgs_per_sec": rate_parse.round(),
        "parse_process_msgs_per_sec": rate_full.round(),
        "shared_history_off_msgs_per_sec": shared_off.round(),
        "shared_history_sqlite_msgs_per_sec": shared_on.round(),
        "history_cost_pct": ((1.0 - shared_on / shared_off) * 1000.0).round() / 10.0,
        "history_records_written": written,
        "serialise_us": rows.iter().map(|(n, s, b, m)| serde_json::json!({
            "fixture": n, "bytes": s, "best_us": b.as_secs_f64() * 1e6, "median_us": m.as_secs_f64() * 1e6
        })).collect::<Vec<_>>(),
        "board": board_rows.iter().map(|b| serde_json::json!({
            "depth": b.depth, "rows": b.rows, "build_encode_best_us": b.best.as_secs_f64() * 1e6,
            "build_encode_median_us": b.median.as_secs_f64() * 1e6, "plain_bytes": b.plain,
            "deflate_bytes": b.deflated, "delta_bytes": b.delta,
            "delta_deflate_bytes": b.delta_deflated, "snapshot_bytes": b.snapshot,
        })).collect::<Vec<_>>(),
    });
    println!("{json}");
}

/// The board channel's cost at one depth.
struct BoardRow {
    depth: usize,
    rows: usize,
    best: Duration,
    median: Duration,
    plain: usize,
    deflated: usize,
    delta: usize,
    delta_deflated: usize,
    snapshot: usize,
}

/// The board after the day's messages: a tick's work (as the channel's source does it: the rows
/// copied, then built and serialised) and the message's sizes.
fn board(messages: &[(Timestamp, String)]) -> Vec<BoardRow> {
    use marketcast::broadcast::delta;
    use marketcast::broadcast::frame::{Deflater, DEFLATE_LEVEL};
    let mut p = MarketProcessor::default();
    // The previous tick: 1 s (the default WS_BROADCAST_INTERVAL) of messages before the end.
    let end = messages.last().map_or(messages.len(), |(last, _)| {
        let cut = last.plus_millis(-1000);
        messages.partition_point(|(at, _)| *at <= cut)
    });
    let mut previous = None;
    for (i, (at, text)) in messages.iter().enumerate() {
        if i == end {
            previous = Some(p.board().clone());
        }
        if let Ok(Message::Event(e)) = parse_message(text) {
            p.apply(&e, *at);
        }
    }
    let now = messages.last().map_or_else(
        || Timestamp::parse_rfc3339("2026-11-26T10:00:00+07:00").unwrap(),
        |(at, _)| *at,
    );
    let previous = previous.unwrap_or_else(|| p.board().clone());
    let snapshot = p.snapshot().to_json_vec().len();
    [3, 10]
        .into_iter()
        .map(|depth| {
            let (best, median) = measure(Duration::from_secs(2), 200, || {
                let copy = p.board().clone();
                black_box(copy.message(depth, now).to_json_vec());
            });
            let body = p.board().message(depth, now).to_json_vec();
            let before = previous.message(depth, now).to_json_vec();
            let mut deflater = Deflater::new(DEFLATE_LEVEL);
            let deflated = deflater.compress_message(&body).map_or(0, |d| d.len());
            let patch = delta::encode(&before, &body);
            let delta_deflated = deflater.compress_message(&patch).map_or(0, |d| d.len());
            BoardRow {
                depth,
                rows: p.board().len(),
                best,
                median,
                plain: body.len(),
                deflated,
                delta: patch.len(),
                delta_deflated,
                snapshot,
            }
        })
        .collect()
}

/// Parse + process through a `SharedMarket`, 100 messages a lock; with `history`, the server's
/// history writer runs on another thread into a fresh SQLite file meanwhile. Returns the
/// processor's messages per second and the records the writer wrote.
fn shared(messages: &[(Timestamp, String)], history: bool) -> (f64, u64) {
    use marketcast::market::SharedMarket;
    let mut p = MarketProcessor::default();
    if history {
        p.enable_history(marketcast::history::PROCESSOR_CAPACITY);
    }
    let market = SharedMarket::new(p);
    let dir = std::env::temp_dir().join(format!("marketcast-bench-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join("history.sqlite3").display()
    );
    let state = marketcast::history::History::new(&url).unwrap();
    let history_phase = marketcast::base::shutdown::Phase::new();
    let stop = history_phase.listener();
    let writer = history.then(|| {
        let (state, market, stop, url) = (state.clone(), market.clone(), stop.clone(), url.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(marketcast::history::run(
                state,
                marketcast::history::HistorySettings {
                    url,
                    retention_days: 36_500,
                    buffer: 10_000_000,
                    write: true,
                },
                Some(market),
                std::sync::Arc::new(marketcast::base::time::SystemClock),
                stop,
            ));
        })
    });
    if history {
        // The writer connects and migrates before the clock starts.
        let t = Instant::now();
        while !state.is_connected() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let t = Instant::now();
    for chunk in messages.chunks(100) {
        market.with(|p| {
            for (at, text) in chunk {
                if let Ok(Message::Event(e)) = parse_message(text) {
                    p.apply(&e, *at);
                }
            }
        });
    }
    let rate = messages.len() as f64 / t.elapsed().as_secs_f64();
    history_phase.begin_end();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let written = state.status().written;
    let _ = std::fs::remove_dir_all(&dir);
    (rate, written)
}
