//! One client's connection: its task, from the upgraded socket to the close.
//!
//! Ticks are written by the hub's fan-out, not here (see [`super::hub`]). Each client's task
//! sleeps until one of four things happens: the client sends a frame, its outbox needs the
//! socket (the fan-out could not write a whole frame), its heartbeat timer fires, or the server
//! shuts down. A client that keeps up therefore never wakes its task for a tick at all.
//!
//! The task holds no buffer between ticks: outgoing frames are shared [`Bytes`] from the tick,
//! and the read buffer exists only while a client frame is half received. That is what keeps an
//! idle connection to a few hundred bytes of user memory.
//!
//! Client frames are parsed here (RFC 6455 section 5): masked, at most `max_message_size`
//! bytes a message (else close 1009), text only (binary closes with 1003), valid UTF-8 (else
//! 1007), control frames answered (Ping gets Pong, Close gets Close). The text
//! `{"type":"ping"}` is answered with `{"type":"pong"}`; any other text is ignored: the stream
//! has no subscriptions. Any frame from the client proves it alive for the heartbeat.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use serde::Deserialize;
use tokio::time::Instant;

use super::frame::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, PING};
use super::hub::ClientHandle;
use super::outbox::{ClientSlot, QueueError, SLOW_CLIENT_CLOSE};
use super::settings::Greeting;
use super::stats::EndReason;
use super::wire::Wire;

/// Reads handled per wake-up before yielding to other clients.
const MAX_READS_PER_WAKE: usize = 16;
/// How long a closing handshake may take (flushing our Close, draining theirs).
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed TCP or the socket failed.
    Gone,
    /// The client sent Close; this is our reply.
    ClientClosed(Bytes),
    /// The client broke the protocol or a limit.
    Violation(u16, &'static str),
    /// No frame from the client within the heartbeat timeout after a Ping.
    HeartbeatTimeout,
    /// Its outbox stayed full past the slow-client timeout.
    SlowClient,
    /// The server is shutting down.
    Shutdown,
}

struct Conn<'a> {
    slot: &'a ClientSlot,
    max_message: usize,
    /// Bytes of a partly received client frame (empty, unallocated, most of the time).
    inbuf: Vec<u8>,
    /// A fragmented text message being assembled: payload so far and its compressed flag.
    fragment: Option<(Vec<u8>, bool)>,
    /// Set when any frame arrived since the last check.
    heard: bool,
}

#[derive(Deserialize)]
struct AppMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

/// The reply to an application-level `{"type":"ping"}`.
const APP_PONG: &[u8] = br#"{"type":"pong"}"#;

