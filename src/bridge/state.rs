//! The producer's state for the REST routes, as an edge reads it from Redis.
//!
//! The leading producer keeps one document current under `{prefix}:state` (what the REST routes
//! need beyond the snapshot: basis history, alert log, ...). The bridge moves bytes and knows no
//! market types, so the document's type is a parameter: whatever the composition root says it
//! is ([`StateDoc`]), parsed from JSON, with the events the edge relays (alerts) folded in until
//! the producer's next copy.
//!
//! With `REDIS_SIGNING_KEY` the document carries the producer's tag (see [`super::signing`]); a
//! copy without a right one is dropped and counted (`forged`), and the last good copy stays.
//!
//! A request gets the cached copy at once, and a copy older than a second is read again in the
//! background, so REST traffic on many edges costs Redis at most one GET per edge per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::signing::SigningKey;
use super::{connect, BridgeSettings, BrokerStatus, Refusal, CONNECT_TIMEOUT};

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
            Ok(Some(bytes)) => match self.document(&bytes).map(serde_json::from_slice::<D>) {
                None => {}
                Some(Ok(state)) => {
                    *self.latest.write().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), Arc::new(state)));
                }
                Some(Err(e)) => {
                    tracing::warn!("the producer's state in Redis is not readable: {e}")
                }
            },
            Ok(None) => {}
            Err(_) => *conn = None,
        }
    }

    /// The document in what was read: as it is without a signing key; with one, only when its
    /// tag is right (else counted, logged, and `None`).
    fn document<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let Some(key) = &self.signing_key else {
            return Some(bytes);
        };
        let opened = key.open_document(self.key.as_bytes(), bytes);
        if opened.is_none() {
            self.status.refuse(Refusal::Forged, &self.key);
        }
        opened
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
