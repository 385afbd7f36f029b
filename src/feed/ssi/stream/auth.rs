//! The access token: fetching it, reading its expiry, and renewing it before it runs out.
//!
//! SSI answers refusals with HTTP 200 and a `status` in the body, so the body is what counts.
//! The JWT's `exp` is read (never verified: the token is SSI's to check, we only schedule) to
//! renew it a margin before it expires, so a reconnect always has a valid token at hand; the
//! hub refusing a token makes the client forget it and fetch a fresh one. The secret goes out
//! only in the token request's body and the token only in `Authorization` headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::Value;

use super::rest::{get_ci, network, read_json, show_status, status_ok};
use super::{SsiClient, SsiStreamError};

/// Renew the token this long before it expires (SSI's Python client uses an hour), at most.
const TOKEN_MARGIN: Duration = Duration::from_secs(3600);

/// An access token and when it expires.
#[derive(Clone)]
pub(super) struct Token {
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
}
