//! Requests for a secret (FORMAT.md §14): someone asks, someone answers
//! once, and only the asker can open the answer.
//!
//! - [`Service::ask`] stores a request through the create pipeline (the
//!   caller's rate limit, the create policy, which sees
//!   [`CreateAsk::request`], the expiry limits, the quota: the answer is
//!   charged to the asker), so an operator decides who may ask.
//! - [`Service::read_request`] and [`Service::answer`] are for the holder
//!   of the request link: its answer proof authorises them, not the create
//!   policy (a responder has no account). A wrong proof is answered exactly
//!   like an unknown ID.
//! - The answer is then a message under the request's ID: the asker takes
//!   it with [`Service::open`] and the proofs of the receive link.
//! - [`Service::request_status`] and [`Service::withdraw`] are for the
//!   asker, with the answer's access proof.

use std::time::{Duration, SystemTime};

use otm_core::api::RequestState;
use otm_core::{
    validate_answer, AccessProof, AccessVerifier, AnswerProof, AnswerVerifier, ClaimVerifier,
    Creator, ErrorCode, MessageId, SEALED_NOTE_LEN,
};
use otm_store::{MessageState, NewRequest, RequestStore, StoreError, StoredRequest};

use super::{Op, Service, ServiceError};
use crate::caller::Caller;
use crate::metrics::Outcome;
use crate::policy::CreateAsk;

/// A request for a secret as the asker's side sends it (decoded
/// [`AskRequest`](otm_core::api::AskRequest)): nothing in it reads the
/// answer.
#[derive(Clone)]
#[non_exhaustive]
pub struct Ask {
    /// The sealed note ([`SEALED_NOTE_LEN`] bytes).
    pub note: Vec<u8>,
    /// SHA-256 of the responder's answer proof.
    pub answer: AnswerVerifier,
    /// The answer's access verifier.
    pub access: AccessVerifier,
    /// The answer's claim verifier.
    pub verifier: ClaimVerifier,
    /// How long the request (and its answer) lives (`None`: the server's
    /// default; at most its maximum, as for a message).
    pub ttl: Option<Duration>,
    /// The asker's reference, as for a message; the answer inherits it.
    pub reference: Option<String>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("ttl", &self.ttl)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl Ask {
    /// A request with the sealed `note` and the three verifiers, for the
    /// default expiry and without a reference.
    pub fn new(
        note: Vec<u8>,
        answer: AnswerVerifier,
        access: AccessVerifier,
        verifier: ClaimVerifier,
    ) -> Self {
        Ask {
            note,
            answer,
            access,
            verifier,
            ttl: None,
            reference: None,
        }
    }

    /// Sets [`Ask::ttl`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`Ask::reference`].
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

/// A stored request: its ID and expiry ([`Service::ask`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Asked {
    /// The request's ID; its answer is stored under it.
    pub id: MessageId,
    /// When the request (and an answer) stops being usable.
    pub expires_at: SystemTime,
}

/// What the holder of a request link sees ([`Service::read_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestView {
    /// The sealed note (opened with the request link's token).
    pub note: Vec<u8>,
    /// Who asked, as the service established it; `None` when the asker
    /// was anonymous ("anyone could have made this request").
    pub creator: Option<Creator>,
    /// When the request expires.
    pub expires_at: SystemTime,
    /// Whether it was answered already.
    pub answered: bool,
}

/// What the asker sees of a request ([`Service::request_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestReceipt {
    /// Waiting, answered, opened or burned.
    pub state: RequestState,
    /// When the request expires (its answer with it).
    pub expires_at: SystemTime,
    /// When it was answered.
    pub answered_at: Option<SystemTime>,
    /// When the answer was opened or destroyed.
    pub changed_at: Option<SystemTime>,
    /// Who asked.
    pub creator: Option<Creator>,
    /// The asker's reference.
    pub reference: Option<String>,
}

