//! `otm_http::Service`: a host's backend sends messages in process while
//! the same instance serves the API. A link minted by `Service::send` opens
//! through HTTP with the ordinary client, exactly once; a message a client
//! created through HTTP is managed through the service; both paths share
//! the limits, the checks and the counters.

use std::sync::Arc;
use std::time::Duration;

use otm_client::Client;
use otm_core::{ErrorCode, Passphrase, SendOptions};
use otm_http::{Caller, Config, RateLimit, Service, ServiceError};
use otm_store::{BlobStore, MessageState, SqliteConfig, SqliteStore};

/// A service on a SQLite file, served on a loopback port, whose links point
/// at that port.
async fn serve(config: Config) -> (Service, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/secrets", listener.local_addr().unwrap());
    let plenty = RateLimit {
        per_minute: 10_000,
        burst: 10_000,
    };
    let service = Service::new(
        Arc::new(store) as Arc<dyn BlobStore>,
        config.with_base_url(&base).with_rate_limits(plenty, plenty),
    )
    .unwrap();
    let app: axum::Router = axum::Router::new().nest("/secrets", service.router_with_admin());
    otm_testkit::server::spawn_app(listener, app);
    (service, base, dir)
}

fn metric(text: &str, outcome: &str) -> u64 {
    let line = format!("otm_messages_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {outcome} in {text}"))
}

#[tokio::test]
async fn a_link_sent_by_the_backend_opens_once_over_http() {
    let (service, base, _dir) = serve(Config::default()).await;
    let text = "your initial password: 7fW#q2\nchange it at first login";
    let sent = service
        .send(
            &Caller::Server,
            text,
            &SendOptions::new().ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert!(sent.link.to_url().starts_with(&format!("{base}/otm/")));
    assert_eq!(sent.link.id, sent.manage_link.id);

    // The store holds ciphertext only.
    let status = service
        .status(
            &Caller::Server,
            &sent.manage_link.id,
            &sent.manage_link.token,
        )
        .await
        .unwrap();
    assert_eq!(status.state, MessageState::Waiting);

    // The reader, with the ordinary client, over HTTP.
    let client = Client::new(&base).unwrap();
    let opened = client.open(&sent.link, None).await.unwrap();
    assert_eq!(opened.as_str(), text);
    let again = client.open(&sent.link, None).await.unwrap_err();
    assert!(matches!(again, otm_client::Error::Gone), "{again}");

    // The sender, through the service and through HTTP: opened.
    let status = service
        .status(
            &Caller::Server,
            &sent.manage_link.id,
            &sent.manage_link.token,
        )
        .await
        .unwrap();
    assert_eq!(status.state, MessageState::Opened);
    let receipt = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Opened);
    let burn = service
        .burn(
            &Caller::Server,
            &sent.manage_link.id,
            &sent.manage_link.token,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&burn, ServiceError::NotWaiting(s) if s.state == MessageState::Opened),
        "{burn}"
    );
}

