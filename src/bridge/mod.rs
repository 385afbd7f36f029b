//! The Redis bridge: many marketcast nodes behind a load balancer, all sending the same ticks.
//!
//! One process holds about 19,000 clients on a small machine; past that, nodes are added.
//! Redis carries what they share, with its own primitives rather than a protocol of ours:
//!
//! * **Ticks** go over pub/sub, one channel per marketcast channel (`{prefix}:market`, ...),
//!   each message an [`envelope`]: the exact message clients receive and its compressed copy.
//!   An edge fans those bytes out unchanged through its hub.
//! * **Leadership** is a lease (`{prefix}:leader`, `SET NX PX`, renewed at a third of its
//!   time). Producers without it run their feed and processor warm and publish nothing; when
//!   the leader stops renewing, one of them takes the lease within its time and publishes.
//! * **Fencing and order** are one Lua call per tick ([`producer`]): it publishes only while the
//!   caller holds the lease and only a `seq` above the last one published on that channel
//!   (kept in `{prefix}:seq`), and keeps the message as the channel's last
//!   (`{prefix}:last:{channel}`), which an edge reads when it (re)connects. A new leader numbers
//!   its ticks above the last published, so `seq` never goes back across a failover.
//! * **Who may speak**: with `REDIS_SIGNING_KEY` every envelope and the state carry an
//!   HMAC-SHA256 tag ([`signing`]) and an edge relays nothing without a right one, nor a signed
//!   copy older than what it already took (a replay); bodies
//!   published by something other than a producer are relayed only with
//!   `REDIS_ACCEPT_FOREIGN` (and never with a key).
//! * **The REST routes' state** (basis history, alert log, ...) is a key the leader keeps
//!   current (`{prefix}:state`), read by edges on demand ([`edge`]).
//!
//! Redis going away never disconnects a client: edges keep serving the last tick and reconnect
//! with backoff, producers keep serving their own clients.

pub mod edge;
pub mod envelope;
pub mod producer;
pub mod signing;
pub mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use thiserror::Error;

use self::signing::SigningKey;
use crate::base::{redact_url, Backoff};

/// How long a Redis command may take before the connection counts as broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff: first wait, and the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The shortest time between two log lines about messages an edge refused (each is counted).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// With a signing key: how much older than the last one an edge took a signed tick of a new
/// epoch, or a signed state document, may be. Two producer machines' clocks differ (NTP keeps
/// them within milliseconds, a badly kept one within a second or two), and a takeover by the one
/// behind must not be refused; a copy older than this is one put back in Redis (`replayed`).
pub const TAKEOVER_SKEW: Duration = Duration::from_secs(5);
/// With a signing key: how much older than the edge's clock a signed tick it receives, or a
/// signed state document it reads, may be. A producer stamps each when it makes it, so only a
/// copy put back in Redis (or a clock set minutes wrong) is older (`stale`). Generous, so a
/// clock a little off or a slow hop never loses a tick.
pub const MAX_SIGNED_AGE: Duration = Duration::from_secs(5 * 60);

/// Where and how to reach Redis.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...` for TLS.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// PEM file of the CA that signed Redis's certificate (`rediss://` with a private CA);
    /// `None`: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The leader's lease.
    pub lease: Duration,
    /// The channels' shortest time between ticks (a new leader's margin is counted in them).
    pub tick_interval: Duration,
    /// `REDIS_SIGNING_KEY`: producers sign, edges relay only what is signed with it.
    pub signing_key: Option<SigningKey>,
    /// `REDIS_ACCEPT_FOREIGN`: an edge relays JSON bodies published by something other than a
    /// marketcast producer (never with a signing key).
    pub accept_foreign: bool,
}

