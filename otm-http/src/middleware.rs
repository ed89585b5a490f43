//! What every response passes through: the metrics' timing (from the
//! moment a request's body has arrived whole within the limits; a 408 or
//! 413 is not timed) and the security headers, in one layer ([`respond`]);
//! the whole request received within the timeout and the body limit before
//! any handler runs (a route layer: a request for no route is answered
//! without reading its body).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
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

/// What [`respond`] needs: the service (for its metrics) and whether to
/// send HSTS.
#[derive(Clone)]
pub(crate) struct Respond {
    pub(crate) otm: Service,
    pub(crate) hsts: bool,
}

/// The outermost layer of every router, one layer rather than two (each
/// layer is cloned and boxed for every request): times each request for
/// the metrics, by route kind only ([`receive_within`] marks each
/// response with its route's), then sets the security headers.
pub(crate) async fn respond(
    State(state): State<Respond>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let is_asset = request.uri().path().contains("/assets/");
    let mut response = next.run(request).await;
    observe(&state.otm, start, &response);
    security_headers(response.headers_mut(), is_asset, state.hsts);
    response
}

/// Counts `response` in the metrics under the route kind
/// [`receive_within`] marked it with (else `other`), timed from the
/// body's arrival (a slow client is not a slow server) or else from
/// `start`; a request refused for its body (408, 413) is not timed.
fn observe(otm: &Service, start: Instant, response: &Response) {
    let (start, route) = match response.extensions().get::<Received>() {
        Some(Received::At(at, route)) => (*at, *route),
        Some(Received::Refused) => return,
        None => (start, metrics::Route::Other),
    };
    otm.0
        .metrics
        .observe(route, response.status().as_u16(), start.elapsed());
}

/// When [`receive_within`] had the whole request and the kind of its
/// route, for [`observe`]; or that it refused it (408, 413: not timed).
#[derive(Clone, Copy)]
enum Received {
    At(Instant, metrics::Route),
    Refused,
}

/// The state of [`receive_within`] on one route: the time a request may
/// take to arrive, and the route's kind for the metrics.
#[derive(Clone, Copy)]
pub(crate) struct Receiving {
    pub(crate) timeout: std::time::Duration,
    pub(crate) route: metrics::Route,
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
/// message is never consumed without its reply being sent. The response
/// is marked with the route's kind for the metrics (so the mark follows
/// the route wherever it is mounted, at no further layer's cost).
pub(crate) async fn receive_within<const LIMIT: usize>(
    State(Receiving { timeout, route }): State<Receiving>,
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
            response
                .extensions_mut()
                .insert(Received::At(received, route));
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

/// Security headers on every response, besides [`NO_STORE`]; names and
/// values built once, at compile time.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 7] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ),
];

/// Cache headers of every response but static assets.
const NO_STORE: [(HeaderName, HeaderValue); 2] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (header::PRAGMA, HeaderValue::from_static("no-cache")),
];

/// Sets the security headers (and HSTS when `hsts`). Everything but static
/// assets is `no-store`: API answers and pages may carry or lead to
/// secrets.
fn security_headers(h: &mut HeaderMap, is_asset: bool, hsts: bool) {
    let extra: &[(HeaderName, HeaderValue)] = if is_asset { &[] } else { &NO_STORE };
    for (name, value) in SECURITY_HEADERS.iter().chain(extra) {
        h.insert(name.clone(), value.clone());
    }
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
}
