//! The edge's side of the bridge: ticks from Redis to the hubs, byte for byte. (The producer's
//! state for the REST routes is [`super::state`].)
//!
//! An edge subscribes to every channel, then reads each channel's last message (so a client
//! gets a snapshot at once even on an edge that just started, and a reconnect fills what it
//! can). Each tick is handed to the channel's hub exactly as received: the hub's fan-out
//! writes the producer's plain frame, or its compressed one, to every client.
//!
//! An edge that falls behind its subscription (its fan-out slower than the ticks arrive) skips
//! to the newest snapshot of a channel instead of queueing the ones between (counted as
//! `conflated`); alerts are events, and each one goes out.
//!
//! What is relayed is only what a producer published, as far as the settings can tell: with
//! `REDIS_SIGNING_KEY`, envelopes whose tag is right (checked once per message, for all the
//! edge's clients); without one, envelopes, and bodies of another publisher only with
//! `REDIS_ACCEPT_FOREIGN`. The rest is dropped and counted. Without a key a message can still be
//! forged, but none can wedge a channel: a `seq` absurdly far from the last one starts a new
//! count instead of being a future every later tick must wait for.
//!
//! Redis going away is noticed by the stream ending or by a PING (every second) going
//! unanswered. The hubs keep their latest tick and their clients meanwhile; the edge
//! reconnects with backoff and carries on from each channel's last message.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::envelope::{self, Incoming};
use super::signing::SigningKey;
use super::state::StateCache;
use super::{connect, BridgeSettings, BrokerStatus, Refusal, CONNECT_TIMEOUT};
use crate::base::shutdown::Shutdown;
use crate::base::Backoff;
use crate::broadcast::frame::{SharedDeflater, Tick, DEFLATE_LEVEL};
use crate::broadcast::hub::Hub;

/// How often the subscription is checked with a PING, and how long the answer may take.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages taken from the subscription at once, at most, when several are waiting.
const BATCH: usize = 64;

/// The channel whose messages are events, never conflated.
const EVENTS: &str = "alerts";

/// Without a signing key, a `seq` further than this from a channel's last one (either way)
/// starts a new count. No producer jumps that far (a day at 100 ticks a second is about two
/// million, a takeover's margin a few thousand), so it only ever meets a message that would
/// otherwise wedge the channel: `{"seq":18446744073709551615}` published by anyone would make
/// every later tick look old. With a key nobody else can publish, and `seq` order is strict.
const SEQ_WINDOW: u64 = 10_000_000;

/// What an edge relays: the settings that decide whose messages count.
struct Gate {
    key: Option<SigningKey>,
    accept_foreign: bool,
}

/// One channel as the edge serves it.
struct Channel {
    name: String,
    /// The pub/sub channel (with the prefix): what a signed envelope's tag covers.
    pubsub: String,
    hub: Hub,
    deflater: Option<SharedDeflater>,
    /// Whether anything was handed to the hub yet, and the last `seq`, `epoch` and era.
    seen: bool,
    last_seq: u64,
    last_epoch: Option<u64>,
    era: u64,
}

/// Runs the edge's bridge until `stop`: `hubs` by channel name.
pub async fn run(
    client: redis::Client,
    settings: BridgeSettings,
    status: Arc<BrokerStatus>,
    hubs: Vec<(String, Hub)>,
    remote: Arc<dyn StateCache>,
    stop: Shutdown,
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
                pubsub: settings.channel(&name),
                hub,
                deflater,
                seen: false,
                last_seq: 0,
                last_epoch: None,
                era: 0,
            };
            (settings.channel(&name), ch)
        })
        .collect();
    let mut backoff = super::backoff();
    let gate = Gate {
        key: settings.signing_key.clone(),
        accept_foreign: settings.accept_foreign && settings.signing_key.is_none(),
    };
    let mut link = Link {
        client: &client,
        settings: &settings,
        status: &status,
        remote: &remote,
        gate: &gate,
        ever_connected: false,
    };
    loop {
        match link.session(&mut channels, &mut backoff, &stop).await {
            Ok(()) => return,
            Err(e) => {
                status.down(&e);
                tokio::select! {
                    _ = stop.recv() => return,
                    _ = tokio::time::sleep(backoff.next_wait()) => {}
                }
            }
        }
    }
}

