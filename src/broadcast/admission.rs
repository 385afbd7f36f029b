//! Admission: who may open a WebSocket, and how many at once.
//!
//! Checked once per upgrade, before the `101`, so every refusal is a plain HTTP answer the client
//! can read (a status, a sentence, and `Retry-After` where waiting helps); nothing here runs per
//! tick or per message. Three limits, each `0` for unlimited:
//!
//! * **Per client address** (`WS_MAX_CONNECTIONS_PER_IP`, 429). Behind a reverse proxy every
//!   connection comes from the proxy, so the client's address is taken from `X-Forwarded-For`
//!   when the peer is a trusted proxy (`TRUSTED_PROXIES`, loopback by default: a proxy on the
//!   same host is the common set-up, and only a process on the host could forge the header).
//! * **For the whole process** (`WS_MAX_CONNECTIONS`, 503). By default it is derived from the
//!   open-file limit with a margin, so the process refuses politely instead of dying of
//!   `EMFILE` when a storm would take the last descriptor.
//! * **New connections per second** (`WS_CONNECT_RATE`, 429): a token bucket that holds one
//!   second's worth, so a reconnect storm after a deploy is spread over a few seconds instead
//!   of starving the clients already connected of CPU.
//!
//! An admitted connection holds a [`Permit`]; dropping it (when the connection ends) gives its
//! place back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;
use serde::Serialize;

use crate::base::addr::canonical;

/// The admission limits.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// WebSocket connections per client address; 0: unlimited.
    pub max_per_ip: usize,
    /// WebSocket connections in the process; 0: unlimited.
    pub max_total: usize,
    /// New WebSocket connections per second; 0: unlimited.
    pub connect_rate: f64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from {ip}: at most {limit} (WS_MAX_CONNECTIONS_PER_IP)")]
    PerIp { ip: IpAddr, limit: usize },
    #[error("the server is full: at most {limit} connections (WS_MAX_CONNECTIONS)")]
    Full { limit: usize },
    #[error("too many new connections: at most {rate} a second (WS_CONNECT_RATE)")]
    Rate { rate: f64, retry_after: Duration },
}

impl Refusal {
    /// 429 for the limits a client can respect by waiting, 503 when the server is full.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Full { .. } => 503,
            Refusal::PerIp { .. } | Refusal::Rate { .. } => 429,
        }
    }

    /// Whole seconds a client should wait (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after, .. } => retry_after.as_secs_f64().ceil().max(1.0) as u64,
            Refusal::PerIp { .. } => 10,
            Refusal::Full { .. } => 5,
        }
    }
}

/// Refusals so far, by reason (for `/health` and `/metrics`).
#[derive(Debug, Default, Serialize)]
pub struct RefusalCounters {
    pub per_ip: AtomicU64,
    pub full: AtomicU64,
    pub rate: AtomicU64,
}

/// A token bucket: `rate` tokens a second, at most `rate` (one second's worth) saved up.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The admission state. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Admission {
    settings: AdmissionSettings,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    bucket: Mutex<Bucket>,
    refused: RefusalCounters,
}

