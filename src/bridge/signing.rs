//! Signatures on what the bridge keeps in Redis (`REDIS_SIGNING_KEY`), so that being able to
//! `PUBLISH` or `SET` there is not enough to speak to every client.
//!
//! Without a key anyone who reaches the broker can put a message in front of every client of
//! every edge. With one, the producer signs each envelope and the REST routes' state document
//! with an HMAC-SHA256 of their bytes, and an edge relays only what carries a valid tag; the
//! rest is dropped and counted. The tag also covers the name of the pub/sub channel or key the
//! bytes were written to, so a signed tick of one channel cannot be replayed on another.
//!
//! A tag proves who wrote the bytes, not when: a signed tick or state document captured from
//! Redis (a `SUBSCRIBE` or a `GET` is enough) stays valid. So what is signed carries the
//! producer's time stamp (an envelope its `ts`, a document the `ts` of [`read_document`]'s
//! header), and an edge refuses a signed copy older than what it already took, or far older
//! than its own clock (the rules are the edge's: [`super::edge`], [`super::state`]).
//!
//! Signed bytes start with a magic of their own (an envelope's version 0x02, a document's
//! [`DOCUMENT_MAGIC`]), so a node without the key tells them from anything else: it relays
//! them unchecked, as it does unsigned ones, and says once in a while that it could check them.
//!
//! The work is once per message on each side (the producer signs a tick once for every edge,
//! an edge checks it once for all its clients), never per client. HMAC and SHA-256 are the
//! RustCrypto crates', and a tag is compared in constant time (`verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::base::Secret;

/// Bytes in a tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;

/// The shared key of a deployment's producers and edges, ready to sign and check. Never
/// printed.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl SigningKey {
    /// The key of `secret`; `None` when it is empty (signing off).
    pub fn new(secret: &Secret) -> Option<SigningKey> {
        if secret.is_empty() {
            return None;
        }
        // HMAC takes a key of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .ok()
            .map(SigningKey)
    }

    /// The MAC over `context` (the channel or key name, length-prefixed so no two
    /// (context, bytes) pairs read alike) and `parts`, in order.
    fn mac(&self, context: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(&(context.len() as u32).to_be_bytes());
        mac.update(context);
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The tag of `parts` written under `context`.
    pub fn sign(&self, context: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.mac(context, parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `parts` under `context` (compared in constant time).
    pub fn verify(&self, context: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(context, parts).verify_slice(tag).is_ok()
    }

    /// A document as it is kept in Redis with a key (see [`read_document`]): the magic, the
    /// tag, `ts_ms` (when it was made), then the document.
    pub fn seal_document(&self, context: &[u8], ts_ms: i64, document: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOCUMENT_HEADER + document.len());
        out.extend_from_slice(&DOCUMENT_MAGIC);
        out.extend_from_slice(&[0; TAG_LEN]);
        out.extend_from_slice(&ts_ms.to_be_bytes());
        out.extend_from_slice(document);
        let at = DOCUMENT_MAGIC.len();
        let tag = self.sign(context, &[&out[at + TAG_LEN..]]);
        out[at..at + TAG_LEN].copy_from_slice(&tag);
        out
    }
}

/// The first four bytes of a signed document (a JSON document never starts with a 0x00 byte,
/// so a reader without the key still tells one from the JSON it holds).
pub const DOCUMENT_MAGIC: [u8; 4] = [0x00, b'M', b'S', 0x01];
/// Magic, tag and time stamp.
const DOCUMENT_HEADER: usize = DOCUMENT_MAGIC.len() + TAG_LEN + 8;

/// A document as read from Redis:
///
/// ```text
/// 0x00 'M' 'S' 0x01   magic and version: a signed document
/// [32] tag            HMAC-SHA256 of the key's name and every byte after the tag
/// i64  ts             big-endian: when the producer made it (epoch milliseconds, its clock)
/// document            the JSON, as a producer without a key writes it bare
/// ```
///
/// The time stamp is signed with the document, so an older copy put back in Redis is told
/// from the current one (the reader refuses copies older than the last it took).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document<'a> {
    /// Written by a producer without a key: the JSON itself.
    Plain(&'a [u8]),
    /// Written by a producer with a key.
    Sealed(SealedDocument<'a>),
}

/// A signed document, as read (not yet checked: see [`SealedDocument::verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedDocument<'a> {
    /// When the producer made it (epoch milliseconds, its clock).
    pub ts_ms: i64,
    /// The JSON document.
    pub body: &'a [u8],
    tag: &'a [u8],
    /// The bytes the tag covers (time stamp and document).
    covered: &'a [u8],
}

impl SealedDocument<'_> {
    /// Whether its tag is `key`'s for these bytes under `context` (the key's name).
    pub fn verify(&self, key: &SigningKey, context: &[u8]) -> bool {
        key.verify(context, &[self.covered], self.tag)
    }
}

