//! The process's life from the signal on: who stops when, and how long each may take.
//!
//! Every task the node starts belongs to one [`Phase`], and the phases end in this order:
//!
//! 1. **Accepting** stops at the signal: the accept loop ends, in-flight HTTP requests get
//!    [`HTTP_GRACE`], and new upgrades are refused with 503 (the clients' phase is ending). The
//!    **broker** link is let go at the signal too: a leading producer gives up its lease at
//!    once, so a standby takes over without waiting for the lease to run out.
//! 2. **Clients** get Close 1001 at the signal and until [`CLIENT_GRACE`] after it to finish
//!    their closing handshakes (WebSocket clients of every channel and ingest bridges).
//! 3. **Ticks**: the feed, the tick loops, the bridge, the status notices, the certificate
//!    watcher and the checkpoint loop stop, so nothing changes the state any more.
//! 4. **History** writes the records the feed left, within what is left of the budget.
//! 5. The **last checkpoint** is written, then the recorder is flushed.
//!
//! The whole sequence fits in [`SHUTDOWN_BUDGET`] (the README promises an exit within two
//! seconds): each phase is given what is left of it, so a slow database costs the history
//! writer its last batch, never the exit.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::base::shutdown::Phase;

/// From the signal to the process's exit, at most.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(2);

/// Time the clients get to complete their closing handshakes, from the signal.
pub const CLIENT_GRACE: Duration = Duration::from_millis(1500);

/// How long in-flight HTTP requests get to finish, from the signal.
pub const HTTP_GRACE: Duration = Duration::from_millis(500);

/// Kept back from the budget for what follows the phases: the last checkpoint and the
/// runtime's own shutdown.
const RESERVE: Duration = Duration::from_millis(250);

/// The least the tick loops get to stop (they stop at once when told; this bounds a stuck one).
const TICKS_GRACE: Duration = Duration::from_millis(100);

/// The phases of shutdown the node's tasks belong to.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// The Redis bridge (a producer's publishing and lease, an edge's relay).
    pub broker: Phase,
    /// Client connections (WebSocket clients of every channel, ingest bridges).
    pub clients: Phase,
    /// The feed, the tick loops, the bridge, notices, the TLS watcher, the checkpoint loop.
    pub ticks: Phase,
    /// The history writer.
    pub history: Phase,
    /// When the signal came: the budget counts from it.
    signalled: Arc<OnceLock<Instant>>,
}

impl Lifecycle {
    /// Phases that have not begun to end.
    pub fn new() -> Self {
        Lifecycle::default()
    }

    /// Steps 1-2 begin: no new upgrades, and every client is told to close. Called at the
    /// signal, before the accept loop winds down.
    pub fn stop_accepting(&self) {
        let _ = self.signalled.set(Instant::now());
        tracing::info!("shutting down: closing clients with 1001");
        self.broker.begin_end();
        self.clients.begin_end();
    }

    /// Steps 2-4, after the accept loop has ended: waits for the clients, stops the ticks,
    /// lets history drain; each within what is left of the budget counted from the signal.
    pub async fn wind_down(&self) {
        if !self.clients.is_ending() {
            self.stop_accepting();
        }
        let signalled = *self.signalled.get_or_init(Instant::now);
        let deadline = signalled + SHUTDOWN_BUDGET - RESERVE;
        let left = |until: Instant| until.saturating_duration_since(Instant::now());

        let stragglers = self.clients.end(left(signalled + CLIENT_GRACE)).await;
        if stragglers > 0 {
            tracing::warn!("{stragglers} clients did not finish closing in time");
        }
        self.broker.end(left(deadline).min(TICKS_GRACE)).await;
        self.ticks.end(left(deadline).min(TICKS_GRACE)).await;
        if self.history.end(left(deadline)).await > 0 {
            tracing::warn!(
                "history: the last records were not written within the shutdown budget ({SHUTDOWN_BUDGET:?})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the budget is measured on tokio's clock, which advances only when every
    // task waits, so the bound holds whatever the machine is doing.
    #[tokio::test(start_paused = true)]
    async fn phases_end_in_order_within_the_budget() {
        let life = Lifecycle::new();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (phase, name) in [
            (&life.history, "history"),
            (&life.ticks, "ticks"),
            (&life.clients, "clients"),
            (&life.broker, "broker"),
        ] {
            let (stop, order) = (phase.listener(), order.clone());
            phase.spawn(async move {
                stop.recv().await;
                order.lock().unwrap().push(name);
            });
        }
        // A task that never stops: the budget, not the task, ends the wait.
        life.history.spawn(std::future::pending::<()>());
        let signalled = Instant::now();
        life.stop_accepting();
        life.wind_down().await;
        assert!(signalled.elapsed() <= SHUTDOWN_BUDGET);
        let order = order.lock().unwrap().clone();
        // The broker and the clients hear the signal at once; then the ticks, then history.
        assert_eq!(order.len(), 4);
        assert!(order[..2].contains(&"broker") && order[..2].contains(&"clients"));
        assert_eq!(order[2..], ["ticks", "history"]);
    }
}
