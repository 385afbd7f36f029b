//! Classic ASP.NET SignalR 2.x, client side: the "hubs" protocol SSI FastConnect speaks.
//!
//! No kept-up Rust client for classic SignalR exists (the `signalrs`-style crates speak ASP.NET
//! *Core* SignalR, a different protocol with a JSON handshake and `0x1e` record separators), and
//! the part we need is small: three URLs, one JSON reply, one invocation shape and five server
//! frame shapes. This module is that part, as plain functions with no I/O, so it is unit-tested
//! on the exact bytes of `shared/reference/ssi-fastconnect-streaming.md` (§2 and §5). The
//! WebSocket itself is a library's (`tokio-tungstenite`), driven by [`super::stream`].
//!
//! * [`endpoint`] builds `negotiate`, `connect` and `start` URLs with `clientProtocol` and the
//!   percent-encoded `connectionData` (the server re-reads it on every request) and
//!   `connectionToken` (which contains `+`, `/` and `=`).
//! * [`Negotiation`] is the negotiate reply; only `ConnectionToken` is required.
//! * [`invocation`] writes `{"H":hub,"M":method,"A":[arg],"I":"n"}`.
//! * [`parse_frame`] reads a server frame: `{}` keep-alive, the init frame (`"S":1`), data
//!   (`"M":[...]`, possibly several invocations, possibly `"T":1` asking for a reconnect), and
//!   invocation results (`"I"` with an optional `"E"` error). Hub and method names match
//!   case-insensitively, as every SSI client does.

use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// The protocol version SSI's own Python client sends (the server clamps it to 1.2-2.0).
pub const CLIENT_PROTOCOL: &str = "1.5";

/// Why a SignalR exchange failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalRError {
    /// A base URL that cannot carry the SignalR paths.
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The negotiate reply is not what SignalR sends.
    #[error("negotiate reply not understood: {0}")]
    Negotiate(String),
    /// The server does not offer WebSockets.
    #[error("the server does not offer WebSockets (TryWebSockets is false)")]
    NoWebSockets,
    /// A frame that is not JSON or not an object.
    #[error("malformed frame: {0}")]
    Frame(String),
}

/// The verbs appended to the hub URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Negotiate,
    Connect,
    Start,
    Abort,
}

impl Verb {
    fn path(self) -> &'static str {
        match self {
            Verb::Negotiate => "negotiate",
            Verb::Connect => "connect",
            Verb::Start => "start",
            Verb::Abort => "abort",
        }
    }
}

/// `[{"name":"<hub>"}]`, the hub list SignalR expects in `connectionData`.
pub fn connection_data(hub: &str) -> String {
    serde_json::json!([{ "name": hub }]).to_string()
}

/// The URL of `verb` on the hub at `hub_url` (for example
/// `https://fc-datahub.ssi.com.vn/v2.0/signalr`). `connect` gets a `ws`/`wss` scheme.
/// `connection_token` is required for every verb but `negotiate`.
pub fn endpoint(
    hub_url: &str,
    verb: Verb,
    hub: &str,
    connection_token: Option<&str>,
) -> Result<Url, SignalRError> {
    let bad = |reason: &str| SignalRError::Url {
        url: hub_url.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(hub_url).map_err(|e| bad(&e.to_string()))?;
    if url.cannot_be_a_base() {
        return Err(bad("not a base URL"));
    }
    let path = format!("{}/{}", url.path().trim_end_matches('/'), verb.path());
    url.set_path(&path);
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        if verb != Verb::Negotiate {
            q.append_pair("transport", "webSockets");
        }
        q.append_pair("clientProtocol", CLIENT_PROTOCOL);
        if let Some(token) = connection_token {
            q.append_pair("connectionToken", token);
        }
        q.append_pair("connectionData", &connection_data(hub));
    }
    if verb == Verb::Connect {
        let scheme = match url.scheme() {
            "https" | "wss" => "wss",
            "http" | "ws" => "ws",
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        url.set_scheme(scheme)
            .map_err(|()| bad("cannot switch to a WebSocket scheme"))?;
    }
    Ok(url)
}

/// The negotiate reply (field names from SignalR's `PersistentConnection`; SSI's values are
/// read at run time, never assumed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Negotiation {
    pub connection_token: String,
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Seconds without any frame after which the link counts as dead; `null` when the server
    /// sends no keep-alives.
    #[serde(default)]
    pub keep_alive_timeout: Option<f64>,
    #[serde(default)]
    pub try_web_sockets: Option<bool>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub transport_connect_timeout: Option<f64>,
}

