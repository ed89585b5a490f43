//! [`RedisConfig`]: the Redis store's settings and URL, and what TLS
//! needs from them (the CA file, the plaintext rule).

use std::path::PathBuf;
use std::time::Duration;

use redis::TlsCertificates;

use crate::url::{invalid_url, Query};
use crate::{Result, StoreError, StoreOptions};

/// Settings for [`RedisStore`](super::RedisStore).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` for a standalone server, or
    /// the seed nodes of a cluster (see [`RedisConfig::cluster`]);
    /// `rediss://` for TLS, with the server's certificate verified (against
    /// the Mozilla roots, or [`RedisConfig::ca_file`]) and its name checked.
    pub urls: Vec<String>,
    /// Whether `urls` are Redis Cluster seed nodes.
    pub cluster: bool,
    /// Prefix of every key otm writes. Default `otm:`.
    pub key_prefix: String,
    /// A PEM file of CA certificates that replaces the Mozilla roots for
    /// `rediss://` (a private CA, as managed services and self-hosted TLS
    /// often use). Only for TLS URLs.
    pub ca_file: Option<PathBuf>,
    /// How long one command may take before the store reports itself
    /// unavailable. Default 2 s.
    pub response_timeout: Duration,
    /// How long one connection attempt may take. Default 2 s.
    pub connection_timeout: Duration,
    /// Whether a plain `redis://` connection to another machine is
    /// allowed. Default `false`: `connect` refuses it (a server on this
    /// machine is always allowed). URL: `allow_unverified=true`.
    pub allow_unverified: bool,
    /// Options every backend honours.
    pub options: StoreOptions,
}

impl RedisConfig {
    /// A standalone server at `url`.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::build(vec![url.into()], false)
    }

    /// A Redis Cluster reached through any of `seed_urls`.
    pub fn cluster<I, S>(seed_urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(seed_urls.into_iter().map(Into::into).collect(), true)
    }

    fn build(urls: Vec<String>, cluster: bool) -> Self {
        RedisConfig {
            urls,
            cluster,
            key_prefix: "otm:".into(),
            ca_file: None,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            allow_unverified: false,
            options: StoreOptions::default(),
        }
    }

    /// Parses `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (standalone) or
    /// `redis+cluster://HOST:PORT,HOST:PORT,…` (cluster seed nodes), and
    /// their TLS forms `rediss://` and `rediss+cluster://`, with
    /// `prefix=PREFIX` for [`RedisConfig::key_prefix`], with TLS
    /// `ca=PATH` for [`RedisConfig::ca_file`], and without it
    /// `allow_unverified=true` ([`RedisConfig::allow_unverified`]); any
    /// other parameter is an error naming it. Certificate checks cannot be turned off: redis's
    /// `#insecure` is refused. Same as `url.parse()`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, mut query) = Query::split(url, "Redis")?;
        if base.contains('#') {
            return Err(invalid_url(
                "a Redis store URL takes no #fragment: certificate checks stay on; \
                 give a private CA with ca=PATH",
            ));
        }
        let (scheme, rest) = base.split_once("://").unwrap_or_default();
        let mut config = match scheme {
            "redis+cluster" | "rediss+cluster" => {
                let hosts = rest.split('/').next().unwrap_or_default();
                if hosts.split(',').any(str::is_empty) {
                    return Err(invalid_url(format!(
                        "{scheme}:// takes HOST:PORT seed nodes separated by commas"
                    )));
                }
                let node = scheme.trim_end_matches("+cluster");
                RedisConfig::cluster(hosts.split(',').map(|h| format!("{node}://{h}")))
            }
            "redis" | "rediss" => RedisConfig::standalone(base),
            _ => {
                return Err(invalid_url(
                    "a Redis store URL starts with redis://, rediss://, redis+cluster:// \
                     or rediss+cluster://",
                ))
            }
        };
        if let Some(prefix) = query.take("prefix") {
            config = config.with_key_prefix(prefix);
        }
        if let Some(ca) = query.take("ca") {
            if !scheme.starts_with("rediss") {
                return Err(invalid_url(
                    "the Redis URL parameter `ca` needs TLS: use rediss:// or rediss+cluster://",
                ));
            }
            if ca.is_empty() {
                return Err(invalid_url(
                    "the Redis URL parameter `ca` takes a file path",
                ));
            }
            config = config.with_ca_file(ca);
        }
        if let Some(allow) = query.flag("allow_unverified")? {
            config.allow_unverified = allow;
        }
        query.finish()?;
        Ok(config)
    }

    /// Whether the URLs ask for TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("rediss://"))
    }

    /// Sets [`RedisConfig::ca_file`].
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets [`RedisConfig::allow_unverified`].
    pub fn with_allow_unverified(mut self, allow: bool) -> Self {
        self.allow_unverified = allow;
        self
    }

    /// Sets [`RedisConfig::key_prefix`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`RedisConfig::options`].
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }
}

impl std::str::FromStr for RedisConfig {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

/// The custom CA of a TLS config, read from [`RedisConfig::ca_file`]; `None`
/// keeps redis's own roots (the Mozilla set) or plain TCP.
pub(super) fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    if !config.tls() {
        return Err(StoreError::Invalid {
            reason: "a Redis CA file needs rediss:// URLs",
        });
    }
    let pem = std::fs::read(path).map_err(|e| StoreError::Misconfigured {
        reason: format!("cannot read the Redis CA file {}: {e}", path.display()),
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// The transport rule (see `unverified_transport`) for plain `redis://`
/// URLs to another machine: anyone on the path can read the ciphertext and
/// the verifiers, or answer instead of the server.
pub(super) fn check_transport(config: &RedisConfig) -> Result<()> {
    for host in config.urls.iter().filter_map(|u| plaintext_remote_host(u)) {
        crate::unverified_transport(
            "Redis",
            host,
            config.allow_unverified,
            "use rediss:// (with ca=PATH for a private CA)",
        )?;
    }
    Ok(())
}

/// The host of a plain `redis://[user:password@]host[:port][/db]` URL when
/// it is not this machine (never the password).
fn plaintext_remote_host(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("redis://")?.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => host_port,
    };
    (!crate::url::is_loopback_host(host)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::plaintext_remote_host;

    #[test]
    fn plaintext_to_another_machine_is_noticed() {
        for local in [
            "redis://127.0.0.1:6379",
            "redis://localhost:6379/2",
            "redis://:pw@[::1]:6379",
            "redis://user:p@ss@127.0.0.1",
            "rediss://redis.example:6380",
        ] {
            assert_eq!(plaintext_remote_host(local), None, "{local}");
        }
        assert_eq!(
            plaintext_remote_host("redis://:pw@10.0.0.5:6379/1"),
            Some("10.0.0.5")
        );
        assert_eq!(
            plaintext_remote_host("redis://cache.internal"),
            Some("cache.internal")
        );
        assert_eq!(
            plaintext_remote_host("redis://[2001:db8::1]:6379"),
            Some("[2001:db8::1]")
        );
    }
}
