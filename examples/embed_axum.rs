//! otm inside an existing axum application: the host keeps its own routes,
//! state and login, mounts otm under `/secrets`, and lets only signed-in
//! staff *create* messages, while anyone with a link can read one.
//!
//! `cargo run -p otm-examples --example embed_axum`, then visit
//! http://127.0.0.1:3001/login, then http://127.0.0.1:3001/secrets

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use otm_store::{MemoryStore, StoreOptions};

/// The host application's own state.
#[derive(Clone)]
struct AppState {
    company: &'static str,
    session_token: &'static str,
}

/// The host's login check, applied to otm's create endpoint only.
async fn staff_may_create(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let creating = req.method() == Method::POST && req.uri().path().ends_with("/api/v1/messages");
    if creating {
        let cookie = req
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let signed_in = cookie
            .split(';')
            .any(|c| c.trim() == format!("session={}", app.session_token));
        if !signed_in {
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json_like(&[
                    ("error", "login_required"),
                    ("message", "Sign in to create messages."),
                ])),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// A tiny JSON object without pulling serde_json into the example.
fn serde_json_like(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The host's own pages and the mounted otm router.
fn app(state: AppState) -> Router {
    let otm: Router<AppState> = otm_http::router(
        Arc::new(MemoryStore::new(StoreOptions::default())),
        otm_http::Config::default(),
    );
    let otm = otm.layer(middleware::from_fn_with_state(
        state.clone(),
        staff_may_create,
    ));
    Router::new()
        .route(
            "/",
            get(|State(s): State<AppState>| async move { format!("{} intranet", s.company) }),
        )
        .route(
            "/login",
            get(|State(s): State<AppState>| async move {
                (
                    [(
                        header::SET_COOKIE,
                        format!(
                            "session={}; HttpOnly; SameSite=Strict; Path=/",
                            s.session_token
                        ),
                    )],
                    "signed in; now open /secrets",
                )
            }),
        )
        .nest("/secrets", otm)
        .with_state(state)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let state = AppState {
        company: "Example Corp",
        session_token: "demo-session-token",
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("host app on http://127.0.0.1:3001 (otm under /secrets)");
    let limits = otm_http::ConnectionLimits::default();
    otm_http::serve(listener, app(state), limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AppState {
        AppState {
            company: "Test Corp",
            session_token: "t0ken",
        }
    }

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn host_routes_and_otm_live_side_by_side() {
        let app = app(state());
        assert_eq!(
            call(&app, Request::get("/").body(Body::empty()).unwrap())
                .await
                .1,
            "Test Corp intranet"
        );
        let (status, page) =
            call(&app, Request::get("/secrets").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("/secrets/assets/compose.js"));
        let (status, _) = call(
            &app,
            Request::get("/secrets/api/v1/config")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn only_signed_in_staff_may_create() {
        let app = app(state());
        let create = |cookie: Option<&str>| {
            let mut b = Request::post("/secrets/api/v1/messages")
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(c) = cookie {
                b = b.header(header::COOKIE, c);
            }
            b.body(Body::from("{}")).unwrap()
        };
        let (status, body) = call(&app, create(None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("login_required"));
        // Signed in, the request reaches otm (which rejects the empty body).
        let (status, body) = call(&app, create(Some("session=t0ken"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains(otm_http::ErrorCode::BadField.as_str()));
    }
}
