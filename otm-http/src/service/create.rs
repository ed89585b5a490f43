//! The one create pipeline. Every create (a browser's over HTTP, an API
//! client's, the host's own [`Service::create`] and [`Service::send`])
//! runs these steps in this order:
//!
//! 1. the rate limit of the [`Caller`];
//! 2. the [`CreatePolicy`](crate::policy::CreatePolicy)'s decision for
//!    this caller and what it asks;
//! 3. the [`CreateLimits`] the policy allowed within;
//! 4. the whole request against the format and the server's limits;
//! 5. the caller's quota, counted in the store, so only a create that
//!    passed everything else uses a slot;
//! 6. the store.

use std::time::{Duration, SystemTime};

use otm_core::{
    validate, AccessVerifier, ClaimVerifier, Creator, ErrorCode, ManageSecret, ManageToken,
    MessageId, Stored,
};
use otm_store::{is_reference, NewMessage, StoreError, MAX_REFERENCE_BYTES};

use super::{Op, Service, ServiceError};
use crate::caller::Caller;
use crate::metrics::Outcome;
use crate::policy::{CreateAsk, CreateLimits, Decision};

/// A sealed envelope and what to store with it: what a browser's create
/// request carries, decoded.
#[derive(Clone)]
#[non_exhaustive]
pub struct Create {
    /// The sealed envelope (checked against the format, never opened).
    pub envelope: Vec<u8>,
    /// The claim verifier (SHA-256 of the claim proof).
    pub verifier: ClaimVerifier,
    /// The access verifier (SHA-256 of the access proof).
    pub access: AccessVerifier,
    /// How long to keep it (`None`: [`Config::default_ttl`](crate::Config::default_ttl);
    /// at most [`Config::max_ttl`](crate::Config::max_ttl)).
    pub ttl: Option<Duration>,
    /// The creator's own reference (1 to 256 bytes of text), kept with the
    /// message and its receipt and carried by its events, never handed to a
    /// reader. Anonymous callers may not give one unless the policy allows
    /// it ([`CreateLimits::references`]).
    pub reference: Option<String>,
}

