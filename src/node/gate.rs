//! The gate every TCP connection passes before hyper sees it: how many connections may be in
//! their HTTP phase, per client address and for the whole process.
//!
//! WebSocket admission ([`crate::broadcast::admission`]) counts upgraded connections only, so
//! without this gate one host could hold any number of sockets that never upgrade (idle, mid
//! request, or reading a response slowly) until the process ran out of descriptors. Here:
//!
//! * **Per address** (`HTTP_MAX_CONNECTIONS_PER_IP`, 429): connections in their HTTP phase from
//!   one address ([`crate::base::addr::group`]: IPv6 by its /64). Peers in `TRUSTED_PROXIES` are
//!   not counted per address: behind a reverse proxy every connection comes from the proxy, and
//!   its clients are told apart per request, from `X-Forwarded-For`, by admission.
//! * **In total** (`WS_MAX_CONNECTIONS`, 503): connections in their HTTP phase plus admitted
//!   WebSockets, so the process limit that keeps the last descriptors free holds for every
//!   connection, not only upgraded ones.
//!
//! A connection holds its [`GatePermit`] while it speaks HTTP and lets it go when hyper hands
//! the socket to a WebSocket (the connection's HTTP task ends then): an upgraded connection is
//! admission's to count, so 19,000 WebSocket clients from one load generator are held by
//! `WS_MAX_CONNECTIONS_PER_IP`, never by this gate. Nothing here runs per tick.
//!
//! A refused plain connection gets a short plain-text HTTP answer written on the socket by
//! [`Gate::answer_refusal`], in a task of its own and within [`REFUSAL_BUDGET`], so the accept
//! loop never waits on a client (a refused TLS connection is closed: its client could not read
//! plain text).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::base::addr::{canonical, group};
use crate::broadcast::admission::Admission;

/// The longest a refused connection is kept: writing the answer, then reading what the client
/// had sent (so closing does not reset the connection before the client reads the answer).
pub const REFUSAL_BUDGET: Duration = Duration::from_secs(2);

/// Refused connections being answered at once, at most; past it a refused connection is closed
/// without an answer, so a flood of refusals costs a bounded number of descriptors.
const REFUSALS_IN_FLIGHT: usize = 256;

/// What a client may read of its own request before its refused connection is closed.
const REFUSAL_DRAIN: usize = 64 * 1024;

/// The gate's limits.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Connections in their HTTP phase per client address; 0: unlimited.
    pub max_per_ip: usize,
    /// HTTP-phase connections plus admitted WebSockets; 0: unlimited.
    pub max_total: usize,
    /// Peers not counted per address (reverse proxies).
    pub trusted_proxies: Vec<IpNet>,
}

/// Why a connection was turned away at the gate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateRefusal {
    #[error("too many connections from {ip}: at most {limit} (HTTP_MAX_CONNECTIONS_PER_IP)")]
    PerIp { ip: IpAddr, limit: usize },
    #[error("the server is full: at most {limit} connections (WS_MAX_CONNECTIONS)")]
    Full { limit: usize },
}

