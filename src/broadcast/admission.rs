//! Admission: who may open a WebSocket, and how many at once.
//!
//! Checked once per upgrade, before the `101`, so every refusal is a plain HTTP answer the client
//! can read (a status, a sentence, and `Retry-After` where waiting helps); nothing here runs per
//! tick or per message. Three limits, each `0` for unlimited:
//!
//! * **Per client address** (`WS_MAX_CONNECTIONS_PER_IP`, 429). An address is an IPv4 address
//!   or an IPv6 /64 ([`crate::base::addr::group`]). Behind a reverse proxy every
//!   connection comes from the proxy, so the client's address is taken from `X-Forwarded-For`
//!   when the peer is a trusted proxy (`TRUSTED_PROXIES`, loopback by default: a proxy on the
//!   same host is the common set-up, and only a process on the host could forge the header).
//! * **For the whole process** (`WS_MAX_CONNECTIONS`, 503). By default it is derived from the
//!   open-file limit with a margin, so the process refuses politely instead of dying of
//!   `EMFILE` when a storm would take the last descriptor.
//! * **New connections per second**, per address (`WS_CONNECT_RATE`, 429) and for the whole
//!   process (`WS_CONNECT_RATE_TOTAL`, 429): token buckets that hold one second's worth. The
//!   process-wide one spreads a reconnect storm after a deploy over a few seconds instead of
//!   starving the clients already connected of CPU; the per-address one keeps a single client
//!   that connects in a loop from draining the process-wide one for everyone. A request with a
//!   wrong token also takes a token from its address's bucket ([`Admission::charge_failure`]),
//!   so guessing a token is as slow as connecting.
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

use crate::base::addr::{canonical, group};

/// The admission limits.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// WebSocket connections per client address; 0: unlimited.
    pub max_per_ip: usize,
    /// WebSocket connections in the process; 0: unlimited.
    pub max_total: usize,
    /// New WebSocket connections per second from one address; 0: unlimited.
    pub connect_rate: f64,
    /// New WebSocket connections per second in the whole process; 0: unlimited.
    pub connect_rate_total: f64,
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
    #[error("too many new connections from {ip}: at most {rate} a second (WS_CONNECT_RATE)")]
    Rate {
        ip: IpAddr,
        rate: f64,
        retry_after: Duration,
    },
    #[error("too many new connections: at most {rate} a second in all (WS_CONNECT_RATE_TOTAL)")]
    RateTotal { rate: f64, retry_after: Duration },
}

impl Refusal {
    /// 429 for the limits a client can respect by waiting, 503 when the server is full.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Full { .. } => 503,
            Refusal::PerIp { .. } | Refusal::Rate { .. } | Refusal::RateTotal { .. } => 429,
        }
    }

    /// Whole seconds a client should wait (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after, .. } | Refusal::RateTotal { retry_after, .. } => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
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
    pub rate_total: AtomicU64,
    /// Connections turned away in their HTTP phase by the accept loop's per-address limit
    /// (`HTTP_MAX_CONNECTIONS_PER_IP`; its process-full refusals count as `full`).
    pub http_per_ip: AtomicU64,
    /// Requests with a missing or wrong token (WebSockets, and REST data and operations routes).
    pub unauthorized: AtomicU64,
}

/// A token bucket: `rate` tokens a second, at most `rate` (one second's worth, at least one)
/// saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity(rate),
            at: now,
        }
    }

    /// Refills for the time since the last look; `Err` with the wait when no token is there.
    fn check(&mut self, rate: f64, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(capacity(rate));
        self.at = now;
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            // A rate small enough to overflow a Duration waits as long as a Duration can say.
            Err(Duration::try_from_secs_f64((1.0 - self.tokens) / rate).unwrap_or(Duration::MAX))
        }
    }

    /// True when the bucket would be full at `now` (it can be forgotten).
    fn is_full_at(&self, rate: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= capacity(rate)
    }
}

fn capacity(rate: f64) -> f64 {
    rate.max(1.0)
}

/// What admission keeps for one address: its open connections and its connect-rate bucket.
/// Forgotten when nothing is open and the bucket is full again.
#[derive(Debug)]
struct Place {
    open: usize,
    bucket: Bucket,
}

