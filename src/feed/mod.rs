//! Feeds: where market events come from.
//!
//! Every feed produces SSI-shaped message text, so every feed exercises the same parser
//! ([`ssi::parse_message`]) on its way to the processor. The feeds are the built-in
//! [`simulator`] (the default, no credentials needed), [`replay`] of a recorded file, the live
//! SSI FastConnect stream ([`ssi::stream`], over the classic SignalR client in
//! [`ssi::signalr`]; `marketcast ssi-check` is [`ssi::check`]), and the [`mod@ingest`] endpoints
//! for feeds that run elsewhere. (`FEED=static` serves a fixed snapshot and runs no feed.)
//!
//! A feed never touches clients; it only updates the shared processor, and reports what it did
//! through [`FeedStats`] (including, for live feeds, whether the upstream link is up: the
//! server turns those changes into status messages). A malformed message is counted,
//! remembered as the last error, and skipped: it never stops the feed. Live feeds can also keep
//! every raw message ([`recorder`], `RECORD_FILE`).
//!
//! **Backpressure.** A feed that can wait (a replay at any speed, the simulator's back-fill,
//! ingest) asks the history writer's [`Backlog`] for room before it goes on, so it never
//! outruns the database while the database is there; a live feed (SSI, the simulator in real
//! time) never waits, and during a database outage the writer's bounded queue takes its records
//! and counts what it drops.
//!
//! Feeds take their settings as types they define themselves (`SsiSettings`, `CheckSettings`,
//! `IngestSettings`, [`replay::ReplaySpeed`]) and market knowledge (which futures contracts trade) from [`crate::market`];
//! `config` builds the settings, so a feed never reads one.

pub mod ingest;
pub mod recorder;
pub mod replay;
pub mod simulator;
pub mod ssi;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::base::backlog::Backlog;
use crate::base::shutdown::Shutdown;
use crate::base::time::{Clock, Timestamp};
use crate::market::contracts::front_month_contract;
use crate::market::{MarketEvent, MarketProcessor, SharedMarket};
use replay::ReplaySpeed;
use simulator::{Simulator, SimulatorConfig};
use ssi::Message;

/// Where a feed is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    Starting,
    /// The simulator is playing its back-fill (`SIM_BACKFILL`), as fast as history lets it.
    CatchingUp,
    Running,
    /// A replay reached its end; the last state stays on display.
    Finished,
    /// The feed stopped on an error it cannot skip (the replay file became unreadable).
    Failed,
    /// No feed: the static snapshot needs none.
    None,
}

/// Whether a live feed's upstream link is up, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkState {
    pub connected: bool,
    /// What brought it down (never a credential).
    pub error: Option<String>,
}

/// What a feed has done, for `/health` and `/metrics`.
#[derive(Debug)]
pub struct FeedStats {
    kind: &'static str,
    messages: AtomicU64,
    events: AtomicU64,
    /// Events by type, in the order of [`EVENT_TYPES`].
    events_by_type: [AtomicU64; EVENT_TYPES.len()],
    skipped: AtomicU64,
    malformed: AtomicU64,
    /// Errors the upstream reported (SignalR `Error` calls, failed invocations).
    upstream_errors: AtomicU64,
    /// Times the upstream link came back after going down.
    reconnects: AtomicU64,
    /// Milliseconds after `started` of the last message, plus one (0: none yet).
    last_message: AtomicU64,
    started: Instant,
    /// No message for longer than `FEED_STALE_AFTER`.
    stale: AtomicBool,
    detail: Mutex<(FeedState, Option<String>)>,
    /// Messages refused, by reason (`not_json`, `invalid_field`, ...).
    refused_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    /// `None` for feeds without an upstream link (simulator, replay, static).
    link: watch::Sender<Option<LinkState>>,
}

/// The market event types, as counted per type (`trade`, `quote`, ...).
pub const EVENT_TYPES: [&str; 6] = [
    "trade",
    "quote",
    "trade_and_quote",
    "foreign",
    "index",
    "bar",
];

