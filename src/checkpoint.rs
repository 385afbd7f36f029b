//! The session's state on disk, so a restart at 11:00 does not reset the day to zero.
//!
//! Active buy and sell volumes, foreign flows, the intraday series and the basis history add up
//! over a trading session; none of it can be fetched again from SSI. So the processor's state is
//! written to `DATA_DIR/checkpoint.json` every `CHECKPOINT_INTERVAL` seconds and at shutdown,
//! and read back at start-up. A `kill -9` loses at most one interval.
//!
//! * **Atomic.** The state is written to a temporary file in the same folder, flushed to disk,
//!   and renamed over the old checkpoint (then the folder is flushed), so a crash leaves either
//!   the old checkpoint or the new one, never half of one.
//! * **Off the feed's path.** The processor is cloned under its lock (a memory copy); the
//!   serialising and the disk write happen on a blocking thread afterwards.
//! * **Never trusted blindly.** A checkpoint that cannot be read, is truncated, was written by
//!   another format version, or belongs to an earlier session (the 15:00 reset has passed since)
//!   is reported and ignored: the server starts empty rather than wrong.
//! * **Times** keep the microseconds of the wire format, so a restored session's snapshot is
//!   the same byte for byte.
//! * **`seq` continues.** The last broadcast `seq` is kept too, so after a restart clients see
//!   `seq` move on (a gap they can tell from a restart to 1).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::shutdown::Shutdown;
use crate::base::time::{Clock, Timestamp};
use crate::market::{MarketProcessor, ProcessorConfig, SharedMarket};

/// The checkpoint format this build reads and writes.
pub const FORMAT: u32 = 1;
/// The checkpoint's file name in `DATA_DIR`.
pub const FILE_NAME: &str = "checkpoint.json";
const WRITER: &str = "marketcast";

/// Why a checkpoint was not used or not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a checkpoint marketcast can read ({reason}); ignored")]
    Corrupt { path: String, reason: String },
    #[error("{path}: written in checkpoint format {found}, this build reads {FORMAT}; ignored")]
    ForeignFormat { path: String, found: u32 },
    #[error("{path}: belongs to the session of {saved}, not today's ({now}); discarded")]
    OtherSession {
        path: String,
        saved: String,
        now: String,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    writer: &'static str,
    format: u32,
    written_at: Timestamp,
    seq: u64,
    processor: &'a MarketProcessor,
}

#[derive(Deserialize)]
struct Header {
    writer: String,
    format: u32,
}

#[derive(Deserialize)]
struct Stored {
    written_at: Timestamp,
    seq: u64,
    processor: MarketProcessor,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Restored {
    pub processor: MarketProcessor,
    /// The last `seq` broadcast before it was written.
    pub seq: u64,
    pub written_at: Timestamp,
}

/// Where checkpoints go.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    /// One write at a time: the periodic writer and the one at shutdown share the temp file.
    writing: Arc<Mutex<()>>,
}

impl Checkpoints {
    /// Checkpoints in `dir` (created when missing).
    pub fn new(dir: &Path) -> Result<Checkpoints, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Checkpoints {
            dir: dir.to_path_buf(),
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// The checkpoint file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Writes `processor` and `seq` atomically.
    pub fn save(
        &self,
        processor: &MarketProcessor,
        seq: u64,
        now: Timestamp,
    ) -> Result<(), CheckpointError> {
        let path = self.path();
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let envelope = Envelope {
            writer: WRITER,
            format: FORMAT,
            written_at: now,
            seq,
            processor,
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| CheckpointError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)?;
        // The rename is durable once the folder is.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Reads the checkpoint back for a processor set up by `config`. `Ok(None)` when there is
    /// none; an error when there is one that must not be used (it is left in place, and the
    /// next checkpoint replaces it).
    pub fn load(
        &self,
        config: ProcessorConfig,
        now: Timestamp,
    ) -> Result<Option<Restored>, CheckpointError> {
        let path = self.path();
        let shown = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: shown,
                    source,
                })
            }
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: shown.clone(),
            reason,
        };
        let header: Header = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.writer != WRITER {
            return Err(corrupt(format!("written by {:?}", header.writer)));
        }
        if header.format != FORMAT {
            return Err(CheckpointError::ForeignFormat {
                path: shown,
                found: header.format,
            });
        }
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let today = now.session_key();
        if let Some(saved) = stored.processor.session_key() {
            if saved != today {
                return Err(CheckpointError::OtherSession {
                    path: shown,
                    saved: saved.to_string(),
                    now: today.to_string(),
                });
            }
        }
        Ok(Some(Restored {
            processor: stored.processor.with_config(config),
            seq: stored.seq,
            written_at: stored.written_at,
        }))
    }
}

