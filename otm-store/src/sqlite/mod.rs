//! SQLite via sqlx: the embedded default. One file, WAL mode, survives
//! restarts; several processes may share the file.

mod outbox;
mod requests;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::{AccessProof, ClaimProof, MessageId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::sql::{classify, message_status, receipt_status};
use crate::url::{invalid_url, Query};
use crate::{
    check_new, unix_ms, wrong_proof, BlobStore, EventKind, MessageStatus, NewMessage, Outbox,
    PurgeExpired, Result, StoreError, StoreOptions,
};

/// Settings for [`SqliteStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// Database file; created if missing.
    pub path: PathBuf,
    /// Size of the pool that serves status, checks, the purge, the outbox,
    /// quotas and rates (default 1). Puts, takes and burns go through the
    /// group-commit writer's own connection instead (see [`SqliteStore`]).
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

    /// Parses `sqlite://PATH` or `sqlite:PATH`. Parameters:
    /// `max_connections=N` and `synchronous=full|normal`; any other is an
    /// error naming it. Same as `url.parse()`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, mut query) = Query::split(url, "SQLite")?;
        let path = base
            .strip_prefix("sqlite://")
            .or_else(|| base.strip_prefix("sqlite:"))
            .ok_or_else(|| invalid_url("a SQLite URL starts with sqlite://"))?;
        if path.contains(":memory:") {
            return Err(invalid_url(
                "an in-memory SQLite database loses everything when its connection closes; use the memory: store",
            ));
        }
        if path.is_empty() {
            return Err(invalid_url("the SQLite URL has no file path"));
        }
        let mut config = Self::new(path);
        if let Some(n) = query.parse("max_connections", "a whole number")? {
            config = config.with_max_connections(n);
        }
        match query.take("synchronous") {
            None | Some("full") => {}
            Some("normal") => config.synchronous_full = false,
            Some(other) => {
                return Err(invalid_url(format!(
                    "the SQLite URL parameter `synchronous` takes full or normal, not `{other}`"
                )))
            }
        }
        query.finish()?;
        Ok(config)
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
/// Puts, takes and burns are committed in groups: one task with a
/// connection of its own runs whatever is waiting in one `BEGIN IMMEDIATE`
/// transaction, a savepoint per operation, and answers each once it has
/// committed, so under `synchronous=FULL` one sync covers many operations
/// and an acknowledged one is on disk. A take is a counting `UPDATE` (a
/// wrong proof is compared and counted in one statement) and then one
/// `DELETE … RETURNING`, under SQLite's database write lock, so exactly one
/// caller gets a message even with many processes on one file. Expired
/// rows are never returned (the statements compare the expiry) and
/// [`PurgeExpired::purge_expired`](crate::PurgeExpired::purge_expired)
/// deletes them. The store needs a Tokio runtime when it connects (the
/// writer is a task on it).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    opts: StoreOptions,
    /// Puts, takes and burns, committed in groups ([`writer`]).
    writer: writer::Writer,
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS otm_messages (
        id BLOB PRIMARY KEY NOT NULL,
        envelope BLOB NOT NULL,
        verifier BLOB NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS otm_messages_expires ON otm_messages (expires_at_ms);",
    // 2: senders' management verifiers and receipts.
    "ALTER TABLE otm_messages ADD COLUMN manage BLOB;
    CREATE TABLE IF NOT EXISTS otm_receipts (
        id BLOB PRIMARY KEY NOT NULL,
        manage BLOB NOT NULL,
        state INTEGER NOT NULL,
        changed_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS otm_receipts_expires ON otm_receipts (expires_at_ms);",
    // 3: the purge's `failed_attempts >= max` half gets an index too, so
    // the purge reads only rows it deletes instead of the whole table.
    "CREATE INDEX IF NOT EXISTS otm_messages_failed ON otm_messages (failed_attempts);",
    // 4: the access verifier (SHA-256 of the proof derived from the key
    // alone). Rows stored before it have none and match no access proof:
    // they can no longer be opened and leave at their expiry.
    "ALTER TABLE otm_messages ADD COLUMN access BLOB;",
    // 5: the embedder's reference, kept with the message and its receipt.
    "ALTER TABLE otm_messages ADD COLUMN reference TEXT;
    ALTER TABLE otm_receipts ADD COLUMN reference TEXT;",
    // 6: the event outbox (`StoreOptions::events`): one row per event, due
    // for delivery (or leased until) `due_ms`.
    "CREATE TABLE IF NOT EXISTS otm_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind INTEGER NOT NULL,
        message BLOB NOT NULL,
        reference TEXT,
        at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS otm_events_due ON otm_events (due_ms, seq);",
    // 7: creators' quota counts, one row per key and window (by its end).
    "CREATE TABLE IF NOT EXISTS otm_quotas (
        key TEXT NOT NULL,
        until_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key, until_ms)
    );",
    // 8: who created the message (`Creator`'s text form), kept with the
    // message, its receipt and its events. Rows stored before it have none.
    "ALTER TABLE otm_messages ADD COLUMN creator TEXT;
    ALTER TABLE otm_receipts ADD COLUMN creator TEXT;
    ALTER TABLE otm_events ADD COLUMN creator TEXT;",
    // 9: the access verifier beside the ID in an index, so that a take
    // with a wrong access proof is refused by the index alone, as quickly
    // as one for an unknown ID, without reading the row (whose envelope,
    // stored before the access column, spans overflow pages): an ID alone
    // tells nothing, not even by timing (BENCHMARKS.md, "probe").
    "CREATE UNIQUE INDEX IF NOT EXISTS otm_messages_access ON otm_messages (id, access);",
    // 10: rate-limit buckets shared by the processes on one file
    // (`RateCounter`): each key's theoretical arrival time, until which
    // the row matters; the purge removes it after.
    "CREATE TABLE IF NOT EXISTS otm_rates (
        key TEXT PRIMARY KEY NOT NULL,
        tat_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 11: requests for a secret; a request's answer is a row of
    // otm_messages under the same ID.
    "CREATE TABLE IF NOT EXISTS otm_requests (
        id BLOB PRIMARY KEY NOT NULL,
        note BLOB NOT NULL,
        answer BLOB NOT NULL,
        access BLOB NOT NULL,
        verifier BLOB NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        answered_at_ms INTEGER,
        reference TEXT,
        creator TEXT
    );
    CREATE INDEX IF NOT EXISTS otm_requests_expires ON otm_requests (expires_at_ms);",
];

