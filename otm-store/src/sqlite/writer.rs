//! Group commit: one task owns a connection of its own and runs every put,
//! take and burn (and the outbox's leases and acknowledgements) that is
//! waiting, together, in one `BEGIN IMMEDIATE` transaction, then answers
//! each only after that transaction has committed. With `synchronous=FULL`
//! every commit is a sync of the WAL; under load one sync then covers many
//! operations, and an acknowledged operation is still on disk.
//!
//! - A batch runs first without a savepoint per operation (each statement
//!   is a round trip to the driver's SQLite thread). If any operation
//!   fails, that transaction is rolled back unanswered and the batch runs
//!   again with a savepoint each: a failed statement then fails only its
//!   own operation (its savepoint is rolled back); the others go on. A
//!   caller that makes operations fail makes their batch run twice, no
//!   more.
//! - A failure of a transaction statement (begin, savepoint, release,
//!   rollback to savepoint, commit) stops the batch at once and fails every
//!   operation of it, acknowledging none (nothing of it was written); the
//!   next batch runs on a new connection, since SQLite may have rolled the
//!   transaction back by itself (a full disk, an I/O error) and the
//!   driver's idea of it may be wrong.
//! - An operation whose caller has gone before it runs is skipped (a take
//!   would otherwise delete a message nobody receives).
//! - There is no artificial wait: the task takes what is queued when it is
//!   free, up to [`MAX_BATCH`]. The queue is bounded ([`QUEUE`]): callers
//!   wait for room (backpressure).
//! - When the last clone of the store is dropped, the queue closes, the
//!   task finishes what it has and closes its connection.

use std::time::SystemTime;

use otm_core::{AccessVerifier, ClaimVerifier, MessageId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{outbox, requests};
use super::{COUNT_WRONG_CLAIM, TAKE_MESSAGE};
use crate::sql::{classify, removal_event, Removal};
use crate::{unix_ms, EventKind, NewMessage, NewRequest, Result, StoreError, StoreOptions};

/// Most operations in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// Most operations waiting for the writer.
pub(super) const QUEUE: usize = 1024;

/// A write for the writer task.
#[derive(Clone)]
pub(super) enum Write {
    /// Store a new message (its checks have passed).
    Put {
        id: MessageId,
        message: NewMessage,
        expires_at_ms: i64,
    },
    /// Count a wrong claim proof, or take the message.
    Take {
        id: MessageId,
        access: AccessVerifier,
        claim: ClaimVerifier,
    },
    /// Destroy a live message unread.
    Burn { id: MessageId },
    /// Store a new request (its checks have passed).
    PutRequest {
        id: MessageId,
        request: NewRequest,
        expires_at_ms: i64,
    },
    /// Answer a request (the answer's checks have passed).
    Answer { id: MessageId, answer: Vec<u8> },
    /// Withdraw a request, burning its answer if not taken.
    Withdraw { id: MessageId },
    /// Store several messages, all or none (their checks have passed;
    /// each with its expiry).
    PutGroup {
        messages: Vec<(MessageId, NewMessage, i64)>,
    },
    /// Lease up to `max` due events for `lease`, counted from when the
    /// writer runs it (not from when it was queued).
    LeaseEvents {
        max: usize,
        lease: std::time::Duration,
    },
    /// Take delivered events (by number) out of the outbox.
    EventsDelivered { seqs: Vec<i64> },
}

/// What a write did.
pub(super) enum Written {
    /// Stored.
    Put,
    /// A take's outcome.
    Take(Took),
    /// Whether a burn (or a withdrawal) found something live.
    Burn(bool),
    /// The events leased.
    Events(Vec<crate::Event>),
    /// Done, with nothing to report.
    Done,
}

/// A take's outcome, all of which commit (a counted wrong proof too).
pub(super) enum Took {
    /// The right proofs: the message, now deleted.
    Envelope(Vec<u8>),
    /// A wrong claim proof, counted: the failures so far.
    Wrong(i64),
    /// No live message fits the access proof.
    Nothing,
}

/// A queued write and where its answer goes.
pub(super) struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Written>>,
}

/// The queue into the writer task.
#[derive(Clone, Debug)]
pub(super) struct Writer(mpsc::Sender<Job>);

