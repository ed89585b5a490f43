//! Store URLs: each backend's config parses its own URL (`FromStr`), with
//! its options as query parameters; [`connect`] picks the backend.

use std::sync::Arc;

use crate::{BlobStore, Result, StoreError, StoreOptions};

/// An [`StoreError::InvalidUrl`] with `reason`.
pub(crate) fn invalid_url(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl {
        reason: reason.into(),
    }
}

/// The host of `[user[:password]@]host[:port][/path]` (an IPv6 address in
/// its brackets), if it has one.
#[allow(dead_code)] // used by the network backends only
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
#[allow(dead_code)] // unused in builds without a backend that has a URL
pub(crate) struct Query<'a> {
    store: &'static str,
    pairs: Vec<(&'a str, &'a str)>,
}

#[allow(dead_code)]
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

/// The cargo feature of otm-store that serves `scheme`, if any does.
fn feature_for(scheme: &str) -> Option<&'static str> {
    match scheme {
        "sqlite" => Some("sqlite"),
        "memory" => Some("memory"),
        "redis" | "redis+cluster" | "rediss" | "rediss+cluster" => Some("redis"),
        "postgres" | "postgresql" => Some("postgres"),
        "s3" => Some("s3"),
        _ => None,
    }
}

/// Connects the store `url` names with `options`, among the backends this
/// build has the cargo feature for:
///
/// | URL | store | feature |
/// |---|---|---|
/// | `sqlite://PATH` | [`SqliteStore`](crate::SqliteStore): one file, created if missing | `sqlite` |
/// | `memory:` | [`MemoryStore`](crate::MemoryStore): in-process, lost on exit | `memory` |
/// | `redis://[USER:PASSWORD@]HOST:PORT[/DB][?prefix=otm:]` | [`RedisStore`](crate::RedisStore), standalone | `redis` |
/// | `redis+cluster://HOST:PORT,HOST:PORT,…[?prefix=otm:]` | [`RedisStore`](crate::RedisStore), Redis Cluster seed nodes | `redis` |
/// | `rediss://…` and `rediss+cluster://…`, each also with `ca=PATH` | the same over TLS, verified against the Mozilla roots or the CA file | `redis` |
/// | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=NAME&sslmode=…]` (or `postgresql://`) | [`PostgresStore`](crate::PostgresStore) | `postgres` |
/// | `s3://BUCKET/PREFIX[?endpoint=URL&path_style=true&region=R&claim=auto&create_bucket=false&lifecycle_days=8&allow_no_lifecycle=false&allow_versioning=false]` | [`S3Store`](crate::S3Store) | `s3` |
///
/// A parameter the backend does not know is an error that names it
/// ([`StoreError::InvalidUrl`]), so a typo never silently falls back to a
/// default.
///
/// ```
/// # #[cfg(feature = "memory")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = otm_store::connect("memory:", otm_store::StoreOptions::default()).await?;
/// assert_eq!(store.backend_name(), "memory");
/// let err = otm_store::connect("sqlite://otm.db?cache=shared", Default::default()).await.unwrap_err();
/// assert!(err.to_string().contains("`cache`"), "{err}");
/// # Ok::<(), otm_store::StoreError>(())
/// # }).unwrap();
/// ```
pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<dyn BlobStore>> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let _ = &options;
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config = url.parse::<crate::SqliteConfig>()?.with_options(options);
            Ok(Arc::new(crate::SqliteStore::open(config).await?))
        }
        #[cfg(feature = "memory")]
        "memory" => {
            if url != "memory:" {
                return Err(invalid_url(
                    "the memory store's URL is `memory:`, with nothing after it",
                ));
            }
            Ok(Arc::new(crate::MemoryStore::new(options)))
        }
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" | "rediss" | "rediss+cluster" => {
            let config = url.parse::<crate::RedisConfig>()?.with_options(options);
            Ok(Arc::new(crate::RedisStore::connect(config).await?))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let config = url.parse::<crate::PostgresConfig>()?.with_options(options);
            Ok(Arc::new(crate::PostgresStore::connect(config).await?))
        }
        #[cfg(feature = "s3")]
        "s3" => {
            let config = url.parse::<crate::S3Config>()?.with_options(options);
            Ok(Arc::new(crate::S3Store::connect(config).await?))
        }
        _ => Err(match feature_for(scheme) {
            Some(feature) => invalid_url(format!(
                "{scheme}: store URLs need otm-store's `{feature}` cargo feature, which this build lacks"
            )),
            None => invalid_url(
                "unknown store URL; use sqlite://PATH, memory:, redis://, rediss://, redis+cluster://, rediss+cluster://, postgres:// or s3://",
            ),
        }),
    }
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

    #[tokio::test]
    async fn unknown_and_unbuilt_schemes_are_clear() {
        let err = connect("ftp://x", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("unknown store URL"), "{err}");
        #[cfg(not(feature = "s3"))]
        {
            let err = connect("s3://b/p", StoreOptions::default())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("`s3` cargo feature"), "{err}");
        }
        #[cfg(feature = "memory")]
        assert!(connect("memory:x", StoreOptions::default()).await.is_err());
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
