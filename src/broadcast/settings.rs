//! A hub's settings: the limits and timings of one channel's WebSocket side, and what a client
//! gets when it connects.
//!
//! They are plain values, fixed when the hub is built (the server makes them from its
//! settings, one per channel; tests use [`HubSettings::default`]) and never changed while it
//! runs, so the fan-out reads them without a lock. Each client copies the few it needs into its own slot
//! when it registers (see [`super::outbox`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

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