#[tokio::test]
async fn passphrases_tokens_and_limits_hold_on_the_backend_path() {
    let (service, base, _dir) =
        serve(Config::default().with_max_ttl(Duration::from_secs(3600))).await;
    let client = Client::new(&base).unwrap();

    // With a passphrase: the link alone does not open it.
    let phrase = Passphrase::new("correct horse").unwrap();
    let sent = service
        .send(
            &Caller::Server,
            "behind a passphrase",
            &SendOptions::new().passphrase(&phrase),
        )
        .await
        .unwrap();
    assert!(sent.link.passphrase);
    let wrong = Passphrase::new("wrong horse").unwrap();
    let err = client.open(&sent.link, Some(&wrong)).await.unwrap_err();
    assert!(matches!(err, otm_client::Error::WrongProof { .. }), "{err}");
    let opened = client.open(&sent.link, Some(&phrase)).await.unwrap();
    assert_eq!(opened.as_str(), "behind a passphrase");

    // The server's limits apply to the backend too.
    let err = service
        .send(
            &Caller::Server,
            "too long a life",
            &SendOptions::new().ttl(Duration::from_secs(7200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TtlTooLong, "{err}");
    let err = service
        .send(
            &Caller::Server,
            "x",
            &SendOptions::new().ttl(Duration::from_millis(10)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadTtl, "{err}");
    let long = "x".repeat(otm_core::MAX_MESSAGE_CHARS + 1);
    let err = service
        .send(&Caller::Server, &long, &SendOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooLarge, "{err}");

    // Burned by its sender through the service: gone for the reader.
    let sent = service
        .send(&Caller::Server, "burn me", &SendOptions::new())
        .await
        .unwrap();
    let other = service
        .send(&Caller::Server, "another", &SendOptions::new())
        .await
        .unwrap();
    let err = service
        .burn(
            &Caller::Server,
            &sent.manage_link.id,
            &other.manage_link.token,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::WrongToken), "{err}");
    let burned = service
        .burn(
            &Caller::Server,
            &sent.manage_link.id,
            &sent.manage_link.token,
        )
        .await
        .unwrap();
    assert_eq!(burned.state, MessageState::Burned);
    let err = client.open(&sent.link, None).await.unwrap_err();
    assert!(matches!(err, otm_client::Error::Gone), "{err}");

    // One set of counters for both paths: a browser-style create over HTTP
    // and the backend's sends.
    let stored = client.send("over http", &SendOptions::new()).await.unwrap();
    let status = service
        .status(
            &Caller::Server,
            &stored.manage_link.id,
            &stored.manage_link.token,
        )
        .await
        .unwrap();
    assert_eq!(status.state, MessageState::Waiting);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "created"), 4, "{metrics}");
    assert_eq!(metric(&metrics, "opened"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "wrong_proof"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "burned_by_sender"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "bad_request"), 3, "{metrics}");
}

#[tokio::test]
async fn the_senders_reference_comes_back_with_the_status_only() {
    let (service, base, _dir) = serve(Config::default()).await;
    let client = Client::new(&base).unwrap();
    // From the backend: the reference is in the status, before and after
    // the open, and nowhere in what the reader gets.
    let sent = service
        .send(
            &Caller::Server,
            "for ada",
            &SendOptions::new().reference("user:ada ticket:4711"),
        )
        .await
        .unwrap();
    let (id, token) = (&sent.manage_link.id, &sent.manage_link.token);
    let status = service.status(&Caller::Server, id, token).await.unwrap();
    assert_eq!(status.reference.as_deref(), Some("user:ada ticket:4711"));
    let opened = client.open(&sent.link, None).await.unwrap();
    assert_eq!(opened.as_str(), "for ada");
    let receipt = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Opened);
    assert_eq!(receipt.reference.as_deref(), Some("user:ada ticket:4711"));

    let plain = client.send("none", &SendOptions::new()).await.unwrap();
    assert_eq!(
        client.status(&plain.manage_link).await.unwrap().reference,
        None
    );

    // A stranger may not choose a reference (an event would carry it as if
    // the host's): over HTTP, an anonymous create with one is refused with
    // its own code, and nothing is stored.
    let err = client
        .send("via the API", &SendOptions::new().reference("ada"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ReferenceNotAllowed), "{err}");
    let stranger = Caller::Anonymous("192.0.2.7".parse().unwrap());
    let err = service
        .send(&stranger, "x", &SendOptions::new().reference("ada"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReferenceNotAllowed, "{err}");

    // Bounded and printable, with its own code.
    for bad in [
        "r".repeat(otm_store::MAX_REFERENCE_BYTES + 1),
        String::new(),
        "two\nlines".into(),
    ] {
        let err = service
            .send(&Caller::Server, "x", &SendOptions::new().reference(&bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadReference, "{err}");
    }
}

#[tokio::test]
async fn sending_needs_a_base_url() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
        .await
        .unwrap();
    let service = Service::new(Arc::new(store), Config::default()).unwrap();
    let err = service
        .send(&Caller::Server, "x", &SendOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NoBaseUrl), "{err}");
}

/// Every creator gets the same quota here: 3 creates an hour.
struct ThreeAnHour;