impl Negotiation {
    /// Reads the reply body and checks that WebSockets are offered.
    pub fn parse(body: &str) -> Result<Negotiation, SignalRError> {
        let n: Negotiation =
            serde_json::from_str(body).map_err(|e| SignalRError::Negotiate(e.to_string()))?;
        if n.connection_token.is_empty() {
            return Err(SignalRError::Negotiate("empty ConnectionToken".into()));
        }
        if n.try_web_sockets == Some(false) {
            return Err(SignalRError::NoWebSockets);
        }
        Ok(n)
    }
}

/// A client-to-server hub invocation with one string argument; `id` counts calls on the
/// connection (sent as a string, which the server's parser and every client accept).
pub fn invocation(hub: &str, method: &str, arg: &str, id: u64) -> String {
    serde_json::json!({ "H": hub, "M": method, "A": [arg], "I": id.to_string() }).to_string()
}

/// A server-to-client hub call inside a data frame.
#[derive(Debug, Clone, PartialEq)]
pub struct HubCall {
    pub hub: String,
    pub method: String,
    pub args: Vec<Value>,
}

impl HubCall {
    /// True when this is `method` on `hub`, compared case-insensitively.
    pub fn is(&self, hub: &str, method: &str) -> bool {
        self.hub.eq_ignore_ascii_case(hub) && self.method.eq_ignore_ascii_case(method)
    }

    /// The first argument when it is a string (SSI's `Broadcast` and `Error` carry one).
    pub fn text_arg(&self) -> Option<&str> {
        self.args.first().and_then(Value::as_str)
    }
}

/// What a server frame says.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// `{}`: the server is alive.
    KeepAlive,
    /// The first frame after connect (`"S":1`).
    Init,
    /// Hub calls (possibly none); `reconnect` when the server asked the client to reconnect
    /// (`"T":1`).
    Data {
        calls: Vec<HubCall>,
        reconnect: bool,
    },
    /// The result of one of our invocations; `error` when it failed.
    Result {
        id: String,
        error: Option<String>,
        value: Option<Value>,
    },
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "S", default)]
    init: Option<Value>,
    #[serde(rename = "M", default)]
    calls: Option<Vec<RawCall>>,
    #[serde(rename = "T", default)]
    reconnect: Option<Value>,
    #[serde(rename = "I", default)]
    id: Option<Value>,
    #[serde(rename = "E", default)]
    error: Option<Value>,
    #[serde(rename = "R", default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct RawCall {
    #[serde(rename = "H", default)]
    hub: String,
    #[serde(rename = "M", default)]
    method: String,
    #[serde(rename = "A", default)]
    args: Vec<Value>,
}

