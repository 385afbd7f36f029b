//! History in a real database: what the session leaves behind (ticks, 1-minute candles, foreign
//! flow, index snapshots and candles, basis points), for the `/api/history/...` routes that the
//! original frontend's chart and derivatives pages read.
//!
//! Why it is its own module: it is the one part of marketcast that writes to a disk on a
//! schedule, and it must never make a live feed or the fan-out wait for it. The processor only
//! appends records to a bounded list ([`crate::market::history`]); the [`run`] task takes them
//! once a second (or at once when a feed is waiting for room), folds them into candles, and
//! writes them in one transaction per batch. With no setting the database is an SQLite file in
//! `DATA_DIR`; with `DATABASE_URL` it is PostgreSQL (what several nodes share). The same SQL
//! runs on both ([`store`]). The writer has a connection of its own; the routes read through a
//! small pool of their own ([`store::READERS`]), so no number of readers can starve it.
//!
//! **Nothing is lost while the database is there.** A feed that can wait (a replay, the
//! simulator's back-fill, ingest) waits on the writer's [`Backlog`] when the records not yet
//! written reach [`WAIT_AT`], so it goes at the database's pace instead of overflowing the
//! queues. A live feed (SSI, the simulator in real time) never waits.
//!
//! A database that is down or goes away: streaming goes on (nobody waits for a writer that
//! cannot write); the routes answer 503 with the original's body; `/health` says so; records
//! wait in a queue of at most `HISTORY_BUFFER` and past that the oldest are dropped and
//! counted; the writer reconnects with backoff and the queue drains when the database is back.
//! A failed batch is retried whole, never half written.
//!
//! Memory: the processor keeps at most [`PROCESSOR_CAPACITY`] records between two takes and
//! the queue at most `HISTORY_BUFFER`; with the database there both stay under [`WAIT_AT`]
//! plus one feed slice, and the queue gives its room back once it is written out.

pub mod api;
pub mod store;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use sqlx::AnyPool;

use crate::base::backlog::Backlog;
use crate::base::shutdown::Shutdown;
use crate::base::time::Clock;
use crate::base::{redact_url, Backoff};
use crate::market::history::{Candle, CandleBuilder, HistoryRecord, IndexCandle};
use crate::market::SharedMarket;
use store::Engine;

/// How often records are taken from the processor and written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Records the processor keeps between two takes, at most: a live feed's records for as long
/// as one write may take (a feed that can wait keeps it under [`WAIT_AT`] plus a slice). About
/// 110 bytes a record, so at most about 22 MB.
pub const PROCESSOR_CAPACITY: usize = 200_000;

/// Records written in one transaction, at most.
const MAX_BATCH: usize = 20_000;

/// Records not yet written (the processor's and the queue's) at which a feed that can wait
/// waits: two batches, so the writer always has the next one ready while the feed waits (less
/// with a small `HISTORY_BUFFER`, see [`wait_at`]).
pub const WAIT_AT: usize = 2 * MAX_BATCH;

/// Where feeds that can wait wait, for a queue of `buffer` records: [`WAIT_AT`], or half the
/// queue when that is less. A feed that can wait looks between slices of at most a quarter of
/// this many events, and an event makes at most two records, so the queue never overflows
/// while the database takes records.
pub fn wait_at(buffer: usize) -> usize {
    WAIT_AT.min(buffer / 2).max(1)
}

/// Records the queue keeps room for once it is written out (more is given back).
const KEEP_ROOM: usize = MAX_BATCH;

/// The longest a batch may take before the database counts as away (a half-open connection
/// must not stall the writer while records pile up).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// History settings.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// `sqlite://...` or `postgres://...`.
    pub url: String,
    /// Ticks older than this many days are deleted (candles are kept).
    pub retention_days: u32,
    /// Records waiting for the database, at most; past that the oldest are dropped.
    pub buffer: usize,
    /// Write at all (an edge, which has no feed, only reads).
    pub write: bool,
}

/// The database's state, for the routes and `/health`.
pub struct History {
    engine: Engine,
    url_redacted: String,
    pool: RwLock<Option<AnyPool>>,
    connected: AtomicBool,
    /// This node writes (of the nodes sharing a PostgreSQL, the one holding the writer lock).
    writer: AtomicBool,
    queued: AtomicUsize,
    /// Records the processor made for history (all of them, written or not).
    recorded: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    /// Records the processor dropped because the writer did not take them in time.
    dropped_unread: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// What feeds that can wait wait on.
    backlog: Arc<Backlog>,
    /// What a query may ask for.
    bounds: api::QueryBounds,
}

