//! A local SSI FastConnect Data (v2) server, so the SSI client's integration tests run offline
//! and deterministically.
//!
//! The double plays the *server* side of the session transcript in
//! `shared/reference/ssi-fastconnect-streaming.md` §5: the REST token and `IndexComponents`
//! calls, then classic ASP.NET SignalR 2.x over WebSocket (`negotiate`, `connect`, `start`,
//! `abort`) with the hub `FcMarketDataV2Hub`. Frames have the exact shapes the SignalR source
//! produces: the init frame `{"C":..,"S":1,"M":[]}`, `Broadcast` invocations whose only
//! argument is the SSI envelope *as a JSON string* (the double encoding of §3.1), `{}`
//! keep-alives, `{"I":".."}` invocation results, a hub `Error` call and `"T":1`.
//!
//! **Delivery.** The scripted messages form one global queue with one cursor, shared by every
//! connection. A message is handed to exactly one connection (see [`DoubleConfig::route_by_channel`]
//! and [`DoubleConfig::route_by_symbol`]; with the latter, as with SSI, a message nobody
//! subscribed is never sent) and the cursor moves on, so a test can assert that a client which reconnects loses nothing
//! and sees nothing twice. Scripted failures (`drop_after`, `silent_after`, ...) are keyed to
//! that cursor: "after n messages" means after the frame carrying message n-1 was written, and
//! nothing more is delivered until the failure has happened. A connection that went silent,
//! was asked to reconnect (`"T":1`), or is being dropped never receives data again; the next
//! subscribed connection resumes where the cursor stands. With `hold`, messages (and the
//! events between them) wait until the test calls [`SsiDouble::release`].
//!
//! **How a drop looks.** `drop_after` half-closes the TCP connection (FIN) right after the
//! frame with message n-1, without a WebSocket Close frame, waits up to two seconds for the
//! client's FIN and then lets the socket go. A client sees all data, then an abrupt end of
//! stream (`ResetWithoutClosingHandshake` in tungstenite). A silent connection stops writing
//! altogether (not even pongs: it reads and discards raw bytes) until the client closes it.
//!
//! **Why these building blocks.** The WebSocket upgrade is taken over at the hyper level and
//! handed to `tokio-tungstenite` 0.26, the implementation the tests already use: axum 0.8's own
//! `ws` feature would pull in a second, newer tungstenite. State sits behind one
//! `std::sync::Mutex` (never held across an `.await`), so every decision about who gets which
//! message is made atomically in [`Delivery`], a plain struct without I/O. Every task the
//! double starts watches one cancellation token, so dropping the [`SsiDouble`] closes the
//! listener and every WebSocket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::HttpResponse;

/// The hub every SSI client names in `connectionData` and every data frame carries in `H`.
pub const HUB: &str = "FcMarketDataV2Hub";

/// The VN30 members the double serves by default (IndexComponents).
pub const VN30: [&str; 30] = [
    "ACB", "BCM", "BID", "CTG", "DGC", "FPT", "GAS", "GVR", "HDB", "HPG", "LPB", "MBB", "MSN",
    "MWG", "PLX", "SAB", "SHB", "SSB", "SSI", "STB", "TCB", "TPB", "VCB", "VHM", "VIB", "VIC",
    "VJC", "VNM", "VPB", "VRE",
];

/// How long a dropped connection waits for the client's FIN before letting the socket go.
const DROP_LINGER: Duration = Duration::from_secs(2);

/// The shortest keep-alive period honoured, so a zero in a test cannot spin a task.
const MIN_KEEPALIVE: Duration = Duration::from_millis(1);