#[async_trait::async_trait]
impl otm_http::policy::CreatePolicy for ThreeAnHour {
    async fn decide(
        &self,
        _: &Caller,
        _: &otm_http::policy::CreateAsk<'_>,
    ) -> otm_http::policy::Decision {
        use otm_http::policy::{CreateLimits, Decision};
        Decision::allow(CreateLimits::default().with_quota(
            "everyone",
            3,
            Duration::from_secs(3600),
        ))
    }
}

#[tokio::test]
async fn a_quota_holds_across_replicas_of_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(
        SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
            .await
            .unwrap(),
    );
    let mut bases = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let otm = Service::new(
            store.clone(),
            Config::default()
                .with_base_url(&base)
                .with_create_policy(ThreeAnHour),
        )
        .unwrap();
        let app: axum::Router = otm.router();
        otm_testkit::server::spawn_app(listener, app);
        bases.push(base);
    }
    let (a, b) = (
        Client::new(&bases[0]).unwrap(),
        Client::new(&bases[1]).unwrap(),
    );
    a.send("one", &SendOptions::new()).await.unwrap();
    b.send("two", &SendOptions::new()).await.unwrap();
    a.send("three", &SendOptions::new()).await.unwrap();
    for (client, what) in [(&a, "a fourth on A"), (&b, "a fourth on B")] {
        let err = client.send("four", &SendOptions::new()).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded), "{what}: {err}");
    }
}

/// The service composes the breaker: one in front of the store when
/// `Config::store_breaker` asks for it, none otherwise.
#[tokio::test]
async fn the_service_composes_the_breaker() {
    use otm_store::MemoryStore;
    let plain: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(Default::default()));
    let service = Service::new(plain.clone(), Config::default()).unwrap();
    assert!(service.breaker().is_some(), "wrapped in one");
    assert!(!Arc::ptr_eq(service.store(), &plain));
    let service = Service::new(plain.clone(), Config::default().with_store_breaker(None)).unwrap();
    assert!(service.breaker().is_none());
    assert!(Arc::ptr_eq(service.store(), &plain));
}

/// A policy that counts quotas on a store that cannot count them is
/// refused at start, with the name of what is missing.
#[tokio::test]
async fn a_policy_that_counts_quotas_needs_a_store_that_can() {
    /// A store that declares no quotas: the memory store, without them.
    #[derive(Debug)]
    struct NoQuotas(otm_store::MemoryStore);
    #[async_trait::async_trait]
    impl BlobStore for NoQuotas {
        async fn put(
            &self,
            id: &otm_core::MessageId,
            m: otm_store::NewMessage,
        ) -> otm_store::Result<()> {
            self.0.put(id, m).await
        }
        async fn take(
            &self,
            id: &otm_core::MessageId,
            a: &otm_core::AccessProof,
            p: &otm_core::ClaimProof,
        ) -> otm_store::Result<Vec<u8>> {
            self.0.take(id, a, p).await
        }
        async fn burn(&self, id: &otm_core::MessageId) -> otm_store::Result<()> {
            self.0.burn(id).await
        }
        async fn status(
            &self,
            id: &otm_core::MessageId,
        ) -> otm_store::Result<otm_store::MessageStatus> {
            self.0.status(id).await
        }
        async fn check(&self) -> otm_store::Result<()> {
            Ok(())
        }
        fn backend_name(&self) -> &'static str {
            "no-quotas"
        }
        fn options(&self) -> &otm_store::StoreOptions {
            self.0.options()
        }
    }
    struct Counts;
    #[async_trait::async_trait]
    impl otm_http::policy::CreatePolicy for Counts {
        async fn decide(
            &self,
            _: &Caller,
            _: &otm_http::policy::CreateAsk<'_>,
        ) -> otm_http::policy::Decision {
            otm_http::policy::Decision::allow(otm_http::policy::CreateLimits::default().with_quota(
                "all",
                1,
                Duration::from_secs(60),
            ))
        }
        fn counts_quotas(&self) -> bool {
            true
        }
    }
    let store = Arc::new(NoQuotas(otm_store::MemoryStore::new(Default::default())));
    let err = Service::new(store, Config::default().with_create_policy(Counts)).unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::MissingCapability {
                what: "quotas",
                backend: "no-quotas"
            }
        ),
        "{err}"
    );
}

