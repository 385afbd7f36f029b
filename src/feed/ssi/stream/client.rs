//! The handle that talks to SSI ([`SsiClient`]): its HTTP client, its settings and its cached
//! access token, and nothing else.
//!
//! What the client does lives with each step (`auth` fetches and renews the token, `rest`
//! makes the REST call, `session` opens the stream), each adding its methods to this one
//! type. The struct is kept here, apart from them, so that they all import it and it imports
//! none of them: the token it caches is a plain value from `token`.

use super::http::{join_url, REQUEST_TIMEOUT};
use super::token::Token;
use super::{SsiSettings, SsiStreamError};

/// Talks to SSI: tokens, REST, stream sessions. Cheap to share behind an `Arc`.
pub struct SsiClient {
    pub(super) http: reqwest::Client,
    pub(super) settings: SsiSettings,
    pub(super) token: tokio::sync::Mutex<Option<Token>>,
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

    pub(super) fn rest_url(&self, path: &str) -> String {
        join_url(&self.settings.base_url, path)
    }
}

fn install_crypto_provider() {
    // reqwest and tungstenite both build their TLS config from the process-wide provider; an
    // `Err` means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
