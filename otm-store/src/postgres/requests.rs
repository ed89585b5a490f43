//! The PostgreSQL store's requests for a secret (`otm_requests`,
//! migration 10). Each change is one statement: answering marks the
//! request with an `UPDATE … WHERE answered_at_ms IS NULL` (concurrent
//! answers wait for the row lock, then find it answered and change
//! nothing) and, in the same statement, stores the answer as a message row
//! and records its event.

use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::MessageId;

use super::REPLACE_DEAD;
use crate::sql::{classify, stored_request, REQUEST_COLUMNS};
use crate::{
    check_answer, check_request, unix_ms, EventKind, NewRequest, PostgresStore, RequestStore,
    Result, StoreError, StoredRequest, ANSWER_MANAGE,
};

#[async_trait]
impl RequestStore for PostgresStore {
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()> {
        let (expires_at_ms, _) = check_request(&request)?;
        let now = unix_ms(SystemTime::now());
        let stored: i64 = sqlx::query_scalar(&format!(
            "WITH stored AS (
                 INSERT INTO {q} AS q
                     (id, note, answer, access, verifier, expires_at_ms, answered_at_ms,
                      reference, creator)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET note = excluded.note, answer = excluded.answer,
                     access = excluded.access, verifier = excluded.verifier,
                     expires_at_ms = excluded.expires_at_ms, answered_at_ms = NULL,
                     reference = excluded.reference, creator = excluded.creator
                 WHERE q.expires_at_ms <= $9
                 RETURNING id, reference, creator),
             event AS (
                 INSERT INTO {e} (kind, message, reference, at_ms, attempts, due_ms, creator)
                 SELECT $10, id, reference, $9, 0, $9, creator FROM stored WHERE $11)
             SELECT count(*) FROM stored",
            q = self.requests,
            e = self.events,
        ))
        .bind(&id.as_bytes()[..])
        .bind(&request.note)
        .bind(&request.answer.as_bytes()[..])
        .bind(&request.access.as_bytes()[..])
        .bind(&request.verifier.as_bytes()[..])
        .bind(expires_at_ms)
        .bind(&request.reference)
        .bind(request.creator.as_ref().map(ToString::to_string))
        .bind(now)
        .bind(EventKind::RequestCreated.code())
        .bind(self.opts.events)
        .fetch_one(self.pool())
        .await
        .map_err(|e| classify("store a request", e))?;
        if stored == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn request(&self, id: &MessageId) -> Result<StoredRequest> {
        let op = "read a request";
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM {q} WHERE id = $1 AND expires_at_ms > $2",
            q = self.requests
        ))
        .bind(&id.as_bytes()[..])
        .bind(unix_ms(SystemTime::now()))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| classify(op, e))?
        .ok_or(StoreError::NotFound)?;
        stored_request(&row, op)
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&self.opts, &answer)?;
        let now = unix_ms(SystemTime::now());
        // One statement: the mark (concurrent answers wait for the row lock
        // and then find the request marked), the answer's row, its event.
        // (A live message row under a request's ID can only be its answer,
        // which a marked request already has: the insert cannot conflict
        // without the update finding nothing.)
        let stored: i64 = sqlx::query_scalar(&format!(
            "WITH marked AS (
                 UPDATE {q} SET answered_at_ms = $5
                 WHERE id = $1 AND expires_at_ms > $5 AND answered_at_ms IS NULL
                 RETURNING id, access, verifier, expires_at_ms, reference, creator),
             stored AS (
                 INSERT INTO {t} AS m
                     (id, envelope, verifier, expires_at_ms, failed_attempts, manage, access,
                      reference, creator)
                 SELECT id, $2, verifier, expires_at_ms, 0, $3, access, reference, creator
                 FROM marked
                 {REPLACE_DEAD}
                 RETURNING id, reference, creator),
             event AS (
                 INSERT INTO {e} (kind, message, reference, at_ms, attempts, due_ms, creator)
                 SELECT $4, id, reference, $5, 0, $5, creator FROM stored WHERE $7),
             receipt AS (DELETE FROM {r} WHERE id IN (SELECT id FROM stored))
             SELECT count(*) FROM stored",
            q = self.requests,
            t = self.table(),
            e = self.events,
            r = self.receipts,
        ))
        .bind(&id.as_bytes()[..])
        .bind(&answer)
        .bind(&ANSWER_MANAGE.as_bytes()[..])
        .bind(EventKind::RequestAnswered.code())
        .bind(now)
        .bind(i64::from(self.opts.max_failed_attempts))
        .bind(self.opts.events)
        .fetch_one(self.pool())
        .await
        .map_err(|e| classify("answer a request", e))?;
        if stored > 0 {
            return Ok(());
        }
        // Nothing stored: answered already, or gone (expired, withdrawn).
        // Asked in a statement of its own, so that it sees what a
        // concurrent answer or withdrawal committed.
        let live: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {q} WHERE id = $1 AND expires_at_ms > $2",
            q = self.requests
        ))
        .bind(&id.as_bytes()[..])
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(|e| classify("answer a request", e))?;
        Err(match live {
            0 => StoreError::NotFound,
            _ => StoreError::AlreadyAnswered,
        })
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let op = "withdraw a request";
        let now = unix_ms(SystemTime::now());
        let key = &id.as_bytes()[..];
        let mut tx = self.pool().begin().await.map_err(|e| classify(op, e))?;
        // The request's row lock first: an answer in progress holds it
        // until it commits, so what follows sees its answer (each statement
        // takes a new snapshot), and an answer that comes later waits and
        // then finds no request.
        let locked: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT expires_at_ms FROM {q} WHERE id = $1 AND expires_at_ms > $2 FOR UPDATE",
            q = self.requests
        ))
        .bind(key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| classify(op, e))?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(&format!(
            "WITH burned AS (
                 DELETE FROM {t} WHERE id = $1
                 RETURNING id, reference, creator, failed_attempts, expires_at_ms),
             event AS (
                 INSERT INTO {e} (kind, message, reference, at_ms, attempts, due_ms, creator)
                 SELECT $3, id, reference, $2, 0, $2, creator FROM burned
                 WHERE $4 AND failed_attempts < $5 AND expires_at_ms > $2),
             receipt AS (DELETE FROM {r} WHERE id = $1)
             DELETE FROM {q} WHERE id = $1",
            q = self.requests,
            t = self.table(),
            e = self.events,
            r = self.receipts,
        ))
        .bind(key)
        .bind(now)
        .bind(EventKind::Burned.code())
        .bind(self.opts.events)
        .bind(i64::from(self.opts.max_failed_attempts))
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(op, e))?;
        tx.commit().await.map_err(|e| classify(op, e))
    }
}

impl PostgresStore {
    /// Deletes up to `batch` expired requests; how many.
    pub(super) async fn purge_requests(&self, batch: i64) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM {q} WHERE id IN
                 (SELECT id FROM {q} WHERE expires_at_ms <= $1 LIMIT $2)",
            q = self.requests
        ))
        .bind(unix_ms(SystemTime::now()))
        .bind(batch)
        .execute(self.pool())
        .await
        .map_err(|e| classify("purge expired requests", e))?;
        Ok(done.rows_affected())
    }
}
