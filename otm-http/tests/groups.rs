//! One message for several recipients over the JSON API and through the
//! `Service`, on the in-memory store and on SQLite: a group is created all
//! or none, each member opens once on its own, the group status reads and
//! burns them by their own tokens (a wrong token reads like an unknown ID
//! and burns nothing), bad input is refused with its code and stores
//! nothing, the quota counts every member, the largest group fits its
//! body limit, and the host's `send_group` makes labelled links.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{
    seal, ErrorCode, GroupLink, Key, Link, ManageSecret, ManageToken, MessageId, Passphrase,
    Secrets, SendOptions, MAX_MESSAGE_CHARS,
};
use otm_http::policy::{CreateAsk, CreateLimits, CreatePolicy, Decision};
use otm_http::{Caller, Config, RateLimit, Service};
use otm_store::{BlobStore, MemoryStore, MessageState, SqliteConfig, SqliteStore, StoreOptions};
use otm_testkit::oneshot::{post, send, Reply};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn generous() -> Config {
    let plenty = RateLimit {
        per_minute: 100_000,
        burst: 100_000,
    };
    Config::default()
        .with_rate_limits(plenty, plenty)
        .with_base_url("https://otm.example/s")
}

async fn stores() -> Vec<(&'static str, Arc<dyn BlobStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.db")))
        .await
        .unwrap();
    vec![
        (
            "memory",
            Arc::new(MemoryStore::new(StoreOptions::default())) as Arc<dyn BlobStore>,
            tempfile::tempdir().unwrap(),
        ),
        ("sqlite", Arc::new(sqlite), dir),
    ]
}

/// One recipient's sealed message and its secrets.
struct Member {
    secrets: Secrets,
    body: Value,
}

fn member(text: &str) -> Member {
    let secrets = Secrets::derive(&Key::generate().unwrap(), None);
    let envelope = seal(&secrets, text).unwrap();
    let body = json!({
        "envelope": b64(&envelope),
        "verifier": secrets.claim_verifier().to_base64url().to_string(),
        "access_verifier": secrets.access_verifier().to_base64url().to_string(),
    });
    Member { secrets, body }
}

fn group_body(members: &[Member]) -> Value {
    json!({ "members": members.iter().map(|m| m.body.clone()).collect::<Vec<_>>() })
}

async fn open(app: &Router, id: &str, secrets: &Secrets) -> Reply {
    let body = json!({
        "access_proof": secrets.access_proof().to_base64url().to_string(),
        "proof": secrets.claim_proof().to_base64url().to_string(),
    });
    send(app, post(&format!("/api/v1/messages/{id}/open"), &body)).await
}

