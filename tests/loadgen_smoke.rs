//! The benchmark's load generator against the real server, briefly: it must connect every
//! client, count every message as delivered, and read the server's figures from /proc. This
//! checks the measuring tool, not speed (BENCHMARKS.md has the figures).

mod common;

use std::process::Command;

use common::*;

#[test]
fn loadgen_counts_every_message_of_a_short_run() {
    let server = ServerProcess::start(&[
        ("FEED", "static"),
        ("SNAPSHOT_FILE", &fixture("snapshot-small.json")),
        ("WS_BROADCAST_INTERVAL", "0.2"),
        // A load test from one host: 40 clients at 200 a second, past one address's rate.
        ("WS_CONNECT_RATE", "0"),
    ]);
    let out_dir = std::env::temp_dir().join(format!("marketcast-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out_file = out_dir.join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_marketcast-loadgen"))
        .args([
            "--url",
            &server.ws_url("/ws/market"),
            "--clients",
            "40",
            "--processes",
            "2",
            "--ramp",
            "200",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--deflate",
            "--server-pid",
            &server.pid().to_string(),
            "--out",
            out_file.to_str().unwrap(),
        ])
        .output()
        .expect("run the load generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(result["connected"], 40, "{result}");
    assert_eq!(result["deflate_accepted"], 40, "{result}");
    let seqs = result["seqs_published"].as_u64().unwrap();
    assert!(seqs >= 5, "2 s at 5 Hz: {result}");
    assert_eq!(result["expected"].as_u64().unwrap(), 40 * seqs);
    assert_eq!(result["delivered"], result["expected"], "{result}");
    assert_eq!(result["missed"], 0);
    // Compressed frames of the 12 KB snapshot are about a quarter of it.
    let bytes = result["bytes_per_message"].as_f64().unwrap();
    assert!(bytes > 1_000.0 && bytes < 6_000.0, "{result}");
    assert!(result["server"]["rss_end_kb"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&out_dir);
}
