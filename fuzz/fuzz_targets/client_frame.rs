//! Bytes from a WebSocket client: the frame reader must read a frame, ask for more bytes, or
//! name the close code, never panic, whatever the flags and lengths say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketcast::broadcast::connection::read_client_frame;

fuzz_target!(|data: &[u8]| {
    let (deflate, rest) = match data.split_first() {
        Some((flags, rest)) => (flags & 1 == 1, rest),
        None => (false, data),
    };
    let mut buf = rest;
    // Read frames one after another, as the connection does.
    while let Ok(Some((_, used))) = read_client_frame(buf, deflate, 0, 4096) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
    }
});
