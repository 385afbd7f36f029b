//! WebSocket frames as the server writes them (RFC 6455 section 5), built once and shared.
//!
//! A tick's message is stamped with `seq` and `ts` ([`super::stamp`]), framed once as a plain
//! text frame and, the first time a client that negotiated permessage-deflate needs it,
//! compressed once into a second frame. Each frame is one contiguous [`Bytes`] (header and
//! payload together), so writing it to a client is a single `write` of shared memory: no
//! per-client copy, no per-client encoder.
//!
//! **Compressed on demand, once.** Whether a tick is wanted compressed is not known when it is
//! built: a deflate client may connect a moment later and be handed that tick as the latest
//! snapshot, or be registered while the tick is being fanned out. So the compressed frame lives
//! in a once-cell on the tick and is made by whoever needs it first (the hub makes it before the
//! fan-out whenever deflate clients are registered). No tick is compressed when nobody wants
//! it, and no deflate client ever gets a plain frame because it arrived at the wrong moment.
//!
//! Compression follows RFC 7692 with `server_no_context_takeover`: every message is compressed
//! from a fresh window, which is what lets one compressed frame serve every client. The
//! compressor itself ([`SharedDeflater`]) is reused from tick to tick (reset, not reallocated).

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::stamp::{leads_with_seq, splice};

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// An empty Ping, the heartbeat. Browsers answer it with a Pong on their own.
pub const PING: &[u8] = &[0x80 | OP_PING, 0];

