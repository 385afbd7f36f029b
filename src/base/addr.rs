//! Which connections count as "one address" for every per-address limit.
//!
//! A client on IPv4 has one address; a client on IPv6 is usually handed a whole /64 by its
//! provider and can pick any of 2^64 addresses in it. Counting IPv6 per address would let one
//! host open a fresh "address" per connection, so every per-address limit (WebSocket admission,
//! HTTP connections, TLS handshakes, the connect rate) keys its counts by [`group`]: the IPv4
//! address itself (an IPv4-mapped IPv6 address counts as its IPv4 address), or an IPv6 address's
//! /64 prefix.

use std::net::{IpAddr, Ipv6Addr};

/// The key a per-address limit counts `ip` under: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6
/// with its low 64 bits cleared.
pub fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as their IPv4 address; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        assert_eq!(group(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            group(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            group(ip("2001:db8:1:2::7"))
        );
        assert_ne!(group(ip("2001:db8:1:2::1")), group(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn ipv4_counts_by_its_address() {
        assert_eq!(group(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(group(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_ne!(group(ip("127.0.0.2")), group(ip("127.0.0.3")));
        assert_eq!(canonical(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }
}