impl Writer {
    /// Starts the task on `conn` (a connection of its own, not the pool's),
    /// which `connect` opens again after a transaction statement failed.
    pub(super) fn spawn(
        conn: SqliteConnection,
        connect: SqliteConnectOptions,
        opts: StoreOptions,
    ) -> Writer {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, connect, receiver, opts));
        Writer(sender)
    }

    /// Queues `write` and waits until its batch has committed.
    pub(super) async fn write(&self, write: Write) -> Result<Written> {
        let stopped = || StoreError::Unavailable {
            op: "queue a write",
            source: "the SQLite writer task has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job { write, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    conn: SqliteConnection,
    connect: SqliteConnectOptions,
    mut queue: mpsc::Receiver<Job>,
    opts: StoreOptions,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if conn.is_none() {
            match connect.connect().await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    fail_all(&mut batch, classify("reopen the SQLite database", e));
                    continue;
                }
            }
        }
        let Some(current) = conn.as_mut() else {
            continue;
        };
        if commit_batch(current, &opts, &mut batch).await.is_err() {
            // A transaction statement failed: SQLite may have rolled the
            // transaction back by itself (a full disk, an I/O error), and
            // the driver's idea of it may be wrong. Start the next batch on
            // a new connection.
            if let Some(suspect) = conn.take() {
                let _ = suspect.close().await;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// A transaction statement (`BEGIN`, `SAVEPOINT`, `RELEASE`, `ROLLBACK
/// TO`, `COMMIT`) failed: the batch stopped there and the connection is
/// suspect.
struct Broken;

/// `BEGIN IMMEDIATE` for `batch`; if that fails, every job gets the error.
async fn begin<'c>(
    conn: &'c mut SqliteConnection,
    batch: &mut Vec<Job>,
) -> std::result::Result<sqlx::Transaction<'c, sqlx::Sqlite>, Broken> {
    match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => Ok(tx),
        Err(e) => {
            fail_all(batch, classify("write a batch", e));
            Err(Broken)
        }
    }
}

/// Runs `batch` in one transaction and answers every job once it has
/// committed (or failed). First without a savepoint per job: each
/// statement is a round trip to the driver's SQLite thread, and the
/// savepoint and its release are two of the four or five of a put or a
/// take. Should any job fail (a conflict, a refused group, a driver
/// error), that transaction is rolled back unanswered and the batch runs
/// again with a savepoint each ([`commit_careful`]), so a failed job still
/// fails alone. Jobs are applied to copies in the first pass, so the
/// second has them whole.
async fn commit_batch(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    batch: &mut Vec<Job>,
) -> std::result::Result<(), Broken> {
    let op = "write a batch";
    let mut tx = begin(conn, batch).await?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut failed = false;
    for (at, job) in batch.iter().enumerate() {
        if job.reply.is_closed() {
            continue;
        }
        match apply(&mut tx, opts, job.write.clone(), true).await {
            Ok(written) => answers.push((at, written)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if failed {
        if let Err(e) = tx.rollback().await {
            fail_all(batch, classify(op, e));
            return Err(Broken);
        }
        return commit_careful(conn, opts, batch).await;
    }
    match tx.commit().await {
        Ok(()) => {
            let mut replies: Vec<Option<oneshot::Sender<Result<Written>>>> =
                batch.drain(..).map(|job| Some(job.reply)).collect();
            for (at, written) in answers {
                if let Some(reply) = replies[at].take() {
                    // A caller that went away since gets nothing; its
                    // write stands, as a committed one would.
                    let _ = reply.send(Ok(written));
                }
            }
            Ok(())
        }
        Err(e) => {
            // Nothing of the batch was written: no operation is acknowledged.
            fail_all(batch, classify(op, e));
            Err(Broken)
        }
    }
}

/// Runs `batch` in one transaction, a savepoint each, and answers every
/// job once the transaction has committed (or failed). Jobs whose caller
/// has gone are skipped: nobody would learn their outcome, and a take
/// would delete a message nobody receives. When a transaction statement
/// fails, the batch stops at once (a statement after a transaction SQLite
/// rolled back by itself would commit on its own), every job is answered
/// with the error and none is acknowledged.
async fn commit_careful(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    batch: &mut Vec<Job>,
) -> std::result::Result<(), Broken> {
    let op = "write a batch";
    let mut tx = begin(conn, batch).await?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut broken = None;
    let mut jobs = batch.drain(..);
    for job in jobs.by_ref() {
        if job.reply.is_closed() {
            continue;
        }
        let mut savepoint = match tx.begin().await {
            Ok(savepoint) => savepoint,
            Err(e) => {
                broken = Some((classify(op, e), job.reply));
                break;
            }
        };
        let result = apply(&mut savepoint, opts, job.write, false).await;
        let ended = match result {
            Ok(_) => savepoint.commit().await,
            Err(_) => savepoint.rollback().await,
        };
        match ended {
            Ok(()) => answers.push((job.reply, result)),
            Err(e) => {
                broken = Some((classify(op, e), job.reply));
                break;
            }
        }
    }
    if let Some((error, reply)) = broken {
        // Nothing is committed: the transaction is dropped (rolled back),
        // and every job of the batch, run or not, gets the error.
        let rest: Vec<_> = jobs.map(|job| job.reply).collect();
        drop(tx);
        let replies = answers.into_iter().map(|(reply, _)| reply);
        for reply in replies.chain(std::iter::once(reply)).chain(rest) {
            let _ = reply.send(Err(copy_error(&error)));
        }
        return Err(Broken);
    }
    drop(jobs);
    match tx.commit().await {
        Ok(()) => {
            for (reply, result) in answers {
                // A caller that went away since gets nothing; its write
                // stands, as a committed one would without the queue.
                let _ = reply.send(result);
            }
            Ok(())
        }
        Err(e) => {
            // Nothing of the batch was written: no operation is acknowledged.
            let error = classify(op, e);
            for (reply, _) in answers {
                let _ = reply.send(Err(copy_error(&error)));
            }
            Err(Broken)
        }
    }
}

/// Answers every job of `batch` with (a copy of) `error`.
fn fail_all(batch: &mut Vec<Job>, error: StoreError) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(copy_error(&error)));
    }
}

