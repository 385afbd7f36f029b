//! The WebSocket opening handshake (RFC 6455 section 4.2) and permessage-deflate negotiation
//! (RFC 7692 section 7).
//!
//! Pure functions over request headers, so every rule is unit-tested without a socket. The
//! HTTP layer turns a [`HandshakeError`] into its status code and message, and an accepted
//! [`Handshake`] into the `101 Switching Protocols` response.
//!
//! Compression is accepted only in the form one shared frame can serve: the server compresses
//! each message from a fresh 15-bit window (`server_no_context_takeover`), and asks the client
//! to do the same (`client_no_context_takeover`, which RFC 7692 section 7.1.1.2 lets a server
//! add) so a client's rare messages can be inflated without keeping a window per connection.
//! An offer the server cannot honour that way (say `server_max_window_bits=10`) is declined,
//! and the client gets plain frames.

use base64::Engine;
use http::HeaderMap;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The extension header value the server answers with when it accepts compression.
pub const DEFLATE_RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A request that cannot be upgraded, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an upgrade to WebSocket at all (plain HTTP to a WebSocket path).
    #[error("this is a WebSocket endpoint: send a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)")]
    NotUpgrade,
    /// An upgrade over HTTP/1.0 (RFC 6455 needs HTTP/1.1 or later).
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    OldHttp,
    /// A version other than 13.
    #[error("unsupported Sec-WebSocket-Version; this server speaks version 13")]
    UnsupportedVersion,
    /// The key is missing or not 16 bytes of base64.
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
}

impl HandshakeError {
    /// The HTTP status for this error: 426 Upgrade Required for plain HTTP and for a wrong
    /// version (with the headers that say what to send), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion | HandshakeError::NotUpgrade => 426,
            HandshakeError::OldHttp | HandshakeError::BadKey => 400,
        }
    }
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// Whether permessage-deflate was negotiated.
    pub deflate: bool,
}

fn header_has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Checks an upgrade request, its HTTP version included, and negotiates compression.
pub fn accept_request(
    version: http::Version,
    headers: &HeaderMap,
    allow_deflate: bool,
) -> Result<Handshake, HandshakeError> {
    if version < http::Version::HTTP_11 {
        return Err(HandshakeError::OldHttp);
    }
    accept(headers, allow_deflate)
}

/// Checks an upgrade request's headers and negotiates compression (`allow_deflate` is the
/// server's setting).
pub fn accept(headers: &HeaderMap, allow_deflate: bool) -> Result<Handshake, HandshakeError> {
    if !header_has_token(headers, "upgrade", "websocket")
        || !header_has_token(headers, "connection", "upgrade")
    {
        return Err(HandshakeError::NotUpgrade);
    }
    let version = headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if version != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(HandshakeError::BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| HandshakeError::BadKey)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::BadKey);
    }
    let deflate = allow_deflate
        && headers
            .get_all("sec-websocket-extensions")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(acceptable_deflate_offer);
    Ok(Handshake {
        accept: accept_key(key),
        deflate,
    })
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// True when one offer (`permessage-deflate; param; param=value`) can be served by a shared,
/// context-free compressed frame.
pub fn acceptable_deflate_offer(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts.filter(|p| !p.is_empty()) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (
                n.trim().to_ascii_lowercase(),
                Some(v.trim().trim_matches('"')),
            ),
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&name) {
            return false;
        }
        let ok = match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
            // We compress with a 15-bit window; a smaller limit cannot be honoured.
            "server_max_window_bits" => value == Some("15"),
            // Any window the client uses for its messages can be inflated with 15 bits.
            "client_max_window_bits" => {
                value.is_none_or(|v| v.parse::<u8>().is_ok_and(|bits| (8..=15).contains(&bits)))
            }
            _ => false,
        };
        if !ok {
            return false;
        }
        seen.push(name);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn upgrade(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut base = vec![
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        base.extend_from_slice(extra);
        headers(&base)
    }

    #[test]
    fn rfc_6455_sample_key() {
        let h = accept(&upgrade(&[]), true).unwrap();
        assert_eq!(h.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(!h.deflate);
    }

    #[test]
    fn rejects_what_is_not_a_version_13_upgrade() {
        assert_eq!(accept(&headers(&[]), true), Err(HandshakeError::NotUpgrade));
        let mut h = upgrade(&[]);
        h.insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(accept(&h, true), Err(HandshakeError::UnsupportedVersion));
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        let mut h = upgrade(&[]);
        h.insert("sec-websocket-key", HeaderValue::from_static("c2hvcnQ="));
        assert_eq!(accept(&h, true), Err(HandshakeError::BadKey));
        h.remove("sec-websocket-key");
        assert_eq!(accept(&h, true), Err(HandshakeError::BadKey));
    }

    #[test]
    fn accepts_the_offers_browsers_and_libraries_send() {
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=15",
            "permessage-deflate",
            "x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover",
        ] {
            let mut h = upgrade(&[]);
            h.insert("sec-websocket-extensions", HeaderValue::from_static(offer));
            assert!(accept(&h, true).unwrap().deflate, "{offer}");
            assert!(!accept(&h, false).unwrap().deflate, "setting off: {offer}");
        }
    }

    #[test]
    fn declines_offers_one_shared_frame_cannot_serve() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; unknown_param",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            let mut h = upgrade(&[]);
            h.insert("sec-websocket-extensions", HeaderValue::from_static(offer));
            assert!(!accept(&h, true).unwrap().deflate, "{offer}");
        }
    }
}
