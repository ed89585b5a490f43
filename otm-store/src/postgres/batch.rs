//! Puts and takes of concurrent callers, several in one statement.
//!
//! Every put and every take is queued to the workers of its kind
//! (`PostgresConfig::batch_workers`, default 2). A free
//! worker takes whatever is waiting (up to [`MAX_BATCH`], with no
//! artificial wait), runs it as **one** statement over arrays (`unnest`)
//! and answers each caller from that statement's rows. Under light load a
//! batch is a single operation: the same statement with arrays of one.
//! Under load PostgreSQL parses, plans, commits and syncs once for many
//! operations (its CPU per cycle fell about five-fold in pgbench with
//! batches of eight; BENCHMARKS.md).
//!
//! - Each worker has a connection of its own, not the pool's: no round
//!   trips to check it out and back in (sqlx pings a pooled connection on
//!   its way back), and the statements are planned once per connection,
//!   with index scans (`plan_cache_mode=force_generic_plan`,
//!   `enable_seqscan=off`, `enable_bitmapscan=off` on these connections
//!   only): they look rows up by primary key, and the tables' statistics
//!   lag behind rows that live for seconds. A connection that failed (or
//!   that the server made read-only) is dropped; the worker's next batch
//!   opens another. A connection idle for 5 s, or older than any worker's
//!   connection failure (the server may have restarted under it), is
//!   pinged before its next batch; one 30 minutes old is replaced.
//! - Every wait is bounded: opening a connection by the pool's
//!   `acquire_timeout`, a ping or a statement by `statement_timeout` plus
//!   [`GRACE`] on our side too (a network that drops packets silently
//!   must not hold a worker for the kernel's TCP timeout); past it the
//!   connection is dropped and the batch answered `Unavailable`.
//! - One statement is one transaction: an operation is answered only after
//!   it committed, and a statement PostgreSQL refused changed nothing. (A
//!   reply lost after the commit, a dropped connection say, answers the
//!   whole batch `Unavailable` although it committed: those takes' messages
//!   are lost, never delivered twice.)
//! - IDs are distinct within a batch, in ID order: a second put or take of
//!   an ID waits for the next batch, so every row is touched at most once
//!   per statement (and a take's wrong proofs are still compared and
//!   counted one by one, under the row's lock, across any number of
//!   replicas); batches lock rows in the same order, so two of them rarely
//!   wait on each other.
//! - If PostgreSQL reports an error for a batch's statement (two batches
//!   waiting on each other's rows, a value it refused), every operation of
//!   it runs again alone: a failure stays with the operation that causes
//!   it. A failed connection or server (I/O, a timeout, SQLSTATE classes
//!   08, 53, 57, read-only 25006) answers the whole batch with its error at
//!   once.
//! - An operation whose caller has gone before its statement is sent is
//!   skipped (a take would otherwise delete a message nobody receives).
//! - The queues are bounded ([`QUEUE`]): callers wait for room. When the
//!   last clone of the store is dropped, the queues close and the workers
//!   finish what they hold.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use otm_core::{AccessVerifier, ClaimVerifier, MessageId};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{IDLE_PING, REPLACE_DEAD};
use crate::sql::{classify, OPENED};
use crate::{unix_ms, EventKind, NewMessage, Result, StoreError, StoreOptions};

/// Most operations in one statement.
const MAX_BATCH: usize = 64;

/// Most operations waiting for a worker, per kind.
const QUEUE: usize = 1024;

/// A put for the workers (its checks have passed).
pub(super) struct Put {
    pub(super) id: MessageId,
    pub(super) message: NewMessage,
    pub(super) expires_at_ms: i64,
}

/// A take for the workers.
pub(super) struct Take {
    pub(super) id: MessageId,
    pub(super) claim: ClaimVerifier,
    pub(super) access: AccessVerifier,
}

/// A take's outcome, all of which committed (a counted wrong proof too).
pub(super) enum Took {
    /// The right proofs: the message, now deleted.
    Envelope(Vec<u8>),
    /// A wrong claim proof, counted: the failures so far.
    Wrong(i64),
    /// No live message fits the access proof.
    Nothing,
}

