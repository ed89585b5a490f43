//! The operator endpoints: liveness, readiness and metrics, and the JSON
//! answers of addresses and methods nothing serves.

use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use otm_core::ErrorCode;

use crate::error::ApiError;
use crate::Service;

/// How long a readiness answer is reused: a scraper polling `/readyz` as
/// fast as it likes makes at most one store round trip per this period.
pub const READINESS_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
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
    let ready = match otm.store().check().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e.with_sources(), "readiness check failed");
            false
        }
    };
    *last = Some((Instant::now(), ready));
    ready
}

/// `GET /readyz`: the store answers.
pub(crate) async fn readyz(State(otm): State<Service>) -> Response {
    match store_ready(&otm).await {
        true => Json(serde_json::json!({
            "status": "ready",
            "store": otm.store().backend_name(),
        }))
        .into_response(),
        false => ApiError::new(
            ErrorCode::StoreUnavailable,
            "The message store does not answer.",
        )
        .into_response(),
    }
}

/// `GET /metrics`: Prometheus' text format.
pub(crate) async fn metrics(State(otm): State<Service>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        otm.render_metrics(),
    )
}

/// Any address nothing serves.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(ErrorCode::NoRoute, "There is nothing at this address.")
}

/// A served address asked with a method it does not take.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "This address does not accept that method.",
    )
}
