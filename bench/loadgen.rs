// marketcast-loadgen: the fan-out load generator of the marketcast benchmark (bench/compare.py).
//
// What it measures: N WebSocket clients of one broadcast server (marketcast or a peer in
// bench/peers/) that sends every client the same text message per tick, each message starting
// with '{"seq":N,"ts":EPOCH_MS,'. For one measurement window it reports delivered vs expected
// messages, missed seqs, latency (receive time - ts), the spread between the first and the last
// client to receive the same seq, bytes per message on the wire, errors by kind, and, with
// --server-pid, the server's CPU per delivered message and its RSS per connection.
//
// Run (ulimit -n must allow clients/processes sockets per process; the parent raises its soft
// limit to the hard one with `prlimit` when it is too low):
//     ulimit -n 20000
//     marketcast-loadgen --url ws://127.0.0.1:8000/ws/market --clients 5000 --processes 1 \
//         --ramp 2000 --duration 20 [--warmup 3] [--deflate] [--server-pid PID] [--out FILE]
// Other options: --drain SECS (default 3: how long after the window messages stamped inside it
// may still arrive), --connect-timeout SECS (default 10, for the TCP connect and again for the
// handshake). The JSON result goes to stdout as one line (and pretty-printed to --out); a
// progress line and a short summary go to stderr.
//
// How it is built, and why:
// - The parent re-executes itself P times with the hidden `--worker` flag so that no process
//   holds more than ~10,000 sockets and the workers spread over the cores. Each worker runs a
//   current-thread Tokio runtime: one task per client, no locks, no cross-thread wakeups.
// - Client i of worker k starts connecting at ramp_start + (i*P + k)/R seconds, so the P workers
//   together ramp at R connections per second.
// - The window is announced by the parent on each worker's stdin as absolute epoch-ms times
//   ("window START END DRAIN_UNTIL"), sent once every worker has finished its ramp (every client
//   connected or failed) and the warmup has passed. A message belongs to the window when its
//   server stamp ts lies in [START, END); it counts if it arrives before DRAIN_UNTIL and its
//   client was connected at START. Stamps, not arrival times, decide membership, so a seq is in
//   or out of the window for every client alike. The parent samples the server's /proc figures
//   at START and END. A worker exits when its stdin closes (parent gone) or at --deadline-ms.
// - The WebSocket client is written here on a raw TcpStream (RFC 6455 + RFC 7692): one shared
//   per-thread read buffer (tasks on a current-thread runtime never read concurrently, so a
//   connection needs only its small frame-parser state), frames parsed incrementally, only the
//   first 64 bytes of a text message kept; a compressed message has only its first compressed
//   bytes inflated, until the stamp is out (never the whole 480 KB). Pings get masked Pongs.
// - Latency uses fixed log-linear buckets (1 us steps below 1 ms, then 900 steps per decade up
//   to 100 s, i.e. <= 1% error) so worker histograms merge exactly; max and min are exact.
//   ts has millisecond resolution, so a latency reads up to 1 ms high (0.5 ms on average).
//
// Figures in the result:
// - seqs_published = last - first + 1 over the seqs any client received in the window;
//   expected = connected (at START) x seqs_published; missed = late_first (a client's first seq
//   after the global first) + gaps + early_last (its last before the global last) + silent
//   clients x seqs_published. Without duplicates, delivered + missed = expected.
// - spread: per seq, latest minus earliest receive time over all clients of all workers.
// - server (with --server-pid): utime/stime from /proc/PID/stat at START and END (clock ticks,
//   so 10 ms resolution), per delivered message; cpu_schedstat_s is the same at nanosecond
//   resolution from /proc/PID/task/*/schedstat. rss_before_kb is read before the first
//   connection, rss_after_ramp_kb at START (after the ramp and the warmup), rss_end_kb at END;
//   rss_per_conn_kb = (after_ramp - before) / connected.
// - loadgen_cpu_s: the workers' CPU in the window. other_cpu_s: process CPU of everything else
//   on the machine (a concurrent build shows here; the run is then suspect). irq_softirq_cpu_s:
//   interrupt time, where loopback packet processing is charged, outside every process.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Stdio;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use flate2::{Decompress, FlushDecompress};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------

/// Bytes of a text message kept for the stamp: '{"seq":<20 digits>,"ts":<13+ digits>,' < 64.
const TEXT_PREFIX: usize = 64;
/// Compressed bytes kept at most while looking for the stamp of a compressed message; a
/// dynamic-Huffman block header plus the first literals fit in far less.
const DEFLATE_INPUT_CAP: usize = 16 * 1024;
/// Inflated bytes wanted from a compressed message (enough for the stamp).
const INFLATE_PREFIX: usize = 96;
/// The per-thread read buffer; a 480 KB message takes a couple of reads.
const READ_BUF: usize = 256 * 1024;
/// Largest HTTP response head accepted in the handshake.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Socket budget per process above its clients (stdio, the runtime's own descriptors).
const FD_SLACK: u64 = 64;

fn usage() -> ! {
    eprintln!(
        "usage: marketcast-loadgen --url ws://127.0.0.1:PORT/ws/market --clients N \
         [--processes P] [--ramp R] --duration SECS [--warmup SECS] [--drain SECS] [--deflate] \
         [--server-pid PID] [--connect-timeout SECS] [--out FILE]"
    );
    std::process::exit(2)
}

#[derive(Clone, Debug)]
struct Args {
    url: String,
    clients: u64,
    processes: u64,
    ramp: f64,
    duration: f64,
    warmup: f64,
    drain: f64,
    deflate: bool,
    server_pid: Option<u32>,
    out: Option<String>,
    connect_timeout: f64,
    // worker-only
    worker: bool,
    worker_index: u64,
    ramp_start_ms: u64,
    deadline_ms: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        clients: 0,
        processes: 0,
        ramp: 2000.0,
        duration: 0.0,
        warmup: 3.0,
        drain: 3.0,
        deflate: false,
        server_pid: None,
        out: None,
        connect_timeout: 10.0,
        worker: false,
        worker_index: 0,
        ramp_start_ms: 0,
        deadline_ms: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    fn num<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> T {
        match v.and_then(|s| s.parse::<T>().ok()) {
            Some(x) => x,
            None => {
                eprintln!("loadgen: {flag} needs a number");
                usage()
            }
        }
    }
    while i < argv.len() {
        let flag = argv[i].as_str();
        let val = argv.get(i + 1);
        let mut used = true;
        match flag {
            "--url" => a.url = val.cloned().unwrap_or_else(|| usage()),
            "--clients" => a.clients = num(flag, val),
            "--processes" => a.processes = num(flag, val),
            "--ramp" => a.ramp = num(flag, val),
            "--duration" => a.duration = num(flag, val),
            "--warmup" => a.warmup = num(flag, val),
            "--drain" => a.drain = num(flag, val),
            "--server-pid" => a.server_pid = Some(num(flag, val)),
            "--out" => a.out = Some(val.cloned().unwrap_or_else(|| usage())),
            "--connect-timeout" => a.connect_timeout = num(flag, val),
            "--worker-index" => a.worker_index = num(flag, val),
            "--ramp-start-ms" => a.ramp_start_ms = num(flag, val),
            "--deadline-ms" => a.deadline_ms = num(flag, val),
            "--deflate" => {
                a.deflate = true;
                used = false
            }
            "--worker" => {
                a.worker = true;
                used = false
            }
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("loadgen: unknown argument {flag}");
                usage()
            }
        }
        i += if used { 2 } else { 1 };
    }
    if a.url.is_empty() || a.clients == 0 || (!a.worker && a.duration <= 0.0) {
        eprintln!("loadgen: --url, --clients and --duration are required");
        usage()
    }
    if a.processes == 0 {
        a.processes = a.clients.div_ceil(5000);
    }
    a.processes = a.processes.min(a.clients);
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let non_negative = |x: f64| x.is_finite() && x >= 0.0;
    if !positive(a.ramp)
        || !non_negative(a.warmup)
        || !non_negative(a.drain)
        || !positive(a.connect_timeout)
    {
        eprintln!("loadgen: --ramp and --connect-timeout must be > 0, --warmup and --drain >= 0");
        usage()
    }
    a
}