/// What the double accepts, serves and breaks.
#[derive(Clone, Debug)]
pub struct DoubleConfig {
    /// The accepted `consumerID`.
    pub consumer_id: String,
    /// The accepted `consumerSecret`.
    pub consumer_secret: String,
    /// A token's `exp` is now + this (seconds resolution); an expired token is refused.
    pub token_lifetime: Duration,
    /// The symbols `IndexComponents` returns for VN30.
    pub vn30: Vec<String>,
    /// `IndexComponents` answers HTTP 500.
    pub index_components_fail: bool,
    /// The `Broadcast` argument strings, in order: each an SSI envelope JSON text
    /// `{"DataType":"X-TRADE","Content":"<escaped json>"}` (see [`envelope`]).
    pub messages: Vec<String>,
    /// At most this many `Broadcast` invocations per data frame (at least 1).
    pub batch: usize,
    /// The `{}` keep-alive is sent when a connection has written nothing for this long.
    pub keepalive: Duration,
    /// The negotiate response's `KeepAliveTimeout` (`null` when `None`).
    pub keepalive_timeout_secs: Option<f64>,
    /// After n messages in total were written, the connection that wrote message n-1 is
    /// half-closed without a Close frame. Each entry fires once; the next connection resumes
    /// with message n.
    pub drop_after: Vec<usize>,
    /// After n messages, that connection goes completely silent but stays open (once).
    pub silent_after: Option<usize>,
    /// After n messages, a hub `Error` invocation with this text (once); data continues on the
    /// same connection.
    pub error_after: Option<(usize, String)>,
    /// After n messages, a few malformed frames (once); data continues on the same connection.
    pub malformed_after: Option<usize>,
    /// After n messages, `{"C":..,"T":1,"M":[]}` (once). The socket stays open with
    /// keep-alives, but data waits for another subscribed connection.
    pub reconnect_after: Option<usize>,
    /// `false`: each message goes to the newest connection that has called `SwitchChannels`.
    /// `true`: to the newest whose channels cover the message's `DataType`; messages wait, in
    /// order, until one exists.
    pub route_by_channel: bool,
    /// As SSI does with `TYPE:SYM-SYM` channels: a message goes only to a connection that
    /// subscribed its `DataType` for its symbol (the content's `Symbol`, or `IndexId` for `MI`,
    /// matched case-insensitively) or for `ALL`. Like `route_by_channel`, a message waits, in
    /// order, while no connection has subscribed its type at all; once one has and no
    /// connection lists its symbol, it is never sent: the cursor moves past it and it is
    /// logged in [`DoubleLog::unsubscribed`]. (A client that split one type's symbols over
    /// several calls could lose messages between its calls; marketcast sends one per type.)
    pub route_by_symbol: bool,
    /// Deliver nothing until [`SsiDouble::release`] lets messages through, so a test can set
    /// up its observers first. An event scripted after n messages waits for message n's
    /// release (or for every message to be released).
    pub hold: bool,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            consumer_id: "test-id".to_string(),
            consumer_secret: "test-secret".to_string(),
            token_lifetime: Duration::from_secs(8 * 3600),
            vn30: VN30.iter().map(|s| s.to_string()).collect(),
            index_components_fail: false,
            messages: Vec::new(),
            batch: 1,
            keepalive: Duration::from_secs(1),
            keepalive_timeout_secs: Some(20.0),
            drop_after: Vec::new(),
            silent_after: None,
            error_after: None,
            malformed_after: None,
            reconnect_after: None,
            route_by_channel: false,
            route_by_symbol: false,
            hold: false,
        }
    }
}

/// What happened so far; [`SsiDouble::log`] returns a copy.
#[derive(Clone, Debug, Default)]
pub struct DoubleLog {
    /// `POST AccessToken` calls, successful or not.
    pub token_requests: usize,
    pub tokens_issued: Vec<String>,
    /// The JSON bodies the client posted (a body that is not JSON is kept as a JSON string).
    pub token_bodies: Vec<Value>,
    /// The raw query strings of `IndexComponents` calls.
    pub index_component_requests: Vec<String>,
    /// Every negotiate request, including refused ones.
    pub negotiates: Vec<Request>,
    /// Every `connect` (WebSocket upgrade) request, including refused ones.
    pub connects: Vec<Request>,
    pub starts: Vec<Request>,
    pub aborts: Vec<Request>,
    /// Requests refused for a bad, missing, expired or revoked bearer.
    pub unauthorized: usize,
    /// (connection number, the client's text frame as JSON). Connection numbers count
    /// established WebSocket sessions from 0; a frame that is not JSON is kept as a string.
    pub invocations: Vec<(usize, Value)>,
    /// `Broadcast` payloads written so far, across all connections.
    pub messages_sent: usize,
    /// With `route_by_symbol`: `"<DataType> <symbol>"` of each message no connection
    /// subscribed, in order (never sent).
    pub unsubscribed: Vec<String>,
    /// Connections the double ended (`drop_after`).
    pub connections_closed_by_double: usize,
    /// WebSocket sessions currently open (a silent one counts until the client closes it).
    pub open_connections: usize,
}

/// One logged HTTP request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
}

