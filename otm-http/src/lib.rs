//! # otm-http
//!
//! otm's HTTP side: the JSON API, the browser app (plain ES modules with
//! WebCrypto, compiled into the library), health checks and metrics, as one
//! axum [`Router`] that any application can mount. It is a library only: the
//! reference server is the `otm-server` crate, and the store backends are
//! chosen with otm-store's cargo features (`otm_store::connect` opens one
//! from a URL).
//!
//! ```toml
//! [dependencies]
//! otm-http = "0.1"                                          # router + `serve`
//! otm-store = { version = "0.1", features = ["postgres"] }  # the backends you use
//! ```
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use otm_store::{MemoryStore, StoreOptions};
//!
//! # async fn run() -> std::io::Result<()> {
//! let store = Arc::new(MemoryStore::new(StoreOptions::default()));
//! let app: Router = Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/secrets", otm_http::router(store, otm_http::Config::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // Bounded connections (count, header timeout, head size), per-client
//! // rate limits from the peer address, graceful shutdown on Ctrl-C.
//! let limits = otm_http::ConnectionLimits::default();
//! otm_http::serve(listener, app, limits, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! To send messages from the host's own backend as well (sealed in this
//! process; links minted for users), make a [`Service`], mount its
//! [`router`](Service::router) and call [`Service::send`]: both paths go
//! through the same checks, store and counters. To act on what happens
//! (opened, burned, …), see [`events`] and [`Service::dispatch_events`].
//!
//! `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`
//! works too, but bounds nothing: see [`serve`](mod@serve) (feature `serve`,
//! on by default) for why the reference server does not use it.
//!
//! Routes (relative to where the router is mounted):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | compose page |
//! | `GET /otm/{id}` | reveal page (never consumes anything) |
//! | `GET /about` | how it works, FAQ |
//! | `GET /assets/{file}` | scripts and styles |
//! | `GET /api/v1/config` | limits and expiry choices |
//! | `POST /api/v1/messages` | create |
//! | `POST /api/v1/messages/{id}/open` | open once, with the claim proof |
//! | `GET /api/v1/messages/{id}` | status (read receipt), with the sender's token |
//! | `DELETE /api/v1/messages/{id}` | burn unread, with the sender's token |
//! | `GET /manage/{id}` | the sender's status page (token in the fragment) |
//! | `GET /api/v1/openapi.json` | the OpenAPI document |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (checks the store) |
//! | `GET /metrics` | Prometheus metrics |

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use otm_store::BlobStore;

mod api;
mod config;
mod error;
pub mod events;
mod limit;
mod metrics;
mod pages;
pub mod policy;
#[cfg(feature = "serve")]
pub mod serve;
mod service;
#[cfg(feature = "webhooks")]
pub mod webhook;

pub use config::{Config, IpNet, RateLimit};
pub use error::ApiError;
/// The API's error codes ([`ApiError::code`]), from `otm_core::api`.
pub use otm_core::ErrorCode;
#[cfg(feature = "serve")]
pub use serve::{serve, ConnectionLimits};
pub use service::{Service, ServiceError};

/// The OpenAPI document of the JSON API (also in `docs/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// Largest request body the API reads: a maximum envelope in base64url plus
/// the JSON around it.
pub const API_BODY_LIMIT: usize = api::MAX_ENVELOPE_B64 + 1024;

/// Content-Security-Policy of every response: no inline script or style,
/// nothing from elsewhere, no framing, and Trusted Types for every DOM
/// sink that parses HTML or runs script (the pages only set `textContent`,
/// so nothing may ever inject markup).
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'; require-trusted-types-for 'script'";

/// `Strict-Transport-Security` of every response when the configured base
/// URL is `https` ([`Config::base_url`]): browsers then refuse plain HTTP to
/// this host for a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// How long a readiness answer is reused: a scraper polling `/readyz` as
/// fast as it likes makes at most one store round trip per this period.
pub const READINESS_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// The whole otm HTTP surface as a router for any host state `S`: mount it
/// with `.nest("/prefix", otm_http::router(..))` or serve it directly.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` for
/// per-client rate limits; without connection info all clients share one
/// bucket.
///
/// The failed-attempt limit browsers are told (`/api/v1/config`) is the
/// store's own ([`BlobStore::options`]). The router puts a circuit breaker
/// ([`otm_store::Breaker`]) in front of the store as [`Config::store_breaker`]
/// says, unless `store` already is one ([`BlobStore::breaker`]): then it uses
/// that one, so a store is never behind two breakers.
///
/// To call the same instance from your own code too (a backend that sends
/// messages, say), make a [`Service`] and take its
/// [`router`](Service::router): this function is
/// `Service::new(store, config).router()`.
pub fn router<S>(store: Arc<dyn BlobStore>, config: Config) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Service::new(store, config).router()
}

