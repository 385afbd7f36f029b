//! The processor shared between the feed, the broadcast loop and the HTTP routes.
//!
//! A `std::sync::Mutex`, not an async one: every critical section is short, synchronous and
//! never awaits (apply a batch of events, take a snapshot), so a blocking lock is both simpler
//! and faster (the reasoning of mini-redis's `Db`). The snapshot is cloned out under the lock
//! and serialised after it is released, so a large snapshot never stalls the feed.

use std::sync::{Arc, Mutex};

use super::processor::MarketProcessor;

/// Cheap-to-clone handle to the session's processor.
#[derive(Clone)]
pub struct SharedMarket {
    inner: Arc<Mutex<MarketProcessor>>,
}

impl SharedMarket {
    /// Shares `processor`.
    pub fn new(processor: MarketProcessor) -> Self {
        SharedMarket {
            inner: Arc::new(Mutex::new(processor)),
        }
    }

    /// Runs `f` with the processor locked. Keep `f` short and free of I/O.
    pub fn with<R>(&self, f: impl FnOnce(&mut MarketProcessor) -> R) -> R {
        // A panic while holding the lock leaves the processor as it was at that point, which is
        // still a consistent map of symbols; keep serving rather than poisoning every reader.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}