/// A running double on 127.0.0.1; stops (listener and every connection) when dropped.
pub struct SsiDouble {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SsiDouble {
    /// Binds 127.0.0.1 on an ephemeral port and serves until dropped.
    pub async fn start(config: DoubleConfig) -> SsiDouble {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SSI double");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone());
        let stop = shared.cancel.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        });
        SsiDouble { addr, shared }
    }

    /// The REST base (token, IndexComponents): `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The stream base; the hub lives at `<stream_url>v2.0/signalr`.
    pub fn stream_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A copy of the log so far.
    pub fn log(&self) -> DoubleLog {
        self.shared.state().log.clone()
    }

    /// Polls the log every 20 ms until `what` holds; panics with the log after `timeout`.
    pub async fn wait_until(
        &self,
        what: impl Fn(&DoubleLog) -> bool,
        timeout: Duration,
    ) -> DoubleLog {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if what(&log) {
                return log;
            }
            if Instant::now() >= deadline {
                panic!("SSI double: condition not met within {timeout:?}; log: {log:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.state().tokens.lifetime = lifetime;
    }

    /// With [`DoubleConfig::hold`]: the first `count` messages (a total, not an increment) may
    /// be delivered.
    pub fn release(&self, count: usize) {
        {
            let mut state = self.shared.state();
            state.delivery.released = state.delivery.released.max(count);
        }
        self.shared.notify();
    }

    /// Every token issued so far is refused from now on (HTTP 401).
    pub fn revoke_tokens(&self) {
        let mut state = self.shared.state();
        state.tokens.revoked_below = state.tokens.issued.len();
    }
}

impl Drop for SsiDouble {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// An SSI envelope as it travels in `Broadcast`'s argument: `Content` is the record as a JSON
/// string.
pub fn envelope(data_type: &str, content: &Value) -> String {
    json!({ "DataType": data_type, "Content": content.to_string() }).to_string()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `POST path` with a JSON body, as SSI's clients send the token request.
pub async fn http_post_json(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    all.extend_from_slice(headers);
    super::http_request(addr, "POST", path, &all, body.to_string().as_bytes()).await
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

/// The one handle every handler and connection task holds.
struct Shared {
    config: DoubleConfig,
    state: Mutex<DoubleState>,
    /// Bumped whenever delivery may have a new duty for some connection.
    changes: watch::Sender<()>,
    /// Cancelled when the [`SsiDouble`] is dropped.
    cancel: CancellationToken,
}

struct DoubleState {
    log: DoubleLog,
    tokens: Tokens,
    /// Connection tokens handed out by negotiate.
    connection_tokens: HashSet<String>,
    next_connection: usize,
    delivery: Delivery,
}

impl Shared {
    fn new(config: DoubleConfig) -> Shared {
        let state = DoubleState {
            log: DoubleLog::default(),
            tokens: Tokens {
                lifetime: config.token_lifetime,
                issued: HashMap::new(),
                revoked_below: 0,
            },
            connection_tokens: HashSet::new(),
            next_connection: 0,
            delivery: Delivery::new(&config),
        };
        Shared {
            config,
            state: Mutex::new(state),
            changes: watch::channel(()).0,
            cancel: CancellationToken::new(),
        }
    }

    /// The state; a panic elsewhere must not wedge the double, so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, DoubleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changes.send_replace(());
    }

    /// Whether the request carries a valid bearer; counts the refusals.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let mut state = self.state();
        let ok = bearer(headers).is_some_and(|t| state.tokens.is_valid(t));
        if !ok {
            state.log.unauthorized += 1;
        }
        ok
    }

    /// The AccessToken endpoint's answer. SSI reports bad credentials in the body with HTTP
    /// 200 (reference §1.2), so this always returns a body.
    fn access_token(&self, body: &str) -> Value {
        let posted = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.into()));
        let mut state = self.state();
        state.log.token_requests += 1;
        let accepted = field(&posted, "consumerID") == Some(&self.config.consumer_id)
            && field(&posted, "consumerSecret") == Some(&self.config.consumer_secret);
        state.log.token_bodies.push(posted);
        if !accepted {
            return json!({ "message": "Invalid consumer", "status": 401, "data": null });
        }
        let token = state.tokens.issue(&self.config.consumer_id);
        state.log.tokens_issued.push(token.clone());
        json!({ "message": "Success", "status": 200, "data": { "accessToken": token } })
    }

    fn issue_connection_token(&self) -> (String, String) {
        let mut state = self.state();
        let serial = state.connection_tokens.len() as u64;
        let (token, id) = connection_token(serial);
        state.connection_tokens.insert(token.clone());
        (token, id)
    }

    fn knows_connection_token(&self, token: &str) -> bool {
        self.state().connection_tokens.contains(token)
    }

    /// Registers a new WebSocket session and returns its connection number.
    fn open_session(&self) -> usize {
        let mut state = self.state();
        let id = state.next_connection;
        state.next_connection += 1;
        state.log.open_connections += 1;
        state.delivery.sessions.insert(id, Session::default());
        id
    }

    fn close_session(&self, id: usize) {
        {
            let mut state = self.state();
            state.log.open_connections -= 1;
            state.delivery.sessions.remove(&id);
        }
        self.notify();
    }

    /// Logs a client text frame and returns the hub's reply, if any.
    fn on_client_text(&self, id: usize, text: &str) -> Option<String> {
        let frame = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
        let outcome = hub_invocation(&frame);
        {
            let mut state = self.state();
            state.log.invocations.push((id, frame));
            if let (Invocation::SwitchChannels { argument, .. }, Some(session)) =
                (&outcome, state.delivery.sessions.get_mut(&id))
            {
                session.subscribe(argument);
            }
        }
        if matches!(outcome, Invocation::SwitchChannels { .. }) {
            self.notify();
        }
        outcome.reply()
    }

    /// The connection will never take data again (the client sent Close).
    fn retire(&self, id: usize) {
        if let Some(session) = self.state().delivery.sessions.get_mut(&id) {
            session.receives_data = false;
        }
        self.notify();
    }

    fn duty(&self, id: usize) -> Duty {
        let duty = {
            let mut state = self.state();
            let duty = state.delivery.duty(id);
            let skipped = state.delivery.unsubscribed.len();
            if state.log.unsubscribed.len() < skipped {
                let new = state.delivery.unsubscribed[state.log.unsubscribed.len()..].to_vec();
                state.log.unsubscribed.extend(new);
            }
            duty
        };
        if !matches!(duty, Duty::Wait) {
            self.notify();
        }
        duty
    }

    fn record_sent(&self, count: usize) {
        self.state().log.messages_sent += count;
    }
}

/// A string field of a JSON object, the key matched case-insensitively (.NET model binding).
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a String> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// Issued access tokens: a token is valid if this double issued it, it was not revoked, and
/// its `exp` has not passed.
struct Tokens {
    lifetime: Duration,
    /// token -> (serial, exp in epoch seconds)
    issued: HashMap<String, (usize, u64)>,
    /// Tokens with a serial below this were revoked.
    revoked_below: usize,
}

