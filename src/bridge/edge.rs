//! The edge's side of the bridge: ticks from Redis to the hubs, byte for byte, and the
//! producer's state for the REST routes.
//!
//! An edge subscribes to every channel, then reads each channel's last message (so a client
//! gets a snapshot at once even on an edge that just started, and a reconnect fills what it
//! can). Each tick is handed to the channel's hub exactly as received: the hub's fan-out
//! writes the producer's plain frame, or its compressed one, to every client.
//!
//! Redis going away is noticed by the stream ending or by a PING (every second) going
//! unanswered. The hubs keep their latest tick and their clients meanwhile; the edge
//! reconnects with backoff and carries on from the channel's last message.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::envelope::{self, Incoming};
use super::{connect, Backoff, BridgeSettings, BrokerStatus, CONNECT_TIMEOUT};
use crate::broadcast::frame::{SharedDeflater, Tick};
use crate::broadcast::hub::Hub;
use crate::broadcast::ticker::DEFLATE_LEVEL;
use crate::market::route_state::RouteState;

/// How often the subscription is checked with a PING, and how long the answer may take.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How old the cached producer state may be before a REST request reads it again.
const STATE_MAX_AGE: Duration = Duration::from_secs(1);

/// One channel as the edge serves it.
struct Channel {
    name: String,
    hub: Hub,
    deflater: Option<SharedDeflater>,
    /// The last `seq` and `ts` handed to the hub.
    last_seq: u64,
    last_ts: i64,
}

/// The producer's state for the REST routes, read from Redis on demand and cached.
pub struct RemoteState {
    client: redis::Client,
    key: String,
    conn: tokio::sync::Mutex<(Option<redis::aio::MultiplexedConnection>, Option<Instant>)>,
    latest: RwLock<Option<Arc<RouteState>>>,
}

impl RemoteState {
    /// State read through `client` from the key of `settings`.
    pub fn new(client: redis::Client, settings: &BridgeSettings) -> RemoteState {
        RemoteState {
            client,
            key: settings.state_key(),
            conn: tokio::sync::Mutex::new((None, None)),
            latest: RwLock::new(None),
        }
    }

    /// The state, read again when the cached copy is older than a second. While Redis is
    /// away the last copy is served; `None` until one was read.
    pub async fn get(&self) -> Option<Arc<RouteState>> {
        self.read(false).await
    }

    /// The cached state as it is (no waiting).
    pub fn cached(&self) -> Option<Arc<RouteState>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the state now (new alerts arrived, say).
    pub async fn refresh(&self) {
        self.read(true).await;
    }

    async fn read(&self, force: bool) -> Option<Arc<RouteState>> {
        let mut guard = self.conn.lock().await;
        let (conn, read_at) = &mut *guard;
        if !force && read_at.is_some_and(|t| t.elapsed() < STATE_MAX_AGE) {
            return self.cached();
        }
        // Marked read even when it fails: requests during an outage do not queue on Redis.
        *read_at = Some(Instant::now());
        if conn.is_none() {
            *conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.client))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let c = conn.as_mut()?;
        let got: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(&self.key).query_async(c).await;
        match got {
            Ok(Some(bytes)) => match serde_json::from_slice::<RouteState>(&bytes) {
                Ok(state) => {
                    *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(state));
                }
                Err(e) => tracing::warn!("the producer's state in Redis is not readable: {e}"),
            },
            Ok(None) => {}
            Err(_) => *conn = None,
        }
        self.cached()
    }
}

/// Runs the edge's bridge until `stop`: `hubs` by channel name.
pub async fn run(
    client: redis::Client,
    settings: BridgeSettings,
    status: Arc<BrokerStatus>,
    hubs: Vec<(String, Hub)>,
    remote: Arc<RemoteState>,
    stop: CancellationToken,
) {
    let mut channels: HashMap<String, Channel> = hubs
        .into_iter()
        .map(|(name, hub)| {
            let deflater = hub
                .settings()
                .compression
                .then(|| SharedDeflater::new(DEFLATE_LEVEL));
            let ch = Channel {
                name: name.clone(),
                hub,
                deflater,
                last_seq: 0,
                last_ts: 0,
            };
            (settings.channel(&name), ch)
        })
        .collect();
    let names: Vec<String> = channels.keys().cloned().collect();
    let mut backoff = Backoff::new();
    let mut ever_connected = false;
    loop {
        let outcome = session(
            &client,
            &settings,
            &status,
            &names,
            &mut channels,
            &remote,
            &stop,
            &mut ever_connected,
        )
        .await;
        match outcome {
            Ok(()) => return,
            Err(e) => {
                status.down(&e);
                backoff_or_stop(&mut backoff, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
            }
        }
        if ever_connected && status.is_connected() {
            backoff.reset();
        }
    }
}

async fn backoff_or_stop(backoff: &mut Backoff, stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(backoff.next_wait()) => {}
    }
}

