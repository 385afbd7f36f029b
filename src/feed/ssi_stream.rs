//! The live SSI FastConnect feed (`FEED=ssi`): access token, VN30 constituents, the SignalR
//! session, and reconnects. Everything here follows `shared/reference/ssi-fastconnect-streaming.md`.
//!
//! **Token.** `POST <SSI_BASE_URL>api/v2/Market/AccessToken` with the consumer id and secret.
//! SSI answers refusals with HTTP 200 and a `status` in the body, so the body is what counts. The
//! JWT's `exp` says when it expires; the token is renewed in the background a margin before that
//! (an hour for SSI's 8 h tokens, a quarter of the lifetime for short ones), so a reconnect always
//! has a valid token at hand, and fetched again at once when the hub refuses it.
//!
//! **Session.** Negotiate, connect the WebSocket (the bearer on both), wait for the init frame,
//! call `start` (failure tolerated: SSI's Python client never calls it), then `SwitchChannels`.
//! How several channels are subscribed is an open question about SSI's server (reference §2.8),
//! so it is a setting ([`SubscribeMode`]): one call per channel on one connection (the default:
//! it keeps trades and quotes in arrival order, which trade classification relies on, and two
//! production clients use it), one comma-joined call, or one connection per channel. The
//! server's answer to each call is logged.
//!
//! **Reading.** Each `Broadcast` argument is SSI's envelope as a JSON string; it is decoded once
//! by the SignalR layer and once more (its `Content`) by the SSI parser. `Error` calls are logged
//! with their text and counted. A frame that cannot be read is counted and skipped. No frame at
//! all for the idle timeout (the negotiated `KeepAliveTimeout`, else 60 s) ends the session.
//!
//! **Reconnects.** Any end of a session (drop, idle, `"T":1`, refusal) is followed by a full
//! restart with exponential backoff and jitter; the channels stay the same. The link's state
//! goes to [`FeedStats`], which the server turns into status messages for clients. After a
//! reconnect the foreign tracker re-seeds its baselines (unless turned off), so the flows missed
//! during the gap do not count as one burst.
//!
//! Secrets never reach a log line: the consumer secret is a [`Secret`], and the bearer token is
//! only ever put in an `Authorization` header.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::base::shutdown::Shutdown;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::recorder::Recorder;
use super::signalr::{self, Negotiation, ServerFrame, Verb};
use super::{ingest, FeedState, FeedStats};
use crate::base::time::Clock;
use crate::base::{Backoff, Secret};
use crate::market::SharedMarket;

