//! Events: what happened to a message, for the host to act on ("opened"
//! moves a ticket, revokes a credential, tells the sender).
//!
//! A store with [`StoreOptions::events`](crate::StoreOptions::events) on
//! records each event **in the same atomic step as the change it reports**
//! (its outbox): a message is never opened without its `opened` event being
//! recorded, even if the process dies right after. (On SQLite and
//! PostgreSQL, `destroyed` is recorded by the removal that follows the
//! wrong proof that used up the attempts, or by the purge if that removal
//! failed.) A dispatcher then
//! [leases](Outbox::lease_events) due events, delivers them, and marks each
//! [delivered](Outbox::event_delivered) or [failed](Outbox::event_failed).
//! Delivery is at least once: an event whose lease runs out before it is
//! marked is leased again, so a receiver de-duplicates by [`Event::id`].
//!
//! An event never carries content, keys, proofs, verifiers or tokens: only
//! the kind, the message ID, its creator, the sender's reference and the
//! time.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::MessageId;

use super::Result;

/// What happened to a message (the one type otm-core defines for events
/// and webhooks alike).
pub use otm_core::EventKind;

/// One event, as an outbox hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// To which message.
    pub message: MessageId,
    /// Who created the message, as it was stored ([`NewMessage::creator`](crate::NewMessage::creator)).
    pub creator: Option<otm_core::Creator>,
    /// The sender's reference given at create, if any.
    pub reference: Option<String>,
    /// When it happened (the clock of the process that made the change,
    /// millisecond precision).
    pub at: SystemTime,
    /// Deliveries tried and failed before this lease.
    pub attempts: u32,
    /// The outbox's own handle, for [`Outbox::event_delivered`] and
    /// [`Outbox::event_failed`].
    pub handle: EventHandle,
}

impl Event {
    /// A stable, unique ID: `evt_<message ID>_<kind>` (`evt_…_opened`,
    /// and for a request's own events `evt_…_request_created`,
    /// `evt_…_request_answered`). A message (or request) has at most one
    /// event of each kind, and its ID is 128 random bits, so a receiver can
    /// de-duplicate by this ID across retries, leases and replicas.
    pub fn id(&self) -> String {
        let kind = self.kind.as_str();
        let kind = match kind.strip_prefix("message.") {
            Some(short) => short.to_owned(),
            None => kind.replace('.', "_"),
        };
        format!("evt_{}_{kind}", self.message)
    }
}

/// An outbox's handle of one stored event (opaque).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHandle(pub(crate) String);

impl EventHandle {
    /// A handle of the outbox's own making (an outbox written outside this
    /// crate puts whatever it needs to find and check the event here: its
    /// number and lease, say).
    pub fn new(handle: impl Into<String>) -> Self {
        EventHandle(handle.into())
    }

    /// The handle's text, for the outbox that made it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The events a store recorded, for a dispatcher ([`BlobStore::outbox`](crate::BlobStore::outbox)).
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Up to `max` events that are due, oldest first (on Redis Cluster,
    /// within each bucket: a message's events share one), each leased to the
    /// caller for `lease`: until the lease runs out (or the event is marked),
    /// no other caller gets it, here or on another replica. Lease times are
    /// the callers' clocks: replicas whose clocks differ by more than a
    /// lease may deliver an event twice (still at least once).
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>>;

    /// The event was delivered: it leaves the outbox.
    async fn event_delivered(&self, event: &Event) -> Result<()>;

    /// The events were delivered: they all leave the outbox, in one round
    /// trip where the backend can (SQLite, PostgreSQL, Redis: one per
    /// bucket); a dispatcher acknowledges what finished together. The
    /// default marks them one by one with
    /// [`event_delivered`](Outbox::event_delivered). On an error some may
    /// have left and others not: those are leased and delivered again (at
    /// least once).
    async fn events_delivered(&self, events: &[Event]) -> Result<()> {
        for event in events {
            self.event_delivered(event).await?;
        }
        Ok(())
    }

    /// Delivering the event failed: it is due again at `retry_at`, with one
    /// more failed attempt counted.
    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()>;

    /// Delivering the event failed for the last time: it stays in the
    /// outbox as a dead letter (its last attempt counted), never leased
    /// again until [`replay_dead_letters`](Outbox::replay_dead_letters).
    /// Only while the caller's lease holds, like
    /// [`event_failed`](Outbox::event_failed), which it is with the due
    /// time [`DEAD_LETTER_MS`].
    async fn event_dead(&self, event: &Event) -> Result<()> {
        self.event_failed(event, super::from_unix_ms(DEAD_LETTER_MS))
            .await
    }

    /// Up to `max` dead letters, oldest first (on Redis Cluster, bucket by
    /// bucket), with their failed attempts; listing leases nothing.
    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>>;

    /// Makes every dead letter due again now, its attempts counted from 0;
    /// how many.
    async fn replay_dead_letters(&self) -> Result<u64>;
}

/// The due time (Unix ms) of a dead letter: 2^53, exactly representable as
/// a double (Redis scores) and past any real due time (the year 287396).
pub const DEAD_LETTER_MS: i64 = 1 << 53;

/// `(seq, lease_until_ms)` from the handle of `event` when it has the form
/// `seq.lease_until_ms`, the form the SQL and memory outboxes use.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
pub(crate) fn parse_handle(event: &Event) -> super::Result<(i64, i64)> {
    event
        .handle
        .0
        .split_once('.')
        .and_then(|(seq, until)| Some((seq.parse().ok()?, until.parse().ok()?)))
        .ok_or(super::StoreError::Invalid {
            reason: "not an event handle of this store",
        })
}

/// The end (Unix ms) of a lease of `lease` taken at `now_ms`.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
pub(crate) fn lease_end(now_ms: i64, lease: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}
