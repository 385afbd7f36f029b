//! Ingest: SSI messages pushed in by a feed that runs elsewhere (for example the original
//! Python backend's SSI client), through `POST /api/ingest` or the `/ws/ingest` WebSocket.
//!
//! Both ways in carry the replay format: one SSI message per line, optionally preceded by a
//! receive time and a tab; a WebSocket text frame holds one message or several lines. Each line
//! goes through the same parser as every other feed. A bad line gets a result of its own (its
//! line number, the field at fault when there is one, the reason) while the good lines around
//! it are processed. Messages are applied in the order they arrive and a batch is never
//! interleaved with another ingest batch (batches take turns), but a large batch does not hold
//! the processor for its whole length: it is applied in chunks of [`CHUNK_LINES`] lines, and
//! between two chunks the tick, the REST routes and the other feeds get the lock
//! ([`Ingest::apply_chunk`] is the one place a chunk meets the processor). How many batches may
//! be in flight at once (read, waiting their turn, or applied) is bounded by
//! [`IngestSettings::max_concurrent`], so bodies waiting for their turn are bounded in memory
//! too.
//!
//! Ingest is a feed that can wait: before a batch is applied, [`Ingest::room_for_history`]
//! waits while the history writer is behind, so the pusher's request (or its WebSocket) is
//! slowed down rather than the history losing records.
//!
//! The HTTP side (auth, body limits, the WebSocket) lives in [`crate::http`]; this module is
//! the part that does not care how the bytes came.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::recorder::Recorder;
use super::replay::split_line;
use super::ssi::SsiError;
use super::{ingest as apply_message, FeedStats};
use crate::base::backlog::Backlog;
use crate::base::time::{Clock, Timestamp};
use crate::base::Secret;
use crate::market::{MarketProcessor, SharedMarket};

/// How many bad lines a result lists (the rest are only counted).
pub const MAX_LISTED_ERRORS: usize = 100;

/// Lines applied under one hold of the processor's lock: about a millisecond of work at the
/// measured rate (about a million messages a second), so a 16 MiB batch never holds up a tick
/// or a REST request for more than that.
pub const CHUNK_LINES: usize = 1024;

/// Limits and the token of the ingest endpoints.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Required bearer token; the endpoints are off while it is empty.
    pub token: Secret,
    /// Largest request body or WebSocket message, in bytes.
    pub max_body: usize,
    /// Largest single SSI message (one line), in bytes.
    pub max_message: usize,
    /// Batches in flight at once (`INGEST_MAX_CONCURRENT`): `POST`s past it are refused with
    /// 429, a WebSocket's next message waits for a turn.
    pub max_concurrent: usize,
}

/// One bad line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based: the line of the body, or the message's number on a WebSocket connection.
    pub line: usize,
    /// The field at fault, when the parser could name one.
    pub field: Option<&'static str>,
    pub reason: String,
}

/// What happened to one batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchResult {
    /// Messages in the batch (blank and `#` lines not counted).
    pub received: usize,
    /// Messages that became market events.
    pub applied: usize,
    /// Well-formed messages of types marketcast does not use.
    pub skipped: usize,
    /// Messages that could not be used.
    pub rejected: usize,
    /// The first [`MAX_LISTED_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
}

/// Counters of the endpoints themselves (the messages are counted in [`FeedStats`]).
#[derive(Debug, Default, Serialize)]
pub struct IngestCounters {
    pub batches: AtomicU64,
    pub rejected_unauthorized: AtomicU64,
    pub rejected_too_large: AtomicU64,
    /// `POST`s refused because `max_concurrent` batches were in flight.
    pub rejected_busy: AtomicU64,
    pub websocket_connections: AtomicU64,
}

/// The ingest pipeline: shared by both endpoints. Cheap to share behind an `Arc`.
pub struct Ingest {
    pub settings: IngestSettings,
    market: SharedMarket,
    stats: Arc<FeedStats>,
    recorder: Option<Arc<Recorder>>,
    clock: Arc<dyn Clock>,
    counters: IngestCounters,
    /// Turns to have a batch in flight (see [`IngestSettings::max_concurrent`]).
    permits: Arc<tokio::sync::Semaphore>,
    /// Held for a whole batch: batches take turns, so none is interleaved with another.
    turn: Mutex<()>,
    /// The history writer's backlog, when history is on.
    history: Option<Arc<Backlog>>,
}

