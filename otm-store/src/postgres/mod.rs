//! PostgreSQL via sqlx: for several server replicas on one durable database.

mod batch;
mod outbox;
mod requests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::{AccessProof, ClaimProof, MessageId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::sql::{classify, message_status, receipt_status, removal_event, Removal};
use crate::url::{invalid_url, Query};
use crate::{
    check_new, unix_ms, wrong_proof, BlobStore, EventKind, MessageStatus, NewMessage, Outbox,
    PurgeExpired, Result, StoreError, StoreOptions,
};

/// Settings for [`PostgresStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database[?options]`.
    pub url: String,
    /// Schema holding otm's tables (created if missing). Default `public`.
    pub schema: String,
    /// Most pooled connections. Default 16. The pool serves status, burns,
    /// groups, requests, the outbox, quotas, rates and the purge; puts and
    /// takes run on connections of their own ([`batch_workers`] of each
    /// kind), so a replica opens up to `max_connections + 2 × batch_workers`.
    ///
    /// [`batch_workers`]: PostgresConfig::batch_workers
    pub max_connections: u32,
    /// Workers per kind (put, take) that batch concurrent operations into
    /// one statement each, each on a connection of its own (opened when
    /// first needed). Default 2; 1 to 16. More workers run more statements
    /// at once, each with fewer operations: raise it for a database
    /// server with many cores (on a 2-core machine, 1 and 2 were fastest).
    /// URL: `batch_workers=N`.
    pub batch_workers: usize,
    /// How long a caller waits for a pooled connection before the store
    /// reports itself unavailable. Default 5 s.
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` for every statement. Default 5 s.
    pub statement_timeout: Duration,
    /// Whether a connection to another machine may be other than verified
    /// TLS (`sslmode` below `verify-ca`). Default `false`: `connect`
    /// refuses it (a server on this machine, or a Unix socket, is always
    /// allowed). URL: `allow_unverified=true`.
    pub allow_unverified: bool,
    /// Options every backend honours.
    pub options: StoreOptions,
}

impl PostgresConfig {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: "public".into(),
            max_connections: 16,
            batch_workers: 2,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            allow_unverified: false,
            options: StoreOptions::default(),
        }
    }

    /// Parses `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or
    /// `postgresql://`) with otm's parameters `schema=NAME`,
    /// `max_connections=N`, `batch_workers=N` and `allow_unverified=true`
    /// ([`PostgresConfig::allow_unverified`]), and the driver's own connection parameters
    /// (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `host`, `hostaddr`,
    /// `port`, `dbname`, `user`, `password`, `application_name`, `options`),
    /// which stay in [`PostgresConfig::url`]. Any other parameter is an error
    /// naming it. Same as `url.parse()`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, mut query) = Query::split(url, "PostgreSQL")?;
        if !(base.starts_with("postgres://") || base.starts_with("postgresql://")) {
            return Err(invalid_url(
                "a PostgreSQL store URL starts with postgres:// or postgresql://",
            ));
        }
        let schema = query.take("schema").map(str::to_owned);
        let max_connections = query.parse("max_connections", "a whole number")?;
        let batch_workers: Option<usize> = query.parse("batch_workers", "a whole number")?;
        let allow_unverified = query.flag("allow_unverified")?;
        let driver = query.take_all(&[
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "application_name",
            "options",
        ]);
        query.finish()?;
        let mut driver_url = base.to_owned();
        for (i, (name, value)) in driver.iter().enumerate() {
            driver_url.push(if i == 0 { '?' } else { '&' });
            driver_url.push_str(name);
            driver_url.push('=');
            driver_url.push_str(value);
        }
        let mut config = PostgresConfig::new(driver_url);
        if let Some(schema) = schema {
            config = config.with_schema(schema);
        }
        if let Some(n) = max_connections {
            config = config.with_max_connections(n);
        }
        if let Some(n) = batch_workers {
            if !(1..=MAX_BATCH_WORKERS).contains(&n) {
                return Err(invalid_url("batch_workers is a whole number from 1 to 16"));
            }
            config = config.with_batch_workers(n);
        }
        config.allow_unverified = allow_unverified.unwrap_or(false);
        Ok(config)
    }

    /// Sets [`PostgresConfig::allow_unverified`].
    pub fn with_allow_unverified(mut self, allow: bool) -> Self {
        self.allow_unverified = allow;
        self
    }

    /// Sets [`PostgresConfig::schema`].
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`PostgresConfig::options`].
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets [`PostgresConfig::batch_workers`] (kept within 1 to 16).
    pub fn with_batch_workers(mut self, n: usize) -> Self {
        self.batch_workers = n.clamp(1, MAX_BATCH_WORKERS);
        self
    }

    /// Sets [`PostgresConfig::max_connections`].
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

