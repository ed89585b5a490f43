//! The API's error type: every failure becomes a JSON body
//! `{"error": code, "message": text}` with a precise 4xx status, or a generic
//! 5xx whose detail is logged, never sent.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use otm_core::api::ErrorBody;
use otm_core::ErrorCode;
use otm_store::StoreError;

use crate::ServiceError;

/// An error answered by the API: a code, whose HTTP status comes from the
/// one table ([`ErrorCode::http_status`]), and a message for people.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    attempts_left: Option<u32>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with a stable machine-readable code and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            attempts_left: None,
            retry_after_secs: None,
        }
    }

    /// 404: the one answer for never existed, expired, opened and burned.
    pub fn gone() -> Self {
        Self::new(
            ErrorCode::NotFound,
            "This message was already opened or has expired, or the link is not complete.",
        )
    }

    /// The same error with `prefix` in front of its message (naming the
    /// member of a group it concerns).
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }

    /// Adds a `Retry-After` of `secs`.
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The HTTP status: the code's ([`ErrorCode::http_status`]).
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            attempts_left: self.attempts_left,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::gone(),
            StoreError::WrongProof { attempts_left } => {
                let message = if attempts_left == 0 {
                    "Wrong passphrase. The message was destroyed after too many attempts."
                        .to_owned()
                } else {
                    format!("Wrong passphrase. {attempts_left} attempts left.")
                };
                let mut e = ApiError::new(ErrorCode::WrongProof, message);
                e.attempts_left = Some(attempts_left);
                e
            }
            StoreError::Conflict => ApiError::new(
                ErrorCode::Conflict,
                "A message with this ID already exists.",
            ),
            StoreError::AlreadyAnswered => ApiError::new(
                ErrorCode::AlreadyAnswered,
                "This request was already answered. If you did not answer it yourself, \
                 the request link may have reached someone else: tell the person who asked.",
            ),
            StoreError::TooLarge { len, max } => ApiError::new(
                ErrorCode::TooLarge,
                format!("The envelope is {len} bytes; the limit is {max}."),
            ),
            StoreError::Invalid { reason } => ApiError::new(ErrorCode::Invalid, reason),
            StoreError::Unavailable { ref source, .. } => {
                if source.is::<otm_store::BreakerOpen>() {
                    // The breaker logged when it opened; not once a request.
                    tracing::debug!(error = %err.with_sources(), "store unavailable");
                } else {
                    tracing::warn!(error = %err.with_sources(), "store unavailable");
                }
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "The message store is temporarily unavailable; try again shortly.",
                )
                .retry_after(2)
            }
            other => {
                tracing::error!(error = %other.with_sources(), "store error");
                ApiError::internal()
            }
        }
    }
}

impl ApiError {
    /// 500, with nothing of the cause (which is logged).
    fn internal() -> Self {
        ApiError::new(ErrorCode::Internal, "Internal error; it has been logged.")
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid { code, message } => ApiError::new(code, message),
            ServiceError::RateLimited { retry_after_secs } => ApiError::new(
                ErrorCode::RateLimited,
                format!("Too many requests; try again in {retry_after_secs} s."),
            )
            .retry_after(retry_after_secs),
            ServiceError::Denied { message } => ApiError::new(ErrorCode::CreateDenied, message),
            ServiceError::QuotaExceeded { max, per } => ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "You may create {max} messages per {}.",
                    humantime::format_duration(per)
                ),
            ),
            ServiceError::Gone => ApiError::gone(),
            ServiceError::WrongProof { attempts_left } => {
                StoreError::WrongProof { attempts_left }.into()
            }
            ServiceError::WrongToken => ApiError::new(
                ErrorCode::WrongToken,
                "This management token does not belong to this message.",
            ),
            ServiceError::NotWaiting(status) => ApiError::new(
                ErrorCode::NotWaiting,
                format!(
                    "The message is {} and can no longer be destroyed.",
                    status.state
                ),
            ),
            ServiceError::Store(e) => e.into(),
            ServiceError::MissingCapability {
                what: "requests",
                backend,
            } => ApiError::new(
                ErrorCode::Unsupported,
                format!("This server's store ({backend}) cannot keep requests for a secret."),
            ),
            other => {
                tracing::error!(error = %other, "service error");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON with Content-Type: application/json.",
            ),
            JsonRejection::JsonSyntaxError(_) => {
                ApiError::new(ErrorCode::BadJson, "The body is not valid JSON.")
            }
            // serde's text names the field and the expected type, not the value.
            JsonRejection::JsonDataError(e) => ApiError::new(ErrorCode::BadField, e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    ErrorCode::TooLarge,
                    "The request body is larger than the largest possible message.",
                )
            }
            other => ApiError::new(ErrorCode::BadBody, other.body_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_errors_are_4xx_or_5xx() {
        for code in ErrorCode::ALL {
            let status = ApiError::new(*code, "x").status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}: {status}"
            );
            assert_eq!(status.as_u16(), code.http_status());
        }
    }

    #[test]
    fn a_store_error_has_one_code_in_the_library_and_over_http() {
        let errors = || {
            vec![
                StoreError::NotFound,
                StoreError::Conflict,
                StoreError::AlreadyAnswered,
                StoreError::WrongProof { attempts_left: 2 },
                StoreError::TooLarge { len: 9, max: 8 },
                StoreError::Invalid { reason: "x" },
                StoreError::Unavailable {
                    op: "x",
                    source: "down".into(),
                },
                StoreError::Backend {
                    op: "x",
                    source: "broken".into(),
                },
            ]
        };
        for (for_service, for_http) in errors().into_iter().zip(errors()) {
            let name = format!("{for_service:?}");
            let code = crate::ServiceError::Store(for_service).code();
            assert_eq!(ApiError::from(for_http).code(), code, "{name}");
        }
    }
}