/// How a worker opens its connection.
pub(super) struct Connect {
    /// The pool's connection options (URL, TLS, `statement_timeout`).
    pub(super) options: PgConnectOptions,
    /// Longest wait for a new connection.
    pub(super) timeout: Duration,
    /// The server's `statement_timeout`: a ping or a statement that has no
    /// answer [`GRACE`] after it is given up on our side too.
    pub(super) statement_timeout: Duration,
}

// By hand: the connection options hold the database password.
impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("timeout", &self.timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

/// How long past `statement_timeout` a worker waits for an answer.
const GRACE: Duration = Duration::from_secs(1);

/// Oldest connection a worker keeps (as sqlx's pool does by default).
const MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// The statements, and what they need, shared by the workers.
#[derive(Debug)]
pub(super) struct Statements {
    connect: Connect,
    /// Connection failures seen by any worker, so far.
    failures: AtomicU64,
    opts: StoreOptions,
    put: String,
    take: String,
}

impl Statements {
    /// The put and take statements over the qualified tables `table`,
    /// `receipts` and `events`.
    pub(super) fn new(
        connect: Connect,
        opts: StoreOptions,
        table: &str,
        receipts: &str,
        events: &str,
    ) -> Self {
        // `$5` now and `$6` the attempt limit, as `REPLACE_DEAD` expects.
        let put = format!(
            "WITH input AS (
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[],
                                      $7::bytea[], $8::bytea[], $9::text[], $12::text[])
                     AS i(id, envelope, verifier, expires_at_ms, manage, access, reference,
                          creator)),
             stored AS (
                 INSERT INTO {table} AS m
                     (id, envelope, verifier, expires_at_ms, failed_attempts, manage, access,
                      reference, creator)
                 SELECT id, envelope, verifier, expires_at_ms, 0, manage, access, reference,
                     creator
                 FROM input
                 {REPLACE_DEAD}
                 RETURNING id, reference, creator),
             event AS (
                 INSERT INTO {events} (kind, message, reference, at_ms, attempts, due_ms, creator)
                 SELECT $11, id, reference, $5, 0, $5, creator FROM stored WHERE $10),
             -- A receipt left by an earlier message with this ID (only
             -- possible after that one expired) must not describe the new one.
             -- (It sees receipts committed before this statement began: one
             -- written by a removal of the old row that this put waited for
             -- would stay. IDs are 128 random bits from the server, so a put
             -- never races a removal of its own ID outside of tests.)
             -- (`id = ANY($1)` names the rows an index finds; the rest
             -- of each condition picks among them.)
             receipt AS (
                 DELETE FROM {receipts}
                 WHERE id = ANY($1::bytea[]) AND id IN (SELECT id FROM stored))
             SELECT id FROM stored"
        );
        // A wrong claim proof (with the right access proof: without it
        // nothing matches and nothing is counted) is compared and counted;
        // the right one deletes the row and records its receipt and event.
        // The two conditions exclude each other, so at most one of them
        // touches a row. (Comparing SHA-256 digests in the database leaks
        // no usable timing: a digest prefix does not help find a proof.)
        let take = format!(
            "WITH input AS (
                 SELECT * FROM unnest($1::bytea[], $4::bytea[], $5::bytea[]) WITH ORDINALITY
                     AS i(id, verifier, access, at)),
             wrong AS (
                 UPDATE {table} AS m SET failed_attempts = m.failed_attempts + 1
                 FROM input AS i
                 WHERE m.id = ANY($1::bytea[]) AND m.id = i.id AND m.expires_at_ms > $3 AND m.failed_attempts < $2
                     AND m.access = i.access AND m.verifier <> i.verifier
                 RETURNING m.id, m.failed_attempts::BIGINT AS failures),
             gone AS (
                 DELETE FROM {table} AS m USING input AS i
                 WHERE m.id = ANY($1::bytea[]) AND m.id = i.id AND m.expires_at_ms > $3 AND m.failed_attempts < $2
                     AND m.access = i.access AND m.verifier = i.verifier
                 RETURNING m.id, m.envelope, m.manage, m.expires_at_ms, m.reference, m.creator),
             {recorded}
             SELECT w.failures, g.envelope FROM input AS i
                 LEFT JOIN wrong AS w ON w.id = i.id
                 LEFT JOIN gone AS g ON g.id = i.id
             ORDER BY i.at",
            recorded = super::recorded(events, receipts, "$6", "$3", "$7", "$8"),
        );
        // The batches are primary-key lookups whatever the table's
        // statistics say (rows live for seconds, so statistics lag): plan
        // each statement once per connection, with index scans.
        let connect = Connect {
            options: connect.options.options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("enable_bitmapscan", "off"),
            ]),
            timeout: connect.timeout,
            statement_timeout: connect.statement_timeout,
        };
        Statements {
            connect,
            failures: AtomicU64::new(0),
            opts,
            put,
            take,
        }
    }

    /// Stores checked messages with distinct IDs, put-if-absent, in one
    /// statement on `db` (the pool, or a transaction). Returns the IDs
    /// stored; a message not among them met a live one under its ID.
    pub(super) async fn put<'c, E>(
        &self,
        db: E,
        puts: &[&Put],
    ) -> std::result::Result<HashSet<MessageId>, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let column = |f: fn(&Put) -> &[u8]| -> Vec<&[u8]> { puts.iter().map(|p| f(p)).collect() };
        let stored: Vec<Vec<u8>> = sqlx::query_scalar(&self.put)
            .bind(column(|p| &p.id.as_bytes()[..]))
            .bind(column(|p| &p.message.envelope))
            .bind(column(|p| &p.message.verifier.as_bytes()[..]))
            .bind(puts.iter().map(|p| p.expires_at_ms).collect::<Vec<i64>>())
            .bind(unix_ms(SystemTime::now()))
            .bind(i64::from(self.opts.max_failed_attempts))
            .bind(
                puts.iter()
                    .map(|p| p.message.manage.as_ref().map(|m| &m.as_bytes()[..]))
                    .collect::<Vec<Option<&[u8]>>>(),
            )
            .bind(column(|p| &p.message.access.as_bytes()[..]))
            .bind(
                puts.iter()
                    .map(|p| p.message.reference.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(self.opts.events)
            .bind(EventKind::Created.code())
            .bind(
                puts.iter()
                    .map(|p| p.message.creator.as_ref().map(ToString::to_string))
                    .collect::<Vec<Option<String>>>(),
            )
            .fetch_all(db)
            .await?;
        Ok(stored
            .iter()
            .filter_map(|id| <[u8; MessageId::LEN]>::try_from(id.as_slice()).ok())
            .map(MessageId::from_bytes)
            .collect())
    }

    /// Runs takes with distinct IDs in one statement on `conn`; their
    /// outcomes in order.
    async fn take(
        &self,
        conn: &mut PgConnection,
        takes: &[&Take],
    ) -> std::result::Result<Vec<Took>, sqlx::Error> {
        // Two inputs of one ID would both join the row `gone` returned:
        // both callers would receive the message. `split` keeps them apart;
        // this keeps it so.
        let mut ids = HashSet::with_capacity(takes.len());
        if !takes.iter().all(|t| ids.insert(t.id)) {
            return Err(sqlx::Error::Protocol(
                "a batch of takes named one message twice".into(),
            ));
        }
        let column = |f: fn(&Take) -> &[u8]| -> Vec<&[u8]> { takes.iter().map(|t| f(t)).collect() };
        let rows: Vec<(Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(&self.take)
            .bind(column(|t| &t.id.as_bytes()[..]))
            .bind(i64::from(self.opts.max_failed_attempts))
            .bind(unix_ms(SystemTime::now()))
            .bind(column(|t| &t.claim.as_bytes()[..]))
            .bind(column(|t| &t.access.as_bytes()[..]))
            .bind(EventKind::Opened.code())
            .bind(self.opts.events)
            .bind(OPENED)
            .fetch_all(conn)
            .await?;
        if rows.len() != takes.len() {
            return Err(sqlx::Error::Protocol(
                "PostgreSQL answered a batch of takes with the wrong number of rows".into(),
            ));
        }
        Ok(rows
            .into_iter()
            .map(|row| match row {
                (_, Some(envelope)) => Took::Envelope(envelope),
                (Some(failures), None) => Took::Wrong(failures),
                (None, None) => Took::Nothing,
            })
            .collect())
    }
}

impl Statements {
    /// A new connection for a worker, within the pool's acquire timeout.
    async fn open(&self) -> std::result::Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(self.connect.timeout, self.connect.options.connect()).await {
            Ok(opened) => opened,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to PostgreSQL timed out",
            ))),
        }
    }
}

