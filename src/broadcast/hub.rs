//! The hub (the original's `ConnectionManager`): who is connected, what was last broadcast,
//! and the fan-out that writes each tick to every client.
//!
//! **Writes happen in the fan-out, not in the clients' tasks.** Publishing a tick walks the
//! client registry on blocking threads, one per core once there are enough clients to keep
//! them busy (the registry is split in shards that the threads take in turn) and, for each client that has nothing pending, writes the shared frame
//! straight into its socket with one non-blocking `write`. That is the whole per-client cost for
//! a client that keeps up: no task wake-up, no channel, no copy, no allocation. This is what
//! keeps marketcast's CPU per delivered message next to the kernel's own cost of the write, and
//! spreads the writes over every core so the last client is not a whole tick behind the first.
//!
//! **A client that falls behind gets a bounded outbox.** When the kernel does not take the whole
//! frame, the rest stays in the client's outbox and its task is woken to finish it when the
//! socket drains. Further ticks queue behind it, at most `WS_QUEUE_SIZE` of them; when the outbox
//! is full the oldest tick not yet started is dropped (counted for the client and in total). The
//! outbox holds shared `Bytes`, so a slow client pins at most `WS_QUEUE_SIZE` references to frames
//! that exist anyway, and never slows the fan-out: its write attempt is skipped while it is behind.
//!
//! Control frames (Ping, Pong, Close, the app-level pong) go through the same outbox, so frames
//! never interleave on the wire.
//!
//! **A client that stays behind is closed.** When its outbox has been full for
//! `WS_SLOW_CLIENT_TIMEOUT` (no tick written in all that time while new ones keep being
//! dropped), the fan-out marks it slow and wakes its task, which closes it with
//! [`SLOW_CLIENT_CLOSE`]. Below that bound drop-oldest stays the policy. The check costs one
//! clock read per tick for a client that is already full, nothing for the others.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::base::shutdown::{Phase, Shutdown};
use bytes::{Buf, Bytes};
use serde::Serialize;
use tokio::sync::Notify;

use super::frame::Tick;
use super::wire::Wire;

/// Registry shards: enough that fan-out threads rarely wait for one another and that a
/// connect or disconnect never waits for a whole tick's writes.
const SHARDS: usize = 64;

/// Clients per fan-out thread before a second thread is worth it. Below this a tick's writes
/// take a few milliseconds on one thread, and writing from two cores into the same receivers
/// costs more kernel time (their wake-ups contend) than it saves in latency.
const CLIENTS_PER_WRITER: usize = 2000;

/// Control frames a client may have waiting before it counts as abusive.
pub const MAX_QUEUED_CONTROL: usize = 16;

/// Close code for a client closed for staying behind (private-use range, RFC 6455 7.4.2;
/// the number echoes HTTP's 408, a timeout).
pub const SLOW_CLIENT_CLOSE: u16 = 4008;

/// Limits and timings of the WebSocket side.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Ticks a client may have waiting before the oldest are dropped.
    pub queue_size: usize,
    /// Time between protocol Pings to a client.
    pub heartbeat_interval: Duration,
    /// How long a client may stay silent after a Ping before it is closed.
    pub heartbeat_timeout: Duration,
    /// Largest message a client may send (bytes); larger ones close it with 1009.
    pub max_message_size: usize,
    /// Offer permessage-deflate to clients that ask for it.
    pub compression: bool,
    /// Time the broadcast loop waits between ticks (used to judge whether `latest` is fresh).
    pub broadcast_interval: Duration,
    /// A client whose outbox stays full this long is closed; `None`: never.
    pub slow_client_timeout: Option<Duration>,
    /// What a client gets when it connects: the latest tick (the default), or a message of the
    /// channel's own making (`/ws/alerts` sends the recent alerts as one array).
    pub greeting: Greeting,
    /// Offer delta messages to clients that ask (`?delta=fossil`).
    pub deltas: bool,
    /// Every this many ticks, clients that take deltas get the full message anyway (a safety
    /// net; 1: never a delta).
    pub delta_full_every: u64,
}

/// What a client gets when it connects.
#[derive(Clone, Default)]
pub enum Greeting {
    /// The latest tick if fresh, else a tick made for it at once.
    #[default]
    Latest,
    /// The latest tick whatever its age, and nothing when there is none yet: an edge, whose
    /// ticks come from the broker and which cannot make a fresher one itself.
    Last,
    /// This text (a JSON document), if any, sent plain; no tick is asked for.
    Made(Arc<dyn Fn() -> Option<Bytes> + Send + Sync>),
}

impl std::fmt::Debug for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Greeting::Latest => f.write_str("Latest"),
            Greeting::Last => f.write_str("Last"),
            Greeting::Made(_) => f.write_str("Made(..)"),
        }
    }
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            queue_size: 50,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            max_message_size: 4096,
            compression: true,
            broadcast_interval: Duration::from_secs(1),
            slow_client_timeout: Some(Duration::from_secs(30)),
            greeting: Greeting::Latest,
            deltas: true,
            delta_full_every: 60,
        }
    }
}