impl Ingest {
    /// A pipeline into `market`.
    pub fn new(
        settings: IngestSettings,
        market: SharedMarket,
        stats: Arc<FeedStats>,
        recorder: Option<Arc<Recorder>>,
        clock: Arc<dyn Clock>,
    ) -> Ingest {
        Ingest {
            permits: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent.max(1))),
            settings,
            market,
            stats,
            recorder,
            clock,
            counters: IngestCounters::default(),
            turn: Mutex::new(()),
            history: None,
        }
    }

    /// Batches wait for the history writer's `backlog` (see [`Ingest::room_for_history`]).
    pub fn waiting_for_history(mut self, backlog: Option<Arc<Backlog>>) -> Ingest {
        self.history = backlog;
        self
    }

    /// Returns once the history writer has room for another batch's records (at once when
    /// history is off, or while its database is away).
    pub async fn room_for_history(&self) {
        if let Some(backlog) = &self.history {
            backlog
                .room(|| self.market.with(|p| p.history_backlog()))
                .await;
        }
    }

    /// A turn for a batch now, or `None` when `max_concurrent` are in flight.
    pub fn try_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A turn for a batch, when one is free.
    pub async fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// The messages' counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }

    /// The endpoints' counters.
    pub fn counters(&self) -> &IngestCounters {
        &self.counters
    }

    /// Applies every line of `body`, in order, [`CHUNK_LINES`] at a time; line numbers start
    /// after `lines_before`. Blocking (the caller runs it off the async workers).
    pub fn apply(&self, body: &str, lines_before: usize) -> BatchResult {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        let mut result = BatchResult::default();
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        for (i, raw) in body.split('\n').enumerate() {
            chunk.push((lines_before + i + 1, raw));
            if chunk.len() == CHUNK_LINES {
                self.apply_chunk(&chunk, now, &mut result);
                chunk.clear();
            }
        }
        self.apply_chunk(&chunk, now, &mut result);
        result
    }

    /// Applies one chunk of numbered lines under one hold of the processor's lock.
    fn apply_chunk(&self, lines: &[(usize, &str)], now: Timestamp, result: &mut BatchResult) {
        if lines.is_empty() {
            return;
        }
        self.market.with(|p| {
            for &(line, raw) in lines {
                self.apply_line(p, line, raw, now, result);
            }
        });
    }

    /// One line of a batch: applied, skipped or rejected, into `result`.
    fn apply_line(
        &self,
        p: &mut MarketProcessor,
        line: usize,
        raw: &str,
        now: Timestamp,
        result: &mut BatchResult,
    ) {
        let reject = |result: &mut BatchResult, e: LineError| {
            result.rejected += 1;
            if result.errors.len() < MAX_LISTED_ERRORS {
                result.errors.push(e);
            }
        };
        let max = self.settings.max_message;
        let message = match split_line(line, raw) {
            Ok(Some((_, message))) => message,
            Ok(None) => return,
            Err(e) => {
                result.received += 1;
                self.stats
                    .note_refused_message("bad_time_prefix", format!("ingest line {line}: {e}"));
                reject(
                    result,
                    LineError {
                        line,
                        field: None,
                        reason: "the text before the tab is not an RFC 3339 time".into(),
                    },
                );
                return;
            }
        };
        result.received += 1;
        if message.len() > max {
            self.stats
                .note_refused_message("too_large", format!("ingest line {line}: over {max} bytes"));
            reject(
                result,
                LineError {
                    line,
                    field: None,
                    reason: format!(
                        "message of {} bytes is over the limit of {max} (INGEST_MAX_MESSAGE_SIZE)",
                        message.len()
                    ),
                },
            );
            return;
        }
        if let Some(rec) = &self.recorder {
            rec.record(now, message);
        }
        let events_before = self.stats.events();
        match apply_message(p, &self.stats, message, now, || {
            format!("ingest line {line}")
        }) {
            Ok(()) if self.stats.events() > events_before => result.applied += 1,
            Ok(()) => result.skipped += 1,
            Err(e) => reject(
                result,
                LineError {
                    line,
                    field: error_field(&e),
                    reason: e.to_string(),
                },
            ),
        }
    }
}

