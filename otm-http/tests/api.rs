//! The JSON API driven in-process with `tower::ServiceExt::oneshot`: every
//! status code, bad input of each kind, exactly-once opening, expiry, the
//! security headers, and mounting under a prefix.
//!
//! One file past 500 lines on purpose: every case shares the same small
//! request helpers and reads as one walk through the API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{seal, AccessProof, ClaimProof, ErrorCode, Key, Secrets};
use otm_http::{Config, RateLimit};
use otm_store::{BlobStore, MemoryStore, StoreOptions};
use otm_testkit::oneshot::{post, send, Reply};
use serde_json::{json, Value};

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(StoreOptions::default()))
}

/// The public and the operator routes of one service, on one router.
fn app_with(store: Arc<dyn BlobStore>, config: Config) -> Router {
    let otm = otm_http::Service::new(store, config).unwrap();
    otm.router_with_admin()
}

/// Limits high enough that only the rate-limit test meets them.
fn generous() -> Config {
    let plenty = RateLimit {
        per_minute: 10_000,
        burst: 10_000,
    };
    Config::default().with_rate_limits(plenty, plenty)
}

fn app() -> (Router, Arc<MemoryStore>) {
    let s = store();
    (app_with(s.clone(), generous()), s)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

struct Sealed {
    secrets: Secrets,
    envelope: Vec<u8>,
}

fn sealed(text: &str) -> Sealed {
    let secrets = Secrets::derive(&Key::generate().unwrap(), None);
    let envelope = seal(&secrets, text).unwrap();
    Sealed { secrets, envelope }
}

fn create_body(s: &Sealed, ttl: Option<u64>) -> Value {
    let mut body = json!({
        "envelope": URL_SAFE_NO_PAD.encode(&s.envelope),
        "verifier": s.secrets.claim_verifier().to_base64url(),
        "access_verifier": s.secrets.access_verifier().to_base64url(),
    });
    if let Some(t) = ttl {
        body["ttl_seconds"] = json!(t);
    }
    body
}

async fn create(app: &Router, s: &Sealed) -> String {
    let r = send(app, post("/api/v1/messages", &create_body(s, Some(3600)))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["path"], format!("/otm/{id}"));
    assert_eq!(r.headers[header::LOCATION], format!("/otm/{id}"));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    id
}

/// Opens with an access proof and a claim proof.
async fn open(app: &Router, id: &str, access: &AccessProof, proof: &ClaimProof) -> Reply {
    let body = json!({
        "access_proof": access.to_base64url().as_str(),
        "proof": proof.to_base64url().as_str(),
    });
    send(app, post(&format!("/api/v1/messages/{id}/open"), &body)).await
}

/// Opens with both proofs of `secrets`.
async fn open_with(app: &Router, id: &str, secrets: &Secrets) -> Reply {
    open(app, id, secrets.access_proof(), secrets.claim_proof()).await
}

#[tokio::test]
async fn create_then_open_exactly_once() {
    let (app, store) = app();
    let s = sealed("hello");
    let id = create(&app, &s).await;
    // The store holds exactly the ciphertext that was uploaded.
    assert_eq!(store.peek_raw(&id.parse().unwrap()).unwrap(), s.envelope);
    let r = open_with(&app, &id, &s.secrets).await;
    assert_eq!(r.status, StatusCode::OK);
    let env = URL_SAFE_NO_PAD
        .decode(r.json()["envelope"].as_str().unwrap())
        .unwrap();
    assert_eq!(env, s.envelope);
    assert_eq!(otm_core::open(&s.secrets, &env).unwrap().as_str(), "hello");
    let again = open_with(&app, &id, &s.secrets).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.code(), ErrorCode::NotFound);
    assert!(again.json()["message"]
        .as_str()
        .unwrap()
        .contains("already opened or has expired"));
}