/// `ws://host:port/path` -> (socket address, Host header, path).
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(p) => (&rest[..p], rest[p..].to_string()),
        None => (rest, "/".to_string()),
    };
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {hostport}"))?;
    Ok((addr, hostport.to_string(), path))
}

// ------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    now_us() / 1000
}

/// The Tokio instant at which the wall clock reads `epoch_ms` (now if that has passed).
fn instant_at_ms(epoch_ms: u64) -> Instant {
    let (now_i, now) = (Instant::now(), now_us());
    let target = epoch_ms.saturating_mul(1000);
    now_i + Duration::from_micros(target.saturating_sub(now))
}

/// xorshift64*, seeded from std's per-process random hasher keys; good enough for handshake keys
/// and Pong masks (RFC 6455 asks for unpredictability against proxies, not cryptography).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! { static RNG: RefCell<u64> = RefCell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_us());
        h.write_u32(std::process::id());
        h.finish() | 1
    }) }
    RNG.with(|r| {
        let mut x = *r.borrow();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *r.borrow_mut() = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

// ------------------------------------------------------------------------------------------
// Latency histogram: fixed buckets, exact merge
// ------------------------------------------------------------------------------------------

/// Values in microseconds. Below 1,000 us one bucket per us; then, per decade, 900 buckets of
/// 1/100 of the decade's start (3 significant digits) up to 10^8 us (100 s); one overflow bucket.
const HIST_LINEAR: u64 = 1000;
const HIST_DECADES: u64 = 5;
const HIST_BUCKETS: usize = (HIST_LINEAR + HIST_DECADES * 900 + 1) as usize;

fn bucket_of(v: u64) -> usize {
    if v < HIST_LINEAR {
        return v as usize;
    }
    let mut scale = 10u64;
    for d in 0..HIST_DECADES {
        if v < scale * 1000 {
            return (HIST_LINEAR + d * 900 + (v / scale - 100)) as usize;
        }
        scale *= 10;
    }
    HIST_BUCKETS - 1
}

/// Midpoint of a bucket, in microseconds.
fn bucket_value(b: usize) -> f64 {
    let b = b as u64;
    if b < HIST_LINEAR {
        return b as f64;
    }
    let d = (b - HIST_LINEAR) / 900;
    if d >= HIST_DECADES {
        return 1e8;
    }
    let scale = 10f64.powi(d as i32 + 1);
    (((b - HIST_LINEAR) % 900 + 100) as f64 + 0.5) * scale
}

#[derive(Clone)]
struct Hist {
    counts: Vec<u64>,
    total: u64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            counts: vec![0; HIST_BUCKETS],
            total: 0,
        }
    }
    fn record(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
    }
    fn sparse(&self) -> Vec<(u32, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c))
            .collect()
    }
    fn add_sparse(&mut self, s: &[(u32, u64)]) {
        for &(i, c) in s {
            if (i as usize) < HIST_BUCKETS {
                self.counts[i as usize] += c;
                self.total += c;
            }
        }
    }
    fn clear(&mut self) {
        if self.total > 0 {
            self.counts.iter_mut().for_each(|c| *c = 0);
            self.total = 0;
        }
    }
    /// Nearest-rank percentile in microseconds (bucket midpoint, capped at `max` when known).
    fn percentile(&self, p: f64, max: Option<u64>) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = bucket_value(i);
                return Some(match max {
                    Some(m) => v.min(m as f64),
                    None => v,
                });
            }
        }
        None
    }
}

// ------------------------------------------------------------------------------------------
// The stamp and the frame parser
// ------------------------------------------------------------------------------------------

fn parse_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[..n] {
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some((v, &b[n..]))
}

enum Stamp {
    Found(u64, u64),
    /// The bytes end before the stamp does: more input may complete it.
    Incomplete,
    Invalid,
}

/// Reads '{"seq":N,"ts":T,' (T may carry a fraction, which is ignored).
fn parse_stamp(b: &[u8]) -> Stamp {
    const HEAD: &[u8] = b"{\"seq\":";
    const MID: &[u8] = b",\"ts\":";
    let incomplete_or_invalid = |rest: &[u8], want: &[u8]| {
        if rest.len() < want.len() && want.starts_with(rest) {
            Stamp::Incomplete
        } else {
            Stamp::Invalid
        }
    };
    let Some(rest) = b.strip_prefix(HEAD) else {
        return incomplete_or_invalid(b, HEAD);
    };
    let Some((seq, rest)) = parse_u64(rest) else {
        return if rest.is_empty() {
            Stamp::Incomplete
        } else {
            Stamp::Invalid
        };
    };
    let Some(rest) = rest.strip_prefix(MID) else {
        return incomplete_or_invalid(rest, MID);
    };
    let Some((ts, rest)) = parse_u64(rest) else {
        return if rest.is_empty() {
            Stamp::Incomplete
        } else {
            Stamp::Invalid
        };
    };
    match rest.first() {
        Some(b',') | Some(b'.') | Some(b'}') => Stamp::Found(seq, ts),
        None => Stamp::Incomplete,
        _ => Stamp::Invalid,
    }
}

thread_local! {
    /// One raw-deflate inflater per thread: a connection only keeps its first compressed bytes
    /// and inflates them here in one synchronous call, so no per-connection 32 KB window.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Inflates the start of one permessage-deflate message (a fresh raw-deflate stream, since the
/// server uses no context takeover) just far enough to read its stamp.
fn inflate_stamp(input: &[u8], input_complete: bool) -> Stamp {
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut out = [0u8; INFLATE_PREFIX];
        let mut produced = 0usize;
        let mut consumed = 0usize;
        // A few passes: inflate may return before filling the output at block boundaries.
        for _ in 0..8 {
            let (in0, out0) = (d.total_in(), d.total_out());
            let res = d.decompress(
                &input[consumed..],
                &mut out[produced..],
                FlushDecompress::Sync,
            );
            consumed += (d.total_in() - in0) as usize;
            produced += (d.total_out() - out0) as usize;
            if res.is_err() {
                return Stamp::Invalid;
            }
            if produced == out.len() || consumed == input.len() || d.total_out() == out0 {
                break;
            }
        }
        match parse_stamp(&out[..produced]) {
            Stamp::Incomplete if input_complete || produced == out.len() => Stamp::Invalid,
            s => s,
        }
    })
}

fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mask = (random_u64() as u32).to_be_bytes();
    let mut f = Vec::with_capacity(6 + len);
    f.push(0x80 | opcode);
    f.push(0x80 | len as u8);
    f.extend_from_slice(&mask);
    f.extend(
        payload[..len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    f
}

enum Event {
    /// A complete data message: its stamp, or None when it had none; its bytes on the wire.
    Message {
        stamp: Option<(u64, u64)>,
        wire: u64,
    },
    Ping(Vec<u8>),
    Close(Vec<u8>),
}

/// Incremental RFC 6455 frame parser for one connection: header bytes, then payload bytes of
/// which only the stamp's prefix (or a control frame's <=125 bytes) is kept.
struct FrameParser {
    hdr: [u8; 14],
    hdr_len: usize,
    hdr_need: usize,
    in_payload: bool,
    remaining: u64,
    frame_fin: bool,
    frame_is_data: bool,
    ctrl_opcode: u8,
    ctrl: Vec<u8>,
    msg_active: bool,
    msg_compressed: bool,
    msg_wire: u64,
    prefix: Vec<u8>,
    stamp: Option<(u64, u64)>,
    stamp_dead: bool,
}

impl FrameParser {
    fn new() -> Self {
        FrameParser {
            hdr: [0; 14],
            hdr_len: 0,
            hdr_need: 2,
            in_payload: false,
            remaining: 0,
            frame_fin: false,
            frame_is_data: false,
            ctrl_opcode: 0,
            ctrl: Vec::new(),
            msg_active: false,
            msg_compressed: false,
            msg_wire: 0,
            prefix: Vec::new(),
            stamp: None,
            stamp_dead: false,
        }
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<Event>) -> Result<(), &'static str> {
        while !data.is_empty() {
            if !self.in_payload {
                let take = (self.hdr_need - self.hdr_len).min(data.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                self.hdr_len += take;
                data = &data[take..];
                if self.hdr_len == 2 && self.hdr_need == 2 {
                    let ext = match self.hdr[1] & 0x7f {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
                    self.hdr_need = 2 + ext + mask;
                }
                if self.hdr_len < self.hdr_need {
                    continue;
                }
                self.start_frame(out)?;
            } else {
                let k = (self.remaining.min(data.len() as u64)) as usize;
                let (chunk, rest) = data.split_at(k);
                data = rest;
                self.remaining -= k as u64;
                if self.frame_is_data {
                    self.data_bytes(chunk);
                } else {
                    self.ctrl.extend_from_slice(chunk);
                }
                if self.remaining == 0 {
                    self.end_frame(out);
                }
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, out: &mut Vec<Event>) -> Result<(), &'static str> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b1 & 0x80 != 0 {
            return Err("protocol_masked_server_frame");
        }
        let len = match b1 & 0x7f {
            126 => u16::from_be_bytes([self.hdr[2], self.hdr[3]]) as u64,
            127 => u64::from_be_bytes(self.hdr[2..10].try_into().unwrap()),
            n => n as u64,
        };
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        let opcode = b0 & 0x0f;
        let wire = self.hdr_need as u64 + len;
        match opcode {
            1 | 2 => {
                if self.msg_active {
                    return Err("protocol_interleaved_message");
                }
                self.msg_active = true;
                self.msg_compressed = rsv1;
                self.msg_wire = wire;
                self.prefix.clear();
                self.stamp = None;
                self.stamp_dead = false;
                self.frame_is_data = true;
            }
            0 => {
                if !self.msg_active {
                    return Err("protocol_stray_continuation");
                }
                self.msg_wire += wire;
                self.frame_is_data = true;
            }
            8..=10 => {
                if len > 125 || !fin {
                    return Err("protocol_bad_control_frame");
                }
                self.ctrl.clear();
                self.ctrl_opcode = opcode;
                self.frame_is_data = false;
            }
            _ => return Err("protocol_unknown_opcode"),
        }
        self.frame_fin = fin;
        self.remaining = len;
        self.in_payload = true;
        if len == 0 {
            self.end_frame(out);
        }
        Ok(())
    }

    fn data_bytes(&mut self, chunk: &[u8]) {
        if self.stamp.is_some() || self.stamp_dead {
            return;
        }
        let cap = if self.msg_compressed {
            DEFLATE_INPUT_CAP
        } else {
            TEXT_PREFIX
        };
        let take = (cap - self.prefix.len()).min(chunk.len());
        self.prefix.extend_from_slice(&chunk[..take]);
        let message_ends = self.frame_fin && self.remaining == 0;
        if self.msg_compressed {
            match inflate_stamp(&self.prefix, message_ends) {
                Stamp::Found(s, t) => self.stamp = Some((s, t)),
                Stamp::Invalid => self.stamp_dead = true,
                Stamp::Incomplete if self.prefix.len() >= cap => self.stamp_dead = true,
                Stamp::Incomplete => {}
            }
        } else if self.prefix.len() >= cap || message_ends {
            match parse_stamp(&self.prefix) {
                Stamp::Found(s, t) => self.stamp = Some((s, t)),
                _ => self.stamp_dead = true,
            }
        }
    }

    fn end_frame(&mut self, out: &mut Vec<Event>) {
        self.in_payload = false;
        self.hdr_len = 0;
        self.hdr_need = 2;
        if self.frame_is_data {
            if self.frame_fin {
                if self.stamp.is_none() && !self.stamp_dead {
                    // Zero-length tail or a message shorter than the prefix.
                    let s = if self.msg_compressed {
                        inflate_stamp(&self.prefix, true)
                    } else {
                        parse_stamp(&self.prefix)
                    };
                    if let Stamp::Found(a, b) = s {
                        self.stamp = Some((a, b));
                    }
                }
                out.push(Event::Message {
                    stamp: self.stamp.take(),
                    wire: self.msg_wire,
                });
                self.msg_active = false;
            }
        } else {
            match self.ctrl_opcode {
                9 => out.push(Event::Ping(std::mem::take(&mut self.ctrl))),
                8 => out.push(Event::Close(std::mem::take(&mut self.ctrl))),
                _ => {} // Pong: nothing to do
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Worker: messages between the processes
// ------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Default, Clone)]
struct Progress {
    r#type: String,
    worker: u64,
    attempted: u64,
    connected: u64,
    failed: u64,
    closed: u64,
    ramp_done: bool,
    msgs_total: u64,
    /// Messages received since the previous progress line, and that interval in seconds.
    recent_msgs: u64,
    recent_s: f64,
    /// Latency of the messages received since the previous progress line (sparse buckets).
    recent_hist: Vec<(u32, u64)>,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct WorkerResult {
    r#type: String,
    worker: u64,
    clients: u64,
    connected_at_start: u64,
    connected_at_end: u64,
    late_connected: u64,
    connect_failed: u64,
    deflate_accepted: u64,
    messages: u64,
    bytes: u64,
    bad_stamp: u64,
    out_of_order: u64,
    gaps: u64,
    silent_clients: u64,
    /// (first in-window seq of a counted client, number of clients)
    first_seq_hist: Vec<(u64, u64)>,
    last_seq_hist: Vec<(u64, u64)>,
    /// (seq, ts ms, earliest receive us, latest receive us, receivers)
    seqs: Vec<(u64, u64, u64, u64, u64)>,
    latency_hist: Vec<(u32, u64)>,
    latency_min_us: u64,
    latency_max_us: u64,
    latency_sum_us: u64,
    negative_latency: u64,
    handshake_hist: Vec<(u32, u64)>,
    handshake_max_us: u64,
    errors: BTreeMap<String, u64>,
    errors_in_window: BTreeMap<String, u64>,
    msgs_total: u64,
    deadline_hit: bool,
}

// ------------------------------------------------------------------------------------------
// Worker: state shared by its client tasks (one thread, so RefCell)
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct ClientRec {
    connected_us: u64,
    closed_us: u64,
    first: u64,
    last: u64,
    count: u64,
    gaps: u64,
}

#[derive(Clone, Copy)]
struct Window {
    start_ms: u64,
    end_ms: u64,
    drain_ms: u64,
}

struct SeqRec {
    ts: u64,
    min_us: u64,
    max_us: u64,
    n: u64,
}

struct WorkerState {
    clients: Vec<ClientRec>,
    window: Option<Window>,
    attempted: u64,
    connected_now: u64,
    failed: u64,
    closed: u64,
    deflate_accepted: u64,
    msgs_total: u64,
    recent_since: (u64, u64),
    recent: Hist,
    hist: Hist,
    lat_min: u64,
    lat_max: u64,
    lat_sum: u64,
    negative_latency: u64,
    handshake: Hist,
    handshake_max: u64,
    seqs: HashMap<u64, SeqRec>,
    messages: u64,
    bytes: u64,
    bad_stamp: u64,
    out_of_order: u64,
    errors: BTreeMap<String, u64>,
    errors_in_window: BTreeMap<String, u64>,
}

impl WorkerState {
    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        if let Some(w) = self.window {
            let t = now_ms();
            if t >= w.start_ms && t < w.drain_ms {
                *self.errors_in_window.entry(kind.to_string()).or_default() += 1;
            }
        }
    }

    fn on_message(&mut self, id: usize, stamp: Option<(u64, u64)>, wire: u64, recv_us: u64) {
        self.msgs_total += 1;
        let Some((seq, ts)) = stamp else {
            self.bad_stamp += 1;
            return;
        };
        let ts_us = ts.saturating_mul(1000);
        let latency = recv_us.saturating_sub(ts_us);
        self.recent.record(latency);
        let Some(w) = self.window else { return };
        if ts < w.start_ms || ts >= w.end_ms {
            return;
        }
        let c = &mut self.clients[id];
        if c.connected_us == 0 || c.connected_us >= w.start_ms * 1000 {
            return; // connected after the window opened: not counted
        }
        if c.count == 0 {
            c.first = seq;
        } else if seq > c.last {
            c.gaps += seq - c.last - 1;
        } else {
            self.out_of_order += 1;
        }
        c.last = c.last.max(seq);
        c.count += 1;
        self.messages += 1;
        self.bytes += wire;
        if recv_us < ts_us {
            self.negative_latency += 1;
        }
        self.hist.record(latency);
        self.lat_min = self.lat_min.min(latency);
        self.lat_max = self.lat_max.max(latency);
        self.lat_sum += latency;
        let r = self.seqs.entry(seq).or_insert(SeqRec {
            ts,
            min_us: u64::MAX,
            max_us: 0,
            n: 0,
        });
        r.min_us = r.min_us.min(recv_us);
        r.max_us = r.max_us.max(recv_us);
        r.n += 1;
    }

    fn progress(&mut self, worker: u64, clients: u64) -> Progress {
        let p = Progress {
            r#type: "progress".into(),
            worker,
            attempted: self.attempted,
            connected: self.connected_now,
            failed: self.failed,
            closed: self.closed,
            ramp_done: self.attempted == clients,
            msgs_total: self.msgs_total,
            recent_msgs: self.msgs_total - self.recent_since.0,
            recent_s: (now_us().saturating_sub(self.recent_since.1)) as f64 / 1e6,
            recent_hist: self.recent.sparse(),
        };
        self.recent.clear();
        self.recent_since = (self.msgs_total, now_us());
        p
    }

    fn result(&self, worker: u64, deadline_hit: bool) -> WorkerResult {
        let mut r = WorkerResult {
            r#type: "result".into(),
            worker,
            clients: self.clients.len() as u64,
            connect_failed: self.failed,
            deflate_accepted: self.deflate_accepted,
            messages: self.messages,
            bytes: self.bytes,
            bad_stamp: self.bad_stamp,
            out_of_order: self.out_of_order,
            latency_hist: self.hist.sparse(),
            latency_min_us: if self.hist.total > 0 { self.lat_min } else { 0 },
            latency_max_us: self.lat_max,
            latency_sum_us: self.lat_sum,
            negative_latency: self.negative_latency,
            handshake_hist: self.handshake.sparse(),
            handshake_max_us: self.handshake_max,
            errors: self.errors.clone(),
            errors_in_window: self.errors_in_window.clone(),
            msgs_total: self.msgs_total,
            deadline_hit,
            ..Default::default()
        };
        let (start_us, end_us) = match self.window {
            Some(w) => (w.start_ms * 1000, w.end_ms * 1000),
            None => (u64::MAX, u64::MAX),
        };
        let (mut firsts, mut lasts) = (BTreeMap::<u64, u64>::new(), BTreeMap::<u64, u64>::new());
        for c in &self.clients {
            if c.connected_us == 0 {
                continue;
            }
            if c.closed_us == 0 || c.closed_us >= end_us {
                r.connected_at_end += 1;
            }
            if c.connected_us >= start_us {
                r.late_connected += 1;
                continue;
            }
            if c.closed_us != 0 && c.closed_us < start_us {
                continue; // gone before the window
            }
            r.connected_at_start += 1;
            if c.count == 0 {
                r.silent_clients += 1;
            } else {
                *firsts.entry(c.first).or_default() += 1;
                *lasts.entry(c.last).or_default() += 1;
                r.gaps += c.gaps;
            }
        }
        r.first_seq_hist = firsts.into_iter().collect();
        r.last_seq_hist = lasts.into_iter().collect();
        let mut seqs: Vec<_> = self
            .seqs
            .iter()
            .map(|(s, x)| (*s, x.ts, x.min_us, x.max_us, x.n))
            .collect();
        seqs.sort_unstable();
        r.seqs = seqs;
        r
    }
}

type Shared = Rc<RefCell<WorkerState>>;

thread_local! {
    /// The read buffer shared by every connection of this (single-threaded) worker.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0u8; READ_BUF]);
}

struct ClientCfg {
    addr: SocketAddr,
    request_head: String,
    deflate: bool,
    connect_timeout: Duration,
}

fn connect_error_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connect_refused".into(),
        TimedOut => "connect_timeout".into(),
        AddrNotAvailable => "connect_addr_not_available".into(),
        ConnectionReset => "connect_reset".into(),
        _ => match e.raw_os_error() {
            Some(24) => "connect_too_many_open_files".into(),
            _ => format!("connect_error_{:?}", e.kind()).to_lowercase(),
        },
    }
}

fn read_error_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset => "read_reset".into(),
        ConnectionAborted => "read_aborted".into(),
        BrokenPipe => "read_broken_pipe".into(),
        TimedOut => "read_timeout".into(),
        k => format!("read_error_{k:?}").to_lowercase(),
    }
}

/// Opening handshake: returns whether permessage-deflate was accepted and any bytes that
/// followed the response head (the first frames may arrive in the same segment).
async fn handshake(stream: &mut TcpStream, cfg: &ClientCfg) -> Result<(bool, Vec<u8>), String> {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&random_u64().to_le_bytes());
    key[8..].copy_from_slice(&random_u64().to_le_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let req = format!("{}Sec-WebSocket-Key: {key}\r\n\r\n", cfg.request_head);
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|_| "handshake_write_error".to_string())?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| "handshake_read_error".to_string())?;
        if n == 0 {
            return Err("handshake_eof".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err("handshake_head_too_large".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("none");
    if code != "101" {
        return Err(format!("handshake_status_{code}"));
    }
    let (mut accept, mut deflate) = (false, false);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("sec-websocket-accept") && !value.trim().is_empty() {
                accept = true;
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions")
                && value.to_ascii_lowercase().contains("permessage-deflate")
            {
                deflate = true;
            }
        }
    }
    if !accept {
        return Err("handshake_no_accept".into());
    }
    Ok((deflate && cfg.deflate, rest))
}

async fn write_bounded(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// One client: connect, handshake, then read frames until the process ends.
async fn run_client(id: usize, cfg: Rc<ClientCfg>, st: Shared) {
    let t0 = now_us();
    let connected = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(cfg.addr)).await;
    let mut stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(&st, &connect_error_kind(&e)),
        Err(_) => return fail(&st, "connect_timeout"),
    };
    let _ = stream.set_nodelay(true);
    let (deflate, rest) =
        match tokio::time::timeout(cfg.connect_timeout, handshake(&mut stream, &cfg)).await {
            Ok(Ok(x)) => x,
            Ok(Err(kind)) => return fail(&st, &kind),
            Err(_) => return fail(&st, "handshake_timeout"),
        };
    {
        let mut s = st.borrow_mut();
        let t = now_us();
        s.attempted += 1;
        s.connected_now += 1;
        if deflate {
            s.deflate_accepted += 1;
        }
        s.handshake.record(t - t0);
        s.handshake_max = s.handshake_max.max(t - t0);
        s.clients[id].connected_us = t;
    }
    let mut parser = FrameParser::new();
    let mut events: Vec<Event> = Vec::new();
    let mut pending = rest;
    let outcome: String = 'conn: loop {
        let mut fed: Result<(), &'static str> = Ok(());
        let mut recv_us = now_us();
        if !pending.is_empty() {
            fed = parser.feed(&pending, &mut events);
            pending = Vec::new();
        } else {
            if let Err(e) = stream.readable().await {
                break 'conn read_error_kind(&e);
            }
            let read = READ_BUFFER.with(|b| {
                let mut b = b.borrow_mut();
                match stream.try_read(&mut b[..]) {
                    Ok(0) => Err(None),
                    Ok(n) => {
                        recv_us = now_us();
                        fed = parser.feed(&b[..n], &mut events);
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(Some(read_error_kind(&e))),
                }
            });
            match read {
                Ok(()) => {}
                Err(None) => break 'conn "eof".to_string(),
                Err(Some(kind)) => break 'conn kind,
            }
        }
        let mut reply: Option<Vec<u8>> = None;
        let mut close: Option<Vec<u8>> = None;
        if !events.is_empty() {
            let mut s = st.borrow_mut();
            for ev in events.drain(..) {
                match ev {
                    Event::Message { stamp, wire } => s.on_message(id, stamp, wire, recv_us),
                    Event::Ping(p) => reply = Some(masked_frame(0xA, &p)),
                    Event::Close(p) => close = Some(p),
                }
            }
        }
        if let Some(pong) = reply {
            if !write_bounded(&mut stream, &pong).await {
                break 'conn "write_error".to_string();
            }
        }
        if let Some(p) = close {
            // Echo the status code, as RFC 6455 section 5.5.1 asks, then leave.
            let _ = write_bounded(&mut stream, &masked_frame(0x8, &p[..p.len().min(2)])).await;
            break 'conn "close_frame".to_string();
        }
        if let Err(kind) = fed {
            break 'conn kind.to_string();
        }
    };
    let mut s = st.borrow_mut();
    s.connected_now -= 1;
    s.closed += 1;
    s.clients[id].closed_us = now_us();
    s.error(&outcome);
}

fn fail(st: &Shared, kind: &str) {
    let mut s = st.borrow_mut();
    s.attempted += 1;
    s.failed += 1;
    s.error(kind);
}

fn emit_line<T: Serialize>(v: &T) {
    let line = serde_json::to_string(v).expect("serialisable");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn worker_main(args: Args) {
    let (addr, host, path) = match parse_url(&args.url) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("loadgen worker: {e}");
            std::process::exit(2)
        }
    };
    let mut request_head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    if args.deflate {
        request_head
            .push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    }
    let cfg = Rc::new(ClientCfg {
        addr,
        request_head,
        deflate: args.deflate,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
    });
    let n = args.clients;
    let st: Shared = Rc::new(RefCell::new(WorkerState {
        clients: vec![ClientRec::default(); n as usize],
        window: None,
        attempted: 0,
        connected_now: 0,
        failed: 0,
        closed: 0,
        deflate_accepted: 0,
        msgs_total: 0,
        recent_since: (0, now_us()),
        recent: Hist::new(),
        hist: Hist::new(),
        lat_min: u64::MAX,
        lat_max: 0,
        lat_sum: 0,
        negative_latency: 0,
        handshake: Hist::new(),
        handshake_max: 0,
        seqs: HashMap::new(),
        messages: 0,
        bytes: 0,
        bad_stamp: 0,
        out_of_order: 0,
        errors: BTreeMap::new(),
        errors_in_window: BTreeMap::new(),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let worker = args.worker_index;
    let st_final = st.clone();
    let deadline_hit = local.block_on(&rt, async move {
        // The parent's commands: "window START END DRAIN", or "stop"; EOF means it is gone.
        // Read on a plain thread (blocking stdin) and handed to the runtime through a channel.
        let stop = Rc::new(RefCell::new(false));
        {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<Window>>();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    let f: Vec<&str> = line.split_whitespace().collect();
                    match f.as_slice() {
                        ["window", a, b, c] => {
                            if let (Ok(a), Ok(b), Ok(c)) = (a.parse(), b.parse(), c.parse()) {
                                let _ = tx.send(Some(Window {
                                    start_ms: a,
                                    end_ms: b,
                                    drain_ms: c,
                                }));
                            }
                        }
                        ["stop"] => break,
                        _ => {}
                    }
                }
                let _ = tx.send(None);
            });
            let (st, stop) = (st.clone(), stop.clone());
            tokio::task::spawn_local(async move {
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Some(w) => st.borrow_mut().window = Some(w),
                        None => break,
                    }
                }
                *stop.borrow_mut() = true;
            });
        }
        // Ramp: client i of this worker at ramp_start + (i*P + k)/R.
        {
            let (st, cfg) = (st.clone(), cfg.clone());
            let (p, k, rate, start_ms) = (
                args.processes,
                args.worker_index,
                args.ramp,
                args.ramp_start_ms,
            );
            tokio::task::spawn_local(async move {
                let start = instant_at_ms(start_ms);
                for i in 0..n {
                    let at = start + Duration::from_secs_f64((i * p + k) as f64 / rate);
                    tokio::time::sleep_until(at).await;
                    tokio::task::spawn_local(run_client(i as usize, cfg.clone(), st.clone()));
                }
            });
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_progress = Instant::now();
        loop {
            tick.tick().await;
            if *stop.borrow() {
                return false;
            }
            let t = now_ms();
            if let Some(w) = st.borrow().window {
                if t >= w.drain_ms {
                    return false;
                }
            }
            if t >= args.deadline_ms {
                return true;
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                let p = st.borrow_mut().progress(worker, n);
                emit_line(&p);
            }
        }
    });
    let result = st_final.borrow().result(worker, deadline_hit);
    emit_line(&result);
    // Exiting closes every socket at once; no need to unwind thousands of tasks.
    std::process::exit(0);
}