impl Conn<'_> {
    fn queue_control(&mut self, frame: Bytes) -> Result<(), End> {
        match self.slot.send_control(frame) {
            Ok(()) => Ok(()),
            Err(QueueError::ControlOverflow) => {
                Err(End::Violation(1008, "too many unanswered control frames"))
            }
            Err(QueueError::Closed) => Err(End::Gone),
        }
    }

    /// Reads and handles what the client sent.
    fn on_readable(&mut self) -> Result<(), End> {
        let mut buf = [0u8; 2048];
        for _ in 0..MAX_READS_PER_WAKE {
            match self.slot.wire().try_read(&mut buf) {
                Ok(0) => return Err(End::Gone),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.parse_frames()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(End::Gone),
            }
        }
        if self.inbuf.is_empty() {
            // Give the allocation back: most clients send a frame every 30 s at most.
            self.inbuf = Vec::new();
        }
        Ok(())
    }

    fn parse_frames(&mut self) -> Result<(), End> {
        loop {
            let so_far = self.fragment.as_ref().map_or(0, |(p, _)| p.len());
            let read =
                read_client_frame(&self.inbuf, self.slot.deflate(), so_far, self.max_message)
                    .map_err(|(code, reason)| End::Violation(code, reason))?;
            let Some((frame, consumed)) = read else {
                return Ok(());
            };
            self.inbuf.drain(..consumed);
            self.heard = true;
            self.on_frame(frame.fin, frame.rsv1, frame.opcode, frame.payload)?;
        }
    }

    fn on_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: Vec<u8>) -> Result<(), End> {
        match opcode {
            OP_TEXT => {
                if self.fragment.is_some() {
                    return Err(End::Violation(1002, "new message inside a fragmented one"));
                }
                if fin {
                    self.on_message(payload, rsv1)
                } else {
                    self.fragment = Some((payload, rsv1));
                    Ok(())
                }
            }
            OP_CONTINUATION => {
                let Some((mut so_far, compressed)) = self.fragment.take() else {
                    return Err(End::Violation(1002, "continuation without a message"));
                };
                so_far.extend_from_slice(&payload);
                if fin {
                    self.on_message(so_far, compressed)
                } else {
                    self.fragment = Some((so_far, compressed));
                    Ok(())
                }
            }
            OP_PING => self.queue_control(frame::frame(OP_PONG, false, &payload)),
            OP_PONG => Ok(()),
            OP_CLOSE => {
                let reply = match payload.len() {
                    0 => frame::close(1000, ""),
                    1 => return Err(End::Violation(1002, "malformed close frame")),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !valid_close_code(code) {
                            return Err(End::Violation(1002, "invalid close code"));
                        }
                        if std::str::from_utf8(&payload[2..]).is_err() {
                            return Err(End::Violation(1007, "close reason is not valid UTF-8"));
                        }
                        frame::close(code, "")
                    }
                };
                Err(End::ClientClosed(reply))
            }
            _ => Err(End::Violation(1002, "unknown opcode")),
        }
    }

    fn on_message(&mut self, payload: Vec<u8>, compressed: bool) -> Result<(), End> {
        let payload = if compressed {
            inflate(&payload, self.max_message)?
        } else {
            payload
        };
        let text = std::str::from_utf8(&payload)
            .map_err(|_| End::Violation(1007, "text message is not valid UTF-8"))?;
        let is_ping = serde_json::from_str::<AppMessage<'_>>(text)
            .is_ok_and(|m| m.kind.as_deref() == Some("ping"));
        if is_ping {
            self.queue_control(frame::frame(OP_TEXT, false, APP_PONG))?;
        }
        Ok(())
    }

    /// Flushes everything queued, waiting for the socket up to `deadline`.
    async fn flush_until(&mut self, deadline: Instant) -> bool {
        loop {
            if !self.slot.flush() {
                return false;
            }
            if !self.slot.has_pending() {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.slot.wire().tcp().writable()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Sends a Close frame (after any frame half written), then half-closes and reads until
    /// the client closes too, so the client sees our Close rather than a reset.
    async fn close(&mut self, close: Option<Bytes>) {
        let deadline = Instant::now() + CLOSE_GRACE;
        self.slot.close_with(close);
        if !self.flush_until(deadline).await {
            return;
        }
        // TLS ends with a close_notify, sent whole before the half-close.
        if self.slot.wire().is_tls() {
            self.slot.wire().close_notify();
            if !self.flush_until(deadline).await {
                return;
            }
        }
        // Ignore errors: the peer may already be gone.
        let _ = self.slot.wire().shutdown_write();
        loop {
            match tokio::time::timeout_at(deadline, self.slot.wire().tcp().readable()).await {
                Ok(Ok(())) => match drain(self.slot.wire()) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                },
                _ => return,
            }
        }
    }
}

/// One frame from a client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    /// The permessage-deflate bit (allowed on the first frame of a message of a deflate client).
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads one client frame off the front of `buf` (RFC 6455 section 5.2): `Ok(None)` while more
/// bytes are needed, the frame and the bytes it took, or the close code and reason the frame
/// deserves. `fragment_len` is the size of the fragmented message being assembled, so the
/// message limit (`max_message`, 1009) is enforced before a byte of an oversized frame is
/// buffered. A pure function, fuzzed in `fuzz/` and `tests/parsers_never_panic.rs`.
pub fn read_client_frame(
    buf: &[u8],
    deflate: bool,
    fragment_len: usize,
    max_message: usize,
) -> Result<Option<(ClientFrame, usize)>, (u16, &'static str)> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv1 = buf[0] & 0x40 != 0;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    if buf[0] & 0x30 != 0 {
        return Err((1002, "reserved bits set"));
    }
    if !masked {
        return Err((1002, "client frames must be masked"));
    }
    match opcode {
        OP_BINARY => return Err((1003, "binary messages are not accepted")),
        OP_TEXT | OP_CONTINUATION | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err((1002, "unknown opcode")),
    }
    if rsv1 && !(deflate && opcode == OP_TEXT) {
        return Err((1002, "unexpected compressed frame"));
    }
    let (len, ext) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2),
        127 if buf.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(n), 8)
        }
        126 | 127 => return Ok(None),
        n => (n as u64, 0),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err((1002, "malformed control frame"));
    }
    if opcode < OP_CLOSE && (fragment_len as u64).saturating_add(len) > max_message as u64 {
        return Err((1009, "message too big"));
    }
    let header = 2 + ext + 4;
    // `len` fits: it is at most `max_message` (data) or 125 (control).
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mask = [buf[2 + ext], buf[3 + ext], buf[4 + ext], buf[5 + ext]];
    let mut payload = buf[header..total].to_vec();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(Some((
        ClientFrame {
            fin,
            rsv1,
            opcode,
            payload,
        },
        total,
    )))
}

