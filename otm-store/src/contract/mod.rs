//! The contract every store keeps: the [`BlobStore`] trait, what goes in
//! and comes out of it ([`NewMessage`], [`MessageStatus`],
//! [`StoreOptions`]), the one error type, the optional capabilities
//! ([`PurgeExpired`], [`QuotaCounter`], [`RateCounter`], and the event [`Outbox`] of
//! [`events`]), and the rules every backend applies the same way
//! (`check_new`, `wrong_proof`, times in Unix milliseconds). It names no
//! backend: the backends build on it.

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use otm_core::{
    AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageVerifier, MessageId,
    MAX_ENVELOPE_LEN,
};

pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod requests;

use events::Outbox;
use groups::GroupStore;
use requests::RequestStore;

/// Who created a message (kept by the store in its text form).
pub use otm_core::Creator;

/// A boxed error kept as the source of [`StoreError`] variants.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A new message for [`BlobStore::put`].
#[derive(Clone)]
pub struct NewMessage {
    /// The sealed envelope: ciphertext, stored exactly as given.
    pub envelope: Vec<u8>,
    /// SHA-256 of the claim proof a reader must present.
    pub verifier: ClaimVerifier,
    /// SHA-256 of the access proof a reader must present first; without it
    /// the message is answered as unknown.
    pub access: AccessVerifier,
    /// When the message stops being readable.
    pub expires_at: SystemTime,
    /// SHA-256 of the sender's management token ([`otm_core::ManageToken`]).
    /// With it, the store keeps a receipt (opened or burned, and when) until
    /// `expires_at`, readable through [`BlobStore::status`]. `None`: no receipt.
    pub manage: Option<ManageVerifier>,
    /// Who created the message, as the service established it: kept with
    /// the message and its receipt (in its text form, [`Creator::parse`]
    /// reads it back), reported by [`BlobStore::status`] and carried by
    /// every event of the message. `None`: not known.
    pub creator: Option<Creator>,
    /// The embedder's own opaque reference for this message (their user or
    /// ticket ID), 1 to [`MAX_REFERENCE_BYTES`] bytes of text without
    /// control characters: kept with the message and its receipt and
    /// reported by [`BlobStore::status`], never handed to a reader.
    pub reference: Option<String>,
}

/// Longest [`NewMessage::reference`], in bytes.
pub const MAX_REFERENCE_BYTES: usize = 256;

/// Where a message is in its life, as its sender may learn it (the same
/// type the HTTP API sends).
pub use otm_core::api::MessageState;

/// What [`BlobStore::status`] reports. It never includes the envelope.
#[derive(Clone, Debug)]
pub struct MessageStatus {
    /// The state.
    pub state: MessageState,
    /// The message's (original) expiry; the receipt lives until then.
    pub expires_at: SystemTime,
    /// When it was opened or burned, where known.
    pub changed_at: Option<SystemTime>,
    /// The management verifier given at put, to check a sender's token with
    /// [`ManageVerifier::verify`].
    pub manage: Option<ManageVerifier>,
    /// The [`NewMessage::creator`] given at put.
    pub creator: Option<Creator>,
    /// The [`NewMessage::reference`] given at put.
    pub reference: Option<String>,
}

impl Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print ciphertext.
        f.debug_struct("NewMessage")
            .field("envelope_len", &self.envelope.len())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Settings every backend honours.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Wrong claim proofs allowed per message; the one that reaches this
    /// number burns it. Default 5.
    pub max_failed_attempts: u32,
    /// Largest envelope accepted by `put`. Default [`MAX_ENVELOPE_LEN`].
    pub max_envelope_len: usize,
    /// Record an [`Event`](events::Event) in the store's [`Outbox`] with every change, in
    /// the same atomic step. Off by default: turn it on only where a
    /// dispatcher drains the outbox ([`BlobStore::outbox`] says which
    /// backends have one).
    pub events: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_failed_attempts: 5,
            max_envelope_len: MAX_ENVELOPE_LEN,
            events: false,
        }
    }
}

impl StoreOptions {
    /// Sets [`StoreOptions::max_failed_attempts`] (at least 1).
    pub fn with_max_failed_attempts(mut self, n: u32) -> Self {
        self.max_failed_attempts = n.max(1);
        self
    }

    /// Sets [`StoreOptions::max_envelope_len`].
    pub fn with_max_envelope_len(mut self, n: usize) -> Self {
        self.max_envelope_len = n;
        self
    }

    /// Sets [`StoreOptions::events`].
    pub fn with_events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }
}