/// Addresses kept before the forgettable ones are swept out (and then twice the survivors):
/// the sweep's cost is spread over as many admissions as it looks at.
const SWEEP_AT: usize = 1024;

/// The admission state. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Admission {
    settings: AdmissionSettings,
    places: Mutex<Places>,
    total: AtomicUsize,
    refused: RefusalCounters,
}

/// Every address's place, and the process-wide bucket; under one lock so the checks and the
/// counts move together.
#[derive(Debug)]
struct Places {
    by_ip: HashMap<IpAddr, Place>,
    total_bucket: Bucket,
    sweep_at: usize,
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
        let mut places = self.admission.lock_places();
        if let Some(place) = places.by_ip.get_mut(&self.ip) {
            place.open = place.open.saturating_sub(1);
        }
    }
}

impl Admission {
    /// Admission with `settings`.
    pub fn new(settings: AdmissionSettings) -> Arc<Admission> {
        let total_bucket = Bucket::full(settings.connect_rate_total, Instant::now());
        Arc::new(Admission {
            settings,
            places: Mutex::new(Places {
                by_ip: HashMap::new(),
                total_bucket,
                sweep_at: SWEEP_AT,
            }),
            total: AtomicUsize::new(0),
            refused: RefusalCounters::default(),
        })
    }

    fn lock_places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Addresses admission keeps a place for (open connections or a bucket not yet full).
    pub fn addresses(&self) -> usize {
        self.lock_places().by_ip.len()
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

    /// Admits a connection from `ip` (counted under its [`group`]), or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let s = &self.settings;
        let key = group(ip);
        let now = Instant::now();
        let mut places = self.lock_places();
        if s.max_total > 0 && self.total.load(Ordering::Relaxed) >= s.max_total {
            self.refused.full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full { limit: s.max_total });
        }
        let open = places.by_ip.get(&key).map_or(0, |p| p.open);
        if s.max_per_ip > 0 && open >= s.max_per_ip {
            self.refused.per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerIp {
                ip: key,
                limit: s.max_per_ip,
            });
        }
        // Both buckets are looked at before either is charged: a refusal costs nothing.
        let place = places.place(key, s.connect_rate, now);
        if s.connect_rate > 0.0 {
            if let Err(wait) = place.bucket.check(s.connect_rate, now) {
                self.refused.rate.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Rate {
                    ip: key,
                    rate: s.connect_rate,
                    retry_after: wait,
                });
            }
        }
        if s.connect_rate_total > 0.0 {
            if let Err(wait) = places.total_bucket.check(s.connect_rate_total, now) {
                self.refused.rate_total.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::RateTotal {
                    rate: s.connect_rate_total,
                    retry_after: wait,
                });
            }
            places.total_bucket.tokens -= 1.0;
        }
        let place = places.place(key, s.connect_rate, now);
        if s.connect_rate > 0.0 {
            place.bucket.tokens -= 1.0;
        }
        place.open += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            admission: self.clone(),
            ip: key,
        })
    }

    /// Charges a failed attempt from `ip` (a wrong token) against its address's connect rate:
    /// `Err` when the address has no token left, and the attempt should get 429 rather than
    /// another answer to its guess.
    pub fn charge_failure(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.refused.unauthorized.fetch_add(1, Ordering::Relaxed);
        let rate = self.settings.connect_rate;
        if rate <= 0.0 {
            return Ok(());
        }
        let key = group(ip);
        let now = Instant::now();
        let mut places = self.lock_places();
        let place = places.place(key, rate, now);
        match place.bucket.check(rate, now) {
            Ok(()) => {
                place.bucket.tokens -= 1.0;
                Ok(())
            }
            Err(wait) => {
                self.refused.rate.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Rate {
                    ip: key,
                    rate,
                    retry_after: wait,
                })
            }
        }
    }

    /// Counts a request refused for a missing token (no charge: nothing was guessed).
    pub fn count_unauthorized(&self) {
        self.refused.unauthorized.fetch_add(1, Ordering::Relaxed);
    }
}

