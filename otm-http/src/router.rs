//! The routers of a [`Service`]: the public surface (pages, API,
//! `/healthz`) and the operator endpoints (`/healthz`, `/readyz`,
//! `/metrics`), each wrapped in the same layers.

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::handlers::api::API_BODY_LIMIT;
use crate::handlers::groups::{GROUP_BODIES_AT_ONCE, GROUP_BODY_LIMIT};
use crate::handlers::{api, groups, ops, pages, requests};
use crate::metrics::Route;
use crate::middleware::{few_at_a_time, mark, observe, receive_within, security_headers};
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
        self.wrap(
            Self::public_routes().route("/healthz", get(ops::healthz)),
            true,
        )
    }

    /// The pages and the API.
    fn public_routes() -> Router<Service> {
        Router::new()
            .route("/api/v1/config", get(api::config))
            .route(
                "/api/v1/messages",
                post(api::create).route_layer(middleware::map_response(mark(Route::Create))),
            )
            .route(
                "/api/v1/messages/{id}/open",
                post(api::open).route_layer(middleware::map_response(mark(Route::Open))),
            )
            .route("/api/v1/messages/{id}", get(api::status).delete(api::burn))
            .route(
                "/api/v1/requests",
                post(requests::ask).route_layer(middleware::map_response(mark(Route::Create))),
            )
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
        self.wrap(Self::admin_routes(Router::new()), false)
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
        self.wrap(Self::admin_routes(Self::public_routes()), true)
    }

    fn admin_routes(routes: Router<Service>) -> Router<Service> {
        routes
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics))
    }

    /// What every router of this service is wrapped in.
    /// `public`: the routes are the public surface, with the group create.
    fn wrap<S>(&self, routes: Router<Service>, public: bool) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let config = self.config();
        let hsts = config.base_url.as_deref().is_some_and(|b| {
            b.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        let timeout = config.request_timeout;
        let mut routes = routes.route_layer(middleware::from_fn_with_state(
            timeout,
            receive_within::<API_BODY_LIMIT>,
        ));
        if public {
            // A group create carries up to MAX_GROUP envelopes: the one
            // route that reads a larger body, a few requests at a time. On
            // a store that keeps no groups it answers 501 without reading
            // the body (and `max_recipients` is 0 in the public config).
            let route = if self.0.store.groups().is_some() {
                Router::new()
                    .route(
                        "/api/v1/groups",
                        post(groups::create)
                            .route_layer(middleware::map_response(mark(Route::Create))),
                    )
                    .route_layer(DefaultBodyLimit::max(GROUP_BODY_LIMIT))
                    .route_layer(middleware::from_fn_with_state(
                        timeout,
                        receive_within::<GROUP_BODY_LIMIT>,
                    ))
                    .route_layer(middleware::from_fn_with_state(
                        std::sync::Arc::new(tokio::sync::Semaphore::new(GROUP_BODIES_AT_ONCE)),
                        few_at_a_time,
                    ))
            } else {
                Router::new().route("/api/v1/groups", post(groups::unsupported))
            };
            routes = routes.merge(route);
        }
        routes
            .fallback(ops::no_route)
            .method_not_allowed_fallback(ops::method_not_allowed)
            .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .layer(middleware::from_fn_with_state(hsts, security_headers))
            .with_state(self.clone())
    }
}
