//! The producer's side of the bridge: the lease, and every tick of every channel to Redis.
//!
//! One task owns the connection. It takes the channels' ticks from their [`Relay`]s, and at a
//! third of the lease's time it renews the lease (the leader) or tries to take it (a standby).
//! Only the leader publishes; a standby drops the ticks its warm processor makes, after keeping
//! its channels' seq floors at the last published `seq` (so a takeover carries on above it).
//!
//! With `REDIS_SIGNING_KEY` each envelope and the state document are signed here, once, before
//! they go to Redis (see [`super::signing`]), each with the time it was made, so an edge can
//! tell a copy put back from the current one.
//!
//! Each tick is published by one Lua call that checks, inside Redis, that this node still
//! holds the lease and that the `seq` is above the channel's last: a leader that was paused
//! past its lease, or a tick numbered before a takeover, is refused there and counted, and no
//! client behind an edge sees it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::envelope::Envelope;
use super::{connect, BridgeSettings, BrokerStatus};
use crate::base::shutdown::Shutdown;
use crate::base::Backoff;
use crate::broadcast::relay::{Outgoing, Relay};

/// Ticks that may wait for Redis before the newest are dropped (a few seconds of every
/// channel: Redis answering that slowly is as good as away).
pub const QUEUE: usize = 64;

/// How often the leader refreshes the REST routes' state in Redis (with each market tick).
const STATE_EVERY: Duration = Duration::from_secs(1);

/// The longest the leader leaves the state unwritten when no market tick goes out (a channel
/// that publishes on change, on a quiet day): a signed state is refused by edges once it is
/// [`super::MAX_SIGNED_AGE`] old, so it is written again well before that.
pub const STATE_KEEPALIVE: Duration = Duration::from_secs(30);