// ------------------------------------------------------------------------------------------
// Parent: /proc sampling
// ------------------------------------------------------------------------------------------

/// (utime, stime) in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after "pid (comm) ": field 3 (state) is f[0]; utime is field 14, stime field 15.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// Nanoseconds on CPU summed over the process's current threads (/proc/PID/task/*/schedstat):
/// a cross-check of utime+stime at nanosecond resolution (time of threads that exited is lost).
fn proc_schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Jiffies of the whole machine (all cores) from /proc/stat.
#[derive(Clone, Copy)]
struct MachineJiffies {
    /// user + nice + system: time charged to processes.
    tasks: u64,
    /// irq + softirq: with IRQ time accounting, loopback packet processing lands here, not in
    /// any process's utime/stime.
    irq: u64,
    /// Everything, idle included.
    total: u64,
}

fn machine_jiffies() -> Option<MachineJiffies> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some(MachineJiffies {
        tasks: f.first()? + f.get(1)? + f.get(2)?,
        irq: f.get(5)? + f.get(6)?,
        total: f.iter().take(8).sum(),
    })
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// Soft and hard RLIMIT_NOFILE of this process.
fn nofile_limits() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let parse = |x: &str| {
        if x == "unlimited" {
            Some(u64::MAX)
        } else {
            x.parse().ok()
        }
    };
    Some((parse(f.get(3)?)?, parse(f.get(4)?)?))
}

