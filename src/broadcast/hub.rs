//! The hub (the original's `ConnectionManager`): who is connected, what was last broadcast,
//! and the queue every client reads from.
//!
//! **One queue, a cursor per client.** Every tick is published once into a
//! `tokio::sync::broadcast` ring of `WS_QUEUE_SIZE` slots holding `Arc<Tick>`. Each client reads
//! the ring through its own receiver, which is exactly a bounded per-client queue with
//! drop-oldest: a client that falls more than `WS_QUEUE_SIZE` messages behind skips the oldest
//! ones (the receiver reports how many, and they are counted as drops for that client and in
//! total). Publishing costs the same whatever the number of clients or how slow they are, no
//! client can block it, and the memory a slow client can pin is the shared ring, not a queue of
//! its own.
//!
//! The ring's capacity is the queue size rounded up to a power of two (a property of Tokio's
//! channel); a client that takes a tick more than `WS_QUEUE_SIZE` behind the latest skips it as
//! dropped, so the bound a client sees is exactly the setting.
//!
//! Counters are kept per client (each client's task owns its atomics, so there is no shared
//! cache line written per message); totals are summed when `/health` or `/metrics` ask, and a
//! departing client's counts are folded into the totals once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::Tick;

/// Limits and timings of the WebSocket side.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Messages a client may fall behind before the oldest are dropped.
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
        }
    }
}

/// One client's counters, written only by its own task.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Messages written to the socket.
    pub sent: AtomicU64,
    /// Messages skipped because the client was too far behind, counted when it next reads.
    pub dropped: AtomicU64,
    /// `seq` of the last tick the client took from the queue.
    pub last_seq: AtomicU64,
}

impl ClientCounters {
    /// Drops so far, including those a stalled client has not yet noticed: ticks that have
    /// fallen out of the ring behind its cursor.
    fn dropped_now(&self, latest_seq: u64, queue_size: usize) -> u64 {
        let behind = latest_seq.saturating_sub(self.last_seq.load(Ordering::Relaxed));
        self.dropped.load(Ordering::Relaxed) + behind.saturating_sub(queue_size as u64)
    }
}

#[derive(Debug)]
struct ClientEntry {
    peer: SocketAddr,
    deflate: bool,
    counters: Arc<ClientCounters>,
}

/// Totals over all clients, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HubTotals {
    /// Clients connected now.
    pub clients: usize,
    /// Of those, how many receive compressed frames.
    pub deflate_clients: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Messages written to clients since start.
    pub messages_sent: u64,
    /// Messages dropped for slow clients since start.
    pub messages_dropped: u64,
    /// Clients closed for not answering a heartbeat.
    pub heartbeat_timeouts: u64,
    /// Clients closed for a protocol or policy violation.
    pub protocol_closes: u64,
    /// Broadcasts published.
    pub ticks: u64,
}

/// What one client looks like from outside (for `/health`'s per-client view and tests).
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub id: u64,
    pub peer: String,
    pub deflate: bool,
    pub sent: u64,
    pub dropped: u64,
}

