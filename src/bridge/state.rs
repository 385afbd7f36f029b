//! The producer's state for the REST routes, as an edge reads it from Redis.
//!
//! The leading producer keeps one document current under `{prefix}:state` (what the REST routes
//! need beyond the snapshot: basis history, alert log, ...). The bridge moves bytes and knows no
//! market types, so the document's type is a parameter: whatever the composition root says it
//! is ([`StateDoc`]), parsed from JSON, with the events the edge relays (alerts) folded in until
//! the producer's next copy.
//!
//! With `REDIS_SIGNING_KEY` the document carries the producer's tag and the time it was made
//! (see [`super::signing`]), and the last good copy stays when a read one is refused: a bare
//! document (`unsigned`), one whose tag is wrong (`forged`), one older than the last taken by
//! more than [`TAKEOVER_SKEW`] (`replayed`: a copy put back in Redis), or more than
//! [`MAX_SIGNED_AGE`](super::MAX_SIGNED_AGE) older than the edge's clock (`stale`; a leading
//! producer writes it at least every [`STATE_KEEPALIVE`](super::producer::STATE_KEEPALIVE),
//! even when nothing ticks). Without a key a signed
//! document is read unchecked (`unverified`, a rate-limited warning): the producers got their
//! key before this edge, which goes on answering.
//!
//! A request gets the cached copy at once, and a copy older than a second is read again in the
//! background, so REST traffic on many edges costs Redis at most one GET per edge per second.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::signing::{self, Document, SigningKey};
use super::{
    connect, signed_too_old, BridgeSettings, BrokerStatus, Refusal, CONNECT_TIMEOUT, TAKEOVER_SKEW,
};

/// How old the cached producer state may be before it is read again.
const STATE_MAX_AGE: Duration = Duration::from_secs(1);

/// The producer's state document, to the bridge: JSON it can parse, and events it can fold in.
pub trait StateDoc: DeserializeOwned + Clone + Send + Sync + 'static {
    /// An event of the events channel (an alert), as JSON.
    type Event: DeserializeOwned;

    /// Folds in an event the edge just relayed, so readers have it before the producer's next
    /// state.
    fn add_event(&mut self, event: Self::Event);
}

/// What the edge's relay loop needs of a [`RemoteState`], whatever its document.
pub trait StateCache: Send + Sync {
    /// Starts a read unless one is running.
    fn refresh_in_background(self: Arc<Self>);
    /// Folds a relayed event into the cached copy (see [`StateDoc::add_event`]).
    fn push_event(&self, payload: &[u8]);
}

/// The producer's state for the REST routes, read from Redis and cached: a request gets the
/// cached copy at once, and a copy older than a second is read again in the background.
pub struct RemoteState<D> {
    client: redis::Client,
    key: String,
    signing_key: Option<SigningKey>,
    status: Arc<BrokerStatus>,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    latest: RwLock<Option<(Instant, Arc<D>)>>,
    /// With a key: the newest signed time stamp of a copy taken (`i64::MIN` before one).
    latest_ts: AtomicI64,
    reading: AtomicBool,
}

impl<D: StateDoc> RemoteState<D> {
    /// State read through `client` from the key of `settings`; a forged copy is counted in
    /// `status`.
    pub fn new(
        client: redis::Client,
        settings: &BridgeSettings,
        status: Arc<BrokerStatus>,
    ) -> Self {
        RemoteState {
            client,
            key: settings.state_key(),
            signing_key: settings.signing_key.clone(),
            status,
            conn: tokio::sync::Mutex::new(None),
            latest: RwLock::new(None),
            latest_ts: AtomicI64::new(i64::MIN),
            reading: AtomicBool::new(false),
        }
    }

    /// The state: the cached copy (read again in the background when older than a second),
    /// or, before there is one, a read now. While Redis is away the last copy is served.
    pub async fn get(self: &Arc<Self>) -> Option<Arc<D>> {
        let cached = self
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match cached {
            Some((read_at, state)) => {
                if read_at.elapsed() >= STATE_MAX_AGE {
                    self.refresh_in_background();
                }
                Some(state)
            }
            None => {
                self.read().await;
                self.cached()
            }
        }
    }