/// Makes sure every worker (which inherits the limit) can open its sockets.
fn ensure_nofile(per_process: u64) -> Result<(), String> {
    let need = per_process + FD_SLACK;
    let Some((soft, hard)) = nofile_limits() else {
        return Ok(());
    };
    if soft >= need {
        return Ok(());
    }
    if hard >= need {
        let hard_s = if hard == u64::MAX {
            "unlimited".to_string()
        } else {
            hard.to_string()
        };
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard_s}:{hard_s}"))
            .status();
        if nofile_limits().is_some_and(|(s, _)| s >= need) {
            return Ok(());
        }
    }
    Err(format!(
        "open-file limit too low: {per_process} sockets per process need {need}, soft limit {soft}, \
         hard {hard}; run `ulimit -n 20000` first or use more --processes"
    ))
}

#[derive(Clone, Copy, Default)]
struct ServerSample {
    utime: u64,
    stime: u64,
    sched_ns: u64,
    rss_kb: u64,
    ok: bool,
}

fn sample_server(pid: Option<u32>) -> ServerSample {
    let Some(pid) = pid else {
        return ServerSample::default();
    };
    match (proc_cpu_ticks(pid), proc_rss_kb(pid)) {
        (Some((u, s)), Some(r)) => ServerSample {
            utime: u,
            stime: s,
            sched_ns: proc_schedstat_ns(pid).unwrap_or(0),
            rss_kb: r,
            ok: true,
        },
        _ => ServerSample::default(),
    }
}

