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
use super::hub::{ClientHandle, ClientSlot, QueueError};

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
            match self.slot.stream().try_read(&mut buf) {
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
            let b = &self.inbuf;
            if b.len() < 2 {
                return Ok(());
            }
            let fin = b[0] & 0x80 != 0;
            let rsv1 = b[0] & 0x40 != 0;
            let opcode = b[0] & 0x0F;
            let masked = b[1] & 0x80 != 0;
            if b[0] & 0x30 != 0 {
                return Err(End::Violation(1002, "reserved bits set"));
            }
            if !masked {
                return Err(End::Violation(1002, "client frames must be masked"));
            }
            match opcode {
                OP_BINARY => return Err(End::Violation(1003, "binary messages are not accepted")),
                OP_TEXT | OP_CONTINUATION | OP_CLOSE | OP_PING | OP_PONG => {}
                _ => return Err(End::Violation(1002, "unknown opcode")),
            }
            if rsv1 && !(self.slot.deflate() && opcode == OP_TEXT) {
                return Err(End::Violation(1002, "unexpected compressed frame"));
            }
            let (len, ext) = match b[1] & 0x7F {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 2),
                127 if b.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&b[2..10]);
                    (u64::from_be_bytes(n), 8)
                }
                126 | 127 => return Ok(()),
                n => (n as u64, 0),
            };
            if opcode >= OP_CLOSE && (!fin || len > 125) {
                return Err(End::Violation(1002, "malformed control frame"));
            }
            let so_far = self.fragment.as_ref().map_or(0, |(p, _)| p.len()) as u64;
            if opcode < OP_CLOSE && so_far + len > self.max_message as u64 {
                return Err(End::Violation(1009, "message too big"));
            }
            let header = 2 + ext + 4;
            let total = header + len as usize;
            if b.len() < total {
                return Ok(());
            }
            let mask = [b[2 + ext], b[3 + ext], b[4 + ext], b[5 + ext]];
            let mut payload: Vec<u8> = b[header..total].to_vec();
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            self.inbuf.drain(..total);
            self.heard = true;
            self.on_frame(fin, rsv1, opcode, payload)?;
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
                        if std::str::from_utf8(&payload[2..]).is_err() || !valid_close_code(code) {
                            return Err(End::Violation(1002, "malformed close frame"));
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
            match tokio::time::timeout_at(deadline, self.slot.stream().writable()).await {
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
        // Ignore errors: the peer may already be gone.
        let _ = socket_shutdown_write(self.slot.stream());
        loop {
            match tokio::time::timeout_at(deadline, self.slot.stream().readable()).await {
                Ok(Ok(())) => match drain(self.slot.stream()) {
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

/// Reads and discards what the socket holds (a plain function, so its buffer is not part of the
/// connection task's state).
fn drain(stream: &tokio::net::TcpStream) -> io::Result<usize> {
    let mut sink = [0u8; 1024];
    stream.try_read(&mut sink)
}

fn socket_shutdown_write(stream: &tokio::net::TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write)
}

/// Close codes a peer may send (RFC 6455 section 7.4).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Inflates one client message compressed without context takeover, refusing output over
/// `limit` bytes (a small message may inflate to a large one).
fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, End> {
    let mut input = Vec::with_capacity(payload.len() + 4);
    input.extend_from_slice(payload);
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(limit + 1);
    match d.decompress_vec(&input, &mut out, FlushDecompress::Sync) {
        Ok(Status::Ok | Status::StreamEnd | Status::BufError) => {}
        Err(_) => return Err(End::Violation(1007, "invalid compressed message")),
    }
    if out.len() > limit || (d.total_in() as usize) < input.len() {
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
    let _ = slot.stream().set_nodelay(true);
    let mut conn = Conn {
        slot,
        max_message: settings.max_message_size,
        inbuf: leftover,
        fragment: None,
        heard: false,
    };

    // The latest snapshot at once, or ask for a fresh one when there is none.
    let now_ms = chrono::Utc::now().timestamp_millis();
    match hub.fresh_latest(now_ms) {
        Some(tick) => slot.offer(&tick, settings.queue_size),
        None => hub.request_tick(),
    }

    let shutdown = hub.shutdown_token().clone();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let heartbeat = tokio::time::sleep(interval);
    tokio::pin!(heartbeat);
    let mut ping_sent_at: Option<Instant> = None;

    let end = loop {
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
            ready = slot.stream().writable(), if want_write => {
                if ready.is_err() {
                    break End::Gone;
                }
            }
            () = slot.woken() => {
                if slot.is_broken() {
                    break End::Gone;
                }
            }
            ready = slot.stream().readable() => {
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
        End::Shutdown => {
            conn.close(Some(frame::close(1001, "server shutting down")))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_a_client_may_send() {
        for ok in [1000, 1001, 1003, 1008, 1011, 3000, 4999] {
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
}
