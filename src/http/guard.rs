//! Who may come in: the tokens and the browser origins a request is checked against.
//!
//! Kept apart from the routes so that every door asks the same questions the same way: a token
//! compared without an early exit, given as `Authorization: Bearer` or `?token=`, and an `Origin`
//! policy that resists DNS rebinding. Three doors ([`Door`]):
//!
//! * the channels' WebSockets, behind `WS_AUTH_TOKEN`;
//! * the REST data (`/api/market/*`, `/api/history/*`, `/api/vn30-components`, `/api/schema`),
//!   behind the same token unless `PUBLIC_REST=true` (the original's REST was public, and its
//!   frontend sends a token only on the WebSocket);
//! * the operators' details (`/health` beyond its plain status, `/metrics`), behind
//!   `ADMIN_TOKEN`, or `WS_AUTH_TOKEN` when no admin token of their own is set.
//!
//! A wrong token spends a token of its address's connect rate (so guessing is as slow as
//! connecting, and past the rate gets 429), and refusals are logged at most once a second per
//! address ([`super::denials`]).
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{plain, AppState};
use crate::broadcast::admission::Admission;

/// A door a token guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `/ws/{channel}`.
    Socket,
    /// The REST data routes.
    Data,
    /// `/health`'s details and `/metrics`.
    Operations,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Socket => "WebSocket",
            Door::Data => "REST request",
            Door::Operations => "operations request",
        }
    }
}

/// The tokens in force: `WS_AUTH_TOKEN`, `ADMIN_TOKEN`, and whether the REST data is public.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// `WS_AUTH_TOKEN`; empty: the data is public.
    pub data: String,
    /// `ADMIN_TOKEN`; empty: the operators' details take `WS_AUTH_TOKEN`.
    pub admin: String,
    /// `PUBLIC_REST`: the REST data routes need no token even when `WS_AUTH_TOKEN` is set.
    pub public_rest: bool,
}

/// What a request's token is worth at a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The door needs no token.
    Open,
    /// The right token.
    Granted,
    /// The door needs a token and none was given.
    Missing,
    /// A token was given and it is not the door's.
    Wrong,
}

impl Tokens {
    /// The token `door` needs, and the setting it comes from; `None` when the door is open.
    pub fn expected(&self, door: Door) -> Option<(&str, &'static str)> {
        let (token, name) = match door {
            Door::Socket => (&self.data, "WS_AUTH_TOKEN"),
            Door::Data if self.public_rest => return None,
            Door::Data => (&self.data, "WS_AUTH_TOKEN"),
            Door::Operations if !self.admin.is_empty() => (&self.admin, "ADMIN_TOKEN"),
            Door::Operations => (&self.data, "WS_AUTH_TOKEN"),
        };
        (!token.is_empty()).then_some((token.as_str(), name))
    }

    /// Judges `given` (the request's token, if any) at `door`.
    pub fn judge(&self, door: Door, given: Option<&str>) -> Verdict {
        match (self.expected(door), given) {
            (None, _) => Verdict::Open,
            (Some(_), None) => Verdict::Missing,
            (Some((expected, _)), Some(given)) if same_token(given, expected) => Verdict::Granted,
            (Some(_), Some(_)) => Verdict::Wrong,
        }
    }
}

/// The token a request carries: `Authorization: Bearer`, else `?token=` (URL-decoded).
pub fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(t) = bearer(headers) {
        return Some(t.to_owned());
    }
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The answer to a request refused at `door`: 401 with the sentence every door uses (and
/// `WWW-Authenticate: Bearer`), or 429 once a wrong token has spent its address's connect rate.
/// Counted, and logged at most once a second per address.
pub fn refuse(app: &AppState, door: Door, verdict: Verdict, client: IpAddr) -> Response {
    let setting = app
        .tokens
        .expected(door)
        .map_or("WS_AUTH_TOKEN", |(_, s)| s);
    if verdict == Verdict::Wrong {
        if let Err(refusal) = app.admission.charge_failure(client) {
            app.denials
                .warn(client, door.name(), "wrong token, past the connect rate");
            return too_many(&refusal);
        }
        app.denials.warn(client, door.name(), "wrong token");
    } else {
        app.admission.count_unauthorized();
        app.denials.warn(client, door.name(), "missing token");
    }
    let mut resp = plain(
        StatusCode::UNAUTHORIZED,
        &format!(
            "missing or wrong token: send ?token=<{setting}> or Authorization: Bearer <{setting}>"
        ),
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// 429 (or 503) with `Retry-After`, for an admission refusal.
pub fn too_many(refusal: &crate::broadcast::admission::Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut resp = plain(status, &refusal.to_string());
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(refusal.retry_after_secs()),
    );
    resp
}

/// The client's address as the limits count it (through a trusted proxy's `X-Forwarded-For`).
pub fn client_ip(admission: &Admission, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
    let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    admission.client_ip(peer, headers)
}

/// Middleware of the REST data routes: the request goes on with the right token (or when the
/// data is public), else gets [`refuse`]'s answer. CORS wraps it, so a refusal carries the CORS
/// headers a browser needs to read it, and a preflight (no token) is answered by CORS.
pub async fn data_routes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let given = request_token(req.headers(), req.uri().query());
    match app.tokens.judge(Door::Data, given.as_deref()) {
        Verdict::Open | Verdict::Granted => next.run(req).await,
        verdict => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let client = client_ip(&app.admission, peer, req.headers());
            refuse(&app, Door::Data, verdict, client)
        }
    }
}

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
    fn which_token_each_door_takes() {
        let tokens = Tokens {
            data: "data".into(),
            admin: String::new(),
            public_rest: false,
        };
        assert_eq!(tokens.judge(Door::Data, Some("data")), Verdict::Granted);
        assert_eq!(tokens.judge(Door::Data, None), Verdict::Missing);
        assert_eq!(tokens.judge(Door::Socket, Some("x")), Verdict::Wrong);
        // Without an admin token, the operators' details take the data token.
        assert_eq!(
            tokens.judge(Door::Operations, Some("data")),
            Verdict::Granted
        );
        let tokens = Tokens {
            admin: "admin".into(),
            public_rest: true,
            ..tokens
        };
        // With one, only it.
        assert_eq!(tokens.judge(Door::Operations, Some("data")), Verdict::Wrong);
        assert_eq!(
            tokens.judge(Door::Operations, Some("admin")),
            Verdict::Granted
        );
        // PUBLIC_REST opens the REST data, not the WebSockets.
        assert_eq!(tokens.judge(Door::Data, None), Verdict::Open);
        assert_eq!(tokens.judge(Door::Socket, None), Verdict::Missing);
        // No token set anywhere: every door is open.
        let open = Tokens::default();
        for door in [Door::Socket, Door::Data, Door::Operations] {
            assert_eq!(open.judge(door, Some("anything")), Verdict::Open);
        }
        // ADMIN_TOKEN alone guards the operators' details and nothing else.
        let admin_only = Tokens {
            admin: "admin".into(),
            ..Tokens::default()
        };
        assert_eq!(admin_only.judge(Door::Data, None), Verdict::Open);
        assert_eq!(admin_only.judge(Door::Operations, None), Verdict::Missing);
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            request_token(&h, Some("a=1&token=a%20b%26c")),
            Some("a b&c".into())
        );
        assert_eq!(request_token(&h, Some("a=1")), None);
        assert_eq!(request_token(&h, None), None);
        h.insert(header::AUTHORIZATION, "Bearer from-header".parse().unwrap());
        assert_eq!(
            request_token(&h, Some("token=q")),
            Some("from-header".into())
        );
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
