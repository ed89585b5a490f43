//! What sending a message takes and gives back, wherever it is sealed: in
//! a client of the HTTP API (`otm-client`) or in the server's own process
//! (`otm_http::Service`).

use std::time::{Duration, SystemTime};

use crate::{Link, ManageLink, ManageToken, MessageId, Passphrase};

/// Options of a send.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SendOptions<'a> {
    /// Delete the message unread after this long (whole seconds, at least
    /// 1; at most what the server allows). `None`: the server's default.
    pub ttl: Option<Duration>,
    /// Also protect the message with this passphrase: the reader needs it
    /// besides the link.
    pub passphrase: Option<&'a Passphrase>,
    /// The sender's own opaque reference for the message (a user or ticket
    /// ID, 1 to 256 bytes): kept by the server and shown to the sender with
    /// the status, never to a reader. Not secret, but not encrypted either:
    /// put nothing in it that the server may not know.
    pub reference: Option<&'a str>,
}

impl<'a> SendOptions<'a> {
    /// The server's default expiry, no passphrase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SendOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`SendOptions::passphrase`].
    pub fn passphrase(mut self, passphrase: &'a Passphrase) -> Self {
        self.passphrase = Some(passphrase);
        self
    }

    /// Sets [`SendOptions::reference`].
    pub fn reference(mut self, reference: &'a str) -> Self {
        self.reference = Some(reference);
        self
    }
}

/// A message that was sealed and stored.
#[derive(Debug)]
pub struct Sent {
    /// The link to share: it holds the key in its fragment.
    pub link: Link,
    /// The sender's private status link (status and burn).
    pub manage_link: ManageLink,
    /// When the server deletes the message unread.
    pub expires_at: SystemTime,
}

/// One message sealed for several recipients and stored as a group: one
/// share link per recipient (each its own key) and the sender's group
/// status link (FORMAT.md §9.6).
#[derive(Debug)]
pub struct SentGroup {
    /// The share links, one per recipient, in order.
    pub links: Vec<Link>,
    /// The group status link: each recipient's state by label; burn each
    /// or all.
    pub group_link: crate::GroupLink,
    /// When the server deletes the unopened ones.
    pub expires_at: SystemTime,
}

/// An envelope that was stored (sealed by someone else).
#[derive(Debug)]
pub struct Stored {
    /// The message's ID.
    pub id: MessageId,
    /// The sender's management token (status and burn).
    pub manage_token: ManageToken,
    /// When the server deletes the message unread.
    pub expires_at: SystemTime,
}