impl Tokens {
    fn issue(&mut self, consumer_id: &str) -> String {
        let serial = self.issued.len();
        let exp = (unix_now() + self.lifetime).as_secs();
        let token = jwt(serial, consumer_id, exp);
        self.issued.insert(token.clone(), (serial, exp));
        token
    }

    fn is_valid(&self, token: &str) -> bool {
        self.issued.get(token).is_some_and(|&(serial, exp)| {
            serial >= self.revoked_below && unix_now().as_secs_f64() < exp as f64
        })
    }
}

/// An unsigned-looking JWT whose payload carries `exp` and a serial (`jti`). A `nonce` is
/// varied until the payload's base64url has no `-` or `_`, so that SSI's Python client, which
/// decodes with the standard alphabet, could read it too (reference §1.3).
fn jwt(serial: usize, consumer_id: &str, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let encode = |nonce: u32| {
        let claims = json!({ "sub": consumer_id, "jti": serial, "exp": exp, "nonce": nonce });
        URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let payload = (0..1000)
        .map(encode)
        .find(|p| !p.contains(['-', '_']))
        .unwrap_or_else(|| encode(0));
    let signature = URL_SAFE_NO_PAD.encode(format!("ssi-double-signature-{serial}"));
    format!("{header}.{payload}.{signature}")
}

/// A connection token shaped like SignalR's (standard base64 with `+`, `/` and `=`, so a client
/// that forgets to percent-encode it is refused), and a GUID-like connection id.
fn connection_token(serial: u64) -> (String, String) {
    // 0xFBEFBE encodes as "++++", 0xFFFFFF as "////"; 16 bytes end in "==".
    let mut bytes = vec![0xFB, 0xEF, 0xBE, 0xFF, 0xFF, 0xFF];
    bytes.extend_from_slice(&serial.to_be_bytes());
    bytes.extend_from_slice(&[0x5D, 0x1E]);
    let id = format!("5d1e0000-0000-4000-8000-{serial:012x}");
    (STANDARD.encode(bytes), id)
}

// ---------------------------------------------------------------------------------------------
// Delivery: who gets which message, and when the scripted failures fire
// ---------------------------------------------------------------------------------------------

/// One WebSocket session as delivery sees it.
#[derive(Debug)]
struct Session {
    /// `SwitchChannels` was called at least once.
    subscribed: bool,
    /// A bare `ALL` channel was asked for.
    all_channels: bool,
    /// The channel types (`X-TRADE`, `MI`, ...) asked for so far; calls add up.
    channel_types: Vec<String>,
    /// Per upper-cased channel type, the upper-cased symbols asked for (`None`: `ALL`).
    symbols: HashMap<String, Option<HashSet<String>>>,
    /// False once the session went silent, was asked to reconnect, is being dropped, or the
    /// client sent Close.
    receives_data: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            subscribed: false,
            all_channels: false,
            channel_types: Vec::new(),
            symbols: HashMap::new(),
            receives_data: true,
        }
    }
}

impl Session {
    /// Adds one `SwitchChannels` argument: `TYPE:LIST` channels, possibly comma-joined.
    fn subscribe(&mut self, argument: &str) {
        self.subscribed = true;
        for channel in argument.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match channel.split_once(':') {
                Some((kind, list)) => {
                    self.channel_types.push(kind.trim().to_string());
                    let listed = self
                        .symbols
                        .entry(kind.trim().to_ascii_uppercase())
                        .or_insert_with(|| Some(HashSet::new()));
                    if list.trim().eq_ignore_ascii_case("ALL") {
                        *listed = None;
                    } else if let Some(set) = listed {
                        set.extend(
                            list.split('-')
                                .map(|s| s.trim().to_ascii_uppercase())
                                .filter(|s| !s.is_empty()),
                        );
                    }
                }
                None if channel.eq_ignore_ascii_case("ALL") => self.all_channels = true,
                None => self.channel_types.push(channel.to_string()),
            }
        }
    }

    /// Whether a message of this `DataType` (and symbol) may go here: routed by type, or by
    /// type and symbol, or neither. A message whose type or symbol cannot be read goes
    /// anywhere its type (if known) was asked for.
    fn takes(&self, routing: Routing, data_type: Option<&str>, symbol: Option<&str>) -> bool {
        if !self.subscribed || !self.receives_data {
            return false;
        }
        if routing == Routing::Any || self.all_channels {
            return true;
        }
        let Some(t) = data_type else {
            return true;
        };
        if !self.channel_types.iter().any(|c| c.eq_ignore_ascii_case(t)) {
            return false;
        }
        match (routing, symbol) {
            (Routing::BySymbol, Some(symbol)) => match self.symbols.get(&t.to_ascii_uppercase()) {
                Some(Some(listed)) => listed.contains(&symbol.to_ascii_uppercase()),
                _ => true,
            },
            _ => true,
        }
    }
}

/// How the double picks the connection a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routing {
    /// The newest subscribed connection.
    Any,
    /// The newest that subscribed the message's type.
    ByType,
    /// The newest that subscribed the message's type for its symbol.
    BySymbol,
}

impl Routing {
    fn of(config: &DoubleConfig) -> Routing {
        if config.route_by_symbol {
            Routing::BySymbol
        } else if config.route_by_channel {
            Routing::ByType
        } else {
            Routing::Any
        }
    }
}