impl std::str::FromStr for PostgresConfig {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

/// A [`BlobStore`] in PostgreSQL.
///
/// A take is one statement: a counting `UPDATE` (a wrong proof is
/// compared and counted) and a `DELETE … RETURNING` of the row whose
/// proofs match: under PostgreSQL's row locking, concurrent deleters of one
/// row wait for the first and then find it gone, so exactly one caller
/// receives the message across any number of replicas. Puts and takes of
/// concurrent callers are batched, several in one statement over arrays
/// (distinct IDs per statement; a statement PostgreSQL reports an error
/// for is run again one operation at a time, a failed connection fails its
/// batch at once), so under load PostgreSQL commits once for many. Rows carry their expiry and every statement compares it;
/// [`PurgeExpired::purge_expired`](crate::PurgeExpired::purge_expired) (otm-http's `Service` runs it) deletes
/// expired rows in batches.
///
/// Indexes: the primary key (B-tree on `id`) serves put, take and burn;
/// B-trees on `expires_at_ms` (messages and receipts) and on
/// `failed_attempts` serve the purge (expired rows, and rows whose attempts
/// are used up).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    opts: StoreOptions,
    table: String,
    receipts: String,
    /// The event outbox (migration 6).
    pub(crate) events: String,
    /// Creators' quota counts (migration 7).
    quotas: String,
    /// Rate-limit buckets (migration 9).
    rates: String,
    /// Requests for a secret (migration 10).
    requests: String,
    /// The put and take statements.
    statements: Arc<batch::Statements>,
    /// Puts and takes of concurrent callers, several per statement.
    batch: batch::Batcher,
}