struct Link<'a> {
    client: &'a redis::Client,
    settings: &'a BridgeSettings,
    status: &'a Arc<BrokerStatus>,
    remote: &'a Arc<dyn StateCache>,
    gate: &'a Gate,
    ever_connected: bool,
}

impl Link<'_> {
    /// One connection's life: subscribe, catch up, relay until the connection fails (`Err`)
    /// or the edge stops (`Ok`).
    async fn session(
        &mut self,
        channels: &mut HashMap<String, Channel>,
        backoff: &mut Backoff,
        stop: &Shutdown,
    ) -> Result<(), String> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = pubsub.split();
        let names: Vec<String> = channels.keys().cloned().collect();
        tokio::time::timeout(CONNECT_TIMEOUT, sink.subscribe(&names))
            .await
            .map_err(|_| "subscribing timed out".to_string())?
            .map_err(|e| e.to_string())?;
        // Subscribed first, then the last messages: nothing published in between is missed
        // (it waits in the stream, and what was already had is skipped by its seq).
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(self.client))
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let lasts: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(
                names
                    .iter()
                    .map(|n| self.settings.last_key(&channels[n].name))
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        drop(conn);
        backoff.reset();
        if self.status.up() && self.ever_connected {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("Redis is back: relaying again");
        }
        self.ever_connected = true;
        for (name, last) in names.iter().zip(lasts) {
            if let (Some(bytes), Some(ch)) = (last, channels.get_mut(name)) {
                relay_one(
                    ch,
                    &bytes,
                    self.status,
                    self.remote,
                    self.gate,
                    Delivery::CatchUp,
                )
                .await;
            }
        }
        self.remote.clone().refresh_in_background();
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.recv() => return Ok(()),
                msg = stream.next() => {
                    let Some(first) = msg else {
                        return Err("the connection closed".into());
                    };
                    // What else is waiting: a snapshot that a newer one of its channel follows
                    // is not worth sending.
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(m)) => batch.push(m),
                            Some(None) => return Err("the connection closed".into()),
                            None => break,
                        }
                    }
                    for (i, msg) in batch.iter().enumerate() {
                        let name = msg.get_channel_name();
                        let Some(ch) = channels.get_mut(name) else {
                            continue;
                        };
                        let superseded = ch.name != EVENTS
                            && batch[i + 1..].iter().any(|m| m.get_channel_name() == name);
                        let delivery = if superseded { Delivery::Skip } else { Delivery::Live };
                        relay_one(
                            ch,
                            msg.get_payload_bytes(),
                            self.status,
                            self.remote,
                            self.gate,
                            delivery,
                        )
                        .await;
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
}

/// How a message is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Arrived on the subscription: sent.
    Live,
    /// The channel's last message, read at (re)connection: sent if new (a new client gets it
    /// at once), and not added to the alert log (the state read then has it).
    CatchUp,
    /// A newer snapshot of the channel follows in the same batch: checked and numbered, not
    /// sent.
    Skip,
}

/// The fields of a foreign body the edge needs.
#[derive(Deserialize)]
struct Stamp {
    seq: Option<u64>,
    ts: Option<i64>,
}