/// What the checkpoint writer has done, for `/health`.
#[derive(Debug, Default, Serialize)]
pub struct CheckpointStatus {
    pub written: AtomicU64,
    pub failed: AtomicU64,
    /// The last write's time (RFC 3339), or its error.
    #[serde(serialize_with = "serialize_mutex")]
    pub last: Mutex<Option<String>>,
    /// What start-up did with the checkpoint it found.
    #[serde(serialize_with = "serialize_mutex")]
    pub restore: Mutex<Option<String>>,
}

fn serialize_mutex<S: serde::Serializer>(
    m: &Mutex<Option<String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    m.lock().unwrap_or_else(|e| e.into_inner()).serialize(s)
}

/// The `seq` of the latest broadcast, read when a checkpoint is taken (the `/ws/market`
/// channel's; a function so that this module needs no hub).
pub type LastSeq = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The processor to start with: the checkpoint's when one of today's session is there, a
/// fresh one otherwise (also without `checkpoints`). Returns the `seq` to continue from too.
///
/// Ticks may have gone out after the last checkpoint (at most one `interval`'s worth, at one
/// per `tick`): the returned `seq` starts past them, so a `seq` is never used twice for
/// different content.
pub fn restore(
    checkpoints: Option<&Checkpoints>,
    config: ProcessorConfig,
    now: Timestamp,
    status: &CheckpointStatus,
    interval: Duration,
    tick: Duration,
) -> (MarketProcessor, u64) {
    let (processor, seq) = starting_processor(checkpoints, config, now, status);
    let start_seq = if seq == 0 {
        0
    } else {
        let per_checkpoint = interval.as_secs_f64() / tick.as_secs_f64();
        seq + per_checkpoint.ceil() as u64 + 1
    };
    (processor, start_seq)
}

/// The checkpoint's processor and `seq`, or a fresh one and 0; the outcome is noted in
/// `status` (and logged).
fn starting_processor(
    checkpoints: Option<&Checkpoints>,
    config: ProcessorConfig,
    now: Timestamp,
    status: &CheckpointStatus,
) -> (MarketProcessor, u64) {
    let Some(cps) = checkpoints else {
        return (MarketProcessor::new(config), 0);
    };
    let note =
        |text: String| *status.restore.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    match cps.load(config.clone(), now) {
        Ok(Some(restored)) => {
            let text = format!(
                "restored the session from {} (written {}, seq {})",
                cps.path().display(),
                restored.written_at,
                restored.seq
            );
            tracing::info!("{text}");
            note(text);
            (restored.processor, restored.seq)
        }
        Ok(None) => {
            note("no checkpoint: started empty".into());
            (MarketProcessor::new(config), 0)
        }
        Err(e) => {
            tracing::warn!("checkpoint: {e}");
            note(e.to_string());
            (MarketProcessor::new(config), 0)
        }
    }
}

/// Takes one checkpoint now: the processor is copied under its lock, written outside it.
pub async fn write_now(
    checkpoints: &Checkpoints,
    market: &SharedMarket,
    last_seq: &LastSeq,
    clock: &dyn Clock,
    status: &CheckpointStatus,
) {
    let now = clock.now();
    let copy = market.with(|p| p.clone());
    let seq = last_seq();
    let cp = checkpoints.clone();
    let result = tokio::task::spawn_blocking(move || cp.save(&copy, seq, now)).await;
    let note = match result {
        Ok(Ok(())) => {
            status.written.fetch_add(1, Ordering::Relaxed);
            now.to_string()
        }
        Ok(Err(e)) => {
            status.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!("checkpoint not written: {e}");
            format!("failed: {e}")
        }
        Err(e) => {
            status.failed.fetch_add(1, Ordering::Relaxed);
            format!("failed: {e}")
        }
    };
    *status.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
}

