//! `RECORD_FILE`: every raw message a live feed receives, appended in the replay format.
//!
//! A line is the receive time, a tab, and the message exactly as it arrived (SSI's envelope
//! text), which is what `FEED=replay` and `marketcast snapshot --replay` read. A user can play
//! a recorded day again at 10x, and a bug report can carry the day that caused it.
//!
//! The feed must never wait on a disk, so [`Recorder::record`] only hands the line to a
//! bounded queue; a writer thread appends it through a buffer and flushes whenever the queue
//! runs dry (so a crash loses at most what was in flight). When the disk cannot keep up and the
//! queue is full, lines are dropped and counted, never the feed slowed.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::replay::format_line;
use crate::base::time::Timestamp;

/// Lines that may wait for the disk before new ones are dropped (about 64 MB of messages).
const QUEUE_LINES: usize = 100_000;

/// What the recorder has done, for `/health`.
#[derive(Debug, Default, serde::Serialize)]
pub struct RecorderCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Appends raw messages to a replay file off the feed's path.
pub struct Recorder {
    path: PathBuf,
    tx: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<RecorderCounters>,
}

impl Recorder {
    /// Opens `path` for appending (creating it) and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let counters = Arc::new(RecorderCounters::default());
        let c = counters.clone();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_lines(rx, BufWriter::new(file), &c, &shown))?;
        Ok(Recorder {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            counters,
        })
    }

    /// Queues one message received at `at`.
    pub fn record(&self, at: Timestamp, message: &str) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sent = match tx.as_ref() {
            Some(tx) => match tx.try_send(format_line(at, message)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written, dropped and failed so far.
    pub fn counters(&self) -> &RecorderCounters {
        &self.counters
    }

    /// Writes out everything queued and stops the writer (later records are dropped).
    pub fn finish(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_lines(
    rx: Receiver<String>,
    mut out: BufWriter<std::fs::File>,
    counters: &RecorderCounters,
    path: &str,
) {
    let mut warned = false;
    let mut write = |out: &mut BufWriter<std::fs::File>, line: &str| {
        match writeln!(out, "{line}") {
            Ok(()) => counters.written.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if !warned {
                    tracing::error!("RECORD_FILE {path}: cannot write: {e}");
                    warned = true;
                }
                counters.write_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    };
    while let Ok(line) = rx.recv() {
        write(&mut out, &line);
        while let Ok(line) = rx.try_recv() {
            write(&mut out, &line);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::replay::parse_line;

    #[test]
    fn records_lines_the_replay_reader_reads_back() {
        let dir = std::env::temp_dir().join(format!("marketcast-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("day.jsonl");
        let _ = std::fs::remove_file(&path);
        let at = Timestamp::parse_rfc3339("2026-11-26T09:15:00.125+07:00").unwrap();
        let msg =
            r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"Symbol\":\"ACB\"}"}"#;
        let rec = Recorder::open(&path).unwrap();
        rec.record(at, msg);
        rec.record(at, msg);
        rec.finish();
        rec.record(at, msg);
        assert_eq!(rec.counters().written.load(Ordering::Relaxed), 2);
        assert_eq!(rec.counters().dropped.load(Ordering::Relaxed), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let line = parse_line(1, lines[0]).unwrap().unwrap();
        assert_eq!(line.at, Some(at));
        assert_eq!(line.message, msg);
        // Appends: a second recorder on the same file keeps what is there.
        let rec = Recorder::open(&path).unwrap();
        rec.record(at, msg);
        drop(rec);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
