//! Who is asking: a [`Caller`]. Every operation of the
//! [`Service`](crate::Service) takes one, whether it came over HTTP (the
//! router makes it from the request: the client's address, or what the
//! [`CreatePolicy`](crate::policy::CreatePolicy) identifies) or from the
//! host's own code ([`Caller::Server`]). The rate limits are keyed by it and
//! the create policy decides by it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use axum::http::{header, HeaderMap};
use otm_core::{Creator, ManageSecret};

/// Who is asking the service to do something.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A client the host does not know, by its address (behind trusted
    /// proxies, the client's, not the proxy's). Rate limits count per IPv4
    /// address and per IPv6 /64.
    Anonymous(IpAddr),
    /// The holder of an API token, as the policy recognised it.
    ApiToken(TokenHolder),
    /// Someone the host's own authentication identified (a user, a
    /// tenant), by a name the host chose. Rate limits count per name.
    Identity(String),
    /// The host's own backend, calling the service in process (a backend
    /// that mints links with [`Service::send`](crate::Service::send)). It
    /// is trusted only because the host says so by passing this: it is not
    /// rate limited, but the create policy still decides for it and every
    /// other check applies.
    Server,
}

/// An API token's holder: what a policy that recognised a token says of
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenHolder {
    /// The token's name, for logs and events.
    pub name: String,
    /// A key unique to this token and stable across restarts (never the
    /// token itself: its digest, say). Rate limits and quotas count per
    /// key, so two tokens that share a name still count apart.
    pub key: String,
    /// The secret from which the management token of each message this
    /// holder creates is derived, when the token may manage what it made
    /// ([`CreateLimits::with_manage_secret`](crate::policy::CreateLimits::with_manage_secret)).
    /// Status and burn requests that present the API token instead of a
    /// management token derive the message's token from it.
    pub manage: Option<ManageSecret>,
}

impl TokenHolder {
    /// A holder named `name` with the unique `key`, that manages nothing.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        TokenHolder {
            name: name.into(),
            key: key.into(),
            manage: None,
        }
    }

    /// Sets [`TokenHolder::manage`].
    pub fn with_manage(mut self, secret: ManageSecret) -> Self {
        self.manage = Some(secret);
        self
    }
}

/// The bucket a caller's requests are counted in by a rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    /// An IPv4 address or an IPv6 /64.
    Net(IpAddr),
    /// A token's key or a host identity's name.
    Named(String),
}

impl fmt::Display for RateKey {
    /// The key's text form, as a store that counts rates keeps it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Net(ip) => write!(f, "net:{ip}"),
            RateKey::Named(name) => f.write_str(name),
        }
    }
}

impl Caller {
    /// The bucket its requests count in, `None` when it is not limited
    /// ([`Caller::Server`]).
    pub(crate) fn rate_key(&self) -> Option<RateKey> {
        match self {
            Caller::Anonymous(ip) => Some(RateKey::Net(net_of(*ip))),
            Caller::ApiToken(holder) => Some(RateKey::Named(format!("token:{}", holder.key))),
            Caller::Identity(name) => Some(RateKey::Named(format!("identity:{name}"))),
            Caller::Server => None,
        }
    }

    /// Who this caller is as the creator of a message: what the store
    /// keeps and every event of the message carries (an anonymous
    /// caller's address is not kept; a token by its name).
    pub fn creator(&self) -> Creator {
        match self {
            Caller::Anonymous(_) => Creator::Anonymous,
            Caller::ApiToken(holder) => Creator::Token(holder.name.clone()),
            Caller::Identity(name) => Creator::Identity(name.clone()),
            Caller::Server => Creator::Server,
        }
    }

    /// The secret from which this caller's management tokens are derived,
    /// if it manages what it created.
    pub fn manage_secret(&self) -> Option<&ManageSecret> {
        match self {
            Caller::ApiToken(holder) => holder.manage.as_ref(),
            _ => None,
        }
    }
}

/// For logs: `anonymous`, `token:NAME`, `identity:NAME`, `server` (never
/// the client's address).
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Anonymous(_) => f.write_str("anonymous"),
            Caller::ApiToken(holder) => write!(f, "token:{}", holder.name),
            Caller::Identity(name) => write!(f, "identity:{name}"),
            Caller::Server => f.write_str("server"),
        }
    }
}

/// The rate-limit bucket of a client address: its IPv4 address, or the /64
/// of its IPv6 address (one host commonly holds a whole /64, so counting
/// per address would let it rotate through buckets at will).
pub(crate) fn net_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A request's `Authorization` header, read the one way every part of otm
/// reads it (the service's status and burn, otm-server's API tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// No `Authorization` header.
    Absent,
    /// `Bearer <value>` (the scheme in any case), the value trimmed and
    /// not empty.
    Bearer(&'a str),
    /// A header that is not a bearer credential (another scheme, an empty
    /// value, bytes that are not text): a wrong credential, not a missing
    /// one.
    Other,
}

impl<'a> Authorization<'a> {
    /// The `Authorization` header of `headers`.
    pub fn of(headers: &'a HeaderMap) -> Self {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Authorization::Absent;
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .map_or(Authorization::Other, Authorization::Bearer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_is_read_one_way() {
        let of = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::AUTHORIZATION, v.parse().unwrap());
            }
            match Authorization::of(&headers) {
                Authorization::Absent => "absent".to_owned(),
                Authorization::Bearer(t) => format!("bearer {t}"),
                Authorization::Other => "other".to_owned(),
            }
        };
        assert_eq!(of(None), "absent");
        assert_eq!(of(Some("Bearer abc")), "bearer abc");
        assert_eq!(of(Some("bearer  abc ")), "bearer abc");
        assert_eq!(of(Some("Bearer ")), "other");
        assert_eq!(of(Some("Basic dXNlcjpwYXNz")), "other");
        assert_eq!(of(Some("Bearer")), "other");
    }

    #[test]
    fn callers_count_apart_by_what_identifies_them() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(
            Caller::Anonymous(a).rate_key(),
            Caller::Anonymous(b).rate_key()
        );
        let one = Caller::ApiToken(TokenHolder::new("ci", "k1"));
        let two = Caller::ApiToken(TokenHolder::new("ci", "k2"));
        assert_ne!(one.rate_key(), two.rate_key(), "same name, other token");
        assert_ne!(
            Caller::Identity("k1".into()).rate_key(),
            one.rate_key(),
            "an identity never shares a token's bucket"
        );
        assert_eq!(Caller::Server.rate_key(), None);
        assert_eq!(one.to_string(), "token:ci");
        assert_eq!(Caller::Anonymous(a).to_string(), "anonymous");
    }
}