/// Reads one text frame from the server.
pub fn parse_frame(text: &str) -> Result<ServerFrame, SignalRError> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| {
        let shown: String = text.chars().take(80).collect();
        SignalRError::Frame(format!("{e} in {shown:?}"))
    })?;
    if let Some(id) = raw.id {
        let id = match id {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let error = raw.error.map(|e| match e {
            Value::String(s) => s,
            other => other.to_string(),
        });
        return Ok(ServerFrame::Result {
            id,
            error,
            value: raw.value,
        });
    }
    let reconnect = matches!(raw.reconnect, Some(Value::Number(ref n)) if n.as_u64() == Some(1));
    if raw.init.is_some_and(|s| s == 1) && !reconnect {
        return Ok(ServerFrame::Init);
    }
    match raw.calls {
        Some(calls) => Ok(ServerFrame::Data {
            calls: calls
                .into_iter()
                .map(|c| HubCall {
                    hub: c.hub,
                    method: c.method,
                    args: c.args,
                })
                .collect(),
            reconnect,
        }),
        None if reconnect => Ok(ServerFrame::Data {
            calls: Vec::new(),
            reconnect,
        }),
        None => Ok(ServerFrame::KeepAlive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "FcMarketDataV2Hub";
    const CD: &str = "%5B%7B%22name%22%3A%22FcMarketDataV2Hub%22%7D%5D";

    #[test]
    fn urls_follow_the_transcript() {
        let base = "https://fc-datahub.ssi.com.vn/v2.0/signalr";
        let n = endpoint(base, Verb::Negotiate, HUB, None).unwrap();
        assert_eq!(
            n.as_str(),
            format!("https://fc-datahub.ssi.com.vn/v2.0/signalr/negotiate?clientProtocol=1.5&connectionData={CD}")
        );
        let token = "AQAAANCMnd8B+/x=";
        let c = endpoint(base, Verb::Connect, HUB, Some(token)).unwrap();
        assert_eq!(
            c.as_str(),
            format!("wss://fc-datahub.ssi.com.vn/v2.0/signalr/connect?transport=webSockets&clientProtocol=1.5&connectionToken=AQAAANCMnd8B%2B%2Fx%3D&connectionData={CD}")
        );
        let s = endpoint(&format!("{base}/"), Verb::Start, HUB, Some(token)).unwrap();
        assert!(s
            .as_str()
            .starts_with("https://fc-datahub.ssi.com.vn/v2.0/signalr/start?transport=webSockets&"));
        let local = endpoint(
            "http://127.0.0.1:9/v2.0/signalr",
            Verb::Connect,
            HUB,
            Some("t"),
        )
        .unwrap();
        assert_eq!(local.scheme(), "ws");
        assert!(endpoint("not a url", Verb::Start, HUB, None).is_err());
        assert!(endpoint("ftp://x/y", Verb::Connect, HUB, Some("t")).is_err());
    }

    #[test]
    fn negotiate_reply_is_read_and_checked() {
        let body = r#"{"Url":"/v2.0/signalr","ConnectionToken":"a+b/c=","ConnectionId":"6c1a","KeepAliveTimeout":20.0,"DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,"ProtocolVersion":"1.5","TransportConnectTimeout":5.0,"LongPollDelay":0.0}"#;
        let n = Negotiation::parse(body).unwrap();
        assert_eq!(n.connection_token, "a+b/c=");
        assert_eq!(n.keep_alive_timeout, Some(20.0));
        let no_keepalive = body.replace("20.0", "null");
        assert_eq!(
            Negotiation::parse(&no_keepalive)
                .unwrap()
                .keep_alive_timeout,
            None
        );
        assert_eq!(
            Negotiation::parse(&body.replace("true", "false")),
            Err(SignalRError::NoWebSockets)
        );
        assert!(Negotiation::parse("<html>").is_err());
        assert!(Negotiation::parse(r#"{"ConnectionToken":""}"#).is_err());
    }

    #[test]
    fn invocation_matches_the_recommended_shape() {
        assert_eq!(
            invocation(HUB, "SwitchChannels", "X-TRADE:ACB-BID-FPT", 0),
            r#"{"H":"FcMarketDataV2Hub","M":"SwitchChannels","A":["X-TRADE:ACB-BID-FPT"],"I":"0"}"#
        );
    }

    #[test]
    fn server_frames() {
        assert_eq!(parse_frame("{}").unwrap(), ServerFrame::KeepAlive);
        assert_eq!(
            parse_frame(r#"{"C":"d-8F1AB453-B,0|C,0|D,1|E,0","S":1,"M":[]}"#).unwrap(),
            ServerFrame::Init
        );
        let data = r#"{"C":"d-1-A,0|B,1|C,1|D,0","M":[{"H":"fcmarketdatav2hub","M":"broadcast","A":["{\"DataType\":\"X-TRADE\",\"Content\":\"{\\\"RType\\\":\\\"X-TRADE\\\"}\"}"]},{"H":"FcMarketDataV2Hub","M":"Error","A":["quota exceeded"]}]}"#;
        let ServerFrame::Data { calls, reconnect } = parse_frame(data).unwrap() else {
            panic!("data frame");
        };
        assert!(!reconnect);
        assert_eq!(calls.len(), 2);
        assert!(calls[0].is(HUB, "Broadcast"));
        // Decoded once here; the SSI parser decodes `Content` (the second time).
        assert_eq!(
            calls[0].text_arg(),
            Some(r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\"}"}"#)
        );
        assert!(calls[1].is(HUB, "error"));
        assert_eq!(calls[1].text_arg(), Some("quota exceeded"));
        assert_eq!(
            parse_frame(r#"{"C":"x","T":1,"M":[]}"#).unwrap(),
            ServerFrame::Data {
                calls: vec![],
                reconnect: true
            }
        );
        assert_eq!(
            parse_frame(r#"{"I":"0"}"#).unwrap(),
            ServerFrame::Result {
                id: "0".into(),
                error: None,
                value: None
            }
        );
        assert_eq!(
            parse_frame(r#"{"I":3,"E":"no such channel"}"#).unwrap(),
            ServerFrame::Result {
                id: "3".into(),
                error: Some("no such channel".into()),
                value: None
            }
        );
        assert!(parse_frame("not json").is_err());
        assert!(parse_frame("[1,2]").is_err());
        assert!(parse_frame(r#"{"M":5}"#).is_err());
    }
}
