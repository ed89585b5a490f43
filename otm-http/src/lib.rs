//! # otm-http
//!
//! otm's HTTP side: the JSON API, the browser app (plain ES modules with
//! WebCrypto, compiled into the library), health checks and metrics, as one
//! axum [`Router`](axum::Router) that any application can mount. It is a library only: the
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
//! use otm_http::{Config, Service};
//! use otm_store::{SqliteConfig, SqliteStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect(SqliteConfig::new("otm.sqlite3")).await?;
//! // Starts the purge of expired messages (and, with Config::with_events,
//! // the delivery of events) for as long as the service lives.
//! let otm = Service::new(Arc::new(store), Config::default())?;
//! let app: Router = Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/secrets", otm.router());
//! // Bounded connections (count, header timeout, head size), per-client
//! // rate limits from the peer address, graceful shutdown on Ctrl-C.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let limits = otm_http::ConnectionLimits::default();
//! // The operator endpoints on an address only operators reach.
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio::spawn(otm_http::serve(admin, otm.admin_router(), limits.clone(), std::future::pending()));
//! otm_http::serve(listener, app, limits, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! otm.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The [`Service`] is the one way in: the router's handlers and the host's
//! own calls ([`Service::send`] mints links for users, sealed in this
//! process; [`Service::create`], [`Service::status`], …) all go through
//! it, with a [`Caller`] that says who is asking, and run the same rules
//! in the same order (see [`policy`] for who may create what). To act on
//! what happens (opened, burned, …), see [`events`].
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
//! | `POST /api/v1/groups` | one message for 2 to 20 people, all or none ([`Service::create_group`]) |
//! | `POST /api/v1/groups/status` | the receipts of up to 20 messages, each with its token |
//! | `POST /api/v1/groups/burn` | burn every waiting one of up to 20 messages |
//! | `GET /group` | the sender's group status page (IDs, tokens and names in the fragment) |
//! | `GET /request` | "Request a secret": ask someone for a secret |
//! | `GET /request/{id}` | the responder's page (public key and answer token in the fragment) |
//! | `GET /receive/{id}` | the asker's page (receive secret in the fragment) |
//! | `POST /api/v1/requests` | ask, through the create pipeline ([`Service::ask`]) |
//! | `POST /api/v1/requests/{id}/read` | the request, with the request link's answer proof |
//! | `POST /api/v1/requests/{id}/answer` | the one answer (`409 already_answered` after it) |
//! | `GET /api/v1/requests/{id}` | the request's state, with the receive link's access proof |
//! | `DELETE /api/v1/requests/{id}` | withdraw (an unread answer goes with it) |
//! | `GET /api/v1/openapi.json` | the OpenAPI document |
//! | `GET /healthz` | liveness |
//!
//! And on [`Service::admin_router`]: `GET /healthz`, `GET /readyz`
//! (readiness: checks the store), `GET /metrics` (Prometheus).

mod caller;
mod config;
mod error;
pub mod events;
mod handlers;
pub mod i18n;
mod limit;
mod metrics;
mod middleware;
pub mod policy;
mod router;
#[cfg(feature = "serve")]
pub mod serve;
mod service;
#[cfg(feature = "webhooks")]
pub mod webhook;

pub use caller::{Authorization, Caller, TokenHolder};
pub use config::{Config, Events, SharedSink};
pub use error::ApiError;
pub use limit::{IpNet, RateLimit};
/// The API's error codes ([`ApiError::code`]), from `otm_core::api`.
pub use otm_core::ErrorCode;
#[cfg(feature = "serve")]
pub use serve::{serve, ConnectionLimits};
pub use service::{
    Ask, Asked, Create, CreateGroup, Receipt, RequestReceipt, RequestView, Sealed, Service,
    ServiceError, StoredGroup,
};

pub use handlers::api::{API_BODY_LIMIT, OPENAPI_JSON};
pub use handlers::groups::GROUP_BODY_LIMIT;
pub use handlers::ops::READINESS_CACHE;
pub use middleware::{CONTENT_SECURITY_POLICY, STRICT_TRANSPORT_SECURITY};