/// `/health`'s view of history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStatus {
    pub engine: &'static str,
    pub url: String,
    pub connected: bool,
    /// This node writes the history (with PostgreSQL shared by several nodes, one of them).
    pub writer: bool,
    /// Records waiting to be written.
    pub queued: usize,
    /// Records the processor made for history since start-up (written, waiting or dropped).
    pub recorded: u64,
    pub written: u64,
    /// Records dropped because the queue was full while the database was away.
    pub dropped: u64,
    pub last_error: Option<String>,
}

impl History {
    /// State for a database at `url` (nothing is connected yet), with the default bounds on
    /// queries and the default queue.
    pub fn new(url: &str) -> Result<Arc<History>, store::StoreError> {
        History::bounded(url, api::QueryBounds::default(), 200_000)
    }

    /// State for a database at `url` whose queries keep to `bounds`, and whose writer queues
    /// at most `buffer` records (`HISTORY_BUFFER`, what feeds that can wait keep under).
    pub fn bounded(
        url: &str,
        bounds: api::QueryBounds,
        buffer: usize,
    ) -> Result<Arc<History>, store::StoreError> {
        Ok(Arc::new(History {
            engine: Engine::of(url)?,
            url_redacted: redact_url(url),
            pool: RwLock::new(None),
            connected: AtomicBool::new(false),
            writer: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            recorded: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_unread: AtomicU64::new(0),
            last_error: Mutex::new(None),
            backlog: Arc::new(Backlog::new(wait_at(buffer))),
            bounds,
        }))
    }

    /// The backlog a feed that can wait waits on before it hands the processor more.
    pub fn backlog(&self) -> Arc<Backlog> {
        self.backlog.clone()
    }

