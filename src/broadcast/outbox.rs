//! One client's outbox and the queue policy that decides, for that client alone, what happens
//! to each tick: written at once, queued, dropped, or sent as a delta instead of in full.
//!
//! **A client that keeps up costs one write.** The fan-out offers each tick to each client's
//! [`ClientSlot`]; when nothing is pending, the shared frame goes straight into the socket with
//! one non-blocking `write`: no task wake-up, no channel, no copy, no allocation.
//!
//! **A client that falls behind gets a bounded outbox.** When the kernel does not take the whole
//! frame, the rest stays in the client's outbox and its task is woken to finish it when the
//! socket drains. Further ticks queue behind it, at most `WS_QUEUE_SIZE` of them; when the outbox
//! is full the oldest tick not yet started is dropped (counted for the client and in total). The
//! outbox holds shared `Bytes`, so a slow client pins at most `WS_QUEUE_SIZE` references to frames
//! that exist anyway, and never slows the fan-out: its write attempt is skipped while it is behind.
//!
//! Control frames (Ping, Pong, Close, the app-level pong) go through the same outbox, so frames
//! never interleave on the wire; at most [`MAX_QUEUED_CONTROL`] may wait.
//!
//! **A client that stays behind is closed.** When its outbox has been full for
//! `WS_SLOW_CLIENT_TIMEOUT` (no tick written in all that time while new ones keep being
//! dropped), the fan-out marks it slow and wakes its task, which closes it with
//! [`SLOW_CLIENT_CLOSE`]. Below that bound drop-oldest stays the policy. The check costs one
//! clock read per tick for a client that is already full, nothing for the others.
//!
//! **A delta only when it applies.** A client that takes deltas gets one only when its last
//! message is the delta's base and nothing is waiting (so nothing between the two can be
//! dropped), and a full message anyway every `delta_full_every` ticks, at a tick of its own.
//!
//! The outbox sits behind a `std::sync::Mutex`, not an async one: it is held only for a few
//! non-blocking steps (never across an `.await`, never while compressing), by the fan-out
//! thread that writes to this client or by the client's own task, so it is almost never
//! contended and locking it costs an uncontended atomic or two.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::Notify;

use super::frame::Tick;
use super::stats::{ClientCounters, EndReason};
use super::wire::Wire;

/// Control frames a client may have waiting before it counts as abusive.
pub const MAX_QUEUED_CONTROL: usize = 16;

/// Close code for a client closed for staying behind (private-use range, RFC 6455 7.4.2;
/// the number echoes HTTP's 408, a timeout).
pub const SLOW_CLIENT_CLOSE: u16 = 4008;

#[derive(Debug)]
struct Pending {
    bytes: Bytes,
    /// A tick (counted as sent when done, droppable while not started), or a control frame.
    tick: bool,
    started: bool,
}

/// Frames waiting for a client's socket.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Pending>,
    ticks: usize,
    controls: usize,
    /// Highest tick (era, seq) accepted, so the connect-time snapshot and the fan-out never
    /// send one twice (see [`Tick::era`]).
    last: (u64, u64),
    /// No more frames: the socket failed or the connection is closing.
    closed: bool,
    /// The socket failed.
    broken: bool,
    /// Since when the outbox has been full with nothing written.
    full_since: Option<std::time::Instant>,
    /// Full for longer than the slow-client timeout: the task closes the client.
    slow: bool,
}