impl BridgeSettings {
    /// The pub/sub channel of a marketcast channel.
    pub fn channel(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
    fn leader_key(&self) -> String {
        format!("{}:leader", self.prefix)
    }
    fn seq_key(&self) -> String {
        format!("{}:seq", self.prefix)
    }
    fn last_key(&self, name: &str) -> String {
        format!("{}:last:{name}", self.prefix)
    }
    fn state_key(&self) -> String {
        format!("{}:state", self.prefix)
    }
    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
}

/// What can go wrong setting the bridge up.
#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("REDIS_URL is not a Redis URL (redis://host:port or rediss://host:port): {0}")]
    Url(String),
    #[error("REDIS_CA_FILE {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// The Redis client for `settings` (nothing is connected yet).
pub fn client(settings: &BridgeSettings) -> Result<redis::Client, BridgeError> {
    let url = settings.url.trim();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(BridgeError::Url(redact_url(url)));
    }
    let redact_err = |e: redis::RedisError| {
        BridgeError::Url(format!(
            "{} ({})",
            redact_url(url),
            e.detail().unwrap_or("invalid")
        ))
    };
    match &settings.ca_file {
        None => redis::Client::open(url).map_err(redact_err),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| BridgeError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(BridgeError::CaFile {
                    path: path.display().to_string(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(redact_err)
        }
    }
}

/// A command connection with marketcast's timeouts.
async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The reconnect backoff every part of the bridge uses.
fn backoff() -> Backoff {
    Backoff::new(BACKOFF_FIRST, BACKOFF_MAX)
}

/// A node's part in a deployment (`ROLE`), as the settings name it and `/health` and
/// `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// One node: feed, processor and clients, no Redis.
    Standalone,
    /// Feed and processor; publishes to Redis while it holds the lease.
    Producer,
    /// No feed: serves what Redis carries.
    Edge,
}

impl Role {
    /// The role's name in settings, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Producer => "producer",
            Role::Edge => "edge",
        }
    }
}

/// Why an edge dropped a message that was not a producer's as its settings require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No tag, with `REDIS_SIGNING_KEY` set.
    Unsigned,
    /// A tag that is not the key's for these bytes on this channel.
    Forged,
    /// A body from another publisher, with `REDIS_ACCEPT_FOREIGN` off.
    Foreign,
    /// Rightly signed, but older than what the edge already took: a copy put back in Redis.
    Replayed,
    /// Rightly signed, but far older than the edge's clock ([`MAX_SIGNED_AGE`]).
    Stale,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Unsigned => "not signed, and REDIS_SIGNING_KEY is set",
            Refusal::Forged => {
                "its signature is not REDIS_SIGNING_KEY's (forged, or signed with another key)"
            }
            Refusal::Foreign => {
                "a JSON body not from a marketcast producer, and REDIS_ACCEPT_FOREIGN is off"
            }
            Refusal::Replayed => {
                "signed, but older than what this edge already took (an old copy put back in Redis)"
            }
            Refusal::Stale => {
                "signed, but more than 5 minutes older than this edge's clock (an old copy put \
                 back in Redis, or a clock set wrong)"
            }
        }
    }
}

/// The bridge's state and counters, read by `/health` and `/metrics` at request time.
#[derive(Debug)]
pub struct BrokerStatus {
    pub role: Role,
    /// This node's name in the lease (producers).
    pub node: String,
    connected: AtomicBool,
    leader: AtomicBool,
    /// Ticks published (producer) or received and fanned out (edge).
    pub ticks: AtomicU64,
    /// Producer: ticks refused by the fence (lease lost, or a `seq` not above the last).
    pub fenced: AtomicU64,
    /// Producer: ticks that could not go to Redis (queue full, or Redis away).
    pub dropped: Arc<AtomicU64>,
    /// Edge: messages on a channel that were not a tick (not an object, or a broken envelope).
    pub malformed: AtomicU64,
    /// Edge, with a signing key: messages without a tag (unsigned envelopes, bare bodies).
    pub unsigned: AtomicU64,
    /// Edge, with a signing key: envelopes and state documents whose tag is wrong.
    pub forged: AtomicU64,
    /// Edge, with a signing key: rightly signed ticks and state documents older than what the
    /// edge already took (a new epoch's tick older than the last, a retired epoch's, an older
    /// state).
    pub replayed: AtomicU64,
    /// Edge, with a signing key: rightly signed ticks and state documents far older than the
    /// edge's clock ([`MAX_SIGNED_AGE`]).
    pub stale: AtomicU64,
    /// Edge, without a signing key: signed envelopes and state documents taken unchecked (the
    /// producers have a key and this edge has none).
    pub unverified: AtomicU64,
    /// Edge: bodies from another publisher, dropped (`REDIS_ACCEPT_FOREIGN` is off).
    pub foreign: AtomicU64,
    /// Edge: snapshots not sent because a newer one of the channel was already waiting.
    pub conflated: AtomicU64,
    /// Edge: times a `seq` was skipped (a lost pub/sub message), and the ticks skipped.
    pub gaps: AtomicU64,
    pub missed: AtomicU64,
    /// Edge: times a channel's count started again (see [`edge`]'s `accept`): a new epoch
    /// below the last `seq`, or without a key a `seq` far from the last one, or ticks that kept
    /// arriving below it.
    pub resets: AtomicU64,
    /// Times the connection was (re)established after a failure.
    pub reconnects: AtomicU64,
    /// Producer: times this node took the lease.
    pub takeovers: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// When a refused message was last logged (see [`BrokerStatus::refuse`]).
    refusal_logged: Mutex<Option<std::time::Instant>>,
    /// When a signed message taken unchecked was last logged (see
    /// [`BrokerStatus::take_unverified`]).
    unverified_logged: Mutex<Option<std::time::Instant>>,
    /// When a new count was last logged (see [`BrokerStatus::new_count`]).
    reset_logged: Mutex<Option<std::time::Instant>>,
    /// Edge: producer `ts` to the edge handing the tick to its fan-out.
    pub hop_seconds: Histogram,
}