/// One client's counters.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Ticks completely written to the socket.
    pub sent: AtomicU64,
    /// Ticks dropped because the client was too far behind.
    pub dropped: AtomicU64,
    /// Bytes written to the socket (frames and control frames; before TLS).
    pub bytes: AtomicU64,
}

#[derive(Debug)]
struct Pending {
    bytes: Bytes,
    /// A tick (counted as sent when done, droppable while not started), or a control frame.
    tick: bool,
    started: bool,
}

/// Frames waiting for a client's socket.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Pending>,
    ticks: usize,
    controls: usize,
    /// Highest tick (era, seq) accepted, so the connect-time snapshot and the fan-out never
    /// send one twice (see [`Tick::era`]).
    last: (u64, u64),
    /// No more frames: the socket failed or the connection is closing.
    closed: bool,
    /// The socket failed.
    broken: bool,
    /// Since when the outbox has been full with nothing written.
    full_since: Option<std::time::Instant>,
    /// Full for longer than the slow-client timeout: the task closes the client.
    slow: bool,
}

impl Outbox {
    fn push_control(&mut self, frame: Bytes) {
        self.frames.push_back(Pending {
            bytes: frame,
            tick: false,
            started: false,
        });
        self.controls += 1;
    }
}

/// Why a connection ended, as counted when the client leaves the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    /// The client closed, or the connection was lost.
    Client = 0,
    HeartbeatTimeout = 1,
    Protocol = 2,
    SlowClient = 3,
    /// The server shut down.
    Shutdown = 4,
}

impl EndReason {
    /// Every reason, in counter order.
    pub const ALL: [EndReason; 5] = [
        EndReason::Client,
        EndReason::HeartbeatTimeout,
        EndReason::Protocol,
        EndReason::SlowClient,
        EndReason::Shutdown,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Client => "client",
            EndReason::HeartbeatTimeout => "heartbeat_timeout",
            EndReason::Protocol => "protocol",
            EndReason::SlowClient => "slow_client",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Too many control frames waiting: the client sends faster than it reads.
    ControlOverflow,
    /// The connection is closing or broken.
    Closed,
}

/// What the fan-out and a client's own task share.
pub struct ClientSlot {
    id: u64,
    peer: SocketAddr,
    deflate: bool,
    /// Takes delta messages (`?delta=fossil`).
    delta: bool,
    /// Gets a full message anyway every this many ticks (at least 1).
    full_every: u64,
    slow_after: Option<Duration>,
    wire: Wire,
    outbox: Mutex<Outbox>,
    /// Wakes the client's task when its outbox needs the socket (or broke).
    wake: Notify,
    counters: ClientCounters,
    /// Why the connection is ending ([`EndReason`] as a number), counted when it leaves.
    end: std::sync::atomic::AtomicU8,
}

impl ClientSlot {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the client receives compressed frames.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The socket, plain or TLS.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Records why the connection is ending (counted by reason when the client leaves).
    pub fn set_end_reason(&self, reason: EndReason) {
        self.end.store(reason as u8, Ordering::Relaxed);
    }

