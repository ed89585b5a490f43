//! The routers of a [`Service`]: the public surface (pages, API,
//! `/healthz`) and the operator endpoints (`/healthz`, `/readyz`,
//! `/metrics`), each wrapped in the same layers.

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use std::time::Duration;

use crate::handlers::api::API_BODY_LIMIT;
use crate::handlers::groups::{GROUP_BODIES_AT_ONCE, GROUP_BODY_LIMIT};
use crate::handlers::{api, groups, ops, pages, requests};
use crate::metrics::Route;
use crate::middleware::{few_at_a_time, receive_within, respond, Receiving, Respond};
use crate::service::Service;

impl Service {
    /// The public HTTP surface of this instance, for any host state `S`:
    /// the pages, the API and `/healthz`. Mount it with
    /// `.nest("/prefix", otm.router())` or serve it directly; serve it
    /// with connection info (`into_make_service_with_connect_info::<SocketAddr>()`,
    /// or [`serve`](crate::serve::serve)) for per-client rate limits:
    /// without it all anonymous clients share one bucket.
    ///
    /// It has no operator endpoints: serve [`admin_router`](Service::admin_router)
    /// on an address only operators and their scrapers reach.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let timeout = self.config().request_timeout;
        self.wrap(
            self.public_routes(timeout)
                .merge(Self::ops_routes(timeout, false)),
        )
    }

    /// The pages and the API, each route reading its body through
    /// [`receive_within`] (which also marks the route's kind for the
    /// metrics: one layer per route, not two).
    fn public_routes(&self, timeout: Duration) -> Router<Service> {
        let receive = |route| {
            middleware::from_fn_with_state(
                Receiving { timeout, route },
                receive_within::<API_BODY_LIMIT>,
            )
        };
        let routes = Router::new()
            .route("/api/v1/config", get(api::config))
            .route("/api/v1/messages/{id}", get(api::status).delete(api::burn))
            .route("/api/v1/requests/{id}/read", post(requests::read))
            .route("/api/v1/requests/{id}/answer", post(requests::answer))
            .route(
                "/api/v1/requests/{id}",
                get(requests::status).delete(requests::withdraw),
            )
            .route("/api/v1/groups/status", post(groups::status))
            .route("/api/v1/groups/burn", post(groups::burn))
            .route("/api/v1/openapi.json", get(api::openapi))
            .route("/", get(pages::compose))
            .route("/about", get(pages::about))
            .route("/otm/{id}", get(pages::reveal))
            .route("/manage/{id}", get(pages::manage))
            .route("/group", get(pages::group))
            .route("/request", get(pages::ask))
            .route("/request/{id}", get(pages::respond))
            .route("/receive/{id}", get(pages::receive))
            .route("/assets/{file}", get(pages::asset))
            // Only the routes above: the ones below have their own kind.
            .route_layer(receive(Route::Other))
            .route(
                "/api/v1/messages",
                post(api::create).route_layer(receive(Route::Create)),
            )
            .route(
                "/api/v1/messages/{id}/open",
                post(api::open).route_layer(receive(Route::Open)),
            )
            .route(
                "/api/v1/requests",
                post(requests::ask).route_layer(receive(Route::Create)),
            );
        routes.merge(self.group_create(timeout))
    }

    /// `POST /api/v1/groups`: a group create carries up to MAX_GROUP
    /// envelopes, the one route that reads a larger body, a few requests at
    /// a time. On a store that keeps no groups it answers 501 without
    /// reading the body (and `max_recipients` is 0 in the public config).
    fn group_create(&self, timeout: Duration) -> Router<Service> {
        if self.0.store.groups().is_none() {
            return Router::new().route("/api/v1/groups", post(groups::unsupported));
        }
        Router::new()
            .route("/api/v1/groups", post(groups::create))
            .route_layer(middleware::from_fn_with_state(
                Receiving {
                    timeout,
                    route: Route::Create,
                },
                receive_within::<GROUP_BODY_LIMIT>,
            ))
            .route_layer(middleware::from_fn_with_state(
                std::sync::Arc::new(tokio::sync::Semaphore::new(GROUP_BODIES_AT_ONCE)),
                few_at_a_time,
            ))
    }

    /// The operator endpoints of this instance: `/healthz`, `/readyz`
    /// (checks the store, at most once per
    /// [`READINESS_CACHE`](crate::READINESS_CACHE)) and `/metrics`
    /// (Prometheus). Serve them where only operators reach: a second
    /// listener, or behind the host's own authentication.
    pub fn admin_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.wrap(Self::ops_routes(self.config().request_timeout, true))
    }

    /// The public and the operator routes on one router, for a server
    /// whose one address only operators reach anyway, or that puts its
    /// own authentication in front of `/metrics` and `/readyz`. Anywhere
    /// else serve [`router`](Service::router) and
    /// [`admin_router`](Service::admin_router) apart.
    pub fn router_with_admin<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let timeout = self.config().request_timeout;
        self.wrap(
            self.public_routes(timeout)
                .merge(Self::ops_routes(timeout, true)),
        )
    }

    /// `/healthz`, and with `admin` also `/readyz` and `/metrics`.
    fn ops_routes(timeout: Duration, admin: bool) -> Router<Service> {
        let mut routes = Router::new().route("/healthz", get(ops::healthz));
        if admin {
            routes = routes
                .route("/readyz", get(ops::readyz))
                .route("/metrics", get(ops::metrics));
        }
        routes.route_layer(middleware::from_fn_with_state(
            Receiving {
                timeout,
                route: Route::Other,
            },
            receive_within::<API_BODY_LIMIT>,
        ))
    }

    /// What every router of this service is wrapped in.
    fn wrap<S>(&self, routes: Router<Service>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let config = self.config();
        let hsts = config.base_url.as_deref().is_some_and(|b| {
            b.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        routes
            .fallback(ops::no_route)
            .method_not_allowed_fallback(ops::method_not_allowed)
            // No `DefaultBodyLimit`: every route reads its body through
            // `receive_within`, whose limit is below axum's default, and a
            // layer more costs every request a clone.
            .layer(middleware::from_fn_with_state(
                Respond {
                    otm: self.clone(),
                    hsts,
                },
                respond,
            ))
            .with_state(self.clone())
    }
}
