//! The hub (the original's `ConnectionManager`): who is connected, what was last broadcast,
//! and the fan-out that writes each tick to every client.
//!
//! **Writes happen in the fan-out, not in the clients' tasks.** Publishing a tick walks the
//! client registry on blocking threads, one per core once there are enough clients to keep
//! them busy (the registry is split in shards that the threads take in turn), and offers the
//! shared frame to each client's outbox ([`super::outbox`]), which writes it straight into the
//! socket when the client has nothing pending. That is the whole per-client cost for a client
//! that keeps up: no task wake-up, no channel, no copy, no allocation. This is what keeps
//! marketcast's CPU per delivered message next to the kernel's own cost of the write, and
//! spreads the writes over every core so the last client is not a whole tick behind the first.
//!
//! The registry's shards are `std::sync::Mutex`es: a fan-out thread holds one only while it
//! walks that shard's clients (no `.await` inside), and a connect or disconnect locks just the
//! one shard its client is in, so neither ever waits for a whole tick.
//!
//! What a client may have queued, and when it is dropped from or closed, is the outbox's
//! policy; what the hub counts is in [`super::stats`]; its limits are [`HubSettings`]. Its
//! clients' tasks belong to a shutdown [`Phase`] handed in ([`Hub::with_phase`]): ending that
//! phase closes them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::base::shutdown::{Phase, Shutdown};
use tokio::sync::Notify;

use super::frame::Tick;
use super::outbox::ClientSlot;
use super::settings::HubSettings;
use super::stats::{ClientView, EndReason, HubTotals, TickTimings};
use super::wire::Wire;

/// Registry shards: enough that fan-out threads rarely wait for one another and that a
/// connect or disconnect never waits for a whole tick's writes.
const SHARDS: usize = 64;

/// Clients per fan-out thread before a second thread is worth it. Below this a tick's writes
/// take a few milliseconds on one thread, and writing from two cores into the same receivers
/// costs more kernel time (their wake-ups contend) than it saves in latency.
const CLIENTS_PER_WRITER: usize = 2000;

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
        let slot = Arc::new(ClientSlot::new(
            id,
            peer,
            deflate,
            delta,
            self.shared.settings.delta_full_every.max(1),
            self.shared.settings.slow_client_timeout,
            wire,
        ));
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
                c.wake_task();
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
            sent += c.counters().sent.load(Ordering::Relaxed);
            dropped += c.counters().dropped.load(Ordering::Relaxed);
            bytes += c.counters().bytes.load(Ordering::Relaxed);
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
                id: c.id(),
                peer: c.peer().to_string(),
                deflate: c.deflate(),
                sent: c.counters().sent.load(Ordering::Relaxed),
                dropped: c.counters().dropped.load(Ordering::Relaxed),
                pending: c.queued(),
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
        let id = self.slot.id();
        let mut shard = self.hub.shard(id as usize % SHARDS);
        if let Some(pos) = shard.iter().position(|s| s.id() == id) {
            shard.swap_remove(pos);
            drop(shard);
            shared.client_count.fetch_sub(1, Ordering::Relaxed);
            if self.slot.deflate() {
                shared.deflate_count.fetch_sub(1, Ordering::Relaxed);
            }
            if self.slot.takes_delta() {
                shared.delta_count.fetch_sub(1, Ordering::Relaxed);
            }
            let c = self.slot.counters();
            shared
                .departed_sent
                .fetch_add(c.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            shared
                .departed_dropped
                .fetch_add(c.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
            shared
                .departed_bytes
                .fetch_add(c.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            let reason = self.slot.end_reason_index().min(shared.closed.len() - 1);
            shared.closed[reason].fetch_add(1, Ordering::Relaxed);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::super::testing::{peer, socket_pair};
    use super::*;
    use tokio::io::AsyncReadExt;

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
}