/// A scripted failure. When several are due at the same count they happen in this order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Malformed,
    HubError(String),
    Reconnect,
    Drop,
    Silence,
}

impl Event {
    /// After this event the connection takes no more data.
    fn retires(&self) -> bool {
        matches!(self, Event::Reconnect | Event::Drop | Event::Silence)
    }
}

#[derive(Debug)]
struct Scripted {
    after: usize,
    event: Event,
    fired: bool,
}

/// What a connection must do next.
#[derive(Debug)]
enum Duty {
    /// Write these messages in one data frame.
    Send(Range<usize>),
    /// Perform these scripted events, in order.
    Perform(Vec<Event>),
    Wait,
}

struct Delivery {
    /// The `DataType` of each message, for routing by channel.
    data_types: Vec<Option<String>>,
    /// The symbol (or index id) of each message, for routing by symbol.
    symbols: Vec<Option<String>>,
    batch: usize,
    routing: Routing,
    /// `"<DataType> <symbol>"` of each message skipped because no connection subscribed it.
    unsubscribed: Vec<String>,
    sessions: BTreeMap<usize, Session>,
    /// The first message not yet handed to a connection.
    next: usize,
    /// Messages from this index on are held back ([`DoubleConfig::hold`]).
    released: usize,
    /// The connection that took the latest batch; it owns the events due right after it.
    last_writer: Option<usize>,
    script: Vec<Scripted>,
}

impl Delivery {
    fn new(config: &DoubleConfig) -> Delivery {
        Delivery {
            data_types: config.messages.iter().map(|m| data_type(m)).collect(),
            symbols: config.messages.iter().map(|m| symbol(m)).collect(),
            batch: config.batch.max(1),
            routing: Routing::of(config),
            unsubscribed: Vec::new(),
            sessions: BTreeMap::new(),
            next: 0,
            released: if config.hold { 0 } else { usize::MAX },
            last_writer: None,
            script: script(config),
        }
    }

    /// The newest connection that may take message `index`.
    fn target(&self, index: usize) -> Option<usize> {
        let data_type = self.data_types[index].as_deref();
        let symbol = self.symbols[index].as_deref();
        self.newest(|s| s.takes(self.routing, data_type, symbol))
    }

    /// With [`Routing::BySymbol`], whether message `index` is one SSI would send to nobody: a
    /// connection subscribed its type, but none of them for its symbol.
    fn unsubscribed(&self, index: usize) -> bool {
        let data_type = self.data_types[index].as_deref();
        self.routing == Routing::BySymbol
            && self.target(index).is_none()
            && self
                .newest(|s| s.takes(Routing::ByType, data_type, None))
                .is_some()
    }

    /// Moves the cursor past the messages nobody subscribed, up to the next scripted event.
    fn skip_unsubscribed(&mut self) {
        let available = self.data_types.len().min(self.released);
        while self.next < available
            && !self.script.iter().any(|s| !s.fired && s.after == self.next)
            && self.unsubscribed(self.next)
        {
            let data_type = self.data_types[self.next].as_deref().unwrap_or("?");
            let symbol = self.symbols[self.next].as_deref().unwrap_or("?");
            self.unsubscribed.push(format!("{data_type} {symbol}"));
            self.next += 1;
        }
    }

    fn newest(&self, pred: impl Fn(&Session) -> bool) -> Option<usize> {
        self.sessions
            .iter()
            .rev()
            .find(|(_, s)| pred(s))
            .map(|(&id, _)| id)
    }

    /// Who performs the events due at the cursor: the connection that wrote the messages
    /// before it, or (at the start, or if that one is gone) whoever would take the next one.
    fn event_owner(&self) -> Option<usize> {
        match self.last_writer {
            Some(w) if self.sessions.get(&w).is_some_and(|s| s.receives_data) => Some(w),
            _ if self.next < self.data_types.len() => self.target(self.next),
            _ => self.newest(|s| s.takes(Routing::Any, None, None)),
        }
    }

    fn duty(&mut self, me: usize) -> Duty {
        self.skip_unsubscribed();
        let due = |s: &Scripted| !s.fired && s.after == self.next;
        if self.script.iter().any(due) {
            return if self.event_owner() == Some(me) && self.releases_events() {
                Duty::Perform(self.fire_due(me))
            } else {
                Duty::Wait
            };
        }
        let available = self.data_types.len().min(self.released);
        if self.next >= available || self.target(self.next) != Some(me) {
            return Duty::Wait;
        }
        let start = self.next;
        let limit = (start + self.batch)
            .min(available)
            .min(self.next_event_count());
        let mut end = start + 1;
        while end < limit && self.target(end) == Some(me) {
            end += 1;
        }
        self.next = end;
        self.last_writer = Some(me);
        Duty::Send(start..end)
    }

    /// Whether events due at the cursor are released: with the message after them, or once
    /// everything is.
    fn releases_events(&self) -> bool {
        self.next < self.released || self.released >= self.data_types.len()
    }