/// An operation the workers batch.
#[async_trait]
trait Op: Send + Sync + Sized + 'static {
    /// What a caller gets back.
    type Output: Send + 'static;
    /// What the operation does, for errors.
    const OP: &'static str;
    /// The ID it touches.
    fn id(&self) -> &MessageId;
    /// Runs `ops` (distinct IDs) in one statement on `conn`: each one's
    /// outcome, in order; `Err` when the statement failed (and changed
    /// nothing).
    async fn run(
        statements: &Statements,
        conn: &mut PgConnection,
        ops: &[&Self],
    ) -> std::result::Result<Vec<Result<Self::Output>>, sqlx::Error>;
}

#[async_trait]
impl Op for Put {
    type Output = ();
    const OP: &'static str = "store a message";
    fn id(&self) -> &MessageId {
        &self.id
    }
    async fn run(
        statements: &Statements,
        conn: &mut PgConnection,
        ops: &[&Self],
    ) -> std::result::Result<Vec<Result<()>>, sqlx::Error> {
        let stored = statements.put(conn, ops).await?;
        Ok(ops
            .iter()
            .map(|put| {
                if stored.contains(&put.id) {
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            })
            .collect())
    }
}

#[async_trait]
impl Op for Take {
    type Output = Took;
    const OP: &'static str = "take a message";
    fn id(&self) -> &MessageId {
        &self.id
    }
    async fn run(
        statements: &Statements,
        conn: &mut PgConnection,
        ops: &[&Self],
    ) -> std::result::Result<Vec<Result<Took>>, sqlx::Error> {
        Ok(statements
            .take(conn, ops)
            .await?
            .into_iter()
            .map(Ok)
            .collect())
    }
}

/// A queued operation and where its answer goes.
struct Job<O: Op> {
    op: O,
    reply: oneshot::Sender<Result<O::Output>>,
}

/// The queues into the workers.
#[derive(Clone, Debug)]
pub(super) struct Batcher {
    puts: mpsc::Sender<Job<Put>>,
    takes: mpsc::Sender<Job<Take>>,
}

impl<O: Op> std::fmt::Debug for Job<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Batcher {
    /// Starts `workers` workers of each kind (so as many statements of
    /// each at once, each on a connection of its own).
    pub(super) fn spawn(statements: &Arc<Statements>, workers: usize) -> Batcher {
        Batcher {
            puts: start(statements, workers),
            takes: start(statements, workers),
        }
    }