struct Shared {
    settings: HubSettings,
    tx: broadcast::Sender<Arc<Tick>>,
    latest: RwLock<Option<Arc<Tick>>>,
    /// `latest`'s seq, readable without the lock (every client checks it per message).
    latest_seq: AtomicU64,
    clients: Mutex<HashMap<u64, ClientEntry>>,
    client_count: AtomicUsize,
    deflate_count: AtomicUsize,
    next_id: AtomicU64,
    departed_sent: AtomicU64,
    departed_dropped: AtomicU64,
    heartbeat_timeouts: AtomicU64,
    protocol_closes: AtomicU64,
    ticks: AtomicU64,
    tick_wanted: Notify,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Cheap-to-clone handle to the hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub with no clients.
    pub fn new(settings: HubSettings) -> Self {
        let (tx, _) = broadcast::channel(settings.queue_size.max(1));
        Hub {
            shared: Arc::new(Shared {
                settings,
                tx,
                latest: RwLock::new(None),
                latest_seq: AtomicU64::new(0),
                clients: Mutex::new(HashMap::new()),
                client_count: AtomicUsize::new(0),
                deflate_count: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                departed_sent: AtomicU64::new(0),
                departed_dropped: AtomicU64::new(0),
                heartbeat_timeouts: AtomicU64::new(0),
                protocol_closes: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                tick_wanted: Notify::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The settings the hub was built with.
    pub fn settings(&self) -> &HubSettings {
        &self.shared.settings
    }

    /// Publishes a tick to every client and keeps it as the latest.
    pub fn publish(&self, tick: Tick) {
        let tick = Arc::new(tick);
        *self
            .shared
            .latest
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(tick.clone());
        self.shared.latest_seq.store(tick.seq, Ordering::Release);
        self.shared.ticks.fetch_add(1, Ordering::Relaxed);
        // An error only means nobody is subscribed, which is fine.
        let _ = self.shared.tx.send(tick);
    }

    /// The most recent tick, if any.
    pub fn latest(&self) -> Option<Arc<Tick>> {
        self.shared
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `seq` of the latest tick, 0 before the first.
    pub fn latest_seq(&self) -> u64 {
        self.shared.latest_seq.load(Ordering::Acquire)
    }

    /// True when a tick is more than `WS_QUEUE_SIZE` behind the latest: it counts as dropped.
    ///
    /// The ring rounds its capacity up to a power of two; this check makes the bound exactly
    /// the configured queue size.
    pub fn is_stale(&self, seq: u64) -> bool {
        self.latest_seq().saturating_sub(seq) >= self.shared.settings.queue_size as u64
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.shared.client_count.load(Ordering::Relaxed)
    }

    /// Clients that receive compressed frames.
    pub fn deflate_client_count(&self) -> usize {
        self.shared.deflate_count.load(Ordering::Relaxed)
    }

    /// Registers a client; the returned handle unregisters it when dropped.
    pub fn register(&self, peer: SocketAddr, deflate: bool) -> ClientHandle {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        // Subscribe before the client counts as connected, so the tick loop's first broadcast
        // for it cannot be missed.
        let rx = self.shared.tx.subscribe();
        let counters = Arc::new(ClientCounters {
            last_seq: AtomicU64::new(self.latest_seq()),
            ..Default::default()
        });
        self.shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                ClientEntry {
                    peer,
                    deflate,
                    counters: counters.clone(),
                },
            );
        self.shared.client_count.fetch_add(1, Ordering::Relaxed);
        if deflate {
            self.shared.deflate_count.fetch_add(1, Ordering::Relaxed);
        }
        ClientHandle {
            hub: self.clone(),
            id,
            deflate,
            counters,
            rx: Some(rx),
        }
    }

    /// Asks the broadcast loop for a tick now (a client connected while nothing fresh exists).
    pub fn request_tick(&self) {
        self.shared.tick_wanted.notify_one();
    }

    /// Resolves when a client asked for a tick.
    pub async fn tick_requested(&self) {
        self.shared.tick_wanted.notified().await
    }

    /// Counts a client closed by the heartbeat.
    pub fn note_heartbeat_timeout(&self) {
        self.shared
            .heartbeat_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client closed for breaking the protocol or a limit.
    pub fn note_protocol_close(&self) {
        self.shared.protocol_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// Sums the counters of every client, connected or gone.
    pub fn totals(&self) -> HubTotals {
        let (latest, queue) = (self.latest_seq(), self.shared.settings.queue_size);
        let clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (mut sent, mut dropped) = (0, 0);
        for c in clients.values() {
            sent += c.counters.sent.load(Ordering::Relaxed);
            dropped += c.counters.dropped_now(latest, queue);
        }
        HubTotals {
            clients: clients.len(),
            deflate_clients: self.deflate_client_count(),
            connections_total: self.shared.next_id.load(Ordering::Relaxed) - 1,
            messages_sent: sent + self.shared.departed_sent.load(Ordering::Relaxed),
            messages_dropped: dropped + self.shared.departed_dropped.load(Ordering::Relaxed),
            heartbeat_timeouts: self.shared.heartbeat_timeouts.load(Ordering::Relaxed),
            protocol_closes: self.shared.protocol_closes.load(Ordering::Relaxed),
            ticks: self.shared.ticks.load(Ordering::Relaxed),
        }
    }

    /// Every connected client's counters.
    pub fn clients(&self) -> Vec<ClientView> {
        let (latest, queue) = (self.latest_seq(), self.shared.settings.queue_size);
        let clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut views: Vec<ClientView> = clients
            .iter()
            .map(|(id, c)| ClientView {
                id: *id,
                peer: c.peer.to_string(),
                deflate: c.deflate,
                sent: c.counters.sent.load(Ordering::Relaxed),
                dropped: c.counters.dropped_now(latest, queue),
            })
            .collect();
        views.sort_by_key(|v| v.id);
        views
    }

    /// Cancelled when the server shuts down; every client task watches it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shared.shutdown
    }

    /// True until shutdown begins.
    pub fn is_accepting(&self) -> bool {
        !self.shared.shutdown.is_cancelled()
    }

    /// Spawns a client task that shutdown will wait for.
    pub fn spawn_client<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.tasks.spawn(task);
    }

    /// Stops accepting, tells every client to close with 1001, and waits up to `grace` for
    /// their tasks to finish. Returns the number of client tasks still running after it.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        let _ = tokio::time::timeout(grace, self.shared.tasks.wait()).await;
        self.shared.tasks.len()
    }
}

/// A registered client: its queue cursor and counters. Dropping it unregisters the client.
pub struct ClientHandle {
    hub: Hub,
    id: u64,
    deflate: bool,
    counters: Arc<ClientCounters>,
    rx: Option<broadcast::Receiver<Arc<Tick>>>,
}

impl ClientHandle {
    /// The client's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the client receives compressed frames.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The client's counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Takes the client's queue receiver (once).
    pub fn take_receiver(&mut self) -> Option<broadcast::Receiver<Arc<Tick>>> {
        self.rx.take()
    }

    /// The hub the client belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let shared = &self.hub.shared;
        let removed = shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        if removed.is_some() {
            shared.client_count.fetch_sub(1, Ordering::Relaxed);
            if self.deflate {
                shared.deflate_count.fetch_sub(1, Ordering::Relaxed);
            }
            shared.departed_sent.fetch_add(
                self.counters.sent.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            let latest = self.hub.latest_seq();
            shared.departed_dropped.fetch_add(
                self.counters
                    .dropped_now(latest, shared.settings.queue_size),
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[tokio::test]
    async fn register_counts_and_drop_unregisters() {
        let hub = Hub::new(HubSettings::default());
        let a = hub.register(peer(), false);
        let b = hub.register(peer(), true);
        assert_eq!((hub.client_count(), hub.deflate_client_count()), (2, 1));
        a.counters().sent.fetch_add(3, Ordering::Relaxed);
        drop(a);
        drop(b);
        let totals = hub.totals();
        assert_eq!((totals.clients, totals.deflate_clients), (0, 0));
        assert_eq!((totals.connections_total, totals.messages_sent), (2, 3));
    }

    #[tokio::test]
    async fn a_slow_receiver_skips_the_oldest_and_keeps_the_newest() {
        let hub = Hub::new(HubSettings {
            queue_size: 2,
            ..Default::default()
        });
        let mut client = hub.register(peer(), false);
        let mut rx = client.take_receiver().unwrap();
        for seq in 1..=5 {
            hub.publish(Tick::build(seq, 0, b"{}", None));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(rx.recv().await.unwrap().seq, 4);
        assert_eq!(rx.recv().await.unwrap().seq, 5);
        assert_eq!(hub.latest().unwrap().seq, 5);
        assert_eq!(hub.totals().ticks, 5);
    }
}