#[tokio::test]
async fn wrong_proof_is_403_and_consumes_nothing_until_the_limit() {
    let (app, _) = app();
    let s = sealed("guarded");
    let id = create(&app, &s).await;
    let wrong = Secrets::derive(&Key::generate().unwrap(), None);
    // Someone with the ID but not the link: the answer of an unknown
    // message, and no attempt used.
    for _ in 0..20 {
        let r = open_with(&app, &id, &wrong).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.code(), ErrorCode::NotFound);
    }
    // The link (the access proof) with a wrong passphrase (claim proof).
    for left in (1..5).rev() {
        let r = open(&app, &id, s.secrets.access_proof(), wrong.claim_proof()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), ErrorCode::WrongProof);
        assert_eq!(r.json()["attempts_left"], left);
    }
    let r = open_with(&app, &id, &s.secrets).await;
    assert_eq!(r.status, StatusCode::OK);

    let t = sealed("burned");
    let id = create(&app, &t).await;
    for _ in 0..5 {
        open(&app, &id, t.secrets.access_proof(), wrong.claim_proof()).await;
    }
    let r = open_with(&app, &id, &t.secrets).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn never_existed_expired_and_opened_look_the_same() {
    let (app, _) = app();
    let s = sealed("short");
    let r = send(&app, post("/api/v1/messages", &create_body(&s, Some(1)))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let expired = open_with(&app, &id, &s.secrets).await;
    let never = open_with(&app, "AAAAAAAAAAAAAAAAAAAAAA", &s.secrets).await;
    // Opened, and live but with a wrong access proof: the same answer.
    let t = sealed("opened");
    let id = create(&app, &t).await;
    let stranger = Secrets::derive(&Key::generate().unwrap(), None);
    let no_access = open_with(&app, &id, &stranger).await;
    assert_eq!(
        open_with(&app, &id, &t.secrets).await.status,
        StatusCode::OK
    );
    let opened = open_with(&app, &id, &t.secrets).await;
    assert_eq!(no_access.body, never.body);
    assert_eq!(opened.body, never.body);
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
    assert_eq!(expired.body, never.body);
}

#[tokio::test]
async fn bad_input_gets_a_precise_4xx_and_loses_nothing() {
    let (app, store) = app();
    let s = sealed("keep me");
    let id = create(&app, &s).await;
    let proof = s.secrets.claim_proof().to_base64url();
    let access = s.secrets.access_proof().to_base64url();
    let valid = create_body(&s, Some(60));
    let cases: Vec<(&str, Request<Body>, StatusCode, ErrorCode)> = vec![
        (
            "bad id",
            post(
                "/api/v1/messages/not-an-id/open",
                &json!({"access_proof": access.as_str(), "proof": proof.as_str()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadId,
        ),
        (
            "bad proof",
            post(
                &format!("/api/v1/messages/{id}/open"),
                &json!({"access_proof": access.as_str(), "proof": "short"}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadProof,
        ),
        (
            "bad access proof",
            post(
                &format!("/api/v1/messages/{id}/open"),
                &json!({"access_proof": "short", "proof": proof.as_str()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadProof,
        ),
        (
            "missing access proof",
            post(
                &format!("/api/v1/messages/{id}/open"),
                &json!({"proof": proof.as_str()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "missing proof",
            post(&format!("/api/v1/messages/{id}/open"), &json!({})),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "unknown field",
            post(
                &format!("/api/v1/messages/{id}/open"),
                &json!({"access_proof": access.as_str(), "proof": proof.as_str(), "x": 1}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "not json",
            Request::post(format!("/api/v1/messages/{id}/open"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{nope"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadJson,
        ),
        (
            "bad utf-8",
            Request::post("/api/v1/messages")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b'{', 0xff, 0xfe, b'}']))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadJson,
        ),
        (
            "no content type",
            Request::post("/api/v1/messages")
                .body(Body::from(valid.to_string()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
        ),
        (
            "text content type",
            Request::post("/api/v1/messages")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(valid.to_string()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
        ),
        (
            "bad base64",
            post(
                "/api/v1/messages",
                &json!({"envelope": "***", "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadEnvelope,
        ),
        (
            "padded base64",
            post(
                "/api/v1/messages",
                &json!({"envelope": "T1RNAQ==", "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadEnvelope,
        ),
        (
            "not an envelope",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode([7u8; 300]), "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadEnvelope,
        ),
        (
            "truncated envelope",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope[..100]), "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadEnvelope,
        ),
        (
            "bad verifier",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope), "verifier": "x", "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadVerifier,
        ),
        (
            "bad access verifier",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope), "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": "x"}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadVerifier,
        ),
        (
            "missing access verifier",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope), "verifier": s.secrets.claim_verifier().to_base64url()}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "missing verifier",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope)}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "ttl zero",
            post("/api/v1/messages", &create_body(&s, Some(0))),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadTtl,
        ),
        (
            "ttl too long",
            post("/api/v1/messages", &create_body(&s, Some(8 * 24 * 3600))),
            StatusCode::BAD_REQUEST,
            ErrorCode::TtlTooLong,
        ),
        (
            "ttl negative",
            post(
                "/api/v1/messages",
                &json!({"envelope": URL_SAFE_NO_PAD.encode(&s.envelope), "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url(), "ttl_seconds": -5}),
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
        ),
        (
            "oversize envelope",
            post(
                "/api/v1/messages",
                &json!({"envelope": "A".repeat(otm_http::API_BODY_LIMIT - 200), "verifier": s.secrets.claim_verifier().to_base64url(), "access_verifier": s.secrets.access_verifier().to_base64url()}),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
        ),
        (
            "oversize body",
            Request::post("/api/v1/messages")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b' '; otm_http::API_BODY_LIMIT + 10]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
        ),
        (
            "GET on open",
            get(&format!("/api/v1/messages/{id}/open")),
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
        ),
        (
            "no such route",
            get("/api/v1/nothing"),
            StatusCode::NOT_FOUND,
            ErrorCode::NoRoute,
        ),
        (
            "no such asset",
            get("/assets/secret.txt"),
            StatusCode::NOT_FOUND,
            ErrorCode::NoSuchAsset,
        ),
    ];
    for (what, req, status, code) in cases {
        let r = send(&app, req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.code(), code, "{what}");
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/json",
            "{what}"
        );
    }
    // Nothing above consumed or damaged the stored message.
    assert_eq!(store.peek_raw(&id.parse().unwrap()).unwrap(), s.envelope);
    assert_eq!(
        open_with(&app, &id, &s.secrets).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hsts_with_an_https_base_and_a_favicon_on_every_page() {
    let (app, _) = app();
    let r = send(&app, get("/")).await;
    assert!(!r.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    assert!(r
        .text()
        .contains(r#"<link rel="icon" href="/assets/favicon.svg""#));
    let icon = send(&app, get("/assets/favicon.svg")).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
    let https = app_with(store(), generous().with_base_url("https://otm.example"));
    for path in ["/", "/api/v1/config", "/nothing"] {
        let r = send(&https, get(path)).await;
        assert_eq!(
            r.headers[header::STRICT_TRANSPORT_SECURITY],
            otm_http::STRICT_TRANSPORT_SECURITY,
            "{path}"
        );
    }
    let plain = app_with(store(), generous().with_base_url("http://localhost:8080"));
    let r = send(&plain, get("/")).await;
    assert!(!r.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
}

#[tokio::test]
async fn loading_the_reveal_page_consumes_nothing() {
    let (app, _) = app();
    let s = sealed("bots are welcome to look");
    let id = create(&app, &s).await;
    for _ in 0..3 {
        let page = send(&app, get(&format!("/otm/{id}"))).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("reveal.js"));
    }
    assert_eq!(
        open_with(&app, &id, &s.secrets).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (app, _) = app();
    for uri in [
        "/",
        "/about",
        "/otm/AAAAAAAAAAAAAAAAAAAAAA",
        "/api/v1/config",
        "/assets/compose.js",
        "/nope",
    ] {
        let r = send(&app, get(uri)).await;
        let h = &r.headers;
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            otm_http::CONTENT_SECURITY_POLICY,
            "{uri}"
        );
        assert!(!otm_http::CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{uri}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        if !uri.starts_with("/assets/") {
            assert_eq!(h[header::CACHE_CONTROL], "no-store", "{uri}");
        }
    }
    // Pages have no inline scripts or styles for the CSP to block; the one
    // element with a body is the page's strings, a JSON data block that no
    // browser runs.
    for uri in ["/", "/about", "/otm/AAAAAAAAAAAAAAAAAAAAAA"] {
        let html = send(&app, get(uri)).await.text();
        for script in html.split("<script").skip(1) {
            let tag_end = script.find('>').unwrap();
            if script[..tag_end].contains("type=\"application/json\"") {
                let body = &script[tag_end + 1..script.find("</script>").unwrap()];
                serde_json::from_str::<serde_json::Value>(body).expect("a JSON data block");
                continue;
            }
            assert!(script[..tag_end].contains("src="), "{uri}: inline script");
            assert!(
                script[tag_end + 1..].trim_start().starts_with("</script>"),
                "{uri}: inline script body"
            );
        }
        assert!(!html.contains("<style"), "{uri}: inline style");
        assert!(!html.contains(" style="), "{uri}: style attribute");
        assert!(!html.contains(" onclick="), "{uri}: inline handler");
    }
}

#[tokio::test]
async fn config_reports_limits_and_respects_a_lower_maximum() {
    let app = app_with(
        store(),
        Config::default().with_max_ttl(Duration::from_secs(2 * 3600)),
    );
    let v = send(&app, get("/api/v1/config")).await.json();
    assert_eq!(v["max_ttl_seconds"], 7200);
    assert_eq!(v["default_ttl_seconds"], 7200);
    assert_eq!(v["ttl_choices_seconds"], json!([3600, 7200]));
    assert_eq!(v["max_message_chars"], 8000);
    assert_eq!(v["max_envelope_bytes"], otm_core::MAX_ENVELOPE_LEN);
    assert_eq!(v["max_failed_attempts"], 5);
    let s = sealed("x");
    let r = send(&app, post("/api/v1/messages", &create_body(&s, Some(7201)))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), ErrorCode::TtlTooLong);
    let r = send(&app, post("/api/v1/messages", &create_body(&s, None))).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429_with_retry_after() {
    let limit = RateLimit {
        per_minute: 2,
        burst: 2,
    };
    let app = app_with(store(), Config::default().with_rate_limits(limit, limit));
    let s = sealed("x");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = send(&app, post("/api/v1/messages", &create_body(&s, Some(60)))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.code(), ErrorCode::RateLimited);
            assert!(r.headers.contains_key(header::RETRY_AFTER));
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [201, 201, 429, 429]);
}

#[tokio::test]
async fn mounted_under_a_prefix_pages_point_into_the_prefix() {
    let inner: Router = otm_http::Service::new(store(), Config::default())
        .unwrap()
        .router();
    let app = Router::new()
        .route("/", axum::routing::get(|| async { "host app" }))
        .nest("/secrets", inner);
    assert_eq!(send(&app, get("/")).await.text(), "host app");
    let page = send(&app, get("/secrets/otm/AAAAAAAAAAAAAAAAAAAAAA"))
        .await
        .text();
    assert!(page.contains("/secrets/assets/reveal.js"), "{page}");
    assert!(!page.contains("{{BASE}}"));
    let compose = send(&app, get("/secrets")).await.text();
    assert!(compose.contains("/secrets/assets/compose.js"), "{compose}");
    // Links home point at the mount path itself, which the nest answers.
    assert!(!compose.contains("href=\"/secrets/\""), "{compose}");
    let s = sealed("nested");
    let r = send(
        &app,
        post("/secrets/api/v1/messages", &create_body(&s, Some(60))),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = send(
        &app,
        post(
            &format!("/secrets/api/v1/messages/{id}/open"),
            &json!({
                "access_proof": s.secrets.access_proof().to_base64url().as_str(),
                "proof": s.secrets.claim_proof().to_base64url().as_str(),
            }),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let (app, _) = app();
    assert_eq!(send(&app, get("/healthz")).await.json()["status"], "ok");
    let ready = send(&app, get("/readyz")).await.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "memory");
    let s = sealed("counted");
    let id = create(&app, &s).await;
    open_with(&app, &id, &s.secrets).await;
    open_with(&app, &id, &s.secrets).await;
    let metrics = send(&app, get("/metrics")).await.text();
    assert!(
        metrics.contains("otm_messages_total{outcome=\"created\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("otm_messages_total{outcome=\"opened\"} 1"));
    assert!(metrics.contains("otm_messages_total{outcome=\"not_found\"} 1"));
    assert!(metrics.contains("otm_http_request_duration_seconds_count{route=\"open\"} 2"));
    // Each route's kind comes from its body reader: the create, the two
    // opens, and the rest (health, readiness) as other.
    assert!(metrics.contains("otm_http_request_duration_seconds_count{route=\"create\"} 1"));
    assert!(metrics.contains("otm_http_responses_total{route=\"open\",class=\"4xx\"} 1"));
    assert!(!metrics.contains(&id), "metrics must not carry IDs");
    let doc = send(&app, get("/api/v1/openapi.json")).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/messages/{id}/open"]["post"]["responses"]["403"].is_object());
}

fn with_bearer(mut req: Request<Body>, token: &str) -> Request<Body> {
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    req
}

async fn create_managed(app: &Router, s: &Sealed) -> (String, String) {
    let r = send(app, post("/api/v1/messages", &create_body(s, Some(3600)))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    let token = v["manage_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    (v["id"].as_str().unwrap().to_owned(), token)
}

#[tokio::test]
async fn the_sender_sees_a_read_receipt_with_the_token_only() {
    let (app, _) = app();
    let s = sealed("receipt");
    let (id, token) = create_managed(&app, &s).await;
    let status = |t: &str| with_bearer(get(&format!("/api/v1/messages/{id}")), t);
    let r = send(&app, status(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["state"], "waiting");
    assert!(r.json()["changed_at"].is_null());
    // No token, a malformed one, someone else's.
    let r = send(&app, get(&format!("/api/v1/messages/{id}"))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, ErrorCode::TokenRequired)
    );
    let r = send(&app, status("nonsense")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (_, other) = create_managed(&app, &sealed("other")).await;
    let r = send(&app, status(&other)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );
    // Opening turns it into a receipt that says when, and nothing else.
    open_with(&app, &id, &s.secrets).await;
    let v = send(&app, status(&token)).await.json();
    assert_eq!(v["state"], "opened");
    assert!(v["changed_at"].as_str().unwrap().ends_with('Z'));
    assert!(v.get("envelope").is_none());
    // An opened message cannot be burned.
    let r = send(
        &app,
        with_bearer(
            Request::delete(format!("/api/v1/messages/{id}"))
                .body(Body::empty())
                .unwrap(),
            &token,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["state"], "opened");
    // Unknown IDs are 404, malformed ones 400.
    let r = send(
        &app,
        with_bearer(get("/api/v1/messages/AAAAAAAAAAAAAAAAAAAAAA"), &token),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, with_bearer(get("/api/v1/messages/bad"), &token)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// A wrong management token gets exactly the answer an unknown ID gets
/// (status, every header, body byte for byte), for status and burn, while
/// the message waits and after it was opened: an ID alone tells nothing.
#[tokio::test]
async fn a_wrong_token_is_answered_like_an_unknown_id() {
    let (app, _) = app();
    let s = sealed("exists");
    let (id, token) = create_managed(&app, &s).await;
    let (_, wrong) = create_managed(&app, &sealed("someone else's")).await;
    let unknown = "AAAAAAAAAAAAAAAAAAAAAA";
    let status = |id: &str| with_bearer(get(&format!("/api/v1/messages/{id}")), &wrong);
    let burn = |id: &str| {
        with_bearer(
            Request::delete(format!("/api/v1/messages/{id}"))
                .body(Body::empty())
                .unwrap(),
            &wrong,
        )
    };
    let same = |a: &Reply, b: &Reply, what: &str| {
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(a.headers, b.headers, "{what}");
        assert_eq!(a.body, b.body, "{what}");
    };
    for opened in [false, true] {
        if opened {
            open_with(&app, &id, &s.secrets).await;
        }
        let live = send(&app, status(&id)).await;
        assert_eq!(live.status, StatusCode::NOT_FOUND);
        same(&live, &send(&app, status(unknown)).await, "status");
        same(
            &send(&app, burn(&id)).await,
            &send(&app, burn(unknown)).await,
            "burn",
        );
    }
    // The right token still sees its receipt: nothing was burned.
    let r = send(
        &app,
        with_bearer(get(&format!("/api/v1/messages/{id}")), &token),
    )
    .await;
    assert_eq!(r.json()["state"], "opened");
}

#[tokio::test]
async fn the_sender_can_burn_an_unread_message() {
    let (app, store) = app();
    let s = sealed("burn me");
    let (id, token) = create_managed(&app, &s).await;
    let burn = |t: &str| {
        with_bearer(
            Request::delete(format!("/api/v1/messages/{id}"))
                .body(Body::empty())
                .unwrap(),
            t,
        )
    };
    let (_, other) = create_managed(&app, &sealed("x")).await;
    assert_eq!(send(&app, burn(&other)).await.status, StatusCode::NOT_FOUND);
    assert!(
        store.peek_raw(&id.parse().unwrap()).is_some(),
        "a wrong token burns nothing"
    );
    let r = send(&app, burn(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["state"], "burned");
    assert!(store.peek_raw(&id.parse().unwrap()).is_none());
    assert_eq!(
        open_with(&app, &id, &s.secrets).await.status,
        StatusCode::NOT_FOUND
    );
    let r = send(&app, burn(&token)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["state"], "burned");
    let metrics = send(&app, get("/metrics")).await.text();
    assert!(
        metrics.contains("otm_messages_total{outcome=\"burned_by_sender\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_failed_attempt_limit_is_the_stores_own() {
    let store = Arc::new(MemoryStore::new(
        StoreOptions::default().with_max_failed_attempts(2),
    ));
    let app = app_with(store, generous());
    let v = send(&app, get("/api/v1/config")).await.json();
    assert_eq!(v["max_failed_attempts"], 2);
}

#[tokio::test]
async fn metrics_show_the_breaker_given_and_none_when_none_is_asked_for() {
    use otm_store::{Breaker, BreakerConfig};
    let breaker = Arc::new(Breaker::new(store(), BreakerConfig::default()));
    // The router finds the breaker the store is (BlobStore::breaker) and
    // shows its figures.
    let app = app_with(breaker.clone(), generous());
    let metrics = send(&app, get("/metrics")).await.text();
    assert!(metrics.contains("otm_store_breaker_open 0"), "{metrics}");
    // With no breaker asked for and none given, /metrics has no breaker.
    let plain = app_with(store(), generous().with_store_breaker(None));
    let metrics = send(&plain, get("/metrics")).await.text();
    assert!(!metrics.contains("otm_store_breaker_open"), "{metrics}");
}

/// The JSON data block a page carries for its scripts.
fn page_data(html: &str) -> Value {
    let data = html
        .split("<script type=\"application/json\" id=\"otm-i18n\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("the page's data block");
    serde_json::from_str(data).expect("JSON")
}

/// The pages are sent in the reader's language, chosen before the page
/// leaves the server (no flash of English): the `otm_lang` cookie from the
/// language menu, else `Accept-Language`, else English; with `Vary` for
/// caches and `Content-Language`. An operator's directory of string tables
/// changes a text without a rebuild; its strings are text, never markup.
#[tokio::test]
async fn pages_speak_the_readers_language() {
    let (app, _) = app();
    let page = |accept: Option<&str>, cookie: Option<&str>| {
        let mut req = Request::get("/");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT_LANGUAGE, a);
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        req.body(Body::empty()).unwrap()
    };
    let english = send(&app, page(None, None)).await;
    assert!(english.text().contains("<html lang=\"en\" dir=\"ltr\">"));
    assert!(english.text().contains("Send a secret that opens once"));
    assert_eq!(english.headers[header::CONTENT_LANGUAGE], "en");
    let vary = english.headers[header::VARY].to_str().unwrap();
    assert!(
        vary.contains("Accept-Language") && vary.contains("Cookie"),
        "{vary}"
    );

    let arabic = send(&app, page(Some("ar-EG,ar;q=0.9,en;q=0.5"), None)).await;
    let html = arabic.text();
    assert!(html.contains("<html lang=\"ar\" dir=\"rtl\">"), "{html}");
    assert!(html.contains("أرسل سرًّا لا يُفتح إلا مرة واحدة"));
    assert!(!html.contains("Send a secret that opens once"));
    assert_eq!(arabic.headers[header::CONTENT_LANGUAGE], "ar");
    // The scripts' strings ride along, in the same language.
    let data = page_data(&html);
    assert_eq!(data["lang"], "ar");
    assert_eq!(data["dir"], "rtl");
    assert_eq!(data["strings"]["link.copy"], "نسخ الرابط");
    // The language menu lists every language in its own name, this one chosen.
    assert!(html.contains("<option value=\"ar\" lang=\"ar\" selected>العربية</option>"));
    assert!(html.contains("<option value=\"de\" lang=\"de\">Deutsch</option>"));

    // The menu's cookie wins over the browser's languages.
    let german = send(&app, page(Some("ar"), Some("theme=x; otm_lang=de"))).await;
    assert_eq!(german.headers[header::CONTENT_LANGUAGE], "de");
    assert!(german.text().contains("Link erstellen"));
    for uri in [
        "/about",
        "/otm/AAAAAAAAAAAAAAAAAAAAAA",
        "/manage/AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let req = Request::get(uri)
            .header(header::ACCEPT_LANGUAGE, "fr-CA")
            .body(Body::empty())
            .unwrap();
        let reply = send(&app, req).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert_eq!(reply.headers[header::CONTENT_LANGUAGE], "fr", "{uri}");
        assert!(
            reply.text().contains("<html lang=\"fr\" dir=\"ltr\">"),
            "{uri}"
        );
    }

    // An operator's strings: a changed text and a new language, escaped.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("de.json"),
        r#"{"language":"de","name":"Deutsch","dir":"ltr","strings":{"compose.create":"<b>Los</b>"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nl.json"),
        r#"{"language":"nl","name":"Nederlands {{BODY}} {{STRINGS}} {{BASE}}","dir":"ltr","strings":{"compose.title":"Stuur een geheim","site.brand_label":"{{t:compose.title}}"}}"#,
    )
    .unwrap();
    let translations = otm_http::i18n::Translations::builtin()
        .with_dir(dir.path())
        .unwrap();
    let app = app_with(store(), generous().with_translations(translations));
    let german = send(&app, page(Some("de"), None)).await.text();
    assert!(german.contains("&lt;b&gt;Los&lt;/b&gt;") && !german.contains("<b>Los"));
    let dutch = send(&app, page(Some("nl"), None)).await.text();
    assert!(dutch.contains("<html lang=\"nl\" dir=\"ltr\">"));
    assert!(dutch.contains("Stuur een geheim"));
    // What the Dutch table lacks is English.
    assert!(dutch.contains("Create link"));
    // A string is never read as one of the page's placeholders.
    assert_eq!(dutch.matches("<main id=\"main\"").count(), 1);
    assert_eq!(dutch.matches("id=\"otm-i18n\"").count(), 1);
    assert!(dutch.contains("aria-label=\"&#123;&#123;t:compose.title&#125;&#125;\""));
    assert!(dutch.contains(
        "Nederlands &#123;&#123;BODY&#125;&#125; &#123;&#123;STRINGS&#125;&#125; &#123;&#123;BASE&#125;&#125;"
    ));
    // A string that names a placeholder of its own is refused at load.
    std::fs::write(
        dir.path().join("nl.json"),
        r#"{"language":"nl","name":"Nederlands","dir":"ltr","strings":{"site.brand_label":"{{STRINGS}}"}}"#,
    )
    .unwrap();
    let refused = otm_http::i18n::Translations::builtin()
        .with_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("uses {STRINGS}") && refused.contains("fills none"),
        "{refused}"
    );
}

/// The reveal page tells the reader this server's number of wrong
/// passphrase attempts (sent with its strings, written before the form
/// shows), not a number fixed in the text.
#[tokio::test]
async fn the_reveal_page_carries_this_servers_number_of_attempts() {
    let store = Arc::new(MemoryStore::new(
        StoreOptions::default().with_max_failed_attempts(3),
    ));
    let app = app_with(store, generous());
    let html = send(&app, get("/otm/AAAAAAAAAAAAAAAAAAAAAA")).await.text();
    let data = page_data(&html);
    assert_eq!(data["settings"]["max_failed_attempts"], 3);
    assert!(data["strings"]["reveal.passphrase_hint"]["other"]
        .as_str()
        .unwrap()
        .contains("{n} wrong attempts"));
    assert!(
        !html.contains("5 wrong attempts"),
        "a fixed number in the page"
    );
}
