//! Requests for a secret: someone asks, someone answers once, and only the
//! one who asked can take the answer (FORMAT.md, section 14).
//!
//! A request is a record of its own; its answer is stored under the
//! request's ID as an ordinary message (the request's access and claim
//! verifiers, its expiry, creator and reference), so it is then taken,
//! counted, burned and reported exactly like any message, by
//! [`BlobStore::take`](crate::BlobStore::take) and
//! [`BlobStore::status`](crate::BlobStore::status). What this capability
//! adds is the record and the one step that matters: **answering is
//! atomic and happens at most once**, on every backend that offers it.
//!
//! The store checks no proof here: the service reads the record, checks
//! the responder's or the asker's proof against its verifiers (in constant
//! time) and answers "not found" for a wrong one, exactly as for an unknown
//! ID, before it calls [`RequestStore::answer_request`] or
//! [`RequestStore::withdraw_request`].

use std::fmt::Debug;
use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::{AccessVerifier, AnswerVerifier, ClaimVerifier, Creator, ManageVerifier, MessageId};

use super::Result;

/// The longest sealed note a store keeps, in bytes (otm's notes are all
/// [`otm_core::SEALED_NOTE_LEN`]; the margin is for later formats).
pub const MAX_SEALED_NOTE_LEN: usize = 4096;

/// A new request for [`RequestStore::put_request`].
#[derive(Clone)]
pub struct NewRequest {
    /// The note for the responder, sealed under a key only request-link
    /// holders have (stored exactly as given; 1 to [`MAX_SEALED_NOTE_LEN`]
    /// bytes).
    pub note: Vec<u8>,
    /// SHA-256 of the responder's answer proof: reading the request and
    /// answering it need the proof.
    pub answer: AnswerVerifier,
    /// The access verifier of the answer, as for a message
    /// ([`NewMessage::access`](crate::NewMessage::access)).
    pub access: AccessVerifier,
    /// The claim verifier of the answer, as for a message
    /// ([`NewMessage::verifier`](crate::NewMessage::verifier)).
    pub verifier: ClaimVerifier,
    /// When the request (and its answer, if any) stops being usable.
    pub expires_at: SystemTime,
    /// Who asked, as the service established it; the answer inherits it.
    pub creator: Option<Creator>,
    /// The embedder's reference; the answer inherits it.
    pub reference: Option<String>,
}

impl Debug for NewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRequest")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A stored request, as [`RequestStore::request`] returns it.
#[derive(Clone)]
pub struct StoredRequest {
    /// The request as it was put.
    pub request: NewRequest,
    /// When it was answered; `None` while it waits for its answer.
    pub answered_at: Option<SystemTime>,
}

impl Debug for StoredRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRequest")
            .field("expires_at", &self.request.expires_at)
            .field("answered_at", &self.answered_at)
            .finish_non_exhaustive()
    }
}

/// The management verifier an answer is stored with: all zeros, whose
/// SHA-256 preimage no one knows, so no management token matches it. It is
/// there so that the answer leaves a receipt (opened or burned, and when)
/// that the asker reads through the request, never through a status link.
pub const ANSWER_MANAGE: ManageVerifier = ManageVerifier::from_bytes([0; 32]);

/// Requests for a secret, for the stores that keep them (see
/// [`BlobStore::requests`](crate::BlobStore::requests)). The contract:
///
/// - **put_request** stores a new request if no live request has the ID
///   ([`StoreError::Conflict`](crate::StoreError::Conflict) otherwise, the existing one untouched); a
///   note that is empty or longer than [`MAX_SEALED_NOTE_LEN`], or a bad
///   reference or creator, is [`StoreError::Invalid`](crate::StoreError::Invalid); an expiry not in the
///   future too. With events on, `request.created` is recorded in the same
///   step.
/// - **request** returns a live request ([`StoreError::NotFound`](crate::StoreError::NotFound) when
///   there is none or it expired: after its expiry a request is never
///   returned, whether or not a purge ran).
/// - **answer_request** is atomic and happens at most once: of any number
///   of concurrent callers, across processes and machines sharing the
///   backend, exactly one stores its answer; every other gets
///   [`StoreError::AlreadyAnswered`](crate::StoreError::AlreadyAnswered), as does every later caller for as
///   long as the request lives (also after the answer was taken, burned or
///   destroyed). In the same step the request is marked answered and the
///   answer is stored as a message under the request's ID, with the
///   request's access and claim verifiers, expiry, creator and reference
///   and [`ANSWER_MANAGE`] (so it leaves a receipt); with events on,
///   `request.answered` is recorded instead of `message.created`. A missing
///   or expired request is [`StoreError::NotFound`](crate::StoreError::NotFound); an answer that is
///   empty, or longer than the store's
///   [`max_envelope_len`](crate::StoreOptions::max_envelope_len) allows for
///   an answer (the envelope's limit plus the 19 bytes an answer adds; by
///   default [`MAX_ANSWER_LEN`](otm_core::MAX_ANSWER_LEN)), is refused before anything happens.
/// - **withdraw_request** removes the request and burns its answer if it
///   was not taken yet (with events on, `message.burned`), so that no
///   answer, earlier or concurrent, can be taken after it returns;
///   [`StoreError::NotFound`](crate::StoreError::NotFound) when there is no live request.
/// - Expired requests are removed like expired messages: by the backend
///   itself (Redis key TTLs) or by the store's purge.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new request (put-if-absent).
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()>;

    /// A live request.
    async fn request(&self, id: &MessageId) -> Result<StoredRequest>;

    /// Stores the one answer of a request, atomically, at most once.
    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()>;

    /// Removes a request and burns its answer if not yet taken.
    async fn withdraw_request(&self, id: &MessageId) -> Result<()>;

    /// Finishes what a caller that died in the middle of an answer left
    /// undone, for a backend whose answer is more than one atomic step (S3:
    /// an answer decided but not yet published as the message). The service
    /// calls it once a proof for the request is verified (never for an ID
    /// alone); a store whose answer is one atomic step has nothing to do.
    async fn repair_request(&self, id: &MessageId) -> Result<()> {
        let _ = id;
        Ok(())
    }
}

/// Checks shared by every backend's `put_request`; returns the expiry in
/// Unix milliseconds and the time to live from now.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn check_request(request: &NewRequest) -> Result<(i64, std::time::Duration)> {
    if request.note.is_empty() || request.note.len() > MAX_SEALED_NOTE_LEN {
        return Err(super::StoreError::Invalid {
            reason: "a sealed note is 1 to 4096 bytes",
        });
    }
    super::check_origin(request.creator.as_ref(), request.reference.as_deref())?;
    super::check_expiry(request.expires_at)
}

/// Checks an answer before any backend work.
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis",
    feature = "s3"
))]
pub(crate) fn check_answer(opts: &super::StoreOptions, answer: &[u8]) -> Result<()> {
    use super::StoreError;
    use otm_core::{MAX_ANSWER_LEN, MAX_ENVELOPE_LEN};
    if answer.is_empty() {
        return Err(StoreError::Invalid {
            reason: "the answer is empty",
        });
    }
    let max = opts
        .max_envelope_len
        .saturating_add(MAX_ANSWER_LEN - MAX_ENVELOPE_LEN);
    if answer.len() > max {
        return Err(StoreError::TooLarge {
            len: answer.len(),
            max,
        });
    }
    Ok(())
}