impl Places {
    /// `key`'s place, made when missing. Before a new address is added to a map that reached
    /// its sweep size, the places that can be forgotten (nothing open, bucket full) are swept,
    /// so the map holds the addresses active within about a second, not every address ever seen.
    fn place(&mut self, key: IpAddr, rate: f64, now: Instant) -> &mut Place {
        if !self.by_ip.contains_key(&key) && self.by_ip.len() >= self.sweep_at {
            self.by_ip
                .retain(|_, p| p.open > 0 || (rate > 0.0 && !p.bucket.is_full_at(rate, now)));
            self.sweep_at = (self.by_ip.len() * 2).max(SWEEP_AT);
        }
        self.by_ip.entry(key).or_insert_with(|| Place {
            open: 0,
            bucket: Bucket::full(rate, now),
        })
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
            connect_rate_total: 0.0,
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
    fn one_address_draining_its_rate_leaves_the_others_theirs() {
        let a = Admission::new(AdmissionSettings {
            connect_rate_total: 100.0,
            ..settings(0, 0, 3.0)
        });
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(a.admit(ip("10.0.0.1")).unwrap());
        }
        let refused = a.admit(ip("10.0.0.1")).unwrap_err();
        assert!(matches!(refused, Refusal::Rate { .. }), "{refused:?}");
        assert!(refused.to_string().contains("WS_CONNECT_RATE"));
        // Another address has its own bucket.
        for _ in 0..3 {
            permits.push(a.admit(ip("10.0.0.2")).unwrap());
        }
        // An IPv6 /64 is one address: its hosts share a bucket.
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            permits.push(a.admit(ip(host)).unwrap());
        }
        assert!(matches!(
            a.admit(ip("2001:db8::ffff")).unwrap_err(),
            Refusal::Rate { .. }
        ));
        assert!(a.admit(ip("2001:db8:0:1::1")).is_ok(), "the next /64");
        assert_eq!(a.refused().rate.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_process_wide_rate_is_a_ceiling_over_all_addresses() {
        let a = Admission::new(AdmissionSettings {
            connect_rate_total: 4.0,
            ..settings(0, 0, 3.0)
        });
        let mut permits = Vec::new();
        for n in 1..=4 {
            permits.push(a.admit(ip(&format!("10.0.0.{n}"))).unwrap());
        }
        let refused = a.admit(ip("10.0.0.9")).unwrap_err();
        assert!(matches!(refused, Refusal::RateTotal { .. }), "{refused:?}");
        assert_eq!(refused.status(), 429);
        assert!(refused.to_string().contains("WS_CONNECT_RATE_TOTAL"));
        // A refusal by the ceiling costs the address nothing: its three tokens wait for it.
        std::thread::sleep(Duration::from_millis(300));
        assert!(a.admit(ip("10.0.0.9")).is_ok());
        assert_eq!(a.refused().rate_total.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn wrong_tokens_spend_the_address_s_connect_rate() {
        let a = Admission::new(settings(0, 0, 2.0));
        assert!(a.charge_failure(ip("10.0.0.1")).is_ok());
        assert!(a.charge_failure(ip("10.0.0.1")).is_ok());
        let refused = a.charge_failure(ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.status(), 429);
        // The guesser's bucket is empty for its connections too; others are untouched.
        assert!(a.admit(ip("10.0.0.1")).is_err());
        assert!(a.admit(ip("10.0.0.2")).is_ok());
        assert_eq!(a.refused().unauthorized.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn addresses_are_forgotten_once_idle_and_refilled() {
        let a = Admission::new(settings(0, 0, 1_000_000.0));
        for n in 0..3000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + n);
            drop(a.admit(IpAddr::V4(addr)).unwrap());
        }
        // Each bucket is full again 1 µs after its one connection; the sweeps keep the map
        // near the sweep size rather than at every address seen.
        assert!(a.addresses() <= 2 * SWEEP_AT, "{}", a.addresses());
        let kept = a.admit(ip("10.9.9.9")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        for n in 0..(2 * SWEEP_AT as u32) {
            drop(
                a.admit(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + n)))
                    .unwrap(),
            );
        }
        assert!(a.addresses() <= 2 * SWEEP_AT, "{}", a.addresses());
        assert_eq!(a.admitted(), 1, "the open connection keeps its place");
        drop(kept);
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
