//! What the two SQL backends share: error classification and reading a
//! message or receipt row into a [`MessageStatus`].

use otm_core::{AccessVerifier, AnswerVerifier, ClaimVerifier, ManageVerifier, MessageId};

use crate::{
    creator_from, from_unix_ms, Event, EventHandle, EventKind, MessageState, MessageStatus,
    NewRequest, Result, StoreError, StoredRequest,
};

/// The columns [`stored_request`] reads, in its order.
pub(crate) const REQUEST_COLUMNS: &str =
    "note, answer, access, verifier, expires_at_ms, answered_at_ms, reference, creator";

/// Reads a request row ([`REQUEST_COLUMNS`]).
pub(crate) fn stored_request<R>(row: &R, op: &'static str) -> Result<StoredRequest>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bytes32 = |i: usize| -> Result<[u8; 32]> {
        let bytes: Vec<u8> = row.try_get(i).map_err(|e| classify(op, e))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Backend {
            op,
            source: "a request row has a malformed verifier".into(),
        })
    };
    let note: Vec<u8> = row.try_get(0).map_err(|e| classify(op, e))?;
    let expires_at_ms: i64 = row.try_get(4).map_err(|e| classify(op, e))?;
    let answered_at_ms: Option<i64> = row.try_get(5).map_err(|e| classify(op, e))?;
    let reference: Option<String> = row.try_get(6).map_err(|e| classify(op, e))?;
    let creator: Option<String> = row.try_get(7).map_err(|e| classify(op, e))?;
    Ok(StoredRequest {
        request: NewRequest {
            note,
            answer: AnswerVerifier::from_bytes(bytes32(1)?),
            access: AccessVerifier::from_bytes(bytes32(2)?),
            verifier: ClaimVerifier::from_bytes(bytes32(3)?),
            expires_at: from_unix_ms(expires_at_ms),
            creator: creator_from(creator.as_deref()),
            reference,
        },
        answered_at: answered_at_ms.map(from_unix_ms),
    })
}

/// Receipt states as stored.
pub(crate) const OPENED: i16 = 1;
pub(crate) const BURNED: i16 = 2;

/// Which message row a removal deletes, and the receipt it leaves (when
/// the message has a manager). Each is its own statement in each SQL store.
#[derive(Clone, Copy)]
pub(crate) enum Removal {
    /// A reader's take: the live message whose access and claim verifiers
    /// match. Receipt: opened.
    Take {
        /// `SHA-256` of the presented claim proof.
        verifier: ClaimVerifier,
        /// `SHA-256` of the presented access proof.
        access: AccessVerifier,
    },
    /// The sender's burn: the live message, unread. Receipt: burned.
    Burn,
    /// The wrong proof that used up the attempts already made the row dead
    /// (every statement refuses it); this frees it. Receipt: burned.
    Spent,
}

impl Removal {
    /// The receipt state a removal leaves.
    pub(crate) fn receipt_state(self) -> i16 {
        match self {
            Removal::Take { .. } => OPENED,
            Removal::Burn | Removal::Spent => BURNED,
        }
    }
}

pub(crate) fn manage_from(bytes: &[u8]) -> Option<ManageVerifier> {
    <[u8; 32]>::try_from(bytes)
        .ok()
        .map(ManageVerifier::from_bytes)
}

/// Reads `(expires_at_ms, failed_attempts, manage, reference, creator)` from a message row: its
/// status is burned once the attempts are used up (even before the row is
/// removed), expired past its expiry, waiting otherwise.
pub(crate) fn message_status<R>(
    row: &R,
    op: &'static str,
    max_failed_attempts: u32,
    now: i64,
) -> Result<MessageStatus>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let expires_at_ms: i64 = row.try_get(0).map_err(|e| classify(op, e))?;
    let failures: i64 = row.try_get(1).map_err(|e| classify(op, e))?;
    let manage: Option<Vec<u8>> = row.try_get(2).map_err(|e| classify(op, e))?;
    let reference: Option<String> = row.try_get(3).map_err(|e| classify(op, e))?;
    let creator: Option<String> = row.try_get(4).map_err(|e| classify(op, e))?;
    let state = if failures >= i64::from(max_failed_attempts) {
        MessageState::Burned
    } else if expires_at_ms <= now {
        MessageState::Expired
    } else {
        MessageState::Waiting
    };
    Ok(MessageStatus {
        state,
        expires_at: from_unix_ms(expires_at_ms),
        changed_at: None,
        manage: manage.as_deref().and_then(manage_from),
        creator: creator_from(creator.as_deref()),
        reference,
    })
}