/// The policy of the pipeline test: callers are named by the `x-user`
/// header over HTTP (or passed by the host); `staff` may keep messages a
/// day, `admin` as long as the server allows, `closed` may not give a
/// reference, `banned` nothing, names starting with `quota` one create an
/// hour, and anonymous callers the defaults.
struct ByName;

#[async_trait::async_trait]
impl otm_http::policy::CreatePolicy for ByName {
    async fn identify(
        &self,
        request: &axum::http::request::Parts,
        client: std::net::IpAddr,
    ) -> Result<Caller, otm_http::policy::Refusal> {
        Ok(match request.headers.get("x-user") {
            Some(name) => Caller::Identity(name.to_str().unwrap().to_owned()),
            None => Caller::Anonymous(client),
        })
    }

    async fn decide(
        &self,
        caller: &Caller,
        _: &otm_http::policy::CreateAsk<'_>,
    ) -> otm_http::policy::Decision {
        use otm_http::policy::{CreateLimits, Decision};
        let hour = Duration::from_secs(3600);
        match caller {
            Caller::Identity(name) if name == "staff" => {
                Decision::allow(CreateLimits::default().with_max_ttl(24 * hour))
            }
            Caller::Identity(name) if name == "admin" => Decision::allow(CreateLimits::default()),
            Caller::Identity(name) if name == "closed" => {
                Decision::allow(CreateLimits::default().with_references(false))
            }
            Caller::Anonymous(_) => Decision::allow(CreateLimits::default()),
            Caller::Identity(name) if name.starts_with("quota") => {
                Decision::allow(CreateLimits::default().with_quota(name.clone(), 1, hour))
            }
            _ => Decision::deny("Not you."),
        }
    }
}

/// A sealed envelope and its secrets, as a browser makes them.
fn sealed() -> (Vec<u8>, otm_core::Secrets) {
    let secrets = otm_core::Secrets::derive(&otm_core::Key::generate().unwrap(), None);
    let envelope = otm_core::seal(&secrets, "through the pipeline").unwrap();
    (envelope, secrets)
}

/// One create through HTTP as `user`: `Ok(())` or the API's error code.
async fn create_over_http(
    base: &str,
    user: &str,
    ttl: u64,
    reference: Option<&str>,
) -> Result<(), ErrorCode> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let (envelope, secrets) = sealed();
    let mut body = serde_json::json!({
        "envelope": URL_SAFE_NO_PAD.encode(envelope),
        "verifier": secrets.claim_verifier().to_base64url().to_string(),
        "access_verifier": secrets.access_verifier().to_base64url().to_string(),
        "ttl_seconds": ttl,
    });
    if let Some(r) = reference {
        body["reference"] = r.into();
    }
    let mut request = reqwest::Client::new().post(format!("{base}/api/v1/messages"));
    if !user.is_empty() {
        request = request.header("x-user", user);
    }
    let response = request.json(&body).send().await.unwrap();
    if response.status() == 201 {
        return Ok(());
    }
    let status = response.status().as_u16();
    let error: serde_json::Value = response.json().await.unwrap();
    let code = ErrorCode::from_code(error["error"].as_str().unwrap()).unwrap();
    assert_eq!(status, code.http_status(), "{error}");
    Err(code)
}

/// The same create through the service as `user` (anonymous when empty).
async fn create_in_process(
    service: &Service,
    user: &str,
    ttl: u64,
    reference: Option<&str>,
) -> Result<(), ErrorCode> {
    let (envelope, secrets) = sealed();
    let mut request = otm_http::Create::new(
        envelope,
        secrets.claim_verifier(),
        secrets.access_verifier(),
    )
    .with_ttl(Duration::from_secs(ttl));
    if let Some(r) = reference {
        request = request.with_reference(r);
    }
    let caller = match user {
        "" => Caller::Anonymous("127.0.0.1".parse().unwrap()),
        _ => Caller::Identity(user.to_owned()),
    };
    service
        .create(&caller, request)
        .await
        .map(drop)
        .map_err(|e| e.code())
}