/// One connection's life: subscribe, catch up, relay until the connection fails (`Err`) or
/// the edge stops (`Ok`).
#[allow(clippy::too_many_arguments)]
async fn session(
    client: &redis::Client,
    settings: &BridgeSettings,
    status: &Arc<BrokerStatus>,
    names: &[String],
    channels: &mut HashMap<String, Channel>,
    remote: &Arc<RemoteState>,
    stop: &CancellationToken,
    ever_connected: &mut bool,
) -> Result<(), String> {
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(CONNECT_TIMEOUT, sink.subscribe(names))
        .await
        .map_err(|_| "subscribing timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // Subscribed first, then the last messages: nothing published in between is missed (it
    // waits in the stream, and what was already had is skipped by its seq).
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(client))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let lasts: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(
            channels
                .values()
                .map(|c| settings.last_key(&c.name))
                .collect::<Vec<_>>(),
        )
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    if status.up() && *ever_connected {
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("Redis is back: relaying again");
    }
    *ever_connected = true;
    let keys: Vec<String> = channels.keys().cloned().collect();
    for (key, last) in keys.iter().zip(lasts) {
        if let (Some(bytes), Some(ch)) = (last, channels.get_mut(key)) {
            relay_one(ch, &bytes, status, remote, true).await;
        }
    }
    let refresh = remote.clone();
    tokio::spawn(async move { refresh.refresh().await });
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Err("the connection closed".into());
                };
                if let Some(ch) = channels.get_mut(msg.get_channel_name()) {
                    relay_one(ch, msg.get_payload_bytes(), status, remote, false).await;
                }
            }
            _ = pings.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err(format!("no answer to PING in {PING_TIMEOUT:?}")),
                }
            }
        }
    }
}

/// The fields of a foreign body the edge needs.
#[derive(Deserialize)]
struct Stamp {
    seq: Option<u64>,
    ts: Option<i64>,
}

/// Hands one message to its channel's hub, or counts why not. `catching_up`: the channel's
/// last message, read at (re)connection (not counted as a gap when it is one).
async fn relay_one(
    ch: &mut Channel,
    message: &[u8],
    status: &BrokerStatus,
    remote: &Arc<RemoteState>,
    catching_up: bool,
) {
    let tick = match envelope::decode(message) {
        Ok(Incoming::Envelope(e)) => {
            if !accept(ch, e.seq, e.ts_ms, status) {
                return;
            }
            Tick::received(e.seq, e.ts_ms, e.payload, e.deflated, ch.deflater.clone())
        }
        Ok(Incoming::Json(body)) => {
            let Some(stamped) = stamp_foreign(body, ch.last_seq) else {
                status.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    channel = ch.name,
                    "dropped a message that is not a JSON object"
                );
                return;
            };
            if !accept(ch, stamped.0, stamped.1, status) {
                return;
            }
            Tick::received(stamped.0, stamped.1, &stamped.2, None, ch.deflater.clone())
        }
        Err(e) => {
            status.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(channel = ch.name, "dropped a broken envelope: {e}");
            return;
        }
    };
    let hop = chrono::Utc::now().timestamp_millis() - tick.ts_ms;
    status.hop_seconds.observe(hop.max(0) as f64 / 1000.0);
    status.ticks.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    ch.hub.publish(tick).await;
    ch.hub
        .timings()
        .tick_seconds
        .observe(started.elapsed().as_secs_f64());
    if ch.name == "alerts" && !catching_up {
        let remote = remote.clone();
        tokio::spawn(async move { remote.refresh().await });
    }
}

