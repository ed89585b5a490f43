//! [`Service`]: otm's server side as one type. It holds the store (behind
//! its circuit breaker), the limits and the counters, runs what a correct
//! deployment needs in the background (the purge of expired messages, the
//! delivery of events), and does every step of every operation: create
//! ([`create`](Service::create), and [`send`](Service::send), which seals a
//! message in this process for a host whose own backend mints links), open,
//! status and burn. Each takes the [`Caller`]; the router's handlers only
//! decode a request, say who sent it, call the service and encode the
//! answer, so the browser's path and the host's own path run the same
//! rules in the same order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use otm_core::api::PublicConfig;
use otm_core::{
    AccessProof, ClaimProof, ErrorCode, Key, Link, ManageLink, ManageToken, MessageId, Secrets,
    SendOptions, Sent, MAX_ENVELOPE_LEN, MAX_MESSAGE_CHARS,
};
use otm_store::{BlobStore, Breaker, MessageState, MessageStatus, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::caller::Caller;
use crate::metrics::{Metrics, Outcome};
use crate::{limit, Config};

mod create;
mod error;
mod groups;
mod requests;

pub use create::Create;
pub use error::ServiceError;
pub use groups::{CreateGroup, Sealed, StoredGroup};
pub use requests::{Ask, Asked, RequestReceipt, RequestView};

/// The state every router of one service shares.
pub(crate) struct Shared {
    /// The store, behind `breaker` when there is one.
    pub(crate) store: Arc<dyn BlobStore>,
    /// The circuit breaker the service put in front of the store.
    breaker: Option<Arc<Breaker>>,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    create_limiter: limit::Limiter,
    open_limiter: limit::Limiter,
    /// Whether the untrusted `X-Forwarded-For` warning was logged.
    pub(crate) forwarding_warned: std::sync::atomic::AtomicBool,
    /// The last readiness answer and when it was found (see
    /// [`READINESS_CACHE`](crate::READINESS_CACHE)).
    pub(crate) readiness: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Wakes this instance's dispatcher after a change, so an event waits
    /// for the next poll only when another replica made it.
    events_wake: Arc<tokio::sync::Notify>,
    /// Tells the background tasks to stop ([`Service::shutdown`]).
    stop: watch::Sender<bool>,
    /// The background tasks: the purger, the event dispatcher.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    /// The last handle of the service is gone: its tasks end with it (a
    /// host that wants them to finish their work calls
    /// [`Service::shutdown`] first).
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().map(std::mem::take).unwrap_or_default();
        for task in tasks {
            task.abort();
        }
    }
}

/// One otm instance: a store, its [`Config`], the rate limiters, the
/// metrics and its background work. Cheap to clone (one `Arc`); every clone
/// is the same instance.
///
/// [`Service::new`] starts what a correct deployment needs: the purge of
/// expired messages, for stores that keep them until removed, and, with
/// [`Config::with_events`], the delivery of events. They run as long as the
/// service (any clone of it, its routers included) lives;
/// [`shutdown`](Service::shutdown) stops them and waits for work in flight.
///
/// Serve it with [`router`](Service::router) (and the operator endpoints
/// with [`admin_router`](Service::admin_router), on an address only
/// operators reach) and call it from your own code at the same time: a
/// message your backend [`send`](Service::send)s goes through the same
/// pipeline as one a browser creates.
///
/// ```no_run
/// use std::sync::Arc;
/// use otm_core::SendOptions;
/// use otm_http::{Caller, Config, Service};
/// use otm_store::{MemoryStore, StoreOptions};
///
/// # async fn run() -> Result<(), otm_http::ServiceError> {
/// let store = Arc::new(MemoryStore::new(StoreOptions::default()));
/// let otm = Service::new(store, Config::default().with_base_url("https://example.com/secrets"))?;
/// let app: axum::Router = axum::Router::new().nest("/secrets", otm.router());
///
/// // In a handler of your own: mint a link for a user.
/// let sent = otm.send(&Caller::Server, "your initial password: 7fW#q2", &SendOptions::new()).await?;
/// println!("{}", sent.link.to_url().as_str()); // https://example.com/secrets/otm/…#key=…
/// let receipt = otm.status(&Caller::Server, &sent.manage_link.id, &sent.manage_link.token).await?;
/// assert_eq!(receipt.state, otm_store::MessageState::Waiting);
///
/// // When the host stops: finish deliveries in flight, stop the purger.
/// otm.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Service(pub(crate) Arc<Shared>);

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.0.store.backend_name())
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// What a sender learns of a message ([`Service::status`],
/// [`Service::burn`]): its state and when it changed, never its envelope
/// nor anything that checks a token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// Waiting, opened, burned or expired.
    pub state: MessageState,
    /// The message's (original) expiry; the receipt lives until then.
    pub expires_at: SystemTime,
    /// When it was opened or burned, where known.
    pub changed_at: Option<SystemTime>,
    /// Who created it, as the service established it (`None` for messages
    /// stored before otm kept it).
    pub creator: Option<otm_core::Creator>,
    /// The creator's reference, if one was given.
    pub reference: Option<String>,
}

