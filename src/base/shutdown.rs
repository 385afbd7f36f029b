//! The phases of shutdown, as types: one owner ends a phase, every task of it hears.
//!
//! A process that shuts down well stops in an order: it stops accepting, closes its clients
//! (Close 1001), stops the feed and the tick loops, lets history write its last records, writes
//! its last checkpoint. Each step is a [`Phase`]: the tasks that belong to it are spawned
//! through it (so the owner can wait for them, within a budget) and watch its [`Shutdown`]
//! (so they know when to stop). The composition root owns the phases and ends them in order;
//! a component is handed the phase (or only its `Shutdown`) it belongs to and never decides
//! another component's lifetime.
//!
//! The same shape as tokio's mini-redis `Shutdown`, over `tokio_util`'s cancellation token and
//! task tracker.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a task watches to know that its phase is ending; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// True once the phase has begun to end.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves when the phase begins to end (at once if it has).
    pub async fn recv(&self) {
        self.0.cancelled().await
    }

    /// A `Shutdown` that never fires; for a task (or a test) that no phase ends.
    pub fn never() -> Self {
        Shutdown(CancellationToken::new())
    }
}

/// One phase of shutdown: its signal, and the tasks it waits for; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    signal: CancellationToken,
    tasks: TaskTracker,
}

impl Phase {
    /// A phase that has not begun to end, with no tasks.
    pub fn new() -> Self {
        Phase::default()
    }

    /// What this phase's tasks watch.
    pub fn listener(&self) -> Shutdown {
        Shutdown(self.signal.clone())
    }

    /// Spawns a task of this phase: [`Phase::end`] waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// True once the phase has begun to end.
    pub fn is_ending(&self) -> bool {
        self.signal.is_cancelled()
    }

    /// Tells every task of the phase to stop, without waiting.
    pub fn begin_end(&self) {
        self.signal.cancel();
    }

    /// Tells every task of the phase to stop and waits up to `budget` for them to finish.
    /// Returns how many were still running after it.
    pub async fn end(&self, budget: Duration) -> usize {
        self.signal.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(budget, self.tasks.wait()).await;
        self.tasks.len()
    }

    /// Tasks of this phase still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn end_signals_and_waits_for_its_tasks() {
        let phase = Phase::new();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, flag) = (phase.listener(), done.clone());
        phase.spawn(async move {
            stop.recv().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(!phase.is_ending());
        assert_eq!(phase.end(Duration::from_secs(5)).await, 0);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert!(phase.listener().is_shutdown());
    }

    #[tokio::test]
    async fn end_gives_up_after_its_budget_and_counts_the_rest() {
        let phase = Phase::new();
        phase.spawn(std::future::pending::<()>());
        assert_eq!(phase.end(Duration::from_millis(20)).await, 1);
    }

    #[tokio::test]
    async fn never_does_not_fire() {
        let never = Shutdown::never();
        let fired = tokio::time::timeout(Duration::from_millis(20), never.recv()).await;
        assert!(fired.is_err());
        assert!(!never.is_shutdown());
    }
}