/// An admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.admission.lock_per_ip();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Admission with `settings`.
    pub fn new(settings: AdmissionSettings) -> Arc<Admission> {
        let full = settings.connect_rate.max(1.0);
        Arc::new(Admission {
            settings,
            per_ip: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            bucket: Mutex::new(Bucket {
                tokens: full,
                at: Instant::now(),
            }),
            refused: RefusalCounters::default(),
        })
    }

    fn lock_per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in force.
    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// Refusals so far.
    pub fn refused(&self) -> &RefusalCounters {
        &self.refused
    }

    /// Connections admitted and not yet ended.
    pub fn admitted(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = canonical(peer.ip());
        if !self.is_trusted(peer_ip) {
            return peer_ip;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        // From the right: skip our own proxies; the first other entry is the client. An entry
        // that is not a plain address (`ip:port`, garbage) ends the walk at the proxy: nothing
        // left of it can be trusted.
        for entry in entries.into_iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>().map(canonical) else {
                return peer_ip;
            };
            if !self.is_trusted(ip) {
                return ip;
            }
        }
        peer_ip
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let s = &self.settings;
        // Every admission takes this lock, so the checks and the counts move together.
        let mut per_ip = self.lock_per_ip();
        if s.max_total > 0 && self.total.load(Ordering::Relaxed) >= s.max_total {
            self.refused.full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full { limit: s.max_total });
        }
        let here = per_ip.get(&ip).copied().unwrap_or(0);
        if s.max_per_ip > 0 && here >= s.max_per_ip {
            self.refused.per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerIp {
                ip,
                limit: s.max_per_ip,
            });
        }
        if s.connect_rate > 0.0 {
            if let Err(wait) = self.take_token() {
                self.refused.rate.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Rate {
                    rate: s.connect_rate,
                    retry_after: wait,
                });
            }
        }
        per_ip.insert(ip, here + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }

    /// Takes one token, or says how long until one is there.
    fn take_token(&self) -> Result<(), Duration> {
        let rate = self.settings.connect_rate;
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(rate.max(1.0));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

/// The default `WS_MAX_CONNECTIONS`: the soft open-file limit less a margin (a fiftieth, at
/// least 64) for the listener, HTTP requests, files and outbound connections. `None` when the
/// limit cannot be read (then there is no default limit).
pub fn default_max_connections() -> Option<usize> {
    max_connections_from_limits(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn max_connections_from_limits(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return None;
    }
    let soft: usize = soft.parse().ok()?;
    let margin = (soft / 50).max(64);
    Some(soft.saturating_sub(margin).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_ip: usize, total: usize, rate: f64) -> AdmissionSettings {
        AdmissionSettings {
            max_per_ip: per_ip,
            max_total: total,
            connect_rate: rate,
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_counts_live_permits_only() {
        let a = Admission::new(settings(2, 0, 0.0));
        let p1 = a.admit(ip("10.0.0.1")).unwrap();
        let _p2 = a.admit(ip("10.0.0.1")).unwrap();
        let refused = a.admit(ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.status(), 429);
        assert!(refused.to_string().contains("WS_MAX_CONNECTIONS_PER_IP"));
        // Another address is not affected; a place comes back when a connection ends.
        let _other = a.admit(ip("10.0.0.2")).unwrap();
        drop(p1);
        let _p3 = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admitted(), 3);
        assert_eq!(a.refused().per_ip.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_process_limit_answers_503() {
        let a = Admission::new(settings(0, 2, 0.0));
        let _p = (
            a.admit(ip("10.0.0.1")).unwrap(),
            a.admit(ip("10.0.0.2")).unwrap(),
        );
        let refused = a.admit(ip("10.0.0.3")).unwrap_err();
        assert_eq!((refused.status(), refused.retry_after_secs()), (503, 5));
    }

    #[test]
    fn the_rate_limit_holds_one_second_of_tokens() {
        let a = Admission::new(settings(0, 0, 5.0));
        let mut permits = Vec::new();
        for _ in 0..5 {
            permits.push(a.admit(ip("10.0.0.1")).unwrap());
        }
        let refused = a.admit(ip("10.0.0.1")).unwrap_err();
        assert!(matches!(refused, Refusal::Rate { .. }));
        assert_eq!((refused.status(), refused.retry_after_secs()), (429, 1));
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            a.admit(ip("10.0.0.1")).is_ok(),
            "a token came back after 1/5 s"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let a = Admission::new(settings(0, 0, 0.0));
        let permits: Vec<_> = (0..1000)
            .map(|_| a.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(a.admitted(), permits.len());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let a = Admission::new(settings(0, 0, 0.0));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 127.0.0.1".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(a.client_ip(proxy, &h), ip("203.0.113.7"));
        let stranger: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        assert_eq!(a.client_ip(stranger, &h), ip("198.51.100.9"));
        // No header: the proxy's own address.
        assert_eq!(a.client_ip(proxy, &HeaderMap::new()), ip("127.0.0.1"));
        // IPv4-mapped peers count as IPv4.
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:1".parse().unwrap();
        assert_eq!(a.client_ip(mapped, &HeaderMap::new()), ip("198.51.100.9"));
        // An entry the proxy wrote as `ip:port` ends the walk at the proxy: the client cannot
        // pass a forged address of its own off as the one the proxy saw.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "9.9.9.9, 203.0.113.7:5123".parse().unwrap(),
        );
        assert_eq!(a.client_ip(proxy, &h), ip("127.0.0.1"));
        // A spoofed left-most entry does not help a client behind a trusted proxy.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
        assert_eq!(a.client_ip(proxy, &h), ip("203.0.113.7"));
    }

    #[test]
    fn the_default_process_limit_leaves_a_margin() {
        let limits = |soft: &str| {
            format!("Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            {soft}                20000                files\n")
        };
        assert_eq!(max_connections_from_limits(&limits("20000")), Some(19_600));
        assert_eq!(max_connections_from_limits(&limits("1024")), Some(960));
        assert_eq!(max_connections_from_limits(&limits("unlimited")), None);
        assert_eq!(max_connections_from_limits("garbage"), None);
    }
}
