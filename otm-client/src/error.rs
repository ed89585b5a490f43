//! The client's one error type: every API refusal as a typed variant (from
//! the server's [`ErrorCode`]), and what can go wrong on the way.

use std::time::Duration;

use otm_core::api::{ErrorBody, NotWaiting};
use otm_core::ErrorCode;
use reqwest::StatusCode;

use crate::Receipt;

/// A boxed error from the HTTP stack, kept as the source of [`Error::Unreachable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a [`Client`](crate::Client) call can fail with.
///
/// Messages never contain a key, proof, token or message text: the URLs the
/// client requests carry only the message ID.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `404 not_found`: the message was already opened, has expired, was
    /// burned or never existed, or the link's key does not fit it (a wrong
    /// access proof): the server gives one answer for all.
    #[error("the message was already opened or has expired, or the link is not complete")]
    Gone,
    /// `403 wrong_proof`: the link's key fits but the passphrase is wrong
    /// (or missing). With `attempts_left == 0` that was the last attempt:
    /// the message is destroyed.
    #[error("wrong passphrase ({attempts_left} attempts left)")]
    WrongProof {
        /// Wrong passphrases still allowed; the last of them destroys the
        /// message (0: it was just destroyed).
        attempts_left: u32,
    },
    /// `403 wrong_token`: the management token does not belong to the
    /// message. Only older servers answer so: this version answers a wrong
    /// token exactly like an unknown ID ([`Error::Gone`]).
    #[error("the management token does not belong to this message")]
    WrongToken,
    /// `409 not_waiting`: a burn of a message already opened, burned or expired.
    #[error("the message is {} and can no longer be destroyed", receipt.state)]
    NotWaiting {
        /// The message's status.
        receipt: Receipt,
    },
    /// `409 already_answered`: the request for a secret was answered
    /// already; this answer was not stored. If you did not answer it
    /// yourself, the request link may have reached someone else: tell the
    /// person who asked.
    #[error("the request was already answered; if you did not answer it, the request link may have reached someone else")]
    AlreadyAnswered,
    /// `429 rate_limited`: too many requests from this client.
    #[error("rate limited by the server{}", after(*retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// `503 store_unavailable` (or another 502/503/504): the server or its
    /// store is temporarily unavailable.
    #[error("the server is temporarily unavailable{}: {message}", after(*retry_after))]
    Unavailable {
        /// `store_unavailable` from otm; `None` from a proxy in front of it.
        code: Option<ErrorCode>,
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// The server's explanation.
        message: String,
    },
    /// Any other refusal the API documents, with its code.
    #[error("the server refused the request ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The machine-readable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with a redirect. The client never follows one: a
    /// redirected open or burn would hand a proof or token to another origin.
    #[error(
        "the server redirected ({status}) to {location:?}; otm-client does not follow redirects"
    )]
    Redirected {
        /// The HTTP status (3xx).
        status: u16,
        /// The `Location` header, when there is one.
        location: Option<String>,
    },
    /// No answer within the client's timeout.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server could not be reached (DNS, connection, TLS, a broken answer).
    #[error("cannot reach the otm server at {base}: {source}")]
    Unreachable {
        /// The server's base URL.
        base: String,
        /// What failed, with its causes.
        #[source]
        source: BoxError,
    },
    /// The server's answer is not what the API documents (not an otm server,
    /// or a broken one).
    #[error("unexpected answer from the server ({status}): {detail}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// [`Client::status_by_id`](crate::Client::status_by_id) or
    /// [`Client::burn_by_id`](crate::Client::burn_by_id) on a client built
    /// without an API token.
    #[error("managing a message by its ID needs an API token (ClientBuilder::api_token)")]
    NoApiToken,
    /// The base URL is not an `http` or `https` URL without query and fragment.
    #[error("invalid server URL: {0}")]
    InvalidBase(String),
    /// Sealing, opening or a link failed locally (see [`otm_core::Error`]):
    /// for example a message too long, or a wrong passphrase detected while
    /// decrypting.
    #[error(transparent)]
    Format(#[from] otm_core::Error),
}

fn after(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs()),
        None => String::new(),
    }
}

impl Error {
    /// The API's error code behind this error, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Gone => Some(ErrorCode::NotFound),
            Error::WrongProof { .. } => Some(ErrorCode::WrongProof),
            Error::WrongToken => Some(ErrorCode::WrongToken),
            Error::NotWaiting { .. } => Some(ErrorCode::NotWaiting),
            Error::AlreadyAnswered => Some(ErrorCode::AlreadyAnswered),
            Error::RateLimited { .. } => Some(ErrorCode::RateLimited),
            Error::Unavailable { code, .. } => *code,
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same request may succeed later unchanged: rate limits,
    /// unavailability, timeouts and unreachable servers.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Unavailable { .. }
                | Error::Timeout(_)
                | Error::Unreachable { .. }
        )
    }
}

/// The typed error of a refusal.
pub(crate) fn refusal(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Error {
    let code = status.as_u16();
    let Ok(error) = serde_json::from_slice::<ErrorBody>(body) else {
        // Not an otm error body: a proxy in front of the server, most likely.
        return match code {
            502..=504 => Error::Unavailable {
                code: None,
                retry_after,
                message: format!("HTTP {status} without an otm error body"),
            },
            429 => Error::RateLimited { retry_after },
            _ => Error::Unexpected {
                status: code,
                detail: format!("HTTP {status} without an otm error body"),
            },
        };
    };
    match error.error {
        ErrorCode::NotFound => Error::Gone,
        ErrorCode::WrongProof => match error.attempts_left {
            Some(attempts_left) => Error::WrongProof { attempts_left },
            None => Error::Unexpected {
                status: code,
                detail: "wrong_proof without attempts_left".into(),
            },
        },
        ErrorCode::WrongToken => Error::WrongToken,
        ErrorCode::NotWaiting => match serde_json::from_slice::<NotWaiting>(body)
            .map_err(|e| e.to_string())
            .and_then(|n| Receipt::from_wire(&n.status).map_err(|e| e.to_string()))
        {
            Ok(receipt) => Error::NotWaiting { receipt },
            Err(detail) => Error::Unexpected {
                status: code,
                detail: format!("not_waiting without a status: {detail}"),
            },
        },
        ErrorCode::AlreadyAnswered => Error::AlreadyAnswered,
        ErrorCode::RateLimited => Error::RateLimited { retry_after },
        ErrorCode::StoreUnavailable => Error::Unavailable {
            code: Some(ErrorCode::StoreUnavailable),
            retry_after,
            message: error.message,
        },
        other => Error::Refused {
            status: code,
            code: other,
            message: error.message,
        },
    }
}