/// The same failure for another job of the batch (a driver's error is not
/// `Clone`): as retryable as `error`, with its text.
fn copy_error(error: &StoreError) -> StoreError {
    StoreError::driver(
        "write a batch",
        error.is_retryable(),
        error.with_sources().to_string(),
    )
}

/// Runs `write` on `conn`. `strict` (the first pass, no savepoint of its
/// own): an error that the careful pass would log and let stand (the
/// spent removal after the last wrong proof) fails the operation instead,
/// so the batch runs again the careful way: such an error may have rolled
/// the whole transaction back, and later statements would then commit on
/// their own.
async fn apply(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    write: Write,
    strict: bool,
) -> Result<Written> {
    let now = unix_ms(SystemTime::now());
    match write {
        Write::Put {
            id,
            message,
            expires_at_ms,
        } => put(
            conn,
            opts,
            &id,
            message,
            expires_at_ms,
            now,
            EventKind::Created,
        )
        .await
        .map(|()| Written::Put),
        Write::Take { id, access, claim } => take(conn, opts, &id, access, claim, now, strict)
            .await
            .map(Written::Take),
        Write::Burn { id } => remove(conn, opts, &id, Removal::Burn, now)
            .await
            .map(|gone| Written::Burn(gone.is_some())),
        Write::PutRequest {
            id,
            request,
            expires_at_ms,
        } => requests::put(conn, opts, &id, request, expires_at_ms, now)
            .await
            .map(|()| Written::Put),
        Write::Answer { id, answer } => requests::answer(conn, opts, &id, answer, now)
            .await
            .map(|()| Written::Put),
        Write::Withdraw { id } => requests::withdraw(conn, opts, &id, now)
            .await
            .map(Written::Burn),
        // One savepoint holds them all: a refused member rolls back those
        // stored before it.
        Write::PutGroup { messages } => {
            for (id, message, expires_at_ms) in messages {
                put(
                    conn,
                    opts,
                    &id,
                    message,
                    expires_at_ms,
                    now,
                    EventKind::Created,
                )
                .await?;
            }
            Ok(Written::Put)
        }
        Write::LeaseEvents { max, lease } => outbox::lease(
            conn,
            max,
            now,
            crate::contract::events::lease_end(now, lease),
        )
        .await
        .map(Written::Events),
        Write::EventsDelivered { seqs } => outbox::delete_delivered(conn, &seqs)
            .await
            .map(|()| Written::Done),
    }
}

/// Put-if-absent (an expired or spent row counts as absent), the removal
/// of a stale receipt and the event `kind` (`created`, or a request's
/// `answered` for its answer).
pub(super) async fn put(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    message: NewMessage,
    expires_at_ms: i64,
    now: i64,
    kind: EventKind,
) -> Result<()> {
    let op = "store a message";
    let creator = message.creator.as_ref().map(ToString::to_string);
    let done = sqlx::query(
        "INSERT INTO otm_messages
             (id, envelope, verifier, expires_at_ms, failed_attempts, manage, access,
              reference, creator)
         VALUES (?1, ?2, ?3, ?4, 0, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET envelope = excluded.envelope,
             verifier = excluded.verifier, expires_at_ms = excluded.expires_at_ms,
             failed_attempts = 0, manage = excluded.manage, access = excluded.access,
             reference = excluded.reference, creator = excluded.creator
         WHERE otm_messages.expires_at_ms <= ?5 OR otm_messages.failed_attempts >= ?6",
    )
    .bind(&id.as_bytes()[..])
    .bind(&message.envelope)
    .bind(&message.verifier.as_bytes()[..])
    .bind(expires_at_ms)
    .bind(now)
    .bind(i64::from(opts.max_failed_attempts))
    .bind(message.manage.map(|m| m.as_bytes().to_vec()))
    .bind(&message.access.as_bytes()[..])
    .bind(&message.reference)
    .bind(&creator)
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(op, e))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    // A receipt left by an earlier message with this ID (only possible
    // after that one expired) must not describe the new one.
    sqlx::query("DELETE FROM otm_receipts WHERE id = ?1")
        .bind(&id.as_bytes()[..])
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
    if opts.events {
        let origin = (creator.as_deref(), message.reference.as_deref());
        outbox::record(conn, kind, id, origin, now).await?;
    }
    Ok(())
}