fn event_type(event: &MarketEvent) -> usize {
    match event {
        MarketEvent::Trade(_) => 0,
        MarketEvent::Quote(_) => 1,
        MarketEvent::Combined { .. } => 2,
        MarketEvent::Foreign(_) => 3,
        MarketEvent::Index(_) => 4,
        MarketEvent::Bar(_) => 5,
    }
}

/// A copy of [`FeedStats`] at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub kind: &'static str,
    pub state: FeedState,
    /// Messages received.
    pub messages: u64,
    /// Messages that became processor events.
    pub events: u64,
    /// Well-formed messages of types marketcast does not use.
    pub skipped: u64,
    /// Messages that could not be parsed.
    pub malformed: u64,
    /// The same, by reason.
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    /// The most recent problem, if any.
    pub last_error: Option<String>,
    /// Errors reported by the upstream itself.
    pub upstream_errors: u64,
    /// For live feeds: whether the upstream link is up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Milliseconds since the last message arrived (`null` before the first).
    pub last_message_age_ms: Option<u64>,
    /// For live feeds: times the link came back after going down.
    pub reconnects: u64,
    /// No message for longer than `FEED_STALE_AFTER` (the snapshot keeps flowing, unchanged).
    pub stale: bool,
}

impl FeedStats {
    /// Events applied so far, by type (the names of [`EVENT_TYPES`]).
    pub fn events_by_type(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EVENT_TYPES
            .iter()
            .zip(&self.events_by_type)
            .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
    }

    /// Fresh counters for a feed of `kind`.
    pub fn new(kind: &'static str) -> Self {
        FeedStats {
            kind,
            messages: AtomicU64::new(0),
            events: AtomicU64::new(0),
            events_by_type: Default::default(),
            skipped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            started: Instant::now(),
            stale: AtomicBool::new(false),
            detail: Mutex::new((FeedState::Starting, None)),
            refused_by_reason: Mutex::new(BTreeMap::new()),
            link: watch::Sender::new(None),
        }
    }

    /// Milliseconds since the last message, or since the feed was created when there was none.
    pub fn quiet_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_message.load(Ordering::Relaxed).saturating_sub(1);
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Records whether the feed is stale; true when that changed.
    pub fn set_stale(&self, stale: bool) -> bool {
        self.stale.swap(stale, Ordering::Relaxed) != stale
    }

    /// Messages that became market events so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Remembers `note` as the last problem.
    pub fn note_error(&self, note: String) {
        self.detail.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(note);
    }

    /// Counts a message refused before parsing (a bad time prefix, over the size limit).
    pub fn note_refused_message(&self, reason: &'static str, note: String) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.count_reason(reason);
        self.note_malformed(note);
    }

    fn count_reason(&self, reason: &'static str) {
        *self
            .refused_by_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Counts a frame from the upstream that could not be read at all (not one message).
    pub fn note_malformed(&self, note: String) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        self.note_error(note);
    }

