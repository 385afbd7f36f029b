//! How a tick travels through Redis: the stamped message and its compressed copy, in one
//! pub/sub message, so an edge neither serialises nor compresses.
//!
//! ```text
//! 0x00 'M' 'C' 0x01     magic and version (a JSON body never starts with a 0x00 byte)
//! [32] tag              only in a signed envelope (version 0x02, with `REDIS_SIGNING_KEY`):
//!                       HMAC-SHA256 of the pub/sub channel's name and every byte after the
//!                       tag (see [`super::signing`])
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
//! Decoding reads the fields of either version; whether a tag is right is the edge's check
//! ([`Envelope::verify`]), since only it knows the key and the channel.
//!
//! A message on the channel that does not start with the magic is taken for a JSON body
//! published by something other than marketcast (see [`Incoming::Json`]).

use thiserror::Error;

use super::signing::{SigningKey, TAG_LEN};

/// The first four bytes of every unsigned envelope.
pub const MAGIC: [u8; 4] = [0x00, b'M', b'C', 0x01];
/// The first four bytes of every signed envelope (a tag follows).
pub const MAGIC_SIGNED: [u8; 4] = [0x00, b'M', b'C', 0x02];
/// The fields after the magic (and the tag): epoch, seq, ts, payload length.
const FIELDS: usize = 8 + 8 + 8 + 4;
const HEADER: usize = MAGIC.len() + FIELDS;

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
    /// A signed envelope's tag and the bytes it covers (everything after it); `None` for an
    /// unsigned one. Set by [`decode`]; [`Envelope::encode`] writes it back as it is.
    pub seal: Option<Seal<'a>>,
}

/// A signed envelope's tag, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal<'a> {
    pub tag: &'a [u8],
    /// The bytes the tag covers (after the tag, to the end).
    pub covered: &'a [u8],
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
    /// The fields after the magic and the tag, as the producer writes them.
    fn encode_fields(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(self.payload);
        out.extend_from_slice(self.deflated.unwrap_or_default());
    }

    fn capacity(&self) -> usize {
        HEADER + TAG_LEN + self.payload.len() + self.deflated.map_or(0, <[u8]>::len)
    }

    /// The envelope's bytes, signed with `key` for the pub/sub channel `channel` (the tag is
    /// computed once, over the bytes as they go out).
    pub fn encode_signed(&self, key: &SigningKey, channel: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.capacity());
        out.extend_from_slice(&MAGIC_SIGNED);
        out.extend_from_slice(&[0; TAG_LEN]);
        self.encode_fields(&mut out);
        let at = MAGIC_SIGNED.len();
        let tag = key.sign(channel.as_bytes(), &[&out[at + TAG_LEN..]]);
        out[at..at + TAG_LEN].copy_from_slice(&tag);
        out
    }

    /// Whether this envelope, received on `channel`, carries a right tag for `key` (false for
    /// an unsigned one).
    pub fn verify(&self, key: &SigningKey, channel: &str) -> bool {
        self.seal
            .is_some_and(|s| key.verify(channel.as_bytes(), &[s.covered], s.tag))
    }
}

impl Envelope<'_> {
    /// The envelope's bytes: unsigned, or with the tag it was read with (a decoded envelope
    /// encodes to the bytes it came from).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.capacity());
        match self.seal {
            None => out.extend_from_slice(&MAGIC),
            Some(seal) => {
                out.extend_from_slice(&MAGIC_SIGNED);
                out.extend_from_slice(seal.tag);
            }
        }
        self.encode_fields(&mut out);
        out
    }
}

/// Reads a pub/sub message.
pub fn decode(message: &[u8]) -> Result<Incoming<'_>, EnvelopeError> {
    let (fields, seal) = if message.starts_with(&MAGIC) {
        (&message[MAGIC.len()..], None)
    } else if message.starts_with(&MAGIC_SIGNED) {
        let after = &message[MAGIC_SIGNED.len()..];
        let Some((tag, covered)) = after.split_at_checked(TAG_LEN) else {
            return Err(EnvelopeError::Truncated(message.len()));
        };
        (covered, Some(Seal { tag, covered }))
    } else {
        return Ok(Incoming::Json(message));
    };
    if fields.len() < FIELDS {
        return Err(EnvelopeError::Truncated(message.len()));
    }
    let word = |at: usize| -> [u8; 8] {
        let mut b = [0; 8];
        b.copy_from_slice(&fields[at..at + 8]);
        b
    };
    let epoch = u64::from_be_bytes(word(0));
    let seq = u64::from_be_bytes(word(8));
    let ts_ms = i64::from_be_bytes(word(16));
    let mut len = [0; 4];
    len.copy_from_slice(&fields[24..28]);
    let len = u32::from_be_bytes(len) as usize;
    let rest = &fields[FIELDS..];
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
        seal,
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
                seal: None,
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
            seal: None,
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

    #[test]
    fn a_signed_envelope_holds_only_on_its_channel_and_unchanged() {
        let key = SigningKey::new(&crate::base::Secret::from("k".to_string())).unwrap();
        let e = Envelope {
            epoch: 7,
            seq: 42,
            ts_ms: 5,
            payload: br#"{"seq":42}"#,
            deflated: Some(b"zz"),
            seal: None,
        };
        let bytes = e.encode_signed(&key, "mc:market");
        assert!(bytes.starts_with(&MAGIC_SIGNED));
        let Ok(Incoming::Envelope(read)) = decode(&bytes) else {
            panic!("a signed envelope decodes");
        };
        assert_eq!((read.epoch, read.seq, read.payload), (7, 42, e.payload));
        assert_eq!(read.deflated, e.deflated);
        assert!(read.verify(&key, "mc:market"));
        assert_eq!(read.encode(), bytes, "encodes to the bytes it came from");
        assert!(
            !read.verify(&key, "mc:foreign"),
            "replayed on another channel"
        );
        let other = SigningKey::new(&crate::base::Secret::from("x".to_string())).unwrap();
        assert!(!read.verify(&other, "mc:market"), "another key");
        // Any byte after the magic changed: the tag no longer holds.
        for at in [4, 4 + TAG_LEN, 4 + TAG_LEN + 8, bytes.len() - 1] {
            let mut forged = bytes.clone();
            forged[at] ^= 1;
            if let Ok(Incoming::Envelope(f)) = decode(&forged) {
                assert!(!f.verify(&key, "mc:market"), "byte {at} changed");
            }
        }
        // Unsigned: never verified.
        let unsigned = e.encode();
        let Ok(Incoming::Envelope(plain)) = decode(&unsigned) else {
            panic!("an unsigned envelope decodes");
        };
        assert!(!plain.verify(&key, "mc:market"));
        // Cut short: an error, not a panic.
        for cut in 4..HEADER + TAG_LEN {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