/// A wrong claim proof (with the right access proof: without it nothing
/// matches and nothing is counted) is compared and counted in one
/// statement, so no more than the limit of wrong proofs is ever evaluated;
/// the one that uses up the attempts also frees the dead row and leaves
/// the receipt (in a savepoint of its own: if that fails, the count stands
/// and the purge removes the row). The right proofs take and delete the
/// message with its receipt and event. (Comparing SHA-256 digests in the
/// database leaks no usable timing: a digest prefix does not help find a
/// proof.)
async fn take(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    access: AccessVerifier,
    claim: ClaimVerifier,
    now: i64,
    strict: bool,
) -> Result<Took> {
    let op = "take a message";
    let max = i64::from(opts.max_failed_attempts);
    let failures: Option<i64> = sqlx::query_scalar(COUNT_WRONG_CLAIM)
        .bind(&id.as_bytes()[..])
        .bind(now)
        .bind(max)
        .bind(&claim.as_bytes()[..])
        .bind(&access.as_bytes()[..])
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
    if let Some(failures) = failures {
        if failures >= max {
            let burned = match conn.begin().await {
                Ok(mut savepoint) => {
                    match remove(&mut savepoint, opts, id, Removal::Spent, now).await {
                        Ok(_) => savepoint.commit().await.map_err(|e| classify(op, e)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(classify(op, e)),
            };
            if let Err(e) = burned {
                if strict {
                    return Err(e);
                }
                tracing::warn!(error = %e, "burning a message after too many wrong proofs failed; the purge will remove it");
            }
        }
        return Ok(Took::Wrong(failures));
    }
    let removal = Removal::Take {
        verifier: claim,
        access,
    };
    Ok(match remove(conn, opts, id, removal, now).await? {
        Some(envelope) => Took::Envelope(envelope),
        None => Took::Nothing,
    })
}

/// Deletes the row `removal` names and records its receipt (when the
/// message has a manager) and its event (when events are on). Returns the
/// envelope if a row went.
pub(super) async fn remove(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    removal: Removal,
    now: i64,
) -> Result<Option<Vec<u8>>> {
    let op = "remove a message";
    let max = i64::from(opts.max_failed_attempts);
    let key = &id.as_bytes()[..];
    let delete = match &removal {
        Removal::Take { verifier, access } => sqlx::query(TAKE_MESSAGE)
            .bind(key)
            .bind(max)
            .bind(now)
            .bind(&verifier.as_bytes()[..])
            .bind(&access.as_bytes()[..]),
        Removal::Burn => sqlx::query(
            "DELETE FROM otm_messages
             WHERE id = ?1 AND failed_attempts < ?2 AND expires_at_ms > ?3
             RETURNING envelope, manage, expires_at_ms, reference, creator",
        )
        .bind(key)
        .bind(max)
        .bind(now),
        Removal::Spent => sqlx::query(
            "DELETE FROM otm_messages WHERE id = ?1 AND failed_attempts >= ?2
             RETURNING envelope, manage, expires_at_ms, reference, creator",
        )
        .bind(key)
        .bind(max),
    };
    let Some(row) = delete
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?
    else {
        return Ok(None);
    };
    let envelope: Vec<u8> = row.try_get(0).map_err(|e| classify(op, e))?;
    let manage: Option<Vec<u8>> = row.try_get(1).map_err(|e| classify(op, e))?;
    let expires: i64 = row.try_get(2).map_err(|e| classify(op, e))?;
    let reference: Option<String> = row.try_get(3).map_err(|e| classify(op, e))?;
    let creator: Option<String> = row.try_get(4).map_err(|e| classify(op, e))?;
    if opts.events {
        let kind = removal_event(removal);
        let origin = (creator.as_deref(), reference.as_deref());
        outbox::record(conn, kind, id, origin, now).await?;
    }
    if let Some(manage) = manage {
        sqlx::query(
            "INSERT INTO otm_receipts
                 (id, manage, state, changed_at_ms, expires_at_ms, reference, creator)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET manage = excluded.manage, state = excluded.state,
                 changed_at_ms = excluded.changed_at_ms, expires_at_ms = excluded.expires_at_ms,
                 reference = excluded.reference, creator = excluded.creator",
        )
        .bind(&id.as_bytes()[..])
        .bind(manage)
        .bind(removal.receipt_state())
        .bind(now)
        .bind(expires)
        .bind(reference)
        .bind(creator)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
    }
    Ok(Some(envelope))
}