/// The one error type of every store.
///
/// A server maps them to HTTP: [`NotFound`](StoreError::NotFound) 404,
/// [`Conflict`](StoreError::Conflict) 409, [`WrongProof`](StoreError::WrongProof) 403,
/// [`TooLarge`](StoreError::TooLarge) 413, [`Invalid`](StoreError::Invalid) 400,
/// [`AlreadyAnswered`](StoreError::AlreadyAnswered) 409,
/// [`Unavailable`](StoreError::Unavailable) 503, the rest 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Never existed, expired, already taken or burned: one answer for all,
    /// so a caller learns nothing about which.
    #[error("message not found: it was already opened, burned or has expired")]
    NotFound,
    /// `put` found a live message with this ID; it was not touched.
    #[error("a message with this ID already exists")]
    Conflict,
    /// The claim proof was wrong. The message was neither returned nor
    /// consumed, unless `attempts_left` is 0: then this attempt burned it.
    #[error("wrong claim proof ({attempts_left} attempts left)")]
    WrongProof {
        /// Wrong proofs still allowed; the last of them destroys the
        /// message (0: it was just destroyed).
        attempts_left: u32,
    },
    /// The envelope is larger than the store accepts.
    #[error("envelope of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Given length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request cannot be honoured as given (for example an expiry in the past).
    #[error("invalid store request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// A store URL that cannot be used as written: an unknown scheme, a
    /// scheme whose cargo feature this build lacks, an unknown parameter
    /// (named) or a bad value. See [`connect`](crate::connect).
    #[error("invalid store URL: {reason}")]
    InvalidUrl {
        /// What is wrong, naming the parameter.
        reason: String,
    },
    /// The backend is set up so that a promise of the store would not hold
    /// (a versioned S3 bucket keeps deleted ciphertext; a bucket without a
    /// lifecycle rule keeps expired messages forever). The reason says how
    /// to fix it, or which option accepts it.
    #[error("the store refuses this setup: {reason}")]
    Misconfigured {
        /// What is wrong and what to do.
        reason: String,
    },
    /// The backend cannot be reached right now (down, timed out, overloaded).
    /// Retrying later may succeed; nothing was changed that the caller can see.
    #[error("store unavailable while trying to {op}")]
    Unavailable {
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("store backend error while trying to {op}")]
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A request for a secret was already answered: this answer was not
    /// stored ([`RequestStore::answer_request`]).
    #[error("the request was already answered")]
    AlreadyAnswered,
    /// The backend cannot honour this part of the contract.
    #[error("not implemented by this store: {what}")]
    NotImplemented {
        /// What is missing.
        what: &'static str,
    },
}

