//! permessage-deflate offers (`Sec-WebSocket-Extensions` items): accepted or declined, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = std::str::from_utf8(data) {
        let _ = marketcast::broadcast::handshake::acceptable_deflate_offer(offer);
    }
});
