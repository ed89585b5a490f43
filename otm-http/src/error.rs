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

/// An error answered by the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    attempts_left: Option<u32>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with a status, a stable machine-readable code and a message for people.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            attempts_left: None,
            retry_after_secs: None,
        }
    }

    /// 400 with a code and message.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404: the one answer for never existed, expired, opened and burned.
    pub fn gone() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "This message was already opened or has expired, or the link is not complete.",
        )
    }

    /// 429 with a `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("Too many requests; try again in {retry_after_secs} s."),
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            attempts_left: self.attempts_left,
        };
        let mut response = (self.status, Json(body)).into_response();
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
                let mut e = ApiError::new(StatusCode::FORBIDDEN, ErrorCode::WrongProof, message);
                e.attempts_left = Some(attempts_left);
                e
            }
            StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                "A message with this ID already exists.",
            ),
            StoreError::TooLarge { len, max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("The envelope is {len} bytes; the limit is {max}."),
            ),
            StoreError::Invalid { reason } => ApiError::bad_request(ErrorCode::Invalid, reason),
            StoreError::Unavailable { ref source, .. } => {
                if source.is::<otm_store::BreakerOpen>() {
                    // The breaker logged when it opened; not once a request.
                    tracing::debug!(error = %err.with_sources(), "store unavailable");
                } else {
                    tracing::warn!(error = %err.with_sources(), "store unavailable");
                }
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "The message store is temporarily unavailable; try again shortly.",
                );
                e.retry_after_secs = Some(2);
                e
            }
            other => {
                tracing::error!(error = %other.with_sources(), "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "Internal error; it has been logged.",
                )
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid { code, message } => {
                let status = match code {
                    ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, code, message)
            }
            ServiceError::Gone => ApiError::gone(),
            ServiceError::WrongProof { attempts_left } => {
                StoreError::WrongProof { attempts_left }.into()
            }
            ServiceError::WrongToken => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::WrongToken,
                "This management token does not belong to this message.",
            ),
            ServiceError::NotWaiting(status) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NotWaiting,
                format!(
                    "The message is {} and can no longer be destroyed.",
                    status.state
                ),
            ),
            ServiceError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "service error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "Internal error; it has been logged.",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON with Content-Type: application/json.",
            ),
            JsonRejection::JsonSyntaxError(_) => {
                ApiError::bad_request(ErrorCode::BadJson, "The body is not valid JSON.")
            }
            // serde's text names the field and the expected type, not the value.
            JsonRejection::JsonDataError(e) => {
                ApiError::bad_request(ErrorCode::BadField, e.body_text())
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::TooLarge,
                    "The request body is larger than the largest possible message.",
                )
            }
            other => ApiError::new(other.status(), ErrorCode::BadBody, other.body_text()),
        }
    }
}