    /// The cached state as it is (no waiting).
    pub fn cached(&self) -> Option<Arc<D>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, s)| s.clone())
    }

    /// Starts a read unless one is running.
    pub fn refresh_in_background(self: &Arc<Self>) {
        if self.reading.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.read().await;
            me.reading.store(false, Ordering::Release);
        });
    }

    async fn read(&self) {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.client))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(c) = conn.as_mut() else {
            return;
        };
        let got: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(&self.key).query_async(c).await;
        match got {
            Ok(Some(bytes)) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let Some((body, signed_ts)) = self.document(&bytes, now_ms) else {
                    return;
                };
                match serde_json::from_slice::<D>(body) {
                    Ok(state) => {
                        if let Some(ts) = signed_ts {
                            self.latest_ts.fetch_max(ts, Ordering::Relaxed);
                        }
                        *self.latest.write().unwrap_or_else(|e| e.into_inner()) =
                            Some((Instant::now(), Arc::new(state)));
                    }
                    Err(e) => {
                        tracing::warn!("the producer's state in Redis is not readable: {e}")
                    }
                }
            }
            Ok(None) => {}
            Err(_) => *conn = None,
        }
    }

    /// The JSON document in what was read, with its signed time stamp when it has one; `None`
    /// (counted, and logged at most every ten seconds) when it may not be served (see the
    /// module's doc). `now_ms` is the edge's clock.
    fn document<'a>(&self, bytes: &'a [u8], now_ms: i64) -> Option<(&'a [u8], Option<i64>)> {
        let read = signing::read_document(bytes);
        let Some(key) = &self.signing_key else {
            return match read {
                Ok(Document::Plain(body)) => Some((body, None)),
                Ok(Document::Sealed(doc)) => {
                    self.status.take_unverified(&self.key);
                    Some((doc.body, None))
                }
                Err(e) => {
                    tracing::warn!("the producer's state in Redis is not readable: {e}");
                    None
                }
            };
        };
        let doc = match read {
            Ok(Document::Sealed(doc)) if doc.verify(key, self.key.as_bytes()) => doc,
            Ok(Document::Plain(_)) => {
                self.status.refuse(Refusal::Unsigned, &self.key);
                return None;
            }
            Ok(Document::Sealed(_)) | Err(_) => {
                self.status.refuse(Refusal::Forged, &self.key);
                return None;
            }
        };
        // Far older than the clock first (as for a tick): `stale` whatever was taken before.
        if signed_too_old(doc.ts_ms, now_ms) {
            self.status.refuse(Refusal::Stale, &self.key);
            return None;
        }
        let taken = self.latest_ts.load(Ordering::Relaxed);
        if doc.ts_ms < taken.saturating_sub(TAKEOVER_SKEW.as_millis() as i64) {
            self.status.refuse(Refusal::Replayed, &self.key);
            return None;
        }
        Some((doc.body, Some(doc.ts_ms)))
    }
}

impl<D: StateDoc> StateCache for RemoteState<D> {
    fn refresh_in_background(self: Arc<Self>) {
        RemoteState::refresh_in_background(&self);
    }

