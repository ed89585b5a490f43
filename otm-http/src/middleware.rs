//! What every response passes through: the metrics' timing (from the
//! moment a request's body has arrived whole within the limits; a 408 or
//! 413 is not timed), the whole request received within the timeout and
//! the body limit before any handler runs (a route layer: a request for no
//! route is answered without reading its body), and the security headers.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use otm_core::ErrorCode;

use crate::error::ApiError;
use crate::metrics;
use crate::service::Service;

/// Content-Security-Policy of every response: no inline script or style,
/// nothing from elsewhere, no framing, and Trusted Types for every DOM
/// sink that parses HTML or runs script (the pages only set `textContent`,
/// so nothing may ever inject markup).
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'; require-trusted-types-for 'script'";

/// `Strict-Transport-Security` of every response when the configured base
/// URL is `https` ([`Config::base_url`](crate::Config::base_url)): browsers then refuse plain HTTP to
/// this host for a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Times each request for the metrics, by route kind only: the kind the
/// route marked its response with ([`mark`]), else `other`.
pub(crate) async fn observe(State(otm): State<Service>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    // Timed from the body's arrival: a slow client is not a slow server.
    let start = match response.extensions().get::<Received>() {
        Some(Received::At(at)) => *at,
        Some(Received::Refused) => return response,
        None => start,
    };
    let route = response
        .extensions()
        .get::<metrics::Route>()
        .copied()
        .unwrap_or(metrics::Route::Other);
    otm.0
        .metrics
        .observe(route, response.status().as_u16(), start.elapsed());
    response
}

/// Marks the responses of one route with its kind for [`observe`] (a
/// route layer, so the mark follows the route wherever it is mounted).
pub(crate) fn mark(
    route: metrics::Route,
) -> impl Fn(Response) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |mut response: Response| {
        response.extensions_mut().insert(route);
        std::future::ready(response)
    }
}

/// When [`receive_within`] had the whole request, for [`observe`]; or that
/// it refused it (408, 413: not timed).
#[derive(Clone, Copy)]
enum Received {
    At(Instant),
    Refused,
}

/// Lets at most a few requests at a time into the routes it wraps, the
/// others waiting their turn before their bodies are read: a group create's
/// body may be [`GROUP_BODY_LIMIT`](crate::GROUP_BODY_LIMIT) bytes, so
/// memory stays bounded by this count rather than by the connections.
pub(crate) async fn few_at_a_time(
    State(permits): State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match permits.acquire_owned().await {
        Ok(_permit) => next.run(request).await,
        // Never closed; answered as busy if it were.
        Err(_) => ApiError::new(
            ErrorCode::StoreUnavailable,
            "The server is busy; try again.",
        )
        .into_response(),
    }
}

/// Receives the whole request, body included, within the configured
/// timeout (else 408) and at most `LIMIT` bytes of body (else 413; a route
/// layer: [`API_BODY_LIMIT`](crate::API_BODY_LIMIT) on every route but a group create's), both as
/// JSON errors. Only then does the handler run, and it is not
/// cut short: a store operation that has begun (such as an atomic take)
/// always gets to answer, bounded by the store's own timeouts, so a
/// message is never consumed without its reply being sent.
pub(crate) async fn receive_within<const LIMIT: usize>(
    State(timeout): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, LIMIT);
    let mut refused = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            let received = Instant::now();
            let mut response = next.run(Request::from_parts(parts, body)).await;
            response.extensions_mut().insert(Received::At(received));
            return response;
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => ApiError::new(
            ErrorCode::TooLarge,
            "The request body is larger than the largest possible message.",
        )
        .into_response(),
        Ok(Err(_)) => {
            ApiError::new(ErrorCode::BadBody, "The request body could not be read.").into_response()
        }
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            "The request took too long to arrive; send it again.",
        )
        .into_response(),
    };
    refused.extensions_mut().insert(Received::Refused);
    refused
}

/// Security headers on every response, besides [`NO_STORE`].
pub(crate) const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    ),
];

/// Cache headers of every response but static assets.
pub(crate) const NO_STORE: [(&str, &str); 2] =
    [("cache-control", "no-store"), ("pragma", "no-cache")];

/// Security headers on every response (and HSTS when `hsts`). Everything
/// but static assets is `no-store`: API answers and pages may carry or lead
/// to secrets.
pub(crate) async fn security_headers(
    State(hsts): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let is_asset = request.uri().path().contains("/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let extra: &[(&str, &str)] = if is_asset { &[] } else { &NO_STORE };
    for (name, value) in SECURITY_HEADERS.iter().chain(extra) {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
    response
}