/// The hub SSI's data stream lives on.
pub const HUB: &str = "FcMarketDataV2Hub";
/// The hub's path under `SSI_STREAM_URL`.
pub const HUB_PATH: &str = "v2.0/signalr";
/// Renew the token this long before it expires (SSI's Python client uses an hour), at most.
const TOKEN_MARGIN: Duration = Duration::from_secs(3600);
/// Idle timeout when the server does not say (reference §2.9).
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// How long to wait for the init frame when negotiate does not say.
const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Time allowed for one REST call or handshake.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A session that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How the channels are subscribed (reference §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubscribeMode {
    /// One connection, one `SwitchChannels` call per channel, in order.
    Calls,
    /// One connection, one call with every channel joined by commas.
    Combined,
    /// One connection per channel, one call each (arrival order across channels is lost).
    Connections,
}

/// Everything the SSI feed needs to know.
#[derive(Debug, Clone)]
pub struct SsiSettings {
    pub consumer_id: String,
    pub consumer_secret: Secret,
    /// REST and token base, e.g. `https://fc-data.ssi.com.vn/`.
    pub base_url: String,
    /// Stream base; the hub is at `<stream_url>v2.0/signalr`.
    pub stream_url: String,
    pub subscribe_mode: SubscribeMode,
    /// No frame for this long ends a session; `None`: the negotiated value, else 60 s.
    pub idle_timeout: Option<Duration>,
    /// Backoff bounds between reconnect attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Re-seed the foreign tracker's baselines after a reconnect.
    pub reseed_foreign: bool,
}

/// Why talking to SSI failed. Each variant knows what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum SsiStreamError {
    #[error("{what}: cannot reach {url}: {detail}")]
    Network {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error("{what}: HTTP {status} from {url}: {body}")]
    Http {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{what}: SSI refused the credentials (status {status}: {message})")]
    CredentialsRefused {
        what: &'static str,
        status: String,
        message: String,
    },
    #[error("{what}: the access token was refused (HTTP {status})")]
    TokenRefused { what: &'static str, status: u16 },
    #[error("{what}: unexpected reply: {detail}")]
    BadReply { what: &'static str, detail: String },
    #[error("SignalR: {0}")]
    SignalR(#[from] signalr::SignalRError),
    #[error("stream: {0}")]
    WebSocket(String),
    #[error("stream: no frame for {0:?} (not even a keep-alive)")]
    Idle(Duration),
    #[error("stream: the server closed the connection")]
    Closed,
    #[error("stream: the server asked the client to reconnect")]
    ReconnectRequested,
    #[error("stream: no init frame within {0:?} of connecting")]
    NoInit(Duration),
}

impl SsiStreamError {
    /// True when a fresh token may help.
    pub fn is_token_problem(&self) -> bool {
        matches!(self, SsiStreamError::TokenRefused { .. })
    }

    /// One line that tells the user what to do.
    pub fn advice(&self) -> &'static str {
        match self {
            SsiStreamError::Network { .. } => {
                "check the network, SSI_BASE_URL / SSI_STREAM_URL, and that this machine's IP is registered for FastConnect in iBoard"
            }
            SsiStreamError::Http { .. } | SsiStreamError::BadReply { .. } => {
                "check SSI_BASE_URL / SSI_STREAM_URL (expected https://fc-data.ssi.com.vn/ and https://fc-datahub.ssi.com.vn/)"
            }
            SsiStreamError::CredentialsRefused { .. } => {
                "check SSI_CONSUMER_ID and SSI_CONSUMER_SECRET against iBoard (Support > API service management); FastConnect Data needs the Data key pair, not the Trading one"
            }
            SsiStreamError::TokenRefused { .. } => {
                "the hub refused a fresh token: check that the key pair is enabled for FastConnect Data streaming"
            }
            SsiStreamError::SignalR(_) | SsiStreamError::NoInit(_) => {
                "check SSI_STREAM_URL: it must point at the FastConnect data hub (https://fc-datahub.ssi.com.vn/)"
            }
            SsiStreamError::WebSocket(_)
            | SsiStreamError::Idle(_)
            | SsiStreamError::Closed
            | SsiStreamError::ReconnectRequested => {
                "the stream dropped; marketcast reconnects by itself. If it keeps happening, check the network and SSI's quota for this key"
            }
        }
    }
}

/// An access token and when it expires.
#[derive(Clone)]
struct Token {
    jwt: String,
    /// Epoch seconds from the JWT's `exp`, when it has one.
    expires: Option<u64>,
    /// Epoch seconds when it was obtained.
    obtained: u64,
}

impl Token {
    fn new(jwt: String) -> Token {
        Token {
            expires: jwt_expiry(&jwt),
            jwt,
            obtained: epoch_secs(),
        }
    }

    /// When to renew: a margin before `exp` (an hour, or a quarter of the lifetime when that
    /// is shorter). Tokens without `exp` are renewed after 7 hours.
    fn renew_at(&self) -> u64 {
        match self.expires {
            Some(exp) => {
                let life = exp.saturating_sub(self.obtained);
                exp.saturating_sub(TOKEN_MARGIN.as_secs().min(life / 4))
            }
            None => self.obtained + 7 * 3600,
        }
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `exp` claim of a JWT (not verified: the token is SSI's to check, we only schedule).
pub fn jwt_expiry(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(payload))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f as u64))
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

/// A status that is a number (200) or a string ("Success").
fn status_ok(status: Option<&Value>) -> bool {
    match status {
        Some(Value::Number(n)) => n.as_u64() == Some(200),
        Some(Value::String(s)) => s.eq_ignore_ascii_case("success") || s == "200",
        _ => false,
    }
}

fn show_status(status: Option<&Value>) -> String {
    match status {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "none".into(),
    }
}

/// A key read case-insensitively from a JSON object.
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The VN30 symbols in an `IndexComponents` reply, in any of the shapes SSI has used
/// (`data[0].IndexComponent[*].StockSymbol`, the 2020 `dataList`/`indexcomponentList`, or flat).
pub fn parse_index_components(body: &Value) -> Vec<String> {
    let rows = get_ci(body, "data")
        .or_else(|| get_ci(body, "dataList"))
        .and_then(Value::as_array);
    let mut out = Vec::new();
    for row in rows.into_iter().flatten() {
        let members = get_ci(row, "IndexComponent")
            .or_else(|| get_ci(row, "indexcomponentList"))
            .and_then(Value::as_array);
        match members {
            Some(members) => out.extend(
                members
                    .iter()
                    .filter_map(|m| get_ci(m, "StockSymbol").and_then(Value::as_str)),
            ),
            None => out.extend(get_ci(row, "StockSymbol").and_then(Value::as_str)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.into_iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect()
}

/// The channels the processor needs: trades of the VN30 and the futures contracts, quotes and
/// foreign room of the VN30, and the VN30 and VNINDEX indices.
pub fn default_channels(vn30: &[String], futures: &[String]) -> Vec<String> {
    let stocks = vn30.join("-");
    let mut traded: Vec<&str> = vn30.iter().map(String::as_str).collect();
    traded.extend(futures.iter().map(String::as_str));
    vec![
        format!("X-TRADE:{}", traded.join("-")),
        format!("X-QUOTE:{stocks}"),
        format!("R:{stocks}"),
        "MI:VN30-VNINDEX".to_string(),
    ]
}

/// How channels are grouped into connections, and calls on each.
pub fn plan_connections(channels: &[String], mode: SubscribeMode) -> Vec<Vec<String>> {
    match mode {
        SubscribeMode::Calls => vec![channels.to_vec()],
        SubscribeMode::Combined => vec![vec![channels.join(",")]],
        SubscribeMode::Connections => channels.iter().map(|c| vec![c.clone()]).collect(),
    }
}

/// Talks to SSI: tokens, REST, stream sessions. Cheap to share behind an `Arc`.
pub struct SsiClient {
    http: reqwest::Client,
    settings: SsiSettings,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl SsiClient {
    /// A client for `settings` (no request is made yet).
    pub fn new(settings: SsiSettings) -> Result<SsiClient, SsiStreamError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("marketcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SsiStreamError::Network {
                what: "HTTP client",
                url: settings.base_url.clone(),
                detail: e.to_string(),
            })?;
        Ok(SsiClient {
            http,
            settings,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &SsiSettings {
        &self.settings
    }

    fn rest_url(&self, path: &str) -> String {
        join_url(&self.settings.base_url, path)
    }

    /// The hub URL, `<SSI_STREAM_URL>v2.0/signalr`.
    pub fn hub_url(&self) -> String {
        join_url(&self.settings.stream_url, HUB_PATH)
    }

    /// A valid access token: the cached one unless it is due for renewal.
    pub async fn token(&self) -> Result<String, SsiStreamError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if epoch_secs() < t.renew_at() {
                return Ok(t.jwt.clone());
            }
        }
        let fresh = self.fetch_token().await?;
        let jwt = fresh.jwt.clone();
        *cached = Some(fresh);
        Ok(jwt)
    }

    /// Forgets the cached token (the hub refused it).
    pub async fn forget_token(&self) {
        self.token.lock().await.take();
    }

    /// Seconds until the cached token is due for renewal (`None` without a token).
    async fn renew_in(&self) -> Option<Duration> {
        let cached = self.token.lock().await;
        cached
            .as_ref()
            .map(|t| Duration::from_secs(t.renew_at().saturating_sub(epoch_secs())))
    }

    async fn fetch_token(&self) -> Result<Token, SsiStreamError> {
        const WHAT: &str = "access token";
        let url = self.rest_url("api/v2/Market/AccessToken");
        let body = serde_json::json!({
            "consumerID": self.settings.consumer_id,
            "consumerSecret": self.settings.consumer_secret.expose(),
        });
        let reply = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| network(WHAT, &url, &e))?;
        let v = read_json(WHAT, &url, reply).await?;
        if !status_ok(get_ci(&v, "status")) {
            return Err(SsiStreamError::CredentialsRefused {
                what: WHAT,
                status: show_status(get_ci(&v, "status")),
                message: get_ci(&v, "message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        let jwt = get_ci(&v, "data")
            .and_then(|d| get_ci(d, "accessToken"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(SsiStreamError::BadReply {
                what: WHAT,
                detail: "no data.accessToken in the reply".into(),
            })?;
        let token = Token::new(jwt.to_string());
        tracing::info!(
            expires_in_s = token.expires.map(|e| e.saturating_sub(epoch_secs())),
            "SSI access token obtained"
        );
        Ok(token)
    }

    /// The VN30 constituents from `IndexComponents`.
    pub async fn vn30_components(&self) -> Result<Vec<String>, SsiStreamError> {
        const WHAT: &str = "VN30 constituents";
        let token = self.token().await?;
        let url = self.rest_url("api/v2/Market/IndexComponents");
        let reply = self
            .http
            .get(&url)
            .query(&[
                ("indexCode", "VN30"),
                ("pageIndex", "1"),
                ("pageSize", "100"),
            ])
            .bearer_auth(&token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| network(WHAT, &url, &e))?;
        if matches!(reply.status().as_u16(), 401 | 403) {
            self.forget_token().await;
            return Err(SsiStreamError::TokenRefused {
                what: WHAT,
                status: reply.status().as_u16(),
            });
        }
        let v = read_json(WHAT, &url, reply).await?;
        let symbols = parse_index_components(&v);
        if symbols.is_empty() {
            return Err(SsiStreamError::BadReply {
                what: WHAT,
                detail: format!(
                    "no symbols in the reply (status {}, message {:?})",
                    show_status(get_ci(&v, "status")),
                    get_ci(&v, "message").and_then(Value::as_str).unwrap_or("")
                ),
            });
        }
        Ok(symbols)
    }

    /// Opens a stream session and subscribes `calls` (one `SwitchChannels` each).
    pub async fn open_session(&self, calls: &[String]) -> Result<Session, SsiStreamError> {
        let token = self.token().await?;
        let hub_url = self.hub_url();

        // Negotiate.
        let url = signalr::endpoint(&hub_url, Verb::Negotiate, HUB, None)?;
        let reply = self
            .http
            .get(url.as_str())
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| network("negotiate", url.as_str(), &e))?;
        let status = reply.status().as_u16();
        if matches!(status, 401 | 403) || reply.status().is_redirection() {
            self.forget_token().await;
            return Err(SsiStreamError::TokenRefused {
                what: "negotiate",
                status,
            });
        }
        let body = read_text("negotiate", url.as_str(), reply).await?;
        let negotiation = Negotiation::parse(&body)?;

        // Connect.
        let url = signalr::endpoint(
            &hub_url,
            Verb::Connect,
            HUB,
            Some(&negotiation.connection_token),
        )?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| SsiStreamError::WebSocket(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            SsiStreamError::BadReply {
                what: "access token",
                detail: "the token is not a valid header value".into(),
            }
        })?;
        request.headers_mut().insert("Authorization", bearer);
        let connected =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| SsiStreamError::Network {
                    what: "connect",
                    url: redact_query(url.as_str()),
                    detail: "timed out".into(),
                })?;
        let mut ws = match connected {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(resp)) if matches!(resp.status().as_u16(), 401 | 403) => {
                self.forget_token().await;
                return Err(SsiStreamError::TokenRefused {
                    what: "connect",
                    status: resp.status().as_u16(),
                });
            }
            Err(tungstenite::Error::Http(resp)) => {
                return Err(SsiStreamError::Http {
                    what: "connect",
                    url: redact_query(url.as_str()),
                    status: resp.status().as_u16(),
                    body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                        .chars()
                        .take(200)
                        .collect(),
                })
            }
            Err(e) => {
                return Err(SsiStreamError::Network {
                    what: "connect",
                    url: redact_query(url.as_str()),
                    detail: e.to_string(),
                })
            }
        };

        // The init frame; anything else that comes first is kept for the reader.
        let wait = negotiation
            .transport_connect_timeout
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_CONNECT_WAIT, |s| {
                Duration::from_secs_f64(s.min(60.0))
            });
        let mut early = VecDeque::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err(SsiStreamError::NoInit(wait)),
                Ok(None) => return Err(SsiStreamError::Closed),
                Ok(Some(Err(e))) => return Err(SsiStreamError::WebSocket(e.to_string())),
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    if matches!(signalr::parse_frame(&t), Ok(ServerFrame::Init)) {
                        break;
                    }
                    early.push_back(t.to_string());
                }
                Ok(Some(Ok(WsMessage::Close(_)))) => return Err(SsiStreamError::Closed),
                Ok(Some(Ok(_))) => {}
            }
        }

        // Start: Node and .NET call it, Python does not; a failure is only logged.
        let url = signalr::endpoint(
            &hub_url,
            Verb::Start,
            HUB,
            Some(&negotiation.connection_token),
        )?;
        match self.http.get(url.as_str()).bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "SignalR start refused; carrying on (SSI's Python client never calls it)"
            ),
            // The start URL carries the connection token: leave it out of the log.
            Err(e) => tracing::warn!("SignalR start failed: {}; carrying on", e.without_url()),
        }

        // Subscribe.
        let mut pending = Vec::new();
        for (id, channel) in calls.iter().enumerate() {
            let text = signalr::invocation(HUB, "SwitchChannels", channel, id as u64);
            ws.send(WsMessage::text(text))
                .await
                .map_err(|e| SsiStreamError::WebSocket(e.to_string()))?;
            tracing::info!(channel = %channel, id, "SSI SwitchChannels sent");
            pending.push((id.to_string(), channel.clone()));
        }
        let idle = self.settings.idle_timeout.unwrap_or_else(|| {
            negotiation
                .keep_alive_timeout
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(DEFAULT_IDLE, |s| Duration::from_secs_f64(s.min(3600.0)))
        });
        Ok(Session {
            ws,
            idle,
            early,
            ready: VecDeque::new(),
            reconnect_requested: false,
            pending,
        })
    }
}

fn install_crypto_provider() {
    // reqwest and tungstenite both build their TLS config from the process-wide provider; an
    // `Err` means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A URL without its query (which holds the connection token).
fn redact_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn network(what: &'static str, url: &str, e: &reqwest::Error) -> SsiStreamError {
    // reqwest's messages include the URL already; keep the cause chain for the user.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    SsiStreamError::Network {
        what,
        url: redact_query(url),
        detail,
    }
}

async fn read_text(
    what: &'static str,
    url: &str,
    reply: reqwest::Response,
) -> Result<String, SsiStreamError> {
    let status = reply.status();
    let body = reply.text().await.map_err(|e| network(what, url, &e))?;
    if !status.is_success() {
        return Err(SsiStreamError::Http {
            what,
            url: redact_query(url),
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        });
    }
    Ok(body)
}

async fn read_json(
    what: &'static str,
    url: &str,
    reply: reqwest::Response,
) -> Result<Value, SsiStreamError> {
    let body = read_text(what, url, reply).await?;
    serde_json::from_str(&body).map_err(|e| SsiStreamError::BadReply {
        what,
        detail: format!(
            "not JSON ({e}): {}",
            body.chars().take(120).collect::<String>()
        ),
    })
}

/// What a session delivers.
#[derive(Debug, PartialEq)]
pub enum SessionEvent {
    /// Broadcast payloads (SSI envelopes), in order, from one frame.
    Messages(Vec<String>),
    /// The hub called `Error`.
    HubError(String),
    /// The answer to one of our `SwitchChannels` calls.
    Answer {
        channel: String,
        error: Option<String>,
    },
    /// A frame that could not be read (skipped).
    Malformed(String),
}

/// A data frame's hub calls as events, in order: runs of `Broadcast` become one batch of
/// messages; an `Error` call or an unreadable `Broadcast` ends a run (nothing around it is lost).
fn events_of(calls: Vec<signalr::HubCall>) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    let mut messages = Vec::new();
    let flush = |events: &mut Vec<SessionEvent>, messages: &mut Vec<String>| {
        if !messages.is_empty() {
            events.push(SessionEvent::Messages(std::mem::take(messages)));
        }
    };
    for call in calls {
        if call.is(HUB, "Broadcast") {
            match call.args.into_iter().next() {
                Some(Value::String(s)) => messages.push(s),
                // `Content`-as-object shapes: hand the JSON to the parser as text.
                Some(other) if other.is_object() => messages.push(other.to_string()),
                _ => {
                    flush(&mut events, &mut messages);
                    events.push(SessionEvent::Malformed(
                        "Broadcast without a message argument".into(),
                    ));
                }
            }
        } else if call.is(HUB, "Error") {
            flush(&mut events, &mut messages);
            let text = call
                .text_arg()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{:?}", call.args));
            events.push(SessionEvent::HubError(text));
        }
    }
    flush(&mut events, &mut messages);
    events
}

/// One open SignalR connection.
pub struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    idle: Duration,
    /// Frames that arrived before the init frame, read first.
    early: VecDeque<String>,
    /// Events of a frame already read, in frame order, not yet handed out.
    ready: VecDeque<SessionEvent>,
    /// The server sent `"T":1`: the session ends once `ready` is handed out.
    reconnect_requested: bool,
    pending: Vec<(String, String)>,
}