fn tokens(created: &Value) -> Vec<Value> {
    created["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"id": m["id"], "manage_token": m["manage_token"]}))
        .collect()
}

fn states(reply: &Reply) -> Vec<Option<String>> {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"]["state"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_group_is_created_whole_and_each_member_opens_once() {
    for (name, store, _dir) in stores().await {
        let app = Service::new(store, generous()).unwrap().router();
        let members: Vec<Member> = ["for Ana", "for Ben", "for Cem"].map(member).into();
        let r = send(&app, post("/api/v1/groups", &group_body(&members))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {r:?}");
        let created = r.json();
        let list = created["members"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{name}");
        // Every token derives from the group secret, so the group status
        // link needs only the secret and the IDs.
        let secret =
            ManageSecret::from_base64url(created["group_secret"].as_str().unwrap()).unwrap();
        for m in list {
            let id: MessageId = m["id"].as_str().unwrap().parse().unwrap();
            let token = ManageToken::from_base64url(m["manage_token"].as_str().unwrap()).unwrap();
            assert!(secret.token_for(&id) == token, "{name}: derived token");
            assert_eq!(m["expires_at"], created["expires_at"], "{name}: one expiry");
            assert_eq!(m["path"], format!("/otm/{id}"));
        }
        // Each member is its own message: Ben's key opens only Ben's.
        let ids: Vec<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
        let wrong = open(&app, ids[0], &members[1].secrets).await;
        assert_eq!(
            wrong.status,
            StatusCode::NOT_FOUND,
            "{name}: another member's key"
        );
        let opened = open(&app, ids[1], &members[1].secrets).await;
        assert_eq!(opened.status, StatusCode::OK, "{name}");
        let envelope = URL_SAFE_NO_PAD
            .decode(opened.json()["envelope"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            *otm_core::open(&members[1].secrets, &envelope).unwrap(),
            "for Ben"
        );
        assert_eq!(
            open(&app, ids[1], &members[1].secrets).await.status,
            StatusCode::NOT_FOUND
        );

        let manage = json!({ "members": tokens(&created) });
        let status = send(&app, post("/api/v1/groups/status", &manage)).await;
        let waiting = Some("waiting".to_owned());
        assert_eq!(
            states(&status),
            [waiting.clone(), Some("opened".into()), waiting.clone()],
            "{name}"
        );
        // A wrong token reads as unknown and burns nothing.
        let mut forged = tokens(&created);
        forged[0]["manage_token"] =
            json!(ManageToken::generate().unwrap().to_base64url().to_string());
        forged[1]["id"] = json!(MessageId::generate().unwrap().to_string());
        let r = send(
            &app,
            post("/api/v1/groups/burn", &json!({ "members": forged })),
        )
        .await;
        assert_eq!(states(&r), [None, None, Some("burned".into())], "{name}");
        let status = send(&app, post("/api/v1/groups/status", &manage)).await;
        assert_eq!(
            states(&status),
            [waiting, Some("opened".into()), Some("burned".into())],
            "{name}: the forged entries changed nothing"
        );
        // Burn all: the waiting one burns, the others keep their state.
        let r = send(&app, post("/api/v1/groups/burn", &manage)).await;
        assert_eq!(
            states(&r),
            [
                Some("burned".into()),
                Some("opened".into()),
                Some("burned".into())
            ],
            "{name}"
        );
        assert_eq!(
            open(&app, ids[0], &members[0].secrets).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            open(&app, ids[2], &members[2].secrets).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

/// Allows everyone; gives "staff" a quota of 5 and records what it saw.
struct Counted(Arc<std::sync::Mutex<Vec<usize>>>);

#[async_trait]
impl CreatePolicy for Counted {
    async fn identify(
        &self,
        _request: &axum::http::request::Parts,
        _client: std::net::IpAddr,
    ) -> Result<Caller, otm_http::policy::Refusal> {
        Ok(Caller::Identity("staff".into()))
    }

    async fn decide(&self, caller: &Caller, ask: &CreateAsk<'_>) -> Decision {
        self.0.lock().unwrap().push(ask.recipients);
        match caller {
            Caller::Identity(name) => Decision::allow(CreateLimits::default().with_quota(
                name.clone(),
                5,
                Duration::from_secs(3600),
            )),
            _ => Decision::allow(CreateLimits::default()),
        }
    }

    fn counts_quotas(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn bad_groups_are_refused_with_their_code_and_use_no_quota() {
    for (name, store, _dir) in stores().await {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let config = generous().with_create_policy(Counted(seen.clone()));
        let app = Service::new(store, config).unwrap().router();
        let one = [member("a")];
        let r = send(&app, post("/api/v1/groups", &group_body(&one))).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, ErrorCode::BadField),
            "{name}"
        );
        let many: Vec<Member> = (0..21).map(|_| member("a")).collect();
        let r = send(&app, post("/api/v1/groups", &group_body(&many))).await;
        assert_eq!(r.code(), ErrorCode::BadField, "{name}: 21 members");
        let mut broken = group_body(&[member("a"), member("b")]);
        broken["members"][1]["envelope"] = json!("AAAA");
        let r = send(&app, post("/api/v1/groups", &broken)).await;
        assert_eq!(r.code(), ErrorCode::BadEnvelope, "{name}");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("members[1]"),
            "{r:?}"
        );
        let mut bad_verifier = group_body(&[member("a"), member("b")]);
        bad_verifier["members"][0]["verifier"] = json!("short");
        let r = send(&app, post("/api/v1/groups", &bad_verifier)).await;
        assert_eq!(r.code(), ErrorCode::BadVerifier, "{name}");
        let mut zero_ttl = group_body(&[member("a"), member("b")]);
        zero_ttl["ttl_seconds"] = json!(0);
        let r = send(&app, post("/api/v1/groups", &zero_ttl)).await;
        assert_eq!(r.code(), ErrorCode::BadTtl, "{name}");
        let mut unknown = group_body(&[member("a"), member("b")]);
        unknown["members"][0]["label"] = json!("Ana");
        let r = send(&app, post("/api/v1/groups", &unknown)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{name}: labels never reach the server"
        );

        // None of that used the quota of 5: a group of 3 fits, then 3 more
        // do not (2 are left) and take nothing, then 2 fit.
        let three: Vec<Member> = (0..3).map(|_| member("q")).collect();
        let r = send(&app, post("/api/v1/groups", &group_body(&three))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {r:?}");
        let r = send(&app, post("/api/v1/groups", &group_body(&three))).await;
        assert_eq!(r.code(), ErrorCode::QuotaExceeded, "{name}");
        let two: Vec<Member> = (0..2).map(|_| member("q")).collect();
        let r = send(&app, post("/api/v1/groups", &group_body(&two))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {r:?}");
        let r = send(&app, post("/api/v1/messages", &member("x").body)).await;
        assert_eq!(r.code(), ErrorCode::QuotaExceeded, "{name}: 5 of 5 used");
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.contains(&3) && seen.contains(&2) && seen.contains(&1),
            "{seen:?}"
        );

        // Group status and burn check their input too.
        let r = send(&app, post("/api/v1/groups/status", &json!({"members": []}))).await;
        assert_eq!(r.code(), ErrorCode::BadField, "{name}");
        let bad_id = json!({"members": [{"id": "nope", "manage_token": "x"}]});
        let r = send(&app, post("/api/v1/groups/burn", &bad_id)).await;
        assert_eq!(r.code(), ErrorCode::BadId, "{name}");
    }
}

#[tokio::test]
async fn the_largest_group_fits_and_a_single_create_keeps_its_limit() {
    let (_, store, _dir) = stores().await.remove(0);
    let app = Service::new(store, generous()).unwrap().router();
    // 8000 four-byte characters: the largest envelope there is.
    let longest = "😀".repeat(MAX_MESSAGE_CHARS);
    let members: Vec<Member> = (0..otm_core::MAX_GROUP).map(|_| member(&longest)).collect();
    let body = group_body(&members);
    assert!(body.to_string().len() > otm_http::API_BODY_LIMIT * 19);
    assert_eq!(
        otm_http::GROUP_BODY_LIMIT,
        880_844,
        "README.md and docs/PROXY.md name this figure"
    );
    let r = send(&app, post("/api/v1/groups", &body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // A single create's body is still held to the single limit.
    let mut single = member("a").body;
    single["envelope"] = json!("A".repeat(otm_http::API_BODY_LIMIT));
    let r = send(&app, post("/api/v1/messages", &single)).await;
    assert_eq!(r.code(), ErrorCode::TooLarge);
}

/// Gives every caller a manage secret, as API tokens with the `manage`
/// scope have.
struct Managing(ManageSecret);

#[async_trait]
impl CreatePolicy for Managing {
    async fn decide(&self, _caller: &Caller, _ask: &CreateAsk<'_>) -> Decision {
        Decision::allow(CreateLimits::default().with_manage_secret(self.0.clone()))
    }
}

#[tokio::test]
async fn tokens_derive_from_the_creators_credential_when_it_manages() {
    let (_, store, _dir) = stores().await.remove(0);
    let credential = ManageSecret::new(b"an-api-token-of-enough-length").unwrap();
    let config = generous().with_create_policy(Managing(credential.clone()));
    let app = Service::new(store, config).unwrap().router();
    let r = send(
        &app,
        post("/api/v1/groups", &group_body(&[member("a"), member("b")])),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let created = r.json();
    assert!(
        created.get("group_secret").is_none(),
        "the credential never leaves: {created}"
    );
    for m in created["members"].as_array().unwrap() {
        let id: MessageId = m["id"].as_str().unwrap().parse().unwrap();
        let token = ManageToken::from_base64url(m["manage_token"].as_str().unwrap()).unwrap();
        assert!(credential.token_for(&id) == token);
    }
}

#[tokio::test]
async fn the_host_sends_one_message_to_labelled_recipients() {
    for (name, store, _dir) in stores().await {
        let otm = Service::new(store, generous()).unwrap();
        let phrase = Passphrase::new("correct horse").unwrap();
        let sent = otm
            .send_group(
                &Caller::Server,
                "wifi: otm-guest / 7fW#q2",
                &[Some("Ana"), None, Some("Ben, the new one")],
                &SendOptions::new().passphrase(&phrase),
            )
            .await
            .unwrap();
        assert_eq!(sent.links.len(), 3, "{name}");
        let url = sent.group_link.to_url();
        assert!(url.starts_with("https://otm.example/s/group#s="), "{name}");
        assert!(!url.contains("wifi"), "{name}");
        let group = GroupLink::parse(&url).unwrap();
        let labels: Vec<Option<&str>> = group.members.iter().map(|m| m.label.as_deref()).collect();
        assert_eq!(
            labels,
            [Some("Ana"), None, Some("Ben, the new one")],
            "{name}"
        );
        // Each share link has its own key and opens its own message once.
        let keys: std::collections::HashSet<String> = sent
            .links
            .iter()
            .map(|l| l.key.to_base64url().to_string())
            .collect();
        assert_eq!(keys.len(), 3, "{name}: three keys");
        let first = Link::parse(&sent.links[0].to_url()).unwrap();
        assert!(first.passphrase, "{name}");
        let secrets = Secrets::derive(&first.key, Some(&phrase));
        let envelope = otm
            .open(
                &Caller::Server,
                &first.id,
                secrets.access_proof(),
                secrets.claim_proof(),
            )
            .await
            .unwrap();
        assert_eq!(
            *otm_core::open(&secrets, &envelope).unwrap(),
            "wifi: otm-guest / 7fW#q2"
        );
        let members: Vec<(MessageId, ManageToken)> = group
            .members
            .iter()
            .map(|m| (m.id, m.token.clone()))
            .collect();
        let receipts = otm.group_status(&Caller::Server, &members).await.unwrap();
        let states: Vec<MessageState> =
            receipts.iter().map(|r| r.as_ref().unwrap().state).collect();
        assert_eq!(
            states,
            [
                MessageState::Opened,
                MessageState::Waiting,
                MessageState::Waiting
            ],
            "{name}"
        );
        // One recipient is too few; a label with a newline is refused.
        let too_few = otm
            .send_group(&Caller::Server, "x", &[Some("Ana")], &SendOptions::new())
            .await
            .unwrap_err();
        assert_eq!(too_few.code(), ErrorCode::BadField);
        let bad_label = otm
            .send_group(
                &Caller::Server,
                "x",
                &[Some("A\nB"), None],
                &SendOptions::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(bad_label.code(), ErrorCode::BadField);
        otm.shutdown().await;
    }
}
