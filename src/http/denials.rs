//! The log of refused tokens, at most one line a second per address.
//!
//! A client guessing tokens, or a dashboard left open with a stale one, would otherwise write a
//! warning per request: thousands of lines a second that hide everything else and cost disk. The
//! first refusal from an address is logged at once; those within the next second are counted and
//! reported, with their number, on the first refusal after it. The map holds the addresses
//! refused within about a second (older ones are swept out), so it stays small under a flood
//! from many addresses too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::base::addr::group;

/// At most one line per address per this long.
const EVERY: Duration = Duration::from_secs(1);

/// Addresses kept before the quiet ones are swept out (then twice the survivors).
const SWEEP_AT: usize = 1024;

/// What was logged last for one address, and how many refusals went unlogged since.
#[derive(Debug)]
struct Last {
    at: Instant,
    unlogged: u64,
}

/// Refusals by address, for the throttled warning.
#[derive(Debug)]
pub struct Denials {
    by_ip: Mutex<(HashMap<IpAddr, Last>, usize)>,
}

impl Default for Denials {
    fn default() -> Self {
        Denials {
            by_ip: Mutex::new((HashMap::new(), SWEEP_AT)),
        }
    }
}

impl Denials {
    /// Records a refusal from `ip`; `Some(n)` when a line should be written now, `n` being the
    /// refusals it reports (this one and those not logged since the last line).
    pub fn record(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let key = group(ip);
        let mut guard = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let (map, sweep_at) = &mut *guard;
        if !map.contains_key(&key) && map.len() >= *sweep_at {
            // An address swept out with refusals not yet reported gets its line now.
            map.retain(|ip, last| {
                let keep = now.saturating_duration_since(last.at) < EVERY;
                if !keep && last.unlogged > 0 {
                    tracing::warn!(client = %ip, refused = last.unlogged, "{} more refusals from this address, not logged one by one", last.unlogged);
                }
                keep
            });
            *sweep_at = (map.len() * 2).max(SWEEP_AT);
        }
        match map.get_mut(&key) {
            Some(last) if now.saturating_duration_since(last.at) < EVERY => {
                last.unlogged += 1;
                None
            }
            Some(last) => {
                let n = last.unlogged + 1;
                *last = Last {
                    at: now,
                    unlogged: 0,
                };
                Some(n)
            }
            None => {
                map.insert(
                    key,
                    Last {
                        at: now,
                        unlogged: 0,
                    },
                );
                Some(1)
            }
        }
    }

    /// Records a refusal and writes the warning when one is due.
    pub fn warn(&self, ip: IpAddr, door: &str, why: &str) {
        if let Some(n) = self.record(ip, Instant::now()) {
            tracing::warn!(client = %ip, refused = n, "{door} refused: {why} ({n} in the last second or more from this address)");
        }
    }

    /// Addresses kept (for tests).
    pub fn addresses(&self) -> usize {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_per_address_with_the_count() {
        let d = Denials::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(d.record(a, t0), Some(1));
        for i in 1..=9 {
            assert_eq!(d.record(a, t0 + Duration::from_millis(i * 50)), None);
        }
        // Another address is logged on its own.
        assert_eq!(d.record(b, t0 + Duration::from_millis(10)), Some(1));
        // A second later: this one and the nine not logged.
        assert_eq!(d.record(a, t0 + Duration::from_millis(1000)), Some(10));
        assert_eq!(d.record(a, t0 + Duration::from_millis(1001)), None);
        // IPv6 hosts of one /64 share a line.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(d.record(v6a, t0), Some(1));
        assert_eq!(d.record(v6b, t0), None);
    }

    #[test]
    fn quiet_addresses_are_forgotten() {
        let d = Denials::default();
        let t0 = Instant::now();
        for n in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            // Two seconds apart per thousand: older ones are swept at each sweep.
            d.record(ip, t0 + Duration::from_millis(u64::from(n) * 2));
        }
        assert!(d.addresses() <= 2 * SWEEP_AT, "{}", d.addresses());
    }
}
