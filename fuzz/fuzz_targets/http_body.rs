//! Arbitrary request bodies (and content types) for the API's POST routes,
//! through the real router on a memory store: every answer is a 2xx or a
//! 4xx with a JSON error body — never a 5xx, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use otm_http::{Config, RateLimit};
use otm_store::{MemoryStore, StoreOptions};
use tower::ServiceExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn app() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        let plenty = RateLimit { per_minute: u32::MAX, burst: u32::MAX };
        let config = Config::default().with_rate_limits(plenty, plenty);
        let store = Arc::new(MemoryStore::new(StoreOptions::default()));
        // The service starts its purge on the runtime it is made in.
        let _entered = runtime().enter();
        otm_http::Service::new(store, config).expect("the service starts").router()
    })
}

const ROUTES: [&str; 3] = [
    "/api/v1/messages",
    "/api/v1/messages/AAAAAAAAAAAAAAAAAAAAAA/open",
    "/api/v1/messages/not-an-id/open",
];
const TYPES: [&str; 4] = ["application/json", "text/plain", "application/json; charset=utf-8", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let route = ROUTES[usize::from(selector % 3)];
    let content_type = TYPES[usize::from((selector / 3) % 4)];
    let mut request = Request::post(route);
    if !content_type.is_empty() {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body.to_vec())).expect("request");
    runtime().block_on(async {
        let response = app().clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        assert!(status.as_u16() < 500, "{route} answered {status}");
        if !status.is_success() {
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
            assert!(json["error"].is_string() && json["message"].is_string());
        }
    });
});
