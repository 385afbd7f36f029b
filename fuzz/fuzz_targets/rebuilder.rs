//! A delta client's message stream: full (text) and delta (binary) messages in any order and
//! with any bytes. The `Rebuilder` gives the full message or a typed error, never a panic, and
//! never more than `MAX_OUTPUT` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketcast::broadcast::delta::{self, Rebuilder};

fuzz_target!(|data: &[u8]| {
    let mut rebuild = Rebuilder::default();
    // Messages are separated by 0xff; each message's first byte says text (even) or binary.
    for message in data.split(|b| *b == 0xff) {
        let Some((kind, payload)) = message.split_first() else {
            continue;
        };
        if kind & 1 == 0 {
            rebuild.full(payload);
        } else if let Ok(full) = rebuild.delta(payload) {
            assert!(full.len() <= delta::MAX_OUTPUT);
        }
    }
});