/// Reads `(state, changed_at_ms, expires_at_ms, manage, reference, creator)` from a receipt row:
/// the status it records.
pub(crate) fn receipt_status<R>(row: &R, op: &'static str) -> Result<MessageStatus>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i16: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: i16 = row.try_get(0).map_err(|e| classify(op, e))?;
    let changed_at_ms: i64 = row.try_get(1).map_err(|e| classify(op, e))?;
    let expires_at_ms: i64 = row.try_get(2).map_err(|e| classify(op, e))?;
    let manage: Vec<u8> = row.try_get(3).map_err(|e| classify(op, e))?;
    let reference: Option<String> = row.try_get(4).map_err(|e| classify(op, e))?;
    let creator: Option<String> = row.try_get(5).map_err(|e| classify(op, e))?;
    Ok(MessageStatus {
        state: if state == OPENED {
            MessageState::Opened
        } else {
            MessageState::Burned
        },
        expires_at: from_unix_ms(expires_at_ms),
        changed_at: Some(from_unix_ms(changed_at_ms)),
        manage: manage_from(&manage),
        creator: creator_from(creator.as_deref()),
        reference,
    })
}

/// The event a removal reports.
pub(crate) fn removal_event(removal: Removal) -> EventKind {
    match removal {
        Removal::Take { .. } => EventKind::Opened,
        Removal::Burn => EventKind::Burned,
        Removal::Spent => EventKind::Destroyed,
    }
}

/// Reads `(seq, kind, message, reference, at_ms, attempts, due_ms, creator)` from an
/// outbox row just leased (its `due_ms` is the lease's end): the event,
/// with its `seq` for ordering.
pub(crate) fn event_from_row<R>(row: &R, op: &'static str) -> Result<(i64, Event)>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get(0).map_err(|e| classify(op, e))?;
    let kind: i32 = row.try_get(1).map_err(|e| classify(op, e))?;
    let message: Vec<u8> = row.try_get(2).map_err(|e| classify(op, e))?;
    let reference: Option<String> = row.try_get(3).map_err(|e| classify(op, e))?;
    let at_ms: i64 = row.try_get(4).map_err(|e| classify(op, e))?;
    let attempts: i32 = row.try_get(5).map_err(|e| classify(op, e))?;
    let until: i64 = row.try_get(6).map_err(|e| classify(op, e))?;
    let creator: Option<String> = row.try_get(7).map_err(|e| classify(op, e))?;
    let corrupt = |what: &'static str| StoreError::Backend {
        op,
        source: what.into(),
    };
    let message = <[u8; 16]>::try_from(message.as_slice())
        .map(MessageId::from_bytes)
        .map_err(|_| corrupt("an event row has a malformed message ID"))?;
    Ok((
        seq,
        Event {
            kind: EventKind::from_code(i64::from(kind))
                .ok_or_else(|| corrupt("an event row has an unknown kind"))?,
            message,
            creator: creator_from(creator.as_deref()),
            reference,
            at: from_unix_ms(at_ms),
            attempts: u32::try_from(attempts).unwrap_or(0),
            handle: EventHandle(format!("{seq}.{until}")),
        },
    ))
}

/// Events just leased (rows of [`event_from_row`]'s form), oldest first.
pub(crate) fn leased_events<R>(rows: &[R]) -> Result<Vec<Event>>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    // A row that does not decode (written by hand, or by a newer otm) is
    // logged and left out, so that it cannot hold back the others.
    let mut events: Vec<(i64, Event)> = rows
        .iter()
        .filter_map(|row| match event_from_row(row, "lease events") {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::error!(error = %e.with_sources(), "an outbox row is unreadable; skipped");
                None
            }
        })
        .collect();
    events.sort_by_key(|(seq, _)| *seq);
    Ok(events.into_iter().map(|(_, e)| e).collect())
}

/// Sorts a driver error into retryable (`Unavailable`) or not (`Backend`).
pub(crate) fn classify(op: &'static str, err: sqlx::Error) -> StoreError {
    let retryable = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: class 08 connection exceptions, 53 insufficient
            // resources, 57P0x shutdown/cannot connect now, 40001/40P01
            // serialization failure/deadlock, 57014 statement timeout,
            // 25006 read-only transaction (a primary that became a standby
            // in a switchover). SQLite: 5 BUSY, 6 LOCKED
            // (with extended codes 261, 517, 262).
            code == "25006"
                || code.starts_with("08")
                || code == "57014"
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || matches!(code.as_ref(), "5" | "6" | "261" | "517" | "262")
        }
        _ => false,
    };
    StoreError::driver(op, retryable, err)
}
