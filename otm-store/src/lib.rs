//! # otm-store
//!
//! Where otm keeps ciphertext until its one reader comes: the [`BlobStore`]
//! trait and its backends, each behind a cargo feature.
//!
//! | feature    | backend                      | atomic take                               | expiry                      |
//! |------------|------------------------------|-------------------------------------------|-----------------------------|
//! | `memory`   | [`MemoryStore`]              | one mutex                                 | checked at take, purge      |
//! | `sqlite`   | [`SqliteStore`] (default)    | a counting `UPDATE`, then one `DELETE … RETURNING` | checked in SQL, purge |
//! | `redis`    | [`RedisStore`] (+ Cluster)   | one Lua script on the key's node          | native `PEXPIRE`            |
//! | `postgres` | [`PostgresStore`]            | a counting `UPDATE`, then one `DELETE … RETURNING` | checked in SQL, purge |
//! | `s3`       | [`S3Store`]                  | `If-Match` delete or `If-None-Match` claim | checked at take, lifecycle |
//!
//! Stores hold exactly what they are given: the sealed envelope, the claim
//! and access verifiers, the expiry and, when given, the management
//! verifier, the creator and the reference (and the receipts and events
//! made of them). They never see a key, a proof in the clear beyond the
//! call that checks it, or plaintext.
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # tokio_test_block_on(async {
//! use std::time::{Duration, SystemTime};
//! use otm_core::{seal, Key, MessageId, Secrets};
//! use otm_store::{BlobStore, MemoryStore, NewMessage, StoreError, StoreOptions};
//!
//! let store = MemoryStore::new(StoreOptions::default());
//! let secrets = Secrets::derive(&Key::generate()?, None);
//! let id = MessageId::generate()?;
//! let envelope = seal(&secrets, "hi")?;
//! store.put(&id, NewMessage {
//!     envelope: envelope.clone(),
//!     verifier: secrets.claim_verifier(),
//!     access: secrets.access_verifier(),
//!     expires_at: SystemTime::now() + Duration::from_secs(3600),
//!     manage: None,
//!     creator: None,
//!     reference: None,
//! }).await?;
//! let (access, claim) = (secrets.access_proof(), secrets.claim_proof());
//! assert_eq!(store.take(&id, access, claim).await?, envelope);
//! assert!(matches!(store.take(&id, access, claim).await, Err(StoreError::NotFound)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub mod breaker;
#[cfg(feature = "conformance")]
pub mod conformance;
mod connect;
mod contract;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "s3")]
mod s3;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod url;

pub use breaker::{Breaker, BreakerConfig, BreakerOpen};
pub use connect::connect;
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) use contract::creator_from;
pub use contract::events::{Event, EventHandle, EventKind, Outbox, DEAD_LETTER_MS};
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) use contract::from_unix_ms;
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
pub(crate) use contract::groups::check_group;
pub use contract::groups::{GroupStore, MAX_GROUP};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) use contract::rate_params;
#[cfg(feature = "memory")]
pub(crate) use contract::rate_step;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use contract::refused_wait;
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) use contract::requests::{check_answer, check_request};
pub use contract::requests::{
    NewRequest, RequestStore, StoredRequest, ANSWER_MANAGE, MAX_SEALED_NOTE_LEN,
};
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) use contract::{check_new, unix_ms, window_end, wrong_proof};
pub use contract::{
    is_reference, BlobStore, BoxError, Creator, MessageState, MessageStatus, NewMessage,
    PurgeExpired, QuotaCounter, RateCounter, Result, StoreError, StoreOptions, MAX_REFERENCE_BYTES,
};
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
#[cfg(feature = "redis")]
pub use redis_store::{RedisConfig, RedisStore, CLUSTER_BUCKETS};
#[cfg(feature = "s3")]
pub use s3::{lifecycle_days_for, ClaimMethod, S3Config, S3Store};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteConfig, SqliteStore};
#[cfg(any(feature = "postgres", feature = "redis", feature = "s3"))]
pub(crate) use url::unverified_transport;

/// The AWS SDK for S3, re-exported.
#[cfg(feature = "s3")]
pub use aws_sdk_s3;

/// The Redis driver, re-exported so users configure it without a second dependency.
#[cfg(feature = "redis")]
pub use redis;
/// The SQL driver (SQLite, PostgreSQL), re-exported.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;
