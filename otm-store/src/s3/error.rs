//! Mapping the SDK's errors to [`StoreError`]: retryable failures become
//! `Unavailable`, the rest `Backend`.

use super::*;

pub(super) type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// A failed S3 call, kept until the caller knows what it was doing.
pub(super) struct S3Err {
    retryable: bool,
    source: crate::BoxError,
}

impl S3Err {
    pub(super) fn into_store(self, op: &'static str) -> StoreError {
        StoreError::driver(op, self.retryable, self.source)
    }
}

impl<E> From<SdkError<E, HttpResponse>> for S3Err
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(e: SdkError<E, HttpResponse>) -> Self {
        S3Err {
            retryable: retryable(&e),
            source: Box::new(e),
        }
    }
}

pub(super) fn is_status<E>(e: &SdkError<E, HttpResponse>, code: u16) -> bool {
    matches!(e, SdkError::ServiceError(_))
        && e.raw_response().map(|r| r.status().as_u16()) == Some(code)
}

pub(super) fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    // A missing bucket is a configuration error, not a missing message.
    e.code() != Some("NoSuchBucket")
        && (is_status(e, 404) || matches!(e.code(), Some("NoSuchKey" | "NotFound")))
}

pub(super) fn retryable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            [429, 500, 502, 503, 504].iter().any(|c| is_status(e, *c))
                || matches!(
                    e.code(),
                    Some(
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "ServiceUnavailable"
                    )
                )
        }
        _ => false,
    }
}

pub(super) fn classify<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    S3Err::from(e).into_store(op)
}
