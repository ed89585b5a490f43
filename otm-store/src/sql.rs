//! What the two SQL backends share: error classification.

use crate::StoreError;

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
