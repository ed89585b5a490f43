//! What the two SQL backends share: error classification and reading a
//! message or receipt row into a [`MessageStatus`].

use otm_core::ClaimVerifier;

use crate::{from_unix_ms, MessageState, MessageStatus, StoreError};

/// Receipt states as stored.
pub(crate) const OPENED: i16 = 1;
pub(crate) const BURNED: i16 = 2;

pub(crate) fn verifier_from(bytes: &[u8]) -> Option<ClaimVerifier> {
    <[u8; 32]>::try_from(bytes)
        .ok()
        .map(ClaimVerifier::from_bytes)
}

/// The status of a message row: burned once the attempts are used up (even
/// before the row is removed), expired past its expiry, waiting otherwise.
pub(crate) fn message_status(
    expires_at_ms: i64,
    failures: i64,
    manage: Option<&[u8]>,
    max_failed_attempts: u32,
    now: i64,
) -> MessageStatus {
    let state = if failures >= i64::from(max_failed_attempts) {
        MessageState::Burned
    } else if expires_at_ms <= now {
        MessageState::Expired
    } else {
        MessageState::Waiting
    };
    MessageStatus {
        state,
        expires_at: from_unix_ms(expires_at_ms),
        changed_at: None,
        manage: manage.and_then(verifier_from),
    }
}

/// The status a receipt row records.
pub(crate) fn receipt_status(
    state: i16,
    changed_at_ms: i64,
    expires_at_ms: i64,
    manage: &[u8],
) -> MessageStatus {
    MessageStatus {
        state: if state == OPENED {
            MessageState::Opened
        } else {
            MessageState::Burned
        },
        expires_at: from_unix_ms(expires_at_ms),
        changed_at: Some(from_unix_ms(changed_at_ms)),
        manage: verifier_from(manage),
    }
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
            // serialization failure/deadlock, 57014 statement timeout. SQLite: 5 BUSY, 6 LOCKED
            // (with extended codes 261, 517, 262).
            code.starts_with("08")
                || code == "57014"
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || matches!(code.as_ref(), "5" | "6" | "261" | "517" | "262")
        }
        _ => false,
    };
    if retryable {
        StoreError::Unavailable {
            op,
            source: Box::new(err),
        }
    } else {
        StoreError::Backend {
            op,
            source: Box::new(err),
        }
    }
}