impl Session {
    /// The idle timeout in force.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// The next thing worth reporting; keep-alives are consumed here. An `Err` ends the session.
    pub async fn next_event(&mut self) -> Result<SessionEvent, SsiStreamError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if self.reconnect_requested {
                return Err(SsiStreamError::ReconnectRequested);
            }
            let text = match self.early.pop_front() {
                Some(text) => text,
                None => match tokio::time::timeout(self.idle, self.ws.next()).await {
                    Err(_) => return Err(SsiStreamError::Idle(self.idle)),
                    Ok(None) => return Err(SsiStreamError::Closed),
                    Ok(Some(Err(e))) => return Err(SsiStreamError::WebSocket(e.to_string())),
                    Ok(Some(Ok(WsMessage::Text(t)))) => t.to_string(),
                    Ok(Some(Ok(WsMessage::Close(_)))) => return Err(SsiStreamError::Closed),
                    // Pings are answered by tungstenite; binary frames are not SignalR's.
                    Ok(Some(Ok(_))) => continue,
                },
            };
            match signalr::parse_frame(&text) {
                Ok(ServerFrame::KeepAlive) | Ok(ServerFrame::Init) => {}
                Ok(ServerFrame::Result { id, error, .. }) => {
                    let channel = self
                        .pending
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map_or_else(|| format!("call {id}"), |(_, c)| c.clone());
                    self.ready
                        .push_back(SessionEvent::Answer { channel, error });
                }
                Ok(ServerFrame::Data { calls, reconnect }) => {
                    self.ready.extend(events_of(calls));
                    // What came with a reconnect request is handed out first, then it ends.
                    self.reconnect_requested |= reconnect;
                }
                Err(e) => self.ready.push_back(SessionEvent::Malformed(e.to_string())),
            }
        }
    }

    /// Closes the WebSocket politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with(payload: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b.encode(r#"{"alg":"RS256"}"#),
            b.encode(payload)
        )
    }

    #[test]
    fn token_expiry_comes_from_the_jwt() {
        assert_eq!(
            jwt_expiry(&jwt_with(r#"{"exp":1764000000}"#)),
            Some(1764000000)
        );
        assert_eq!(
            jwt_expiry(&jwt_with(r#"{"exp":"1764000000"}"#)),
            Some(1764000000)
        );
        assert_eq!(jwt_expiry(&jwt_with(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        // Padded standard base64 works too.
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::STANDARD.encode(r#"{"exp":12}"#)
        );
        assert_eq!(jwt_expiry(&padded), Some(12));
    }

    #[test]
    fn renewal_leaves_an_hour_or_a_quarter_of_the_lifetime() {
        let t = Token {
            jwt: String::new(),
            expires: Some(1000 + 8 * 3600),
            obtained: 1000,
        };
        assert_eq!(t.renew_at(), 1000 + 7 * 3600);
        let short = Token {
            jwt: String::new(),
            expires: Some(1040),
            obtained: 1000,
        };
        assert_eq!(short.renew_at(), 1030);
    }

    #[test]
    fn index_components_in_every_known_shape() {
        let current: Value = serde_json::from_str(r#"{"data":[{"IndexCode":"VN30","IndexComponent":[{"Isin":"ACB","StockSymbol":"ACB"},{"Isin":"BCM","StockSymbol":"bcm"}]}],"message":"Success","status":"Success","totalRecord":1}"#).unwrap();
        assert_eq!(parse_index_components(&current), ["ACB", "BCM"]);
        let old: Value = serde_json::from_str(r#"{"dataList":[{"indexcode":"VN30","indexcomponentList":[{"isin":"FPT","stocksymbol":"FPT"}]}]}"#).unwrap();
        assert_eq!(parse_index_components(&old), ["FPT"]);
        let flat: Value =
            serde_json::from_str(r#"{"data":[{"StockSymbol":"VNM"},{"StockSymbol":"VNM"}]}"#)
                .unwrap();
        assert_eq!(parse_index_components(&flat), ["VNM"]);
        assert!(parse_index_components(&serde_json::json!({"data": null})).is_empty());
    }

    #[test]
    fn channels_and_plans() {
        let vn30 = vec!["ACB".to_string(), "FPT".to_string()];
        let ch = default_channels(&vn30, &["VN30F2612".to_string()]);
        assert_eq!(
            ch,
            [
                "X-TRADE:ACB-FPT-VN30F2612",
                "X-QUOTE:ACB-FPT",
                "R:ACB-FPT",
                "MI:VN30-VNINDEX"
            ]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Calls),
            vec![ch.clone()]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Combined),
            vec![vec![ch.join(",")]]
        );
        assert_eq!(plan_connections(&ch, SubscribeMode::Connections).len(), 4);
    }

    #[test]
    fn a_frame_s_calls_keep_their_order_and_nothing_is_lost() {
        let call = |method: &str, arg: Value| signalr::HubCall {
            hub: "fcmarketdatav2hub".into(),
            method: method.into(),
            args: vec![arg],
        };
        let events = events_of(vec![
            call("Broadcast", Value::from("a")),
            call("Broadcast", Value::from("b")),
            call("Error", Value::from("quota")),
            call("Broadcast", Value::from(5)),
            call("Broadcast", serde_json::json!({"DataType": "R"})),
            call("Reconnected", Value::Null),
        ]);
        assert_eq!(
            events,
            vec![
                SessionEvent::Messages(vec!["a".into(), "b".into()]),
                SessionEvent::HubError("quota".into()),
                SessionEvent::Malformed("Broadcast without a message argument".into()),
                SessionEvent::Messages(vec![r#"{"DataType":"R"}"#.into()]),
            ]
        );
    }

    #[test]
    fn status_may_be_a_number_or_a_string() {
        assert!(status_ok(Some(&serde_json::json!(200))));
        assert!(status_ok(Some(&serde_json::json!("Success"))));
        assert!(!status_ok(Some(&serde_json::json!(401))));
        assert!(!status_ok(None));
    }
}