/// Reads and discards what the socket holds (a plain function, so its buffer is not part of the
/// connection task's state).
fn drain(wire: &Wire) -> io::Result<usize> {
    let mut sink = [0u8; 1024];
    wire.try_read(&mut sink)
}

/// Close codes a peer may send (RFC 6455 section 7.4, and IANA's registry: 1012 service
/// restart, 1013 try again later, 1014 bad gateway).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The first output buffer of [`inflate`]: a few times the input, grown as needed, so a short
/// message does not allocate the whole `WS_MAX_MESSAGE_SIZE`.
const INFLATE_FIRST: usize = 256;

/// Inflates one client message compressed without context takeover, refusing output over
/// `limit` bytes (a small message may inflate to a large one). The output grows by doubling
/// up to `limit + 1` bytes, never past it.
fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, End> {
    let mut input = Vec::with_capacity(payload.len() + 4);
    input.extend_from_slice(payload);
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut d = Decompress::new(false);
    let first = payload.len().saturating_mul(4).max(INFLATE_FIRST);
    let mut out = Vec::with_capacity(first.min(limit + 1));
    loop {
        let (consumed, produced) = (d.total_in() as usize, out.len());
        match d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
            Ok(Status::Ok | Status::StreamEnd | Status::BufError) => {}
            Err(_) => return Err(End::Violation(1007, "invalid compressed message")),
        }
        if out.len() > limit {
            return Err(End::Violation(1009, "message too big"));
        }
        let progressed = d.total_in() as usize > consumed || out.len() > produced;
        let full = out.len() == out.capacity();
        // Done when all the input is in and the output had room to spare (nothing pending).
        if !progressed || (d.total_in() as usize >= input.len() && !full) {
            break;
        }
        if full {
            let grown = (out.capacity() * 2).min(limit + 1);
            out.reserve_exact(grown - out.len());
        }
    }
    if (d.total_in() as usize) < input.len() {
        return Err(End::Violation(1009, "message too big"));
    }
    Ok(out)
}

