//! Requests for a secret over the JSON API, driven in-process with
//! `tower::ServiceExt::oneshot`, on the in-memory store and on SQLite: the
//! whole flow (ask, read, answer once, open once, status, withdraw), an ID
//! or a wrong proof that reads, answers, burns and withdraws nothing, bad
//! input refused with its code, the create policy deciding who may ask,
//! and 32 responders racing over HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{
    AnswerProof, ErrorCode, MessageId, Passphrase, ReceiveSecret, RequestPublicKey, SEALED_NOTE_LEN,
};
use otm_http::policy::{CreateAsk, CreateLimits, CreatePolicy, Decision};
use otm_http::{Caller, Config, RateLimit};
use otm_store::{BlobStore, MemoryStore, SqliteConfig, SqliteStore, StoreOptions};
use otm_testkit::oneshot::{post, send, with_bearer, Reply};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn generous() -> Config {
    let plenty = RateLimit {
        per_minute: 100_000,
        burst: 100_000,
    };
    Config::default().with_rate_limits(plenty, plenty)
}

fn app_on(store: Arc<dyn BlobStore>, config: Config) -> Router {
    otm_http::Service::new(store, config).unwrap().router()
}

fn memory_app() -> Router {
    app_on(
        Arc::new(MemoryStore::new(StoreOptions::default())),
        generous(),
    )
}

/// The asker's side: the receive secret and what it sends.
struct Asker {
    secret: ReceiveSecret,
    passphrase: Option<Passphrase>,
    note: String,
}

impl Asker {
    fn new(note: &str) -> Asker {
        Asker {
            secret: ReceiveSecret::generate().unwrap(),
            passphrase: None,
            note: note.to_owned(),
        }
    }

    fn body(&self) -> Value {
        let token = self.secret.answer_token();
        let note = token
            .seal_note(&self.secret.public_key(), &self.note)
            .unwrap();
        let secrets = self.secret.answer_secrets(self.passphrase.as_ref());
        json!({
            "note": b64(&note),
            "answer_verifier": token.proof().verifier().to_base64url(),
            "access_verifier": secrets.access_verifier().to_base64url(),
            "verifier": secrets.claim_verifier().to_base64url(),
            "ttl_seconds": 3600,
        })
    }

    /// Asks; the request's ID.
    async fn ask(&self, app: &Router) -> String {
        let r = send(app, post("/api/v1/requests", &self.body())).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        let id = v["id"].as_str().unwrap().to_owned();
        assert_eq!(v["path"], format!("/request/{id}"));
        assert_eq!(v["receive_path"], format!("/receive/{id}"));
        id
    }

    fn access(&self) -> String {
        let secrets = self.secret.answer_secrets(self.passphrase.as_ref());
        secrets.access_proof().to_base64url().to_string()
    }

    async fn status(&self, app: &Router, id: &str) -> Reply {
        send(
            app,
            with_bearer("GET", &format!("/api/v1/requests/{id}"), &self.access()),
        )
        .await
    }

    /// Takes the answer like any message and opens it.
    async fn take(&self, app: &Router, id: &str) -> Result<String, Reply> {
        let secrets = self.secret.answer_secrets(self.passphrase.as_ref());
        let body = json!({
            "access_proof": secrets.access_proof().to_base64url().as_str(),
            "proof": secrets.claim_proof().to_base64url().as_str(),
        });
        let r = send(app, post(&format!("/api/v1/messages/{id}/open"), &body)).await;
        if r.status != StatusCode::OK {
            return Err(r);
        }
        let sealed = URL_SAFE_NO_PAD
            .decode(r.json()["envelope"].as_str().unwrap())
            .unwrap();
        let id: MessageId = id.parse().unwrap();
        Ok(self
            .secret
            .open_answer(&id, &self.note, &sealed)
            .unwrap()
            .to_string())
    }
}

/// The responder's side: what the request link gives.
struct Responder {
    public_key: RequestPublicKey,
    proof: AnswerProof,
    token: otm_core::AnswerToken,
}

impl Responder {
    fn of(asker: &Asker) -> Responder {
        let token = asker.secret.answer_token();
        Responder {
            public_key: asker.secret.public_key(),
            proof: token.proof(),
            token,
        }
    }

    fn proof(&self) -> String {
        self.proof.to_base64url().to_string()
    }

    async fn read(&self, app: &Router, id: &str) -> Reply {
        let body = json!({ "answer_proof": self.proof() });
        send(app, post(&format!("/api/v1/requests/{id}/read"), &body)).await
    }