    /// The smallest count beyond the cursor at which an event is still to fire.
    fn next_event_count(&self) -> usize {
        self.script
            .iter()
            .filter(|s| !s.fired && s.after > self.next)
            .map(|s| s.after)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn fire_due(&mut self, me: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for scripted in &mut self.script {
            if !scripted.fired && scripted.after == self.next {
                scripted.fired = true;
                events.push(scripted.event.clone());
            }
        }
        if events.iter().any(Event::retires) {
            if let Some(session) = self.sessions.get_mut(&me) {
                session.receives_data = false;
            }
        }
        events
    }
}

/// The scripted events, in firing order.
fn script(config: &DoubleConfig) -> Vec<Scripted> {
    let mut events: Vec<(usize, Event)> = config
        .drop_after
        .iter()
        .map(|&n| (n, Event::Drop))
        .collect();
    events.extend(config.malformed_after.map(|n| (n, Event::Malformed)));
    events.extend(
        config
            .error_after
            .clone()
            .map(|(n, text)| (n, Event::HubError(text))),
    );
    events.extend(config.reconnect_after.map(|n| (n, Event::Reconnect)));
    events.extend(config.silent_after.map(|n| (n, Event::Silence)));
    events.sort();
    events
        .into_iter()
        .map(|(after, event)| Scripted {
            after,
            event,
            fired: false,
        })
        .collect()
}

/// A message's `DataType` (key matched case-insensitively), if it parses.
fn data_type(message: &str) -> Option<String> {
    let value: Value = serde_json::from_str(message).ok()?;
    field(&value, "DataType").cloned()
}

/// A message's symbol: its content's `Symbol`, else its `IndexId` (the content a JSON string
/// or an object), if it parses.
fn symbol(message: &str) -> Option<String> {
    let value: Value = serde_json::from_str(message).ok()?;
    let content = value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content"))
        .map(|(_, c)| c.clone())?;
    let content = match content {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        object => object,
    };
    field(&content, "Symbol")
        .or_else(|| field(&content, "IndexId"))
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// Hub invocations from the client
// ---------------------------------------------------------------------------------------------

/// A client frame as the hub understands it.
enum Invocation {
    /// `SwitchChannels(argument)`; the result is void.
    SwitchChannels { id: String, argument: String },
    /// An invocation the hub cannot resolve; the reply carries `E`.
    Failed { id: String, error: String },
    /// Not an invocation with an id: no reply.
    Ignored,
}

impl Invocation {
    /// `{"I":"<id>"}` for a void result, `{"I":"<id>","E":".."}` for a failure.
    fn reply(&self) -> Option<String> {
        match self {
            Invocation::SwitchChannels { id, .. } => Some(json!({ "I": id }).to_string()),
            Invocation::Failed { id, error } => Some(json!({ "I": id, "E": error }).to_string()),
            Invocation::Ignored => None,
        }
    }
}

/// Reads `{"H":..,"M":..,"A":[..],"I":..}` the way SignalR's `HubRequestParser` does: hub and
/// method names case-insensitive, `I` a number or a string.
fn hub_invocation(frame: &Value) -> Invocation {
    let Some(id) = frame.get("I").and_then(invocation_id) else {
        return Invocation::Ignored;
    };
    let hub = frame.get("H").and_then(Value::as_str).unwrap_or("");
    let method = frame.get("M").and_then(Value::as_str).unwrap_or("");
    if !hub.eq_ignore_ascii_case(HUB) {
        let error = format!("'{hub}' Hub could not be resolved.");
        return Invocation::Failed { id, error };
    }
    let args = frame.get("A").and_then(Value::as_array).map(Vec::as_slice);
    match args {
        Some([Value::String(argument)]) if method.eq_ignore_ascii_case("SwitchChannels") => {
            let argument = argument.clone();
            Invocation::SwitchChannels { id, argument }
        }
        _ => {
            let error = format!("'{method}' method could not be resolved on hub '{HUB}'.");
            Invocation::Failed { id, error }
        }
    }
}

fn invocation_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: REST and the SignalR endpoints
// ---------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v2/Market/AccessToken", post(access_token))
        .route("/api/v2/Market/IndexComponents", get(index_components))
        .route("/v2.0/signalr/negotiate", get(negotiate).post(negotiate))
        .route("/v2.0/signalr/connect", get(connect))
        .route("/v2.0/signalr/start", get(start))
        .route("/v2.0/signalr/abort", post(abort))
        .with_state(shared)
}

type Double = State<Arc<Shared>>;

async fn access_token(State(double): Double, body: String) -> Json<Value> {
    Json(double.access_token(&body))
}

async fn index_components(State(double): Double, headers: HeaderMap, uri: Uri) -> Response {
    let query = uri.query().unwrap_or("").to_string();
    double.state().log.index_component_requests.push(query);
    if !double.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if double.config.index_components_fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "IndexComponents failed (scripted)",
        )
            .into_response();
    }
    let params = query_params(&uri).unwrap_or_default();
    let code = param(&params, "indexCode").unwrap_or("");
    Json(index_components_body(code, &double.config.vn30)).into_response()
}

/// The §4.1 shape: one index row with its members nested in `IndexComponent`.
fn index_components_body(index_code: &str, vn30: &[String]) -> Value {
    if !index_code.eq_ignore_ascii_case("VN30") {
        return json!({ "data": [], "message": "Success", "status": "Success", "totalRecord": 0 });
    }
    let members: Vec<Value> = vn30
        .iter()
        .map(|s| json!({ "Isin": s, "StockSymbol": s }))
        .collect();
    json!({
        "data": [{
            "IndexCode": "VN30",
            "IndexName": "VN30",
            "Exchange": "HOSE",
            "TotalSymbolNo": vn30.len().to_string(),
            "IndexComponent": members,
        }],
        "message": "Success",
        "status": "Success",
        "totalRecord": 1,
    })
}