/// Writes a checkpoint every `interval` until `shutdown` (the server writes a last one after).
pub async fn run(
    checkpoints: Checkpoints,
    market: SharedMarket,
    last_seq: LastSeq,
    clock: Arc<dyn Clock>,
    interval: Duration,
    status: Arc<CheckpointStatus>,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = ticks.tick() => {}
        }
        write_now(&checkpoints, &market, &last_seq, clock.as_ref(), &status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::simulator::{Simulator, SimulatorConfig};
    use crate::feed::ssi::{parse_message, Message};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("marketcast-cp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    /// A processor after a simulated hour of trading.
    fn busy_processor() -> MarketProcessor {
        let start = at("2026-11-26T09:15:00+07:00");
        let mut sim = Simulator::new(SimulatorConfig::new(5, start.0));
        let mut p = MarketProcessor::default();
        for _ in 0..20_000 {
            let (t, text) = sim.next_message();
            if let Ok(Message::Event(e)) = parse_message(&text) {
                p.apply(&e, Timestamp(t));
            }
        }
        p
    }

    #[test]
    fn a_checkpoint_restores_the_same_snapshot_and_seq() {
        let d = dir("roundtrip");
        let cps = Checkpoints::new(&d).unwrap();
        let p = busy_processor();
        let now = at("2026-11-26T11:00:00+07:00");
        cps.save(&p, 4321, now).unwrap();
        let r = cps.load(ProcessorConfig::default(), now).unwrap().unwrap();
        assert_eq!(r.seq, 4321);
        assert_eq!(r.written_at, now);
        // Times keep the wire format's microseconds: the snapshot is the same, byte for byte.
        assert_eq!(
            r.processor.snapshot().to_json_vec(),
            p.snapshot().to_json_vec()
        );
        assert_eq!(r.processor.counters(), p.counters());
        assert!(!d.join("checkpoint.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn no_checkpoint_is_not_an_error() {
        let d = dir("none");
        let cps = Checkpoints::new(&d).unwrap();
        let now = at("2026-11-26T11:00:00+07:00");
        assert!(cps.load(ProcessorConfig::default(), now).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_truncated_foreign_and_stale_checkpoints_are_refused() {
        let d = dir("bad");
        let cps = Checkpoints::new(&d).unwrap();
        let now = at("2026-11-26T11:00:00+07:00");
        cps.save(&busy_processor(), 7, now).unwrap();
        let good = std::fs::read(cps.path()).unwrap();
        let load = || cps.load(ProcessorConfig::default(), now);

        std::fs::write(cps.path(), &good[..good.len() / 2]).unwrap();
        assert!(
            matches!(load(), Err(CheckpointError::Corrupt { .. })),
            "truncated"
        );
        std::fs::write(cps.path(), b"\x00\x01garbage").unwrap();
        assert!(
            matches!(load(), Err(CheckpointError::Corrupt { .. })),
            "garbage"
        );
        let text = String::from_utf8(good.clone()).unwrap();
        std::fs::write(
            cps.path(),
            text.replacen("\"format\":1", "\"format\":99", 1),
        )
        .unwrap();
        let e = load().unwrap_err();
        assert!(
            matches!(e, CheckpointError::ForeignFormat { found: 99, .. }),
            "{e}"
        );
        std::fs::write(
            cps.path(),
            text.replacen("\"writer\":\"marketcast\"", "\"writer\":\"x\"", 1),
        )
        .unwrap();
        assert!(
            matches!(load(), Err(CheckpointError::Corrupt { .. })),
            "other writer"
        );
        // A well-formed checkpoint of the session before the 15:00 reset.
        std::fs::write(cps.path(), &good).unwrap();
        let tomorrow = at("2026-11-27T09:00:00+07:00");
        let e = cps.load(ProcessorConfig::default(), tomorrow).unwrap_err();
        assert!(matches!(e, CheckpointError::OtherSession { .. }), "{e}");
        assert!(e.to_string().contains("discarded"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
