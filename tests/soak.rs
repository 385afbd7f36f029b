//! The churn and soak script (`bench/soak.py`), CI-sized: clients connect, read, vanish without
//! a close and reconnect while the simulator runs; afterwards the server's open files are back
//! to their baseline and its memory is within the script's bound. BENCHMARKS.md has the
//! full-length run's figures.

use std::process::Command;

#[test]
fn churn_leaves_no_descriptor_or_memory_behind() {
    let out = Command::new("python3")
        .arg(format!("{}/bench/soak.py", env!("CARGO_MANIFEST_DIR")))
        .args([
            "--server-bin",
            env!("CARGO_BIN_EXE_marketcast"),
            "--duration",
            "15",
            "--clients",
            "300",
            "--rss-bound-mb",
            "64",
        ])
        .output()
        .expect("python3 runs bench/soak.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| {
            panic!(
                "soak.py printed no result ({e}): {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(out.status.success(), "soak found problems: {result}");
    assert_eq!(result["problems"], serde_json::json!([]), "{result}");
    assert!(result["connections"].as_u64().unwrap() > 300, "{result}");
    assert_eq!(result["server_clients_after"], 0);
    assert!(
        result["open_files_after"].as_u64() <= result["open_files_before"].as_u64(),
        "{result}"
    );
}
