//! Fossil deltas as a server (or anyone on the wire) could send them: applying any bytes to any
//! base gives bytes or a typed error, never a panic, and never more than the delta declares or
//! `MAX_OUTPUT`; a delta made by `encode` rebuilds its target exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketcast::broadcast::delta;

fuzz_target!(|data: &[u8]| {
    // The first two bytes say where the base ends; the rest is the delta (and, for the
    // round trip, the target).
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)) % (rest.len() + 1);
    let (base, other) = rest.split_at(at);
    if let Ok(out) = delta::apply(base, other) {
        assert!(out.len() <= delta::MAX_OUTPUT);
    }
    let made = delta::encode(base, other);
    assert_eq!(delta::apply(base, &made).as_deref(), Ok(other));
});
