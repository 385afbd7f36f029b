//! Text from SSI's SignalR stream and its negotiate reply: any text gives a frame (or a
//! negotiation) or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketcast::feed::ssi::signalr;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = signalr::parse_frame(text);
        let _ = signalr::Negotiation::parse(text);
    }
});