impl StoreError {
    /// This error and each of its sources, joined with `: `, on one line:
    /// how logs and startup messages show it (the `Display` of a driver
    /// error alone often hides the reason, such as a TLS certificate check
    /// two sources down).
    pub fn with_sources(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// A driver's error, sorted: [`Unavailable`](StoreError::Unavailable)
    /// when retrying may succeed (the backend is down, timed out, busy or
    /// failing over), [`Backend`](StoreError::Backend) otherwise. Every
    /// backend's classifier (SQL, Redis, S3) decides `retryable` from its
    /// driver's error and ends here, so the two variants mean the same on
    /// every backend.
    pub fn driver(op: &'static str, retryable: bool, source: impl Into<BoxError>) -> StoreError {
        let source = source.into();
        if retryable {
            StoreError::Unavailable { op, source }
        } else {
            StoreError::Backend { op, source }
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Storage for sealed messages. The contract every backend keeps:
///
/// - **put** stores a message under a new ID if no live message has that ID;
///   otherwise [`StoreError::Conflict`] and the existing message is untouched.
///   An envelope over [`StoreOptions::max_envelope_len`] is
///   [`StoreError::TooLarge`]; an expiry not in the future is [`StoreError::Invalid`].
/// - **take** is atomic: of any number of concurrent callers with the right
///   proofs, across processes and machines sharing the backend, exactly one
///   receives the envelope and it is deleted in the same step. A wrong
///   **access** proof is [`StoreError::NotFound`], exactly as for a missing
///   message: nothing is counted, burned or revealed. A right access proof
///   with a wrong **claim** proof returns [`StoreError::WrongProof`] without
///   returning or deleting the message, and increments a counter; the
///   attempt that reaches [`StoreError::WrongProof`]`{ attempts_left: 0 }`
///   deletes it. Missing, expired, taken and burned messages are all
///   [`StoreError::NotFound`].
/// - **burn** destroys a live message unread ([`StoreError::NotFound`] if there is none).
/// - **status** reports a message's state without its envelope. When the
///   message was put with a management verifier, taking or burning it
///   (by `burn` or by wrong proofs) leaves a receipt — opened or burned,
///   and when — that lives until the message's original expiry and no longer.
///   After that, or for unknown IDs, [`StoreError::NotFound`].
/// - An expired message is never returned, whether or not any purge has run.
/// - Stores that keep expired messages until someone removes them offer
///   [`PurgeExpired`] through [`BlobStore::purger`]; otm-http's `Service`
///   runs it periodically. Stores whose backend expires by itself offer none.
/// - Failures of the backend are [`StoreError::Unavailable`] (retryable) or
///   [`StoreError::Backend`], with the driver's error as source.
#[async_trait]
pub trait BlobStore: Debug + Send + Sync + 'static {
    /// Stores a new message (put-if-absent).
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()>;

    /// Checks the access proof, then the claim proof, and atomically
    /// removes and returns the envelope.
    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>>;

    /// Burns a message without returning it.
    async fn burn(&self, id: &MessageId) -> Result<()>;

    /// The state of a message or its receipt.
    async fn status(&self, id: &MessageId) -> Result<MessageStatus>;

    /// Checks that the backend answers (for readiness probes).
    async fn check(&self) -> Result<()>;

    /// A short backend name for logs and metrics ("sqlite", "redis", …).
    fn backend_name(&self) -> &'static str;
    /// The options the store was built with; callers read the failed-attempt
    /// limit here, so it is set in one place.
    fn options(&self) -> &StoreOptions;
    /// The store's purge of expired messages, when it needs one: memory,
    /// SQLite and PostgreSQL keep expired rows (never serving them) until
    /// purged; Redis (key TTLs) and S3 (the bucket's lifecycle rule) expire
    /// by themselves and return `None`.
    fn purger(&self) -> Option<&dyn PurgeExpired> {
        None
    }

    /// The outbox of recorded events, for backends that keep one; events
    /// are recorded only with [`StoreOptions::events`] on. Memory, SQLite,
    /// PostgreSQL and Redis (standalone and Cluster) have one; S3 does
    /// not.
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }

    /// The store's counting of quotas, when it can count atomically (every
    /// built-in backend can; S3 with a listing and conditional puts).
    fn quotas(&self) -> Option<&dyn QuotaCounter> {
        None
    }

    /// The store's storing of several messages all or none
    /// ([`GroupStore`]), for the backends that have one atomic step for
    /// it: memory, SQLite, PostgreSQL and standalone Redis.
    fn groups(&self) -> Option<&dyn GroupStore> {
        None
    }

    /// The store's requests for a secret ([`RequestStore`]), for the
    /// backends that keep them: every built-in one (memory, SQLite,
    /// PostgreSQL, Redis standalone and Cluster, S3).
    fn requests(&self) -> Option<&dyn RequestStore> {
        None
    }

    /// The store's counting of rate limits, when it can count atomically
    /// and cheaply (memory, SQLite, PostgreSQL, Redis; S3 cannot: a count
    /// there costs a listing and several requests).
    fn rates(&self) -> Option<&dyn RateCounter> {
        None
    }
}

/// Counting rate limits in the store, so that every replica on it shares
/// one limit (see [`BlobStore::rates`]).
///
/// Each key is a token bucket that holds `burst` requests and gains one
/// every `interval` (the generic cell rate algorithm: the store keeps one
/// timestamp per key, until the bucket is full again). Times come from
/// the calling process's clock, as for quotas, so replicas keep their
/// clocks in sync; counts whose clocks disagree by less than half an
/// interval (and at most 1 s) are counted as if they agreed.
#[async_trait]
pub trait RateCounter: Send + Sync {
    /// Counts one request in `key`'s bucket. `Ok(None)` if it was counted;
    /// `Ok(Some(wait))` if the bucket is empty, in which case nothing is
    /// counted and `wait` (at least 1 ms) is the time until it holds one
    /// request again. A `burst` of 0 is taken as 1. Atomic in the store, so
    /// concurrent counts from any number of replicas admit no more than
    /// the bucket allows.
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Option<Duration>>;
}

/// One step of the generic cell rate algorithm, for the stores that run it
/// in Rust: given the key's stored theoretical arrival time (`tat`, Unix
/// ms) and now, `Ok(new tat)` when the request is admitted, `Err(wait ms)`
/// when it is not. The bucket is full again at the returned tat, so a key
/// may be forgotten then.
#[cfg(any(feature = "memory", feature = "sqlite", feature = "postgres"))]
pub(crate) fn rate_step(
    tat: Option<i64>,
    now: i64,
    burst: u32,
    interval: Duration,
) -> std::result::Result<i64, i64> {
    let (step, tolerance) = rate_params(burst, interval);
    let tat = tat.unwrap_or(now).max(now);
    let next = tat.saturating_add(step);
    if next - now > tolerance {
        Err((next - tolerance - now).max(1))
    } else {
        Ok(next)
    }
}

/// The wait to report for a request the store refused, from the key's
/// arrival time read after the refusal (at least 1 ms: a bucket that
/// filled up in between is simply asked again).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn refused_wait(tat: Option<i64>, now: i64, burst: u32, interval: Duration) -> Duration {
    let wait = rate_step(tat, now, burst, interval).err().unwrap_or(1);
    Duration::from_millis(wait.unsigned_abs())
}

/// The algorithm's emission interval and tolerance in ms: one request per
/// `interval` (at least 1 ms), `burst` (at least 1) of them at once, and a
/// slack for clocks read out of order.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
pub(crate) fn rate_params(burst: u32, interval: Duration) -> (i64, i64) {
    let step = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX / 2)
        .clamp(1, i64::MAX / (1 << 33));
    // Each count reads the clock before its atomic step, so concurrent
    // counts (or replicas' clocks) may reach the store slightly out of
    // order: one whose `now` is a few ms older than the last one's would
    // find the bucket a few ms fuller and miss its last slot. A slack of
    // half an interval (at most 1 s) absorbs that without admitting a
    // request more: the next one is a whole interval away.
    let slack = (step / 2).min(1000);
    (step, step * i64::from(burst.max(1)) + slack)
}

