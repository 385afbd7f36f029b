//! The access token as a value: the JWT, when it expires (its `exp`, read but never verified:
//! the token is SSI's to check, we only schedule) and when it is due for renewal.
//!
//! It is kept apart from fetching (`auth`) so that the client can hold a cached token without
//! importing the code that fetches it; it makes no request and imports nothing of the stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::Value;

/// Renew the token this long before it expires (SSI's Python client uses an hour), at most.
const TOKEN_MARGIN: Duration = Duration::from_secs(3600);

/// An access token and when it expires.
#[derive(Clone)]
pub(super) struct Token {
    pub(super) jwt: String,
    /// Epoch seconds from the JWT's `exp`, when it has one.
    pub(super) expires: Option<u64>,
    /// Epoch seconds when it was obtained.
    obtained: u64,
}

impl Token {
    pub(super) fn new(jwt: String) -> Token {
        Token {
            expires: jwt_expiry(&jwt),
            jwt,
            obtained: epoch_secs(),
        }
    }

    /// When to renew: a margin before `exp` (an hour, or a quarter of the lifetime when that
    /// is shorter). Tokens without `exp` are renewed after 7 hours.
    pub(super) fn renew_at(&self) -> u64 {
        match self.expires {
            Some(exp) => {
                let life = exp.saturating_sub(self.obtained);
                exp.saturating_sub(TOKEN_MARGIN.as_secs().min(life / 4))
            }
            None => self.obtained + 7 * 3600,
        }
    }
}

pub(super) fn epoch_secs() -> u64 {
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