    /// Stores `put`; answers once its statement has committed.
    pub(super) async fn put(&self, put: Put) -> Result<()> {
        submit(&self.puts, put).await
    }

    /// Runs `take`; answers once its statement has committed.
    pub(super) async fn take(&self, take: Take) -> Result<Took> {
        submit(&self.takes, take).await
    }
}

fn start<O: Op>(statements: &Arc<Statements>, workers: usize) -> mpsc::Sender<Job<O>> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let queue = Arc::new(Mutex::new(receiver));
    for _ in 0..workers.max(1) {
        tokio::spawn(work(statements.clone(), queue.clone()));
    }
    sender
}

async fn submit<O: Op>(queue: &mpsc::Sender<Job<O>>, op: O) -> Result<O::Output> {
    let stopped = || StoreError::Unavailable {
        op: "queue a PostgreSQL statement",
        source: "the store's workers have stopped".into(),
    };
    let (reply, answer) = oneshot::channel();
    queue.send(Job { op, reply }).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// One worker: takes what is waiting, runs it, answers, again until the
/// queue closes.
async fn work<O: Op>(statements: Arc<Statements>, queue: Arc<Mutex<mpsc::Receiver<Job<O>>>>) {
    // Operations held back from the last batch (an ID already in it).
    let mut held: Vec<Job<O>> = Vec::new();
    // A connection of the worker's own (opened when needed, dropped after
    // it failed): no pool, so no round trips to check it out and back in.
    let mut conn: Option<Own> = None;
    loop {
        let mut jobs = std::mem::take(&mut held);
        if jobs.is_empty() {
            // The worker waiting here holds the lock: the others wait for
            // it, not for the queue.
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                if let Some(own) = conn {
                    let _ = own.conn.close().await;
                }
                return;
            }
        } else if let Ok(mut queue) = queue.try_lock() {
            // With operations in hand, take only what is already there, as
            // many as an empty hand would (held ones do not crowd new IDs
            // out).
            for _ in 0..MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let batch = split(jobs, &mut held);
        if batch.is_empty() {
            continue;
        }
        let current = match statements.ready(conn.take()).await {
            Ok(own) => conn.insert(own),
            Err(error) => {
                statements.failures.fetch_add(1, Ordering::Relaxed);
                answer_all(batch, classify(O::OP, error));
                continue;
            }
        };
        current.used = Instant::now();
        if !run(&statements, &mut current.conn, batch).await {
            // Every worker checks its own connection before its next batch.
            statements.failures.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
    }
}

/// A worker's connection.
struct Own {
    conn: PgConnection,
    /// [`Statements::failures`] when it was last known good.
    checked: u64,
    /// When it was opened.
    opened: Instant,
    /// When it last ran a statement.
    used: Instant,
}

impl Statements {
    /// `own` if it is good, else a new connection. A connection idle for
    /// [`IDLE_PING`] or more, or one older than a connection failure of
    /// any worker (the server may have restarted under it), is pinged
    /// first: a connection the server dropped is replaced before it fails
    /// an operation. One older than [`MAX_AGE`] is replaced.
    async fn ready(&self, own: Option<Own>) -> std::result::Result<Own, sqlx::Error> {
        let failures = self.failures.load(Ordering::Relaxed);
        if let Some(mut own) = own {
            if own.opened.elapsed() >= MAX_AGE {
                let _ = self.bounded(own.conn.close()).await;
            } else if own.checked == failures && own.used.elapsed() < IDLE_PING {
                return Ok(own);
            } else if self.bounded(own.conn.ping()).await.is_ok() {
                own.checked = failures;
                return Ok(own);
            }
        }
        Ok(Own {
            conn: self.open().await?,
            checked: failures,
            opened: Instant::now(),
            used: Instant::now(),
        })
    }

    /// `work`, given up [`GRACE`] after the server's `statement_timeout`
    /// (an I/O error: the connection is dropped).
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> std::result::Result<T, sqlx::Error> {
        match tokio::time::timeout(self.connect.statement_timeout + GRACE, work).await {
            Ok(done) => done,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "PostgreSQL did not answer within statement_timeout",
            ))),
        }
    }
}