async fn negotiate(
    State(double): Double,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    double
        .state()
        .log
        .negotiates
        .push(describe(&method, &uri, &headers));
    if !double.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(params) = query_params(&uri).filter(names_hub) else {
        return bad_request("connectionData must name the hub FcMarketDataV2Hub");
    };
    let (token, connection_id) = double.issue_connection_token();
    Json(json!({
        "Url": "/v2.0/signalr",
        "ConnectionToken": token,
        "ConnectionId": connection_id,
        "KeepAliveTimeout": double.config.keepalive_timeout_secs,
        "DisconnectTimeout": 30.0,
        "ConnectionTimeout": 110.0,
        "TryWebSockets": true,
        "ProtocolVersion": protocol_version(param(&params, "clientProtocol")),
        "TransportConnectTimeout": 5.0,
        "LongPollDelay": 0.0,
    }))
    .into_response()
}

/// SignalR's `ProtocolResolver`: the client's version clamped to 1.2-2.0; 1.2 if unreadable.
fn protocol_version(client_protocol: Option<&str>) -> String {
    let asked = client_protocol.and_then(|v| v.trim().parse::<f64>().ok());
    format!("{:.1}", asked.unwrap_or(1.2).clamp(1.2, 2.0))
}

async fn connect(State(double): Double, mut req: HttpRequest) -> Response {
    let (method, uri, headers) = (
        req.method().clone(),
        req.uri().clone(),
        req.headers().clone(),
    );
    double
        .state()
        .log
        .connects
        .push(describe(&method, &uri, &headers));
    if !double.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Err(problem) = check_transport_request(&double, &uri) {
        return bad_request(problem);
    }
    let Some(accept) = websocket_accept(&headers) else {
        return bad_request("expected a WebSocket upgrade");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = double.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = async {
                if let Ok(upgraded) = on_upgrade.await {
                    let io = TokioIo::new(upgraded);
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    Link::open(double, ws).serve().await;
                }
            } => {}
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap()
}

async fn start(State(double): Double, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    double
        .state()
        .log
        .starts
        .push(describe(&method, &uri, &headers));
    if !double.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Err(problem) = check_transport_request(&double, &uri) {
        return bad_request(problem);
    }
    Json(json!({ "Response": "started" })).into_response()
}

async fn abort(State(double): Double, method: Method, uri: Uri, headers: HeaderMap) -> StatusCode {
    double
        .state()
        .log
        .aborts
        .push(describe(&method, &uri, &headers));
    StatusCode::OK
}

/// `connect` and `start` need the WebSocket transport, a connection token from negotiate
/// (percent-decoded: a raw `+` arrives as a space and is refused), and, since SignalR re-reads
/// the hub list on every request, `connectionData` naming the hub.
fn check_transport_request(double: &Shared, uri: &Uri) -> Result<(), &'static str> {
    let params = query_params(uri).ok_or("unreadable query string")?;
    let transport = param(&params, "transport").unwrap_or("");
    if !transport.eq_ignore_ascii_case("webSockets") {
        return Err("transport must be webSockets");
    }
    let token = param(&params, "connectionToken").unwrap_or("");
    if !double.knows_connection_token(token) {
        return Err("unknown connectionToken (was it percent-encoded?)");
    }
    if !names_hub(&params) {
        return Err("connectionData must name the hub FcMarketDataV2Hub");
    }
    Ok(())
}

fn query_params(uri: &Uri) -> Option<HashMap<String, String>> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .map(|q| q.0)
}

/// A query parameter, its name matched case-insensitively as ASP.NET does.
fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether `connectionData` is a JSON array naming the hub (any case, any spacing).
fn names_hub(params: &HashMap<String, String>) -> bool {
    let Some(data) = param(params, "connectionData") else {
        return false;
    };
    let hubs: Vec<Value> = serde_json::from_str(data).unwrap_or_default();
    hubs.iter()
        .any(|h| field(h, "name").is_some_and(|n| n.eq_ignore_ascii_case(HUB)))
}

/// The `Sec-WebSocket-Accept` value for a well-formed upgrade request.
fn websocket_accept(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)? != "13" {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    Some(derive_accept_key(key.as_bytes()))
}

