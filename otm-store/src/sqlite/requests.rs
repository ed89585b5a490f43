//! The SQLite store's requests for a secret (`otm_requests`, migration
//! 11). Putting, answering and withdrawing go through the group-commit
//! writer, each in its savepoint: answering marks the request with an
//! `UPDATE … WHERE answered_at_ms IS NULL` under SQLite's database write
//! lock, then stores the answer as a message row with its event; if any
//! of it fails, the savepoint rolls all of it back. Reading uses the pool.

use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::MessageId;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::outbox;
use super::writer::{self, Write, Written};
use crate::sql::{classify, stored_request, REQUEST_COLUMNS};
use crate::{
    check_answer, check_request, unix_ms, EventKind, NewMessage, NewRequest, RequestStore, Result,
    SqliteStore, StoreError, StoreOptions, StoredRequest, ANSWER_MANAGE,
};

#[async_trait]
impl RequestStore for SqliteStore {
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()> {
        let (expires_at_ms, _) = check_request(&request)?;
        let write = Write::PutRequest {
            id: *id,
            request,
            expires_at_ms,
        };
        self.writer.write(write).await.map(|_| ())
    }

    async fn request(&self, id: &MessageId) -> Result<StoredRequest> {
        let op = "read a request";
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM otm_requests WHERE id = ?1 AND expires_at_ms > ?2"
        ))
        .bind(&id.as_bytes()[..])
        .bind(unix_ms(SystemTime::now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(op, e))?
        .ok_or(StoreError::NotFound)?;
        stored_request(&row, op)
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&self.opts, &answer)?;
        let write = Write::Answer { id: *id, answer };
        self.writer.write(write).await.map(|_| ())
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        match self.writer.write(Write::Withdraw { id: *id }).await? {
            Written::Burn(true) => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }
}

/// Put-if-absent of a request (an expired one counts as absent) and its
/// `request.created` event.
pub(super) async fn put(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    request: NewRequest,
    expires_at_ms: i64,
    now: i64,
) -> Result<()> {
    let op = "store a request";
    let creator = request.creator.as_ref().map(ToString::to_string);
    let done = sqlx::query(
        "INSERT INTO otm_requests
             (id, note, answer, access, verifier, expires_at_ms, answered_at_ms, reference,
              creator)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET note = excluded.note, answer = excluded.answer,
             access = excluded.access, verifier = excluded.verifier,
             expires_at_ms = excluded.expires_at_ms, answered_at_ms = NULL,
             reference = excluded.reference, creator = excluded.creator
         WHERE otm_requests.expires_at_ms <= ?9",
    )
    .bind(&id.as_bytes()[..])
    .bind(&request.note)
    .bind(&request.answer.as_bytes()[..])
    .bind(&request.access.as_bytes()[..])
    .bind(&request.verifier.as_bytes()[..])
    .bind(expires_at_ms)
    .bind(&request.reference)
    .bind(&creator)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(op, e))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    if opts.events {
        let origin = (creator.as_deref(), request.reference.as_deref());
        outbox::record(conn, EventKind::RequestCreated, id, origin, now).await?;
    }
    Ok(())
}

/// Marks a live, unanswered request answered and stores the answer as its
/// message (with `request.answered` instead of `message.created`).
pub(super) async fn answer(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    answer: Vec<u8>,
    now: i64,
) -> Result<()> {
    let op = "answer a request";
    let marked = sqlx::query(&format!(
        "UPDATE otm_requests SET answered_at_ms = ?2
         WHERE id = ?1 AND expires_at_ms > ?2 AND answered_at_ms IS NULL
         RETURNING {REQUEST_COLUMNS}"
    ))
    .bind(&id.as_bytes()[..])
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(op, e))?;
    let Some(row) = marked else {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM otm_requests WHERE id = ?1 AND expires_at_ms > ?2",
        )
        .bind(&id.as_bytes()[..])
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
        return Err(match live {
            0 => StoreError::NotFound,
            _ => StoreError::AlreadyAnswered,
        });
    };
    let stored = stored_request(&row, op)?.request;
    let message = NewMessage {
        envelope: answer,
        verifier: stored.verifier,
        access: stored.access,
        expires_at: stored.expires_at,
        manage: Some(ANSWER_MANAGE),
        creator: stored.creator,
        reference: stored.reference,
    };
    let expires_at_ms = unix_ms(message.expires_at);
    // A message row under the ID can only be this request's answer, which
    // a request that was not yet marked does not have: a conflict here
    // rolls the savepoint (and the mark) back.
    writer::put(
        conn,
        opts,
        id,
        message,
        expires_at_ms,
        now,
        EventKind::RequestAnswered,
    )
    .await
    .map_err(|e| match e {
        StoreError::Conflict => StoreError::AlreadyAnswered,
        other => other,
    })
}

/// Removes a live request and burns its answer if not yet taken; whether
/// there was one.
pub(super) async fn withdraw(
    conn: &mut SqliteConnection,
    opts: &StoreOptions,
    id: &MessageId,
    now: i64,
) -> Result<bool> {
    let op = "withdraw a request";
    let gone = sqlx::query("DELETE FROM otm_requests WHERE id = ?1 AND expires_at_ms > ?2")
        .bind(&id.as_bytes()[..])
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
    if gone.rows_affected() == 0 {
        return Ok(false);
    }
    let burned = sqlx::query(
        "DELETE FROM otm_messages WHERE id = ?1
         RETURNING failed_attempts, expires_at_ms, reference, creator",
    )
    .bind(&id.as_bytes()[..])
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(op, e))?;
    if let (Some(row), true) = (burned, opts.events) {
        let failures: i64 = row.try_get(0).map_err(|e| classify(op, e))?;
        let expires: i64 = row.try_get(1).map_err(|e| classify(op, e))?;
        let reference: Option<String> = row.try_get(2).map_err(|e| classify(op, e))?;
        let creator: Option<String> = row.try_get(3).map_err(|e| classify(op, e))?;
        if failures < i64::from(opts.max_failed_attempts) && expires > now {
            let origin = (creator.as_deref(), reference.as_deref());
            outbox::record(conn, EventKind::Burned, id, origin, now).await?;
        }
    }
    sqlx::query("DELETE FROM otm_receipts WHERE id = ?1")
        .bind(&id.as_bytes()[..])
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(op, e))?;
    Ok(true)
}

/// Deletes expired requests; how many.
pub(super) async fn purge(pool: &sqlx::SqlitePool, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM otm_requests WHERE expires_at_ms <= ?1")
        .bind(now)
        .execute(pool)
        .await
        .map_err(|e| classify("purge expired requests", e))?;
    Ok(done.rows_affected())
}
