//! Test harness: the real `marketcast` binary on an ephemeral port, and small clients.
#![allow(dead_code)]

pub mod history;
pub mod redis_server;
pub mod ssi_double;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The fixture snapshots shipped with the repo.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running server process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    logs: mpsc::Receiver<String>,
    /// Lines logged before the listening line, handed out by the first `drain_logs`.
    early: std::cell::RefCell<Vec<String>>,
    /// This server's own `DATA_DIR` (unless the test gave one), removed when it is dropped.
    own_data_dir: Option<std::path::PathBuf>,
    /// The token `/health`'s details take (`ADMIN_TOKEN`, else `WS_AUTH_TOKEN`), when set.
    pub admin_token: Option<String>,
}

impl ServerProcess {
    /// Starts `marketcast serve` with `APP_PORT=0` and the given settings, and waits for its
    /// start-up line.
    pub fn start(env: &[(&str, &str)]) -> ServerProcess {
        let dir = std::env::temp_dir();
        // Each server checkpoints into a folder of its own, so parallel tests never restore
        // one another's sessions.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let own_data_dir = (!env.iter().any(|(k, _)| *k == "DATA_DIR")).then(|| {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            dir.join(format!("marketcast-test-data-{}-{n}", std::process::id()))
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marketcast"));
        if let Some(d) = &own_data_dir {
            cmd.env("DATA_DIR", d);
        }
        cmd.arg("serve")
            .current_dir(dir)
            .env("APP_PORT", "0")
            .env("APP_HOST", "127.0.0.1")
            .env("LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Waited for in `Drop`.
        #[allow(clippy::zombie_processes)]
        let mut child = cmd.spawn().expect("start marketcast");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        let setting = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, v)| *k == name && !v.is_empty())
                .map(|(_, v)| v.to_string())
        };
        let admin_token = setting("ADMIN_TOKEN").or_else(|| setting("WS_AUTH_TOKEN"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut early = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("server printed its listening line; it said {early:#?}")
            });
            let rest = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = rest {
                let addr = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                let addr = addr.trim_end_matches(|c: char| !c.is_ascii_digit());
                early.push(line.clone());
                return ServerProcess {
                    child,
                    addr: addr.parse().expect("address in the start-up line"),
                    logs: rx,
                    early: std::cell::RefCell::new(early),
                    own_data_dir,
                    admin_token,
                };
            }
            early.push(line);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lines the server logged so far.
    pub fn drain_logs(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.early.borrow_mut());
        lines.extend(self.logs.try_iter());
        lines
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Polls `/health` until `what` holds and returns that answer; panics with the last one
    /// after 30 s (a guard against a hang, not a timing bound).
    pub async fn wait_health(
        &self,
        what: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = self.health().await;
            if what(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "/health never got there: {h}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET path` over HTTP/1.1; returns status, headers (lower-cased names) and body.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path, &[]).await
    }

    /// `/health` with its details: with the operators' token when the server has one.
    pub async fn health(&self) -> serde_json::Value {
        // As `?token=`, percent-encoded: a token may hold what a header cannot.
        let path = match &self.admin_token {
            Some(t) => {
                let encoded: String = t
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                format!("/health?token={encoded}")
            }
            None => "/health".to_string(),
        };
        let r = self.get(&path).await;
        assert_eq!(r.status, 200, "/health: {}", r.body);
        r.json()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.own_data_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `n` simulator messages in the replay format (receive time, tab, SSI envelope), from `seed`
/// and a fixed start (the same arguments give the same day).
pub fn simulated_day(n: usize, seed: u64) -> Vec<String> {
    simulate(&["--events", &n.to_string(), "--seed", &seed.to_string()])
}

/// `marketcast simulate` with `args` from the same fixed start as [`simulated_day`].
pub fn simulate(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_marketcast"))
        .arg("simulate")
        .args(args)
        .args(["--start", "2026-11-26T09:15:00+07:00"])
        .output()
        .expect("run marketcast simulate");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The SSI envelope of a replay line (what the stream delivers).
pub fn envelope_of(line: &str) -> &str {
    line.split_once('\t').map_or(line, |(_, message)| message)
}

/// The last `X-QUOTE` for a futures contract among replay lines or SSI envelopes: (symbol,
/// best bid, best ask).
pub fn last_futures_quote(lines: &[String]) -> (String, f64, f64) {
    lines
        .iter()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(envelope_of(line)).ok()?;
            let c: serde_json::Value = serde_json::from_str(v["Content"].as_str()?).ok()?;
            let symbol = c["Symbol"].as_str()?;
            (c["RType"] == "X-QUOTE" && symbol.starts_with("VN30F")).then(|| {
                let price = |key: &str| c[key].as_f64().unwrap();
                (symbol.to_string(), price("BidPrice1"), price("AskPrice1"))
            })
        })
        .expect("the day quotes its futures contract")
}

/// A minimal HTTP/1.1 GET, so the tests need no HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, "GET", path, headers, b"").await
}