impl Service {
    /// The store's requests, or [`ServiceError::MissingCapability`].
    fn requests(&self) -> Result<&dyn RequestStore, ServiceError> {
        let store = &self.0.store;
        store.requests().ok_or(ServiceError::MissingCapability {
            what: "requests",
            backend: store.backend_name(),
        })
    }

    /// Stores a request for a secret for `caller` under a fresh ID, through
    /// the create pipeline: the caller's rate limit, the create policy
    /// (which sees [`CreateAsk::request`] and may deny whoever should not
    /// ask), the expiry limits, the quota (one slot: the answer is charged
    /// to the asker), then the store.
    pub async fn ask(&self, caller: &Caller, request: Ask) -> Result<Asked, ServiceError> {
        self.admit(caller, Op::Create).await?;
        let requests = self.requests()?;
        let ask = CreateAsk {
            ttl: request.ttl,
            envelope_bytes: request.note.len(),
            passphrase: false,
            reference: request.reference.as_deref(),
            request: true,
            recipients: 1,
        };
        let limits = self.decide_ask(caller, &ask).await?;
        let creator = self.creator(caller, &limits, request.reference.is_some())?;
        if request.note.len() != SEALED_NOTE_LEN {
            return Err(self.failed(ServiceError::invalid(
                ErrorCode::BadField,
                format!("note must be a sealed note of {SEALED_NOTE_LEN} bytes"),
            )));
        }
        if request
            .reference
            .as_deref()
            .is_some_and(|r| !otm_store::is_reference(r))
        {
            return Err(self.failed(ServiceError::invalid(
                ErrorCode::BadReference,
                "reference must be 1 to 256 bytes of text without control characters",
            )));
        }
        let ttl = self.ttl_for(request.ttl).map_err(|e| self.failed(e))?;
        if let Some(max) = limits.max_ttl.filter(|max| ttl > *max) {
            return Err(self.failed(ServiceError::invalid(
                ErrorCode::TtlTooLong,
                format!(
                    "You may keep requests at most {} ({} s).",
                    humantime::format_duration(max),
                    max.as_secs()
                ),
            )));
        }
        self.count_quota(&limits, 1).await?;
        let expires_at = SystemTime::now() + ttl;
        let mut attempts = 0;
        let id = loop {
            let id = MessageId::generate().map_err(|_| ServiceError::Random)?;
            let stored = NewRequest {
                note: request.note.clone(),
                answer: request.answer,
                access: request.access,
                verifier: request.verifier,
                expires_at,
                creator: Some(creator.clone()),
                reference: request.reference.clone(),
            };
            match requests.put_request(&id, stored).await {
                Ok(()) => break id,
                Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
                Err(e) => return Err(self.failed(e.into())),
            }
        };
        self.0.metrics.count(Outcome::RequestCreated);
        self.changed();
        tracing::info!(id = %id, %caller, ttl_s = ttl.as_secs(), "request created");
        Ok(Asked { id, expires_at })
    }

