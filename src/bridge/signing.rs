//! Signatures on what the bridge keeps in Redis (`REDIS_SIGNING_KEY`), so that being able to
//! `PUBLISH` or `SET` there is not enough to speak to every client.
//!
//! Without a key anyone who reaches the broker can put a message in front of every client of
//! every edge. With one, the producer signs each envelope and the REST routes' state document
//! with an HMAC-SHA256 of their bytes, and an edge relays only what carries a valid tag; the
//! rest is dropped and counted. The tag also covers the name of the pub/sub channel or key the
//! bytes were written to, so a signed tick of one channel cannot be replayed on another.
//!
//! The work is once per message on each side (the producer signs a tick once for every edge,
//! an edge checks it once for all its clients), never per client. HMAC and SHA-256 are the
//! RustCrypto crates', and a tag is compared in constant time (`verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

    /// A document as it is kept in Redis with a key: its tag, then the document.
    pub fn seal_document(&self, context: &[u8], document: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_LEN + document.len());
        out.extend_from_slice(&self.sign(context, &[document]));
        out.extend_from_slice(document);
        out
    }

    /// The document inside `sealed` when its tag is right; `None` when it is short or forged.
    pub fn open_document<'a>(&self, context: &[u8], sealed: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, document) = sealed.split_at_checked(TAG_LEN)?;
        self.verify(context, &[document], tag).then_some(document)
    }
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
    fn documents_open_only_with_their_tag() {
        let k = key("k");
        let sealed = k.seal_document(b"mc:state", b"{\"x\":1}");
        assert_eq!(
            k.open_document(b"mc:state", &sealed),
            Some(&b"{\"x\":1}"[..])
        );
        assert_eq!(k.open_document(b"mc:other", &sealed), None);
        let mut forged = sealed.clone();
        *forged.last_mut().unwrap() = b'2';
        assert_eq!(k.open_document(b"mc:state", &forged), None);
        assert_eq!(k.open_document(b"mc:state", b"{}"), None, "too short");
        assert_eq!(
            k.open_document(b"mc:state", b"{\"unsigned\":true,\"padding\":\"...\"}"),
            None
        );
    }

    #[test]
    fn no_key_when_empty_and_never_shown() {
        assert!(SigningKey::new(&Secret::default()).is_none());
        assert_eq!(format!("{:?}", key("hunter2")), "SigningKey(***)");
    }
}
