//! Upgrade requests with arbitrary header values: accepted with a key, or refused with a
//! status, never a panic.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use marketcast::broadcast::handshake;

const NAMES: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-version",
    "sec-websocket-key",
    "sec-websocket-extensions",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (i, part) in data.split(|b| *b == b'\n').enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(HeaderName::from_static(NAMES[i % NAMES.len()]), value);
        }
    }
    if let Err(e) = handshake::accept(&headers, true) {
        assert!(matches!(e.status(), 400 | 426));
    }
});