    /// The readers' pool (the routes') when the database is up.
    pub fn pool(&self) -> Option<AnyPool> {
        if !self.connected.load(Ordering::Relaxed) {
            return None;
        }
        self.pool.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the last attempt to reach the database worked.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// What `/health` shows.
    pub fn status(&self) -> HistoryStatus {
        HistoryStatus {
            engine: self.engine.as_str(),
            url: self.url_redacted.clone(),
            connected: self.is_connected(),
            writer: self.writer.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed)
                + self.dropped_unread.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn fail(&self, what: &str, e: &dyn std::fmt::Display) {
        let was = self.connected.swap(false, Ordering::Relaxed);
        // Nobody waits for a writer that cannot write: live or not, feeds go on, and the
        // bounded queue takes their records.
        self.backlog.set_draining(false);
        let note = format!("{what}: {e}");
        if was {
            tracing::warn!(
                "history database unavailable ({note}); streaming goes on, records queue up"
            );
        } else {
            tracing::debug!("history database still unavailable: {note}");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
    }

    /// Records in the queue now: `/health`'s `queued`, and what feeds that can wait wait on.
    fn hold(&self, queued: usize) {
        self.queued.store(queued, Ordering::Relaxed);
        self.backlog.set_held(queued);
    }

    fn up(&self) {
        self.backlog.set_draining(true);
        if !self.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(engine = self.engine.as_str(), "history database connected");
        }
    }
}

/// Records and candles waiting for the database, bounded.
#[derive(Default)]
struct Pending {
    records: VecDeque<HistoryRecord>,
    candles: BTreeMap<(i64, String), Candle>,
    index_candles: BTreeMap<(i64, String), IndexCandle>,
}

impl Pending {
    /// Adds records, dropping the oldest past `bound`; returns how many were dropped.
    fn add(&mut self, records: Vec<HistoryRecord>, bound: usize) -> u64 {
        self.records.extend(records);
        let mut dropped = 0;
        while self.records.len() > bound {
            self.records.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// Adds candle increments; one already waiting for the same minute takes the new one in
    /// (first open, widest range, last close, volumes added), as the database would.
    fn add_candles(&mut self, candles: Vec<Candle>, index: Vec<IndexCandle>, bound: usize) {
        use std::collections::btree_map::Entry;
        for c in candles {
            match self.candles.entry((c.minute_us, c.symbol.clone())) {
                Entry::Vacant(e) => {
                    e.insert(c);
                }
                Entry::Occupied(mut e) => {
                    let w = e.get_mut();
                    w.high = w.high.max(c.high);
                    w.low = w.low.min(c.low);
                    w.close = c.close;
                    w.volume += c.volume;
                    w.active_buy_vol += c.active_buy_vol;
                    w.active_sell_vol += c.active_sell_vol;
                }
            }
        }
        for c in index {
            match self
                .index_candles
                .entry((c.minute_us, c.index_name.clone()))
            {
                Entry::Vacant(e) => {
                    e.insert(c);
                }
                Entry::Occupied(mut e) => {
                    let w = e.get_mut();
                    w.high = w.high.max(c.high);
                    w.low = w.low.min(c.low);
                    w.close = c.close;
                    w.volume += c.volume;
                }
            }
        }
        // Candles are small and one per symbol a minute; past the bound the oldest go.
        while self.candles.len() > bound {
            self.candles.pop_first();
        }
        while self.index_candles.len() > bound {
            self.index_candles.pop_first();
        }
    }
}

/// Takes the processor's records (`market`; none on an edge, which only reads) every second
/// and writes them until `stop`, then once more.
///
/// **One writer per shared database.** Nodes that share a PostgreSQL (a producer and its
/// standbys) would each write the same session. The writer is the node holding a PostgreSQL
/// advisory lock, on a connection of its own: the database's own arbiter, independent of Redis
/// (history goes on while Redis is away). The others take their processor's records and drop
/// them. When the writer dies its connection closes, the lock is free, and another node takes
/// it within a second; the records of that second or two are the failover's gap. A writer that
/// loses the database keeps queueing (up to `HISTORY_BUFFER`) as before; when the database is
/// back and another node took the lock meanwhile, its queue is dropped and counted. With SQLite
/// (a file per node) every node writes its own.
pub async fn run(
    history: Arc<History>,
    settings: HistorySettings,
    market: Option<SharedMarket>,
    clock: Arc<dyn Clock>,
    stop: Shutdown,
) {
    let shared = history.engine == Engine::Postgres;
    let mut builder = CandleBuilder::default();
    let mut pending = Pending::default();
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_at = tokio::time::Instant::now();
    let mut backoff =
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).without_jitter();
    let mut next_purge = tokio::time::Instant::now();
    // Until told otherwise (another node holds the lock) records are kept for writing.
    let mut writer = settings.write;
    let mut lock: Option<store::WriterLock> = None;
    // The writer's own pool; the routes read through `history.pool`, another one.
    let mut own: Option<AnyPool> = None;
    loop {
        let stopping = tokio::select! {
            _ = stop.recv() => true,
            _ = every.tick() => false,
            // A feed waits for room: take its records now.
            _ = history.backlog.wanted() => false,
        };
        // A node without a processor (an edge) only reads the database.
        let (records, unread, made) = market
            .as_ref()
            .map(|m| m.with(|p| (p.take_history(), p.history_dropped(), p.history_made())))
            .unwrap_or_default();
        history.dropped_unread.store(unread, Ordering::Relaxed);
        history.recorded.store(made, Ordering::Relaxed);

        let now = tokio::time::Instant::now();
        if own.is_none() && now >= retry_at {
            let open = async {
                let writer = store::open(&settings.url).await?;
                let readers = store::open_readers(&settings.url).await?;
                Ok::<_, store::StoreError>((writer, readers))
            };
            match tokio::time::timeout(Duration::from_secs(10), open).await {
                Ok(Ok((w, readers))) => {
                    *history.pool.write().unwrap_or_else(|e| e.into_inner()) = Some(readers);
                    own = Some(w);
                    history.up();
                }
                Ok(Err(e)) => history.fail("connect", &e),
                Err(_) => history.fail("connect", &"no answer in 10 s"),
            }
        }
        let pool = own.clone();
        if shared && settings.write {
            if let Some(pool) = &pool {
                claim(&history, pool, &mut lock, &mut writer, &mut pending).await;
            }
        }
        history
            .writer
            .store(writer && (lock.is_some() || !shared), Ordering::Relaxed);

        if writer {
            for r in &records {
                builder.add(r);
            }
            let (candles, index) = builder.take_touched();
            pending.add_candles(candles, index, settings.buffer);
            let dropped = pending.add(records, settings.buffer);
            if dropped > 0 {
                history.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        history.hold(pending.records.len());

        // Writes need the lock on a shared database; without anything to write this only asks
        // the database whether it is there.
        let may_write = !shared || lock.is_some();
        // The last pass (at shutdown) writes whatever the backoff says.
        if let Some(pool) = pool.clone().filter(|_| stopping || now >= retry_at) {
            let written_out = |left: usize| history.hold(left);
            let result = if may_write {
                flush(&pool, &mut pending, &written_out).await
            } else {
                flush(&pool, &mut Pending::default(), &written_out).await
            };
            match result {
                Ok(n) => {
                    history.written.fetch_add(n, Ordering::Relaxed);
                    history.up();
                    backoff.reset();
                }
                Err(e) => {
                    history.fail("write", &e);
                    retry_at = now + backoff.next_wait();
                }
            }
            history.hold(pending.records.len());
            if pending.records.is_empty() {
                // A burst's room is given back once it is written out.
                pending.records.shrink_to(KEEP_ROOM);
            }
            if writer && may_write && history.is_connected() && now >= next_purge {
                next_purge = now + Duration::from_secs(3600);
                let keep_us = i64::from(settings.retention_days) * 86_400_000_000;
                let before = clock.now().0.timestamp_micros() - keep_us;
                match store::purge_raw(&pool, before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        rows = n,
                        "history: raw rows (ticks, foreign flow, index snapshots, basis) past HISTORY_RETENTION_DAYS deleted"
                    ),
                    Err(e) => tracing::warn!("history: purging old rows failed: {e}"),
                }
            }
        } else if pool.is_none() && now >= retry_at {
            retry_at = now + backoff.next_wait();
        }
        if stopping {
            let left = pending.records.len();
            if left > 0 {
                tracing::warn!(
                    records = left,
                    "history: records not written at shutdown (the database was away)"
                );
            }
            return;
        }
    }
}

/// Keeps or takes the writer lock of a shared database, and says whether this node writes.
async fn claim(
    history: &History,
    pool: &AnyPool,
    lock: &mut Option<store::WriterLock>,
    writer: &mut bool,
    pending: &mut Pending,
) {
    if let Some(held) = lock.as_mut() {
        if held.alive().await {
            return;
        }
        // The lock's connection is gone, and the lock with it: keep queueing as the writer
        // until it is known whether another node took over.
        *lock = None;
    }
    match tokio::time::timeout(Duration::from_secs(5), store::try_lock_writer(pool)).await {
        Ok(Ok(Some(held))) => {
            *lock = Some(held);
            if !*writer {
                tracing::info!("history: this node writes the shared database now");
            }
            *writer = true;
        }
        Ok(Ok(None)) => {
            if *writer {
                let queued = pending.records.len() as u64;
                if queued > 0 {
                    history.dropped.fetch_add(queued, Ordering::Relaxed);
                    tracing::warn!(
                        records = queued,
                        "history: another node writes the shared database; this node's queue is dropped"
                    );
                } else {
                    tracing::info!("history: another node writes the shared database; standing by");
                }
                *pending = Pending::default();
            }
            *writer = false;
        }
        Ok(Err(e)) => history.fail("writer lock", &e),
        Err(_) => history.fail("writer lock", &"no answer in 5 s"),
    }
}

/// Writes what is pending, batch by batch, telling `written_out` how many records are left
/// after each; returns the records written. With nothing pending it asks the database a
/// trivial question, so "connected" always means it answered.
async fn flush(
    pool: &AnyPool,
    pending: &mut Pending,
    written_out: &(dyn Fn(usize) + Sync),
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    if pending.records.is_empty() && pending.candles.is_empty() && pending.index_candles.is_empty()
    {
        return match tokio::time::timeout(WRITE_TIMEOUT, sqlx::query("SELECT 1").execute(pool))
            .await
        {
            Ok(r) => r.map(|_| 0),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        };
    }
    loop {
        let n = pending.records.len().min(MAX_BATCH);
        if n == 0 && pending.candles.is_empty() && pending.index_candles.is_empty() {
            return Ok(written);
        }
        let batch: Vec<HistoryRecord> = pending.records.iter().take(n).cloned().collect();
        let candles: Vec<Candle> = pending.candles.values().cloned().collect();
        let index: Vec<IndexCandle> = pending.index_candles.values().cloned().collect();
        match tokio::time::timeout(WRITE_TIMEOUT, store::write(pool, &batch, &candles, &index))
            .await
        {
            Ok(r) => r?,
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        }
        pending.records.drain(..n);
        pending.candles.clear();
        pending.index_candles.clear();
        written += n as u64;
        written_out(pending.records.len());
    }
}

/// Writes a whole replayed day (`marketcast import`): every record, then every candle.
pub async fn import(pool: &AnyPool, records: Vec<HistoryRecord>) -> Result<u64, sqlx::Error> {
    let mut builder = CandleBuilder::default();
    let mut pending = Pending::default();
    for chunk in records.chunks(MAX_BATCH) {
        for r in chunk {
            builder.add(r);
        }
        let (candles, index) = builder.take_touched();
        pending.add_candles(candles, index, usize::MAX);
        pending.add(chunk.to_vec(), usize::MAX);
        flush(pool, &mut pending, &|_| {}).await?;
    }
    Ok(records.len() as u64)
}