    /// Counts an error the upstream reported.
    pub fn note_upstream_error(&self, note: String) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        self.note_error(note);
    }

    /// Records that the upstream link went up or down. Subscribers of [`Self::link_changes`]
    /// see only real changes; coming back up after being down counts a reconnect.
    pub fn set_link(&self, connected: bool, error: Option<String>) {
        if let Some(e) = &error {
            self.note_error(e.clone());
        }
        self.link.send_if_modified(|link| {
            let was = link.as_ref().map(|l| l.connected);
            if was == Some(connected) {
                return false;
            }
            if connected && was == Some(false) {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            *link = Some(LinkState { connected, error });
            true
        });
    }

    /// Changes of the upstream link, for the server's status messages.
    pub fn link_changes(&self) -> watch::Receiver<Option<LinkState>> {
        self.link.subscribe()
    }

    /// Moves to `state`, with an optional note (kept as the last error for `Failed`).
    pub fn set_state(&self, state: FeedState, note: Option<String>) {
        let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        d.0 = state;
        if note.is_some() {
            d.1 = note;
        }
    }

    /// A snapshot of the counters.
    pub fn status(&self) -> FeedStatus {
        let d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        FeedStatus {
            kind: self.kind,
            state: d.0,
            messages: self.messages.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            malformed_by_reason: self
                .refused_by_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            last_error: d.1.clone(),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            connected: self.link.borrow().as_ref().map(|l| l.connected),
            last_message_age_ms: match self.last_message.load(Ordering::Relaxed) {
                0 => None,
                at => Some((self.started.elapsed().as_millis() as u64).saturating_sub(at - 1)),
            },
            reconnects: self.reconnects.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }
}

/// Parses one message and applies it at `now`. `origin` says where it came from (a line
/// number, say) for the error note.
pub fn ingest(
    processor: &mut MarketProcessor,
    stats: &FeedStats,
    text: &str,
    now: Timestamp,
    origin: impl FnOnce() -> String,
) -> Result<(), ssi::SsiError> {
    stats.messages.fetch_add(1, Ordering::Relaxed);
    stats.last_message.store(
        stats.started.elapsed().as_millis() as u64 + 1,
        Ordering::Relaxed,
    );
    match ssi::parse_message(text) {
        Ok(Message::Event(event)) => {
            processor.apply(&event, now);
            stats.events.fetch_add(1, Ordering::Relaxed);
            stats.events_by_type[event_type(&event)].fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(Message::Skipped { .. }) => {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            stats.count_reason(e.reason());
            let note = format!("{}: {e}", origin());
            tracing::debug!("{note}");
            stats.detail.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(note);
            Err(e)
        }
    }
}

/// How often the live simulator hands its messages to the processor.
const SIMULATOR_BATCH: Duration = Duration::from_millis(50);

/// Events applied under one hold of the processor's lock while catching up a backfill (fewer
/// when history waits sooner, see [`slice_for`]).
const SIMULATOR_CATCH_UP: usize = 20_000;

/// Lines a replay at full speed plays between two yields to the other tasks, and at most
/// between two looks at the history writer's backlog.
const REPLAY_SLICE: usize = 1024;

/// Events a feed that can wait applies between two looks at the history writer's backlog,
/// at most `most`: a quarter of the backlog's limit (an event makes at most two records, so a
/// slice never takes the writer's queue past its bound).
fn slice_for(history: Option<&Backlog>, most: usize) -> usize {
    history.map_or(most, |b| most.min(b.limit() / 4).max(1))
}

/// Waits until the history writer has room for more records (`history`: its backlog, when
/// history is on), counting the records the processor holds for it. Returns false when
/// `shutdown` came first.
pub async fn room_for_history(
    history: Option<&Backlog>,
    market: &SharedMarket,
    shutdown: &Shutdown,
) -> bool {
    let Some(backlog) = history else {
        return true;
    };
    let held = || market.with(|p| p.history_backlog());
    if !backlog.is_full(held()) {
        return true;
    }
    tokio::select! {
        _ = shutdown.recv() => false,
        _ = backlog.room(held) => true,
    }
}

/// What the simulator plays.
#[derive(Debug, Clone, Copy)]
pub struct SimulatorRun {
    pub seed: u64,
    /// Events per second.
    pub rate: f64,
    /// Simulated session played at once at start-up.
    pub backfill: Duration,
}

/// Runs the simulator against the wall clock until `shutdown`. With `backfill`, the simulated
/// session starts that long before now and its events up to now are applied at once (in
/// slices, so the lock is never held long): a late-session market, full intraday series
/// included, that goes on moving (benchmarks of large snapshots). The back-fill can wait, and
/// does, for the history writer (`history`) between slices; once caught up the simulator is a
/// live feed and never waits.
pub async fn run_simulator(
    market: SharedMarket,
    stats: Arc<FeedStats>,
    run: SimulatorRun,
    history: Option<Arc<Backlog>>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) {
    let start = clock.now().plus_millis(-(run.backfill.as_millis() as i64));
    let mut config = SimulatorConfig::new(run.seed, start.0);
    config.events_per_second = run.rate;
    config.futures_symbol = front_month_contract(start.0.date_naive());
    let mut sim = Simulator::new(config);
    let mut state = if run.backfill.is_zero() {
        FeedState::Running
    } else {
        FeedState::CatchingUp
    };
    stats.set_state(state, None);
    let mut pending = None;
    let mut batch = Vec::new();
    let slice = slice_for(history.as_deref(), SIMULATOR_CATCH_UP);
    let mut ticks = tokio::time::interval(SIMULATOR_BATCH);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = ticks.tick() => {}
        }
        let now = clock.now();
        while batch.len() < slice {
            let (at, text) = pending.take().unwrap_or_else(|| sim.next_message());
            let at = Timestamp(at);
            if at > now {
                pending = Some((at.0, text));
                break;
            }
            batch.push((at, text));
        }
        let caught_up = pending.is_some();
        market.with(|p| {
            for (at, text) in batch.drain(..) {
                // The simulator only writes well-formed messages; a failure would be counted.
                let _ = ingest(p, &stats, &text, at, || "simulator".into());
            }
        });
        if caught_up && state == FeedState::CatchingUp {
            state = FeedState::Running;
            stats.set_state(state, None);
        }
        if !caught_up {
            // More of the backfill is due: the next slice at once, after the others had a turn
            // and the history writer had room.
            if !room_for_history(history.as_deref(), &market, &shutdown).await {
                return;
            }
            ticks.reset_immediately();
            tokio::task::yield_now().await;
        }
    }
}