/// Schema migrations; `{table}`, `{receipts}`, `{events}`, `{quotas}`,
/// `{rates}` and `{requests}` are replaced by the qualified table names. Applied once each under an advisory lock, so
/// replicas starting together do not race.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {table} (
        id BYTEA PRIMARY KEY,
        envelope BYTEA NOT NULL,
        verifier BYTEA NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS otm_messages_expires ON {table} (expires_at_ms);",
    // 2: senders' management verifiers and receipts.
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS manage BYTEA;
    CREATE TABLE IF NOT EXISTS {receipts} (
        id BYTEA PRIMARY KEY,
        manage BYTEA NOT NULL,
        state SMALLINT NOT NULL,
        changed_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS otm_receipts_expires ON {receipts} (expires_at_ms);",
    // 3: the purge's `failed_attempts >= max` half gets an index too, so
    // the purge reads only rows it deletes instead of the whole table.
    "CREATE INDEX IF NOT EXISTS otm_messages_failed ON {table} (failed_attempts);",
    // 4: the access verifier (SHA-256 of the proof derived from the key
    // alone). Rows stored before it have none and match no access proof:
    // they can no longer be opened and leave at their expiry.
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS access BYTEA;",
    // 5: the embedder's reference, kept with the message and its receipt.
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS reference TEXT;
    ALTER TABLE {receipts} ADD COLUMN IF NOT EXISTS reference TEXT;",
    // 6: the event outbox (`StoreOptions::events`): one row per event, due
    // for delivery (or leased until) `due_ms`.
    "CREATE TABLE IF NOT EXISTS {events} (
        seq BIGSERIAL PRIMARY KEY,
        kind INTEGER NOT NULL,
        message BYTEA NOT NULL,
        reference TEXT,
        at_ms BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_ms BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS otm_events_due ON {events} (due_ms, seq);",
    // 7: creators' quota counts, one row per key and window (by its end).
    "CREATE TABLE IF NOT EXISTS {quotas} (
        key TEXT NOT NULL,
        until_ms BIGINT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key, until_ms)
    );",
    // 8: who created the message (`Creator`'s text form), kept with the
    // message, its receipt and its events. Rows stored before it have none.
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS creator TEXT;
    ALTER TABLE {receipts} ADD COLUMN IF NOT EXISTS creator TEXT;
    ALTER TABLE {events} ADD COLUMN IF NOT EXISTS creator TEXT;",
    // 9: rate-limit buckets shared by every replica (`RateCounter`): each
    // key's theoretical arrival time, until which the row matters; the
    // purge removes it after. Unlogged: a crash loses only the buckets,
    // which then start full, and counting writes no WAL.
    "CREATE UNLOGGED TABLE IF NOT EXISTS {rates} (
        key TEXT PRIMARY KEY,
        tat_ms BIGINT NOT NULL
    );",
    // 10: requests for a secret; a request's answer is a row of {table}
    // under the same ID.
    "CREATE TABLE IF NOT EXISTS {requests} (
        id BYTEA PRIMARY KEY,
        note BYTEA NOT NULL,
        answer BYTEA NOT NULL,
        access BYTEA NOT NULL,
        verifier BYTEA NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        answered_at_ms BIGINT,
        reference TEXT,
        creator TEXT
    );
    CREATE INDEX IF NOT EXISTS otm_requests_expires ON {requests} (expires_at_ms);",
];

/// The conflict clause of a message `INSERT … AS m`: a row under the ID
/// is replaced only when it is dead (expired at `$5`, or its attempts used
/// up at `$6`), so a put (or a request's answer) is put-if-absent.
const REPLACE_DEAD: &str = "ON CONFLICT (id) DO UPDATE SET envelope = excluded.envelope,
                     verifier = excluded.verifier, expires_at_ms = excluded.expires_at_ms,
                     failed_attempts = 0, manage = excluded.manage, access = excluded.access,
                     reference = excluded.reference, creator = excluded.creator
                 WHERE m.expires_at_ms <= $5 OR m.failed_attempts >= $6";

/// A pooled connection idle at least this long is pinged before use (one
/// more round trip); one in use more recently goes straight to its statement.
pub(super) const IDLE_PING: Duration = Duration::from_secs(5);

/// The CTEs `event` and `receipt` of a removal: the event (kind `kind`,
/// at `now`, when `record`) and the receipt (in `state`, for a message
/// with a manager) of each row the CTE `gone` removed. The arguments name
/// the statement's parameters.
fn recorded(
    events: &str,
    receipts: &str,
    kind: &str,
    now: &str,
    record: &str,
    state: &str,
) -> String {
    format!(
        "event AS (
             INSERT INTO {events} (kind, message, reference, at_ms, attempts, due_ms, creator)
             SELECT {kind}, id, reference, {now}, 0, {now}, creator FROM gone WHERE {record}),
         receipt AS (
             INSERT INTO {receipts}
                 (id, manage, state, changed_at_ms, expires_at_ms, reference, creator)
             SELECT id, manage, {state}, {now}, expires_at_ms, reference, creator FROM gone
             WHERE manage IS NOT NULL
             ON CONFLICT (id) DO UPDATE SET manage = excluded.manage,
                 state = excluded.state, changed_at_ms = excluded.changed_at_ms,
                 expires_at_ms = excluded.expires_at_ms, reference = excluded.reference,
                 creator = excluded.creator)"
    )
}

/// Most [`PostgresConfig::batch_workers`].
const MAX_BATCH_WORKERS: usize = 16;

/// Rows deleted per purge statement, so a large backlog never holds long locks.
const PURGE_BATCH: i64 = 10_000;

