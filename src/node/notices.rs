//! Status notices: the feed's state told to every client as `{"type":"status",...}` messages.
//!
//! A live feed's link changes (SSI down, SSI back) and a feed that goes quiet become one text
//! message to every client of every channel. The feed only reports its state
//! ([`FeedStats`]); the hubs only send bytes; this module is where the two meet, so neither
//! knows the other's protocol. The snapshot keeps flowing meanwhile.

use std::sync::Arc;
use std::time::Duration;

use crate::base::shutdown::Shutdown;
use crate::broadcast::channels::Channels;
use crate::feed::FeedStats;

/// Marks the feed stale when no message came for `after`, fresh again when one does, and tells
/// every client both times: `{"type":"status","stale":true,...}`.
pub async fn watch_staleness(
    channels: Channels,
    stats: Arc<FeedStats>,
    after: Duration,
    stop: Shutdown,
) {
    let mut checks = tokio::time::interval((after / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = checks.tick() => {}
        }
        let quiet = stats.quiet_for();
        let stale = quiet > after;
        if !stats.set_stale(stale) {
            continue;
        }
        let status = stats.status();
        if stale {
            tracing::warn!(
                feed = status.kind,
                quiet_s = quiet.as_secs(),
                "the feed went quiet"
            );
        } else {
            tracing::info!(feed = status.kind, "the feed is flowing again");
        }
        let message = serde_json::json!({
            "type": "status",
            "connected": status.connected.unwrap_or(true),
            "stale": stale,
            "feed": status.kind,
            "quiet_ms": quiet.as_millis() as u64,
        });
        announce(&channels, message);
    }
}

/// Broadcasts the feed's link changes to every client as status messages.
pub async fn announce_link_changes(channels: Channels, stats: Arc<FeedStats>, stop: Shutdown) {
    let mut changes = stats.link_changes();
    let mut announced_down = false;
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let Some(link) = changes.borrow_and_update().clone() else {
            continue;
        };
        // "Back up" only after "down": the first connection at start-up is no news.
        if link.connected && !announced_down {
            continue;
        }
        announced_down = !link.connected;
        let message = serde_json::json!({
            "type": "status",
            "connected": link.connected,
            "feed": stats.status().kind,
            "error": link.error,
        });
        announce(&channels, message);
    }
}

/// Sends a status message to every client of every channel, off the async workers (one write
/// per client).
fn announce(channels: &Channels, message: serde_json::Value) {
    let channels = channels.clone();
    tokio::task::spawn_blocking(move || channels.announce(message.to_string().as_bytes()));
}