// ------------------------------------------------------------------------------------------
// Parent: workers, window, merge
// ------------------------------------------------------------------------------------------

#[derive(Default)]
struct WorkerView {
    pid: u32,
    progress: Progress,
    result: Option<WorkerResult>,
    exited: bool,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(us: f64) -> f64 {
    round3(us / 1000.0)
}

fn pct_sorted(v: &[u64], p: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn parent_main(args: Args) {
    if let Err(e) = parse_url(&args.url) {
        eprintln!("loadgen: {e}");
        std::process::exit(2);
    }
    let p = args.processes;
    let per_process = args.clients.div_ceil(p);
    if per_process > 10_000 {
        eprintln!("loadgen: warning: {per_process} clients per process (more than 10,000); consider --processes");
    }
    if let Err(e) = ensure_nofile(per_process) {
        eprintln!("loadgen: {e}");
        std::process::exit(2);
    }
    let tck = clk_tck();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(parent_run(args, tck));
    std::process::exit(code);
}

async fn parent_run(args: Args, tck: f64) -> i32 {
    let p = args.processes;
    let n = args.clients;
    let before = sample_server(args.server_pid);
    if let Some(pid) = args.server_pid.filter(|_| !before.ok) {
        eprintln!("loadgen: warning: cannot read /proc/{pid} (server pid); no server figures");
    }
    let t_begin = Instant::now();
    let ramp_start_ms = now_ms() + 300;
    let planned_ramp = n as f64 / args.ramp;
    // The ramp must be over by then (every client connected or failed, timeouts included).
    let ramp_deadline_ms =
        ramp_start_ms + ((planned_ramp * 1.5 + 2.0 * args.connect_timeout + 5.0) * 1000.0) as u64;
    let worker_deadline_ms =
        ramp_deadline_ms + ((args.warmup + args.duration + args.drain + 30.0) * 1000.0) as u64;
    let exe = std::env::current_exe().expect("current_exe");
    let views: Arc<Mutex<Vec<WorkerView>>> =
        Arc::new(Mutex::new((0..p).map(|_| WorkerView::default()).collect()));
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for k in 0..p {
        let share = n / p + u64::from(k < n % p);
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("--worker")
            .args(["--url", &args.url])
            .args(["--clients", &share.to_string()])
            .args(["--processes", &p.to_string()])
            .args(["--ramp", &args.ramp.to_string()])
            .args(["--worker-index", &k.to_string()])
            .args(["--ramp-start-ms", &ramp_start_ms.to_string()])
            .args(["--deadline-ms", &worker_deadline_ms.to_string()])
            .args(["--connect-timeout", &args.connect_timeout.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if args.deflate {
            cmd.arg("--deflate");
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("loadgen: cannot start worker {k}: {e}");
                return 1;
            }
        };
        let stdout = child.stdout.take().expect("piped");
        stdins.push(child.stdin.take());
        {
            let mut v = views.lock().unwrap();
            v[k as usize].pid = child.id().unwrap_or(0);
        }
        let views = views.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let kind = v
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("")
                    .to_string();
                let mut views = views.lock().unwrap();
                match kind.as_str() {
                    "progress" => {
                        if let Ok(pr) = serde_json::from_value::<Progress>(v) {
                            views[k as usize].progress = pr;
                        }
                    }
                    "result" => {
                        if let Ok(r) = serde_json::from_value::<WorkerResult>(v) {
                            views[k as usize].result = Some(r);
                        }
                    }
                    _ => {}
                }
            }
            views.lock().unwrap()[k as usize].exited = true;
        });
        children.push(child);
    }

