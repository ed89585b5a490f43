//! SQLite via sqlx: the embedded default. One file, WAL mode, survives
//! restarts; several processes may share the file.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::{ClaimProof, MessageId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::sql::classify;
use crate::{
    check_new, unix_ms, wrong_proof, BlobStore, NewMessage, Result, StoreError, StoreOptions,
};

/// Settings for [`SqliteStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// Database file; created if missing.
    pub path: PathBuf,
    /// Pool size. SQLite has one writer at a time and every store operation
    /// writes, so the default 1 queues callers in the pool instead of in
    /// SQLite's sleeping busy handler.
    pub max_connections: u32,
    /// How long a statement waits for another process's write lock.
    pub busy_timeout: Duration,
    /// `synchronous=FULL` (default): a finished `put` is on disk, even
    /// across a power cut. `false` uses `NORMAL`: safe across process crashes,
    /// may lose the last commits on power loss, faster.
    pub synchronous_full: bool,
    /// Options every backend honours.
    pub options: StoreOptions,
}

impl SqliteConfig {
    /// Defaults for a database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            max_connections: 1,
            busy_timeout: Duration::from_secs(5),
            synchronous_full: true,
            options: StoreOptions::default(),
        }
    }

    /// Parses `sqlite://PATH` or `sqlite:PATH` (query parameters are not used).
    pub fn from_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or(StoreError::Invalid {
                reason: "a SQLite URL starts with sqlite://",
            })?;
        let path = path.split('?').next().unwrap_or_default();
        if path.contains(":memory:") {
            return Err(StoreError::Invalid {
                reason: "an in-memory SQLite database loses everything when its connection closes; use the memory: store",
            });
        }
        if path.is_empty() {
            return Err(StoreError::Invalid {
                reason: "the SQLite URL has no file path",
            });
        }
        Ok(Self::new(path))
    }

    /// Sets [`SqliteConfig::options`].
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets [`SqliteConfig::max_connections`].
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// A [`BlobStore`] in a SQLite file.
///
/// Take is one `DELETE … RETURNING` statement, which SQLite runs under its
/// database write lock, so exactly one caller gets a message even with many
/// processes on one file. Expired rows are never returned (the statements
/// compare the expiry) and [`BlobStore::purge_expired`] deletes them.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    opts: StoreOptions,
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS otm_messages (
        id BLOB PRIMARY KEY NOT NULL,
        envelope BLOB NOT NULL,
        verifier BLOB NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS otm_messages_expires ON otm_messages (expires_at_ms);"];

impl SqliteStore {
    /// Opens (and creates or migrates) the database.
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if config.synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(config.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.busy_timeout + Duration::from_secs(5))
            .connect_with(connect)
            .await
            .map_err(|e| classify("open the SQLite database", e))?;
        let store = SqliteStore {
            pool,
            opts: config.options,
        };
        // Two processes creating one new file at once may find it busy; the
        // migration is idempotent, so try a few times.
        let mut tries = 0;
        loop {
            match store.migrate().await {
                Err(e) if e.is_retryable() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                other => break other?,
            }
        }
        Ok(store)
    }

    /// Opens the database named by a `sqlite://PATH` URL with default settings.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(SqliteConfig::from_url(url)?).await
    }

    /// The connection pool (for inspection and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn migrate(&self) -> Result<()> {
        let op = "migrate the SQLite schema";
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| classify(op, e))?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(tx.as_mut())
            .await
            .map_err(|e| classify(op, e))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Invalid {
                reason: "the SQLite database was created by a newer otm",
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            sqlx::raw_sql(sql)
                .execute(tx.as_mut())
                .await
                .map_err(|e| classify(op, e))?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))
                .execute(tx.as_mut())
                .await
                .map_err(|e| classify(op, e))?;
        }
        tx.commit().await.map_err(|e| classify(op, e))
    }
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        let (expires_at_ms, _) = check_new(&self.opts, &message)?;
        // An expired row with the same ID counts as absent and is replaced.
        let done = sqlx::query(
            "INSERT INTO otm_messages (id, envelope, verifier, expires_at_ms, failed_attempts)
             VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT (id) DO UPDATE SET envelope = excluded.envelope,
                 verifier = excluded.verifier, expires_at_ms = excluded.expires_at_ms,
                 failed_attempts = 0
             WHERE otm_messages.expires_at_ms <= ?5 OR otm_messages.failed_attempts >= ?6",
        )
        .bind(&id.as_bytes()[..])
        .bind(&message.envelope)
        .bind(&message.verifier.as_bytes()[..])
        .bind(expires_at_ms)
        .bind(unix_ms(SystemTime::now()))
        .bind(i64::from(self.opts.max_failed_attempts))
        .execute(&self.pool)
        .await
        .map_err(|e| classify("store a message", e))?;
        match done.rows_affected() {
            0 => Err(StoreError::Conflict),
            _ => Ok(()),
        }
    }

    async fn take(&self, id: &MessageId, proof: &ClaimProof) -> Result<Vec<u8>> {
        let op = "take a message";
        let now = unix_ms(SystemTime::now());
        let verifier = proof.verifier();
        let max = i64::from(self.opts.max_failed_attempts);
        // 1. A wrong proof is compared and counted in one statement, so no
        //    more than `max` wrong proofs are ever evaluated, however many
        //    arrive at once. (Comparing SHA-256 digests in the database leaks
        //    no usable timing: a digest prefix does not help find a proof.)
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE otm_messages SET failed_attempts = failed_attempts + 1
             WHERE id = ?1 AND expires_at_ms > ?2 AND failed_attempts < ?3 AND verifier <> ?4
             RETURNING failed_attempts",
        )
        .bind(&id.as_bytes()[..])
        .bind(now)
        .bind(max)
        .bind(&verifier.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?;
        if let Some(failures) = failures {
            let failures = u32::try_from(failures).unwrap_or(u32::MAX);
            if failures >= self.opts.max_failed_attempts {
                // The row is already dead (every statement refuses it); this
                // only frees the space. A failure here is left to the purge.
                let burned =
                    sqlx::query("DELETE FROM otm_messages WHERE id = ?1 AND failed_attempts >= ?2")
                        .bind(&id.as_bytes()[..])
                        .bind(max)
                        .execute(&self.pool)
                        .await;
                if let Err(e) = burned {
                    tracing::warn!(error = %e, "burning a message after too many wrong proofs failed; the purge will remove it");
                }
            }
            return Err(wrong_proof(&self.opts, failures));
        }
        // 2. The right proof (or none of it is left): take and delete in one statement.
        let row = sqlx::query(
            "DELETE FROM otm_messages
             WHERE id = ?1 AND verifier = ?4 AND expires_at_ms > ?2 AND failed_attempts < ?3
             RETURNING envelope",
        )
        .bind(&id.as_bytes()[..])
        .bind(now)
        .bind(max)
        .bind(&verifier.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?;
        match row {
            Some(row) => row.try_get::<Vec<u8>, _>(0).map_err(|e| classify(op, e)),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: &MessageId) -> Result<()> {
        let done = sqlx::query("DELETE FROM otm_messages WHERE id = ?1 AND expires_at_ms > ?2 AND failed_attempts < ?3",
        )
            .bind(&id.as_bytes()[..])
            .bind(unix_ms(SystemTime::now()))
            .bind(i64::from(self.opts.max_failed_attempts))
            .execute(&self.pool)
            .await
            .map_err(|e| classify("burn a message", e))?;
        match done.rows_affected() {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn purge_expired(&self) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM otm_messages WHERE expires_at_ms <= ?1 OR failed_attempts >= ?2",
        )
        .bind(unix_ms(SystemTime::now()))
        .bind(i64::from(self.opts.max_failed_attempts))
        .execute(&self.pool)
        .await
        .map_err(|e| classify("purge expired messages", e))?;
        Ok(done.rows_affected())
    }

    async fn check(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| classify("check the SQLite database", e))?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

impl FromStr for SqliteConfig {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}
