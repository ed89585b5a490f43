//! Several messages stored together, all or none: one create for several
//! recipients (the same secret for five guests, each with a link, a key
//! and a receipt of their own).
//!
//! Each member is an ordinary message, taken, burned and reported on its
//! own; what this capability adds is that the members are stored in one
//! atomic step, so that nobody ever sees (or opens) part of a group whose
//! create failed.

use async_trait::async_trait;
use otm_core::MessageId;

use super::{NewMessage, Result};

/// The most messages one group holds.
pub const MAX_GROUP: usize = 20;

/// Storing a group of messages all or none, for the stores that can (see
/// [`BlobStore::groups`](crate::BlobStore::groups)). The contract:
///
/// - **put_group** stores every message under its ID, or none of them:
///   when any ID has a live message, [`StoreError::Conflict`](crate::StoreError::Conflict) and nothing
///   is stored; when any member is refused as [`BlobStore::put`](crate::BlobStore::put) would
///   refuse it ([`StoreError::TooLarge`](crate::StoreError::TooLarge), [`StoreError::Invalid`](crate::StoreError::Invalid)), nothing is
///   stored; 1 to [`MAX_GROUP`] messages with distinct IDs, else
///   [`StoreError::Invalid`](crate::StoreError::Invalid). With events on, each member's
///   `message.created` is recorded in the same step. A failure of the
///   backend leaves nothing stored.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Stores every message, or none.
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()>;
}

/// Checks shared by every backend's `put_group`: the count, distinct IDs
/// and each member as `put` checks it; the expiry (Unix ms) and the time
/// to live of each.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
pub(crate) fn check_group(
    opts: &super::StoreOptions,
    messages: &[(MessageId, NewMessage)],
) -> Result<Vec<(i64, std::time::Duration)>> {
    use super::StoreError;
    if messages.is_empty() || messages.len() > MAX_GROUP {
        return Err(StoreError::Invalid {
            reason: "a group holds 1 to 20 messages",
        });
    }
    let mut ids: Vec<&MessageId> = messages.iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != messages.len() {
        return Err(StoreError::Invalid {
            reason: "the messages of a group have distinct IDs",
        });
    }
    messages
        .iter()
        .map(|(_, message)| super::check_new(opts, message))
        .collect()
}
