//! Who may come in: the bearer token and the browser origins a request is checked against.
//!
//! Kept apart from the routes so that every door (the channels' upgrades, ingest) asks the same
//! questions the same way: a token compared without an early exit, `Authorization: Bearer` or
//! `?token=`, and an `Origin` policy that resists DNS rebinding.

use axum::http::{header, HeaderMap};

/// Which browser pages may open a WebSocket: the `Origin` header, when present, must be one
/// of `CORS_ORIGINS` (or `*` there) or the server's own origin (its dashboard); a request
/// without `Origin` (not from a browser) is let through or not by `WS_ALLOW_NO_ORIGIN`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    pub allowed: Vec<String>,
    pub allow_missing: bool,
}

impl OriginPolicy {
    /// `Err` with the reason when the request's origin may not connect.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err("a WebSocket request without an Origin header is refused here (WS_ALLOW_NO_ORIGIN=false)".into())
            };
        };
        let origin = origin.to_str().unwrap_or("").trim().trim_end_matches('/');
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        // The server's own pages: the origin's host:port is the Host the request was sent to.
        // Only for a host that is an address or `localhost`: a name could be an attacker's
        // domain rebound to this server's address (DNS rebinding), with `Host` to match. Under
        // a name of its own, a deployment lists its origin in `CORS_ORIGINS`.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !host.is_empty()
            && origin_host.eq_ignore_ascii_case(host)
            && is_address_or_localhost(host)
        {
            return Ok(());
        }
        Err(format!(
            "origin {origin:?} is not allowed to open a WebSocket here (CORS_ORIGINS)"
        ))
    }
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
pub fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// True for `127.0.0.1:8000`, `[::1]:8000`, `localhost:8000` (with or without the port).
fn is_address_or_localhost(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_only_under_an_address_or_localhost() {
        for host in [
            "127.0.0.1:8000",
            "[::1]:8000",
            "localhost:8000",
            "10.1.2.3",
            "::1",
        ] {
            assert!(is_address_or_localhost(host), "{host}");
        }
        for host in [
            "evil.example:8000",
            "marketcast.example",
            "localhost.evil.example",
        ] {
            assert!(!is_address_or_localhost(host), "{host}");
        }
        let policy = OriginPolicy {
            allowed: vec!["https://desk.example".into()],
            allow_missing: true,
        };
        let headers = |origin: &str, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, origin.parse().unwrap());
            h.insert(header::HOST, host.parse().unwrap());
            h
        };
        assert!(policy
            .check(&headers("http://127.0.0.1:8000", "127.0.0.1:8000"))
            .is_ok());
        assert!(policy
            .check(&headers("http://rebound.example", "rebound.example"))
            .is_err());
        assert!(policy
            .check(&headers("https://desk.example", "marketcast.example"))
            .is_ok());
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("secret", "secret"));
        assert!(!same_token("secret", "secreT"));
        assert!(!same_token("secre", "secret"));
        assert!(!same_token("", "secret"));
        assert!(same_token("", ""));
    }
}
