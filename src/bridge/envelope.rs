//! How a tick travels through Redis: the stamped message and its compressed copy, in one
//! pub/sub message, so an edge neither serialises nor compresses.
//!
//! ```text
//! 0x00 'M' 'C' 0x01     magic and version (a JSON body never starts with a 0x00 byte)
//! u64  epoch            big-endian: the deployment's count of `seq` (see below)
//! u64  seq              big-endian, as in the message
//! i64  ts               epoch milliseconds, as in the message
//! u32  payload length   big-endian
//! payload               the message exactly as clients receive it (`{"seq":..,"ts":..,...}`)
//! rest                  its permessage-deflate payload, or nothing when the producer has
//!                       compression off
//! ```
//!
//! The epoch is a random number the publishing producer keeps in Redis beside the channels'
//! last `seq`. It changes only when Redis lost that record (a restart without persistence):
//! an edge that then sees `seq` lower than the last it sent knows the count started again,
//! where the same `seq` in the same epoch is only a message it already had.
//!
//! A message on the channel that does not start with the magic is taken for a JSON body
//! published by something other than marketcast (see [`Incoming::Json`]).

use thiserror::Error;

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = [0x00, b'M', b'C', 0x01];
const HEADER: usize = MAGIC.len() + 8 + 8 + 8 + 4;

/// A tick as carried through the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub epoch: u64,
    pub seq: u64,
    pub ts_ms: i64,
    /// The stamped message.
    pub payload: &'a [u8],
    /// Its compressed payload, when the producer made one.
    pub deflated: Option<&'a [u8]>,
}

/// What a pub/sub message turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A marketcast producer's tick.
    Envelope(Envelope<'a>),
    /// Something else: a body for the edge to check and stamp itself.
    Json(&'a [u8]),
}

/// An envelope that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope shorter than its {HEADER}-byte header ({0} bytes)")]
    Truncated(usize),
    #[error("envelope says its message has {said} bytes, but only {have} follow")]
    BadLength { said: usize, have: usize },
    #[error("the envelope's message is not a JSON object")]
    NotAnObject,
}

impl Envelope<'_> {
    /// The envelope's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let deflated = self.deflated.unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + self.payload.len() + deflated.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(self.payload);
        out.extend_from_slice(deflated);
        out
    }
}

/// Reads a pub/sub message.
pub fn decode(message: &[u8]) -> Result<Incoming<'_>, EnvelopeError> {
    if !message.starts_with(&MAGIC) {
        return Ok(Incoming::Json(message));
    }
    if message.len() < HEADER {
        return Err(EnvelopeError::Truncated(message.len()));
    }
    let word = |at: usize| -> [u8; 8] {
        let mut b = [0; 8];
        b.copy_from_slice(&message[at..at + 8]);
        b
    };
    let epoch = u64::from_be_bytes(word(4));
    let seq = u64::from_be_bytes(word(12));
    let ts_ms = i64::from_be_bytes(word(20));
    let mut len = [0; 4];
    len.copy_from_slice(&message[28..32]);
    let len = u32::from_be_bytes(len) as usize;
    let rest = &message[HEADER..];
    if len > rest.len() {
        return Err(EnvelopeError::BadLength {
            said: len,
            have: rest.len(),
        });
    }
    let (payload, deflated) = rest.split_at(len);
    // Not parsed (the producer's own bytes), only checked for the shape of an object.
    if payload.first() != Some(&b'{') || payload.last() != Some(&b'}') {
        return Err(EnvelopeError::NotAnObject);
    }
    Ok(Incoming::Envelope(Envelope {
        epoch,
        seq,
        ts_ms,
        payload,
        deflated: (!deflated.is_empty()).then_some(deflated),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_a_compressed_copy() {
        for deflated in [Some(&b"\x01\x02\x03"[..]), None] {
            let e = Envelope {
                epoch: 0xfeed,
                seq: u64::MAX - 1,
                ts_ms: 1_764_000_000_123,
                payload: br#"{"seq":1,"ts":2}"#,
                deflated,
            };
            assert_eq!(decode(&e.encode()), Ok(Incoming::Envelope(e)));
        }
    }

    #[test]
    fn anything_without_the_magic_is_a_body_to_check() {
        assert_eq!(decode(b"{\"a\":1}"), Ok(Incoming::Json(b"{\"a\":1}")));
        assert_eq!(decode(b""), Ok(Incoming::Json(b"")));
    }

    #[test]
    fn broken_envelopes_are_errors_not_panics() {
        let good = Envelope {
            epoch: 1,
            seq: 3,
            ts_ms: 4,
            payload: b"{}",
            deflated: None,
        }
        .encode();
        for cut in 4..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut not_object = good.clone();
        let at = not_object.len() - 1;
        not_object[at] = b']';
        assert_eq!(decode(&not_object), Err(EnvelopeError::NotAnObject));
        let mut long = good;
        long[31] = 200;
        assert!(matches!(
            decode(&long),
            Err(EnvelopeError::BadLength { .. })
        ));
    }
}
