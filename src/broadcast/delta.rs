//! Delta messages (`?delta=fossil`): a tick sent as the change from the tick before, made once
//! per tick and shared by every client that has the tick before.
//!
//! Why it exists: late in a session the market message is about 480 KB (3,600 intraday points
//! per index), and even compressed it is about 79 KB per client per tick, while between two
//! ticks only a few kilobytes change. A client that asks for deltas when it connects gets a
//! full message first, then each tick as a Fossil delta against the message before it.
//!
//! **The format**, a binary WebSocket message (compressed like any other when the client
//! negotiated permessage-deflate):
//!
//! ```text
//! {"seq":N,"ts":T,"base":M,"delta":"fossil"}\n<Fossil delta>
//! ```
//!
//! Applying the delta to the bytes of message `M` (as received, or as rebuilt from an earlier
//! delta) gives the bytes of message `N` exactly: the same bytes a client without deltas gets
//! as a text message. Full messages stay text messages, so a client tells the two apart by
//! the frame type, and a server that does not offer deltas simply sends text.
//!
//! The delta format is Fossil's (<https://fossil-scm.org/home/doc/tip/www/delta_format.wiki>),
//! the one Centrifugo uses for the same purpose; browsers apply it with a few lines of
//! JavaScript (the dashboard's `assets/dashboard/delta.js`). Deltas are made by the
//! `fossil-delta` crate; [`apply`] here is this crate's own decoder (used by `marketcast watch`
//! and the tests), written to return an error, never panic, on any input.

use thiserror::Error;

/// What the header names the format.
pub const FORMAT: &str = "fossil";

/// The largest message a delta may make (a market message is under 1 MB).
pub const MAX_OUTPUT: usize = 64 << 20;

/// A delta that cannot be applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("the delta message has no header line")]
    NoHeader,
    #[error("the delta header is not valid: {0}")]
    BadHeader(String),
    #[error("the delta is cut short")]
    Truncated,
    #[error("unexpected byte {0:#04x} in the delta")]
    Unexpected(u8),
    #[error("the delta copies past the end of its base")]
    CopyOutOfRange,
    #[error("the delta makes more bytes than it says")]
    TooLong,
    #[error("the result's checksum does not match")]
    BadChecksum,
}

/// The header line of a delta message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Header {
    pub seq: u64,
    pub ts: i64,
    /// The `seq` of the message the delta applies to.
    pub base: u64,
    pub delta: String,
}

/// The delta that turns `base` into `target`.
pub fn encode(base: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() / 8 + 64);
    fossil_delta::generate_delta(target, base, &mut out);
    out
}

/// A delta message's payload: the header line and the delta.
pub fn message(seq: u64, ts_ms: i64, base_seq: u64, delta: &[u8]) -> Vec<u8> {
    let header =
        format!("{{\"seq\":{seq},\"ts\":{ts_ms},\"base\":{base_seq},\"delta\":\"{FORMAT}\"}}\n");
    let mut out = Vec::with_capacity(header.len() + delta.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(delta);
    out
}

/// Splits a delta message into its header and its delta.
pub fn parse(payload: &[u8]) -> Result<(Header, &[u8]), DeltaError> {
    let end = payload
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(DeltaError::NoHeader)?;
    let header: Header = serde_json::from_slice(&payload[..end])
        .map_err(|e| DeltaError::BadHeader(e.to_string()))?;
    if header.delta != FORMAT {
        return Err(DeltaError::BadHeader(format!(
            "format {:?}, not {FORMAT:?}",
            header.delta
        )));
    }
    Ok((header, &payload[end + 1..]))
}

/// The value of a Fossil base-64 digit.
fn digit(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        b'_' => Some(36),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 37),
        b'~' => Some(63),
        _ => None,
    }
}

/// Reads a base-64 number at `*at`; the byte after it is left at `*at`.
fn number(delta: &[u8], at: &mut usize) -> Result<usize, DeltaError> {
    let start = *at;
    let mut n: u64 = 0;
    while let Some(d) = delta.get(*at).and_then(|b| digit(*b)) {
        n = (n << 6) | u64::from(d);
        if n > u64::from(u32::MAX) {
            return Err(DeltaError::TooLong);
        }
        *at += 1;
    }
    if *at == start {
        return match delta.get(*at) {
            Some(b) => Err(DeltaError::Unexpected(*b)),
            None => Err(DeltaError::Truncated),
        };
    }
    Ok(n as usize)
}

