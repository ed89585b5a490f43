//! What every backend's URL and connection share: the query parameters of
//! a store URL (each backend's config parses its own URL with them,
//! `FromStr`), the host of an authority, and the rule for connections that
//! are not verified TLS. [`connect`](crate::connect) picks the backend.

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
use crate::Result;
use crate::StoreError;

/// An [`StoreError::InvalidUrl`] with `reason`.
pub(crate) fn invalid_url(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl {
        reason: reason.into(),
    }
}

/// The host of `[user[:password]@]host[:port][/path]` (an IPv6 address in
/// its brackets), if it has one.
#[cfg(feature = "s3")]
pub(crate) fn host_of(authority_and_path: &str) -> Option<&str> {
    let authority = authority_and_path.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &host_port[..v6.find(']')? + 2],
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// The query parameters of a store URL. The backend that parses the URL
/// takes the ones it knows; [`Query::finish`] refuses whatever is left.
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) struct Query<'a> {
    store: &'static str,
    pairs: Vec<(&'a str, &'a str)>,
}

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
impl<'a> Query<'a> {
    /// Splits `url` at its `?`: the part before it and the parameters.
    /// `store` names the backend in error messages. A parameter given twice
    /// is an error.
    pub(crate) fn split(url: &'a str, store: &'static str) -> Result<(&'a str, Query<'a>)> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(invalid_url(format!(
                    "the {store} URL gives the parameter `{name}` twice"
                )));
            }
            pairs.push((name, value));
        }
        Ok((base, Query { store, pairs }))
    }

    /// Removes and returns the value of `name`.
    pub(crate) fn take(&mut self, name: &str) -> Option<&'a str> {
        let at = self.pairs.iter().position(|(n, _)| *n == name)?;
        Some(self.pairs.remove(at).1)
    }

    /// Removes `name` and reads it as a flag: `true`/`1`/empty or `false`/`0`.
    #[cfg(any(feature = "postgres", feature = "redis", feature = "s3"))]
    pub(crate) fn flag(&mut self, name: &str) -> Result<Option<bool>> {
        match self.take(name) {
            None => Ok(None),
            Some("true" | "1" | "") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(invalid_url(format!(
                "the {} URL parameter `{name}` takes true or false, not `{other}`",
                self.store
            ))),
        }
    }

    /// Removes `name` and parses it with `FromStr`; `what` says what it takes.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "s3"))]
    pub(crate) fn parse<T: std::str::FromStr>(
        &mut self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>> {
        match self.take(name) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                invalid_url(format!(
                    "the {} URL parameter `{name}` takes {what}, not `{value}`",
                    self.store
                ))
            }),
        }
    }

    /// Removes the parameters named in `names`, keeping them in their order
    /// as `name=value` (for a driver that reads them itself).
    #[cfg(feature = "postgres")]
    pub(crate) fn take_all(&mut self, names: &[&str]) -> Vec<(&'a str, &'a str)> {
        let (taken, rest) = self
            .pairs
            .drain(..)
            .partition(|(name, _)| names.contains(name));
        self.pairs = rest;
        taken
    }

    /// Refuses the first parameter nobody took, naming it.
    pub(crate) fn finish(self) -> Result<()> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(invalid_url(format!(
                "unknown {} URL parameter `{name}`",
                self.store
            ))),
        }
    }
}

/// Whether a store URL's `host` is this machine (`localhost` or a loopback
/// address, IPv6 with or without brackets): where plaintext is no risk.
#[cfg(any(feature = "postgres", feature = "redis", feature = "s3"))]
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The rule for connections that are not verified TLS (plain TCP, or TLS
/// without a checked certificate): allowed to this machine without asking;
/// to any other host (private addresses and cluster DNS names included)
/// only when `allowed` (the URL's `allow_unverified=true`, or the config's
/// `with_allow_unverified(true)`), and then with a warning. Otherwise
/// `InvalidUrl`, naming `fix`.
#[cfg(any(feature = "postgres", feature = "redis", feature = "s3"))]
pub(crate) fn unverified_transport(
    store: &str,
    host: &str,
    allowed: bool,
    fix: &str,
) -> Result<()> {
    if is_loopback_host(host) {
        return Ok(());
    }
    if allowed {
        tracing::warn!(
            %host,
            "the {store} connection is not verified TLS, allowed by allow_unverified: \
             anyone on the path can read the ciphertext and verifiers, or answer instead \
             of the server"
        );
        return Ok(());
    }
    Err(StoreError::InvalidUrl {
        reason: format!(
            "the {store} connection to {host} would not be verified TLS, so anyone on the \
             path could read the ciphertext and verifiers or answer instead of the server: \
             {fix}; or, on a private network you trust, add allow_unverified=true to the URL"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_takes_known_and_names_the_unknown() {
        let (base, mut q) = Query::split("x://a/b?one=1&flag&two=x", "test").unwrap();
        assert_eq!(base, "x://a/b");
        assert_eq!(q.take("one"), Some("1"));
        assert_eq!(q.flag("flag").unwrap(), Some(true));
        let err = q.finish().unwrap_err().to_string();
        assert!(err.contains("unknown test URL parameter `two`"), "{err}");
    }

    #[test]
    fn query_refuses_repeats_and_bad_values() {
        assert!(Query::split("x://a?p=1&p=2", "test").is_err());
        let (_, mut q) = Query::split("x://a?f=maybe&n=x", "test").unwrap();
        assert!(q.flag("f").unwrap_err().to_string().contains("`f`"));
        assert!(q.parse::<u32>("n", "a number").is_err());
    }

    #[test]
    fn hosts_are_read_past_credentials_ports_and_paths() {
        assert_eq!(host_of("minio:9000"), Some("minio"));
        assert_eq!(host_of("u:p@10.0.0.5:9000/x"), Some("10.0.0.5"));
        assert_eq!(host_of("[::1]:9000"), Some("[::1]"));
        assert_eq!(host_of("localhost@evil.example:80/"), Some("evil.example"));
        assert_eq!(host_of("/path"), None);
    }

    #[test]
    fn unverified_transport_is_refused_off_this_machine_unless_allowed() {
        for local in ["127.0.0.1", "localhost", "[::1]", "::1"] {
            assert!(crate::unverified_transport("X", local, false, "fix").is_ok());
        }
        for remote in ["10.0.0.5", "redis", "db.internal", "[2001:db8::1]"] {
            let err = crate::unverified_transport("X", remote, false, "use TLS").unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(remote) && text.contains("use TLS"), "{text}");
            assert!(text.contains("allow_unverified=true"), "{text}");
            assert!(crate::unverified_transport("X", remote, true, "use TLS").is_ok());
        }
    }
}
