//! What a hub counts and reports: each client's counters, why connections ended, how long
//! ticks take, and the totals and per-client views that `/health` and `/metrics` read.
//!
//! **Counted where it happens, summed when asked.** The fan-out counts a client's sent,
//! dropped and written bytes in that client's own [`ClientCounters`] (relaxed atomics on its
//! slot, touched only by whoever writes to that client), never in a counter every fan-out
//! thread shares, so counting adds no contention to a tick. A hub's totals are summed from its clients when asked for (see
//! [`super::hub::Hub::totals`]); a client that leaves folds its counts into the hub's.
//! Relaxed ordering is enough: each number is reported on its own, and no reader infers one
//! from another. The tick timings are observed once per tick, never per client.

use std::sync::atomic::AtomicU64;

use serde::Serialize;

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