    /// Reads the note, seals `text` to the asker and answers.
    async fn answer(&self, app: &Router, id: &str, text: &str) -> Reply {
        let read = self.read(app, id).await;
        assert_eq!(
            read.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&read.body)
        );
        let sealed_note = URL_SAFE_NO_PAD
            .decode(read.json()["note"].as_str().unwrap())
            .unwrap();
        let note = self
            .token
            .open_note(&self.public_key, &sealed_note)
            .unwrap();
        let rid: MessageId = id.parse().unwrap();
        let sealed = self.public_key.seal_answer(&rid, &note, text).unwrap();
        let body = json!({ "answer_proof": self.proof(), "answer": b64(&sealed) });
        send(app, post(&format!("/api/v1/requests/{id}/answer"), &body)).await
    }
}

async fn whole_flow(app: Router) {
    let asker = Asker::new("the VPN password for the Berlin office");
    let id = asker.ask(&app).await;
    let status = asker.status(&app, &id).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json()["state"], "waiting");

    let responder = Responder::of(&asker);
    let read = responder.read(&app, &id).await;
    assert_eq!(read.status, StatusCode::OK);
    let info = read.json();
    // Anonymous asker: no creator, so the page says anyone could have asked.
    assert!(info.get("creator").is_none(), "{info}");
    assert_eq!(info["answered"], false);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(info["note"].as_str().unwrap())
            .unwrap()
            .len(),
        SEALED_NOTE_LEN
    );

    let answered = responder.answer(&app, &id, "hunter2 🌍").await;
    assert_eq!(answered.status, StatusCode::CREATED);
    assert!(answered.json()["answered_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // One answer: the second is refused, plainly, and changes nothing.
    let again = responder.answer(&app, &id, "something else").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), ErrorCode::AlreadyAnswered);
    assert!(again.json()["message"]
        .as_str()
        .unwrap()
        .contains("may have reached someone else"));
    assert_eq!(responder.read(&app, &id).await.json()["answered"], true);
    // The request link reads no answer: its proof is neither the answer's
    // access proof nor its claim proof, and it shows no state.
    let body = json!({ "access_proof": responder.proof(), "proof": responder.proof() });
    let r = send(&app, post(&format!("/api/v1/messages/{id}/open"), &body)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );
    let r = send(
        &app,
        with_bearer("GET", &format!("/api/v1/requests/{id}"), &responder.proof()),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );
    let status = asker.status(&app, &id).await.json();
    assert_eq!(status["state"], "answered");
    assert!(status["answered_at"].is_string());

    assert_eq!(asker.take(&app, &id).await.unwrap(), "hunter2 🌍");
    let second = asker.take(&app, &id).await.unwrap_err();
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    let status = asker.status(&app, &id).await.json();
    assert_eq!(status["state"], "opened");
    assert!(status["changed_at"].is_string());
    // Still answered after the take: no second answer.
    let late = responder.answer(&app, &id, "late").await;
    assert_eq!(late.code(), ErrorCode::AlreadyAnswered);

    // Withdrawn: gone for both.
    let r = send(
        &app,
        with_bearer("DELETE", &format!("/api/v1/requests/{id}"), &asker.access()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(asker.status(&app, &id).await.code(), ErrorCode::NotFound);
    assert_eq!(responder.read(&app, &id).await.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn a_request_is_answered_once_and_its_answer_opens_once_in_memory() {
    whole_flow(memory_app()).await;
}

#[tokio::test]
async fn a_request_is_answered_once_and_its_answer_opens_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.db")))
        .await
        .unwrap();
    whole_flow(app_on(Arc::new(store), generous())).await;
}

/// An ID alone (from a proxy log, a link preview), or a wrong proof, gets
/// exactly the answer an unknown ID gets, and reads, answers, burns and
/// withdraws nothing.
#[tokio::test]
async fn an_id_alone_reads_answers_burns_and_withdraws_nothing() {
    let app = memory_app();
    let asker = Asker::new("");
    let id = asker.ask(&app).await;
    let unknown = MessageId::generate().unwrap().to_string();
    let stranger = Responder::of(&Asker::new(""));

    let read = stranger.read(&app, &id).await;
    let read_unknown = stranger.read(&app, &unknown).await;
    assert_eq!(
        (read.status, read.code()),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );
    assert_eq!(
        read.body, read_unknown.body,
        "a wrong proof reads like an unknown ID"
    );

    let body = json!({ "answer_proof": stranger.proof(), "answer": b64(&[b'O'; 400]) });
    let forged = send(&app, post(&format!("/api/v1/requests/{id}/answer"), &body)).await;
    assert_eq!(
        forged.status,
        StatusCode::BAD_REQUEST,
        "a malformed answer is refused first"
    );
    let sealed = asker
        .secret
        .public_key()
        .seal_answer(&id.parse().unwrap(), "", "forged")
        .unwrap();
    let body = json!({ "answer_proof": stranger.proof(), "answer": b64(&sealed) });
    let forged = send(&app, post(&format!("/api/v1/requests/{id}/answer"), &body)).await;
    let forged_unknown = send(
        &app,
        post(&format!("/api/v1/requests/{unknown}/answer"), &body),
    )
    .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    assert_eq!(forged.body, forged_unknown.body);

    let impostor = Asker::new("");
    for method in ["GET", "DELETE"] {
        let r = send(
            &app,
            with_bearer(
                method,
                &format!("/api/v1/requests/{id}"),
                &impostor.access(),
            ),
        )
        .await;
        let u = send(
            &app,
            with_bearer(
                method,
                &format!("/api/v1/requests/{unknown}"),
                &impostor.access(),
            ),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            "{method}"
        );
        assert_eq!(r.body, u.body, "{method}");
    }
    let r = send(
        &app,
        Request::get(format!("/api/v1/requests/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, ErrorCode::TokenRequired)
    );

    // Nothing changed: the real responder answers, the asker reads it.
    assert_eq!(asker.status(&app, &id).await.json()["state"], "waiting");
    let responder = Responder::of(&asker);
    assert_eq!(
        responder.answer(&app, &id, "the real one").await.status,
        StatusCode::CREATED
    );
    assert_eq!(asker.take(&app, &id).await.unwrap(), "the real one");
}

#[tokio::test]
async fn bad_input_gets_its_own_code_and_stores_nothing() {
    let app = memory_app();
    let asker = Asker::new("x");
    let cases: Vec<(&str, Value, ErrorCode)> = vec![
        ("not base64", json!({"note": "***"}), ErrorCode::BadField),
        (
            "short note",
            json!({"note": b64(&[1; 100])}),
            ErrorCode::BadField,
        ),
        (
            "long note",
            json!({"note": b64(&[1; 5000])}),
            ErrorCode::TooLarge,
        ),
        (
            "bad verifier",
            json!({"answer_verifier": "abc"}),
            ErrorCode::BadVerifier,
        ),
        ("zero ttl", json!({"ttl_seconds": 0}), ErrorCode::BadTtl),
        (
            "long ttl",
            json!({"ttl_seconds": 100_000_000}),
            ErrorCode::TtlTooLong,
        ),
        (
            "anonymous reference",
            json!({"reference": "ticket"}),
            ErrorCode::ReferenceNotAllowed,
        ),
        (
            "unknown field",
            json!({"id": "chosen"}),
            ErrorCode::BadField,
        ),
    ];
    for (what, change, code) in cases {
        let mut body = asker.body();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = send(&app, post("/api/v1/requests", &body)).await;
        assert!(r.status.is_client_error(), "{what}: {}", r.status);
        assert_eq!(r.code(), code, "{what}");
    }
    let id = asker.ask(&app).await;
    let responder = Responder::of(&asker);
    let answer_with =
        |answer: Value| json!({ "answer_proof": responder.proof(), "answer": answer });
    let mut bad_version = asker
        .secret
        .public_key()
        .seal_answer(&id.parse().unwrap(), "x", "y")
        .unwrap();
    bad_version[3] = 9;
    for (what, body, code) in [
        (
            "not base64",
            answer_with(json!("***")),
            ErrorCode::BadEnvelope,
        ),
        (
            "bad version",
            answer_with(json!(b64(&bad_version))),
            ErrorCode::BadEnvelope,
        ),
        (
            "too long",
            answer_with(json!("A".repeat(50_000))),
            ErrorCode::TooLarge,
        ),
        (
            "bad proof",
            json!({"answer_proof": "xyz", "answer": b64(&bad_version)}),
            ErrorCode::BadProof,
        ),
    ] {
        let r = send(&app, post(&format!("/api/v1/requests/{id}/answer"), &body)).await;
        assert!(r.status.is_client_error(), "{what}: {}", r.status);
        assert_eq!(r.code(), code, "{what}");
    }
    let r = send(
        &app,
        post(
            "/api/v1/requests/not-an-id/read",
            &json!({"answer_proof": responder.proof()}),
        ),
    )
    .await;
    assert_eq!(r.code(), ErrorCode::BadId);
    assert_eq!(asker.status(&app, &id).await.json()["state"], "waiting");
}

/// Only known creators may ask; their references and quotas apply.
struct OnlyKnownAsk;

#[async_trait]
impl CreatePolicy for OnlyKnownAsk {
    async fn identify(
        &self,
        request: &axum::http::request::Parts,
        client: std::net::IpAddr,
    ) -> Result<Caller, otm_http::policy::Refusal> {
        Ok(match request.headers.get("x-user") {
            Some(user) => Caller::Identity(user.to_str().unwrap().to_owned()),
            None => Caller::Anonymous(client),
        })
    }

    async fn decide(&self, caller: &Caller, ask: &CreateAsk<'_>) -> Decision {
        match (caller, ask.request) {
            (Caller::Anonymous(_), true) => Decision::deny("Only staff may ask for secrets here."),
            (Caller::Identity(name), _) => Decision::allow(CreateLimits::default().with_quota(
                name.clone(),
                2,
                std::time::Duration::from_secs(3600),
            )),
            _ => Decision::allow(CreateLimits::default()),
        }
    }

    fn counts_quotas(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_create_policy_decides_who_may_ask_and_counts_their_quota() {
    let store = Arc::new(MemoryStore::new(StoreOptions::default()));
    let app = app_on(store, generous().with_create_policy(OnlyKnownAsk));
    let asker = Asker::new("for the helpdesk");
    let r = send(&app, post("/api/v1/requests", &asker.body())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, ErrorCode::CreateDenied)
    );

    let as_staff = |body: &Value| {
        Request::post("/api/v1/requests")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-user", "ana@helpdesk")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let mut body = asker.body();
    body["reference"] = json!("ticket 7");
    let r = send(&app, as_staff(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    // The responder is told who asked.
    let info = Responder::of(&asker).read(&app, &id).await.json();
    assert_eq!(
        info["creator"],
        json!({"kind": "identity", "name": "ana@helpdesk"})
    );
    assert_eq!(
        asker.status(&app, &id).await.json()["reference"],
        "ticket 7"
    );
    // The quota counts requests (the answer is charged to the asker).
    assert_eq!(
        send(&app, as_staff(&Asker::new("").body())).await.status,
        StatusCode::CREATED
    );
    let r = send(&app, as_staff(&Asker::new("").body())).await;
    assert_eq!(r.code(), ErrorCode::QuotaExceeded);
    // Answering needs no account: the request link's proof is enough.
    assert_eq!(
        Responder::of(&asker).answer(&app, &id, "42").await.status,
        StatusCode::CREATED
    );
}

/// 32 responders answer one request at once, over HTTP on SQLite: exactly
/// one is stored, the others are told `already_answered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_responders_racing_over_http_store_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.db")))
        .await
        .unwrap();
    let app = app_on(Arc::new(store), generous());
    for trial in 0..5 {
        let mut asker = Asker::new("race");
        if trial % 2 == 1 {
            asker.passphrase = Some(Passphrase::new("correct horse").unwrap());
        }
        let id = asker.ask(&app).await;
        let responder = Arc::new(Responder::of(&asker));
        let rid: MessageId = id.parse().unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..32 {
            let (app, responder, barrier, id) =
                (app.clone(), responder.clone(), barrier.clone(), id.clone());
            let sealed = responder
                .public_key
                .seal_answer(&rid, "race", &format!("answer {n}"))
                .unwrap();
            tasks.spawn(async move {
                let body = json!({ "answer_proof": responder.proof(), "answer": b64(&sealed) });
                barrier.wait().await;
                let r = send(&app, post(&format!("/api/v1/requests/{id}/answer"), &body)).await;
                (n, r)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (n, r) = joined.unwrap();
            match r.status {
                StatusCode::CREATED => winners.push(n),
                StatusCode::CONFLICT => assert_eq!(r.code(), ErrorCode::AlreadyAnswered),
                other => panic!("trial {trial}: responder {n} got {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "trial {trial}: {winners:?}");
        assert_eq!(
            asker.take(&app, &id).await.unwrap(),
            format!("answer {}", winners[0])
        );
    }
}