/// Counting creators' quotas, for the stores that can do it atomically
/// (see [`BlobStore::quotas`]).
#[async_trait]
pub trait QuotaCounter: Send + Sync {
    /// Counts `uses` uses of `key` (a creator's quota) in the current
    /// window, all or none: windows are `window` long and aligned to the
    /// Unix epoch. `Ok(true)` if they were counted (at most `limit - uses`
    /// uses before them), `Ok(false)` if they do not fit in what is left of
    /// the window's `limit`, in which case nothing is counted. `uses` is at
    /// least 1 (a group of messages counts one use per message). Atomic in
    /// the store, so the limit holds across replicas.
    async fn count_quota(&self, key: &str, window: Duration, limit: u32, uses: u32)
        -> Result<bool>;
}

/// The end (Unix ms) of the `window`-long window, aligned to the Unix
/// epoch, that `now_ms` falls in.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn window_end(now_ms: i64, window: Duration) -> i64 {
    let len = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    now_ms - now_ms.rem_euclid(len) + len
}

/// Removing expired messages, for the stores that keep them until someone
/// does (see [`BlobStore::purger`]).
#[async_trait]
pub trait PurgeExpired: Send + Sync {
    /// Removes expired messages and receipts past their expiry; returns how
    /// many.
    async fn purge_expired(&self) -> Result<u64>;
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Milliseconds since the Unix epoch (0 before it).
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Checks shared by every backend's `put`; returns the expiry in Unix
/// milliseconds and the time to live from now.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn check_new(opts: &StoreOptions, message: &NewMessage) -> Result<(i64, Duration)> {
    if message.envelope.len() > opts.max_envelope_len {
        return Err(StoreError::TooLarge {
            len: message.envelope.len(),
            max: opts.max_envelope_len,
        });
    }
    if message.envelope.is_empty() {
        return Err(StoreError::Invalid {
            reason: "the envelope is empty",
        });
    }
    check_origin(message.creator.as_ref(), message.reference.as_deref())?;
    check_expiry(message.expires_at)
}

/// Checks a reference and a creator as `put` keeps them.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn check_origin(creator: Option<&Creator>, reference: Option<&str>) -> Result<()> {
    if reference.is_some_and(|r| !is_reference(r)) {
        return Err(StoreError::Invalid {
            reason: "a reference, when given, is 1 to 256 bytes of text without control characters",
        });
    }
    if creator.is_some_and(|c| c.check().is_err()) {
        return Err(StoreError::Invalid {
            reason: "a creator's name is 1 to 128 bytes of text without control characters",
        });
    }
    Ok(())
}

/// An expiry in Unix milliseconds and the time to live from now, if the
/// expiry is at least 1 ms in the future.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn check_expiry(expires_at: SystemTime) -> Result<(i64, Duration)> {
    let ttl = expires_at
        .duration_since(SystemTime::now())
        .ok()
        .filter(|ttl| *ttl >= Duration::from_millis(1))
        .ok_or(StoreError::Invalid {
            reason: "the expiry is not in the future",
        })?;
    Ok((unix_ms(expires_at), ttl))
}

/// Whether `reference` may be kept as a [`NewMessage::reference`]: 1 to
/// [`MAX_REFERENCE_BYTES`] bytes without a control character.
pub fn is_reference(reference: &str) -> bool {
    (1..=MAX_REFERENCE_BYTES).contains(&reference.len()) && !reference.chars().any(char::is_control)
}

/// The creator of a stored text form; text this version does not know
/// (written by a newer one) reads as unknown.
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn creator_from(text: Option<&str>) -> Option<Creator> {
    text.and_then(Creator::parse)
}

/// What a failed proof check leads to, given the new failure count.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn wrong_proof(opts: &StoreOptions, failures: u32) -> StoreError {
    StoreError::WrongProof {
        attempts_left: opts.max_failed_attempts.saturating_sub(failures),
    }
}
