//! What the client's calls take and give back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otm_core::api::{MessageState, Status};

use crate::{Error, Result};

/// A message's status, as its sender sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Waiting, opened, burned or expired.
    pub state: MessageState,
    /// The message's expiry; the receipt lives until then.
    pub expires_at: SystemTime,
    /// When it was opened or burned, where the server knows it.
    pub changed_at: Option<SystemTime>,
    /// The sender's reference given at create, if any.
    pub reference: Option<String>,
}

impl Receipt {
    pub(crate) fn from_wire(status: &Status) -> Result<Receipt> {
        let changed_at = match &status.changed_at {
            None => None,
            Some(t) => Some(humantime::parse_rfc3339(t).map_err(|e| Error::Unexpected {
                status: 200,
                detail: format!("changed_at {t:?} is not RFC 3339: {e}"),
            })?),
        };
        Ok(Receipt {
            state: status.state,
            expires_at: UNIX_EPOCH + Duration::from_secs(status.expires_at_unix),
            changed_at,
            reference: status.reference.clone(),
        })
    }
}
