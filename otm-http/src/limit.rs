//! Rate limits per caller, and the client address behind trusted proxies.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::caller::RateKey;

/// A keyed token bucket per caller ([`RateKey`]).
pub(crate) struct Limiter {
    inner: RateLimiter<RateKey, DefaultKeyedStateStore<RateKey>, DefaultClock>,
    checks: AtomicU64,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let per_minute = NonZeroU32::new(limit.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Limiter {
            inner: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request in `key`'s bucket; when it is empty, the whole
    /// seconds, rounded up, until it holds one again.
    pub(crate) fn check(&self, key: RateKey) -> Result<(), u64> {
        // Forget idle callers now and then so the table does not grow forever.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.inner.retain_recent();
        }
        self.inner.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            retry_after_secs(wait)
        })
    }
}

/// A wait as the whole seconds of a `Retry-After`: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The TCP peer, IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports for IPv4 clients) made plain IPv4. Without
/// connection info (a router driven in-process) `0.0.0.0`.
fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The peer of a request that carries `X-Forwarded-For` although the peer
/// is not a trusted proxy (the header is then ignored): a sign that the
/// operator has a proxy in front and forgot to trust it.
pub(crate) fn untrusted_forwarder(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer(parts);
    let forwarded = parts.headers.contains_key("x-forwarded-for");
    (forwarded && !trusted.iter().any(|n| n.contains(peer))).then_some(peer)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not a trusted proxy.
/// IPv4-mapped addresses are made plain IPv4 before any matching. Without
/// connection info (a router driven in-process) every request shares one
/// bucket at `0.0.0.0`.
pub(crate) fn client_ip(parts: &Parts, trusted: &[IpNet]) -> IpAddr {
    let peer = peer(parts);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    // The proxy that wrote the hop at hand: the peer, then each trusted
    // hop in turn.
    let mut proxy = peer;
    for hop in forwarded.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => proxy = ip,
            Some(ip) => return ip,
            None => {
                // Not an address (a proxy that writes `unknown`, or an
                // obfuscated name): the proxy that wrote it is the closest
                // known party. Counting it so keeps one odd hop from
                // merging clients of every proxy into one bucket.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        %proxy,
                        "a trusted proxy sent an X-Forwarded-For entry that is not an \
                         address; its requests count as the proxy's own (logged once)"
                    );
                }
                return proxy;
            }
        }
    }
    proxy
}

/// One `X-Forwarded-For` entry as an address: a bare IPv4 or IPv6 address,
/// or with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`), or an IPv6
/// address in brackets; IPv4-mapped addresses made plain.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = match hop.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match hop.strip_prefix('[') {
            Some(rest) => rest.split(']').next()?.parse().ok()?,
            None => hop.parse::<SocketAddr>().map(|a| a.ip()).ok()?,
        },
    };
    Some(ip.to_canonical())
}

/// A per-client token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a bad prefix length"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::{net_of, Caller};
    use axum::http::Request;
    use std::net::Ipv6Addr;

    fn parts(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut req = Request::builder().uri("/");
        if let Some(f) = forwarded {
            req = req.header("x-forwarded-for", f);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        parts
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(net_of(a), net_of(b));
        assert_ne!(net_of(a), net_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(net_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_ne!(
            net_of("192.0.2.7".parse().unwrap()),
            net_of("192.0.2.8".parse().unwrap())
        );
    }

    #[test]
    fn a_mapped_proxy_address_is_trusted_and_mapped_hops_are_canonical() {
        let trusted = [net("10.0.0.1/32")];
        let p = parts("[::ffff:10.0.0.1]:443", Some("::ffff:198.51.100.9"));
        assert_eq!(
            client_ip(&p, &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(untrusted_forwarder(&p, &trusted), None);
        // An untrusted peer's header is ignored, and reported.
        let p = parts("203.0.113.5:5000", Some("198.51.100.9"));
        assert_eq!(
            client_ip(&p, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            untrusted_forwarder(&p, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            untrusted_forwarder(&parts("203.0.113.5:5000", None), &trusted),
            None
        );
    }

    #[test]
    fn hops_with_ports_parse_and_a_bad_hop_is_its_proxys() {
        let trusted = [net("10.0.0.0/8")];
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        for (header, client) in [
            ("198.51.100.9:4711", "198.51.100.9"),
            ("[2001:db8::9]:4711", "2001:db8::9"),
            ("[2001:db8::9]", "2001:db8::9"),
            ("198.51.100.9, 10.0.0.7", "198.51.100.9"),
        ] {
            let p = parts("10.0.0.1:443", Some(header));
            assert_eq!(client_ip(&p, &trusted), ip(client), "{header}");
        }
        // An entry that is no address counts as the proxy that wrote it:
        // the peer, or the trusted hop that forwarded it.
        let p = parts("10.0.0.1:443", Some("198.51.100.9, unknown"));
        assert_eq!(client_ip(&p, &trusted), ip("10.0.0.1"));
        let p = parts("10.0.0.1:443", Some("198.51.100.9, unknown, 10.0.0.7"));
        assert_eq!(client_ip(&p, &trusted), ip("10.0.0.7"));
        let p = parts("10.0.0.1:443", Some("_hidden, 10.0.0.8"));
        assert_ne!(
            client_ip(&p, &trusted),
            client_ip(&parts("10.0.0.1:443", Some("_hidden, 10.0.0.7")), &trusted),
            "two proxies' odd hops count apart"
        );
    }

    #[test]
    fn one_ipv6_host_cannot_rotate_past_the_limit() {
        let limiter = Limiter::new(RateLimit {
            per_minute: 1,
            burst: 2,
        });
        let mut allowed = 0;
        for i in 0..50u16 {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 7, i, i, i, i));
            if limiter
                .check(Caller::Anonymous(ip).rate_key().unwrap())
                .is_ok()
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 2, "50 addresses of one /64 share one bucket");
    }
}