    fn push_event(&self, payload: &[u8]) {
        // A payload that is not an event is ignored before anything is copied.
        let Ok(event) = serde_json::from_slice::<D::Event>(payload) else {
            return;
        };
        let mut latest = self.latest.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, state)) = latest.as_mut() {
            Arc::make_mut(state).add_event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Role, MAX_SIGNED_AGE_MS};
    use super::*;
    use crate::base::Secret;

    #[derive(Clone, serde::Deserialize)]
    struct Doc {}
    impl StateDoc for Doc {
        type Event = ();
        fn add_event(&mut self, _: ()) {}
    }

    fn state(key: Option<&SigningKey>) -> (RemoteState<Doc>, Arc<BrokerStatus>) {
        let settings = BridgeSettings {
            url: "redis://127.0.0.1:1".into(),
            prefix: "mc".into(),
            ca_file: None,
            lease: Duration::from_secs(3),
            tick_interval: Duration::from_secs(1),
            signing_key: key.cloned(),
            accept_foreign: false,
        };
        let status = Arc::new(BrokerStatus::new(Role::Edge, String::new()));
        let client = redis::Client::open(settings.url.as_str()).unwrap();
        (RemoteState::new(client, &settings, status.clone()), status)
    }

    /// What `read` does with a document it parsed: the time stamp is the newest taken.
    fn take(s: &RemoteState<Doc>, bytes: &[u8], now: i64) -> Option<Option<i64>> {
        let (_, ts) = s.document(bytes, now)?;
        if let Some(ts) = ts {
            s.latest_ts.fetch_max(ts, Ordering::Relaxed);
        }
        Some(ts)
    }

    fn n(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    #[test]
    fn with_a_key_only_a_signed_current_copy_is_taken() {
        let key = SigningKey::new(&Secret::from("k".repeat(16))).unwrap();
        let (s, status) = state(Some(&key));
        let now = 1_764_000_000_000;
        let seal = |ts: i64| key.seal_document(b"mc:state", ts, b"{}");
        assert_eq!(take(&s, &seal(now), now), Some(Some(now)));
        // Unsigned, and signed with another key (or for another key name): refused.
        assert_eq!(take(&s, b"{}", now), None);
        assert_eq!(n(&status.unsigned), 1);
        let other = SigningKey::new(&Secret::from("x".repeat(16))).unwrap();
        assert_eq!(
            take(&s, &other.seal_document(b"mc:state", now, b"{}"), now),
            None
        );
        assert_eq!(
            take(&s, &key.seal_document(b"mc:other", now, b"{}"), now),
            None
        );
        assert_eq!(take(&s, &seal(now)[..20], now), None, "cut short");
        assert_eq!(n(&status.forged), 3);
        // Newer: taken. A copy older than the last taken less the skew: put back, refused.
        assert_eq!(
            take(&s, &seal(now + 30_000), now + 30_000),
            Some(Some(now + 30_000))
        );
        let skew = TAKEOVER_SKEW.as_millis() as i64;
        assert_eq!(take(&s, &seal(now), now + 30_000), None);
        assert_eq!(n(&status.replayed), 1);
        // A new leader whose clock is a little behind: taken.
        let behind = now + 30_000 - skew + 1;
        assert_eq!(take(&s, &seal(behind), now + 30_000), Some(Some(behind)));
        // Far older than the clock: stale (on a first read, and after a newer one was taken).
        let (fresh, status) = state(Some(&key));
        assert_eq!(take(&fresh, &seal(now - MAX_SIGNED_AGE_MS - 1), now), None);
        assert_eq!(take(&fresh, &seal(now), now), Some(Some(now)));
        assert_eq!(take(&fresh, &seal(now - MAX_SIGNED_AGE_MS - 1), now), None);
        assert_eq!(n(&status.stale), 2);
        assert_eq!(n(&status.replayed), 0);
    }

    #[test]
    fn without_a_key_a_signed_copy_is_read_unchecked() {
        let key = SigningKey::new(&Secret::from("k".repeat(16))).unwrap();
        let (s, status) = state(None);
        let sealed = key.seal_document(b"mc:state", 5, b"{\"a\":1}");
        assert_eq!(s.document(&sealed, 0), Some((&b"{\"a\":1}"[..], None)));
        assert_eq!(n(&status.unverified), 1);
        assert_eq!(s.document(b"{}", 0), Some((&b"{}"[..], None)));
        assert_eq!(s.document(&sealed[..10], 0), None, "cut short");
        assert_eq!(
            n(&status.unverified) + n(&status.forged) + n(&status.unsigned),
            1
        );
    }
}
