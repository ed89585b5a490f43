//! [`Service`]: otm's server side as one type. It holds the store (behind
//! its circuit breaker), the limits and the counters, and does every step a
//! request needs once its bytes are decoded: create, open, status, burn,
//! and [`Service::send`], which seals a message in this process for a host
//! whose own backend mints links. The router's handlers are thin adapters
//! over it (decode the request, call the service, encode the answer), so the
//! browser's path and the server-side path cannot drift apart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use otm_core::api::PublicConfig;
use otm_core::{
    validate, AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ErrorCode, Key, Link,
    ManageLink, ManageSecret, ManageToken, MessageId, Secrets, SendOptions, Sent, Stored,
    MAX_ENVELOPE_LEN, MAX_MESSAGE_CHARS,
};
use otm_store::{
    BlobStore, Breaker, MessageState, MessageStatus, NewMessage, StoreError, MAX_REFERENCE_BYTES,
};

use crate::metrics::{Metrics, Outcome};
use crate::{limit, Config};

/// The state every router of one service shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) create_limiter: limit::Limiter,
    pub(crate) open_limiter: limit::Limiter,
    /// Whether the untrusted `X-Forwarded-For` warning was logged.
    pub(crate) forwarding_warned: std::sync::atomic::AtomicBool,
    /// The last readiness answer and when it was found (see
    /// [`READINESS_CACHE`](crate::READINESS_CACHE)).
    pub(crate) readiness: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Wakes this instance's dispatcher after a change, so an event waits
    /// for the next poll only when another replica made it.
    pub(crate) events_wake: Arc<tokio::sync::Notify>,
}

/// One otm instance: a store, its [`Config`], the rate limiters and the
/// metrics. Cheap to clone (one `Arc`); every clone is the same instance.
///
/// Serve it with [`Service::router`] and call it from your own code at the
/// same time: a message your backend [`send`](Service::send)s is counted,
/// limited and stored exactly like one a browser creates.
///
/// ```no_run
/// use std::sync::Arc;
/// use otm_core::SendOptions;
/// use otm_http::{Config, Service};
/// use otm_store::{MemoryStore, StoreOptions};
///
/// # async fn run() -> Result<(), otm_http::ServiceError> {
/// let store = Arc::new(MemoryStore::new(StoreOptions::default()));
/// let otm = Service::new(store, Config::default().with_base_url("https://example.com/secrets"));
/// let app: axum::Router = axum::Router::new().nest("/secrets", otm.router());
///
/// // In a handler of your own: mint a link for a user.
/// let sent = otm.send("your initial password: 7fW#q2", &SendOptions::new()).await?;
/// println!("{}", sent.link.to_url().as_str()); // https://example.com/secrets/otm/…#key=…
/// let receipt = otm.status(&sent.manage_link.id, &sent.manage_link.token).await?;
/// assert_eq!(receipt.state, otm_store::MessageState::Waiting);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Service(pub(crate) Arc<Shared>);

/// A sealed envelope and what a create stores with it.
pub(crate) struct NewEnvelope {
    pub(crate) envelope: Vec<u8>,
    pub(crate) verifier: ClaimVerifier,
    pub(crate) access: AccessVerifier,
    pub(crate) ttl: Option<Duration>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.0.store.backend_name())
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// Why a [`Service`] call failed. [`ServiceError::code`] is the API's error
/// code for it; the router answers each with its documented status.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request breaks the format or a limit: `code` says which
    /// (`bad_envelope`, `too_large`, `bad_ttl`, `ttl_too_long`, …).
    Invalid {
        /// The API's code.
        code: ErrorCode,
        /// What is wrong, for people.
        message: String,
    },
    /// No such message: never created, opened, burned, expired, or asked
    /// for with a wrong access proof (the four are told apart to no one).
    Gone,
    /// A wrong claim proof (a wrong passphrase). At 0 the message was
    /// destroyed.
    WrongProof {
        /// Wrong proofs the message survives from now on.
        attempts_left: u32,
    },
    /// The management token does not belong to the message.
    WrongToken,
    /// A burn of a message that was already opened or burned.
    NotWaiting(MessageStatus),
    /// [`Service::send`] needs [`Config::base_url`] to make links.
    NoBaseUrl,
    /// The store failed ([`StoreError::Unavailable`] is worth retrying).
    Store(StoreError),
    /// The operating system's random number generator failed.
    Random,
    /// Events were asked for, but the store was not made with
    /// `StoreOptions::events` on, or its backend keeps no outbox.
    NoEvents {
        /// The store's backend.
        backend: &'static str,
    },
}