impl Outbox {
    fn push_control(&mut self, frame: Bytes) {
        self.frames.push_back(Pending {
            bytes: frame,
            tick: false,
            started: false,
        });
        self.controls += 1;
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Too many control frames waiting: the client sends faster than it reads.
    ControlOverflow,
    /// The connection is closing or broken.
    Closed,
}

/// What the fan-out and a client's own task share.
pub struct ClientSlot {
    id: u64,
    peer: SocketAddr,
    deflate: bool,
    /// Takes delta messages (`?delta=fossil`).
    delta: bool,
    /// Gets a full message anyway every this many ticks (at least 1).
    full_every: u64,
    slow_after: Option<Duration>,
    wire: Wire,
    outbox: Mutex<Outbox>,
    /// Wakes the client's task when its outbox needs the socket (or broke).
    wake: Notify,
    counters: ClientCounters,
    /// Why the connection is ending ([`EndReason`] as a number), counted when it leaves.
    end: std::sync::atomic::AtomicU8,
}

impl ClientSlot {
    /// A client with an empty outbox, counted as ending for [`EndReason::Client`] until told
    /// otherwise. `full_every` is at least 1.
    pub(super) fn new(
        id: u64,
        peer: SocketAddr,
        deflate: bool,
        delta: bool,
        full_every: u64,
        slow_after: Option<Duration>,
        wire: Wire,
    ) -> ClientSlot {
        ClientSlot {
            id,
            peer,
            deflate,
            delta,
            full_every,
            slow_after,
            wire,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            counters: ClientCounters::default(),
            end: std::sync::atomic::AtomicU8::new(EndReason::Client as u8),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the client connected from.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the client takes delta messages.
    pub(super) fn takes_delta(&self) -> bool {
        self.delta
    }

    /// Why the connection is ending, as set by [`ClientSlot::set_end_reason`] (a number, in
    /// the order of [`EndReason::ALL`]).
    pub(super) fn end_reason_index(&self) -> usize {
        self.end.load(Ordering::Relaxed) as usize
    }

    /// Frames waiting in the outbox.
    pub(super) fn queued(&self) -> usize {
        self.outbox().frames.len()
    }

    /// Wakes the client's task to finish what its socket did not take.
    pub(super) fn wake_task(&self) {
        self.wake.notify_one();
    }

    /// The client's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the client receives compressed frames.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The socket, plain or TLS.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Records why the connection is ending (counted by reason when the client leaves).
    pub fn set_end_reason(&self, reason: EndReason) {
        self.end.store(reason as u8, Ordering::Relaxed);
    }

    /// The client's counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Resolves when the outbox needs attention from the client's task.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Offers a tick: written at once when the client has nothing pending, queued otherwise
    /// (dropping the oldest queued tick beyond `queue_size`).
    ///
    /// A deflate client that is the first to need this tick compressed compresses it here,
    /// before its outbox is locked: neither its own task nor the fan-out ever waits on a
    /// compressor while holding a client's lock.
    pub fn offer(&self, tick: &Tick, queue_size: usize) {
        let full = tick.frame_for(self.deflate);
        // Only a delta made already (by the hub, before the fan-out): a client that could use
        // one has had the tick before, when the delta was made for the clients then.
        let delta = if self.delta {
            tick.ready_delta(self.deflate)
        } else {
            None
        };
        let mut ob = self.outbox();
        if ob.closed || (tick.era, tick.seq) <= ob.last {
            return;
        }
        // The delta only to a client whose last message is its base and whose socket has
        // nothing waiting (then nothing between the two can be dropped), and, as a safety net,
        // a full message every `delta_full_every` ticks: at a tick of the client's own, so the
        // full messages of thousands of clients are spread over the interval, not sent at once.
        let frame = match delta {
            Some((base, d))
                if ob.frames.is_empty()
                    && ob.last == (tick.era, base)
                    && (tick.seq + self.id) % self.full_every != 0 =>
            {
                d
            }
            _ => full,
        };
        // `last` is the last tick the client holds or will: put back if this one is dropped.
        let before = ob.last;
        ob.last = (tick.era, tick.seq);
        if ob.frames.is_empty() {
            match self.wire.try_write(frame) {
                Ok(n) if n == frame.len() => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if self.wire.has_buffered_output() {
                        // TLS took the frame but the socket not all of its records: the task
                        // sends the rest when the socket drains.
                        drop(ob);
                        self.wake.notify_one();
                    }
                    return;
                }
                Ok(n) => {
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    ob.frames.push_back(Pending {
                        bytes: frame.slice(n..),
                        tick: true,
                        started: n > 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ob.frames.push_back(Pending {
                    bytes: frame.clone(),
                    tick: true,
                    started: false,
                }),
                Err(_) => {
                    ob.closed = true;
                    ob.broken = true;
                    drop(ob);
                    self.wake.notify_one();
                    return;
                }
            }
            ob.ticks += 1;
            drop(ob);
            // The task finishes the write when the socket drains.
            self.wake.notify_one();
            return;
        }
        if ob.ticks >= queue_size {
            if let Some(limit) = self.slow_after {
                let now = std::time::Instant::now();
                let since = *ob.full_since.get_or_insert(now);
                if !ob.slow && now.duration_since(since) >= limit {
                    ob.slow = true;
                    self.wake.notify_one();
                }
            }
            // Drop the oldest tick that has not started; a started one must be finished.
            if let Some(pos) = ob.frames.iter().position(|p| p.tick && !p.started) {
                ob.frames.remove(pos);
                ob.ticks -= 1;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                ob.last = before;
                return;
            }
        }
        ob.frames.push_back(Pending {
            bytes: frame.clone(),
            tick: true,
            started: false,
        });
        ob.ticks += 1;
    }

    /// Queues a control frame and writes what the socket takes now.
    pub fn send_control(&self, frame: Bytes) -> Result<(), QueueError> {
        let mut ob = self.outbox();
        if ob.closed {
            return Err(QueueError::Closed);
        }
        if ob.controls >= MAX_QUEUED_CONTROL {
            return Err(QueueError::ControlOverflow);
        }
        ob.push_control(frame);
        self.flush_locked(&mut ob);
        Ok(())
    }

    /// Writes what the socket takes now. Returns `false` when the socket failed.
    pub fn flush(&self) -> bool {
        let mut ob = self.outbox();
        self.flush_locked(&mut ob);
        !ob.broken
    }

    fn flush_locked(&self, ob: &mut Outbox) {
        while let Some(front) = ob.frames.front_mut() {
            match self.wire.try_write(&front.bytes) {
                Ok(n) => {
                    self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    front.bytes.advance(n);
                    front.started |= n > 0;
                    if front.bytes.is_empty() {
                        let done = ob.frames.pop_front().map(|p| p.tick);
                        if done == Some(true) {
                            ob.ticks -= 1;
                            ob.full_since = None;
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            ob.controls -= 1;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    ob.frames.clear();
                    ob.closed = true;
                    ob.broken = true;
                    return;
                }
            }
        }
        if self.wire.flush_buffered().is_err() {
            ob.closed = true;
            ob.broken = true;
        }
    }

    /// True while frames (or TLS records of a frame already taken) wait for the socket.
    pub fn has_pending(&self) -> bool {
        !self.outbox().frames.is_empty() || self.wire.has_buffered_output()
    }

    /// True when the socket failed.
    pub fn is_broken(&self) -> bool {
        self.outbox().broken
    }

    /// True when the client stayed behind past the slow-client timeout.
    pub fn is_slow(&self) -> bool {
        self.outbox().slow
    }

    /// Stops taking ticks and replaces everything not yet started by `last` (a Close frame).
    pub fn close_with(&self, last: Option<Bytes>) {
        let mut ob = self.outbox();
        ob.closed = true;
        ob.frames.retain(|p| p.started);
        ob.ticks = ob.frames.iter().filter(|p| p.tick).count();
        ob.controls = ob.frames.len() - ob.ticks;
        if let Some(frame) = last {
            ob.push_control(frame);
        }
        self.flush_locked(&mut ob);
    }
}
#[cfg(test)]
mod tests {
    use super::super::hub::Hub;
    use super::super::settings::HubSettings;
    use super::super::testing::{peer, socket_pair};
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// Splits a byte stream of server frames into (opcode, payload).
    fn frames_of(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 2 {
            let (len, at) = match bytes[1] & 0x7f {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push((bytes[0] & 0x0f, bytes[at..at + len].to_vec()));
            bytes = &bytes[at + len..];
        }
        out
    }

    /// Reads everything the client's outbox holds, however long the socket takes to reopen.
    async fn drain(client: &mut TcpStream, slot: &ClientSlot, received: &mut Vec<u8>) {
        let mut buf = vec![0u8; 1 << 20];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            slot.flush();
            match tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
                Ok(_) => panic!("the socket closed"),
                Err(_) if !slot.has_pending() => return,
                Err(_) => assert!(std::time::Instant::now() < deadline, "never drained"),
            }
        }
    }

    #[tokio::test]
    async fn a_delta_client_that_loses_ticks_never_gets_a_delta_it_cannot_apply() {
        use super::super::delta::Rebuilder;
        // One tick of room, and large messages every other tick: the socket fills, ticks are
        // dropped, and some are dropped while a tick is half written (nothing else to drop).
        for queue_size in [1, 2, 3] {
            let hub = Hub::new(HubSettings {
                queue_size,
                delta_full_every: 3,
                ..Default::default()
            });
            let (server, mut client) = socket_pair().await;
            // Small, fixed socket buffers: the kernel holds a fraction of one message, so the
            // outbox (not the kernel) deals with a client that does not read.
            socket2::SockRef::from(&server)
                .set_send_buffer_size(16 * 1024)
                .unwrap();
            socket2::SockRef::from(&client)
                .set_recv_buffer_size(16 * 1024)
                .unwrap();
            let handle = hub.register_client(peer(), false, true, Wire::Plain(server));
            let points: Vec<String> = (0..30_000u64)
                .map(|i| (i * 7919 % 100_003).to_string())
                .collect();
            let mut received = Vec::new();
            for seq in 1..=40u64 {
                // A few values change from tick to tick, as in a market.
                let mut p = points.clone();
                let at = (seq as usize * 997) % p.len();
                p[at] = seq.to_string();
                let body = format!("{{\"n\":[{}]}}", p.join(","));
                hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
                    .await;
                // The client keeps up for five ticks, then reads nothing for five: it falls
                // behind, ticks are dropped, and it catches up.
                if seq % 10 < 5 {
                    drain(&mut client, handle.slot(), &mut received).await;
                }
            }
            drain(&mut client, handle.slot(), &mut received).await;
            let view = &hub.clients()[0];
            assert!(
                view.dropped > 0,
                "queue {queue_size}: ticks were lost: {view:?}"
            );
            let mut rebuild = Rebuilder::default();
            let (mut deltas, mut fulls) = (0, 0);
            for (opcode, payload) in frames_of(&received) {
                match opcode {
                    0x1 => {
                        rebuild.full(&payload);
                        fulls += 1;
                    }
                    0x2 => {
                        rebuild.delta(&payload).unwrap_or_else(|e| {
                            panic!("queue {queue_size}: a delta that does not apply: {e}")
                        });
                        deltas += 1;
                    }
                    other => panic!("opcode {other}"),
                }
            }
            assert!(
                deltas > 0 && fulls > 0,
                "queue {queue_size}: {deltas} deltas, {fulls} full"
            );
        }
    }

    #[tokio::test]
    async fn a_stalled_client_keeps_at_most_queue_size_ticks_and_counts_drops() {
        let hub = Hub::new(HubSettings {
            queue_size: 3,
            ..Default::default()
        });
        let (server, _client_never_reads) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        let body = vec![b' '; 256 * 1024];
        let mut body_json = b"{".to_vec();
        body_json.extend_from_slice(&body);
        body_json.push(b'}');
        for seq in 1..=40 {
            hub.publish(Tick::build(seq, 0, &body_json, None)).await;
        }
        let view = &hub.clients()[0];
        // The kernel took a few frames; the rest wait or were dropped, never more than 3 queued.
        assert!(view.pending <= 3, "{view:?}");
        assert!(view.dropped > 0, "{view:?}");
        assert_eq!(
            view.sent + view.dropped + view.pending as u64,
            40,
            "{view:?}"
        );
        // Ticks already seen are not queued twice (the connect-time snapshot path).
        let tick = Tick::build(40, 0, b"{}", None);
        handle.slot().offer(&tick, 3);
        assert_eq!(hub.clients()[0].pending, view.pending);
    }

    #[tokio::test]
    async fn a_client_full_past_the_timeout_is_marked_slow() {
        let hub = Hub::new(HubSettings {
            queue_size: 2,
            slow_client_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        });
        let (server, _never_reads) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        let body = format!("{{\"pad\":\"{}\"}}", " ".repeat(256 * 1024));
        let mut seq = 0;
        // Fill the socket and the outbox.
        while hub.clients()[0].pending < 2 {
            seq += 1;
            hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
                .await;
        }
        // The first tick refused for a full outbox starts the clock.
        seq += 1;
        hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
            .await;
        assert!(!handle.slot().is_slow(), "full, but not for long yet");
        tokio::time::sleep(Duration::from_millis(150)).await;
        seq += 1;
        hub.publish(Tick::build(seq, 0, body.as_bytes(), None))
            .await;
        assert!(handle.slot().is_slow());
        // Without a timeout, a full client is only ever dropped from.
        let patient = Hub::new(HubSettings {
            queue_size: 2,
            slow_client_timeout: None,
            ..Default::default()
        });
        let (server, _never_reads) = socket_pair().await;
        let handle = patient.register(peer(), false, Wire::Plain(server));
        for seq in 1..=40 {
            patient
                .publish(Tick::build(seq, 0, body.as_bytes(), None))
                .await;
        }
        assert!(!handle.slot().is_slow());
    }

    #[tokio::test]
    async fn control_frames_are_bounded() {
        let hub = Hub::new(HubSettings::default());
        let (server, _client) = socket_pair().await;
        let handle = hub.register(peer(), false, Wire::Plain(server));
        for _ in 0..100 {
            if let Err(e) = handle.slot().send_control(Bytes::from_static(b"\x89\x00")) {
                assert_eq!(e, QueueError::ControlOverflow);
                return;
            }
        }
        // The socket took all 100 small frames at once: nothing was queued, which is fine too.
        assert!(!handle.slot().has_pending());
    }
}