/// Plays a replay file against the wall clock until its end or `shutdown`. Events are applied
/// at the current time; the recorded times only pace them. At any speed the replay waits for
/// the history writer (`history`) when it is behind, every [`REPLAY_SLICE`] lines.
pub async fn run_replay(
    market: SharedMarket,
    stats: Arc<FeedStats>,
    path: &Path,
    speed: ReplaySpeed,
    history: Option<Arc<Backlog>>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) {
    // The replay stops on a problem of the file itself (not of one message).
    let fail = |note: String| {
        tracing::error!("{note}");
        stats.set_state(FeedState::Failed, Some(note));
    };
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot open {}: {e}", path.display())),
    };
    stats.set_state(FeedState::Running, None);
    let mut lines = tokio::io::BufReader::new(file).lines();
    let mut line_no = 0usize;
    let look_every = slice_for(history.as_deref(), REPLAY_SLICE);
    let started = tokio::time::Instant::now();
    let mut first_at: Option<Timestamp> = None;
    loop {
        let line = tokio::select! {
            _ = shutdown.recv() => return,
            line = lines.next_line() => line,
        };
        line_no += 1;
        let text = match line {
            Ok(Some(text)) => text,
            Ok(None) => break,
            Err(e) => {
                return fail(format!(
                    "{} line {line_no}: cannot read: {e}",
                    path.display()
                ))
            }
        };
        let parsed = match replay::parse_line(line_no, &text) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        match (speed, parsed.at) {
            (ReplaySpeed::Factor(factor), Some(at)) => {
                let first = *first_at.get_or_insert(at);
                let recorded_ms = (at.epoch_millis() - first.epoch_millis()).max(0);
                let due = started + Duration::from_secs_f64(recorded_ms as f64 / 1000.0 / factor);
                tokio::select! {
                    _ = shutdown.recv() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            (ReplaySpeed::Max, _) if line_no % REPLAY_SLICE == 0 => tokio::task::yield_now().await,
            _ => {}
        }
        if line_no % look_every == 0
            && !room_for_history(history.as_deref(), &market, &shutdown).await
        {
            return;
        }
        let now = clock.now();
        market.with(|p| {
            let _ = ingest(p, &stats, &parsed.message, now, || {
                format!("{} line {}", path.display(), parsed.line)
            });
        });
    }
    tracing::info!(file = %path.display(), lines = line_no - 1, "replay finished");
    stats.set_state(FeedState::Finished, None);
}