    // ---- phases: ramp -> warmup -> window -> drain, with a progress line every second ----
    let tty = std::io::stderr().is_terminal();
    let mut last_render = Instant::now();
    let mut last_plain = Instant::now();
    let mut render = |phase: &str, views: &Arc<Mutex<Vec<WorkerView>>>, force: bool| {
        if !force && last_render.elapsed() < Duration::from_secs(1) {
            return;
        }
        last_render = Instant::now();
        let v = views.lock().unwrap();
        let connected: u64 = v.iter().map(|w| w.progress.connected).sum();
        let failed: u64 = v.iter().map(|w| w.progress.failed).sum();
        let rate: f64 = v
            .iter()
            .filter(|w| !w.exited && w.progress.recent_s > 0.0)
            .map(|w| w.progress.recent_msgs as f64 / w.progress.recent_s)
            .fold(0.0, |a, b| a + b);
        let mut h = Hist::new();
        for w in v.iter() {
            h.add_sparse(&w.progress.recent_hist);
        }
        let p99 = h
            .percentile(0.99, None)
            .map(|x| format!("{:.1}", x / 1000.0))
            .unwrap_or("-".into());
        let line = format!(
            "[{:>6.1}s] {phase:<7} connected {connected}/{n} failed {failed} | {rate:.0} msg/s | p99 {p99} ms",
            t_begin.elapsed().as_secs_f64()
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if force || last_plain.elapsed() >= Duration::from_secs(5) {
            last_plain = Instant::now();
            eprintln!("{line}");
        }
    };
    let all_exited =
        |views: &Arc<Mutex<Vec<WorkerView>>>| views.lock().unwrap().iter().all(|w| w.exited);
    let worker_pids: Vec<u32> = views.lock().unwrap().iter().map(|w| w.pid).collect();
    let workers_cpu = || -> u64 {
        worker_pids
            .iter()
            .filter_map(|&pid| proc_cpu_ticks(pid))
            .map(|(u, s)| u + s)
            .sum()
    };

    // Ramp.
    let mut aborted: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        render("ramp", &views, false);
        let done = views
            .lock()
            .unwrap()
            .iter()
            .all(|w| w.progress.ramp_done || w.exited);
        if done {
            break;
        }
        if all_exited(&views) {
            aborted = Some("all workers exited during the ramp".into());
            break;
        }
        if now_ms() >= ramp_deadline_ms {
            eprintln!("\nloadgen: ramp not finished by its deadline; measuring with the clients connected so far");
            break;
        }
    }
    let ramp_s = t_begin.elapsed().as_secs_f64() - 0.3;
    let connected_after_ramp: u64 = views
        .lock()
        .unwrap()
        .iter()
        .map(|w| w.progress.connected)
        .sum();
    if connected_after_ramp == 0 && aborted.is_none() {
        aborted = Some("no client connected".into());
    }
    // Warmup.
    let (duration_ms, warmup) = if aborted.is_some() {
        (0, 0.0)
    } else {
        ((args.duration * 1000.0) as u64, args.warmup)
    };
    let warm_until = Instant::now() + Duration::from_secs_f64(warmup);
    while Instant::now() < warm_until {
        tokio::time::sleep_until(warm_until.min(Instant::now() + Duration::from_millis(200))).await;
        render("warmup", &views, false);
    }
    // Window.
    let start_ms = now_ms() + 300;
    let end_ms = start_ms + duration_ms;
    let drain_ms = end_ms
        + if aborted.is_some() {
            0
        } else {
            (args.drain * 1000.0) as u64
        };
    let cmd = format!("window {start_ms} {end_ms} {drain_ms}\n");
    for s in stdins.iter_mut().flatten() {
        let _ = s.write_all(cmd.as_bytes()).await;
        let _ = s.flush().await;
    }
    tokio::time::sleep_until(instant_at_ms(start_ms)).await;
    let at_start = sample_server(args.server_pid);
    let machine_start = machine_jiffies();
    let workers_start = workers_cpu();
    while now_ms() < end_ms {
        tokio::time::sleep_until(
            instant_at_ms(end_ms).min(Instant::now() + Duration::from_millis(200)),
        )
        .await;
        render("window", &views, false);
    }
    let at_end = sample_server(args.server_pid);
    let machine_end = machine_jiffies();
    let workers_end = workers_cpu();
    // Drain, then collect every worker's result (bounded).
    let collect_until = instant_at_ms(drain_ms) + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        render("drain", &views, false);
        let done = views
            .lock()
            .unwrap()
            .iter()
            .all(|w| w.result.is_some() || w.exited);
        if done || Instant::now() >= collect_until {
            break;
        }
    }
    render("done", &views, true);
    if tty {
        eprintln!();
    }
    for c in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(2), c.wait())
            .await
            .is_err()
        {
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.wait()).await;
        }
    }

    // ---- merge ----
    let views = views.lock().unwrap();
    let results: Vec<&WorkerResult> = views.iter().filter_map(|w| w.result.as_ref()).collect();
    let lost_workers = views.len() - results.len();
    let sum = |f: &dyn Fn(&WorkerResult) -> u64| -> u64 { results.iter().map(|r| f(r)).sum() };
    let connected = sum(&|r| r.connected_at_start);
    let delivered = sum(&|r| r.messages);
    let bytes = sum(&|r| r.bytes);
    let mut seqs: BTreeMap<u64, (u64, u64, u64, u64)> = BTreeMap::new();
    for r in &results {
        for &(s, ts, lo, hi, cnt) in &r.seqs {
            let e = seqs.entry(s).or_insert((ts, u64::MAX, 0, 0));
            e.1 = e.1.min(lo);
            e.2 = e.2.max(hi);
            e.3 += cnt;
        }
    }
    let first_seq = seqs.keys().next().copied();
    let last_seq = seqs.keys().next_back().copied();
    let published = match (first_seq, last_seq) {
        (Some(a), Some(b)) => b - a + 1,
        _ => 0,
    };
    let (mut head, mut tail) = (0u64, 0u64);
    if let (Some(a), Some(b)) = (first_seq, last_seq) {
        for r in &results {
            head += r
                .first_seq_hist
                .iter()
                .map(|&(s, c)| (s - a) * c)
                .sum::<u64>();
            tail += r
                .last_seq_hist
                .iter()
                .map(|&(s, c)| (b - s) * c)
                .sum::<u64>();
        }
    }
    let gaps = sum(&|r| r.gaps);
    let silent = sum(&|r| r.silent_clients);
    let missed = head + gaps + tail + silent * published;
    let expected = connected * published;
    let mut lat = Hist::new();
    let mut hs = Hist::new();
    for r in &results {
        lat.add_sparse(&r.latency_hist);
        hs.add_sparse(&r.handshake_hist);
    }
    let lat_max = results.iter().map(|r| r.latency_max_us).max().unwrap_or(0);
    let lat_min = results
        .iter()
        .filter(|r| r.messages > 0)
        .map(|r| r.latency_min_us)
        .min()
        .unwrap_or(0);
    let lat_sum = sum(&|r| r.latency_sum_us);
    let hs_max = results
        .iter()
        .map(|r| r.handshake_max_us)
        .max()
        .unwrap_or(0);
    let mut spreads: Vec<u64> = seqs.values().map(|e| e.2.saturating_sub(e.1)).collect();
    spreads.sort_unstable();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors_in_window: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.errors_in_window {
            *errors_in_window.entry(k.clone()).or_default() += v;
        }
    }
    if lost_workers > 0 {
        errors.insert("worker_lost".into(), lost_workers as u64);
    }
    let opt_ms = |v: Option<f64>| v.map(ms);
    let window_s = duration_ms as f64 / 1000.0;
    let server = if args.server_pid.is_some() {
        let ok = at_start.ok && at_end.ok;
        let user = at_end.utime.saturating_sub(at_start.utime) as f64 / tck;
        let sys = at_end.stime.saturating_sub(at_start.stime) as f64 / tck;
        let sched = at_end.sched_ns.saturating_sub(at_start.sched_ns) as f64 / 1e9;
        let per = |x: f64| {
            if delivered > 0 && ok {
                Some(round3(x * 1e6 / delivered as f64))
            } else {
                None
            }
        };
        let rss_per_conn = if connected > 0 && before.ok && at_start.ok {
            Some(round3(
                (at_start.rss_kb as f64 - before.rss_kb as f64) / connected as f64,
            ))
        } else {
            None
        };
        serde_json::json!({
            "pid": args.server_pid,
            "sampled": ok,
            "cpu_user_s": if ok { Some(round3(user)) } else { None },
            "cpu_sys_s": if ok { Some(round3(sys)) } else { None },
            "cpu_pct_of_one_core": if ok && window_s > 0.0 { Some(round3(100.0 * (user + sys) / window_s)) } else { None },
            "cpu_user_us_per_msg": per(user),
            "cpu_sys_us_per_msg": per(sys),
            "cpu_total_us_per_msg": per(user + sys),
            "cpu_schedstat_s": if ok { Some(round3(sched)) } else { None },
            "cpu_schedstat_us_per_msg": per(sched),
            "rss_before_kb": before.ok.then_some(before.rss_kb),
            "rss_after_ramp_kb": at_start.ok.then_some(at_start.rss_kb),
            "rss_end_kb": at_end.ok.then_some(at_end.rss_kb),
            "rss_per_conn_kb": rss_per_conn,
            "clk_tck": tck,
        })
    } else {
        serde_json::Value::Null
    };
    let server_cpu_ticks = if at_start.ok && at_end.ok {
        (at_end.utime + at_end.stime).saturating_sub(at_start.utime + at_start.stime)
    } else {
        0
    };
    let loadgen_ticks = workers_end.saturating_sub(workers_start);
    // Busy time of everything else on the machine in the window (another build, a stray
    // process): when it is large the run shared the cores and its figures are suspect.
    let (mut other_cpu_s, mut irq_cpu_s, mut machine_busy_pct) = (None, None, None);
    if let (Some(a), Some(b)) = (machine_start, machine_end) {
        let tasks = b.tasks.saturating_sub(a.tasks);
        let irq = b.irq.saturating_sub(a.irq);
        if at_start.ok && at_end.ok {
            other_cpu_s = Some(round3(
                tasks.saturating_sub(server_cpu_ticks + loadgen_ticks) as f64 / tck,
            ));
        }
        irq_cpu_s = Some(round3(irq as f64 / tck));
        if b.total > a.total {
            machine_busy_pct = Some(round3(
                100.0 * (tasks + irq) as f64 / (b.total - a.total) as f64,
            ));
        }
    }
    let out = serde_json::json!({
        "url": args.url,
        "clients_requested": n,
        "processes": p,
        "ramp_per_s": args.ramp,
        "ramp_s": round3(ramp_s),
        "warmup_s": args.warmup,
        "duration_s": window_s,
        "drain_s": args.drain,
        "deflate_requested": args.deflate,
        "aborted": aborted,
        "window_start_ms": start_ms,
        "window_end_ms": end_ms,
        "connected": connected,
        "connected_at_end": sum(&|r| r.connected_at_end),
        "late_connected": sum(&|r| r.late_connected),
        "connect_failed": sum(&|r| r.connect_failed),
        "deflate_accepted": sum(&|r| r.deflate_accepted),
        "seqs_seen": seqs.len(),
        "seqs_published": published,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "delivered": delivered,
        "expected": expected,
        "missed": missed,
        "missed_detail": {"late_first": head, "gaps": gaps, "early_last": tail, "silent_clients": silent},
        "out_of_order": sum(&|r| r.out_of_order),
        "bad_stamp": sum(&|r| r.bad_stamp),
        "errors": errors,
        "errors_in_window": errors_in_window,
        "latency_ms": {
            "p50": opt_ms(lat.percentile(0.50, Some(lat_max))),
            "p99": opt_ms(lat.percentile(0.99, Some(lat_max))),
            "max": if lat.total > 0 { Some(ms(lat_max as f64)) } else { None },
            "min": if lat.total > 0 { Some(ms(lat_min as f64)) } else { None },
            "mean": if lat.total > 0 { Some(ms(lat_sum as f64 / lat.total as f64)) } else { None },
            "negative_clamped": sum(&|r| r.negative_latency),
        },
        "spread_ms": {
            "p50": pct_sorted(&spreads, 0.50).map(|v| ms(v as f64)),
            "p99": pct_sorted(&spreads, 0.99).map(|v| ms(v as f64)),
            "max": spreads.last().map(|&v| ms(v as f64)),
        },
        "handshake_ms": {
            "p50": opt_ms(hs.percentile(0.50, Some(hs_max))),
            "p99": opt_ms(hs.percentile(0.99, Some(hs_max))),
            "max": if hs.total > 0 { Some(ms(hs_max as f64)) } else { None },
        },
        "bytes_per_message": if delivered > 0 { Some(round3(bytes as f64 / delivered as f64)) } else { None },
        "messages_per_s": if window_s > 0.0 { Some(round3(delivered as f64 / window_s)) } else { None },
        "server": server,
        "loadgen_cpu_s": round3(loadgen_ticks as f64 / tck),
        "other_cpu_s": other_cpu_s,
        "irq_softirq_cpu_s": irq_cpu_s,
        "machine_busy_pct": machine_busy_pct,
        "workers_lost": lost_workers,
        "workers_deadline_hit": results.iter().filter(|r| r.deadline_hit).count(),
    });
    let line = serde_json::to_string(&out).expect("json");
    println!("{line}");
    if let Some(path) = &args.out {
        let pretty = serde_json::to_string_pretty(&out).expect("json");
        if let Err(e) = std::fs::write(path, pretty + "\n") {
            eprintln!("loadgen: cannot write {path}: {e}");
        }
    }
    let f = |v: &serde_json::Value| {
        if v.is_null() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    eprintln!(
        "loadgen: connected {connected}/{n}, delivered {delivered}/{expected}, missed {missed}, \
         latency p50 {} p99 {} max {} ms, spread p99 {} ms, {} B/msg, server CPU {} us/msg",
        f(&out["latency_ms"]["p50"]),
        f(&out["latency_ms"]["p99"]),
        f(&out["latency_ms"]["max"]),
        f(&out["spread_ms"]["p99"]),
        f(&out["bytes_per_message"]),
        f(&out["server"]["cpu_total_us_per_msg"]),
    );
    if aborted.is_some() || connected == 0 {
        1
    } else {
        0
    }
}

fn main() {
    let args = parse_args();
    if args.worker {
        worker_main(args)
    } else {
        parent_main(args)
    }
}
