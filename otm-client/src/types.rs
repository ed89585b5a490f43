//! What the client's calls take and give back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otm_core::api::{MessageState, Status};
use otm_core::{Link, ManageLink, ManageToken, MessageId, Passphrase};

use crate::{Error, Result};

/// Options of [`Client::send`](crate::Client::send).
#[derive(Clone, Copy, Debug, Default)]
pub struct SendOptions<'a> {
    pub(crate) ttl: Option<Duration>,
    pub(crate) passphrase: Option<&'a Passphrase>,
}

impl<'a> SendOptions<'a> {
    /// The server's default expiry, no passphrase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delete the message unread after `ttl` (whole seconds, at least 1; at
    /// most what the server allows, or the send fails with `ttl_too_long`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Also protect the message with a passphrase (the reader needs it
    /// besides the link).
    pub fn passphrase(mut self, passphrase: &'a Passphrase) -> Self {
        self.passphrase = Some(passphrase);
        self
    }
}

/// A message [`Client::send`](crate::Client::send) stored.
#[derive(Debug)]
pub struct Sent {
    /// The link to share: it holds the key in its fragment.
    pub link: Link,
    /// The sender's private status link (status and burn).
    pub manage_link: ManageLink,
    /// When the server deletes the message unread.
    pub expires_at: SystemTime,
}

/// An envelope [`Client::create`](crate::Client::create) stored.
#[derive(Debug)]
pub struct Stored {
    /// The message's ID.
    pub id: MessageId,
    /// The sender's management token (status and burn).
    pub manage_token: ManageToken,
    /// When the server deletes the message unread.
    pub expires_at: SystemTime,
}

/// A message's status, as its sender sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Waiting, opened, burned or expired.
    pub state: MessageState,
    /// The message's expiry; the receipt lives until then.
    pub expires_at: SystemTime,
    /// When it was opened or burned, where the server knows it.
    pub changed_at: Option<SystemTime>,
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
        })
    }
}