    /// The live request `id`, if `check` accepts it: otherwise, and for an
    /// unknown or expired ID, [`ServiceError::Gone`] (one answer for all).
    async fn checked_request(
        &self,
        id: &MessageId,
        check: impl FnOnce(&StoredRequest) -> bool,
    ) -> Result<StoredRequest, ServiceError> {
        let stored = self.requests()?.request(id).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::Gone,
            e => self.failed(e.into()),
        })?;
        if !check(&stored) {
            return Err(self.failed(ServiceError::Gone));
        }
        if stored.answered_at.is_some() {
            // Only now that a proof holds: finish an answer a crashed
            // responder left half-stored (S3).
            self.requests()?
                .repair_request(id)
                .await
                .map_err(|e| self.failed(e.into()))?;
        }
        Ok(stored)
    }

    /// The request as its responder sees it, for the holder of the request
    /// link's answer proof (compared in constant time).
    pub async fn read_request(
        &self,
        caller: &Caller,
        id: &MessageId,
        proof: &AnswerProof,
    ) -> Result<RequestView, ServiceError> {
        self.admit(caller, Op::Read).await?;
        let stored = self
            .checked_request(id, |s| s.request.answer.verify(proof))
            .await?;
        let creator = stored
            .request
            .creator
            .filter(|c| !matches!(c, Creator::Anonymous));
        Ok(RequestView {
            note: stored.request.note,
            creator,
            expires_at: stored.request.expires_at,
            answered: stored.answered_at.is_some(),
        })
    }

    /// Stores the one answer of a request, for the holder of the request
    /// link's answer proof; returns when it was stored. The answer is
    /// checked against the format (FORMAT.md §14.6), never opened. A
    /// request answered already is
    /// [`StoreError::AlreadyAnswered`] (`409 already_answered`), also for
    /// the one of many concurrent responders who lost.
    pub async fn answer(
        &self,
        caller: &Caller,
        id: &MessageId,
        proof: &AnswerProof,
        answer: Vec<u8>,
    ) -> Result<SystemTime, ServiceError> {
        self.admit(caller, Op::Read).await?;
        validate_answer(&answer).map_err(|e| {
            self.failed(ServiceError::invalid(
                ErrorCode::BadEnvelope,
                format!("answer: {e}"),
            ))
        })?;
        let stored = self
            .checked_request(id, |s| s.request.answer.verify(proof))
            .await?;
        if stored.answered_at.is_some() {
            return Err(ServiceError::Store(StoreError::AlreadyAnswered));
        }
        let requests = self.requests()?;
        match requests.answer_request(id, answer).await {
            Ok(()) => {}
            Err(StoreError::AlreadyAnswered) => {
                return Err(ServiceError::Store(StoreError::AlreadyAnswered))
            }
            Err(StoreError::NotFound) => return Err(self.failed(ServiceError::Gone)),
            Err(e) => return Err(self.failed(e.into())),
        }
        let at = SystemTime::now();
        self.0.metrics.count(Outcome::RequestAnswered);
        self.changed();
        tracing::info!(id = %id, "request answered");
        Ok(at)
    }

    /// The asker's view of a request, for the holder of the answer's
    /// access proof (from the receive link).
    pub async fn request_status(
        &self,
        caller: &Caller,
        id: &MessageId,
        access: &AccessProof,
    ) -> Result<RequestReceipt, ServiceError> {
        self.admit(caller, Op::Read).await?;
        let stored = self
            .checked_request(id, |s| s.request.access.verify(access))
            .await?;
        let mut receipt = RequestReceipt {
            state: RequestState::Waiting,
            expires_at: stored.request.expires_at,
            answered_at: stored.answered_at,
            changed_at: None,
            creator: stored.request.creator,
            reference: stored.request.reference,
        };
        if stored.answered_at.is_none() {
            return Ok(receipt);
        }
        receipt.state = RequestState::Answered;
        match self.0.store.status(id).await {
            Ok(status) => {
                receipt.changed_at = status.changed_at;
                receipt.state = match status.state {
                    MessageState::Opened => RequestState::Opened,
                    MessageState::Burned => RequestState::Burned,
                    _ => RequestState::Answered,
                };
            }
            // Expiring at this very moment, with the request.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(self.failed(e.into())),
        }
        Ok(receipt)
    }

    /// Withdraws a request, for the holder of the answer's access proof:
    /// the request is gone, and an answer not yet opened is destroyed with
    /// it.
    pub async fn withdraw(
        &self,
        caller: &Caller,
        id: &MessageId,
        access: &AccessProof,
    ) -> Result<(), ServiceError> {
        self.admit(caller, Op::Read).await?;
        self.checked_request(id, |s| s.request.access.verify(access))
            .await?;
        match self.requests()?.withdraw_request(id).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(self.failed(ServiceError::Gone)),
            Err(e) => return Err(self.failed(e.into())),
        }
        self.changed();
        tracing::info!(id = %id, "request withdrawn");
        Ok(())
    }
}