/// A minimal HTTP/1.1 request with a body (sent with its Content-Length).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let s = TcpStream::connect(addr).await.unwrap();
    http_request_on(s, addr, method, path, headers, body).await
}

/// A TCP connection to `addr` from the loopback address `local` (127.0.0.2, ...), so a test can
/// be several clients as the server's per-address limits count them.
pub async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = match local {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// [`http_get`] from the loopback address `local`.
pub async fn http_get_from(
    local: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let s = connect_from(local, addr).await;
    http_request_on(s, addr, "GET", path, headers, b"").await
}

/// A minimal HTTP/1.1 request on a connection already open to `addr`.
pub async fn http_request_on(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading all of a large body and close: that is fine.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    // A reset after the answer (a refused body left unread) still leaves the answer readable.
    if let Err(e) = s.read_to_end(&mut raw).await {
        assert!(!raw.is_empty(), "no HTTP answer: {e}");
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Connects a real WebSocket client.
pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// The next text message, parsed; panics on anything else or after `timeout`.
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> (String, serde_json::Value) {
    loop {
        let msg = tokio::time::timeout(timeout, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        match msg {
            Message::Text(t) => {
                let text = t.to_string();
                let v = serde_json::from_str(&text).expect("JSON text");
                return (text, v);
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A raw WebSocket client over TCP: does the handshake, then exposes the socket.
pub async fn raw_connect(addr: SocketAddr, path: &str, extra_headers: &str) -> (TcpStream, String) {
    let s = TcpStream::connect(addr).await.unwrap();
    raw_connect_on(s, addr, path, extra_headers).await
}

/// [`raw_connect`] from the loopback address `local`.
pub async fn raw_connect_from(
    local: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
) -> (TcpStream, String) {
    let s = connect_from(local, addr).await;
    raw_connect_on(s, addr, path, extra_headers).await
}

async fn raw_connect_on(
    mut s: TcpStream,
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
) -> (TcpStream, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "connection closed during handshake");
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

/// One server frame read from a raw socket: (first byte, payload).
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok((h[0], payload))
}

/// A client frame's bytes: `first` (FIN, RSV and opcode bits) as given, the length in the
/// shortest of RFC 6455's three forms, and the payload masked with `mask`, or sent as it is
/// (and the mask bit clear) when `mask` is `None`.
pub fn client_frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 65535 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// Writes one masked client frame.
pub async fn write_frame(s: &mut TcpStream, first: u8, payload: &[u8]) {
    let frame = client_frame(first, Some([0x12, 0x34, 0x56, 0x78]), payload);
    s.write_all(&frame).await.unwrap();
}

/// The `seq` a message starts with (`{"seq":N,...`, as every tick message does); `None` for
/// any other message (a status message, say).
pub fn seq_of(message: &[u8]) -> Option<u64> {
    let rest = message.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The `seq` of a message that must be a tick message.
pub fn leading_seq(message: &[u8]) -> u64 {
    seq_of(message).expect("a message starts with its seq")
}

/// The message in a permessage-deflate payload (RFC 7692: raw deflate, with the
/// `00 00 ff ff` the sender took off its end put back). Panics on a payload that is not a
/// deflate stream.
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 8 + 4096);
    loop {
        let (read, made) = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(
                &input[read as usize..],
                &mut out,
                flate2::FlushDecompress::Sync,
            )
            .expect("a permessage-deflate payload");
        let all_read = d.total_in() as usize == input.len();
        if status == flate2::Status::StreamEnd || (all_read && out.len() < out.capacity()) {
            return out;
        }
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
            continue;
        }
        assert!(
            d.total_in() != read || d.total_out() != made,
            "the deflate stream stopped short"
        );
    }
}

/// Posts NDJSON lines to `/api/ingest` with the bearer `token`.
pub async fn post_ingest(server: &ServerProcess, token: &str, body: &str) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/x-ndjson"),
        ("Authorization", auth.as_str()),
    ];
    http_request(
        server.addr,
        "POST",
        "/api/ingest",
        &headers,
        body.as_bytes(),
    )
    .await
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `tests/e2e/<script>` with `args` and returns the JSON line it printed last; panics with
/// its output when it fails.
pub fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs (scripts/test installs what the e2e clients need)");
    assert!(
        out.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// A server that re-stamps the 480 KB late-session fixture every `interval` seconds.
pub fn large_static_server(interval: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let fixture = fixture("snapshot-large.json");
    let mut env = vec![
        ("FEED", "static"),
        ("SNAPSHOT_FILE", fixture.as_str()),
        ("WS_BROADCAST_INTERVAL", interval),
    ];
    env.extend_from_slice(extra);
    ServerProcess::start(&env)
}
