//! The stamp: `"seq":N,"ts":T` spliced in at the front of a JSON object, so every message says
//! where it falls in its channel's count and when its snapshot was taken.
//!
//! The keys go first so a client (or the load generator) can read them without parsing the
//! rest, and a delta client can tell a message that may serve as a delta's base (one that
//! starts `{"seq":N,`) from one that may not. The body is never parsed: the stamp is spliced in
//! after its opening `{`, with a comma unless the object is empty, so stamping costs one copy
//! of the body. This is the one splicer: the tick loop stamps every body it frames
//! ([`super::frame::Tick::build`]), and an edge stamps a body from another publisher with
//! whichever of the two keys it lacks (`crate::bridge`).

use std::io::Write;

/// Bytes a stamp's prefix takes at most: `{"seq":`, 20 digits, `,"ts":`, a sign and 19
/// digits, `,`.
const PREFIX_MAX: usize = 64;

/// `body` (a JSON object) with `"seq":N,"ts":T,` put first.
pub fn stamp(body: &[u8], seq: u64, ts_ms: i64) -> Vec<u8> {
    stamped(body, Some(seq), Some(ts_ms))
}

/// `body` (a JSON object) with whichever of `"seq":N` and `"ts":T` are given put first, in
/// that order; with neither, `body` unchanged.
pub fn stamped(body: &[u8], seq: Option<u64>, ts_ms: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_MAX + body.len());
    let rest = put_prefix(&mut out, body, seq, ts_ms);
    out.extend_from_slice(rest);
    out
}

/// The stamped message as two pieces: the new prefix and the rest of `body`, so a frame can be
/// built around them with one copy of the body (see [`stamped`] for what goes in front).
pub fn splice(body: &[u8], seq: Option<u64>, ts_ms: Option<i64>) -> (Vec<u8>, &[u8]) {
    let mut prefix = Vec::with_capacity(PREFIX_MAX);
    let rest = put_prefix(&mut prefix, body, seq, ts_ms);
    (prefix, rest)
}

/// Writes `{` and the given keys to `out`, and returns what follows the `{` of `body`.
fn put_prefix<'a>(
    out: &mut Vec<u8>,
    body: &'a [u8],
    seq: Option<u64>,
    ts_ms: Option<i64>,
) -> &'a [u8] {
    let rest = body.strip_prefix(b"{").unwrap_or(body);
    out.push(b'{');
    // Writing to a Vec cannot fail.
    if let Some(seq) = seq {
        let _ = write!(out, "\"seq\":{seq},");
    }
    if let Some(ts_ms) = ts_ms {
        let _ = write!(out, "\"ts\":{ts_ms},");
    }
    let is_empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    if is_empty && out.last() == Some(&b',') {
        out.pop();
    }
    rest
}

/// Whether `message` starts `{"seq":<seq>,`.
pub(super) fn leads_with_seq(message: &[u8], seq: u64) -> bool {
    let prefix = format!("{{\"seq\":{seq},");
    message.starts_with(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_puts_seq_and_ts_first() {
        assert_eq!(
            stamp(br#"{"quotes":{}}"#, 7, 1700000000000),
            br#"{"seq":7,"ts":1700000000000,"quotes":{}}"#
        );
        assert_eq!(stamp(b"{}", 1, 2), br#"{"seq":1,"ts":2}"#);
        let v: serde_json::Value = serde_json::from_slice(&stamp(b"{ }", 1, 2)).unwrap();
        assert_eq!(v["seq"], 1);
    }

    #[test]
    fn stamped_puts_only_the_keys_given() {
        assert_eq!(stamped(br#"{"a":1}"#, Some(3), None), br#"{"seq":3,"a":1}"#);
        assert_eq!(
            stamped(br#"{"a":1}"#, None, Some(-4)),
            br#"{"ts":-4,"a":1}"#
        );
        assert_eq!(stamped(br#"{"a":1}"#, None, None), br#"{"a":1}"#);
        assert_eq!(stamped(b"{ }", Some(1), None), br#"{"seq":1 }"#);
        let (prefix, rest) = splice(br#"{"a":1}"#, Some(u64::MAX), Some(i64::MIN));
        assert!(prefix.len() <= PREFIX_MAX);
        assert_eq!(
            [&prefix[..], rest].concat(),
            stamp(br#"{"a":1}"#, u64::MAX, i64::MIN)
        );
        assert!(leads_with_seq(&stamp(b"{}", 12, 0), 12));
        assert!(!leads_with_seq(&stamp(b"{}", 12, 0), 1));
    }
}
