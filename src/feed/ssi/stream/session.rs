//! One SignalR connection to SSI's hub: opening it (negotiate, connect, init, start,
//! `SwitchChannels`) and reading what it delivers as [`SessionEvent`]s.
//!
//! A session knows nothing of reconnects or of the market: it ends with an error, and the
//! supervisor decides what follows. Keep-alives are consumed here and a frame that cannot be
//! read becomes an event rather than an error, so only a real end of the connection (drop,
//! idle, the server's `"T":1`) ends a session. A frame's hub calls keep their order: trade
//! classification relies on trades and quotes arriving as SSI sent them.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::client::SsiClient;
use super::http::{join_url, network, read_text, redact_query, REQUEST_TIMEOUT};
use super::SsiStreamError;
use crate::feed::ssi::signalr::{self, Negotiation, ServerFrame, Verb};

/// The hub SSI's data stream lives on.
pub const HUB: &str = "FcMarketDataV2Hub";
/// The hub's path under `SSI_STREAM_URL`.
pub const HUB_PATH: &str = "v2.0/signalr";
/// Idle timeout when the server does not say (reference §2.9).
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// How long to wait for the init frame when negotiate does not say.
const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(5);

impl SsiClient {
    /// The hub URL, `<SSI_STREAM_URL>v2.0/signalr`.
    pub fn hub_url(&self) -> String {
        join_url(&self.settings.stream_url, HUB_PATH)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