impl BrokerStatus {
    /// A fresh status for `role`.
    pub fn new(role: Role, node: String) -> BrokerStatus {
        BrokerStatus {
            role,
            node,
            connected: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            dropped: Arc::default(),
            malformed: AtomicU64::new(0),
            unsigned: AtomicU64::new(0),
            forged: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            unverified: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            last_error: Mutex::new(None),
            refusal_logged: Mutex::new(None),
            unverified_logged: Mutex::new(None),
            reset_logged: Mutex::new(None),
            hop_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Records a working connection; true when it was down before.
    fn up(&self) -> bool {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        !self.connected.swap(true, Ordering::Relaxed)
    }

    /// Records a failure; logs it when the connection was up (once per outage).
    fn down(&self, error: &str) {
        let was_up = self.connected.swap(false, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if was_up || last.is_none() {
            tracing::warn!(role = ?self.role, "Redis unavailable: {error}; retrying with backoff");
        }
        *last = Some(error.to_string());
    }

    /// Counts a message the edge dropped because it is not a producer's as the settings
    /// require, and logs it, at most once every ten seconds (a flood costs a counter each, not
    /// a log line each).
    pub fn refuse(&self, why: Refusal, source: &str) {
        let counter = match why {
            Refusal::Unsigned => &self.unsigned,
            Refusal::Forged => &self.forged,
            Refusal::Foreign => &self.foreign,
            Refusal::Replayed => &self.replayed,
            Refusal::Stale => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !due(&self.refusal_logged) {
            return;
        }
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::warn!(
            source,
            unsigned = n(&self.unsigned),
            forged = n(&self.forged),
            replayed = n(&self.replayed),
            stale = n(&self.stale),
            foreign = n(&self.foreign),
            "dropped a message in Redis: {} (counted; logged at most every {REFUSAL_LOG_EVERY:?})",
            why.reason()
        );
    }

    /// Counts a signed message an edge without a key takes unchecked, and says so, at most
    /// once every ten seconds: the producers sign, so this edge could check them with the same
    /// `REDIS_SIGNING_KEY`.
    pub fn take_unverified(&self, source: &str) {
        self.unverified.fetch_add(1, Ordering::Relaxed);
        if !due(&self.unverified_logged) {
            return;
        }
        tracing::warn!(
            source,
            unverified = self.unverified.load(Ordering::Relaxed),
            "the producers sign what they write to Redis, and this edge has no REDIS_SIGNING_KEY: \
             relaying it unchecked; set the producers' key here (counted; logged at most every \
             {REFUSAL_LOG_EVERY:?})"
        );
    }

    /// Counts a channel's count starting again (`from` the last `seq` `to` this one), and
    /// logs it, at most once every ten seconds (without a key anyone can cause one).
    pub fn new_count(&self, channel: &str, from: u64, to: u64, why: &str) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        if !due(&self.reset_logged) {
            return;
        }
        tracing::warn!(
            channel,
            from,
            to,
            resets = self.resets.load(Ordering::Relaxed),
            "a new count of seq: {why} (counted; logged at most every {REFUSAL_LOG_EVERY:?})"
        );
    }

    /// The `/health` view.
    pub fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v = serde_json::json!({
            "status": if self.is_connected() { "connected" } else { "unavailable" },
            "role": self.role,
            "ticks": n(&self.ticks),
            "reconnects": n(&self.reconnects),
            "error": *self.last_error.lock().unwrap_or_else(|e| e.into_inner()),
        });
        match self.role {
            // A standalone node has no broker, hence no status of this kind.
            Role::Standalone => {}
            Role::Producer => {
                v["node"] = self.node.clone().into();
                v["leader"] = self.is_leader().into();
                v["takeovers"] = n(&self.takeovers).into();
                v["fenced"] = n(&self.fenced).into();
                v["dropped"] = n(&self.dropped).into();
            }
            Role::Edge => {
                v["malformed"] = n(&self.malformed).into();
                v["unsigned"] = n(&self.unsigned).into();
                v["forged"] = n(&self.forged).into();
                v["replayed"] = n(&self.replayed).into();
                v["stale"] = n(&self.stale).into();
                v["unverified"] = n(&self.unverified).into();
                v["foreign"] = n(&self.foreign).into();
                v["conflated"] = n(&self.conflated).into();
                v["gaps"] = n(&self.gaps).into();
                v["missed"] = n(&self.missed).into();
                v["resets"] = n(&self.resets).into();
            }
        }
        v
    }
}

/// Whether a signed tick or document stamped `ts_ms` is far older than `now_ms` (both epoch
/// milliseconds): older than [`MAX_SIGNED_AGE`].
fn signed_too_old(ts_ms: i64, now_ms: i64) -> bool {
    ts_ms < now_ms.saturating_sub(MAX_SIGNED_AGE.as_millis() as i64)
}

/// Whether a rate-limited log line may be written now (at most every [`REFUSAL_LOG_EVERY`]);
/// if so, records that it was.
fn due(last: &Mutex<Option<std::time::Instant>>) -> bool {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < REFUSAL_LOG_EVERY) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}

/// [`MAX_SIGNED_AGE`] in milliseconds, for tests.
#[cfg(test)]
const MAX_SIGNED_AGE_MS: i64 = MAX_SIGNED_AGE.as_millis() as i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_message_is_too_old_only_past_the_bound() {
        let now = 1_764_000_000_000;
        assert!(!signed_too_old(now, now));
        assert!(!signed_too_old(now + 60_000, now), "a clock ahead");
        assert!(!signed_too_old(now - MAX_SIGNED_AGE_MS, now));
        assert!(signed_too_old(now - MAX_SIGNED_AGE_MS - 1, now));
        assert!(signed_too_old(i64::MIN, now));
        assert!(!signed_too_old(i64::MIN, i64::MIN), "no overflow");
    }

    fn settings(url: &str) -> BridgeSettings {
        BridgeSettings {
            url: url.into(),
            prefix: "mc".into(),
            ca_file: None,
            lease: Duration::from_secs(3),
            tick_interval: Duration::from_secs(1),
            signing_key: None,
            accept_foreign: false,
        }
    }

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(client(&settings("redis://127.0.0.1:6379")).is_ok());
        assert!(client(&settings("rediss://:pw@127.0.0.1:6380/0")).is_ok());
        let err = client(&settings("http://:secret@127.0.0.1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_URL") && !err.contains("secret"),
            "{err}"
        );
        assert_eq!(
            redact_url("redis://user:secret@h:1/0"),
            "redis://user:***@h:1/0"
        );
        let mut s = settings("rediss://h:1");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let err = client(&s).unwrap_err().to_string();
        assert!(
            err.starts_with("REDIS_CA_FILE /nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn keys_share_the_prefix() {
        let s = settings("redis://h");
        assert_eq!(s.channel("market"), "mc:market");
        assert_eq!(s.leader_key(), "mc:leader");
        assert_eq!(s.last_key("index"), "mc:last:index");
        assert_eq!(s.seq_key(), "mc:seq");
        assert_eq!(s.state_key(), "mc:state");
    }
}