impl std::fmt::Debug for Create {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print ciphertext.
        f.debug_struct("Create")
            .field("envelope_len", &self.envelope.len())
            .field("ttl", &self.ttl)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl Create {
    /// A create of `envelope` with its verifiers, for the default expiry
    /// and without a reference.
    pub fn new(envelope: Vec<u8>, verifier: ClaimVerifier, access: AccessVerifier) -> Self {
        Create {
            envelope,
            verifier,
            access,
            ttl: None,
            reference: None,
        }
    }

    /// Sets [`Create::ttl`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`Create::reference`].
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

impl Service {
    /// Stores a sealed envelope for `caller` under a fresh ID with a fresh
    /// management token, through the whole create pipeline: the caller's
    /// rate limit, the create policy's decision, the limits it allows
    /// within, the format and the server's limits, the quota, then the
    /// store. The envelope is checked against the format (header, padded
    /// size), never opened: the service cannot read it.
    pub async fn create(&self, caller: &Caller, request: Create) -> Result<Stored, ServiceError> {
        self.admit(caller, Op::Create).await?;
        self.create_admitted(caller, request).await
    }

    /// [`create`](Service::create) after the rate limit.
    pub(crate) async fn create_admitted(
        &self,
        caller: &Caller,
        request: Create,
    ) -> Result<Stored, ServiceError> {
        let limits = self.decide(caller, &request).await?;
        let creator = self.creator(caller, &limits, request.reference.is_some())?;
        let config = &self.0.config;
        check_limits(&limits, &request.envelope, request.ttl, config.default_ttl)
            .map_err(|e| self.failed(e))?;
        let ttl = self.check(&request).map_err(|e| self.failed(e))?;
        self.count_quota(&limits, 1).await?;
        self.put(caller, creator, request, ttl, limits.manage_secret.as_ref())
            .await
    }

    /// The creator `caller` stores as, once the policy's `limits` allow its
    /// reference (if it gives one) and its name passes the check.
    pub(super) fn creator(
        &self,
        caller: &Caller,
        limits: &CreateLimits,
        reference: bool,
    ) -> Result<Creator, ServiceError> {
        if reference && !limits.allows_reference(caller) {
            return Err(self.failed(ServiceError::invalid(
                ErrorCode::ReferenceNotAllowed,
                "Only a creator this server knows (an API token, the host's own backend) may give a reference.",
            )));
        }
        let creator = caller.creator();
        if let Err(e) = creator.check() {
            return Err(self.failed(ServiceError::Denied {
                message: format!("The caller cannot create: {e}."),
            }));
        }
        Ok(creator)
    }

    /// Counts `uses` creates (1, or a group's members) against the quota
    /// the policy set, all or none, in the store: the last step before
    /// storing, so only a create (or a request) that passed everything else
    /// uses a slot.
    pub(super) async fn count_quota(
        &self,
        limits: &CreateLimits,
        uses: u32,
    ) -> Result<(), ServiceError> {
        if let Some(quota) = &limits.quota {
            let key = format!("create:{}", quota.creator);
            let store = &self.0.store;
            let quotas = store.quotas().ok_or(ServiceError::MissingCapability {
                what: "quotas",
                backend: store.backend_name(),
            })?;
            let counted = quotas
                .count_quota(&key, quota.per, quota.max, uses)
                .await
                .map_err(|e| self.failed(e.into()))?;
            if !counted {
                return Err(self.failed(ServiceError::QuotaExceeded {
                    max: quota.max,
                    per: quota.per,
                }));
            }
        }
        Ok(())
    }

    /// The policy's limits for this create (none without a policy).
    async fn decide(
        &self,
        caller: &Caller,
        request: &Create,
    ) -> Result<CreateLimits, ServiceError> {
        let ask = CreateAsk {
            ttl: request.ttl,
            envelope_bytes: request.envelope.len(),
            passphrase: validate(&request.envelope).is_ok_and(|info| info.passphrase),
            reference: request.reference.as_deref(),
            request: false,
            recipients: 1,
        };
        self.decide_ask(caller, &ask).await
    }

    /// The policy's decision on `ask` (no limits without a policy).
    pub(super) async fn decide_ask(
        &self,
        caller: &Caller,
        ask: &CreateAsk<'_>,
    ) -> Result<CreateLimits, ServiceError> {
        let Some(policy) = &self.0.config.create_policy else {
            return Ok(CreateLimits::default());
        };
        match policy.0.decide(caller, ask).await {
            Decision::Allow(limits) => Ok(limits),
            Decision::Deny { message } => {
                tracing::debug!(%caller, "create denied by the policy");
                Err(ServiceError::Denied { message })
            }
        }
    }

    /// The expiry of a create, once the reference, the envelope and the
    /// expiry asked for pass.
    pub(super) fn check(&self, request: &Create) -> Result<Duration, ServiceError> {
        if request
            .reference
            .as_deref()
            .is_some_and(|r| !is_reference(r))
        {
            return Err(ServiceError::invalid(
                ErrorCode::BadReference,
                format!(
                    "reference must be 1 to {MAX_REFERENCE_BYTES} bytes of text without control characters"
                ),
            ));
        }
        validate(&request.envelope).map_err(|e| match e {
            otm_core::Error::TooLarge { .. } => {
                ServiceError::invalid(ErrorCode::TooLarge, e.to_string())
            }
            _ => ServiceError::invalid(ErrorCode::BadEnvelope, e.to_string()),
        })?;
        self.ttl_for(request.ttl)
    }

    /// The expiry of a create (or a request) that asked for `asked`
    /// (`None`: the server's default), if the server allows it.
    pub(super) fn ttl_for(&self, asked: Option<Duration>) -> Result<Duration, ServiceError> {
        let config = &self.0.config;
        let ttl = match asked {
            None => config.default_ttl,
            Some(t) if t.as_secs() == 0 => {
                return Err(ServiceError::invalid(
                    ErrorCode::BadTtl,
                    "ttl_seconds must be at least 1",
                ))
            }
            Some(t) => Duration::from_secs(t.as_secs()),
        };
        if ttl > config.max_ttl {
            return Err(ServiceError::invalid(
                ErrorCode::TtlTooLong,
                format!(
                    "ttl_seconds is {}; this server keeps messages at most {} ({} s)",
                    ttl.as_secs(),
                    humantime::format_duration(config.max_ttl),
                    config.max_ttl.as_secs()
                ),
            ));
        }
        Ok(ttl)
    }

    /// Stores a checked create under a fresh ID, with its management token
    /// derived from `secret` when there is one.
    async fn put(
        &self,
        caller: &Caller,
        creator: Creator,
        request: Create,
        ttl: Duration,
        secret: Option<&ManageSecret>,
    ) -> Result<Stored, ServiceError> {
        let expires_at = SystemTime::now() + ttl;
        let bytes = request.envelope.len();
        // A 128-bit ID collides only by a broken RNG or on purpose; retry anyway.
        let mut attempts = 0;
        let (id, manage) = loop {
            let id = MessageId::generate().map_err(|_| ServiceError::Random)?;
            let manage = match secret {
                Some(secret) => secret.token_for(&id),
                None => ManageToken::generate().map_err(|_| ServiceError::Random)?,
            };
            let message = NewMessage {
                envelope: request.envelope.clone(),
                verifier: request.verifier,
                access: request.access,
                expires_at,
                manage: Some(manage.verifier()),
                creator: Some(creator.clone()),
                reference: request.reference.clone(),
            };
            match self.0.store.put(&id, message).await {
                Ok(()) => break (id, manage),
                Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
                Err(e) => return Err(self.failed(e.into())),
            }
        };
        self.0.metrics.count(Outcome::Created);
        self.changed();
        tracing::info!(id = %id, %caller, bytes, ttl_s = ttl.as_secs(), "message created");
        Ok(Stored {
            id,
            manage_token: manage,
            expires_at,
        })
    }
}

/// Checks a create against the `limits` the policy allowed within: the envelope's size and
/// passphrase flag, and the expiry asked for (`None`: the server's
/// default, `default_ttl`).
pub(super) fn check_limits(
    limits: &CreateLimits,
    envelope: &[u8],
    ttl: Option<Duration>,
    default_ttl: Duration,
) -> Result<(), ServiceError> {
    let invalid = |code, message: String| ServiceError::Invalid { code, message };
    if let Some(max) = limits.max_envelope_bytes {
        if envelope.len() > max {
            return Err(invalid(
                ErrorCode::TooLarge,
                format!("You may send messages of at most {max} bytes sealed."),
            ));
        }
    }
    if limits.passphrase_required {
        let info = otm_core::validate(envelope)
            .map_err(|e| invalid(ErrorCode::BadEnvelope, e.to_string()))?;
        if !info.passphrase {
            return Err(invalid(
                ErrorCode::PassphraseRequired,
                "Protect this message with a passphrase too.".into(),
            ));
        }
    }
    if let Some(max) = limits.max_ttl {
        let asked = ttl.unwrap_or(default_ttl);
        if asked > max {
            return Err(invalid(
                ErrorCode::TtlTooLong,
                format!(
                    "You may keep messages at most {} ({} s).",
                    humantime::format_duration(max),
                    max.as_secs()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CreateLimits;
    use otm_core::{seal, Key, Passphrase, Secrets};

    #[test]
    fn limits_check_size_passphrase_and_expiry() {
        let key = Key::generate().unwrap();
        let plain = seal(&Secrets::derive(&key, None), "hello").unwrap();
        let phrase = Passphrase::new("correct horse").unwrap();
        let protected = seal(&Secrets::derive(&key, Some(&phrase)), "hello").unwrap();
        let day = Duration::from_secs(86_400);
        let none = CreateLimits::default();
        assert!(check_limits(&none, &plain, None, day).is_ok());

        let code = |r: Result<(), ServiceError>| r.unwrap_err().code();
        let strict = CreateLimits::default().with_passphrase_required(true);
        assert_eq!(
            code(check_limits(&strict, &plain, None, day)),
            ErrorCode::PassphraseRequired
        );
        assert!(check_limits(&strict, &protected, None, day).is_ok());

        let small = CreateLimits::default().with_max_envelope_bytes(plain.len() - 1);
        assert_eq!(
            code(check_limits(&small, &plain, None, day)),
            ErrorCode::TooLarge
        );

        let short = CreateLimits::default().with_max_ttl(Duration::from_secs(3600));
        assert_eq!(
            code(check_limits(&short, &plain, None, day)),
            ErrorCode::TtlTooLong
        );
        assert!(check_limits(&short, &plain, Some(Duration::from_secs(600)), day).is_ok());
    }
}
