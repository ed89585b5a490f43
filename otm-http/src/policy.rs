//! Who may create what. A [`CreatePolicy`] the host implements
//! [identifies](CreatePolicy::identify) who sent an HTTP request (from its
//! headers, and the extensions the host's own authentication middleware
//! put there) as a [`Caller`], and [decides](CreatePolicy::decide) each
//! create by that caller and what it asks for ([`CreateAsk`]): it refuses
//! (`403 create_denied`, with a message the compose page shows) or allows
//! within [`CreateLimits`] for this creator (a shorter expiry, a smaller
//! size, a required passphrase, a quota counted in the store). The same
//! decision is made for the host's own [`Service::send`](crate::Service::send)
//! and [`Service::create`](crate::Service::create), with the caller the host
//! passes ([`Caller::Server`] for its backend). Without a policy anyone may
//! create within the [`Config`](crate::Config) limits.
//!
//! A policy can also let a credential manage what it created: identify it
//! as a [`TokenHolder`](crate::TokenHolder) with a
//! [`manage`](crate::TokenHolder::manage) secret and allow with
//! [`CreateLimits::with_manage_secret`]: each message's management token is
//! then derived from the secret, and status and burn requests that present
//! the credential derive it again. otm-server's API tokens with the
//! `manage` scope work this way.
//!
//! ```
//! use otm_http::policy::{CreateAsk, CreateLimits, CreatePolicy, Decision, Refusal};
//! use otm_http::Caller;
//! use std::net::IpAddr;
//! use std::time::Duration;
//!
//! /// The host's login middleware inserts a `User` extension.
//! #[derive(Clone)]
//! struct User { name: String, admin: bool }
//!
//! struct SignedInOnly;
//!
//! #[async_trait::async_trait]
//! impl CreatePolicy for SignedInOnly {
//!     async fn identify(
//!         &self,
//!         request: &axum::http::request::Parts,
//!         client: IpAddr,
//!     ) -> Result<Caller, Refusal> {
//!         Ok(match request.extensions.get::<User>() {
//!             Some(user) => Caller::Identity(user.name.clone()),
//!             None => Caller::Anonymous(client),
//!         })
//!     }
//!
//!     async fn decide(&self, caller: &Caller, _ask: &CreateAsk<'_>) -> Decision {
//!         match caller {
//!             // The host's own backend, and its administrator.
//!             Caller::Server => Decision::allow(CreateLimits::default()),
//!             Caller::Identity(name) if name == "admin" => {
//!                 Decision::allow(CreateLimits::default())
//!             }
//!             Caller::Identity(_) => Decision::allow(
//!                 CreateLimits::default().with_max_ttl(Duration::from_secs(24 * 3600)),
//!             ),
//!             _ => Decision::deny("Sign in to create messages."),
//!         }
//!     }
//! }
//! let config = otm_http::Config::default().with_create_policy(SignedInOnly);
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::request::Parts;
use otm_core::ManageSecret;

use crate::caller::Caller;

/// Decides who may create, and within what.
#[async_trait]
pub trait CreatePolicy: Send + Sync + 'static {
    /// Who sent an HTTP request to create, show or burn: `request` is its
    /// head (headers, and extensions the host's middleware added),
    /// `client` its client address. Runs before the rate limit, for every
    /// create and for status and burn requests whose `Authorization: Bearer`
    /// value is not a management token, so keep it cheap. A [`Refusal`] answers the
    /// request at once (`403 create_denied` on a create, `401
    /// token_required` on status and burn), counted against the client's
    /// address. The default: [`Caller::Anonymous`] at `client`.
    async fn identify(&self, request: &Parts, client: IpAddr) -> Result<Caller, Refusal> {
        let _ = request;
        Ok(Caller::Anonymous(client))
    }

    /// Decides whether `caller` may create what it asks for. Asked after
    /// the caller's rate limit and before anything is checked or stored;
    /// the [`CreateLimits`] it allows within are checked right after, then
    /// the request as a whole, then the quota.
    async fn decide(&self, caller: &Caller, ask: &CreateAsk<'_>) -> Decision;

    /// Whether [`decide`](CreatePolicy::decide) may allow with a quota
    /// ([`CreateLimits::with_quota`]): then a store that cannot count
    /// quotas is refused when the service starts, rather than failing the
    /// first create that needs one. The default says no.
    fn counts_quotas(&self) -> bool {
        false
    }
}

/// What a create asks for, as a policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateAsk<'a> {
    /// The expiry asked for (`None`: the server's default).
    pub ttl: Option<Duration>,
    /// The sealed envelope's size in bytes (its padded size).
    pub envelope_bytes: usize,
    /// Whether the envelope says it is sealed with a passphrase too (`false`
    /// for an envelope that is not well formed, which is refused later).
    pub passphrase: bool,
    /// The creator's reference, if any.
    pub reference: Option<&'a str>,
    /// Whether this is a request for a secret (FORMAT.md §14: someone else
    /// will answer it through the request link) rather than a message.
    /// Then [`envelope_bytes`](CreateAsk::envelope_bytes) is the sealed
    /// note's size (one size for every note) and
    /// [`passphrase`](CreateAsk::passphrase) is `false` (the asker's
    /// passphrase, if any, is theirs alone). A policy that lets only known
    /// creators ask (a request page on a trusted domain is what a phishing
    /// page would want) denies it for the others.
    pub request: bool,
    /// How many messages this create stores: 1, or 2 to
    /// [`MAX_GROUP`](otm_core::MAX_GROUP) for one message to several
    /// recipients ([`Service::create_group`](crate::Service::create_group)).
    /// A group is one decision for all its members:
    /// [`envelope_bytes`](CreateAsk::envelope_bytes) is the largest
    /// member's and [`passphrase`](CreateAsk::passphrase) says whether
    /// every member has one. The quota counts each member.
    pub recipients: usize,
}