/// The tail every sync-flushed deflate block ends with; RFC 7692 strips it on the wire.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Appends a server frame header (FIN set, unmasked) for `len` payload bytes.
pub fn put_header(out: &mut Vec<u8>, opcode: u8, compressed: bool, len: usize) {
    let rsv1 = if compressed { 0x40 } else { 0 };
    out.push(0x80 | rsv1 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A complete frame around `payload`.
pub fn frame(opcode: u8, compressed: bool, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    put_header(&mut out, opcode, compressed, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A close frame with a status code and a short reason (truncated to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OP_CLOSE, false, &payload)
}

/// A reusable raw-deflate compressor for permessage-deflate payloads.
pub struct Deflater {
    compress: Compress,
}

impl Deflater {
    /// A compressor at `level` (0-9).
    pub fn new(level: u32) -> Self {
        Deflater {
            compress: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Compresses one message from a fresh window (no context takeover) into the payload of
    /// an RSV1 frame. `None` only if the compressor fails, which a reset compressor does not;
    /// the tick then goes out uncompressed, which RFC 7692 allows message by message.
    pub fn compress_message(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        self.compress.reset();
        let mut out = Vec::with_capacity(input.len() / 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let before_in = self.compress.total_in() as usize;
            let status =
                self.compress
                    .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync);
            consumed += self.compress.total_in() as usize - before_in;
            match status {
                Ok(Status::Ok) | Ok(Status::BufError) | Ok(Status::StreamEnd) => {}
                Err(_) => return None,
            }
            // Done when all input is in and the flush fitted (spare room left over).
            if consumed == input.len() && out.capacity() > out.len() {
                break;
            }
        }
        if out.ends_with(&DEFLATE_TAIL) {
            out.truncate(out.len() - DEFLATE_TAIL.len());
        }
        Some(out)
    }
}

/// Compression level of the shared deflate frame: level 1 keeps per-tick CPU low while JSON
/// snapshots still shrink several times (measured in BENCHMARKS.md).
pub const DEFLATE_LEVEL: u32 = 1;

/// The broadcast loop's compressor, shared with the ticks it builds so that whichever thread
/// first needs a tick compressed can do it. One tick is compressed at a time in practice (the
/// next tick is built a whole interval later), so the lock is never contended for long.
#[derive(Clone)]
pub struct SharedDeflater(Arc<Mutex<Deflater>>);

impl SharedDeflater {
    /// A compressor at `level` (0-9).
    pub fn new(level: u32) -> Self {
        SharedDeflater(Arc::new(Mutex::new(Deflater::new(level))))
    }

    fn compress_message(&self, input: &[u8]) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .compress_message(input)
    }
}

impl std::fmt::Debug for SharedDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedDeflater")
    }
}

/// One broadcast: the stamped message as every client receives it.
#[derive(Debug)]
pub struct Tick {
    /// Which count `seq` belongs to: 0 for ticks made here. A source whose numbering starts
    /// again (an edge whose producers all restarted on an empty Redis) raises it, and a tick of
    /// a later era goes to clients even with a lower `seq`; within an era a `seq` is sent once.
    pub era: u64,
    /// Increments by one per broadcast.
    pub seq: u64,
    /// Epoch milliseconds at which the snapshot was taken.
    pub ts_ms: i64,
    /// The text frame.
    pub plain: Bytes,
    /// Payload size before framing.
    pub payload_len: usize,
    /// Where the compressed frame comes from; `None` when compression is off.
    deflater: Option<SharedDeflater>,
    /// The compressed frame, made the first time a deflate client needs it (`None` inside if
    /// the compressor failed: the tick then goes out plain, which RFC 7692 allows).
    deflated: OnceLock<Option<Bytes>>,
    /// The tick before in the same era (its `seq` and message), set by the hub when it
    /// publishes this one: what a delta is made against.
    base: OnceLock<(u64, Bytes)>,
    /// The delta message, made the first time a delta client needs it; `None` inside when
    /// there is no base or the delta would not be smaller than the full message.
    delta: OnceLock<Option<DeltaFrames>>,
}

/// A tick's delta message, framed once (and compressed once when asked).
#[derive(Debug)]
struct DeltaFrames {
    base_seq: u64,
    /// The binary frame.
    plain: Bytes,
    payload_len: usize,
    deflated: OnceLock<Option<Bytes>>,
}

impl Tick {
    /// Stamps `body` and frames it once. With `deflater`, the compressed frame is made later,
    /// once, by the first caller of [`Tick::deflated`].
    pub fn build(seq: u64, ts_ms: i64, body: &[u8], deflater: Option<SharedDeflater>) -> Tick {
        // The plain frame is written in one pass (header, stamp, body); the compressor reads
        // the payload out of it, so the body is copied once per tick.
        let (prefix, rest) = splice(body, Some(seq), Some(ts_ms));
        let payload_len = prefix.len() + rest.len();
        let mut plain = Vec::with_capacity(payload_len + 10);
        put_header(&mut plain, OP_TEXT, false, payload_len);
        plain.extend_from_slice(&prefix);
        plain.extend_from_slice(rest);
        Tick {
            era: 0,
            seq,
            ts_ms,
            plain: Bytes::from(plain),
            payload_len,
            deflater,
            deflated: OnceLock::new(),
            base: OnceLock::new(),
            delta: OnceLock::new(),
        }
    }

    /// A tick made elsewhere and received whole (an edge's, from the broker): `payload` is the
    /// stamped message exactly as clients receive it, and `deflated` its permessage-deflate
    /// payload when the producer made one (then nothing is compressed here). Without it, and
    /// with `deflater`, the tick is compressed on demand as a local one is.
    pub fn received(
        era: u64,
        seq: u64,
        ts_ms: i64,
        payload: &[u8],
        deflated: Option<&[u8]>,
        deflater: Option<SharedDeflater>,
    ) -> Tick {
        let tick = Tick {
            era,
            seq,
            ts_ms,
            plain: frame(OP_TEXT, false, payload),
            payload_len: payload.len(),
            deflater,
            deflated: OnceLock::new(),
            base: OnceLock::new(),
            delta: OnceLock::new(),
        };
        if let Some(d) = deflated {
            let _ = tick.deflated.set(Some(frame(OP_TEXT, true, d)));
        }
        tick
    }

    /// The stamped message (the plain frame's payload), shared with the frame.
    pub fn payload(&self) -> Bytes {
        self.plain.slice(self.plain.len() - self.payload_len..)
    }

    /// The compressed message (the compressed frame's payload), compressing it now if nobody
    /// has yet; `None` when the tick has no compressor. The same caveat as [`Tick::deflated`].
    pub fn deflated_payload(&self) -> Option<Bytes> {
        let framed = self.deflated()?;
        let header = match framed.get(1).map(|b| b & 0x7f) {
            Some(127) => 10,
            Some(126) => 4,
            _ => 2,
        };
        Some(framed.slice(header.min(framed.len())..))
    }

    /// The compressed frame, compressing the message now if nobody has yet. `None` when the
    /// tick was built without a compressor (or the compressor failed). Callers that hold a
    /// lock other threads wait on must not be the first to call this.
    pub fn deflated(&self) -> Option<&Bytes> {
        // Made already (or received made, with no compressor of its own).
        if let Some(made) = self.deflated.get() {
            return made.as_ref();
        }
        let deflater = self.deflater.as_ref()?;
        self.deflated
            .get_or_init(|| {
                let payload = &self.plain[self.plain.len() - self.payload_len..];
                deflater
                    .compress_message(payload)
                    .map(|compressed| frame(OP_TEXT, true, &compressed))
            })
            .as_ref()
    }

    /// Makes `prev` the tick this one's delta is against, if it is the same era and earlier,
    /// and both messages start with their `seq` (clients keep as a base only a message that
    /// starts `{"seq":N,`; a body from another publisher on an edge may not).
    pub fn set_base(&self, prev: &Tick) {
        if prev.era == self.era
            && prev.seq < self.seq
            && leads_with_seq(&prev.payload(), prev.seq)
            && leads_with_seq(&self.payload(), self.seq)
        {
            let _ = self.base.set((prev.seq, prev.payload()));
        }
    }

    /// The delta message if it was made already (see [`Tick::delta_for`]): compressed for a
    /// deflate client when that was made too, plain otherwise (RFC 7692 lets any message go
    /// uncompressed).
    pub fn ready_delta(&self, deflate: bool) -> Option<(u64, &Bytes)> {
        let frames = self.delta.get()?.as_ref()?;
        if deflate {
            if let Some(Some(z)) = frames.deflated.get() {
                return Some((frames.base_seq, z));
            }
        }
        Some((frames.base_seq, &frames.plain))
    }

    /// The delta message for a client that has the base tick: its base `seq` and its frame
    /// (compressed for a deflate client), made now if nobody needed it yet. `None` when there
    /// is no base, or the delta is not smaller than the full message. The same caveat as
    /// [`Tick::deflated`] about locks.
    pub fn delta_for(&self, deflate: bool) -> Option<(u64, &Bytes)> {
        let frames = self
            .delta
            .get_or_init(|| {
                let (base_seq, base) = self.base.get()?;
                let payload = &self.plain[self.plain.len() - self.payload_len..];
                let d = super::delta::encode(base, payload);
                let message = super::delta::message(self.seq, self.ts_ms, *base_seq, &d);
                (message.len() < payload.len()).then(|| DeltaFrames {
                    base_seq: *base_seq,
                    plain: frame(OP_BINARY, false, &message),
                    payload_len: message.len(),
                    deflated: OnceLock::new(),
                })
            })
            .as_ref()?;
        if deflate {
            let compressed = frames.deflated.get_or_init(|| {
                let deflater = self.deflater.as_ref()?;
                let message = &frames.plain[frames.plain.len() - frames.payload_len..];
                deflater
                    .compress_message(message)
                    .map(|c| frame(OP_BINARY, true, &c))
            });
            if let Some(z) = compressed {
                return Some((frames.base_seq, z));
            }
        }
        Some((frames.base_seq, &frames.plain))
    }

    /// True once the compressed frame exists.
    pub fn is_compressed(&self) -> bool {
        matches!(self.deflated.get(), Some(Some(_)))
    }

    /// The frame for a client: compressed when it negotiated deflate (made now if it is the
    /// first to need it) and the tick can be compressed; plain otherwise.
    pub fn frame_for(&self, deflate: bool) -> &Bytes {
        if deflate {
            if let Some(d) = self.deflated() {
                return d;
            }
        }
        &self.plain
    }
}

#[cfg(test)]
mod tests {
    use super::super::stamp::stamp;
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&DEFLATE_TAIL);
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(payload.len() * 20 + 1024);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn headers_use_the_three_length_forms() {
        for (len, header) in [
            (5usize, vec![0x81, 5]),
            (126, vec![0x81, 126, 0, 126]),
            (70_000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ] {
            let f = frame(OP_TEXT, false, &vec![b'a'; len]);
            assert_eq!(&f[..header.len()], &header[..]);
            assert_eq!(f.len(), header.len() + len);
        }
        assert_eq!(frame(OP_TEXT, true, b"x")[0], 0xC1);
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let c = close(1009, "message too big");
        assert_eq!(c[0], 0x88);
        assert_eq!(c[1] as usize, 2 + "message too big".len());
        assert_eq!(u16::from_be_bytes([c[2], c[3]]), 1009);
        let long = "é".repeat(100);
        assert!(close(1000, &long).len() <= 2 + 125);
    }

    #[test]
    fn compression_round_trips_and_is_reused_without_context() {
        let mut d = Deflater::new(6);
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/snapshot-small.json"
        ))
        .unwrap();
        let first = d.compress_message(&body).unwrap();
        let second = d.compress_message(&body).unwrap();
        assert_eq!(
            first, second,
            "no context carried from one message to the next"
        );
        assert!(
            first.len() * 4 < body.len(),
            "{} vs {}",
            first.len(),
            body.len()
        );
        assert_eq!(inflate(&first), body);
        assert_eq!(inflate(&d.compress_message(b"").unwrap()), b"");
    }

    #[test]
    fn tick_frames_plain_and_deflated() {
        let d = SharedDeflater::new(1);
        let t = Tick::build(3, 10, br#"{"a":1}"#, Some(d.clone()));
        assert_eq!(&t.plain[2..], br#"{"seq":3,"ts":10,"a":1}"#);
        assert!(
            !t.is_compressed(),
            "nothing is compressed until someone needs it"
        );
        assert_eq!(t.frame_for(false), &t.plain);
        assert!(
            !t.is_compressed(),
            "a plain client does not cause compression"
        );
        let deflated = t.frame_for(true).clone();
        assert!(t.is_compressed());
        assert_eq!(deflated[0], 0xC1);
        assert_eq!(inflate(&deflated[2..]), br#"{"seq":3,"ts":10,"a":1}"#);
        // Compressed once: every later caller gets the same bytes, the same allocation.
        assert_eq!(t.deflated().unwrap().as_ptr(), deflated.as_ptr());
        let plain_only = Tick::build(4, 10, b"{}", None);
        assert_eq!(plain_only.frame_for(true), &plain_only.plain);
        assert!(plain_only.deflated().is_none());
    }

    #[test]
    fn a_received_tick_serves_the_bytes_it_was_given() {
        let d = SharedDeflater::new(1);
        let made = Tick::build(5, 77, br#"{"a":[1,2,3]}"#, Some(d.clone()));
        let (payload, deflated) = (made.payload(), made.deflated_payload().unwrap());
        assert_eq!(&payload[..], br#"{"seq":5,"ts":77,"a":[1,2,3]}"#);
        let got = Tick::received(0, 5, 77, &payload, Some(&deflated), None);
        assert_eq!(
            got.plain, made.plain,
            "the plain frame is the producer's, byte for byte"
        );
        assert_eq!(
            got.frame_for(true),
            made.frame_for(true),
            "and so is the compressed one"
        );
        assert_eq!(got.payload(), payload);
        // No compressed copy given: compressed here on demand, to the same bytes.
        let local = Tick::received(0, 5, 77, &payload, None, Some(d));
        assert_eq!(local.frame_for(true), made.frame_for(true));
        let plain_only = Tick::received(0, 5, 77, &payload, None, None);
        assert_eq!(plain_only.frame_for(true), &made.plain);
        assert!(plain_only.deflated_payload().is_none());
        // A long message keeps its 64-bit length header out of the payload.
        let big = vec![b' '; 70_000];
        let t = Tick::received(0, 1, 1, &big, Some(&big), None);
        assert_eq!(t.payload().len(), 70_000);
        assert_eq!(t.deflated_payload().unwrap().len(), 70_000);
    }

    #[test]
    fn a_delta_rebuilds_the_next_message_byte_for_byte() {
        let d = SharedDeflater::new(1);
        let body = |n: u32| {
            let points: Vec<String> = (0..n).map(|i| (i * 7919 % 10_007).to_string()).collect();
            format!("{{\"points\":[{}]}}", points.join(","))
        };
        let first = Tick::build(1, 10, body(300).as_bytes(), Some(d.clone()));
        let second = Tick::build(2, 11, body(301).as_bytes(), Some(d.clone()));
        assert!(second.delta_for(false).is_none(), "no base, no delta");
        let third = Tick::build(3, 12, body(302).as_bytes(), Some(d));
        third.set_base(&second);
        third.set_base(&first); // the first base set stays
        let (base, framed) = third.delta_for(false).expect("a delta");
        assert_eq!(base, 2);
        assert_eq!(framed[0], 0x82, "a binary frame");
        let body_of = |f: &Bytes| -> Vec<u8> {
            let at = match f[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            f[at..].to_vec()
        };
        let message = body_of(framed);
        let (header, delta) = super::super::delta::parse(&message).unwrap();
        assert_eq!((header.seq, header.ts, header.base), (3, 12, 2));
        let rebuilt = super::super::delta::apply(&second.payload(), delta).unwrap();
        assert_eq!(rebuilt, &third.payload()[..]);
        let (_, zipped) = third.delta_for(true).unwrap();
        assert_eq!(zipped[0], 0xC2, "compressed binary");
        assert_eq!(inflate(&body_of(zipped)), message);
        assert_eq!(third.ready_delta(true).unwrap().1, zipped);
        // A later era, or an earlier seq, is no base.
        let other = Tick::received(1, 4, 0, b"{}", None, None);
        other.set_base(&third);
        assert!(other.delta_for(false).is_none());
        // Nor a message that does not start with its seq (a foreign body on an edge).
        let foreign = Tick::received(0, 4, 0, br#"{"ts":1,"seq":4,"points":[]}"#, None, None);
        foreign.set_base(&third);
        assert!(foreign.delta_for(false).is_none());
        let after = Tick::build(5, 13, body(303).as_bytes(), None);
        after.set_base(&foreign);
        assert!(after.delta_for(false).is_none());
    }

    #[test]
    fn a_large_tick_compresses_exactly_its_payload() {
        let d = SharedDeflater::new(1);
        // Numbers, not one repeated byte: the test's inflate buffer assumes at most 20:1.
        let numbers: Vec<String> = (0..12_000u32)
            .map(|i| (i * 7919 % 100_003).to_string())
            .collect();
        let body = format!("{{\"n\":[{}]}}", numbers.join(","));
        assert!(body.len() > 65_535, "needs the 64-bit length form");
        let t = Tick::build(9, 1, body.as_bytes(), Some(d));
        let deflated = t.deflated().unwrap();
        let header = match deflated[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let payload = &deflated[header..];
        let expected = stamp(body.as_bytes(), 9, 1);
        assert_eq!(inflate(payload), expected);
        assert_eq!(&t.plain[t.plain.len() - t.payload_len..], &expected[..]);
    }
}
