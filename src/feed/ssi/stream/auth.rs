//! Fetching the access token and renewing it before it runs out.
//!
//! SSI answers refusals with HTTP 200 and a `status` in the body, so the body is what counts.
//! The token's `exp` (see `token`) schedules its renewal a margin before it expires, so a
//! reconnect always has a valid token at hand; the hub refusing a token makes the client forget
//! it and fetch a fresh one. The secret goes out only in the token request's body and the token
//! only in `Authorization` headers.

use std::time::Duration;

use serde_json::Value;

use super::client::SsiClient;
use super::http::{get_ci, network, read_json, show_status, status_ok};
use super::token::{epoch_secs, Token};
use super::SsiStreamError;

impl SsiClient {
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
    pub(super) async fn renew_in(&self) -> Option<Duration> {
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
}
