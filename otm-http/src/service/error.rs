//! [`ServiceError`]: why a [`Service`](crate::Service) call failed.

use otm_core::ErrorCode;
use otm_store::StoreError;

use super::Receipt;

/// Why a [`Service`](crate::Service) call failed, or why it could not
/// start. [`ServiceError::code`] is the API's error code for it; the router
/// answers each with the status of that code
/// ([`ErrorCode::http_status`]), except [`ServiceError::WrongToken`], which
/// it answers exactly like [`ServiceError::Gone`] (404 `not_found`), so
/// that an ID alone tells nothing.
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
    /// Too many requests from this caller; try again after
    /// `retry_after_secs`.
    RateLimited {
        /// Seconds until the next request is allowed (at least 1).
        retry_after_secs: u64,
    },
    /// The create policy does not let this caller create (this message):
    /// `message` says why, for the caller.
    Denied {
        /// The policy's words.
        message: String,
    },
    /// The caller used up its quota of creates for the current window.
    QuotaExceeded {
        /// Creates allowed per window.
        max: u32,
        /// The window's length.
        per: std::time::Duration,
    },
    /// No such message: never created, opened, burned, expired, or asked
    /// for with a wrong access proof (none of these is told apart).
    Gone,
    /// A wrong claim proof (a wrong passphrase). At 0 the message was
    /// destroyed.
    WrongProof {
        /// Wrong proofs still allowed; the last of them destroys the
        /// message (0: it was just destroyed).
        attempts_left: u32,
    },
    /// The management token does not belong to the message. (The HTTP API
    /// answers it as `not_found`, like an unknown ID; [`ServiceError::code`]
    /// still says `wrong_token` for in-process callers.)
    WrongToken,
    /// A burn of a message that was already opened, burned or expired.
    NotWaiting(Receipt),
    /// [`Service::send`](crate::Service::send) needs
    /// [`Config::base_url`](crate::Config::base_url) to make links.
    NoBaseUrl,
    /// The store failed ([`StoreError::Unavailable`] is worth retrying).
    Store(StoreError),
    /// The operating system's random number generator failed.
    Random,
    /// At start: events were asked for ([`Config::with_events`](crate::Config::with_events)),
    /// but the store was not made with `StoreOptions::events` on, or its
    /// backend keeps no outbox.
    NoEvents {
        /// The store's backend.
        backend: &'static str,
    },
    /// At start: the store records events (`StoreOptions::events`), but
    /// nothing would deliver them, so its outbox would only grow. Give the
    /// service a sink ([`Config::with_events`](crate::Config::with_events)),
    /// or make the store with events off.
    EventsUndelivered {
        /// The store's backend.
        backend: &'static str,
    },
    /// A capability the configuration needs, and the store does not declare
    /// (at start; at a request only for a policy that did not say so).
    MissingCapability {
        /// The capability (`quotas`, `rates`, `requests`, `groups`).
        what: &'static str,
        /// The store's backend.
        backend: &'static str,
    },
    /// At start: a setting contradicts another.
    BadConfig {
        /// Which, and why.
        reason: String,
    },
    /// At start: [`Service::new`](crate::Service::new) runs background
    /// work, so it must be called within a Tokio runtime.
    NoRuntime,
}

impl ServiceError {
    /// The API's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid { code, .. } => *code,
            ServiceError::RateLimited { .. } => ErrorCode::RateLimited,
            ServiceError::Denied { .. } => ErrorCode::CreateDenied,
            ServiceError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ServiceError::Gone => ErrorCode::NotFound,
            ServiceError::WrongProof { .. } => ErrorCode::WrongProof,
            ServiceError::WrongToken => ErrorCode::WrongToken,
            ServiceError::NotWaiting(_) => ErrorCode::NotWaiting,
            ServiceError::Store(StoreError::Unavailable { .. }) => ErrorCode::StoreUnavailable,
            // What the HTTP answer says for the same store error
            // (`ApiError::from(StoreError)`).
            ServiceError::Store(StoreError::NotFound) => ErrorCode::NotFound,
            ServiceError::Store(StoreError::WrongProof { .. }) => ErrorCode::WrongProof,
            ServiceError::Store(StoreError::Conflict) => ErrorCode::Conflict,
            ServiceError::Store(StoreError::AlreadyAnswered) => ErrorCode::AlreadyAnswered,
            ServiceError::Store(StoreError::TooLarge { .. }) => ErrorCode::TooLarge,
            ServiceError::Store(StoreError::Invalid { .. }) => ErrorCode::Invalid,
            ServiceError::NoBaseUrl
            | ServiceError::Store(_)
            | ServiceError::Random
            | ServiceError::NoEvents { .. }
            | ServiceError::EventsUndelivered { .. }
            | ServiceError::BadConfig { .. }
            | ServiceError::NoRuntime => ErrorCode::Internal,
            ServiceError::MissingCapability {
                what: "requests" | "groups",
                ..
            } => ErrorCode::Unsupported,
            ServiceError::MissingCapability { .. } => ErrorCode::Internal,
        }
    }

    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Invalid { message, .. } | ServiceError::Denied { message } => {
                f.write_str(message)
            }
            ServiceError::RateLimited { retry_after_secs } => {
                write!(f, "too many requests; try again in {retry_after_secs} s")
            }
            ServiceError::QuotaExceeded { max, per } => write!(
                f,
                "you may create {max} messages per {}",
                humantime::format_duration(*per)
            ),
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
            ServiceError::EventsUndelivered { backend } => write!(
                f,
                "the {backend} store records events but nothing delivers them: give the \
                 service a sink (Config::with_events) or make the store with events off"
            ),
            ServiceError::BadConfig { reason } => f.write_str(reason),
            ServiceError::MissingCapability { what, backend } => {
                let needs = match *what {
                    "rates" => "shared rate limits (Config::shared_rate_limits) count rates",
                    "requests" => "requests for a secret are kept",
                    "groups" => "messages for several recipients are stored all or none",
                    _ => "the create policy counts quotas",
                };
                write!(
                    f,
                    "{needs} in the store, and the {backend} store cannot \
                     (BlobStore::{what} is None)"
                )
            }
            ServiceError::NoRuntime => {
                f.write_str("Service::new must be called within a Tokio runtime")
            }
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