/// Every create goes through one pipeline: the same cases through HTTP and
/// through the service give the same outcome, and a create that fails any
/// check never uses a slot of its creator's quota.
#[tokio::test]
async fn http_and_the_service_run_one_create_pipeline() {
    let day = 86_400;
    let (service, base, _dir) = serve(
        Config::default()
            .with_max_ttl(Duration::from_secs(3 * day))
            .with_create_policy(ByName),
    )
    .await;
    type Case = (
        &'static str,
        u64,
        Option<&'static str>,
        Result<(), ErrorCode>,
    );
    let cases: &[Case] = &[
        ("staff", 3600, None, Ok(())),
        ("staff", 2 * day, None, Err(ErrorCode::TtlTooLong)),
        ("admin", 2 * day, Some("ticket 1"), Ok(())),
        ("admin", 4 * day, None, Err(ErrorCode::TtlTooLong)),
        ("banned", 3600, None, Err(ErrorCode::CreateDenied)),
        ("staff", 0, None, Err(ErrorCode::BadTtl)),
        ("staff", 3600, Some(""), Err(ErrorCode::BadReference)),
        (
            "staff",
            3600,
            Some("tab\there"),
            Err(ErrorCode::BadReference),
        ),
        // Only a creator the server knows may give a reference.
        ("", 3600, None, Ok(())),
        ("", 3600, Some("ada"), Err(ErrorCode::ReferenceNotAllowed)),
        (
            "closed",
            3600,
            Some("ada"),
            Err(ErrorCode::ReferenceNotAllowed),
        ),
        ("closed", 3600, None, Ok(())),
        // A failed create first: it must not use the one slot.
        ("quota", 0, None, Err(ErrorCode::BadTtl)),
        ("quota", 4 * day, None, Err(ErrorCode::TtlTooLong)),
        ("quota", 3600, Some(""), Err(ErrorCode::BadReference)),
        (
            "quota",
            3600,
            Some("a\u{1b}[31m"),
            Err(ErrorCode::BadReference),
        ),
        ("quota", 3600, None, Ok(())),
        ("quota", 3600, None, Err(ErrorCode::QuotaExceeded)),
    ];
    for (i, (user, ttl, reference, expected)) in cases.iter().enumerate() {
        // Each path has its own quota, so both see the same sequence.
        let http_user = user.replace("quota", "quota-http");
        let over_http = create_over_http(&base, &http_user, *ttl, *reference).await;
        let svc_user = user.replace("quota", "quota-svc");
        let in_process = create_in_process(&service, &svc_user, *ttl, *reference).await;
        assert_eq!(&over_http, expected, "case {i} ({user}) over HTTP");
        assert_eq!(&in_process, expected, "case {i} ({user}) in process");
    }
    // The host's backend is a caller like any other: this policy does not
    // know it, so it is refused too.
    let err = service
        .send(&Caller::Server, "from the backend", &SendOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::CreateDenied, "{err}");
}

/// The host's own backend is not rate limited; the same sends from an
/// anonymous caller are.
#[tokio::test]
async fn the_backend_is_exempt_from_rate_limits_by_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
        .await
        .unwrap();
    let one = RateLimit {
        per_minute: 1,
        burst: 1,
    };
    let service = Service::new(
        Arc::new(store),
        Config::default()
            .with_base_url("https://otm.example")
            .with_rate_limits(one, one),
    )
    .unwrap();
    for _ in 0..3 {
        service
            .send(&Caller::Server, "backend", &SendOptions::new())
            .await
            .unwrap();
    }
    let stranger = Caller::Anonymous("192.0.2.1".parse().unwrap());
    service
        .send(&stranger, "first", &SendOptions::new())
        .await
        .unwrap();
    let err = service
        .send(&stranger, "second", &SendOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::RateLimited { retry_after_secs } if retry_after_secs >= 1),
        "{err}"
    );
}
