//! The running feed: one task per planned connection, each reconnecting on its own with
//! backoff, plus the token renewer; messages go to the parser and the processor from here.
//!
//! The link counts as up only while every planned connection is up, so a client sees one
//! "connected" status for the feed as a whole. After a reconnect the foreign tracker re-seeds
//! its baselines (unless turned off), so the flows missed during the gap do not count as one
//! burst. A session that stayed up `STABLE_AFTER` resets the backoff: a link that drops once
//! a day reconnects fast, one that drops at once backs off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::session::{Session, SessionEvent};
use super::{plan_connections, SsiClient, SsiStreamError};
use crate::base::shutdown::Shutdown;
use crate::base::time::Clock;
use crate::base::Backoff;
use crate::feed::recorder::Recorder;
use crate::feed::{ingest, FeedState, FeedStats};
use crate::market::SharedMarket;

/// A session that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the feed's sessions share: where messages go and what is counted.
pub struct SsiFeed {
    pub client: Arc<SsiClient>,
    pub market: SharedMarket,
    pub stats: Arc<FeedStats>,
    pub recorder: Option<Arc<Recorder>>,
    pub clock: Arc<dyn Clock>,
    /// Sessions up right now, out of `sessions`.
    up: AtomicUsize,
    sessions: usize,
    /// Set once a session has been up, so a later success counts as a reconnect.
    ever_up: Mutex<bool>,
}

impl SsiFeed {
    /// The shared part of the feed.
    pub fn new(
        client: Arc<SsiClient>,
        market: SharedMarket,
        stats: Arc<FeedStats>,
        recorder: Option<Arc<Recorder>>,
        clock: Arc<dyn Clock>,
    ) -> SsiFeed {
        SsiFeed {
            client,
            market,
            stats,
            recorder,
            clock,
            up: AtomicUsize::new(0),
            sessions: 1,
            ever_up: Mutex::new(false),
        }
    }

    fn session_up(&self) {
        let up = self.up.fetch_add(1, Ordering::SeqCst) + 1;
        if up == self.sessions {
            let reconnect = {
                let mut ever = self.ever_up.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut *ever, true)
            };
            if reconnect && self.client.settings.reseed_foreign {
                self.market.with(|p| p.reseed_foreign());
            }
            self.stats.set_state(FeedState::Running, None);
            self.stats.set_link(true, None);
        }
    }

    fn session_down(&self, error: &SsiStreamError) {
        let was = self.up.fetch_sub(1, Ordering::SeqCst);
        if was == self.sessions {
            self.stats.set_link(false, Some(error.to_string()));
        }
    }

    fn deliver(&self, messages: &[String]) {
        let now = self.clock.now();
        if let Some(rec) = &self.recorder {
            for m in messages {
                rec.record(now, m);
            }
        }
        self.market.with(|p| {
            for m in messages {
                let _ = ingest(p, &self.stats, m, now, || "SSI stream".into());
            }
        });
    }
}

/// Runs the SSI feed until `shutdown`: one task per planned connection, each reconnecting on
/// its own, plus the token renewer.
pub async fn run(mut feed: SsiFeed, channels: Vec<String>, shutdown: Shutdown) {
    let plan = plan_connections(&channels, feed.client.settings.subscribe_mode);
    feed.sessions = plan.len().max(1);
    let feed = Arc::new(feed);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(renew_token(feed.clone(), shutdown.clone()));
    for calls in plan {
        tasks.spawn(keep_session(feed.clone(), calls, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// Renews the cached token a margin before it expires, so a reconnect never waits for one.
async fn renew_token(feed: Arc<SsiFeed>, shutdown: Shutdown) {
    loop {
        let wait = feed
            .client
            .renew_in()
            .await
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_millis(200));
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = feed.client.token().await {
            tracing::warn!("SSI token renewal failed: {e}; retrying");
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

/// One connection's life: open, read until it ends, back off, open again.
async fn keep_session(feed: Arc<SsiFeed>, calls: Vec<String>, shutdown: Shutdown) {
    let settings = &feed.client.settings;
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max).jitter_below();
    let mut counted_down = true;
    loop {
        let opened = tokio::select! {
            _ = shutdown.recv() => return,
            s = feed.client.open_session(&calls) => s,
        };
        let error = match opened {
            Ok(session) => {
                tracing::info!(channels = ?calls, idle_timeout = ?session.idle_timeout(), "SSI stream connected");
                feed.session_up();
                counted_down = false;
                let up_at = tokio::time::Instant::now();
                let end = tokio::select! {
                    _ = shutdown.recv() => None,
                    e = read_session(&feed, session) => Some(e),
                };
                let Some(error) = end else { return };
                if up_at.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                error
            }
            Err(e) => e,
        };
        tracing::warn!("SSI {error} ({})", error.advice());
        if !counted_down {
            feed.session_down(&error);
            counted_down = true;
        } else {
            feed.stats.set_link(false, Some(error.to_string()));
        }
        // Jitter over the upper half: attempts of many nodes spread out.
        let sleep = backoff.next_wait();
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Reads a session until it ends; returns why it ended.
async fn read_session(feed: &SsiFeed, mut session: Session) -> SsiStreamError {
    loop {
        match session.next_event().await {
            Ok(SessionEvent::Messages(messages)) => feed.deliver(&messages),
            Ok(SessionEvent::HubError(text)) => {
                tracing::warn!(error = %text, "SSI hub sent Error");
                feed.stats
                    .note_upstream_error(format!("SSI hub error: {text}"));
            }
            Ok(SessionEvent::Answer {
                channel,
                error: None,
            }) => {
                tracing::info!(channel = %channel, "SSI accepted SwitchChannels");
            }
            Ok(SessionEvent::Answer {
                channel,
                error: Some(e),
            }) => {
                tracing::warn!(channel = %channel, error = %e, "SSI refused SwitchChannels");
                feed.stats
                    .note_upstream_error(format!("SwitchChannels {channel}: {e}"));
            }
            Ok(SessionEvent::Malformed(why)) => {
                tracing::debug!("SSI frame skipped: {why}");
                feed.stats.note_malformed(format!("SSI frame: {why}"));
            }
            Err(e) => {
                session.close().await;
                return e;
            }
        }
    }
}
