//! SSI messages as the stream or an ingest client could send them: any text must give an
//! event, a skip or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = marketcast::feed::ssi::parse_message(text);
    }
});