/// Whether a tick numbered `seq` at `ts_ms` goes out, counting the ticks skipped since the last
/// one (lost on the channel, or never published while Redis was away); records it as the last.
fn accept(ch: &mut Channel, seq: u64, ts_ms: i64, status: &BrokerStatus) -> bool {
    if seq <= ch.last_seq {
        // Already sent (a duplicate, or the last message read again at reconnection) ...
        if seq == ch.last_seq || ts_ms <= ch.last_ts {
            return false;
        }
        // ... unless it is newer by its time: the producers started a new count, and the
        // clients take it from here.
        tracing::warn!(
            channel = ch.name,
            from = ch.last_seq,
            to = seq,
            "seq started again (the producers restarted)"
        );
        ch.hub.restart_count();
    } else if ch.last_seq > 0 && seq > ch.last_seq + 1 {
        status.gaps.fetch_add(1, Ordering::Relaxed);
        status
            .missed
            .fetch_add(seq - ch.last_seq - 1, Ordering::Relaxed);
    }
    ch.last_seq = seq;
    ch.last_ts = ts_ms;
    true
}

/// A body from a publisher other than marketcast, as clients must get it: a JSON object,
/// with `seq` (the next after `last_seq`) and `ts` (now) put first when it has neither.
/// `None` when it is not a JSON object, or its `seq`/`ts` are not numbers.
fn stamp_foreign(body: &[u8], last_seq: u64) -> Option<(u64, i64, Vec<u8>)> {
    let trimmed = body.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    let stamp: Stamp = serde_json::from_slice(trimmed).ok()?;
    let now = chrono::Utc::now().timestamp_millis();
    let (seq, ts) = (stamp.seq.unwrap_or(last_seq + 1), stamp.ts.unwrap_or(now));
    let mut prefix = String::from("{");
    if stamp.seq.is_none() {
        prefix.push_str(&format!("\"seq\":{seq},"));
    }
    if stamp.ts.is_none() {
        prefix.push_str(&format!("\"ts\":{ts},"));
    }
    if prefix.len() == 1 {
        return Some((seq, ts, trimmed.to_vec()));
    }
    let rest = &trimmed[1..];
    if rest.trim_ascii_start().first() == Some(&b'}') {
        prefix.pop();
    }
    let mut out = prefix.into_bytes();
    out.extend_from_slice(rest);
    Some((seq, ts, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::hub::HubSettings;

    fn channel() -> Channel {
        Channel {
            name: "market".into(),
            hub: Hub::new(HubSettings::default()),
            deflater: None,
            last_seq: 0,
            last_ts: 0,
        }
    }

    #[test]
    fn foreign_bodies_get_seq_and_ts_first_only_when_missing() {
        let (seq, ts, out) = stamp_foreign(br#" {"quotes":{}} "#, 41).unwrap();
        assert_eq!(seq, 42);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["seq"].as_u64(), v["ts"].as_i64()), (Some(42), Some(ts)));
        assert!(out.starts_with(b"{\"seq\":42,\"ts\":"));
        let (_, _, out) = stamp_foreign(b"{}", 0).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
            "{out:?}"
        );
        let (seq, ts, out) = stamp_foreign(br#"{"seq":7,"ts":9,"a":1}"#, 100).unwrap();
        assert_eq!(
            (seq, ts, &out[..]),
            (7, 9, &br#"{"seq":7,"ts":9,"a":1}"#[..])
        );
        let (seq, _, out) = stamp_foreign(br#"{"seq":7,"a":1}"#, 0).unwrap();
        assert_eq!(seq, 7);
        assert!(out.starts_with(b"{\"ts\":"));
        for bad in [
            &b"[1,2]"[..],
            b"hello",
            b"{\"seq\":\"x\"}",
            b"{unclosed",
            b"",
        ] {
            assert!(
                stamp_foreign(bad, 0).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn gaps_are_counted_and_old_ticks_skipped() {
        let status = BrokerStatus::new(super::super::Role::Edge, String::new());
        let mut ch = channel();
        assert!(
            accept(&mut ch, 10, 100, &status),
            "the first tick, read at start"
        );
        assert!(accept(&mut ch, 11, 101, &status));
        assert!(!accept(&mut ch, 11, 101, &status), "a duplicate");
        assert!(!accept(&mut ch, 9, 99, &status), "an old one");
        assert!(accept(&mut ch, 14, 104, &status));
        assert_eq!(status.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(status.missed.load(Ordering::Relaxed), 2);
        assert!(
            accept(&mut ch, 1, 200, &status),
            "a new count, newer by its time"
        );
        assert_eq!(
            status.gaps.load(Ordering::Relaxed),
            1,
            "a new count is not a gap"
        );
        assert_eq!(ch.last_seq, 1);
    }
}
