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
//! `REDIS_ACCEPT_FOREIGN`. The rest is dropped and counted.
//!
//! Order is the other half (`accept`). With a key only the producer can move a channel's
//! `seq`, so the order is strict, and a signed envelope captured earlier and published again is
//! refused: in the same epoch it is an old `seq`; from another epoch it must not be older (by
//! its signed `ts`) than the last tick taken, less [`TAKEOVER_SKEW`], nor at or below the last
//! `seq` taken in an epoch the edge has left; and a live one must not be more than
//! [`MAX_SIGNED_AGE`](super::MAX_SIGNED_AGE) older than the edge's clock. Without a key a
//! message can still be forged, but none can wedge a channel: a `seq` absurdly far from the last one starts a new count at
//! once, and a `seq` merely far ahead is undone by the producer's next few ticks, which start a
//! new count when they keep arriving below it.
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
use super::{
    connect, signed_too_old, BridgeSettings, BrokerStatus, Refusal, CONNECT_TIMEOUT, TAKEOVER_SKEW,
};
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

/// Without a signing key, after this many ticks in a row below a channel's last `seq` (in its
/// epoch), the count starts again from them. The producer never publishes below its last
/// `seq` (Redis refuses it), so ticks that keep coming in below it mean the last one was not
/// the producer's: one message numbered ahead (by less than [`SEQ_WINDOW`]) costs clients a few
/// ticks, never the channel. (One duplicate comes with each reconnection: at the same `seq`,
/// not below, so it never counts.)
const RESYNC_AFTER: u32 = 3;

/// With a signing key, how many epochs a channel remembers having left (with the last `seq`
/// taken in each), to refuse their ticks put back in Redis whatever their time. Epochs change
/// only when Redis loses its record, so a few cover any day.
const RETIRED_EPOCHS: usize = 4;

/// The order a channel's ticks are taken in (see [`accept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// With a signing key: only the producer can number a tick.
    Strict,
    /// Without: anyone can, and no one message may wedge the channel.
    Lenient,
}

/// A tick's numbering, as [`accept`] judges it.
#[derive(Debug, Clone, Copy)]
struct Numbering {
    /// The producer's count (`None` for a body from another publisher).
    epoch: Option<u64>,
    seq: u64,
    ts_ms: i64,
}

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
    /// Whether anything was taken yet; the last `seq`, `epoch` and `ts` taken; the era.
    seen: bool,
    last_seq: u64,
    last_epoch: Option<u64>,
    last_ts: i64,
    era: u64,
    /// Without a key: ticks in a row that came in below `last_seq` (see [`RESYNC_AFTER`]).
    behind: u32,
    /// With a key: the epochs left, oldest first, with the last `seq` taken in each.
    retired: Vec<(u64, u64)>,
}

