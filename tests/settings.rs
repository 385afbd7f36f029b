//! Settings through the real binary: `.env` is read, real environment variables win over it,
//! and an invalid value stops start-up with a message naming the setting and its range.

mod common;

use std::process::Command;
use std::time::Duration;

fn dir_with_env(name: &str, contents: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("marketcast-settings-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), contents).unwrap();
    dir
}

#[test]
fn an_invalid_value_in_dotenv_stops_start_up_naming_the_setting() {
    let dir = dir_with_env("invalid", "WS_QUEUE_SIZE=0\nAPP_PORT=0\n");
    let out = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .current_dir(&dir)
        .env_remove("WS_QUEUE_SIZE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WS_QUEUE_SIZE must be a whole number from 1 to 100000"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_environment_wins_over_dotenv() {
    let dir = dir_with_env("override", "WS_QUEUE_SIZE=0\nAPP_PORT=0\nLOG_LEVEL=info\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .current_dir(&dir)
        .env("WS_QUEUE_SIZE", "10")
        .env("CHECKPOINT_INTERVAL", "0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It starts (the .env value would have stopped it) and logs where it listens.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Killed however the test ends, so no server outlives it.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Reap(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no listening line; it said {seen:#?}"));
        if line.contains("listening on http://127.0.0.1:") {
            break;
        }
        seen.push(line);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_without_a_file_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .current_dir(std::env::temp_dir())
        .env("FEED", "replay")
        .env_remove("REPLAY_FILE")
        .env("APP_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REPLAY_FILE"));
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let server = common::ServerProcess::start(&[("LOG_FORMAT", "json")]);
    let lines = server.drain_logs();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("listening on http://")));

    let out = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .env("LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LOG_FORMAT") && err.contains("json"), "{err}");
}

/// Start-up with `env` (in a folder without `.env`) fails; its error output.
fn refused_with(env: &[(&str, &str)]) -> String {
    let dir = dir_with_env("broker", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marketcast"));
    cmd.current_dir(&dir).env("APP_PORT", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{env:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_access_settings_name_themselves_when_invalid() {
    for (name, value, says) in [
        (
            "WS_CONNECT_RATE_TOTAL",
            "-1",
            "WS_CONNECT_RATE_TOTAL must be a number from 0 to 1000000",
        ),
        (
            "WS_CONNECT_RATE",
            "fast",
            "WS_CONNECT_RATE must be a number from 0 to 1000000",
        ),
        ("PUBLIC_REST", "maybe", "PUBLIC_REST must be true or false"),
    ] {
        let err = refused_with(&[(name, value)]);
        assert!(err.contains(says), "{name}={value}: {err}");
    }
}

#[test]
fn broker_and_ingest_limits_name_their_setting() {
    let err = refused_with(&[("REDIS_SIGNING_KEY", "short-secret")]);
    assert!(
        err.contains("REDIS_SIGNING_KEY must be 16 to 1024 characters"),
        "{err}"
    );
    assert!(
        !err.contains("short-secret"),
        "the key is never shown: {err}"
    );
    let err = refused_with(&[("REDIS_ACCEPT_FOREIGN", "perhaps")]);
    assert!(err.contains("REDIS_ACCEPT_FOREIGN"), "{err}");
    let err = refused_with(&[
        ("REDIS_ACCEPT_FOREIGN", "true"),
        ("REDIS_SIGNING_KEY", "a-long-enough-signing-key"),
    ]);
    assert!(
        err.contains("REDIS_ACCEPT_FOREIGN=true cannot go with REDIS_SIGNING_KEY"),
        "{err}"
    );
    assert!(!err.contains("a-long-enough-signing-key"), "{err}");
    let err = refused_with(&[("INGEST_MAX_CONCURRENT", "0")]);
    assert!(
        err.contains("INGEST_MAX_CONCURRENT must be a whole number from 1 to 1024"),
        "{err}"
    );
}

#[test]
fn history_query_bounds_out_of_range_are_refused_naming_the_setting() {
    for (name, value, says) in [
        (
            "HISTORY_MAX_RANGE_DAYS",
            "0",
            "HISTORY_MAX_RANGE_DAYS must be a whole number from 1 to 3660",
        ),
        (
            "HISTORY_MAX_ROWS",
            "1000001",
            "HISTORY_MAX_ROWS must be a whole number from 1 to 1000000",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_marketcast"))
            .current_dir(std::env::temp_dir())
            .env(name, value)
            .env("APP_PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}: {err}");
    }
}