impl PostgresStore {
    /// Connects, creates the schema if needed and applies migrations.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let schema = &config.schema;
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::Invalid {
                reason: "the schema name must be lowercase letters, digits and _",
            });
        }
        let op = "connect to PostgreSQL";
        let connect: PgConnectOptions = config.url.parse().map_err(|e| classify(op, e))?;
        check_transport(&connect, config.allow_unverified)?;
        let connect = connect.options([(
            "statement_timeout",
            format!("{}ms", config.statement_timeout.as_millis()),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING {
                        use sqlx::Connection as _;
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(|e| classify(op, e))?;
        let table = format!("\"{schema}\".otm_messages");
        let receipts = format!("\"{schema}\".otm_receipts");
        let events = format!("\"{schema}\".otm_events");
        let statements = Arc::new(batch::Statements::new(
            batch::Connect {
                options: connect,
                timeout: config.acquire_timeout,
                statement_timeout: config.statement_timeout,
            },
            config.options.clone(),
            &table,
            &receipts,
            &events,
        ));
        let store = PostgresStore {
            pool,
            opts: config.options,
            table,
            receipts,
            events,
            quotas: format!("\"{schema}\".otm_quotas"),
            rates: format!("\"{schema}\".otm_rates"),
            requests: format!("\"{schema}\".otm_requests"),
            batch: batch::Batcher::spawn(&statements, config.batch_workers),
            statements,
        };
        store.migrate(schema).await?;
        Ok(store)
    }

    /// The connection pool (for inspection and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The qualified table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn migrate(&self, schema: &str) -> Result<()> {
        use sqlx::Executor as _;
        let op = "migrate the PostgreSQL schema";
        let setup = format!(
            "SELECT pg_advisory_xact_lock(7402551117);
             CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".otm_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        );
        let count = format!("SELECT count(*) FROM \"{schema}\".otm_migrations");
        let mut tx = self.pool.begin().await.map_err(|e| classify(op, e))?;
        // The advisory lock (one key for all otm migrations in a database)
        // makes replicas that start together apply each migration once.
        tx.execute(setup.as_str())
            .await
            .map_err(|e| classify(op, e))?;
        let done: i64 = sqlx::query_scalar(count.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| classify(op, e))?;
        let done = usize::try_from(done).unwrap_or(0);
        if done > MIGRATIONS.len() {
            return Err(StoreError::Invalid {
                reason: "the PostgreSQL schema was created by a newer otm",
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            let apply = format!(
                "{};\nINSERT INTO \"{schema}\".otm_migrations (version) VALUES ({})",
                sql.replace("{table}", &self.table)
                    .replace("{receipts}", &self.receipts)
                    .replace("{events}", &self.events)
                    .replace("{quotas}", &self.quotas)
                    .replace("{rates}", &self.rates)
                    .replace("{requests}", &self.requests),
                i + 1
            );
            tx.execute(apply.as_str())
                .await
                .map_err(|e| classify(op, e))?;
        }
        tx.commit().await.map_err(|e| classify(op, e))
    }
}

/// The transport rule (see `unverified_transport`) for PostgreSQL: without
/// `sslmode=verify-full` (or `verify-ca`), the default `prefer` encrypts
/// only when the server offers it and checks no certificate, so anyone on
/// the path can read or answer. A Unix socket is this machine.
fn check_transport(connect: &PgConnectOptions, allowed: bool) -> Result<()> {
    use sqlx::postgres::PgSslMode;
    let host = connect.get_host();
    let verified = matches!(
        connect.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    if verified || host.starts_with('/') {
        return Ok(());
    }
    crate::unverified_transport(
        "PostgreSQL",
        host,
        allowed,
        "add sslmode=verify-full (and sslrootcert=PATH for a private CA) to the URL",
    )
}

#[async_trait]
impl BlobStore for PostgresStore {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        let (expires_at_ms, _) = check_new(&self.opts, &message)?;
        self.batch
            .put(batch::Put {
                id: *id,
                message,
                expires_at_ms,
            })
            .await
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let took = self
            .batch
            .take(batch::Take {
                id: *id,
                claim: proof.verifier(),
                access: access.verifier(),
            })
            .await?;
        let failures = match took {
            batch::Took::Envelope(envelope) => return Ok(envelope),
            batch::Took::Nothing => return Err(StoreError::NotFound),
            batch::Took::Wrong(failures) => u32::try_from(failures).unwrap_or(u32::MAX),
        };
        if failures >= self.opts.max_failed_attempts {
            // The wrong proof that uses up the attempts frees the dead row
            // and leaves the receipt (best effort: the purge removes the
            // row otherwise).
            if let Err(e) = self.remove(id, true).await {
                tracing::warn!(error = %e, "burning a message after too many wrong proofs failed; the purge will remove it");
            }
        }
        Err(wrong_proof(&self.opts, failures))
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        if self.remove(id, false).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let op = "read a message's status";
        let now = unix_ms(SystemTime::now());
        let row = sqlx::query(&format!(
            "SELECT expires_at_ms, failed_attempts::BIGINT, manage, reference, creator FROM {t}
             WHERE id = $1",
            t = self.table
        ))
        .bind(&id.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?;
        if let Some(row) = row {
            return message_status(&row, op, self.opts.max_failed_attempts, now);
        }
        let row = sqlx::query(&format!(
            "SELECT state, changed_at_ms, expires_at_ms, manage, reference, creator FROM {r}
             WHERE id = $1 AND expires_at_ms > $2",
            r = self.receipts
        ))
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
            .map_err(|e| classify("check PostgreSQL", e))?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
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
impl crate::GroupStore for PostgresStore {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let checked = crate::check_group(&self.opts, &messages)?;
        let op = "store a group of messages";
        // One statement in a transaction: when a member is refused, those
        // stored with it are rolled back as `tx` is dropped uncommitted.
        let puts: Vec<batch::Put> = messages
            .into_iter()
            .zip(checked)
            .map(|((id, message), (expires_at_ms, _))| batch::Put {
                id,
                message,
                expires_at_ms,
            })
            .collect();
        let all: Vec<&batch::Put> = puts.iter().collect();
        let mut tx = self.pool.begin().await.map_err(|e| classify(op, e))?;
        let stored = self
            .statements
            .put(&mut *tx, &all)
            .await
            .map_err(|e| classify(op, e))?;
        if stored.len() != puts.len() {
            return Err(StoreError::Conflict);
        }
        tx.commit().await.map_err(|e| classify(op, e))
    }
}

#[async_trait]
impl crate::RateCounter for PostgresStore {
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Option<Duration>> {
        let op = "count a rate";
        let now = unix_ms(SystemTime::now());
        let (step, tolerance) = crate::rate_params(burst, interval);
        // The row lock serialises concurrent counts of one key: the
        // bucket's arrival time moves on only when the request fits.
        let counted: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {r} AS r (key, tat_ms) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET tat_ms = GREATEST(r.tat_ms, $2) + $3
             WHERE GREATEST(r.tat_ms, $2) + $3 - $2 <= $4
             RETURNING tat_ms",
            r = self.rates
        ))
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
        let tat: Option<i64> =
            sqlx::query_scalar(&format!("SELECT tat_ms FROM {} WHERE key = $1", self.rates))
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| classify(op, e))?;
        Ok(Some(crate::refused_wait(tat, now, burst, interval)))
    }
}

#[async_trait]
impl crate::QuotaCounter for PostgresStore {
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
        // The row lock serialises concurrent counts of one key and window.
        let counted: Option<i32> = sqlx::query_scalar(&format!(
            "INSERT INTO {q} AS q (key, until_ms, count) VALUES ($1, $2, $4)
             ON CONFLICT (key, until_ms) DO UPDATE SET count = q.count + $4
             WHERE q.count::bigint + $4 <= $3
             RETURNING count",
            q = self.quotas
        ))
        .bind(key)
        .bind(end)
        .bind(i64::from(limit))
        .bind(i32::try_from(uses).unwrap_or(i32::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify("count a quota", e))?;
        Ok(counted.is_some())
    }
}

impl PostgresStore {
    /// Deletes the live row (a burn) or, when `spent`, the row whose
    /// attempts are used up, and, in the same statement, records its
    /// receipt when the message has a manager and its event when events are
    /// on (takes are the batcher's statement). Whether a row went. Parameters: `$1` the ID, `$2` the attempt limit,
    /// `$3` now, `$4` the receipt state, `$5` the event kind, `$6` whether
    /// to record it.
    async fn remove(&self, id: &MessageId, spent: bool) -> Result<bool> {
        let (op, which, removal) = if spent {
            ("remove a message", "failed_attempts >= $2", Removal::Spent)
        } else {
            (
                "burn a message",
                "failed_attempts < $2 AND expires_at_ms > $3",
                Removal::Burn,
            )
        };
        let sql = format!(
            "WITH gone AS (
                 DELETE FROM {t} WHERE id = $1 AND {which}
                 RETURNING id, manage, expires_at_ms, reference, creator),
             {recorded}
             SELECT count(*) FROM gone",
            t = self.table,
            recorded = recorded(&self.events, &self.receipts, "$5", "$3", "$6", "$4"),
        );
        let gone: i64 = sqlx::query_scalar(&sql)
            .bind(&id.as_bytes()[..])
            .bind(i64::from(self.opts.max_failed_attempts))
            .bind(unix_ms(SystemTime::now()))
            .bind(removal.receipt_state())
            .bind(removal_event(removal).code())
            .bind(self.opts.events)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(op, e))?;
        Ok(gone > 0)
    }
}

#[async_trait]
impl PurgeExpired for PostgresStore {
    async fn purge_expired(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            // Each removed row's event (expired unread, or destroyed when the
            // burn after the last wrong proof did not get to it) in the same
            // statement.
            let removed: i64 = sqlx::query_scalar(&format!(
                "WITH gone AS (
                     DELETE FROM {t} WHERE id IN
                         (SELECT id FROM {t}
                          WHERE expires_at_ms <= $1 OR failed_attempts >= $3 LIMIT $2)
                     RETURNING id, reference, failed_attempts, creator),
                 event AS (
                     INSERT INTO {e} (kind, message, reference, at_ms, attempts, due_ms, creator)
                     SELECT CASE WHEN failed_attempts >= $3 THEN $5 ELSE $6 END,
                         id, reference, $1, 0, $1, creator
                     FROM gone WHERE $4)
                 SELECT count(*) FROM gone",
                t = self.table,
                e = self.events,
            ))
            .bind(unix_ms(SystemTime::now()))
            .bind(PURGE_BATCH)
            .bind(i64::from(self.opts.max_failed_attempts))
            .bind(self.opts.events)
            .bind(EventKind::Destroyed.code())
            .bind(EventKind::Expired.code())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify("purge expired messages", e))?;
            let removed = u64::try_from(removed).unwrap_or(0);
            total += removed;
            if removed < PURGE_BATCH as u64 {
                break;
            }
        }
        loop {
            let removed = self.purge_requests(PURGE_BATCH).await?;
            total += removed;
            if removed < PURGE_BATCH as u64 {
                break;
            }
        }
        sqlx::query(&format!("DELETE FROM {} WHERE until_ms <= $1", self.quotas))
            .bind(unix_ms(SystemTime::now()))
            .execute(&self.pool)
            .await
            .map_err(|e| classify("purge expired quota counts", e))?;
        sqlx::query(&format!("DELETE FROM {} WHERE tat_ms <= $1", self.rates))
            .bind(unix_ms(SystemTime::now()))
            .execute(&self.pool)
            .await
            .map_err(|e| classify("purge full rate buckets", e))?;
        loop {
            let done = sqlx::query(&format!(
                "DELETE FROM {r} WHERE id IN
                     (SELECT id FROM {r} WHERE expires_at_ms <= $1 LIMIT $2)",
                r = self.receipts
            ))
            .bind(unix_ms(SystemTime::now()))
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(|e| classify("purge expired receipts", e))?;
            total += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
