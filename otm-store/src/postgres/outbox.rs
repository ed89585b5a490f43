//! The PostgreSQL store's event outbox (`otm_events`, migration 6): events
//! are inserted by the statement of the change they report; dispatchers on
//! any number of replicas lease due rows with `FOR UPDATE SKIP LOCKED`, so
//! no two of them get the same row while its lease holds.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::contract::events::parse_handle;
use crate::sql::{classify, leased_events};
use crate::{unix_ms, Event, Outbox, PostgresStore, Result};

#[async_trait]
impl Outbox for PostgresStore {
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        let now = unix_ms(SystemTime::now());
        let until = crate::contract::events::lease_end(now, lease);
        let rows = sqlx::query(&format!(
            "UPDATE {e} SET due_ms = $2
             WHERE seq IN (SELECT seq FROM {e} WHERE due_ms <= $1 ORDER BY seq LIMIT $3
                           FOR UPDATE SKIP LOCKED)
             RETURNING seq, kind, message, reference, at_ms, attempts, due_ms, creator",
            e = self.events
        ))
        .bind(now)
        .bind(until)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| classify("lease events", e))?;
        leased_events(&rows)
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        let (seq, _) = parse_handle(event)?;
        sqlx::query(&format!("DELETE FROM {} WHERE seq = $1", self.events))
            .bind(seq)
            .execute(self.pool())
            .await
            .map_err(|e| classify("mark an event delivered", e))?;
        Ok(())
    }

    async fn events_delivered(&self, events: &[Event]) -> Result<()> {
        let seqs = events
            .iter()
            .map(|e| parse_handle(e).map(|(seq, _)| seq))
            .collect::<Result<Vec<i64>>>()?;
        sqlx::query(&format!("DELETE FROM {} WHERE seq = ANY($1)", self.events))
            .bind(seqs)
            .execute(self.pool())
            .await
            .map_err(|e| classify("mark events delivered", e))?;
        Ok(())
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (seq, lease) = parse_handle(event)?;
        // Only while the caller's lease holds.
        sqlx::query(&format!(
            "UPDATE {} SET attempts = attempts + 1, due_ms = $3 WHERE seq = $1 AND due_ms = $2",
            self.events
        ))
        .bind(seq)
        .bind(lease)
        .bind(unix_ms(retry_at))
        .execute(self.pool())
        .await
        .map_err(|e| classify("reschedule an event", e))?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>> {
        let rows = sqlx::query(&format!(
            "SELECT seq, kind, message, reference, at_ms, attempts, due_ms, creator FROM {}
             WHERE due_ms >= $1 ORDER BY seq LIMIT $2",
            self.events
        ))
        .bind(crate::DEAD_LETTER_MS)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| classify("list dead letters", e))?;
        leased_events(&rows)
    }

    async fn replay_dead_letters(&self) -> Result<u64> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET due_ms = $1, attempts = 0 WHERE due_ms >= $2",
            self.events
        ))
        .bind(unix_ms(SystemTime::now()))
        .bind(crate::DEAD_LETTER_MS)
        .execute(self.pool())
        .await
        .map_err(|e| classify("replay dead letters", e))?;
        Ok(done.rows_affected())
    }
}