    /// The client's counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Resolves when the outbox needs attention from the client's task.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Offers a tick: written at once when the client has nothing pending, queued otherwise
    /// (dropping the oldest queued tick beyond `queue_size`).
    ///
    /// A deflate client that is the first to need this tick compressed compresses it here,
    /// before its outbox is locked: neither its own task nor the fan-out ever waits on a
    /// compressor while holding a client's lock.
    pub fn offer(&self, tick: &Tick, queue_size: usize) {
        let full = tick.frame_for(self.deflate);
        // Only a delta made already (by the hub, before the fan-out): a client that could use
        // one has had the tick before, when the delta was made for the clients then.
        let delta = if self.delta {
            tick.ready_delta(self.deflate)
        } else {
            None
        };
        let mut ob = self.outbox();
        if ob.closed || (tick.era, tick.seq) <= ob.last {
            return;
        }
        // The delta only to a client whose last message is its base and whose socket has
        // nothing waiting (then nothing between the two can be dropped), and, as a safety net,
        // a full message every `delta_full_every` ticks: at a tick of the client's own, so the
        // full messages of thousands of clients are spread over the interval, not sent at once.
        let frame = match delta {
            Some((base, d))
                if ob.frames.is_empty()
                    && ob.last == (tick.era, base)
                    && (tick.seq + self.id) % self.full_every != 0 =>
            {
                d
            }
            _ => full,
        };
        // `last` is the last tick the client holds or will: put back if this one is dropped.
        let before = ob.last;
        ob.last = (tick.era, tick.seq);
        if ob.frames.is_empty() {
            match self.wire.try_write(frame) {
                Ok(n) if n == frame.len() => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if self.wire.has_buffered_output() {
                        // TLS took the frame but the socket not all of its records: the task
                        // sends the rest when the socket drains.
                        drop(ob);
                        self.wake.notify_one();
                    }
                    return;
                }
                Ok(n) => {
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    ob.frames.push_back(Pending {
                        bytes: frame.slice(n..),
                        tick: true,
                        started: n > 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ob.frames.push_back(Pending {
                    bytes: frame.clone(),
                    tick: true,
                    started: false,
                }),
                Err(_) => {
                    ob.closed = true;
                    ob.broken = true;
                    drop(ob);
                    self.wake.notify_one();
                    return;
                }
            }
            ob.ticks += 1;
            drop(ob);
            // The task finishes the write when the socket drains.
            self.wake.notify_one();
            return;
        }
        if ob.ticks >= queue_size {
            if let Some(limit) = self.slow_after {
                let now = std::time::Instant::now();
                let since = *ob.full_since.get_or_insert(now);
                if !ob.slow && now.duration_since(since) >= limit {
                    ob.slow = true;
                    self.wake.notify_one();
                }
            }
            // Drop the oldest tick that has not started; a started one must be finished.
            if let Some(pos) = ob.frames.iter().position(|p| p.tick && !p.started) {
                ob.frames.remove(pos);
                ob.ticks -= 1;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                ob.last = before;
                return;
            }
        }
        ob.frames.push_back(Pending {
            bytes: frame.clone(),
            tick: true,
            started: false,
        });
        ob.ticks += 1;
    }

    /// Queues a control frame and writes what the socket takes now.
    pub fn send_control(&self, frame: Bytes) -> Result<(), QueueError> {
        let mut ob = self.outbox();
        if ob.closed {
            return Err(QueueError::Closed);
        }
        if ob.controls >= MAX_QUEUED_CONTROL {
            return Err(QueueError::ControlOverflow);
        }
        ob.push_control(frame);
        self.flush_locked(&mut ob);
        Ok(())
    }

    /// Writes what the socket takes now. Returns `false` when the socket failed.
    pub fn flush(&self) -> bool {
        let mut ob = self.outbox();
        self.flush_locked(&mut ob);
        !ob.broken
    }

    fn flush_locked(&self, ob: &mut Outbox) {
        while let Some(front) = ob.frames.front_mut() {
            match self.wire.try_write(&front.bytes) {
                Ok(n) => {
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    front.bytes.advance(n);
                    front.started |= n > 0;
                    if front.bytes.is_empty() {
                        let done = ob.frames.pop_front().map(|p| p.tick);
                        if done == Some(true) {
                            ob.ticks -= 1;
                            ob.full_since = None;
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            ob.controls -= 1;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    ob.frames.clear();
                    ob.closed = true;
                    ob.broken = true;
                    return;
                }
            }
        }
        if self.wire.flush_buffered().is_err() {
            ob.closed = true;
            ob.broken = true;
        }
    }

    /// True while frames (or TLS records of a frame already taken) wait for the socket.
    pub fn has_pending(&self) -> bool {
        !self.outbox().frames.is_empty() || self.wire.has_buffered_output()
    }

    /// True when the socket failed.
    pub fn is_broken(&self) -> bool {
        self.outbox().broken
    }

    /// True when the client stayed behind past the slow-client timeout.
    pub fn is_slow(&self) -> bool {
        self.outbox().slow
    }

    /// Stops taking ticks and replaces everything not yet started by `last` (a Close frame).
    pub fn close_with(&self, last: Option<Bytes>) {
        let mut ob = self.outbox();
        ob.closed = true;
        ob.frames.retain(|p| p.started);
        ob.ticks = ob.frames.iter().filter(|p| p.tick).count();
        ob.controls = ob.frames.len() - ob.ticks;
        if let Some(frame) = last {
            ob.push_control(frame);
        }
        self.flush_locked(&mut ob);
    }
}

/// How long ticks take, for metrics: building the message (serialise, stamp, frame) and the
/// whole tick (build and fan-out). One observation each per tick, none per client.
#[derive(Debug)]
pub struct TickTimings {
    pub encode_seconds: prometheus_client::metrics::histogram::Histogram,
    pub tick_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Time to make a tick's delta message (ticks with delta clients only).
    pub delta_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for TickTimings {
    fn default() -> Self {
        // 50 us to about 1.6 s, doubling: a small tick encodes in tens of microseconds, a
        // late-session one in milliseconds, and a fan-out to 19,000 clients takes tens.
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(5e-5, 2.0, 16);
        TickTimings {
            encode_seconds: prometheus_client::metrics::histogram::Histogram::new(buckets()),
            tick_seconds: prometheus_client::metrics::histogram::Histogram::new(buckets()),
            delta_seconds: prometheus_client::metrics::histogram::Histogram::new(buckets()),
        }
    }
}

/// Totals over all clients, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HubTotals {
    /// Clients connected now.
    pub clients: usize,
    /// Of those, how many receive compressed frames.
    pub deflate_clients: usize,
    /// Of those, how many take delta messages.
    pub delta_clients: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Messages written to clients since start.
    pub messages_sent: u64,
    /// Messages dropped for slow clients since start.
    pub messages_dropped: u64,
    /// Bytes written to clients since start.
    pub bytes_sent: u64,
    /// Connections ended, by reason, in the order of [`EndReason::ALL`] (counted when the
    /// client has left, so they never run ahead of `connections_total - clients`).
    pub closed: [u64; 5],
    /// Clients closed for not answering a heartbeat.
    pub heartbeat_timeouts: u64,
    /// Clients closed for a protocol or policy violation.
    pub protocol_closes: u64,
    /// Clients closed for staying behind past the slow-client timeout.
    pub slow_client_closes: u64,
    /// Broadcasts published.
    pub ticks: u64,
}

/// What one client looks like from outside (for `/health?clients=true` and tests).
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub id: u64,
    pub peer: String,
    pub deflate: bool,
    pub sent: u64,
    pub dropped: u64,
    /// Frames waiting for its socket.
    pub pending: usize,
}

struct Shared {
    settings: HubSettings,
    latest: RwLock<Option<Arc<Tick>>>,
    shards: Vec<Mutex<Vec<Arc<ClientSlot>>>>,
    writers: usize,
    client_count: AtomicUsize,
    deflate_count: AtomicUsize,
    delta_count: AtomicUsize,
    next_id: AtomicU64,
    departed_sent: AtomicU64,
    departed_dropped: AtomicU64,
    departed_bytes: AtomicU64,
    /// Connections ended, by [`EndReason`].
    closed: [AtomicU64; EndReason::ALL.len()],
    heartbeat_timeouts: AtomicU64,
    protocol_closes: AtomicU64,
    slow_client_closes: AtomicU64,
    ticks: AtomicU64,
    /// The `seq` of the latest broadcast (or the one a restart continues from).
    last_seq: AtomicU64,
    timings: TickTimings,
    /// When the latest tick was last confirmed to be the current state (ms since the epoch).
    confirmed_ms: std::sync::atomic::AtomicI64,
    tick_wanted: Notify,
    /// The phase its client tasks belong to (not its own: the process ends it).
    clients: Phase,
}

/// Cheap-to-clone handle to the hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub with no clients and a client phase of its own; the fan-out uses up to one thread
    /// per available core.
    pub fn new(settings: HubSettings) -> Self {
        Self::with_phase(settings, Phase::new())
    }

    /// A hub whose client tasks belong to `clients`: ending that phase closes every client of
    /// the hub with 1001 and waits for their tasks (the hubs of all channels share one).
    pub fn with_phase(settings: HubSettings, clients: Phase) -> Self {
        let writers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hub {
            shared: Arc::new(Shared {
                settings,
                latest: RwLock::new(None),
                shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
                writers,
                client_count: AtomicUsize::new(0),
                deflate_count: AtomicUsize::new(0),
                delta_count: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                departed_sent: AtomicU64::new(0),
                departed_dropped: AtomicU64::new(0),
                departed_bytes: AtomicU64::new(0),
                closed: Default::default(),
                timings: TickTimings::default(),
                heartbeat_timeouts: AtomicU64::new(0),
                protocol_closes: AtomicU64::new(0),
                slow_client_closes: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                confirmed_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
                last_seq: AtomicU64::new(0),
                tick_wanted: Notify::new(),
                clients,
            }),
        }
    }

    /// The settings the hub was built with.
    pub fn settings(&self) -> &HubSettings {
        &self.shared.settings
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Vec<Arc<ClientSlot>>> {
        self.shared.shards[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `tick` as the latest and writes it to every client, spread over the fan-out
    /// threads. Returns when every client has it written or queued.
    ///
    /// With deflate clients registered the tick is compressed first, once, so the fan-out
    /// threads only read it. A deflate client that registers after this check compresses the
    /// tick itself when it is offered (outside any lock), so it never gets a plain frame.
    pub async fn publish(&self, tick: impl Into<Arc<Tick>>) {
        let tick: Arc<Tick> = tick.into();
        // The delta is against the tick before; with no delta client, nothing is kept for one.
        let delta_clients = self.shared.delta_count.load(Ordering::Relaxed) > 0;
        if delta_clients {
            if let Some(prev) = self.latest() {
                tick.set_base(&prev);
            }
        }
        if self.deflate_client_count() > 0 {
            tick.deflated();
        }
        if delta_clients {
            // Made once, before the fan-out threads read it.
            let started = std::time::Instant::now();
            tick.delta_for(self.deflate_client_count() > 0);
            self.shared
                .timings
                .delta_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        *self
            .shared
            .latest
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(tick.clone());
        self.shared.ticks.fetch_add(1, Ordering::Relaxed);
        self.shared.last_seq.store(tick.seq, Ordering::Relaxed);
        let next = Arc::new(AtomicUsize::new(0));
        let count = (self.client_count() / CLIENTS_PER_WRITER).clamp(1, self.shared.writers);
        let mut writers = Vec::with_capacity(count);
        for _ in 0..count {
            let (hub, tick, next) = (self.clone(), tick.clone(), next.clone());
            // Blocking threads: the writes are system calls back to back for tens of
            // milliseconds, which must not hold up the async workers reading client frames.
            writers.push(tokio::task::spawn_blocking(move || {
                hub.write_shards(&tick, &next)
            }));
        }
        for w in writers {
            let _ = w.await;
        }
    }

    fn write_shards(&self, tick: &Tick, next: &AtomicUsize) {
        let queue = self.shared.settings.queue_size;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= SHARDS {
                return;
            }
            for slot in self.shard(i).iter() {
                slot.offer(tick, queue);
            }
        }
    }

    /// Tick timings (observed by the broadcast loop).
    pub fn timings(&self) -> &TickTimings {
        &self.shared.timings
    }

    /// The most recent tick, if any.
    pub fn latest(&self) -> Option<Arc<Tick>> {
        self.shared
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest tick if it is fresh enough to hand to a client that just connected: taken,
    /// or confirmed unchanged (see [`Hub::confirm_latest`]), within two broadcast intervals (at
    /// least a second) of `now_ms`.
    pub fn fresh_latest(&self, now_ms: i64) -> Option<Arc<Tick>> {
        let fresh_ms = (self.shared.settings.broadcast_interval.as_millis() as i64 * 2).max(1000);
        let confirmed = self.shared.confirmed_ms.load(Ordering::Relaxed);
        self.latest()
            .filter(|t| now_ms - t.ts_ms.max(confirmed) <= fresh_ms)
    }

    /// Records that the latest tick was still the channel's state at `now_ms` (a channel that
    /// publishes on change sends nothing while nothing changes, yet its latest stays current).
    pub fn confirm_latest(&self, now_ms: i64) {
        self.shared.confirmed_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Offers the latest tick to every client again: those that have it skip it by its `seq`,
    /// those that connected while it was unconfirmed receive it.
    pub fn offer_latest(&self) {
        let Some(tick) = self.latest() else {
            return;
        };
        let queue = self.shared.settings.queue_size;
        self.each_client(|slot| slot.offer(&tick, queue));
    }

    /// The `seq` of the latest broadcast, or the one set to continue from; 0 before both.
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Relaxed)
    }

    /// Sets the `seq` the next broadcast follows (a restart continuing a session).
    pub fn continue_from_seq(&self, seq: u64) {
        self.shared.last_seq.store(seq, Ordering::Relaxed);
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.shared.client_count.load(Ordering::Relaxed)
    }

    /// Clients that receive compressed frames.
    pub fn deflate_client_count(&self) -> usize {
        self.shared.deflate_count.load(Ordering::Relaxed)
    }

    /// Registers a client's socket; the returned handle unregisters it when dropped.
    pub fn register(&self, peer: SocketAddr, deflate: bool, wire: Wire) -> ClientHandle {
        self.register_client(peer, deflate, false, wire)
    }

    /// Registers a client that may take delta messages (see [`super::delta`]).
    pub fn register_client(
        &self,
        peer: SocketAddr,
        deflate: bool,
        delta: bool,
        wire: Wire,
    ) -> ClientHandle {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(ClientSlot {
            id,
            peer,
            deflate,
            delta,
            full_every: self.shared.settings.delta_full_every.max(1),
            slow_after: self.shared.settings.slow_client_timeout,
            wire,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            counters: ClientCounters::default(),
            end: std::sync::atomic::AtomicU8::new(EndReason::Client as u8),
        });
        self.shard(id as usize % SHARDS).push(slot.clone());
        self.shared.client_count.fetch_add(1, Ordering::Relaxed);
        if deflate {
            self.shared.deflate_count.fetch_add(1, Ordering::Relaxed);
        }
        if delta {
            self.shared.delta_count.fetch_add(1, Ordering::Relaxed);
        }
        ClientHandle {
            hub: self.clone(),
            slot,
        }
    }

    /// Asks the broadcast loop for a tick now (a client connected while nothing fresh exists).
    /// Call it only after the client is registered: a tick published after that reaches the
    /// client through the fan-out and satisfies the request (see [`super::ticker`]).
    pub fn request_tick(&self) {
        self.shared.tick_wanted.notify_one();
    }

    /// Resolves when a client asked for a tick.
    pub async fn tick_requested(&self) {
        self.shared.tick_wanted.notified().await
    }

    /// Sends one text message that is not a tick (a feed status, say) to every client, plain:
    /// RFC 7692 lets any message go uncompressed. It goes through the outbox, so it never
    /// interleaves with a half-written tick. A client that is behind (frames waiting) is
    /// skipped: the message is informational, and queued statuses must not crowd out the
    /// heartbeat's Pings in the control-frame allowance. One write per client: call it from a
    /// blocking thread when there may be many clients.
    pub fn announce(&self, text: &[u8]) {
        let frame = super::frame::frame(super::frame::OP_TEXT, false, text);
        self.each_client(|c| {
            if c.has_pending() {
                return;
            }
            if c.send_control(frame.clone()).is_ok() && c.has_pending() {
                // The socket did not take it all: the client's task finishes the write.
                c.wake.notify_one();
            }
        });
    }

    /// Counts a client closed by the heartbeat.
    pub fn note_heartbeat_timeout(&self) {
        self.shared
            .heartbeat_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client closed for staying behind.
    pub fn note_slow_client_close(&self) {
        self.shared
            .slow_client_closes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client closed for breaking the protocol or a limit.
    pub fn note_protocol_close(&self) {
        self.shared.protocol_closes.fetch_add(1, Ordering::Relaxed);
    }

    fn each_client(&self, mut f: impl FnMut(&ClientSlot)) {
        for i in 0..SHARDS {
            for slot in self.shard(i).iter() {
                f(slot);
            }
        }
    }

    /// Sums the counters of every client, connected or gone.
    pub fn totals(&self) -> HubTotals {
        let (mut clients, mut sent, mut dropped, mut bytes) = (0, 0, 0, 0);
        self.each_client(|c| {
            clients += 1;
            sent += c.counters.sent.load(Ordering::Relaxed);
            dropped += c.counters.dropped.load(Ordering::Relaxed);
            bytes += c.counters.bytes.load(Ordering::Relaxed);
        });
        HubTotals {
            clients,
            deflate_clients: self.deflate_client_count(),
            delta_clients: self.shared.delta_count.load(Ordering::Relaxed),
            connections_total: self.shared.next_id.load(Ordering::Relaxed) - 1,
            messages_sent: sent + self.shared.departed_sent.load(Ordering::Relaxed),
            messages_dropped: dropped + self.shared.departed_dropped.load(Ordering::Relaxed),
            bytes_sent: bytes + self.shared.departed_bytes.load(Ordering::Relaxed),
            closed: std::array::from_fn(|i| self.shared.closed[i].load(Ordering::Relaxed)),
            heartbeat_timeouts: self.shared.heartbeat_timeouts.load(Ordering::Relaxed),
            protocol_closes: self.shared.protocol_closes.load(Ordering::Relaxed),
            slow_client_closes: self.shared.slow_client_closes.load(Ordering::Relaxed),
            ticks: self.shared.ticks.load(Ordering::Relaxed),
        }
    }

    /// Every connected client's counters, by id.
    pub fn clients(&self) -> Vec<ClientView> {
        let mut views = Vec::new();
        self.each_client(|c| {
            views.push(ClientView {
                id: c.id,
                peer: c.peer.to_string(),
                deflate: c.deflate,
                sent: c.counters.sent.load(Ordering::Relaxed),
                dropped: c.counters.dropped.load(Ordering::Relaxed),
                pending: c.outbox().frames.len(),
            })
        });
        views.sort_by_key(|v| v.id);
        views
    }

    /// What every client task watches: it fires when the process begins to close its clients.
    pub fn closing(&self) -> Shutdown {
        self.shared.clients.listener()
    }

    /// True until the clients' phase begins to end.
    pub fn is_accepting(&self) -> bool {
        !self.shared.clients.is_ending()
    }

    /// Spawns a client task that the clients' phase will wait for.
    pub fn spawn_client<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.clients.spawn(task);
    }
}

/// A registered client. Dropping it unregisters the client.
pub struct ClientHandle {
    hub: Hub,
    slot: Arc<ClientSlot>,
}

impl ClientHandle {
    /// The shared part of the client.
    pub fn slot(&self) -> &ClientSlot {
        &self.slot
    }

    /// The hub the client belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let shared = &self.hub.shared;
        let id = self.slot.id;
        let mut shard = self.hub.shard(id as usize % SHARDS);
        if let Some(pos) = shard.iter().position(|s| s.id == id) {
            shard.swap_remove(pos);
            drop(shard);
            shared.client_count.fetch_sub(1, Ordering::Relaxed);
            if self.slot.deflate {
                shared.deflate_count.fetch_sub(1, Ordering::Relaxed);
            }
            if self.slot.delta {
                shared.delta_count.fetch_sub(1, Ordering::Relaxed);
            }
            let c = &self.slot.counters;
            shared
                .departed_sent
                .fetch_add(c.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            shared
                .departed_dropped
                .fetch_add(c.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
            shared
                .departed_bytes
                .fetch_add(c.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            let reason =
                (self.slot.end.load(Ordering::Relaxed) as usize).min(shared.closed.len() - 1);
            shared.closed[reason].fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[tokio::test]
    async fn register_counts_and_drop_unregisters() {
        let hub = Hub::new(HubSettings::default());
        let (s1, _c1) = socket_pair().await;
        let (s2, _c2) = socket_pair().await;
        let a = hub.register(peer(), false, Wire::Plain(s1));
        let b = hub.register(peer(), true, Wire::Plain(s2));
        assert_eq!((hub.client_count(), hub.deflate_client_count()), (2, 1));
        hub.publish(Tick::build(1, 0, b"{}", None)).await;
        assert_eq!(hub.totals().messages_sent, 2);
        drop(a);
        drop(b);
        let totals = hub.totals();
        assert_eq!((totals.clients, totals.deflate_clients), (0, 0));
        assert_eq!((totals.connections_total, totals.messages_sent), (2, 2));
    }

    #[tokio::test]
    async fn a_keeping_up_client_gets_every_frame_in_order_written_by_the_fan_out() {
        let hub = Hub::new(HubSettings::default());
        let (server, mut client) = socket_pair().await;
        let _handle = hub.register(peer(), false, Wire::Plain(server));
        let mut expected = Vec::new();
        for seq in 1..=3 {
            let tick = Tick::build(seq, 0, b"{}", None);
            expected.extend_from_slice(&tick.plain);
            hub.publish(tick).await;
        }
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        assert_eq!(hub.clients()[0].pending, 0);
    }

    #[tokio::test]
    async fn a_later_era_goes_out_with_a_lower_seq_and_an_old_tick_never_does() {
        use super::super::frame::Tick;
        let hub = Hub::new(HubSettings::default());
        let (server, mut client) = socket_pair().await;
        let _handle = hub.register(peer(), false, Wire::Plain(server));
        let ticks = [
            Tick::received(0, 10, 0, br#"{"seq":10}"#, None, None),
            // Already had, in the same era: skipped.
            Tick::received(0, 9, 0, br#"{"seq":9}"#, None, None),
            // A new count: sent.
            Tick::received(1, 2, 0, br#"{"seq":2}"#, None, None),
            Tick::received(1, 3, 0, br#"{"seq":3}"#, None, None),
            // The old count's next tick, late: skipped.
            Tick::received(0, 11, 0, br#"{"seq":11}"#, None, None),
        ];
        let mut expected = Vec::new();
        for (i, tick) in ticks.into_iter().enumerate() {
            if matches!(i, 0 | 2 | 3) {
                expected.extend_from_slice(&tick.plain);
            }
            hub.publish(tick).await;
        }
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        assert_eq!(hub.totals().messages_sent, 3);
    }

    /// Splits a byte stream of server frames into (opcode, payload).
    fn frames_of(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 2 {
            let (len, at) = match bytes[1] & 0x7f {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push((bytes[0] & 0x0f, bytes[at..at + len].to_vec()));
            bytes = &bytes[at + len..];
        }
        out
    }

    /// Reads everything the client's outbox holds, however long the socket takes to reopen.
    async fn drain(client: &mut TcpStream, slot: &ClientSlot, received: &mut Vec<u8>) {
        let mut buf = vec![0u8; 1 << 20];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            slot.flush();
            match tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
                Ok(_) => panic!("the socket closed"),
                Err(_) if !slot.has_pending() => return,
                Err(_) => assert!(std::time::Instant::now() < deadline, "never drained"),
            }
        }
    }

    #[tokio::test]
    async fn a_delta_client_that_loses_ticks_never_gets_a_delta_it_cannot_apply() {
        use super::super::delta::Rebuilder;
        // One tick of room, and large messages every other tick: the socket fills, ticks are
        // dropped, and some are dropped while a tick is half written (nothing else to drop).
        for queue_size in [1, 2, 3] {
            let hub = Hub::new(HubSettings {
                queue_size,
                delta_full_every: 3,
                ..Default::default()
            });
            let (server, mut client) = socket_pair().await;
            // Small, fixed socket buffers: the kernel holds a fraction of one message, so the
            // outbox (not the kernel) deals with a client that does not read.
            socket2::SockRef::from(&server)
                .set_send_buffer_size(16 * 1024)
                .unwrap();
            socket2::SockRef::from(&client)
                .set_recv_buffer_size(16 * 1024)
                .unwrap();
            let handle = hub.register_client(peer(), false, true, Wire::Plain(server));
            let points: Vec<String> = (0..30_000u64)
                .map(|i| (i * 7919 % 100_003).to_string())
                .collect();
            let mut received = Vec::new();
            for seq in 1..=40u64 {
                // A few values change from tick to tick, as in a market.
                let mut p = points.clone();
                let at = (seq as usize * 997) % p.len();
                p[at] = seq.to_string();
                let body = format!("{{\"n\":[{}]}}", p.join(","));
                hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
                    .await;
                // The client keeps up for five ticks, then reads nothing for five: it falls
                // behind, ticks are dropped, and it catches up.
                if seq % 10 < 5 {
                    drain(&mut client, handle.slot(), &mut received).await;
                }
            }
            drain(&mut client, handle.slot(), &mut received).await;
            let view = &hub.clients()[0];
            assert!(
                view.dropped > 0,
                "queue {queue_size}: ticks were lost: {view:?}"
            );
            let mut rebuild = Rebuilder::default();
            let (mut deltas, mut fulls) = (0, 0);
            for (opcode, payload) in frames_of(&received) {
                match opcode {
                    0x1 => {
                        rebuild.full(&payload);
                        fulls += 1;
                    }
                    0x2 => {
                        rebuild.delta(&payload).unwrap_or_else(|e| {
                            panic!("queue {queue_size}: a delta that does not apply: {e}")
                        });
                        deltas += 1;
                    }
                    other => panic!("opcode {other}"),
                }
            }
            assert!(
                deltas > 0 && fulls > 0,
                "queue {queue_size}: {deltas} deltas, {fulls} full"
            );
        }
    }

    #[tokio::test]
    async fn a_stalled_client_keeps_at_most_queue_size_ticks_and_counts_drops() {
        let hub = Hub::new(HubSettings {
            queue_size: 3,
            ..Default::default()
        });
        let (server, _client_never_reads) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        let body = vec![b' '; 256 * 1024];
        let mut body_json = b"{".to_vec();
        body_json.extend_from_slice(&body);
        body_json.push(b'}');
        for seq in 1..=40 {
            hub.publish(Tick::build(seq, 0, &body_json, None)).await;
        }
        let view = &hub.clients()[0];
        // The kernel took a few frames; the rest wait or were dropped, never more than 3 queued.
        assert!(view.pending <= 3, "{view:?}");
        assert!(view.dropped > 0, "{view:?}");
        assert_eq!(
            view.sent + view.dropped + view.pending as u64,
            40,
            "{view:?}"
        );
        // Ticks already seen are not queued twice (the connect-time snapshot path).
        let tick = Tick::build(40, 0, b"{}", None);
        handle.slot().offer(&tick, 3);
        assert_eq!(hub.clients()[0].pending, view.pending);
    }

    /// The race of the flaky test: the latest tick was built and published while no deflate
    /// client existed, then a deflate client joins and is handed that tick.
    #[tokio::test]
    async fn a_deflate_client_joining_after_a_plain_only_tick_gets_it_compressed() {
        use super::super::frame::SharedDeflater;
        let hub = Hub::new(HubSettings::default());
        let deflater = SharedDeflater::new(1);
        let (s1, mut plain_client) = socket_pair().await;
        let _plain = hub.register(peer(), false, Wire::Plain(s1));
        hub.publish(Tick::build(1, 0, br#"{"a":1}"#, Some(deflater.clone())))
            .await;
        let latest = hub.latest().unwrap();
        assert!(
            !latest.is_compressed(),
            "no deflate client: nothing compressed"
        );
        let mut got = vec![0u8; latest.plain.len()];
        plain_client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], 0x81);

        let (s2, mut zipped_client) = socket_pair().await;
        let zipped = hub.register(peer(), true, Wire::Plain(s2));
        zipped.slot().offer(&latest, 3);
        let frame = latest.deflated().expect("compressed on demand").clone();
        let mut got = vec![0u8; frame.len()];
        zipped_client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], 0xC1, "FIN + RSV1 + text");
        assert_eq!(&got[..], &frame[..]);

        // The next tick is compressed before the fan-out, and both clients get their form.
        hub.publish(Tick::build(2, 0, br#"{"a":2}"#, Some(deflater)))
            .await;
        let latest = hub.latest().unwrap();
        assert!(latest.is_compressed());
        let mut got = vec![0u8; latest.deflated().unwrap().len()];
        zipped_client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], 0xC1);
        let mut got = vec![0u8; latest.plain.len()];
        plain_client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], 0x81);
    }

    #[tokio::test]
    async fn a_client_full_past_the_timeout_is_marked_slow() {
        let hub = Hub::new(HubSettings {
            queue_size: 2,
            slow_client_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        });
        let (server, _never_reads) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        let body = format!("{{\"pad\":\"{}\"}}", " ".repeat(256 * 1024));
        let mut seq = 0;
        // Fill the socket and the outbox.
        while hub.clients()[0].pending < 2 {
            seq += 1;
            hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
                .await;
        }
        // The first tick refused for a full outbox starts the clock.
        seq += 1;
        hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
            .await;
        assert!(!handle.slot().is_slow(), "full, but not for long yet");
        tokio::time::sleep(Duration::from_millis(150)).await;
        seq += 1;
        hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
            .await;
        assert!(handle.slot().is_slow());
        // Without a timeout, a full client is only ever dropped from.
        let patient = Hub::new(HubSettings {
            queue_size: 2,
            slow_client_timeout: None,
            ..Default::default()
        });
        let (server, _never_reads) = socket_pair().await;
        let handle = patient.register(peer(), false, Wire::Plain(server));
        for seq in 1..=40 {
            patient
                .publish(Tick::build(seq, 0, body.as_bytes(), None))
                .await;
        }
        assert!(!handle.slot().is_slow());
    }

    #[tokio::test]
    async fn control_frames_are_bounded() {
        let hub = Hub::new(HubSettings::default());
        let (server, _client) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        for _ in 0..100 {
            if let Err(e) = handle.slot().send_control(Bytes::from_static(b"\x89\x00")) {
                assert_eq!(e, QueueError::ControlOverflow);
                return;
            }
        }
        // The socket took all 100 small frames at once: nothing was queued, which is fine too.
        assert!(!handle.slot().has_pending());
    }
}