/// Publishes a tick if the caller holds the lease and its `seq` is the channel's highest.
/// KEYS: lease, seq hash, the channel's last-message key. ARGV: node, pub/sub channel, seq,
/// envelope, channel name. Returns subscribers reached, -1 without the lease, -2 for an old seq.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0')
if tonumber(ARGV[3]) <= last then return -2 end
redis.call('HSET', KEYS[2], ARGV[5], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
return redis.call('PUBLISH', ARGV[2], ARGV[4])
";

/// Extends the lease if the caller holds it. KEYS: lease. ARGV: node, milliseconds.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Keeps the REST routes' state if the caller holds the lease. KEYS: lease, state. ARGV: node,
/// state.
const STATE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 end
return 0
";

/// Gives the lease up if the caller holds it (a clean shutdown hands over at once).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Makes the REST routes' state document (JSON), off the async workers.
pub type StateFn = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

/// The relays to give the channels' loops, and the queue they feed.
pub fn relays(names: &[&str], status: &BrokerStatus) -> (Vec<Relay>, mpsc::Receiver<Outgoing>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let relays = names
        .iter()
        .map(|n| Relay::new(n, tx.clone(), status.dropped.clone()))
        .collect();
    (relays, rx)
}

/// A node name for the lease: host, process and a random part, so two processes never share it.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

struct Publisher {
    client: redis::Client,
    settings: BridgeSettings,
    status: Arc<BrokerStatus>,
    relays: HashMap<String, Relay>,
    state: StateFn,
    publish: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    keep_state: redis::Script,
    /// The deployment's count of `seq` (see [`super::envelope`]), read when the lease is taken.
    epoch: u64,
    /// Until when this node's lease certainly holds (leader only).
    lease_until: Instant,
    state_due: Instant,
    /// When the state was last written (leader only).
    state_written: Instant,
}

/// Runs the producer's bridge until `stop`; a leader gives up its lease on the way out.
pub async fn run(
    client: redis::Client,
    settings: BridgeSettings,
    status: Arc<BrokerStatus>,
    mut rx: mpsc::Receiver<Outgoing>,
    relays: Vec<Relay>,
    state: StateFn,
    stop: Shutdown,
) {
    let mut p = Publisher {
        client,
        relays: relays
            .into_iter()
            .map(|r| (r.channel().to_string(), r))
            .collect(),
        settings,
        status,
        state,
        publish: redis::Script::new(PUBLISH),
        renew: redis::Script::new(RENEW),
        release: redis::Script::new(RELEASE),
        keep_state: redis::Script::new(STATE),
        epoch: 0,
        lease_until: Instant::now(),
        state_due: Instant::now(),
        state_written: Instant::now(),
    };
    let mut backoff = super::backoff();
    let mut ever_connected = false;
    let mut lease_steps = tokio::time::interval(p.settings.lease / 3);
    lease_steps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut conn = match connect(&p.client).await {
            Ok(c) => c,
            Err(e) => {
                if p.wait_after(&e, &mut backoff, &mut rx, &stop)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        if p.status.up() && ever_connected {
            p.status.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("Redis is back");
        }
        ever_connected = true;
        lease_steps.reset_immediately();
        let result: redis::RedisResult<()> = async {
            loop {
                tokio::select! {
                    _ = stop.recv() => {
                        if p.status.is_leader() {
                            let _: redis::RedisResult<i64> = p
                                .release
                                .key(p.settings.leader_key())
                                .arg(&p.status.node)
                                .invoke_async(&mut conn)
                                .await;
                            p.status.set_leader(false);
                            tracing::info!("gave up the lease");
                        }
                        return Ok(());
                    }
                    _ = lease_steps.tick() => p.lease_step(&mut conn).await?,
                    out = rx.recv() => match out {
                        Some(out) => p.publish(&mut conn, out).await?,
                        None => return Ok(()),
                    },
                }
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                if p.wait_after(&e, &mut backoff, &mut rx, &stop)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

impl Publisher {
    /// Renews the lease (leader) or tries to take it (standby, which also follows the seq).
    async fn lease_step(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let ms = self.settings.lease.as_millis() as u64;
        // The lease runs from before the command is sent: a slow answer never stretches it.
        let sent_at = Instant::now();
        if self.status.is_leader() {
            let renewed: i64 = self
                .renew
                .key(self.settings.leader_key())
                .arg(&self.status.node)
                .arg(ms)
                .invoke_async(conn)
                .await?;
            if renewed == 1 {
                self.lease_until = sent_at + self.settings.lease;
                if self.state_written.elapsed() >= STATE_KEEPALIVE {
                    self.keep_state(conn).await?;
                }
            } else {
                self.status.set_leader(false);
                tracing::warn!("lost the lease to another producer: standing by");
            }
            return Ok(());
        }
        // Standing by: keep the floors at what was published, so a takeover carries on.
        let known = self.follow_seq(conn).await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.settings.leader_key())
            .arg(&self.status.node)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(conn)
            .await?;
        if taken.is_some() {
            self.lease_until = sent_at + self.settings.lease;
            // Read again: the last leader may have published since.
            let now_known = self.follow_seq(conn).await?;
            if now_known == 0 && known == 0 {
                // Redis has no record of earlier ticks (a new session, or Redis lost its data):
                // step past any `seq` this node has seen, with room for the ticks the last
                // leader may have published since this node last looked (a lease and a bit).
                let window = self.settings.lease + Duration::from_secs(2);
                let margin = (window.as_secs_f64()
                    / self.settings.tick_interval.as_secs_f64().max(0.001))
                .ceil() as u64
                    + 1;
                for r in self.relays.values() {
                    if r.seq_floor() > 0 {
                        r.raise_floor(r.seq_floor().saturating_add(margin));
                    }
                }
            }
            // The epoch stays while Redis keeps its record; a new one marks a new count.
            let _: Option<String> = redis::cmd("SET")
                .arg(self.settings.epoch_key())
                .arg(fastrand::u64(1..))
                .arg("NX")
                .query_async(conn)
                .await?;
            let epoch: Option<u64> = redis::cmd("GET")
                .arg(self.settings.epoch_key())
                .query_async(conn)
                .await?;
            self.epoch = epoch.unwrap_or(0);
            // Every channel publishes at once, changed or not, so Redis (perhaps empty) has
            // each channel's last message and the state again.
            for r in self.relays.values() {
                r.request_republish();
            }
            self.status.set_leader(true);
            self.status.takeovers.fetch_add(1, Ordering::Relaxed);
            self.state_due = Instant::now();
            tracing::info!(node = %self.status.node, "took the lease: publishing");
        }
        Ok(())
    }

    /// Raises every channel's floor to the last `seq` Redis has for it; returns how many
    /// channels Redis has a record of.
    async fn follow_seq(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<usize> {
        let published: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(self.settings.seq_key())
            .query_async(conn)
            .await?;
        for (name, seq) in &published {
            if let Some(r) = self.relays.get(name) {
                r.raise_floor(*seq);
            }
        }
        Ok(published.len())
    }

    /// A standby that cannot reach Redis stops counting as leader once its lease has run out.
    fn expire_leadership(&self) {
        if self.status.is_leader() && Instant::now() >= self.lease_until {
            self.status.set_leader(false);
            tracing::warn!("the lease ran out while Redis was away: standing by");
        }
    }

    async fn publish(
        &mut self,
        conn: &mut MultiplexedConnection,
        out: Outgoing,
    ) -> redis::RedisResult<()> {
        if self.status.is_leader() && Instant::now() >= self.lease_until {
            // Not renewed in time (Redis slow): the lease may be another's by now.
            self.status.set_leader(false);
            tracing::warn!("the lease ran out before it was renewed: standing by");
        }
        if !self.status.is_leader() {
            return Ok(());
        }
        let tick = out.tick.clone();
        let epoch = self.epoch;
        let key = self.settings.signing_key.clone();
        let channel = self.settings.channel(&out.channel);
        // Compressing (and signing) a large tick takes milliseconds: not on an async worker.
        let envelope = tokio::task::spawn_blocking(move || {
            let deflated = tick.deflated_payload();
            let envelope = Envelope {
                epoch,
                seq: tick.seq,
                ts_ms: tick.ts_ms,
                payload: &tick.payload(),
                deflated: deflated.as_deref(),
                seal: None,
            };
            match &key {
                Some(key) => envelope.encode_signed(key, &channel),
                None => envelope.encode(),
            }
        })
        .await
        .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
        let reached: i64 = self
            .publish
            .key(self.settings.leader_key())
            .key(self.settings.seq_key())
            .key(self.settings.last_key(&out.channel))
            .arg(&self.status.node)
            .arg(self.settings.channel(&out.channel))
            .arg(out.tick.seq)
            .arg(envelope)
            .arg(&*out.channel)
            .invoke_async(conn)
            .await?;
        match reached {
            -1 => {
                self.status.fenced.fetch_add(1, Ordering::Relaxed);
                self.status.set_leader(false);
                tracing::warn!("the lease is held by another producer: standing by");
            }
            -2 => {
                self.status.fenced.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.status.ticks.fetch_add(1, Ordering::Relaxed);
                // A new alert: the state (with the alert log) goes with the next market tick.
                if &*out.channel == "alerts" {
                    self.state_due = Instant::now();
                }
            }
        }
        if &*out.channel == "market" && self.status.is_leader() && Instant::now() >= self.state_due
        {
            self.keep_state(conn).await?;
        }
        Ok(())
    }

    /// Writes the REST routes' state (signed, with the time it is made, when there is a key).
    async fn keep_state(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        self.state_due = Instant::now() + STATE_EVERY;
        self.state_written = Instant::now();
        let make = self.state.clone();
        let key = self.settings.signing_key.clone();
        let state_key = self.settings.state_key();
        let state = tokio::task::spawn_blocking(move || match &key {
            Some(key) => {
                let now = chrono::Utc::now().timestamp_millis();
                key.seal_document(state_key.as_bytes(), now, &make())
            }
            None => make(),
        })
        .await
        .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
        let _: i64 = self
            .keep_state
            .key(self.settings.leader_key())
            .key(self.settings.state_key())
            .arg(&self.status.node)
            .arg(state)
            .invoke_async(conn)
            .await?;
        Ok(())
    }

    /// After a Redis failure: records it, and waits out the backoff; `Err` when told to stop.
    async fn wait_after(
        &self,
        e: &redis::RedisError,
        backoff: &mut Backoff,
        rx: &mut mpsc::Receiver<Outgoing>,
        stop: &Shutdown,
    ) -> Result<(), ()> {
        self.status.down(&e.to_string());
        self.expire_leadership();
        self.drain_for(rx, backoff.next_wait(), stop).await
    }

    /// Waits `wait` while Redis is away, dropping (and counting) the ticks that arrive;
    /// `Err` when told to stop.
    async fn drain_for(
        &self,
        rx: &mut mpsc::Receiver<Outgoing>,
        wait: Duration,
        stop: &Shutdown,
    ) -> Result<(), ()> {
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = stop.recv() => return Err(()),
                _ = &mut until => return Ok(()),
                out = rx.recv() => match out {
                    Some(_) => {
                        self.status.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    None => return Err(()),
                },
            }
        }
    }
}
