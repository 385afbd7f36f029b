//! Why talking to SSI failed, and what the user should do about it.
//!
//! One error type for every step (REST, token, negotiate, connect, read) so that the feed's
//! log line, the `/health` note and `ssi-check`'s verdict all say the same thing: each
//! variant's text names the step, and [`SsiStreamError::advice`] gives the one line of advice.

use std::time::Duration;

use crate::feed::ssi::signalr;

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