/// A document that starts as a signed one but is too short to be one.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a signed document shorter than its {DOCUMENT_HEADER}-byte header ({0} bytes)")]
pub struct TruncatedDocument(pub usize);

/// Reads a document kept in Redis: signed when it starts with [`DOCUMENT_MAGIC`], else bare.
pub fn read_document(bytes: &[u8]) -> Result<Document<'_>, TruncatedDocument> {
    let Some(after) = bytes.strip_prefix(&DOCUMENT_MAGIC) else {
        return Ok(Document::Plain(bytes));
    };
    let Some((tag, covered)) = after.split_at_checked(TAG_LEN) else {
        return Err(TruncatedDocument(bytes.len()));
    };
    let Some((ts, body)) = covered.split_first_chunk::<8>() else {
        return Err(TruncatedDocument(bytes.len()));
    };
    Ok(Document::Sealed(SealedDocument {
        ts_ms: i64::from_be_bytes(*ts),
        body,
        tag,
        covered,
    }))
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SigningKey {
        SigningKey::new(&Secret::from(s.to_string())).unwrap()
    }

    #[test]
    fn a_tag_holds_only_for_its_key_context_and_bytes() {
        let k = key("a long shared secret of the deployment");
        let tag = k.sign(b"mc:market", &[b"{\"a\":", b"1}"]);
        assert!(
            k.verify(b"mc:market", &[b"{\"a\":1}"], &tag),
            "split anywhere"
        );
        assert!(
            !k.verify(b"mc:foreign", &[b"{\"a\":1}"], &tag),
            "another channel"
        );
        assert!(
            !k.verify(b"mc:market", &[b"{\"a\":2}"], &tag),
            "other bytes"
        );
        assert!(!key("another key").verify(b"mc:market", &[b"{\"a\":1}"], &tag));
        assert!(
            !k.verify(b"mc:market", &[b"{\"a\":1}"], &tag[..31]),
            "short tag"
        );
        // The context is length-prefixed: moving a byte across the boundary changes the tag.
        assert_ne!(k.sign(b"ab", &[b"c"]), k.sign(b"a", &[b"bc"]));
    }

    #[test]
    fn documents_hold_only_with_their_tag_and_time() {
        let k = key("k");
        let sealed = k.seal_document(b"mc:state", 1_764_000_000_123, b"{\"x\":1}");
        assert!(sealed.starts_with(&DOCUMENT_MAGIC));
        let Ok(Document::Sealed(doc)) = read_document(&sealed) else {
            panic!("a sealed document reads as one");
        };
        assert_eq!(
            (doc.ts_ms, doc.body),
            (1_764_000_000_123, &b"{\"x\":1}"[..])
        );
        assert!(doc.verify(&k, b"mc:state"));
        assert!(!doc.verify(&k, b"mc:other"), "another key name");
        assert!(
            !doc.verify(&key("another"), b"mc:state"),
            "another signing key"
        );
        // Any byte after the magic changed (the tag, the time stamp, the document): forged.
        for at in [4, 4 + TAG_LEN, 4 + TAG_LEN + 7, sealed.len() - 1] {
            let mut forged = sealed.clone();
            forged[at] ^= 1;
            let Ok(Document::Sealed(f)) = read_document(&forged) else {
                panic!("still reads as sealed");
            };
            assert!(!f.verify(&k, b"mc:state"), "byte {at} changed");
        }
        // Bare JSON is a plain document (a producer without a key); cut short is an error.
        assert_eq!(read_document(b"{}"), Ok(Document::Plain(b"{}")));
        for cut in 4..DOCUMENT_HEADER {
            assert_eq!(read_document(&sealed[..cut]), Err(TruncatedDocument(cut)));
        }
        let Ok(Document::Sealed(empty)) = read_document(&sealed[..DOCUMENT_HEADER]) else {
            panic!("a header alone reads (and fails its tag)");
        };
        assert!(!empty.verify(&k, b"mc:state"));
    }

    #[test]
    fn no_key_when_empty_and_never_shown() {
        assert!(SigningKey::new(&Secret::default()).is_none());
        assert_eq!(format!("{:?}", key("hunter2")), "SigningKey(***)");
    }
}
