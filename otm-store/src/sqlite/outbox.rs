//! The SQLite store's event outbox (`otm_events`, migration 6): events are
//! inserted in the transaction of the change they report; a dispatcher
//! leases due rows by moving their `due_ms` past the lease.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::MessageId;
use sqlx::SqliteConnection;

use super::writer::{Write, Written};
use crate::contract::events::parse_handle;
use crate::sql::{classify, leased_events};
use crate::{unix_ms, Event, EventKind, Outbox, Result, SqliteStore, StoreError};

/// Most events acknowledged by one statement (SQLite binds at most 32,766
/// values; a dispatcher's batch is far smaller).
const ACK_CHUNK: usize = 500;

/// Inserts one event on `conn` (inside the caller's transaction), due now.
pub(crate) async fn record(
    conn: &mut SqliteConnection,
    kind: EventKind,
    id: &MessageId,
    (creator, reference): (Option<&str>, Option<&str>),
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO otm_events (kind, message, reference, at_ms, attempts, due_ms, creator)
         VALUES (?1, ?2, ?3, ?4, 0, ?4, ?5)",
    )
    .bind(kind.code())
    .bind(&id.as_bytes()[..])
    .bind(reference)
    .bind(now)
    .bind(creator)
    .execute(conn)
    .await
    .map_err(|e| classify("record an event", e))?;
    Ok(())
}

/// Leases up to `max` events due at `now` until `until`, on `conn` (the
/// writer's transaction): one statement under SQLite's write lock, so no
/// two callers lease the same row.
pub(super) async fn lease(
    conn: &mut SqliteConnection,
    max: usize,
    now: i64,
    until: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "UPDATE otm_events SET due_ms = ?2
         WHERE seq IN (SELECT seq FROM otm_events WHERE due_ms <= ?1 ORDER BY seq LIMIT ?3)
         RETURNING seq, kind, message, reference, at_ms, attempts, due_ms, creator",
    )
    .bind(now)
    .bind(until)
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await
    .map_err(|e| classify("lease events", e))?;
    leased_events(&rows)
}

/// Deletes the delivered events `seqs` on `conn` (the writer's
/// transaction), one statement per [`ACK_CHUNK`].
pub(super) async fn delete_delivered(conn: &mut SqliteConnection, seqs: &[i64]) -> Result<()> {
    for chunk in seqs.chunks(ACK_CHUNK) {
        let sql = format!(
            "DELETE FROM otm_events WHERE seq IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(&sql);
        for seq in chunk {
            query = query.bind(*seq);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("mark events delivered", e))?;
    }
    Ok(())
}

#[async_trait]
impl Outbox for SqliteStore {
    // Leases and acknowledgements are writes: they go through the
    // group-commit writer with the puts and takes (one transaction and one
    // sync for all that is waiting), not beside it on the pool, where they
    // would wait for its lock.
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        match self.writer.write(Write::LeaseEvents { max, lease }).await? {
            Written::Events(events) => Ok(events),
            _ => Err(StoreError::Backend {
                op: "lease events",
                source: "the writer answered a lease with something else".into(),
            }),
        }
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        self.events_delivered(std::slice::from_ref(event)).await
    }

    async fn events_delivered(&self, events: &[Event]) -> Result<()> {
        let seqs = events
            .iter()
            .map(|e| parse_handle(e).map(|(seq, _)| seq))
            .collect::<Result<Vec<i64>>>()?;
        if !seqs.is_empty() {
            self.writer.write(Write::EventsDelivered { seqs }).await?;
        }
        Ok(())
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (seq, lease) = parse_handle(event)?;
        // Only while the caller's lease holds.
        sqlx::query(
            "UPDATE otm_events SET attempts = attempts + 1, due_ms = ?3
             WHERE seq = ?1 AND due_ms = ?2",
        )
        .bind(seq)
        .bind(lease)
        .bind(unix_ms(retry_at))
        .execute(self.pool())
        .await
        .map_err(|e| classify("reschedule an event", e))?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, kind, message, reference, at_ms, attempts, due_ms, creator FROM otm_events
             WHERE due_ms >= ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(crate::DEAD_LETTER_MS)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| classify("list dead letters", e))?;
        leased_events(&rows)
    }

    async fn replay_dead_letters(&self) -> Result<u64> {
        let done =
            sqlx::query("UPDATE otm_events SET due_ms = ?1, attempts = 0 WHERE due_ms >= ?2")
                .bind(unix_ms(SystemTime::now()))
                .bind(crate::DEAD_LETTER_MS)
                .execute(self.pool())
                .await
                .map_err(|e| classify("replay dead letters", e))?;
        Ok(done.rows_affected())
    }
}
