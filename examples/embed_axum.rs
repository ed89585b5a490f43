//! otm inside an existing axum application, the whole life: the host keeps
//! its own routes, state and login, makes one otm `Service` (which purges
//! expired messages and delivers events while it lives), mounts its public
//! routes under `/secrets`, serves its operator routes on a second,
//! private address, decides with a create policy who may *create*
//! messages (signed-in staff, for a day at most, and admins, for as long
//! as the server allows; anyone with a link can read one), and shuts the
//! service down when it stops.
//!
//! `cargo run -p otm-examples --example embed_axum`, then visit
//! http://127.0.0.1:3001/login (or /login?admin), then http://127.0.0.1:3001/secrets;
//! metrics are on http://127.0.0.1:3091/metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use otm_http::events::{DispatchConfig, Event, EventSink};
use otm_http::policy::{CreateAsk, CreateLimits, CreatePolicy, Decision, Refusal};
use otm_http::{Caller, Service};
use otm_store::{BoxError, MemoryStore, StoreOptions};

/// The host application's own state.
#[derive(Clone)]
struct AppState {
    company: &'static str,
    staff_session: &'static str,
    admin_session: &'static str,
}

/// Who the host's login says the caller is, put in the request's
/// extensions by [`identify`] for otm's create policy to read.
#[derive(Clone, Copy, Debug)]
enum Staff {
    Member,
    Admin,
}

/// The host's login middleware: the session cookie names a staff member.
async fn identify(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let has = |token: &str| {
        cookie
            .split(';')
            .any(|c| c.trim() == format!("session={token}"))
    };
    if has(app.admin_session) {
        req.extensions_mut().insert(Staff::Admin);
    } else if has(app.staff_session) {
        req.extensions_mut().insert(Staff::Member);
    }
    next.run(req).await
}

/// otm's create policy: staff only; members' messages live a day at most.
struct StaffOnly;

#[async_trait::async_trait]
impl CreatePolicy for StaffOnly {
    /// Who the host's login says the caller is.
    async fn identify(
        &self,
        request: &axum::http::request::Parts,
        client: std::net::IpAddr,
    ) -> Result<Caller, Refusal> {
        Ok(match request.extensions.get::<Staff>() {
            Some(Staff::Admin) => Caller::Identity("admin".into()),
            Some(Staff::Member) => Caller::Identity("member".into()),
            None => Caller::Anonymous(client),
        })
    }

    async fn decide(&self, caller: &Caller, _ask: &CreateAsk<'_>) -> Decision {
        match caller {
            Caller::Identity(who) if who == "admin" => Decision::allow(CreateLimits::default()),
            Caller::Identity(who) if who == "member" => Decision::allow(
                CreateLimits::default().with_max_ttl(Duration::from_secs(24 * 3600)),
            ),
            _ => Decision::deny("Sign in to create messages."),
        }
    }
}

/// Where the host hears what happens to messages (here: its log).
struct Log;

#[async_trait::async_trait]
impl EventSink for Log {
    async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
        println!("{} {}", event.kind, event.message);
        Ok(())
    }
}

/// The otm service: a store that records events, the policy, the sink.
fn otm() -> Service {
    let store = Arc::new(MemoryStore::new(StoreOptions::default().with_events(true)));
    let config = otm_http::Config::default()
        .with_create_policy(StaffOnly)
        .with_events(Arc::new(Log), DispatchConfig::default());
    Service::new(store, config).expect("within a Tokio runtime")
}

/// The host's own pages and the mounted otm routes.
fn app(state: AppState, otm: &Service) -> Router {
    let otm: Router<AppState> = otm.router();
    Router::new()
        .route(
            "/",
            get(|State(s): State<AppState>| async move { format!("{} intranet", s.company) }),
        )
        .route(
            "/login",
            get(
                |State(s): State<AppState>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let session = match q.contains_key("admin") {
                        true => s.admin_session,
                        false => s.staff_session,
                    };
                    (
                        [(
                            header::SET_COOKIE,
                            format!("session={session}; HttpOnly; SameSite=Strict; Path=/"),
                        )],
                        "signed in; now open /secrets",
                    )
                },
            ),
        )
        .nest("/secrets", otm)
        .layer(middleware::from_fn_with_state(state.clone(), identify))
        .with_state(state)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let state = AppState {
        company: "Example Corp",
        staff_session: "demo-staff-session",
        admin_session: "demo-admin-session",
    };
    let otm = otm();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("host app on http://127.0.0.1:3001 (otm under /secrets)");
    // The operator routes (metrics, readiness) on a private address.
    let admin = tokio::net::TcpListener::bind("127.0.0.1:3091").await?;
    let limits = otm_http::ConnectionLimits::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let admin = tokio::spawn(otm_http::serve(
        admin,
        otm.admin_router(),
        limits.clone(),
        {
            let stop = stop.clone();
            async move { stop.notified().await }
        },
    ));
    otm_http::serve(listener, app(state, &otm), limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    stop.notify_one();
    let _ = admin.await;
    // Events in flight are delivered; the purge stops.
    otm.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AppState {
        AppState {
            company: "Test Corp",
            staff_session: "t0ken",
            admin_session: "adm1n",
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
        let app = app(state(), &otm());
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

    /// A real create request (a sealed envelope and its verifiers) for
    /// `ttl_days`, with the session cookie if any.
    fn create(cookie: Option<&str>, ttl_days: u64) -> Request<Body> {
        let secrets = otm_core::Secrets::derive(&otm_core::Key::generate().unwrap(), None);
        let envelope = otm_core::seal(&secrets, "for staff").unwrap();
        let body = format!(
            r#"{{"envelope":"{}","verifier":"{}","access_verifier":"{}","ttl_seconds":{}}}"#,
            URL_SAFE_NO_PAD.encode(envelope),
            secrets.claim_verifier().to_base64url(),
            secrets.access_verifier().to_base64url(),
            ttl_days * 86_400
        );
        let mut b = Request::post("/secrets/api/v1/messages")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn the_policy_lets_staff_create_within_their_limits() {
        let otm = otm();
        let app = app(state(), &otm);
        let code = |body: &str, code: otm_http::ErrorCode| body.contains(code.as_str());
        // Not signed in: refused with otm's JSON error, nothing stored.
        let (status, body) = call(&app, create(None, 1)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(code(&body, otm_http::ErrorCode::CreateDenied), "{body}");
        assert!(body.contains("Sign in to create messages."), "{body}");
        // Staff: a day, not two.
        let (status, body) = call(&app, create(Some("session=t0ken"), 1)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = call(&app, create(Some("session=t0ken"), 2)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(code(&body, otm_http::ErrorCode::TtlTooLong), "{body}");
        // Admins: as long as the server allows (7 days), not longer.
        let (status, body) = call(&app, create(Some("session=adm1n"), 7)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = call(&app, create(Some("session=adm1n"), 8)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // The operator routes are not public.
        let (status, _) = call(
            &app,
            Request::get("/secrets/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, metrics) = call(
            &otm.admin_router(),
            Request::get("/metrics").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            metrics.contains("otm_messages_total{outcome=\"created\"} 2"),
            "{metrics}"
        );
        otm.shutdown().await;
    }
}