impl<'a> CreateAsk<'a> {
    /// An ask for an envelope of `envelope_bytes`, for the server's default
    /// expiry, without a passphrase or a reference (for a policy's tests).
    pub fn new(envelope_bytes: usize) -> Self {
        CreateAsk {
            ttl: None,
            envelope_bytes,
            passphrase: false,
            reference: None,
            request: false,
            recipients: 1,
        }
    }

    /// Sets [`CreateAsk::ttl`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`CreateAsk::passphrase`].
    pub fn with_passphrase(mut self, passphrase: bool) -> Self {
        self.passphrase = passphrase;
        self
    }

    /// Sets [`CreateAsk::reference`].
    pub fn with_reference(mut self, reference: &'a str) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Sets [`CreateAsk::recipients`].
    pub fn with_recipients(mut self, recipients: usize) -> Self {
        self.recipients = recipients;
        self
    }

    /// Sets [`CreateAsk::request`].
    pub fn with_request(mut self, request: bool) -> Self {
        self.request = request;
        self
    }
}

/// An identification that failed: a credential that is presented but not
/// valid here. Its message is shown to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why, for the client.
    pub message: String,
}

impl Refusal {
    /// A refusal with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
        }
    }
}

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Create, within these limits.
    Allow(CreateLimits),
    /// Refuse with `403` and this message (shown to the sender).
    Deny {
        /// Why, for the sender.
        message: String,
    },
}

impl Decision {
    /// [`Decision::Allow`].
    pub fn allow(limits: CreateLimits) -> Self {
        Decision::Allow(limits)
    }

    /// [`Decision::Deny`] with `message`.
    pub fn deny(message: impl Into<String>) -> Self {
        Decision::Deny {
            message: message.into(),
        }
    }
}

/// What one creator may do, on top of the server's own limits (the smaller
/// of the two applies). The default adds nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateLimits {
    /// Longest expiry this creator may choose.
    pub max_ttl: Option<Duration>,
    /// Largest envelope in bytes (the padded size: see `PADDING_BUCKETS`).
    /// (Not applied to requests for a secret: their notes all have one
    /// size, and the answer's size is the responder's.)
    pub max_envelope_bytes: Option<usize>,
    /// Whether the message must be sealed with a passphrase too (the
    /// envelope's header says so; the server cannot see the passphrase).
    /// (Not applied to requests for a secret: the passphrase that guards
    /// an answer is the asker's own choice, which the server cannot see.)
    pub passphrase_required: bool,
    /// How many messages this creator may create per period, counted in
    /// the store (atomically, so across replicas).
    pub quota: Option<Quota>,
    /// Derive each message's management token from this secret rather
    /// than draw it at random, so that the holder of the secret (an API
    /// token, say) can later show or burn the messages it created without
    /// keeping their tokens (see [`TokenHolder::manage`](crate::TokenHolder::manage)).
    /// The token is still returned at create.
    pub manage_secret: Option<ManageSecret>,
    /// Whether this creator may give a reference ([`CreateAsk::reference`]).
    /// `None`, the default: every caller but an anonymous one may (a
    /// reference names the host's own records, and events carry it, so a
    /// stranger must not choose one); an anonymous create with a
    /// reference is refused with `403 reference_not_allowed`.
    pub references: Option<bool>,
}

/// A creator's quota: `max` creates per `per`, in windows of that length
/// aligned to the Unix epoch, counted under `creator` in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Who is counted (a user or token name; any string).
    pub creator: String,
    /// Creates allowed per window.
    pub max: u32,
    /// The window's length.
    pub per: Duration,
}

impl CreateLimits {
    /// Sets [`CreateLimits::max_ttl`].
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = Some(max);
        self
    }

    /// Sets [`CreateLimits::max_envelope_bytes`].
    pub fn with_max_envelope_bytes(mut self, max: usize) -> Self {
        self.max_envelope_bytes = Some(max);
        self
    }

    /// Sets [`CreateLimits::quota`]: `max` creates per `per` for `creator`.
    pub fn with_quota(mut self, creator: impl Into<String>, max: u32, per: Duration) -> Self {
        self.quota = Some(Quota {
            creator: creator.into(),
            max,
            per,
        });
        self
    }

    /// Sets [`CreateLimits::references`]: whether this creator may give a
    /// reference, whoever it is.
    pub fn with_references(mut self, allowed: bool) -> Self {
        self.references = Some(allowed);
        self
    }

    /// Whether `caller` may give a reference under these limits.
    pub fn allows_reference(&self, caller: &Caller) -> bool {
        self.references
            .unwrap_or(!matches!(caller, Caller::Anonymous(_)))
    }

    /// Sets [`CreateLimits::manage_secret`].
    pub fn with_manage_secret(mut self, secret: ManageSecret) -> Self {
        self.manage_secret = Some(secret);
        self
    }

    /// Sets [`CreateLimits::passphrase_required`].
    pub fn with_passphrase_required(mut self, required: bool) -> Self {
        self.passphrase_required = required;
        self
    }
}

/// A policy in the [`Config`](crate::Config) (cheap to clone).
#[derive(Clone)]
pub struct SharedPolicy(pub(crate) Arc<dyn CreatePolicy>);

impl std::fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CreatePolicy(..)")
    }
}