impl From<MessageStatus> for Receipt {
    fn from(s: MessageStatus) -> Self {
        Receipt {
            state: s.state,
            expires_at: s.expires_at,
            changed_at: s.changed_at,
            creator: s.creator,
            reference: s.reference,
        }
    }
}

/// The operations a rate limit counts: creates apart from the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create (and send).
    Create,
    /// Open, status and burn.
    Read,
}

impl Service {
    /// An instance on `store` with `config`, started: the store is put
    /// behind a circuit breaker as [`Config::store_breaker`] says (give the
    /// plain store: the service composes the breaker), the purge of expired messages runs every
    /// [`Config::purge_interval`] when the store keeps expired messages,
    /// and with [`Config::with_events`] the events are delivered.
    ///
    /// Fails, before anything starts, when called outside a Tokio runtime,
    /// when the store records events that nothing would deliver (or events
    /// are asked for from a store that records none), when the dispatch
    /// settings contradict each other, or when the create policy counts
    /// quotas ([`CreatePolicy::counts_quotas`](crate::policy::CreatePolicy::counts_quotas))
    /// and the store declares none ([`BlobStore::quotas`]), or when
    /// [`Config::shared_rate_limits`] is on and the store declares no
    /// rates ([`BlobStore::rates`]).
    pub fn new(store: Arc<dyn BlobStore>, config: Config) -> Result<Service, ServiceError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServiceError::NoRuntime)?;
        let records = store.options().events && store.outbox().is_some();
        match (&config.events, records) {
            (Some(_), false) => {
                return Err(ServiceError::NoEvents {
                    backend: store.backend_name(),
                })
            }
            (None, true) => {
                return Err(ServiceError::EventsUndelivered {
                    backend: store.backend_name(),
                })
            }
            _ => {}
        }
        if let Some(events) = &config.events {
            events
                .dispatch
                .validate()
                .map_err(|reason| ServiceError::BadConfig { reason })?;
        }
        let policy_counts = config
            .create_policy
            .as_ref()
            .is_some_and(|p| p.0.counts_quotas());
        if policy_counts && store.quotas().is_none() {
            return Err(ServiceError::MissingCapability {
                what: "quotas",
                backend: store.backend_name(),
            });
        }
        if config.shared_rate_limits && store.rates().is_none() {
            return Err(ServiceError::MissingCapability {
                what: "rates",
                backend: store.backend_name(),
            });
        }
        let breaker = config
            .store_breaker
            .clone()
            .map(|c| Arc::new(Breaker::new(store.clone(), c)));
        let store = match &breaker {
            Some(b) => Arc::clone(b) as Arc<dyn BlobStore>,
            None => store,
        };
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            breaker,
            create_limiter: limit::Limiter::new(config.create_limit),
            open_limiter: limit::Limiter::new(config.open_limit),
            config,
            metrics: Metrics::default(),
            forwarding_warned: std::sync::atomic::AtomicBool::new(false),
            readiness: tokio::sync::Mutex::new(None),
            events_wake: Arc::default(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = Vec::new();
        if shared.store.purger().is_some() {
            tasks.push(runtime.spawn(purge(
                Arc::clone(&shared.store),
                shared.config.purge_interval,
                shared.stop.subscribe(),
            )));
        }
        if let Some(events) = &shared.config.events {
            tasks.push(runtime.spawn(crate::events::dispatch(
                Arc::clone(&shared.store),
                Arc::clone(&events.sink.0),
                events.dispatch.clone(),
                Arc::clone(&shared.metrics.events),
                Arc::clone(&shared.events_wake),
                shared.stop.subscribe(),
            )));
            tracing::info!(
                backend = shared.store.backend_name(),
                "event delivery started"
            );
        }
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(Service(shared))
    }

    /// Stops the background work and waits for it: a batch of events being
    /// delivered is finished and marked, one more batch of the events due
    /// is delivered, then the dispatcher and the purger end. The routers keep answering (stop serving them first); calling
    /// this twice is harmless.
    pub async fn shutdown(&self) {
        let _ = self.0.stop.send(true);
        let tasks = std::mem::take(&mut *self.0.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The store, behind its breaker.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.0.store
    }

    /// The circuit breaker in front of the store, when
    /// [`Config::store_breaker`] asks for one.
    pub fn breaker(&self) -> Option<&Breaker> {
        self.0.breaker.as_deref()
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
            max_recipients: if self.0.store.groups().is_some() {
                otm_core::MAX_GROUP as u32
            } else {
                0
            },
        }
    }

    /// Counts one request of `caller` against the rate limit of `op`
    /// ([`Caller::Server`] is not limited): in this process, or in the
    /// store with [`Config::shared_rate_limits`]. Every public operation
    /// starts with it; the router calls it itself only for requests it
    /// refuses before reaching the service (malformed ones), so that those
    /// count too.
    pub(crate) async fn admit(&self, caller: &Caller, op: Op) -> Result<(), ServiceError> {
        let Some(key) = caller.rate_key() else {
            return Ok(());
        };
        let (limiter, limit, name) = match op {
            Op::Create => (&self.0.create_limiter, self.0.config.create_limit, "create"),
            Op::Read => (&self.0.open_limiter, self.0.config.open_limit, "open"),
        };
        let refused = match self
            .0
            .store
            .rates()
            .filter(|_| self.0.config.shared_rate_limits)
        {
            None => limiter.check(key).err(),
            Some(rates) => {
                let interval = Duration::from_secs(60) / limit.per_minute.max(1);
                rates
                    .count_rate(&format!("{name}:{key}"), limit.burst, interval)
                    .await
                    .map_err(|e| self.failed(e.into()))?
                    .map(limit::retry_after_secs)
            }
        };
        match refused {
            None => Ok(()),
            Some(retry_after_secs) => {
                self.0.metrics.count(Outcome::RateLimited);
                Err(ServiceError::RateLimited { retry_after_secs })
            }
        }
    }

    /// Seals `text` in this process with a fresh key (and the passphrase of
    /// `options`), creates it for `caller` like [`create`](Service::create)
    /// (the same rate limit, policy decision, limits, checks and quota),
    /// and returns the share link and the sender's status link, both on
    /// [`Config::base_url`]. The key leaves this call only inside
    /// [`Sent::link`]; the store sees ciphertext and verifiers, as with a
    /// browser. The key derivation (PBKDF2 when there is a passphrase) runs
    /// on a blocking thread, not on the async runtime.
    ///
    /// The host's own backend passes [`Caller::Server`]; a host acting for
    /// one of its users may pass that user's [`Caller::Identity`] instead,
    /// so that the user's limits apply.
    pub async fn send(
        &self,
        caller: &Caller,
        text: &str,
        options: &SendOptions<'_>,
    ) -> Result<Sent, ServiceError> {
        let base = self.base_url()?;
        // Before the sealing, which costs more than anything after it.
        self.admit(caller, Op::Create).await?;
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
        .map_err(|e| self.sealing_failed(e))?;
        let mut request = Create::new(
            envelope,
            secrets.claim_verifier(),
            secrets.access_verifier(),
        );
        request.ttl = options.ttl;
        request.reference = options.reference.map(str::to_owned);
        let stored = self.create_admitted(caller, request).await?;
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

    /// [`Config::base_url`], which links made in this process need.
    fn base_url(&self) -> Result<String, ServiceError> {
        self.0
            .config
            .base_url
            .clone()
            .ok_or(ServiceError::NoBaseUrl)
    }

    /// A failed sealing in this process as the service answers it.
    fn sealing_failed(&self, e: otm_core::Error) -> ServiceError {
        self.failed(match e {
            otm_core::Error::Rng(_) => ServiceError::Random,
            otm_core::Error::MessageTooLong { .. } => {
                ServiceError::invalid(ErrorCode::TooLarge, e.to_string())
            }
            e => ServiceError::invalid(ErrorCode::Invalid, e.to_string()),
        })
    }

    /// Hands the envelope to the holder of both proofs, exactly once, and
    /// deletes it. A wrong access proof is [`ServiceError::Gone`] with
    /// nothing counted; a wrong claim proof counts towards the limit.
    pub async fn open(
        &self,
        caller: &Caller,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>, ServiceError> {
        self.admit(caller, Op::Read).await?;
        match self.0.store.take(id, access, proof).await {
            Ok(envelope) => {
                self.0.metrics.count(Outcome::Opened);
                self.changed();
                tracing::info!(id = %id, "message opened and deleted");
                Ok(envelope)
            }
            Err(e) => {
                if let StoreError::WrongProof { attempts_left: 0 } = e {
                    tracing::info!(id = %id, "message destroyed after too many wrong proofs");
                    self.changed();
                }
                Err(self.failed(e.into()))
            }
        }
    }

    /// The sender's view of a message: waiting, opened, burned or expired,
    /// for the holder of its management token (compared in constant time).
    pub async fn status(
        &self,
        caller: &Caller,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<Receipt, ServiceError> {
        self.admit(caller, Op::Read).await?;
        self.checked_status(id, token).await
    }

    /// [`status`](Service::status) once admitted.
    async fn checked_status(
        &self,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<Receipt, ServiceError> {
        // An unknown ID is not counted as a failed open.
        let status = self.0.store.status(id).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::Gone,
            e => self.failed(e.into()),
        })?;
        match &status.manage {
            Some(v) if v.verify(token) => Ok(status.into()),
            _ => Err(ServiceError::WrongToken),
        }
    }

    /// Destroys a waiting message unread, for the holder of its management
    /// token, and returns its receipt (state `burned`). A message opened or
    /// burned already is [`ServiceError::NotWaiting`] with its receipt.
    pub async fn burn(
        &self,
        caller: &Caller,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<Receipt, ServiceError> {
        self.admit(caller, Op::Read).await?;
        self.checked_burn(id, token).await
    }

    /// [`burn`](Service::burn) once admitted.
    async fn checked_burn(
        &self,
        id: &MessageId,
        token: &ManageToken,
    ) -> Result<Receipt, ServiceError> {
        let status = self.checked_status(id, token).await?;
        if status.state != MessageState::Waiting {
            return Err(ServiceError::NotWaiting(status));
        }
        match self.0.store.burn(id).await {
            Ok(()) => {
                self.0.metrics.count(Outcome::BurnedBySender);
                self.changed();
                tracing::info!(id = %id, "message burned by its sender");
            }
            // Opened (or expired) between the status check and the delete.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(self.failed(e.into())),
        }
        let after: Receipt = self
            .0
            .store
            .status(id)
            .await
            .map_err(|e| self.failed(e.into()))?
            .into();
        match after.state {
            MessageState::Burned => Ok(after),
            _ => Err(ServiceError::NotWaiting(after)),
        }
    }

    /// Up to `max` events whose deliveries all failed, kept in the store's
    /// outbox as dead letters (oldest first), for an operator to look at.
    /// [`ServiceError::NoEvents`] for a store that records no events.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<otm_store::Event>, ServiceError> {
        self.outbox()?
            .dead_letters(max)
            .await
            .map_err(ServiceError::from)
    }

    /// Makes every dead letter due again, its attempts counted from 0 (once
    /// the receiver is back); how many. Any replica's dispatcher delivers
    /// them.
    pub async fn replay_dead_letters(&self) -> Result<u64, ServiceError> {
        let n = self.outbox()?.replay_dead_letters().await?;
        self.changed();
        Ok(n)
    }

    /// The store's outbox, when it records events.
    fn outbox(&self) -> Result<&dyn otm_store::Outbox, ServiceError> {
        let store = &self.0.store;
        match store.outbox() {
            Some(outbox) if store.options().events => Ok(outbox),
            _ => Err(ServiceError::NoEvents {
                backend: store.backend_name(),
            }),
        }
    }

    /// Counts a request the router refused as malformed.
    pub(crate) fn count_bad_request(&self) {
        self.0.metrics.count(Outcome::BadRequest);
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
            ServiceError::QuotaExceeded { .. } => Outcome::RateLimited,
            ServiceError::Store(StoreError::Unavailable { .. }) => Outcome::StoreUnavailable,
            ServiceError::Store(StoreError::Backend { .. } | StoreError::NotImplemented { .. }) => {
                Outcome::InternalError
            }
            _ => return e,
        };
        self.0.metrics.count(outcome);
        e
    }

    /// Wakes this instance's dispatcher after a change.
    fn changed(&self) {
        self.0.events_wake.notify_one();
    }

    /// The metrics in Prometheus' text format.
    pub(crate) fn render_metrics(&self) -> String {
        self.0
            .metrics
            .render(self.0.store.backend_name(), self.0.breaker.as_deref())
    }
}

/// Runs the store's purge of expired messages every `every` until `stop`.
/// Errors are logged and retried at the next tick.
async fn purge(store: Arc<dyn BlobStore>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let Some(purger) = store.purger() else { return };
        match purger.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                backend = store.backend_name(),
                purged = n,
                "purged expired messages"
            ),
            Err(err) => tracing::warn!(
                backend = store.backend_name(),
                error = %err.with_sources(),
                "purge failed; retrying at the next tick"
            ),
        }
    }
}