/// The batch to run now from `jobs`, in ID order: the first job of each
/// ID, skipping those whose caller has gone; a later job of an ID already
/// in it goes to `held`, for the next batch.
fn split<O: Op>(jobs: Vec<Job<O>>, held: &mut Vec<Job<O>>) -> Vec<Job<O>> {
    let mut ids = HashSet::with_capacity(jobs.len());
    let mut batch = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.reply.is_closed() {
            continue;
        }
        if ids.insert(*job.op.id()) {
            batch.push(job);
        } else {
            held.push(job);
        }
    }
    // Batches lock their rows in the same order, so two of them rarely
    // wait on each other.
    batch.sort_unstable_by_key(|job| *job.op.id());
    batch
}

/// Runs `batch` in one statement on `conn` and answers; `false` when the
/// connection failed (the next batch opens another). Callers that have
/// gone are dropped first. If PostgreSQL reported an error for the
/// statement that an operation of it may have caused (two batches waiting
/// on each other's rows, a value it refused), each operation runs again
/// alone. If the connection or the server failed (I/O, a timeout, SQLSTATE
/// classes 08, 53, 57, read-only 25006), every operation gets that error
/// at once: alone, each would only wait for the same failure again.
async fn run<O: Op>(
    statements: &Statements,
    conn: &mut PgConnection,
    mut batch: Vec<Job<O>>,
) -> bool {
    // The connection may have taken a while (a ping, a new one).
    batch.retain(|job| !job.reply.is_closed());
    if batch.is_empty() {
        return true;
    }
    let ops: Vec<&O> = batch.iter().map(|job| &job.op).collect();
    let outcomes = match statements.bounded(O::run(statements, conn, &ops)).await {
        Ok(outcomes) => outcomes,
        Err(error) if batch.len() > 1 && alone_may_pass(&error) => {
            let mut outcomes: Vec<Result<O::Output>> = Vec::with_capacity(batch.len());
            // After a failure of the connection or the server, the rest get
            // its error unsent.
            let mut failed = None;
            let mut healthy = true;
            for (op, job) in ops.iter().zip(&batch) {
                if let Some(error) = &failed {
                    outcomes.push(Err(copy_error::<O>(error)));
                    continue;
                }
                if job.reply.is_closed() {
                    // Nobody to answer: not sent.
                    outcomes.push(Err(StoreError::NotFound));
                    continue;
                }
                let alone = statements.bounded(O::run(statements, conn, std::slice::from_ref(op)));
                outcomes.push(match alone.await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| {
                        Err(StoreError::Backend {
                            op: O::OP,
                            source: "PostgreSQL answered an operation with no row".into(),
                        })
                    }),
                    Err(error) if alone_may_pass(&error) => Err(classify(O::OP, error)),
                    Err(error) => {
                        healthy = !connection_lost(&error);
                        let error = classify(O::OP, error);
                        let answer = Err(copy_error::<O>(&error));
                        failed = Some(error);
                        answer
                    }
                });
            }
            drop(ops);
            answer(batch, outcomes);
            return healthy;
        }
        Err(error) => {
            let healthy = !connection_lost(&error);
            drop(ops);
            answer_all(batch, classify(O::OP, error));
            return healthy;
        }
    };
    drop(ops);
    answer(batch, outcomes);
    true
}

