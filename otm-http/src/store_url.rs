//! Choosing and connecting a store from a URL, as the server's `--store` does.

use std::sync::Arc;

use otm_store::{BlobStore, StoreError, StoreOptions};

/// Connects the store a URL names:
///
/// | URL | store | feature |
/// |---|---|---|
/// | `sqlite://PATH` | SQLite file (created if missing) | `sqlite` |
/// | `memory:` | in-process, lost on exit | `memory` |
/// | `redis://HOST:PORT[/DB]` | Redis standalone | `redis` |
/// | `redis+cluster://HOST:PORT,HOST:PORT,…` | Redis Cluster seed nodes | `redis` |
/// | `postgres://USER@HOST:PORT/DB[?otm_schema=NAME]` (or `postgresql://`) | PostgreSQL | `postgres` |
/// | `s3://BUCKET/PREFIX?endpoint=URL&path_style=true&region=R` | S3 or an S3-compatible server | `s3` |
///
/// `key_prefix` applies to Redis keys (default `otm:`).
pub async fn connect_store(
    url: &str,
    options: StoreOptions,
    key_prefix: Option<&str>,
) -> Result<Arc<dyn BlobStore>, StoreError> {
    let scheme = url.split(':').next().unwrap_or_default();
    let _ = (&options, key_prefix);
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config = otm_store::SqliteConfig::from_url(url)?.with_options(options);
            Ok(Arc::new(otm_store::SqliteStore::open(config).await?))
        }
        #[cfg(feature = "memory")]
        "memory" => Ok(Arc::new(otm_store::MemoryStore::new(options))),
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" => {
            let mut config = if scheme == "redis" {
                otm_store::RedisConfig::standalone(url)
            } else {
                let rest = url.trim_start_matches("redis+cluster://");
                let hosts = rest.split('/').next().unwrap_or_default();
                if hosts.is_empty() {
                    return Err(StoreError::Invalid {
                        reason: "redis+cluster:// needs at least one HOST:PORT",
                    });
                }
                otm_store::RedisConfig::cluster(hosts.split(',').map(|h| format!("redis://{h}")))
            };
            if let Some(prefix) = key_prefix {
                config = config.with_key_prefix(prefix);
            }
            Ok(Arc::new(otm_store::RedisStore::connect(config.with_options(options)).await?))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            // `otm_schema=NAME` picks the schema; the rest goes to the driver.
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut schema = None;
            let rest: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| match p.strip_prefix("otm_schema=") {
                    Some(s) => {
                        schema = Some(s.to_owned());
                        false
                    }
                    None => true,
                })
                .collect();
            let url = if rest.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", rest.join("&"))
            };
            let mut config = otm_store::PostgresConfig::new(url).with_options(options);
            if let Some(schema) = schema {
                config = config.with_schema(schema);
            }
            Ok(Arc::new(otm_store::PostgresStore::connect(config).await?))
        }
        #[cfg(feature = "s3")]
        "s3" => {
            let config = otm_store::S3Config::from_url(url)?.with_options(options);
            Ok(Arc::new(otm_store::S3Store::connect(config).await?))
        }
        // Reached only in builds without some store feature.
        #[allow(unreachable_patterns)]
        "sqlite" | "memory" | "redis" | "redis+cluster" | "postgres" | "postgresql" | "s3" => {
            Err(StoreError::Invalid {
                reason: "this build of otm-http lacks the cargo feature for that store",
            })
        }
        _ => Err(StoreError::Invalid {
            reason: "unknown store URL; use sqlite://PATH, memory:, redis://, redis+cluster://, postgres://, or s3://",
        }),
    }
}