/// Fossil's checksum: the sum of the output as big-endian 32-bit words, the last one padded
/// with zeros.
fn checksum(data: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum = sum.wrapping_add(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut last = [0u8; 4];
    last[..rest.len()].copy_from_slice(rest);
    sum.wrapping_add(u32::from_be_bytes(last))
}

/// Applies a Fossil `delta` to `base`.
pub fn apply(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let mut at = 0;
    let size = number(delta, &mut at)?;
    if size > MAX_OUTPUT {
        return Err(DeltaError::TooLong);
    }
    if delta.get(at) != Some(&b'\n') {
        return Err(delta
            .get(at)
            .map_or(DeltaError::Truncated, |b| DeltaError::Unexpected(*b)));
    }
    at += 1;
    // Never trust a size for an allocation: grow as bytes are actually made.
    let mut out = Vec::with_capacity(size.min(base.len() + delta.len()));
    loop {
        let n = number(delta, &mut at)?;
        let op = *delta.get(at).ok_or(DeltaError::Truncated)?;
        at += 1;
        match op {
            b'@' => {
                let offset = number(delta, &mut at)?;
                if delta.get(at) != Some(&b',') {
                    return Err(DeltaError::Truncated);
                }
                at += 1;
                let end = offset.checked_add(n).ok_or(DeltaError::CopyOutOfRange)?;
                let from = base.get(offset..end).ok_or(DeltaError::CopyOutOfRange)?;
                if out.len() + n > size {
                    return Err(DeltaError::TooLong);
                }
                out.extend_from_slice(from);
            }
            b':' => {
                let end = at.checked_add(n).ok_or(DeltaError::Truncated)?;
                let text = delta.get(at..end).ok_or(DeltaError::Truncated)?;
                if out.len() + n > size {
                    return Err(DeltaError::TooLong);
                }
                out.extend_from_slice(text);
                at = end;
            }
            b';' => {
                if out.len() != size {
                    return Err(DeltaError::Truncated);
                }
                if n as u32 != checksum(&out) {
                    return Err(DeltaError::BadChecksum);
                }
                return Ok(out);
            }
            other => return Err(DeltaError::Unexpected(other)),
        }
    }
}

/// A client's side: keeps the last message and rebuilds each delta message into the full one.
#[derive(Debug, Default)]
pub struct Rebuilder {
    /// The last tick message: its `seq` and bytes.
    last: Option<(u64, Vec<u8>)>,
}

/// The `seq` a tick message starts with, if it is one.
fn leading_seq(message: &[u8]) -> Option<u64> {
    let rest = message.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Rebuilder {
    /// A full (text) message: kept as the base of the next delta when it is a tick.
    pub fn full(&mut self, message: &[u8]) {
        if let Some(seq) = leading_seq(message) {
            self.last = Some((seq, message.to_vec()));
        }
    }

    /// A delta (binary) message: the full message it stands for, which becomes the base of
    /// the next. An error when its base is not the last message (which a server never sends).
    pub fn delta(&mut self, payload: &[u8]) -> Result<Vec<u8>, DeltaError> {
        let (header, delta) = parse(payload)?;
        let Some((seq, base)) = &self.last else {
            return Err(DeltaError::BadHeader(format!(
                "a delta against {} before any full message",
                header.base
            )));
        };
        if *seq != header.base {
            return Err(DeltaError::BadHeader(format!(
                "a delta against {} after message {seq}",
                header.base
            )));
        }
        let message = apply(base, delta)?;
        self.last = Some((header.seq, message.clone()));
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/snapshot-large.json"
        ))
        .unwrap()
    }

    /// The snapshot with a few values changed and a point appended, as between two ticks.
    fn next_tick(base: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(base.to_vec()).unwrap();
        let changed = text
            .replacen("\"total_volume\":", "\"total_volume\":1", 3)
            .replacen("]", ",1234.5]", 2);
        changed.into_bytes()
    }

    #[test]
    fn a_large_snapshot_round_trips_through_a_small_delta() {
        let base = snapshot();
        let target = next_tick(&base);
        let d = encode(&base, &target);
        assert!(
            d.len() * 100 < target.len(),
            "{} against {}",
            d.len(),
            target.len()
        );
        assert_eq!(apply(&base, &d).unwrap(), target);
        // The crate's own decoder agrees (the format is the crate's, not ours).
        assert_eq!(fossil_delta::apply(&base, &d).unwrap(), target);
    }

    #[test]
    fn small_and_unrelated_inputs_round_trip() {
        for (base, target) in [
            (&b""[..], &b""[..]),
            (b"", b"{\"a\":1}"),
            (b"{\"a\":1}", b""),
            (b"short", b"entirely different and longer text than before"),
            ("vé số ❤".as_bytes(), "vé số ❤ và thêm".as_bytes()),
        ] {
            let d = encode(base, target);
            assert_eq!(apply(base, &d).unwrap(), target);
        }
    }

    #[test]
    fn messages_carry_their_header() {
        let payload = message(42, 1_700_000_000_000, 41, b"3\n3:abc2Ntd;");
        assert!(payload.starts_with(br#"{"seq":42,"ts":1700000000000,"base":41,"delta":"fossil"}"#));
        let (h, d) = parse(&payload).unwrap();
        assert_eq!((h.seq, h.ts, h.base), (42, 1_700_000_000_000, 41));
        assert_eq!(d, b"3\n3:abc2Ntd;");
        assert_eq!(parse(b"no newline"), Err(DeltaError::NoHeader));
        assert!(matches!(
            parse(b"{\"seq\":1}\n"),
            Err(DeltaError::BadHeader(_))
        ));
        assert!(matches!(
            parse(b"{\"seq\":1,\"ts\":1,\"base\":0,\"delta\":\"vcdiff\"}\nx"),
            Err(DeltaError::BadHeader(_))
        ));
    }

    #[test]
    fn a_client_rebuilds_a_stream_of_deltas() {
        let m1 = br#"{"seq":1,"ts":5,"points":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]}"#;
        let m2 = br#"{"seq":2,"ts":6,"points":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]}"#;
        let m3 =
            br#"{"seq":3,"ts":7,"points":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}"#;
        let mut r = Rebuilder::default();
        let d2 = message(2, 6, 1, &encode(m1, m2));
        assert!(r.delta(&d2).is_err(), "no base yet");
        r.full(br#"{"type":"status","stale":true}"#);
        r.full(m1);
        r.full(br#"{"type":"status","stale":false}"#);
        assert_eq!(r.delta(&d2).unwrap(), m2);
        assert_eq!(r.delta(&message(3, 7, 2, &encode(m2, m3))).unwrap(), m3);
        // A delta against something else than the last message is refused, not misapplied.
        assert!(r.delta(&message(3, 7, 1, &encode(m1, m3))).is_err());
    }

    #[test]
    fn bad_deltas_are_errors_never_panics() {
        let base = snapshot();
        let target = next_tick(&base);
        let d = encode(&base, &target);
        // Every prefix, and every single-byte change of a short delta.
        for cut in 0..d.len().min(400) {
            assert!(apply(&base, &d[..cut]).is_err(), "cut at {cut}");
        }
        let small = encode(
            b"0123456789abcdefghijklmnopqrstuvwxyz",
            b"0123456789abcdefXXijklmnopqrstuvwxyz!",
        );
        for i in 0..small.len() {
            for b in [0u8, b'@', b':', b';', b',', b'\n', b'~', 0xff] {
                let mut broken = small.clone();
                broken[i] = b;
                let _ = apply(b"0123456789abcdefghijklmnopqrstuvwxyz", &broken);
            }
        }
        assert_eq!(apply(b"abc", b"3\n3@5,0;"), Err(DeltaError::CopyOutOfRange));
        assert_eq!(apply(b"abc", b"2\n3@0,0;"), Err(DeltaError::TooLong));
        assert_eq!(apply(b"abc", b"~~~~~~\n"), Err(DeltaError::TooLong));
        assert_eq!(
            apply(b"abc", b"~~~~~\n"),
            Err(DeltaError::TooLong),
            "over MAX_OUTPUT"
        );
        assert_eq!(apply(b"abc", b"3\n3@0,1;"), Err(DeltaError::BadChecksum));
    }
}