pub(crate) fn routes<S>(otm: Service) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Layers::of(&otm).apply(
        public_routes()
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text)),
        otm,
    )
}

/// The router of [`router`] split in two on one state: the public surface
/// (pages, API, `/healthz`) without the operator endpoints, and an admin
/// router with `/metrics`, `/readyz` and `/healthz`. Serve the admin router
/// on an address only operators and their scrapers reach: the public
/// listener then neither shows live counters nor lets anyone make the
/// server call its store.
pub fn router_with_admin<S>(store: Arc<dyn BlobStore>, config: Config) -> (Router<S>, Router<S>)
where
    S: Clone + Send + Sync + 'static,
{
    Service::new(store, config).router_with_admin()
}

pub(crate) fn routes_with_admin<S>(otm: Service) -> (Router<S>, Router<S>)
where
    S: Clone + Send + Sync + 'static,
{
    let layers = Layers::of(&otm);
    let admin = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    (
        layers.clone().apply(public_routes(), otm.clone()),
        layers.apply(admin, otm),
    )
}

/// What every router of one state is wrapped in.
#[derive(Clone)]
struct Layers {
    timeout: std::time::Duration,
    hsts: bool,
}

impl Layers {
    fn of(otm: &Service) -> Layers {
        let config = otm.config();
        let hsts = config.base_url.as_deref().is_some_and(|b| {
            b.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        Layers {
            timeout: config.request_timeout,
            hsts,
        }
    }

    fn apply<S>(self, routes: Router<Service>, otm: Service) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        routes
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
            .layer(middleware::from_fn_with_state(otm.clone(), observe))
            .layer(middleware::from_fn_with_state(self.timeout, receive_within))
            .layer(middleware::from_fn_with_state(self.hsts, security_headers))
            .with_state(otm)
    }
}

/// The pages, the API and `/healthz`.
fn public_routes() -> Router<Service> {
    Router::new()
        .route("/api/v1/config", get(api::config))
        .route("/api/v1/messages", post(api::create))
        .route("/api/v1/messages/{id}/open", post(api::open))
        .route("/api/v1/messages/{id}", get(api::status).delete(api::burn))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/", get(pages::compose))
        .route("/about", get(pages::about))
        .route("/otm/{id}", get(pages::reveal))
        .route("/manage/{id}", get(pages::manage))
        .route("/assets/{file}", get(pages::asset))
        .route("/healthz", get(healthz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Whether the store answers, reusing an answer younger than
/// [`READINESS_CACHE`]; callers arriving during a check wait for it.
async fn store_ready(otm: &Service) -> bool {
    let mut last = otm.0.readiness.lock().await;
    if let Some((at, ready)) = *last {
        if at.elapsed() < READINESS_CACHE {
            return ready;
        }
    }
    otm.0.metrics.count_store_check();
    let ready = match otm.0.store.check().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e.with_sources(), "readiness check failed");
            false
        }
    };
    *last = Some((Instant::now(), ready));
    ready
}

async fn readyz(State(otm): State<Service>) -> Response {
    match store_ready(&otm).await {
        true => Json(serde_json::json!({
            "status": "ready",
            "store": otm.0.store.backend_name(),
        }))
        .into_response(),
        false => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "The message store does not answer.",
        )
        .into_response(),
    }
}

async fn metrics_text(State(otm): State<Service>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        otm.0
            .metrics
            .render(otm.0.store.backend_name(), otm.0.store.breaker()),
    )
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NoRoute,
        "There is nothing at this address.",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "This address does not accept that method.",
    )
}

/// Times each request for the metrics, by route kind only.
async fn observe(State(otm): State<Service>, request: Request, next: Next) -> Response {
    let route = match (
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    ) {
        (&Method::POST, Some(p)) if p.ends_with("/api/v1/messages") => metrics::Route::Create,
        (&Method::POST, Some(p)) if p.ends_with("/open") => metrics::Route::Open,
        _ => metrics::Route::Other,
    };
    let start = Instant::now();
    let response = next.run(request).await;
    otm.0
        .metrics
        .observe(route, response.status().as_u16(), start.elapsed());
    response
}

/// Receives the whole request, body included, within the configured
/// timeout (else 408) and at most [`API_BODY_LIMIT`] bytes of body (else
/// 413), both as JSON errors. Only then does the handler run, and it is not
/// cut short: a store operation that has begun (such as an atomic take)
/// always gets to answer, bounded by the store's own timeouts, so a
/// message is never consumed without its reply being sent.
async fn receive_within(
    State(timeout): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, API_BODY_LIMIT);
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "The request body is larger than the largest possible message.",
        )
        .into_response(),
        Ok(Err(_)) => {
            ApiError::bad_request(ErrorCode::BadBody, "The request body could not be read.")
                .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "The request took too long to arrive; send it again.",
        )
        .into_response(),
    }
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
async fn security_headers(State(hsts): State<bool>, request: Request, next: Next) -> Response {
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