/// Serves one registered client until it leaves, breaks the protocol, times out, or the server
/// shuts down. `leftover` holds any bytes the HTTP layer read past the handshake.
pub async fn serve(client: ClientHandle, leftover: Vec<u8>) {
    let hub = client.hub().clone();
    let slot = client.slot();
    let settings = hub.settings();
    let (interval, timeout) = (settings.heartbeat_interval, settings.heartbeat_timeout);
    let _ = slot.wire().tcp().set_nodelay(true);
    let mut conn = Conn {
        slot,
        max_message: settings.max_message_size,
        inbuf: leftover,
        fragment: None,
        heard: false,
    };

    match &settings.greeting {
        // The latest snapshot at once, or ask for a fresh one when there is none.
        Greeting::Latest => {
            let now_ms = chrono::Utc::now().timestamp_millis();
            match hub.fresh_latest(now_ms) {
                Some(tick) => slot.offer(&tick, settings.queue_size),
                None => hub.request_tick(),
            }
        }
        Greeting::Last => {
            if let Some(tick) = hub.latest() {
                slot.offer(&tick, settings.queue_size);
            }
        }
        Greeting::Made(make) => {
            if let Some(text) = make() {
                let _ = slot.send_control(frame::frame(OP_TEXT, false, &text));
            }
        }
    }

    let shutdown = hub.closing();
    let cancelled = shutdown.recv();
    tokio::pin!(cancelled);
    let heartbeat = tokio::time::sleep(interval);
    tokio::pin!(heartbeat);
    let mut ping_sent_at: Option<Instant> = None;

    // What a TLS client sent right behind its upgrade request may already sit decrypted inside
    // rustls, where the socket's readiness would never announce it.
    let early = if slot.wire().is_tls() {
        conn.on_readable().err()
    } else {
        None
    };
    let end = loop {
        if let Some(end) = early {
            break end;
        }
        if !slot.flush() {
            break End::Gone;
        }
        if !conn.inbuf.is_empty() {
            if let Err(end) = conn.parse_frames() {
                break end;
            }
        }
        if conn.heard {
            conn.heard = false;
            if let Some(at) = ping_sent_at.take() {
                heartbeat.as_mut().reset(at + interval);
            }
        }
        let want_write = slot.has_pending();
        tokio::select! {
            biased;
            _ = &mut cancelled => break End::Shutdown,
            ready = slot.wire().tcp().writable(), if want_write => {
                if ready.is_err() {
                    break End::Gone;
                }
            }
            () = slot.woken() => {
                if slot.is_broken() {
                    break End::Gone;
                }
                if slot.is_slow() {
                    break End::SlowClient;
                }
            }
            ready = slot.wire().tcp().readable() => {
                if ready.is_err() {
                    break End::Gone;
                }
                if let Err(end) = conn.on_readable() {
                    break end;
                }
            }
            () = &mut heartbeat => {
                if ping_sent_at.is_some() {
                    break End::HeartbeatTimeout;
                }
                let now = Instant::now();
                ping_sent_at = Some(now);
                heartbeat.as_mut().reset(now + timeout);
                if let Err(end) = conn.queue_control(Bytes::from_static(PING)) {
                    break end;
                }
            }
        }
    };

    slot.set_end_reason(match end {
        End::Gone | End::ClientClosed(_) => EndReason::Client,
        End::Violation(..) => EndReason::Protocol,
        End::HeartbeatTimeout => EndReason::HeartbeatTimeout,
        End::SlowClient => EndReason::SlowClient,
        End::Shutdown => EndReason::Shutdown,
    });
    match end {
        End::Gone => {}
        End::ClientClosed(reply) => conn.close(Some(reply)).await,
        End::Violation(code, reason) => {
            hub.note_protocol_close();
            tracing::debug!(client = slot.id(), code, reason, "closing client");
            conn.close(Some(frame::close(code, reason))).await;
        }
        End::HeartbeatTimeout => {
            hub.note_heartbeat_timeout();
            tracing::debug!(client = slot.id(), "heartbeat timeout");
            conn.close(Some(frame::close(1011, "heartbeat timeout")))
                .await;
        }
        End::SlowClient => {
            hub.note_slow_client_close();
            tracing::debug!(client = slot.id(), "closing a slow client");
            conn.close(Some(frame::close(
                SLOW_CLIENT_CLOSE,
                "slow client: could not keep up",
            )))
            .await;
        }
        End::Shutdown => {
            conn.close(Some(frame::close(1001, "server shutting down")))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn client_frames_are_read_whole_or_refused_with_their_code() {
        let f = masked(0x81, b"hello");
        for cut in 0..f.len() {
            assert_eq!(
                read_client_frame(&f[..cut], false, 0, 4096),
                Ok(None),
                "{cut}"
            );
        }
        let (frame, used) = read_client_frame(&f, false, 0, 4096).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.fin, used), (OP_TEXT, true, f.len()));
        assert_eq!(frame.payload, b"hello");
        let long = masked(0x81, &[b'a'; 300]);
        assert_eq!(
            read_client_frame(&long, false, 0, 4096).unwrap().unwrap().1,
            long.len()
        );
        // Refusals, before the payload has arrived.
        let code = |bytes: &[u8]| read_client_frame(bytes, false, 0, 256).unwrap_err().0;
        assert_eq!(code(&[0x81, 0x05]), 1002, "unmasked");
        assert_eq!(code(&[0xA1, 0x80]), 1002, "RSV2");
        assert_eq!(code(&[0xC1, 0x80]), 1002, "RSV1 without deflate");
        assert_eq!(code(&[0x83, 0x80]), 1002, "reserved opcode");
        assert_eq!(code(&[0x82, 0x80]), 1003, "binary");
        assert_eq!(code(&[0x09, 0x80]), 1002, "fragmented ping");
        assert_eq!(code(&[0x89, 0xFE, 0, 126]), 1002, "long ping");
        assert_eq!(code(&[0x81, 0xFF, 0, 0, 0, 0, 0, 0, 1, 1]), 1009, "too big");
        assert_eq!(
            code(&[0x81, 0xFF, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            1009
        );
        // The limit counts the fragments already received.
        assert_eq!(
            read_client_frame(&masked(0x80, &[b'a'; 100]), false, 200, 256)
                .unwrap_err()
                .0,
            1009
        );
        assert!(read_client_frame(&masked(0xC1, b"x"), true, 0, 256).is_ok());
    }

    #[test]
    fn close_codes_a_client_may_send() {
        for ok in [1000, 1001, 1003, 1008, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert!(!valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn inflate_refuses_a_bomb() {
        let mut d = frame::Deflater::new(9);
        let small = d.compress_message(&[b'a'; 100]).unwrap();
        assert_eq!(
            inflate(&small, 4096).map_err(|_| ()).unwrap(),
            vec![b'a'; 100]
        );
        let bomb = d.compress_message(&vec![b'a'; 100_000]).unwrap();
        assert!(bomb.len() < 4096);
        assert!(matches!(inflate(&bomb, 4096), Err(End::Violation(1009, _))));
        assert!(matches!(
            inflate(b"\xff\xff\xff", 4096),
            Err(End::Violation(1007, _))
        ));
    }

    #[test]
    fn inflate_grows_its_buffer_only_as_the_message_needs() {
        let mut d = frame::Deflater::new(9);
        let limit = 1 << 20;
        // A short message under a large limit: a small buffer, not the limit's.
        let short = d.compress_message(b"{\"type\":\"ping\"}").unwrap();
        let out = inflate(&short, limit).map_err(|_| ()).unwrap();
        assert_eq!(out, b"{\"type\":\"ping\"}");
        assert!(out.capacity() <= INFLATE_FIRST, "{}", out.capacity());
        // A message that inflates far past its compressed size still comes out whole...
        let text: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 7) as u8).collect();
        let packed = d.compress_message(&text).unwrap();
        assert!(packed.len() * 4 < text.len());
        assert_eq!(inflate(&packed, limit).map_err(|_| ()).unwrap(), text);
        // ...and exactly at the limit it fits, one byte over it does not.
        assert_eq!(
            inflate(&packed, text.len()).map_err(|_| ()).unwrap().len(),
            text.len()
        );
        assert!(matches!(
            inflate(&packed, text.len() - 1),
            Err(End::Violation(1009, _))
        ));
    }
}