/// Hands one message to its channel's hub, or counts why not.
async fn relay_one(
    ch: &mut Channel,
    message: &[u8],
    status: &BrokerStatus,
    remote: &Arc<dyn StateCache>,
    gate: &Gate,
    delivery: Delivery,
) {
    let window = gate.key.is_none();
    let tick = match envelope::decode(message) {
        Ok(Incoming::Envelope(e)) => {
            if let Some(key) = &gate.key {
                if e.seal.is_none() {
                    status.refuse(Refusal::Unsigned, &ch.pubsub);
                    return;
                }
                if !e.verify(key, &ch.pubsub) {
                    status.refuse(Refusal::Forged, &ch.pubsub);
                    return;
                }
            }
            let Some(era) = accept(ch, Some(e.epoch), e.seq, status, window) else {
                return;
            };
            if delivery == Delivery::Skip {
                status.conflated.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Tick::received(
                era,
                e.seq,
                e.ts_ms,
                e.payload,
                e.deflated,
                ch.deflater.clone(),
            )
        }
        Ok(Incoming::Json(_)) if gate.key.is_some() => {
            status.refuse(Refusal::Unsigned, &ch.pubsub);
            return;
        }
        Ok(Incoming::Json(_)) if !gate.accept_foreign => {
            status.refuse(Refusal::Foreign, &ch.pubsub);
            return;
        }
        Ok(Incoming::Json(body)) => {
            let Some((seq, ts, stamped)) = stamp_foreign(body, ch.last_seq) else {
                status.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    channel = ch.name,
                    "dropped a message that is not a JSON object"
                );
                return;
            };
            let Some(era) = accept(ch, None, seq, status, window) else {
                return;
            };
            if delivery == Delivery::Skip {
                status.conflated.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Tick::received(era, seq, ts, &stamped, None, ch.deflater.clone())
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
    if ch.name == EVENTS && delivery == Delivery::Live {
        remote.push_event(&tick.payload());
    }
    let started = Instant::now();
    ch.hub.publish(tick).await;
    ch.hub
        .timings()
        .tick_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Whether a tick numbered `seq` goes out, and in which era; counts the ticks skipped since
/// the last one (lost on the channel, or never published while Redis was away) and records it
/// as the last.
///
/// A `seq` at or below the last one is a message already had, unless the count started again:
/// for a producer's envelope, when its `epoch` changed (Redis lost its record); for a body
/// from another publisher, when the `seq` is lower (it restarted). Then the era goes up and
/// clients take the new count from there. With `window` (no signing key), a `seq` more than
/// [`SEQ_WINDOW`] from the last, either way, is a new count too: whoever published it, no later
/// tick has to climb past it.
fn accept(
    ch: &mut Channel,
    epoch: Option<u64>,
    seq: u64,
    status: &BrokerStatus,
    window: bool,
) -> Option<u64> {
    if window && ch.seen && seq.abs_diff(ch.last_seq) > SEQ_WINDOW {
        ch.era += 1;
        tracing::debug!(
            channel = ch.name,
            from = ch.last_seq,
            to = seq,
            "a seq too far from the last one: a new count"
        );
    } else if ch.seen && seq <= ch.last_seq {
        let new_count = match epoch {
            Some(e) => ch.last_epoch.is_some_and(|last| last != e),
            None => seq < ch.last_seq,
        };
        if !new_count {
            return None;
        }
        ch.era += 1;
        tracing::warn!(
            channel = ch.name,
            from = ch.last_seq,
            to = seq,
            "seq started again (the producers restarted on an empty Redis)"
        );
    } else if ch.seen && seq > ch.last_seq.saturating_add(1) {
        status.gaps.fetch_add(1, Ordering::Relaxed);
        status
            .missed
            .fetch_add(seq - ch.last_seq - 1, Ordering::Relaxed);
    }
    ch.seen = true;
    ch.last_seq = seq;
    if epoch.is_some() {
        ch.last_epoch = epoch;
    }
    Some(ch.era)
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
    let (seq, ts) = (
        stamp.seq.unwrap_or(last_seq.saturating_add(1)),
        stamp.ts.unwrap_or(now),
    );
    let out = crate::broadcast::stamp::stamped(
        trimmed,
        stamp.seq.is_none().then_some(seq),
        stamp.ts.is_none().then_some(ts),
    );
    Some((seq, ts, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::settings::HubSettings;

    fn channel() -> Channel {
        Channel {
            name: "market".into(),
            pubsub: "mc:market".into(),
            hub: Hub::new(HubSettings::default()),
            deflater: None,
            seen: false,
            last_seq: 0,
            last_epoch: None,
            era: 0,
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
        let (seq, _, _) = stamp_foreign(b"{}", u64::MAX).unwrap();
        assert_eq!(seq, u64::MAX, "no overflow on a foreign seq at the top");
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
        assert_eq!(
            accept(&mut ch, Some(1), 10, &status, false),
            Some(0),
            "the first tick"
        );
        assert_eq!(accept(&mut ch, Some(1), 11, &status, false), Some(0));
        assert_eq!(
            accept(&mut ch, Some(1), 11, &status, false),
            None,
            "a duplicate"
        );
        assert_eq!(
            accept(&mut ch, Some(1), 9, &status, false),
            None,
            "an old one"
        );
        assert_eq!(accept(&mut ch, Some(1), 14, &status, false), Some(0));
        assert_eq!(status.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(status.missed.load(Ordering::Relaxed), 2);
        // Redis lost its record and a new epoch goes on from above: no new count.
        assert_eq!(accept(&mut ch, Some(2), 15, &status, false), Some(0));
        // A lower seq in a new epoch: the count started again.
        assert_eq!(accept(&mut ch, Some(3), 1, &status, false), Some(1));
        assert_eq!(
            status.gaps.load(Ordering::Relaxed),
            1,
            "a new count is not a gap"
        );
        assert_eq!(accept(&mut ch, Some(3), 1, &status, false), None);
        // Another publisher's bodies: a lower seq is its restart.
        let mut foreign = channel();
        assert_eq!(accept(&mut foreign, None, 5, &status, false), Some(0));
        assert_eq!(accept(&mut foreign, None, 5, &status, false), None);
        assert_eq!(accept(&mut foreign, None, 2, &status, false), Some(1));
        assert_eq!(accept(&mut foreign, None, 0, &status, false), Some(2));
        assert_eq!(
            accept(&mut foreign, None, u64::MAX, &status, false),
            Some(2)
        );
    }

    #[tokio::test]
    async fn an_absurd_seq_does_not_wedge_a_channel() {
        let status = BrokerStatus::new(super::super::Role::Edge, String::new());
        let mut ch = channel();
        assert_eq!(accept(&mut ch, Some(9), 100, &status, true), Some(0));
        // Published by anyone, with the producer's epoch: a new count, not a future.
        assert_eq!(accept(&mut ch, Some(9), u64::MAX, &status, true), Some(1));
        // The producer's next tick is far below it: a new count again, and it goes out.
        assert_eq!(accept(&mut ch, Some(9), 101, &status, true), Some(2));
        assert_eq!(accept(&mut ch, Some(9), 102, &status, true), Some(2));
        assert_eq!(
            accept(&mut ch, Some(9), 102, &status, true),
            None,
            "a duplicate"
        );
        // Within the window the usual rules hold: a jump is a gap, an old seq is old.
        let far = 102 + SEQ_WINDOW;
        assert_eq!(accept(&mut ch, Some(9), far, &status, true), Some(2));
        assert_eq!(status.missed.load(Ordering::Relaxed), SEQ_WINDOW - 1);
        assert_eq!(accept(&mut ch, Some(9), 200, &status, true), None);
        // A body from another publisher: the same.
        let mut foreign = channel();
        assert_eq!(accept(&mut foreign, None, 5, &status, true), Some(0));
        assert_eq!(accept(&mut foreign, None, u64::MAX, &status, true), Some(1));
        assert_eq!(accept(&mut foreign, None, 6, &status, true), Some(2));
        // With a signing key (no window) only the producer publishes: strict order.
        let mut signed = channel();
        assert_eq!(accept(&mut signed, Some(9), 100, &status, false), Some(0));
        assert_eq!(
            accept(&mut signed, Some(9), 100 + 2 * SEQ_WINDOW, &status, false),
            Some(0)
        );
        assert_eq!(
            accept(&mut signed, Some(9), 101, &status, false),
            None,
            "a replay"
        );
    }
}