/// The field an SSI parse error names, if any.
pub fn error_field(e: &SsiError) -> Option<&'static str> {
    match e {
        SsiError::MissingField(f) => Some(f),
        SsiError::InvalidField { field, .. } => Some(field),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::time::{ManualClock, Timestamp};
    use crate::market::MarketProcessor;

    fn pipeline() -> Ingest {
        let clock =
            ManualClock::new(Timestamp::parse_rfc3339("2026-11-26T10:00:00+07:00").unwrap());
        Ingest::new(
            IngestSettings {
                token: Secret::from("t".to_string()),
                max_body: 1 << 20,
                max_message: 2000,
                max_concurrent: 2,
            },
            SharedMarket::new(MarketProcessor::default()),
            Arc::new(FeedStats::new("ingest")),
            None,
            Arc::new(clock),
        )
    }

    const TRADE: &str = r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"Symbol\":\"ACB\",\"LastPrice\":22950.0,\"LastVol\":100.0,\"TotalVol\":100.0,\"RefPrice\":22900.0,\"Ceiling\":24500.0,\"Floor\":21300.0}"}"#;

    #[test]
    fn good_and_bad_lines_each_get_their_result() {
        let ingest = pipeline();
        let body = format!(
            "{TRADE}\n\n# a comment\nnot json\n2026-11-26T10:00:01+07:00\t{TRADE}\n{}\n{{\"DataType\":\"F\",\"Content\":\"{{\\\"RType\\\":\\\"F\\\"}}\"}}\n",
            TRADE.replace("22950.0", "\\\"abc\\\"")
        );
        let r = ingest.apply(&body, 0);
        assert_eq!(
            (r.received, r.applied, r.skipped, r.rejected),
            (5, 2, 1, 2),
            "{r:?}"
        );
        assert_eq!(r.errors[0].line, 4);
        assert_eq!(r.errors[0].field, None);
        assert!(r.errors[0].reason.contains("JSON"), "{:?}", r.errors[0]);
        assert_eq!(r.errors[1].line, 6);
        assert_eq!(r.errors[1].field, Some("LastPrice"), "{:?}", r.errors[1]);
        let status = ingest.stats().status();
        assert_eq!(
            (status.messages, status.events, status.malformed),
            (5, 2, 2)
        );
        // Numbering continues across batches of one connection.
        let r = ingest.apply("x", 41);
        assert_eq!(r.errors[0].line, 42);
    }

    #[test]
    fn oversized_lines_and_bad_times_are_refused_alone() {
        let ingest = pipeline();
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3000));
        let body = format!("{big}\nsoon\t{TRADE}\n{TRADE}");
        let r = ingest.apply(&body, 0);
        assert_eq!((r.received, r.applied, r.rejected), (3, 1, 2), "{r:?}");
        assert!(r.errors[0].reason.contains("over the limit"));
        assert!(r.errors[1].reason.contains("RFC 3339"));
    }

    #[test]
    fn a_large_batch_is_applied_in_order_across_chunks() {
        let ingest = pipeline();
        // The same symbol's cumulative volume grows line by line: applied out of order, the
        // later lines would be counted as stale.
        let lines: Vec<String> = (1..=3 * CHUNK_LINES + 7)
            .map(|n| {
                TRADE
                    .replace("\\\"LastVol\\\":100.0", "\\\"LastVol\\\":1.0")
                    .replace("\\\"TotalVol\\\":100.0", &format!("\\\"TotalVol\\\":{n}.0"))
            })
            .collect();
        assert!(lines[1].contains("TotalVol\\\":2.0"), "{}", lines[1]);
        let r = ingest.apply(&lines.join("\n"), 0);
        assert_eq!(
            (r.received, r.applied, r.rejected),
            (lines.len(), lines.len(), 0),
            "{r:?}"
        );
        let total = ingest
            .market
            .with(|p| p.snapshot().quotes["ACB"].total_volume);
        assert_eq!(total, lines.len() as i64);
        // Numbering runs across chunks.
        let mut body = lines[..CHUNK_LINES + 2].join("\n");
        body.push_str("\nnot json");
        let r = ingest.apply(&body, 0);
        assert_eq!(r.errors[0].line, CHUNK_LINES + 3);
    }

    #[tokio::test]
    async fn turns_are_bounded() {
        let ingest = pipeline();
        let a = ingest.try_turn().expect("a first turn");
        let _b = ingest.try_turn().expect("a second turn");
        assert!(ingest.try_turn().is_none(), "max_concurrent is 2");
        drop(a);
        assert!(ingest.try_turn().is_some(), "freed");
    }

    #[test]
    fn errors_listed_are_bounded() {
        let ingest = pipeline();
        let body = "x\n".repeat(500);
        let r = ingest.apply(&body, 0);
        assert_eq!(r.rejected, 500);
        assert_eq!(r.errors.len(), MAX_LISTED_ERRORS);
    }
}