impl ServiceError {
    /// The API's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid { code, .. } => *code,
            ServiceError::Gone => ErrorCode::NotFound,
            ServiceError::WrongProof { .. } => ErrorCode::WrongProof,
            ServiceError::WrongToken => ErrorCode::WrongToken,
            ServiceError::NotWaiting(_) => ErrorCode::NotWaiting,
            ServiceError::NoBaseUrl => ErrorCode::Internal,
            ServiceError::Store(StoreError::Unavailable { .. }) => ErrorCode::StoreUnavailable,
            ServiceError::Store(_) | ServiceError::Random | ServiceError::NoEvents { .. } => {
                ErrorCode::Internal
            }
        }
    }

    fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Invalid { message, .. } => f.write_str(message),
            ServiceError::Gone => f.write_str("no such message (opened, expired or never created)"),
            ServiceError::WrongProof { attempts_left } => {
                write!(f, "wrong proof; {attempts_left} attempts left")
            }
            ServiceError::WrongToken => f.write_str("the management token does not match"),
            ServiceError::NotWaiting(s) => write!(f, "the message is {}", s.state),
            ServiceError::NoBaseUrl => {
                f.write_str("sending needs a base URL for links (Config::with_base_url)")
            }
            ServiceError::Store(e) => write!(f, "{e}"),
            ServiceError::Random => f.write_str("the random number generator failed"),
            ServiceError::NoEvents { backend } => write!(
                f,
                "the {backend} store records no events: make it with StoreOptions::events on \
                 (memory, SQLite, PostgreSQL and Redis keep an outbox; S3 does not)"
            ),
        }
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::Gone,
            StoreError::WrongProof { attempts_left } => ServiceError::WrongProof { attempts_left },
            e => ServiceError::Store(e),
        }
    }
}

impl Service {
    /// An instance on `store` with `config`. The store is put behind a
    /// circuit breaker as [`Config::store_breaker`] says, unless it already
    /// is one ([`BlobStore::breaker`]).
    pub fn new(store: Arc<dyn BlobStore>, config: Config) -> Service {
        let store = match (store.breaker().is_some(), config.store_breaker.clone()) {
            (false, Some(c)) => Arc::new(Breaker::new(store, c)) as Arc<dyn BlobStore>,
            _ => store,
        };
        Service(Arc::new(Shared {
            store,
            create_limiter: limit::Limiter::new(config.create_limit),
            open_limiter: limit::Limiter::new(config.open_limit),
            config,
            metrics: Metrics::default(),
            forwarding_warned: std::sync::atomic::AtomicBool::new(false),
            readiness: tokio::sync::Mutex::new(None),
            events_wake: Arc::default(),
        }))
    }