fn describe(method: &Method, uri: &Uri, headers: &HeaderMap) -> Request {
    Request {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

fn bad_request(problem: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, problem).into_response()
}

// ---------------------------------------------------------------------------------------------
// One WebSocket session
// ---------------------------------------------------------------------------------------------

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// How a session loop ended.
enum End {
    /// The client closed or the socket failed.
    Gone,
    /// Scripted: stop writing, stay open.
    Silence,
    /// Scripted: half-close without a Close frame.
    Drop,
}

/// One WebSocket session: writes the init frame, answers invocations, delivers what
/// [`Delivery`] assigns to it and performs its scripted events. Unregisters itself on drop.
struct Link {
    double: Arc<Shared>,
    id: usize,
    ws: Socket,
    changes: watch::Receiver<()>,
    /// The `d-<hex>` prefix of this connection's message ids (the `C` field).
    cursor_prefix: String,
    frames: usize,
    last_write: Instant,
}

impl Link {
    fn open(double: Arc<Shared>, ws: Socket) -> Link {
        let id = double.open_session();
        let changes = double.changes.subscribe();
        Link {
            cursor_prefix: format!("d-{:08X}", 0x8F1A_B453u32.wrapping_add(id as u32)),
            double,
            id,
            ws,
            changes,
            frames: 0,
            last_write: Instant::now(),
        }
    }

    async fn serve(mut self) {
        let end = match self.run().await {
            Ok(end) => end,
            Err(_) => End::Gone,
        };
        match end {
            End::Gone => {}
            End::Silence => self.stay_silent().await,
            End::Drop => self.drop_abruptly().await,
        }
    }

    async fn run(&mut self) -> Result<End, tungstenite::Error> {
        // Written before anything is read: a client may invoke before it sees this frame.
        let init = format!(r#"{{"C":"{}","S":1,"M":[]}}"#, self.message_id());
        self.send(init).await?;
        loop {
            self.changes.borrow_and_update();
            match self.double.duty(self.id) {
                Duty::Send(range) => self.deliver(range).await?,
                Duty::Perform(events) => {
                    if let Some(end) = self.perform(events).await? {
                        return Ok(end);
                    }
                }
                Duty::Wait => {
                    if let Some(end) = self.wait_for_something().await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Waits for a client frame, a delivery change, or the keep-alive time.
    async fn wait_for_something(&mut self) -> Result<Option<End>, tungstenite::Error> {
        let keepalive = self.double.config.keepalive.max(MIN_KEEPALIVE);
        let keepalive_at = tokio::time::Instant::from_std(self.last_write + keepalive);
        tokio::select! {
            frame = self.ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = self.double.on_client_text(self.id, text.as_str()) {
                        self.send(reply).await?;
                    }
                }
                Some(Ok(Message::Close(_))) => self.double.retire(self.id),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(Some(End::Gone)),
            },
            _ = self.changes.changed() => {}
            _ = tokio::time::sleep_until(keepalive_at) => self.send("{}".to_string()).await?,
        }
        Ok(None)
    }

    /// One data frame with the messages in `range`, each double-encoded in `A[0]`.
    async fn deliver(&mut self, range: Range<usize>) -> Result<(), tungstenite::Error> {
        let count = range.len();
        let invocations: Vec<Value> = self.double.config.messages[range.clone()]
            .iter()
            .map(|m| json!({ "H": HUB, "M": "Broadcast", "A": [m] }))
            .collect();
        let frame = json!({ "C": self.message_id(), "M": invocations });
        self.send(frame.to_string()).await?;
        self.double.record_sent(count);
        Ok(())
    }

    /// Performs scripted events; returns how the session ends, if one of them ends it.
    async fn perform(&mut self, events: Vec<Event>) -> Result<Option<End>, tungstenite::Error> {
        for event in events {
            match event {
                Event::Malformed => {
                    for frame in malformed_frames(&self.message_id()) {
                        self.send(frame).await?;
                    }
                }
                Event::HubError(text) => {
                    let call = json!({ "H": HUB, "M": "Error", "A": [text] });
                    let frame = json!({ "C": self.message_id(), "M": [call] });
                    self.send(frame.to_string()).await?;
                }
                Event::Reconnect => {
                    let frame = json!({ "C": self.message_id(), "T": 1, "M": [] });
                    self.send(frame.to_string()).await?;
                }
                Event::Drop => return Ok(Some(End::Drop)),
                Event::Silence => return Ok(Some(End::Silence)),
            }
        }
        Ok(None)
    }

    /// The `C` field, a SignalR message id: `d-<hex>-A,<frames written>|B,0|C,1|D,0` (only
    /// its shape matters to a client).
    fn message_id(&self) -> String {
        format!("{}-A,{}|B,0|C,1|D,0", self.cursor_prefix, self.frames)
    }

    async fn send(&mut self, text: String) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::text(text)).await?;
        self.frames += 1;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Writes nothing more (not even pongs) until the client closes the connection.
    async fn stay_silent(&mut self) {
        self.discard_until_eof().await;
    }

    /// Half-closes the TCP connection (FIN, no Close frame), then waits briefly for the
    /// client's FIN so the socket closes cleanly instead of with a reset.
    async fn drop_abruptly(&mut self) {
        self.double.state().log.connections_closed_by_double += 1;
        let _ = self.ws.get_mut().shutdown().await;
        let _ = tokio::time::timeout(DROP_LINGER, self.discard_until_eof()).await;
    }

    /// Reads raw bytes past the WebSocket layer, which would otherwise answer pings, and drops
    /// them. The WebSocket is not used again afterwards.
    async fn discard_until_eof(&mut self) {
        let io = self.ws.get_mut();
        let mut buf = [0u8; 4096];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.double.close_session(self.id);
    }
}

/// Frames a client must survive: not JSON, JSON that is not an object, and a data frame whose
/// `Broadcast` argument is not JSON.
fn malformed_frames(message_id: &str) -> Vec<String> {
    let broken =
        json!({ "H": HUB, "M": "Broadcast", "A": ["{\"DataType\":\"X-TRADE\",\"Content\":"] });
    vec![
        "this is not JSON".to_string(),
        "[1,2,3]".to_string(),
        json!({ "C": message_id, "M": [broken] }).to_string(),
    ]
}
