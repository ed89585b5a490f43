//! [`EventKind`]: what happened to a message, as events, webhooks and
//! stores name it.

use std::fmt;

/// What happened to a message. New kinds may come in later versions
/// (`#[non_exhaustive]`); a receiver that meets a kind it does not know
/// takes it and ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// It was stored.
    Created,
    /// Its reader opened it (it is gone).
    Opened,
    /// Its sender burned it unread.
    Burned,
    /// Too many wrong passphrases destroyed it unread.
    Destroyed,
    /// It expired unread (reported by stores that remove expired messages
    /// themselves, when they do).
    Expired,
    /// A request for a secret was stored (the event's message ID is the
    /// request's).
    RequestCreated,
    /// A request was answered: its answer is stored under the request's ID
    /// and is then opened (or burned, destroyed, expired) like a message.
    RequestAnswered,
}

impl EventKind {
    /// Every kind, in code order.
    pub const ALL: [EventKind; 7] = [
        EventKind::Created,
        EventKind::Opened,
        EventKind::Burned,
        EventKind::Destroyed,
        EventKind::Expired,
        EventKind::RequestCreated,
        EventKind::RequestAnswered,
    ];

    /// The kind's name in webhooks and logs: `message.created`,
    /// `message.opened`, `message.burned`, `message.destroyed`,
    /// `message.expired`, `request.created`, `request.answered`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "message.created",
            EventKind::Opened => "message.opened",
            EventKind::Burned => "message.burned",
            EventKind::Destroyed => "message.destroyed",
            EventKind::Expired => "message.expired",
            EventKind::RequestCreated => "request.created",
            EventKind::RequestAnswered => "request.answered",
        }
    }

    /// The kind a name ([`EventKind::as_str`]) names, if it is one of these.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The number stores keep for the kind (stable: stored data depends on
    /// it).
    pub fn code(self) -> i32 {
        match self {
            EventKind::Created => 1,
            EventKind::Opened => 2,
            EventKind::Burned => 3,
            EventKind::Destroyed => 4,
            EventKind::Expired => 5,
            EventKind::RequestCreated => 6,
            EventKind::RequestAnswered => 7,
        }
    }

    /// The kind of a stored number ([`EventKind::code`]).
    pub fn from_code(code: i64) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| i64::from(k.code()) == code)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