    /// The whole HTTP surface of this instance: see [`router`](crate::router).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::routes(self.clone())
    }

    /// The public and admin routers of this instance: see
    /// [`router_with_admin`](crate::router_with_admin).
    pub fn router_with_admin<S>(&self) -> (Router<S>, Router<S>)
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::routes_with_admin(self.clone())
    }

    /// The store, behind its breaker.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.0.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// What a compose page needs to know (`GET /api/v1/config`).
    pub fn public_config(&self) -> PublicConfig {
        let c = &self.0.config;
        PublicConfig {
            max_ttl_seconds: c.max_ttl.as_secs(),
            default_ttl_seconds: c.default_ttl.as_secs(),
            ttl_choices_seconds: c
                .effective_ttl_choices()
                .iter()
                .map(Duration::as_secs)
                .collect(),
            max_message_chars: MAX_MESSAGE_CHARS as u64,
            max_envelope_bytes: MAX_ENVELOPE_LEN as u64,
            max_failed_attempts: self.0.store.options().max_failed_attempts,
            link_base: c.base_url.clone(),
        }
    }

    /// Seals `text` in this process with a fresh key (and the passphrase of
    /// `options`), stores it like [`create`](Service::create), and returns
    /// the share link and the sender's status link, both on
    /// [`Config::base_url`]. The key leaves this call only inside
    /// [`Sent::link`]; the store sees ciphertext and verifiers, as with a
    /// browser. The key derivation (PBKDF2 when there is a passphrase) runs
    /// on a blocking thread, not on the async runtime.
    pub async fn send(&self, text: &str, options: &SendOptions<'_>) -> Result<Sent, ServiceError> {
        let base = self
            .0
            .config
            .base_url
            .clone()
            .ok_or(ServiceError::NoBaseUrl)?;
        let key = Key::generate().map_err(|_| ServiceError::Random)?;
        let text = otm_core::Zeroizing::new(text.to_owned());
        let passphrase = options.passphrase.cloned();
        let sealing_key = key.clone();
        let (envelope, secrets) = tokio::task::spawn_blocking(move || {
            let secrets = Secrets::derive(&sealing_key, passphrase.as_ref());
            otm_core::seal(&secrets, &text).map(|envelope| (envelope, secrets))
        })
        .await
        .map_err(|_| ServiceError::Random)?
        .map_err(|e| {
            self.failed(match e {
                otm_core::Error::Rng(_) => ServiceError::Random,
                otm_core::Error::MessageTooLong { .. } => {
                    ServiceError::invalid(ErrorCode::TooLarge, e.to_string())
                }
                e => ServiceError::invalid(ErrorCode::Invalid, e.to_string()),
            })
        })?;
        let stored = self
            .create(
                envelope,
                secrets.claim_verifier(),
                secrets.access_verifier(),
                options.ttl,
                options.reference,
            )
            .await?;
        let bad_base = |e: otm_core::Error| {
            ServiceError::invalid(ErrorCode::Invalid, format!("Config::base_url: {e}"))
        };
        Ok(Sent {
            link: Link::new(&base, stored.id, key, options.passphrase.is_some())
                .map_err(bad_base)?,
            manage_link: ManageLink::new(&base, stored.id, stored.manage_token)
                .map_err(bad_base)?,
            expires_at: stored.expires_at,
        })
    }

    /// Stores a sealed `envelope` with its claim and access verifiers, for
    /// `ttl` (`None`: [`Config::default_ttl`]; at most
    /// [`Config::max_ttl`]), with the sender's `reference` (1 to 256 bytes),
    /// under a fresh ID with a fresh management token.
    /// The envelope is checked against the format (header, padded size),
    /// never opened: the service cannot read it.
    pub async fn create(
        &self,
        envelope: Vec<u8>,
        verifier: ClaimVerifier,
        access: AccessVerifier,
        ttl: Option<Duration>,
        reference: Option<&str>,
    ) -> Result<Stored, ServiceError> {
        let new = NewEnvelope {
            envelope,
            verifier,
            access,
            ttl,
        };
        self.create_under(new, reference, None).await
    }

    /// [`create`](Service::create), with the management token derived from
    /// `secret` when there is one (see
    /// [`CreateLimits::manage_secret`](crate::policy::CreateLimits::manage_secret)).
    pub(crate) async fn create_under(
        &self,
        new: NewEnvelope,
        reference: Option<&str>,
        secret: Option<&ManageSecret>,
    ) -> Result<Stored, ServiceError> {
        let NewEnvelope {
            envelope,
            verifier,
            access,
            ttl,
        } = new;
        let ttl = self
            .check_create(&envelope, ttl, reference)
            .map_err(|e| self.failed(e))?;
        let expires_at = SystemTime::now() + ttl;
        // A 128-bit ID collides only by a broken RNG or on purpose; retry anyway.
        let mut attempts = 0;
        let (id, manage) = loop {
            let id = MessageId::generate().map_err(|_| ServiceError::Random)?;
            let manage = match secret {
                Some(secret) => secret.token_for(&id),
                None => ManageToken::generate().map_err(|_| ServiceError::Random)?,
            };
            let message = NewMessage {
                envelope: envelope.clone(),
                verifier,
                access,
                expires_at,
                manage: Some(manage.verifier()),
                reference: reference.map(str::to_owned),
            };
            match self.0.store.put(&id, message).await {
                Ok(()) => break (id, manage),
                Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
                Err(e) => return Err(self.failed(e.into())),
            }
        };
        self.0.metrics.count(Outcome::Created);
        self.0.events_wake.notify_one();
        tracing::info!(id = %id, bytes = envelope.len(), ttl_s = ttl.as_secs(), "message created");
        Ok(Stored {
            id,
            manage_token: manage,
            expires_at,
        })
    }

    /// The expiry of a create, once the envelope and `ttl` pass.
    fn check_create(
        &self,
        envelope: &[u8],
        ttl: Option<Duration>,
        reference: Option<&str>,
    ) -> Result<Duration, ServiceError> {
        if reference.is_some_and(|r| r.is_empty() || r.len() > MAX_REFERENCE_BYTES) {
            return Err(ServiceError::invalid(
                ErrorCode::BadReference,
                format!("reference must be 1 to {MAX_REFERENCE_BYTES} bytes"),
            ));
        }
        validate(envelope).map_err(|e| match e {
            otm_core::Error::TooLarge { .. } => {
                ServiceError::invalid(ErrorCode::TooLarge, e.to_string())
            }
            _ => ServiceError::invalid(ErrorCode::BadEnvelope, e.to_string()),
        })?;
        let config = &self.0.config;
        let ttl = match ttl {
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

    /// Hands the envelope to the holder of both proofs, exactly once, and
    /// deletes it. A wrong access proof is [`ServiceError::Gone`] with
    /// nothing counted; a wrong claim proof counts towards the limit.
    pub async fn open(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>, ServiceError> {
        match self.0.store.take(id, access, proof).await {
            Ok(envelope) => {
                self.0.metrics.count(Outcome::Opened);
                self.0.events_wake.notify_one();
                tracing::info!(id = %id, "message opened and deleted");
                Ok(envelope)
            }
            Err(e) => {
                if let StoreError::WrongProof { attempts_left: 0 } = e {
                    tracing::info!(id = %id, "message destroyed after too many wrong proofs");
                    self.0.events_wake.notify_one();
                }
                Err(self.failed(e.into()))
            }
        }
    }

    /// The sender's view of a message: waiting, opened, burned or expired,
    /// for the holder of its management token (compared in constant time).
    pub async fn status(
        &self,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<MessageStatus, ServiceError> {
        // An unknown ID is not counted as a failed open.
        let status = self.0.store.status(id).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::Gone,
            e => self.failed(e.into()),
        })?;
        match status.manage {
            Some(v) if v.verify(token) => Ok(status),
            _ => Err(ServiceError::WrongToken),
        }
    }

    /// Destroys a waiting message unread, for the holder of its management
    /// token, and returns its receipt (state `burned`). A message opened or
    /// burned already is [`ServiceError::NotWaiting`] with its receipt.
    pub async fn burn(
        &self,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<MessageStatus, ServiceError> {
        let status = self.status(id, token).await?;
        if status.state != MessageState::Waiting {
            return Err(ServiceError::NotWaiting(status));
        }
        match self.0.store.burn(id).await {
            Ok(()) => {
                self.0.metrics.count(Outcome::BurnedBySender);
                self.0.events_wake.notify_one();
                tracing::info!(id = %id, "message burned by its sender");
            }
            // Opened (or expired) between the status check and the delete.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(self.failed(e.into())),
        }
        let after = self
            .0
            .store
            .status(id)
            .await
            .map_err(|e| self.failed(e.into()))?;
        match after.state {
            MessageState::Burned => Ok(after),
            _ => Err(ServiceError::NotWaiting(after)),
        }
    }

    /// Starts delivering this instance's events (created, opened, burned,
    /// destroyed, expired) to `sink` from the store's outbox, until the
    /// returned [`Dispatcher`](crate::events::Dispatcher) is dropped; see
    /// [`events`](crate::events). The store must have been made with
    /// `StoreOptions::events` on, and its backend must keep an outbox.
    /// Several replicas may each run one on the same store.
    pub fn dispatch_events(
        &self,
        sink: Arc<dyn crate::events::EventSink>,
        config: crate::events::DispatchConfig,
    ) -> Result<crate::events::Dispatcher, ServiceError> {
        let store = &self.0.store;
        if !store.options().events || store.outbox().is_none() {
            return Err(ServiceError::NoEvents {
                backend: store.backend_name(),
            });
        }
        Ok(crate::events::spawn(
            Arc::clone(store),
            sink,
            config,
            Arc::clone(&self.0.metrics.events),
            Arc::clone(&self.0.events_wake),
        ))
    }

    /// Counts a failure in the metrics and passes it on.
    pub(crate) fn failed(&self, e: ServiceError) -> ServiceError {
        let outcome = match &e {
            ServiceError::Invalid { .. } => Outcome::BadRequest,
            ServiceError::Gone => Outcome::NotFound,
            ServiceError::WrongProof { attempts_left } => {
                if *attempts_left == 0 {
                    self.0.metrics.count(Outcome::Burned);
                }
                Outcome::WrongProof
            }
            ServiceError::Store(StoreError::Unavailable { .. }) => Outcome::StoreUnavailable,
            ServiceError::Store(StoreError::Backend { .. } | StoreError::NotImplemented { .. }) => {
                Outcome::InternalError
            }
            _ => return e,
        };
        self.0.metrics.count(outcome);
        e
    }
}