impl GateRefusal {
    /// The whole HTTP answer: 429 or 503, with `Retry-After`, and the reason as its body.
    pub fn answer(&self) -> String {
        let (status, retry_after) = match self {
            GateRefusal::PerIp { .. } => ("429 Too Many Requests", 10),
            GateRefusal::Full { .. } => ("503 Service Unavailable", 5),
        };
        let body = format!("{self}\n");
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: {retry_after}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// The gate's counts. One per listener, shared behind an `Arc`.
#[derive(Debug)]
pub struct Gate {
    settings: GateSettings,
    admission: Arc<Admission>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections in their HTTP phase (trusted or not).
    open: AtomicUsize,
    refusing: Arc<tokio::sync::Semaphore>,
}

/// A connection's place at the gate, given back when dropped (at the end of its HTTP phase).
#[derive(Debug)]
pub struct GatePermit {
    gate: Arc<Gate>,
    /// The key it is counted under per address; `None` for a trusted proxy.
    address: Option<IpAddr>,
}

impl GatePermit {
    /// The key this connection counts under per address, or `None` for a trusted proxy (whose
    /// connections no per-address limit applies to).
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        let mut per_ip = self.gate.lock_per_ip();
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.address {
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Gate {
    /// The gate with `settings`; `admission` tells how many WebSockets are admitted.
    pub fn new(settings: GateSettings, admission: Arc<Admission>) -> Arc<Gate> {
        Arc::new(Gate {
            settings,
            admission,
            per_ip: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            refusing: Arc::new(tokio::sync::Semaphore::new(REFUSALS_IN_FLIGHT)),
        })
    }

    fn lock_per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections in their HTTP phase now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Refusals so far: (per address, process full). Kept in admission's counters (as
    /// `http_per_ip` and `full`), so `/health` and `/metrics` show them with the others.
    pub fn refused(&self) -> (u64, u64) {
        let refused = self.admission.refused();
        (
            refused.http_per_ip.load(Ordering::Relaxed),
            refused.full.load(Ordering::Relaxed),
        )
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    }

    /// Lets a connection from `peer` in, or says why not.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<GatePermit, GateRefusal> {
        let s = &self.settings;
        let ip = canonical(peer.ip());
        let address = (!self.is_trusted(ip)).then(|| group(ip));
        // Every admission and release takes this lock, so the checks and the counts move
        // together.
        let mut per_ip = self.lock_per_ip();
        let open = self.open.load(Ordering::Relaxed);
        if s.max_total > 0 && open + self.admission.admitted() >= s.max_total {
            self.admission
                .refused()
                .full
                .fetch_add(1, Ordering::Relaxed);
            return Err(GateRefusal::Full { limit: s.max_total });
        }
        if let Some(key) = address {
            let here = per_ip.get(&key).copied().unwrap_or(0);
            if s.max_per_ip > 0 && here >= s.max_per_ip {
                self.admission
                    .refused()
                    .http_per_ip
                    .fetch_add(1, Ordering::Relaxed);
                return Err(GateRefusal::PerIp {
                    ip: key,
                    limit: s.max_per_ip,
                });
            }
            per_ip.insert(key, here + 1);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(GatePermit {
            gate: self.clone(),
            address,
        })
    }

    /// Answers a refused connection without hyper and closes it, in a task of its own that
    /// lasts at most [`REFUSAL_BUDGET`]. When `REFUSALS_IN_FLIGHT` (256) are being answered
    /// already, the connection is closed at once.
    pub fn answer_refusal(&self, tcp: TcpStream, refusal: &GateRefusal) {
        let Ok(slot) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        let answer = refusal.answer();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(REFUSAL_BUDGET, answer_and_close(tcp, answer)).await;
        });
    }
}

/// Writes `answer`, half-closes, and reads (and drops) what the client sent until it closes or
/// [`REFUSAL_DRAIN`] bytes came: closing with its request unread would reset the connection,
/// and a reset can destroy the answer before the client reads it.
async fn answer_and_close(mut tcp: TcpStream, answer: String) {
    if tcp.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN {
        match tcp.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::admission::AdmissionSettings;

    fn admission(max_total: usize) -> Arc<Admission> {
        Admission::new(AdmissionSettings {
            max_per_ip: 0,
            max_total,
            connect_rate: 0.0,
            connect_rate_total: 0.0,
            trusted_proxies: Vec::new(),
        })
    }

    fn gate(per_ip: usize, total: usize, admission: &Arc<Admission>) -> Arc<Gate> {
        Gate::new(
            GateSettings {
                max_per_ip: per_ip,
                max_total: total,
                trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            },
            admission.clone(),
        )
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40000)
    }

    #[test]
    fn per_address_counts_open_connections_and_a_closed_one_frees_a_place() {
        let g = gate(2, 0, &admission(0));
        let first = g.admit(peer("10.0.0.1")).unwrap();
        let _second = g.admit(peer("10.0.0.1")).unwrap();
        let refused = g.admit(peer("10.0.0.1")).unwrap_err();
        assert_eq!(
            refused,
            GateRefusal::PerIp {
                ip: "10.0.0.1".parse().unwrap(),
                limit: 2
            }
        );
        assert!(refused.to_string().contains("HTTP_MAX_CONNECTIONS_PER_IP"));
        let _other = g.admit(peer("10.0.0.2")).unwrap();
        drop(first);
        let _third = g.admit(peer("10.0.0.1")).unwrap();
        assert_eq!((g.open(), g.refused()), (3, (1, 0)));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_ipv4_mapped_as_ipv4() {
        let g = gate(1, 0, &admission(0));
        let _a = g.admit(peer("2001:db8:1:2::1")).unwrap();
        assert!(g.admit(peer("2001:db8:1:2:ffff::9")).is_err());
        let _b = g.admit(peer("2001:db8:1:3::1")).unwrap();
        let _c = g.admit(peer("::ffff:10.0.0.7")).unwrap();
        assert!(g.admit(peer("10.0.0.7")).is_err());
    }

    #[test]
    fn trusted_proxies_are_not_limited_per_address_but_count_in_total() {
        let adm = admission(0);
        let g = gate(1, 3, &adm);
        let proxy: Vec<_> = (0..3)
            .map(|_| g.admit(peer("127.0.0.1")).unwrap())
            .collect();
        assert!(proxy.iter().all(|p| p.address().is_none()));
        assert!(matches!(
            g.admit(peer("10.0.0.1")),
            Err(GateRefusal::Full { limit: 3 })
        ));
        drop(proxy);
        assert_eq!(g.open(), 0);
        assert_eq!(
            g.admit(peer("10.0.0.1")).unwrap().address(),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn admitted_websockets_count_against_the_process_limit() {
        let adm = admission(3);
        let g = gate(0, 3, &adm);
        let _ws = (
            adm.admit("10.0.0.1".parse().unwrap()).unwrap(),
            adm.admit("10.0.0.2".parse().unwrap()).unwrap(),
        );
        let _http = g.admit(peer("10.0.0.3")).unwrap();
        let refused = g.admit(peer("10.0.0.4")).unwrap_err();
        assert!(refused.to_string().contains("WS_MAX_CONNECTIONS"));
        assert!(refused.answer().starts_with("HTTP/1.1 503 "));
    }

    #[test]
    fn zero_means_unlimited() {
        let g = gate(0, 0, &admission(0));
        let permits: Vec<_> = (0..1000)
            .map(|_| g.admit(peer("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(g.open(), permits.len());
    }

    #[test]
    fn the_answer_is_a_complete_http_response() {
        let answer = GateRefusal::PerIp {
            ip: "10.0.0.1".parse().unwrap(),
            limit: 5,
        }
        .answer();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 10"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("at most 5 (HTTP_MAX_CONNECTIONS_PER_IP)"));
    }

    #[tokio::test]
    async fn a_refused_connection_reads_its_answer_then_the_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let g = gate(1, 0, &admission(0));
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            got
        });
        let (tcp, _) = listener.accept().await.unwrap();
        g.answer_refusal(tcp, &GateRefusal::Full { limit: 9 });
        let got = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .unwrap()
            .unwrap();
        assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
        assert!(got.ends_with("at most 9 connections (WS_MAX_CONNECTIONS)\n"));
    }
}