impl SqliteStore {
    /// Opens (and creates or migrates) the database, like every backend's
    /// `connect(config)`; from a URL, [`connect`](crate::connect) or
    /// `url.parse::<SqliteConfig>()`.
    pub async fn connect(config: SqliteConfig) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if config.synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(config.busy_timeout)
            // A taken or burned message's bytes are overwritten with zeros,
            // not left in free pages of the file (the WAL keeps its page
            // images until the next checkpoint: docs/STORES.md).
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.busy_timeout + Duration::from_secs(5))
            .connect_with(connect.clone())
            .await
            .map_err(|e| classify("open the SQLite database", e))?;
        // The group-commit writer's own connection, beside the pool's.
        let own = sqlx::ConnectOptions::connect(&connect)
            .await
            .map_err(|e| classify("open the SQLite database", e))?;
        let store = SqliteStore {
            pool,
            writer: writer::Writer::spawn(own, connect, config.options.clone()),
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
        let write = writer::Write::Put {
            id: *id,
            message,
            expires_at_ms,
        };
        self.writer.write(write).await.map(|_| ())
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let write = writer::Write::Take {
            id: *id,
            access: access.verifier(),
            claim: proof.verifier(),
        };
        match self.writer.write(write).await? {
            writer::Written::Take(writer::Took::Envelope(envelope)) => Ok(envelope),
            writer::Written::Take(writer::Took::Wrong(failures)) => Err(wrong_proof(
                &self.opts,
                u32::try_from(failures).unwrap_or(u32::MAX),
            )),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        match self.writer.write(writer::Write::Burn { id: *id }).await? {
            writer::Written::Burn(true) => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let op = "read a message's status";
        let now = unix_ms(SystemTime::now());
        let row = sqlx::query(
            "SELECT expires_at_ms, failed_attempts, manage, reference, creator FROM otm_messages
             WHERE id = ?1",
        )
        .bind(&id.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?;
        if let Some(row) = row {
            return message_status(&row, op, self.opts.max_failed_attempts, now);
        }
        let row = sqlx::query(
            "SELECT state, changed_at_ms, expires_at_ms, manage, reference, creator
             FROM otm_receipts
             WHERE id = ?1 AND expires_at_ms > ?2",
        )
        .bind(&id.as_bytes()[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?
        .ok_or(StoreError::NotFound)?;
        receipt_status(&row, op)
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

    fn options(&self) -> &StoreOptions {
        &self.opts
    }

    fn purger(&self) -> Option<&dyn PurgeExpired> {
        Some(self)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn quotas(&self) -> Option<&dyn crate::QuotaCounter> {
        Some(self)
    }

    fn rates(&self) -> Option<&dyn crate::RateCounter> {
        Some(self)
    }

    fn requests(&self) -> Option<&dyn crate::RequestStore> {
        Some(self)
    }

    fn groups(&self) -> Option<&dyn crate::GroupStore> {
        Some(self)
    }
}

#[async_trait]
impl crate::GroupStore for SqliteStore {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let checked = crate::check_group(&self.opts, &messages)?;
        let messages = messages
            .into_iter()
            .zip(checked)
            .map(|((id, message), (expires_at_ms, _))| (id, message, expires_at_ms))
            .collect();
        self.writer
            .write(writer::Write::PutGroup { messages })
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl crate::RateCounter for SqliteStore {
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Option<Duration>> {
        let op = "count a rate";
        let now = unix_ms(SystemTime::now());
        let (step, tolerance) = crate::rate_params(burst, interval);
        // One statement under the write lock: the bucket's arrival time
        // moves on only when the request fits.
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO otm_rates (key, tat_ms) VALUES (?1, ?2 + ?3)
             ON CONFLICT (key) DO UPDATE SET tat_ms = max(otm_rates.tat_ms, ?2) + ?3
             WHERE max(otm_rates.tat_ms, ?2) + ?3 - ?2 <= ?4
             RETURNING tat_ms",
        )
        .bind(key)
        .bind(now)
        .bind(step)
        .bind(tolerance)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?;
        if counted.is_some() {
            return Ok(None);
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat_ms FROM otm_rates WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(op, e))?;
        Ok(Some(crate::refused_wait(tat, now, burst, interval)))
    }
}

#[async_trait]
impl crate::QuotaCounter for SqliteStore {
    async fn count_quota(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> Result<bool> {
        let uses = uses.max(1);
        if uses > limit {
            return Ok(false);
        }
        let end = crate::window_end(unix_ms(SystemTime::now()), window);
        // One statement under the write lock: counted only below the limit.
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO otm_quotas (key, until_ms, count) VALUES (?1, ?2, ?4)
             ON CONFLICT (key, until_ms) DO UPDATE SET count = count + ?4
             WHERE otm_quotas.count + ?4 <= ?3
             RETURNING count",
        )
        .bind(key)
        .bind(end)
        .bind(i64::from(limit))
        .bind(i64::from(uses))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify("count a quota", e))?;
        Ok(counted.is_some())
    }
}

impl FromStr for SqliteConfig {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

/// A take's first statement: a wrong claim proof with the right access
/// proof, compared and counted in one step.
const COUNT_WRONG_CLAIM: &str = "UPDATE otm_messages SET failed_attempts = failed_attempts + 1
     WHERE id = ?1 AND expires_at_ms > ?2 AND failed_attempts < ?3 AND access = ?5
         AND verifier <> ?4
     RETURNING failed_attempts";

/// A take's removal: the live message whose access and claim verifiers
/// match, deleted and returned in one statement.
const TAKE_MESSAGE: &str = "DELETE FROM otm_messages
     WHERE id = ?1 AND failed_attempts < ?2 AND expires_at_ms > ?3 AND verifier = ?4
         AND access = ?5
     RETURNING envelope, manage, expires_at_ms, reference, creator";

/// The purge of dead message rows: expired, or burned by wrong proofs.
/// Migration 3 indexes both columns so SQLite answers the `OR` from indexes
/// (the test below checks the plan of this very statement).
const PURGE_MESSAGES: &str =
    "DELETE FROM otm_messages WHERE expires_at_ms <= ?1 OR failed_attempts >= ?2";

#[async_trait]
impl PurgeExpired for SqliteStore {
    async fn purge_expired(&self) -> Result<u64> {
        let op = "purge expired messages";
        let now = unix_ms(SystemTime::now());
        let max = i64::from(self.opts.max_failed_attempts);
        // Each removed row's event (expired unread, or destroyed when the
        // burn after the last wrong proof did not get to it) in the same
        // transaction as the delete.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| classify(op, e))?;
        let removed = sqlx::query(&format!(
            "{PURGE_MESSAGES} RETURNING id, reference, failed_attempts, creator"
        ))
        .bind(now)
        .bind(max)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| classify(op, e))?;
        if self.opts.events {
            for row in &removed {
                let id: Vec<u8> = row.try_get(0).map_err(|e| classify(op, e))?;
                let reference: Option<String> = row.try_get(1).map_err(|e| classify(op, e))?;
                let failed: i64 = row.try_get(2).map_err(|e| classify(op, e))?;
                let creator: Option<String> = row.try_get(3).map_err(|e| classify(op, e))?;
                let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                    continue;
                };
                let kind = match failed >= max {
                    true => EventKind::Destroyed,
                    false => EventKind::Expired,
                };
                let id = MessageId::from_bytes(id);
                let origin = (creator.as_deref(), reference.as_deref());
                outbox::record(&mut tx, kind, &id, origin, now).await?;
            }
        }
        tx.commit().await.map_err(|e| classify(op, e))?;
        sqlx::query("DELETE FROM otm_quotas WHERE until_ms <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| classify(op, e))?;
        sqlx::query("DELETE FROM otm_rates WHERE tat_ms <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| classify(op, e))?;
        let receipts = sqlx::query("DELETE FROM otm_receipts WHERE expires_at_ms <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| classify(op, e))?;
        let requests = requests::purge(&self.pool, now).await?;
        Ok(removed.len() as u64 + receipts.rows_affected() + requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otm_core::{seal, Key, Secrets};

    /// A message sealed with a fresh key, and its secrets.
    fn message(text: &str) -> (NewMessage, Secrets) {
        let secrets = Secrets::derive(&Key::generate().unwrap(), None);
        let message = NewMessage {
            envelope: seal(&secrets, text).unwrap(),
            verifier: secrets.claim_verifier(),
            access: secrets.access_verifier(),
            expires_at: SystemTime::now() + Duration::from_secs(600),
            manage: None,
            creator: None,
            reference: None,
        };
        (message, secrets)
    }

    /// A store on a new file in `dir` whose busy timeout is `busy`, and a
    /// second connection to the file that holds its write lock until
    /// `ROLLBACK`.
    async fn store_and_lock_holder(
        dir: &std::path::Path,
        busy: Duration,
    ) -> (SqliteStore, sqlx::SqliteConnection) {
        let path = dir.join("otm.sqlite3");
        let mut config = SqliteConfig::new(&path);
        config.busy_timeout = busy;
        let store = SqliteStore::connect(config).await.unwrap();
        let other = sqlx::ConnectOptions::connect(&SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        (store, other)
    }

    /// Takes the message `id` with `secrets` and checks its text.
    async fn take_text(store: &SqliteStore, id: &MessageId, secrets: &Secrets, text: &str) {
        let envelope = store
            .take(id, secrets.access_proof(), secrets.claim_proof())
            .await
            .expect("the message is there");
        assert_eq!(otm_core::open(secrets, &envelope).unwrap().as_str(), text);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_fails_alone_in_its_batch() {
        // 20 IDs, each put twice at once among 40 concurrent puts, which
        // the writer commits in shared batches: per ID exactly one put
        // stores and the other gets Conflict, and what is stored is the
        // winner's, untouched by the loser's rolled-back savepoint.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = Vec::new();
        for i in 0..20 {
            let id = MessageId::generate().unwrap();
            ids.push(id);
            for side in ["a", "b"] {
                let (store, text) = (store.clone(), format!("{i}{side}"));
                tasks.spawn(async move {
                    let (message, secrets) = message(&text);
                    let stored = store.put(&id, message).await;
                    (id, text, secrets, stored)
                });
            }
        }
        let mut winners = std::collections::HashMap::new();
        while let Some(done) = tasks.join_next().await {
            let (id, text, secrets, stored) = done.unwrap();
            match stored {
                Ok(()) => assert!(
                    winners.insert(id, (text, secrets)).is_none(),
                    "two puts stored"
                ),
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 20);
        for id in ids {
            let (text, secrets) = &winners[&id];
            take_text(&store, &id, secrets, text).await;
        }
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_acknowledges_nothing() {
        // Another connection holds the write lock past the busy timeout:
        // every put of the batch fails as retryable, and none is stored.
        let dir = tempfile::tempdir().unwrap();
        let (store, mut other) =
            store_and_lock_holder(dir.path(), Duration::from_millis(200)).await;
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = MessageId::generate().unwrap();
                let (message, _) = message("never stored");
                (id, store.put(&id, message).await)
            });
        }
        let mut refused = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (id, stored) = done.unwrap();
            let e = stored.expect_err("stored while another held the lock");
            assert!(e.is_retryable(), "{e}");
            refused.push(id);
        }
        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        for id in refused {
            assert!(matches!(store.status(&id).await, Err(StoreError::NotFound)));
        }
        // The next batch runs (on the writer's new connection).
        let id = MessageId::generate().unwrap();
        let (message, secrets) = message("stored now");
        store.put(&id, message).await.unwrap();
        take_text(&store, &id, &secrets, "stored now").await;
    }

    #[tokio::test]
    async fn a_take_whose_caller_went_away_before_it_ran_takes_nothing() {
        // The writer waits for another connection's write lock while a
        // take is queued; its caller gives up meanwhile. The take is
        // skipped: the message is still there for the next reader.
        let dir = tempfile::tempdir().unwrap();
        let (store, mut other) = store_and_lock_holder(dir.path(), Duration::from_secs(5)).await;
        let id = MessageId::generate().unwrap();
        let (message, secrets) = message("still here");
        store.put(&id, message).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(200),
            store.take(&id, secrets.access_proof(), secrets.claim_proof()),
        )
        .await;
        assert!(
            gave_up.is_err(),
            "the take finished while the lock was held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        take_text(&store, &id, &secrets, "still here").await;
    }

    #[tokio::test]
    async fn the_purge_reads_only_what_it_deletes() {
        // The purge's condition has an `OR`: SQLite answers it from indexes
        // only when both columns have one (migration 3); otherwise it scans
        // every row. This is the plan of the store's own statement.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {PURGE_MESSAGES}"))
            .bind(0_i64)
            .bind(5_i64)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect();
        let plan = plan.join(" | ");
        assert!(plan.contains("MULTI-INDEX OR"), "{plan}");
        assert!(!plan.contains("SCAN otm_messages"), "{plan}");
    }

    #[tokio::test]
    async fn a_wrong_access_proof_is_refused_by_the_index() {
        // Both statements of a take look the row up by ID and access
        // verifier together (migration 9): a wrong access proof finds no
        // index entry, so the row (and its envelope's overflow pages) is
        // never read, and the refusal costs what an unknown ID costs.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
            .await
            .unwrap();
        for statement in [COUNT_WRONG_CLAIM, TAKE_MESSAGE] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {statement}"))
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect();
            let plan = plan.join(" | ");
            assert!(
                plan.contains("USING INDEX otm_messages_access (id=? AND access=?)"),
                "{plan}"
            );
        }
    }
}
