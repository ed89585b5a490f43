//! [`connect`]: a store from its URL, the one place that names every
//! backend.

use std::sync::Arc;

use crate::url::invalid_url;
use crate::{BlobStore, Result, StoreOptions};

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
/// ([`StoreError::InvalidUrl`](crate::StoreError::InvalidUrl)), so a typo never silently falls back to a
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
            Ok(Arc::new(crate::SqliteStore::connect(config).await?))
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
    use crate::StoreError;

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
}