/// Sends each job its outcome.
fn answer<O: Op>(batch: Vec<Job<O>>, outcomes: Vec<Result<O::Output>>) {
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // A caller that went away since gets nothing; its operation
        // stands, as a committed one would without the queue.
        let _ = job.reply.send(outcome);
    }
}

/// A copy of `error` for another caller of the same batch.
fn copy_error<O: Op>(error: &StoreError) -> StoreError {
    StoreError::driver(
        O::OP,
        error.is_retryable(),
        error.with_sources().to_string(),
    )
}

/// Answers every job of `batch` with `error` (copies of it).
fn answer_all<O: Op>(batch: Vec<Job<O>>, error: StoreError) {
    for job in batch {
        let _ = job.reply.send(Err(copy_error::<O>(&error)));
    }
}

/// Whether an operation of a failed batch may succeed alone: PostgreSQL
/// reported an error for the statement, and not one of the connection
/// (class 08), of resources (53), of the server going away or a timeout
/// (57), or a read-only server (25006).
fn alone_may_pass(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            !(code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "25006")
        }
        _ => false,
    }
}

/// Whether the connection that gave `error` is to be dropped: anything but
/// an error PostgreSQL reported for a statement, and of those the
/// connection's (08), the server's going away (57P0x) and a read-only
/// server (25006, after a switchover the old primary may stay up as a
/// standby). A statement timeout (57014) or a lack of resources (53) leaves
/// the connection good.
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P0") || code == "25006"
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::sync::Mutex as StdMutex;

    /// An error PostgreSQL reports for a statement, with its SQLSTATE.
    #[derive(Debug)]
    struct Reported(&'static str);

    impl std::fmt::Display for Reported {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Reported {}

    impl sqlx::error::DatabaseError for Reported {
        fn message(&self) -> &str {
            "reported"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// An operation whose statement fails, with `fail`'s error, whenever it
    /// holds a failing one; records the size of every statement it runs.
    struct Probe {
        id: MessageId,
        fail: Option<fn() -> sqlx::Error>,
        sizes: Arc<StdMutex<Vec<usize>>>,
    }

    #[async_trait]
    impl Op for Probe {
        type Output = MessageId;
        const OP: &'static str = "probe";
        fn id(&self) -> &MessageId {
            &self.id
        }
        async fn run(
            _: &Statements,
            _: &mut PgConnection,
            ops: &[&Self],
        ) -> std::result::Result<Vec<Result<MessageId>>, sqlx::Error> {
            ops[0].sizes.lock().unwrap().push(ops.len());
            if let Some(fail) = ops.iter().find_map(|op| op.fail) {
                return Err(fail());
            }
            Ok(ops.iter().map(|op| Ok(op.id)).collect())
        }
    }

    type Answer = oneshot::Receiver<Result<MessageId>>;

    fn job(
        id: MessageId,
        fail: Option<fn() -> sqlx::Error>,
        sizes: &Arc<StdMutex<Vec<usize>>>,
    ) -> (Job<Probe>, Answer) {
        let (reply, answer) = oneshot::channel();
        let sizes = sizes.clone();
        (
            Job {
                op: Probe { id, fail, sizes },
                reply,
            },
            answer,
        )
    }

    fn statements() -> Statements {
        let url = otm_testkit::env::postgres_url();
        let connect = Connect {
            options: url.parse().unwrap(),
            timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        };
        Statements::new(connect, StoreOptions::default(), "t", "r", "e")
    }

    /// Three operations, the second failing with `fail`, run on a real
    /// connection (the probe sends nothing on it): their outcomes, the
    /// statement sizes run and whether the connection is still good; `None`
    /// when PostgreSQL is unreachable (skipped).
    async fn three(
        fail: fn() -> sqlx::Error,
    ) -> Option<(Vec<Result<MessageId>>, Vec<usize>, bool)> {
        let statements = statements();
        let mut conn = match statements.open().await {
            Ok(conn) => conn,
            Err(e) => return otm_testkit::skip(&format!("PostgreSQL is unreachable: {e}")),
        };
        let sizes = Arc::default();
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::generate().unwrap()).collect();
        let (jobs, answers): (Vec<_>, Vec<_>) = ids
            .iter()
            .enumerate()
            .map(|(i, id)| job(*id, (i == 1).then_some(fail), &sizes))
            .unzip();
        let healthy = run(&statements, &mut conn, jobs).await;
        let mut outcomes = Vec::new();
        for (answer, id) in answers.into_iter().zip(&ids) {
            let outcome = answer.await.unwrap();
            if let Ok(got) = &outcome {
                assert_eq!(got, id, "an operation got another's outcome");
            }
            outcomes.push(outcome);
        }
        let sizes = sizes.lock().unwrap().clone();
        Some((outcomes, sizes, healthy))
    }

    #[tokio::test]
    async fn a_statement_error_runs_each_operation_alone() {
        let Some((outcomes, sizes, healthy)) =
            three(|| sqlx::Error::Database(Box::new(Reported("40P01")))).await
        else {
            return;
        };
        assert!(healthy, "a statement error does not condemn the connection");
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[1], Err(StoreError::Unavailable { .. })),
            "{outcomes:?}"
        );
        // The batch of three, then each alone.
        assert_eq!(sizes, vec![3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn a_failed_connection_fails_the_whole_batch_at_once() {
        // (the error, whether the connection is kept)
        for (fail, kept) in [
            ((|| sqlx::Error::PoolTimedOut) as fn() -> sqlx::Error, false),
            (|| sqlx::Error::Database(Box::new(Reported("57P01"))), false),
            (|| sqlx::Error::Database(Box::new(Reported("08006"))), false),
            // A read-only server (the old primary after a switchover).
            (|| sqlx::Error::Database(Box::new(Reported("25006"))), false),
            // A statement timeout: the batch fails, the connection is good.
            (|| sqlx::Error::Database(Box::new(Reported("57014"))), true),
        ] {
            let Some((outcomes, sizes, healthy)) = three(fail).await else {
                return;
            };
            assert_eq!(healthy, kept, "{outcomes:?}");
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, Err(StoreError::Unavailable { .. }))),
                "{outcomes:?}"
            );
            assert_eq!(sizes, vec![3]);
        }
    }

    #[test]
    fn a_batch_holds_each_id_once_and_skips_callers_gone() {
        let sizes = Arc::default();
        let [a, b] = [(); 2].map(|_| MessageId::generate().unwrap());
        let (first, _keep_first) = job(a, None, &sizes);
        let (again, _keep_again) = job(a, None, &sizes);
        let (gone, answer) = job(b, None, &sizes);
        drop(answer);
        let (other, _keep_other) = job(b, None, &sizes);
        let mut held = Vec::new();
        let batch = split(vec![first, again, gone, other], &mut held);
        let ids: Vec<MessageId> = batch.iter().map(|job| job.op.id).collect();
        // In ID order, so batches lock rows in one order.
        assert_eq!(ids, vec![a.min(b), a.max(b)]);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].op.id, a);
    }
}