impl Channel {
    fn new(name: String, pubsub: String, hub: Hub, deflater: Option<SharedDeflater>) -> Channel {
        Channel {
            name,
            pubsub,
            hub,
            deflater,
            seen: false,
            last_seq: 0,
            last_epoch: None,
            last_ts: 0,
            era: 0,
            behind: 0,
            retired: Vec::new(),
        }
    }
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
            let ch = Channel::new(name.clone(), settings.channel(&name), hub, deflater);
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
    let order = match gate.key {
        Some(_) => Order::Strict,
        None => Order::Lenient,
    };
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
                // A channel's last message, read at (re)connection, may rightly be old (a
                // channel that publishes on change, on a quiet day): it is judged against what
                // the edge took before, by `accept`, not against the clock.
                if delivery != Delivery::CatchUp
                    && signed_too_old(e.ts_ms, chrono::Utc::now().timestamp_millis())
                {
                    status.refuse(Refusal::Stale, &ch.pubsub);
                    return;
                }
            } else if e.seal.is_some() {
                status.take_unverified(&ch.pubsub);
            }
            let numbering = Numbering {
                epoch: Some(e.epoch),
                seq: e.seq,
                ts_ms: e.ts_ms,
            };
            let Some(era) = accept(ch, numbering, status, order) else {
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
            let numbering = Numbering {
                epoch: None,
                seq,
                ts_ms: ts,
            };
            let Some(era) = accept(ch, numbering, status, order) else {
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

/// Whether a tick goes out, and in which era; counts the ticks skipped since the last one
/// (lost on the channel, or never published while Redis was away) and records it as the last.
///
/// A `seq` at or below the last one is a message already had, unless the count started again:
/// for a producer's envelope, when its `epoch` changed (Redis lost its record); for a body
/// from another publisher, when the `seq` is lower (it restarted). Then the era goes up and
/// clients take the new count from there (counted in `resets`). The rest depends on `order`:
/// see [`strict`] and [`lenient`].
fn accept(ch: &mut Channel, n: Numbering, status: &BrokerStatus, order: Order) -> Option<u64> {
    if ch.seen {
        match order {
            Order::Strict => strict(ch, n, status)?,
            Order::Lenient => lenient(ch, n, status)?,
        }
    }
    ch.seen = true;
    ch.last_seq = n.seq;
    ch.last_ts = n.ts_ms;
    ch.behind = 0;
    if n.epoch.is_some() {
        ch.last_epoch = n.epoch;
    }
    Some(ch.era)
}

/// With a signing key every tick is the producer's, but one may be an old one published
/// again. In the epoch the edge follows, only a `seq` above the last goes out. A tick of
/// another epoch goes out (a new count when its `seq` is not above the last) unless it is of an
/// epoch the edge left, at or below the last `seq` taken there, or older, by its signed `ts`,
/// than the last tick taken less [`TAKEOVER_SKEW`] (either is a copy put back: `replayed`).
fn strict(ch: &mut Channel, n: Numbering, status: &BrokerStatus) -> Option<()> {
    if n.epoch == ch.last_epoch {
        if n.seq <= ch.last_seq {
            return None;
        }
        count_gap(ch, n.seq, status);
        return Some(());
    }
    let left = ch
        .retired
        .iter()
        .find(|(epoch, _)| Some(*epoch) == n.epoch)
        .is_some_and(|&(_, last)| n.seq <= last);
    let skew = TAKEOVER_SKEW.as_millis() as i64;
    if left || n.ts_ms < ch.last_ts.saturating_sub(skew) {
        status.refuse(Refusal::Replayed, &ch.pubsub);
        return None;
    }
    // The epoch the edge followed is left: remembered with its last seq. The one it comes to
    // (back to, after Redis was restored from a backup) is current, not left.
    ch.retired.retain(|(epoch, _)| Some(*epoch) != n.epoch);
    if let Some(epoch) = ch.last_epoch {
        ch.retired.retain(|(e, _)| *e != epoch);
        ch.retired.push((epoch, ch.last_seq));
        if ch.retired.len() > RETIRED_EPOCHS {
            ch.retired.remove(0);
        }
    }
    if n.seq <= ch.last_seq {
        new_count(
            ch,
            n.seq,
            status,
            "seq started again (the producers restarted on an empty Redis)",
        );
    } else {
        count_gap(ch, n.seq, status);
    }
    Some(())
}

/// Without a signing key anyone may have numbered a tick, and no one message may wedge the
/// channel: a `seq` more than [`SEQ_WINDOW`] from the last, either way, is a new count at once,
/// and [`RESYNC_AFTER`] ticks in a row below the last `seq` (in its epoch) start a new count from
/// the last of them, so a `seq` published ahead of the producer's holds for a few ticks at most.
fn lenient(ch: &mut Channel, n: Numbering, status: &BrokerStatus) -> Option<()> {
    if n.seq.abs_diff(ch.last_seq) > SEQ_WINDOW {
        new_count(ch, n.seq, status, "a seq too far from the last one");
        return Some(());
    }
    if n.seq > ch.last_seq {
        count_gap(ch, n.seq, status);
        return Some(());
    }
    let restarted = match n.epoch {
        Some(e) => ch.last_epoch.is_some_and(|last| last != e),
        None => n.seq < ch.last_seq,
    };
    if restarted {
        new_count(
            ch,
            n.seq,
            status,
            "seq started again (the producers restarted on an empty Redis)",
        );
        return Some(());
    }
    if n.seq < ch.last_seq {
        ch.behind += 1;
        if ch.behind >= RESYNC_AFTER {
            new_count(
                ch,
                n.seq,
                status,
                "ticks keep arriving below the last seq (it was not the producer's)",
            );
            return Some(());
        }
    }
    None
}

/// Counts the ticks skipped between the last `seq` and `seq`, if any.
fn count_gap(ch: &Channel, seq: u64, status: &BrokerStatus) {
    if seq > ch.last_seq.saturating_add(1) {
        status.gaps.fetch_add(1, Ordering::Relaxed);
        status
            .missed
            .fetch_add(seq - ch.last_seq - 1, Ordering::Relaxed);
    }
}

/// Starts a new count (a new era) at `seq`, and counts and logs it.
fn new_count(ch: &mut Channel, seq: u64, status: &BrokerStatus, why: &str) {
    ch.era += 1;
    status.new_count(&ch.name, ch.last_seq, seq, why);
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
    use super::super::MAX_SIGNED_AGE_MS;
    use super::*;
    use crate::broadcast::settings::HubSettings;

    fn channel() -> Channel {
        Channel::new(
            "market".into(),
            "mc:market".into(),
            Hub::new(HubSettings::default()),
            None,
        )
    }

    fn status() -> BrokerStatus {
        BrokerStatus::new(super::super::Role::Edge, String::new())
    }

    /// A producer's tick of `epoch`, stamped `ts_ms`.
    fn tick(epoch: u64, seq: u64, ts_ms: i64) -> Numbering {
        Numbering {
            epoch: Some(epoch),
            seq,
            ts_ms,
        }
    }

    /// A body from another publisher.
    fn foreign(seq: u64) -> Numbering {
        Numbering {
            epoch: None,
            seq,
            ts_ms: 0,
        }
    }

    fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
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
        for order in [Order::Strict, Order::Lenient] {
            let status = status();
            let mut ch = channel();
            let at = |seq: u64| tick(1, seq, 1_000 + seq as i64);
            assert_eq!(
                accept(&mut ch, at(10), &status, order),
                Some(0),
                "the first"
            );
            assert_eq!(accept(&mut ch, at(11), &status, order), Some(0));
            assert_eq!(accept(&mut ch, at(11), &status, order), None, "a duplicate");
            assert_eq!(accept(&mut ch, at(9), &status, order), None, "an old one");
            assert_eq!(accept(&mut ch, at(14), &status, order), Some(0));
            assert_eq!((load(&status.gaps), load(&status.missed)), (1, 2));
            // Redis lost its record and a new epoch goes on from above: no new count.
            assert_eq!(accept(&mut ch, tick(2, 15, 1_100), &status, order), Some(0));
            // A lower seq in a new epoch: the count started again.
            assert_eq!(accept(&mut ch, tick(3, 1, 1_200), &status, order), Some(1));
            assert_eq!(load(&status.gaps), 1, "a new count is not a gap");
            assert_eq!(load(&status.resets), 1, "{order:?}");
            assert_eq!(accept(&mut ch, tick(3, 1, 1_200), &status, order), None);
            assert_eq!(load(&status.replayed), 0);
        }
        // Another publisher's bodies (no key): a lower seq is its restart.
        let status = status();
        let mut ch = channel();
        let lenient = Order::Lenient;
        assert_eq!(accept(&mut ch, foreign(5), &status, lenient), Some(0));
        assert_eq!(accept(&mut ch, foreign(5), &status, lenient), None);
        assert_eq!(accept(&mut ch, foreign(2), &status, lenient), Some(1));
        assert_eq!(accept(&mut ch, foreign(0), &status, lenient), Some(2));
    }

    #[tokio::test]
    async fn an_absurd_seq_does_not_wedge_a_channel() {
        let status = status();
        let mut ch = channel();
        let lenient = Order::Lenient;
        assert_eq!(accept(&mut ch, tick(9, 100, 0), &status, lenient), Some(0));
        // Published by anyone, with the producer's epoch: a new count at once, not a future.
        assert_eq!(
            accept(&mut ch, tick(9, u64::MAX, 0), &status, lenient),
            Some(1)
        );
        // The producer's next tick is far below it: a new count again, and it goes out.
        assert_eq!(accept(&mut ch, tick(9, 101, 0), &status, lenient), Some(2));
        assert_eq!(accept(&mut ch, tick(9, 102, 0), &status, lenient), Some(2));
        assert_eq!(
            accept(&mut ch, tick(9, 102, 0), &status, lenient),
            None,
            "a duplicate"
        );
        assert_eq!(load(&status.resets), 2);
        // A body from another publisher: the same.
        let mut foreign_ch = channel();
        assert_eq!(
            accept(&mut foreign_ch, foreign(5), &status, lenient),
            Some(0)
        );
        assert_eq!(
            accept(&mut foreign_ch, foreign(u64::MAX), &status, lenient),
            Some(1)
        );
        assert_eq!(
            accept(&mut foreign_ch, foreign(6), &status, lenient),
            Some(2)
        );
        // With a signing key only the producer publishes: strict order, no window.
        let mut signed = channel();
        let strict = Order::Strict;
        assert_eq!(
            accept(&mut signed, tick(9, 100, 0), &status, strict),
            Some(0)
        );
        let far = 100 + 2 * SEQ_WINDOW;
        assert_eq!(
            accept(&mut signed, tick(9, far, 0), &status, strict),
            Some(0)
        );
        for seq in 101..110 {
            assert_eq!(
                accept(&mut signed, tick(9, seq, 0), &status, strict),
                None,
                "a replay, however many"
            );
        }
    }

    /// The review's case: one unsigned envelope with the producer's epoch and `seq` just inside
    /// the window (the last plus ten million) froze an edge for good.
    #[tokio::test]
    async fn without_a_key_a_seq_ahead_holds_for_a_few_ticks_only() {
        let status = status();
        let mut ch = channel();
        let lenient = Order::Lenient;
        for seq in 1..=41 {
            assert_eq!(accept(&mut ch, tick(9, seq, 0), &status, lenient), Some(0));
        }
        let ahead = 41 + SEQ_WINDOW;
        assert_eq!(
            accept(&mut ch, tick(9, ahead, 0), &status, lenient),
            Some(0),
            "within the window: taken as a gap"
        );
        // The producer's next ticks: below it. A duplicate of the wall does not count, and
        // after RESYNC_AFTER ticks below it the count starts again from the last of them.
        assert_eq!(accept(&mut ch, tick(9, 42, 0), &status, lenient), None);
        assert_eq!(accept(&mut ch, tick(9, ahead, 0), &status, lenient), None);
        assert_eq!(accept(&mut ch, tick(9, 43, 0), &status, lenient), None);
        assert_eq!(RESYNC_AFTER, 3);
        assert_eq!(accept(&mut ch, tick(9, 44, 0), &status, lenient), Some(1));
        assert_eq!(load(&status.resets), 1);
        for seq in 45..=76 {
            assert_eq!(
                accept(&mut ch, tick(9, seq, 0), &status, lenient),
                Some(1),
                "the producer's ticks go out again"
            );
        }
        assert_eq!(ch.last_seq, 76);
        // The wall published again: the same once more, never for good.
        assert_eq!(
            accept(&mut ch, tick(9, 76 + SEQ_WINDOW, 0), &status, lenient),
            Some(1)
        );
        for seq in 77..=78 {
            assert_eq!(accept(&mut ch, tick(9, seq, 0), &status, lenient), None);
        }
        assert_eq!(accept(&mut ch, tick(9, 79, 0), &status, lenient), Some(2));
        // A tick taken in between starts the run over: isolated old ones stay dropped.
        assert_eq!(accept(&mut ch, tick(9, 70, 0), &status, lenient), None);
        assert_eq!(accept(&mut ch, tick(9, 71, 0), &status, lenient), None);
        assert_eq!(accept(&mut ch, tick(9, 80, 0), &status, lenient), Some(2));
        assert_eq!(accept(&mut ch, tick(9, 72, 0), &status, lenient), None);
        assert_eq!(accept(&mut ch, tick(9, 81, 0), &status, lenient), Some(2));
        assert_eq!(load(&status.resets), 2);
    }

    #[tokio::test]
    async fn with_a_key_an_earlier_epochs_tick_is_refused() {
        let status = status();
        let mut ch = channel();
        let strict = Order::Strict;
        let t0 = 1_764_000_000_000;
        let skew = TAKEOVER_SKEW.as_millis() as i64;
        // Epoch 1 up to seq 50, then the producers restart on an empty Redis: epoch 2 from 1.
        for seq in 1..=50 {
            assert_eq!(
                accept(&mut ch, tick(1, seq, t0 + seq as i64), &status, strict),
                Some(0)
            );
        }
        let t1 = t0 + 60_000;
        assert_eq!(accept(&mut ch, tick(2, 1, t1), &status, strict), Some(1));
        assert_eq!(
            accept(&mut ch, tick(2, 2, t1 + 200), &status, strict),
            Some(1)
        );
        // A captured tick of epoch 1 published again: refused, at its seq or below...
        assert_eq!(accept(&mut ch, tick(1, 50, t0 + 50), &status, strict), None);
        assert_eq!(accept(&mut ch, tick(1, 3, t0 + 3), &status, strict), None);
        assert_eq!(load(&status.replayed), 2);
        // ... and one the edge never saw, older than the last taken (less the skew).
        assert_eq!(
            accept(&mut ch, tick(1, 51, t1 - skew - 1), &status, strict),
            None
        );
        assert_eq!(
            accept(&mut ch, tick(7, 900, t1 - skew - 1), &status, strict),
            None
        );
        assert_eq!(load(&status.replayed), 4);
        assert_eq!(
            (ch.era, ch.last_epoch, ch.last_seq),
            (1, Some(2), 2),
            "unmoved"
        );
        // A takeover by a machine whose clock is a little behind: taken.
        let behind = t1 + 200 - skew + 1;
        assert_eq!(
            accept(&mut ch, tick(3, 1, behind), &status, strict),
            Some(2)
        );
        // Its epoch 2 ticks, put back, are refused whatever their time.
        assert_eq!(
            accept(&mut ch, tick(2, 2, t1 + 10_000), &status, strict),
            None
        );
        assert_eq!(load(&status.replayed), 5);
        // Redis restored from a backup: epoch 1 again, numbered above all it had, and newer.
        assert_eq!(
            accept(&mut ch, tick(1, 60, t1 + 1_000), &status, strict),
            Some(2)
        );
        assert_eq!(
            accept(&mut ch, tick(1, 61, t1 + 1_200), &status, strict),
            Some(2)
        );
        assert_eq!(ch.retired.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
        // Only a few epochs are remembered.
        for epoch in 10..20 {
            let ts = t1 + 2_000 + epoch as i64;
            accept(&mut ch, tick(epoch, 100 + epoch, ts), &status, strict);
        }
        assert_eq!(ch.retired.len(), RETIRED_EPOCHS);
    }

    /// A hub with no clients for the channel and a state cache that takes nothing, to run
    /// [`relay_one`] on.
    struct NoState;
    impl StateCache for NoState {
        fn refresh_in_background(self: Arc<Self>) {}
        fn push_event(&self, _: &[u8]) {}
    }

    fn signed(key: &SigningKey, seq: u64, ts_ms: i64) -> Vec<u8> {
        let payload = format!(r#"{{"seq":{seq},"ts":{ts_ms}}}"#);
        envelope::Envelope {
            epoch: 1,
            seq,
            ts_ms,
            payload: payload.as_bytes(),
            deflated: None,
            seal: None,
        }
        .encode_signed(key, "mc:market")
    }

    #[tokio::test]
    async fn with_a_key_a_tick_far_older_than_the_clock_is_refused_live() {
        let key = SigningKey::new(&crate::base::Secret::from("k".repeat(16))).unwrap();
        let gate = Gate {
            key: Some(key.clone()),
            accept_foreign: false,
        };
        let remote: Arc<dyn StateCache> = Arc::new(NoState);
        let status = status();
        let now = chrono::Utc::now().timestamp_millis();
        let old = now - MAX_SIGNED_AGE_MS - 1_000;
        // A quiet channel's last message, read at connection: judged by order only, taken.
        let mut ch = channel();
        relay_one(
            &mut ch,
            &signed(&key, 5, old),
            &status,
            &remote,
            &gate,
            Delivery::CatchUp,
        )
        .await;
        assert_eq!((load(&status.ticks), load(&status.stale)), (1, 0));
        // Live, far older than the clock: refused, whatever its seq.
        relay_one(
            &mut ch,
            &signed(&key, 6, old),
            &status,
            &remote,
            &gate,
            Delivery::Live,
        )
        .await;
        assert_eq!((load(&status.ticks), load(&status.stale)), (1, 1));
        assert_eq!(ch.last_seq, 5);
        // Live and fresh (a slow hop of a minute is fine): taken.
        relay_one(
            &mut ch,
            &signed(&key, 7, now - 60_000),
            &status,
            &remote,
            &gate,
            Delivery::Live,
        )
        .await;
        assert_eq!((load(&status.ticks), ch.last_seq), (2, 7));
        // Without a key the signed tick goes out unchecked, counted as such.
        let keyless = Gate {
            key: None,
            accept_foreign: false,
        };
        let mut plain = channel();
        relay_one(
            &mut plain,
            &signed(&key, 1, old),
            &status,
            &remote,
            &keyless,
            Delivery::Live,
        )
        .await;
        assert_eq!((load(&status.ticks), load(&status.unverified)), (3, 1));
    }
}
