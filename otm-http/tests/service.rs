//! `otm_http::Service`: a host's backend sends messages in process while
//! the same instance serves the API. A link minted by `Service::send` opens
//! through HTTP with the ordinary client, exactly once; a message a client
//! created through HTTP is managed through the service; both paths share
//! the limits, the checks and the counters.

use std::sync::Arc;
use std::time::Duration;

use otm_client::Client;
use otm_core::{ErrorCode, Passphrase, SendOptions};
use otm_http::{Config, RateLimit, Service, ServiceError};
use otm_store::{BlobStore, MessageState, SqliteConfig, SqliteStore};

/// A service on a SQLite file, served on a loopback port, whose links point
/// at that port.
async fn serve(config: Config) -> (Service, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("otm.sqlite3")))
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
    );
    let app: axum::Router = axum::Router::new().nest("/secrets", service.router());
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
        .send(text, &SendOptions::new().ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(sent.link.to_url().starts_with(&format!("{base}/otm/")));
    assert_eq!(sent.link.id, sent.manage_link.id);

    // The store holds ciphertext only.
    let status = service
        .status(&sent.manage_link.id, &sent.manage_link.token)
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
        .status(&sent.manage_link.id, &sent.manage_link.token)
        .await
        .unwrap();
    assert_eq!(status.state, MessageState::Opened);
    let receipt = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Opened);
    let burn = service
        .burn(&sent.manage_link.id, &sent.manage_link.token)
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
            "too long a life",
            &SendOptions::new().ttl(Duration::from_secs(7200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TtlTooLong, "{err}");
    let err = service
        .send("x", &SendOptions::new().ttl(Duration::from_millis(10)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadTtl, "{err}");
    let long = "x".repeat(otm_core::MAX_MESSAGE_CHARS + 1);
    let err = service.send(&long, &SendOptions::new()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooLarge, "{err}");

    // Burned by its sender through the service: gone for the reader.
    let sent = service.send("burn me", &SendOptions::new()).await.unwrap();
    let other = service.send("another", &SendOptions::new()).await.unwrap();
    let err = service
        .burn(&sent.manage_link.id, &other.manage_link.token)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::WrongToken), "{err}");
    let burned = service
        .burn(&sent.manage_link.id, &sent.manage_link.token)
        .await
        .unwrap();
    assert_eq!(burned.state, MessageState::Burned);
    let err = client.open(&sent.link, None).await.unwrap_err();
    assert!(matches!(err, otm_client::Error::Gone), "{err}");

    // One set of counters for both paths: a browser-style create over HTTP
    // and the backend's sends.
    let stored = client.send("over http", &SendOptions::new()).await.unwrap();
    let status = service
        .status(&stored.manage_link.id, &stored.manage_link.token)
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
            "for ada",
            &SendOptions::new().reference("user:ada ticket:4711"),
        )
        .await
        .unwrap();
    let (id, token) = (&sent.manage_link.id, &sent.manage_link.token);
    let status = service.status(id, token).await.unwrap();
    assert_eq!(status.reference.as_deref(), Some("user:ada ticket:4711"));
    let opened = client.open(&sent.link, None).await.unwrap();
    assert_eq!(opened.as_str(), "for ada");
    let receipt = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Opened);
    assert_eq!(receipt.reference.as_deref(), Some("user:ada ticket:4711"));

    // Over HTTP, from an API client.
    let sent = client
        .send("via the API", &SendOptions::new().reference("order 99"))
        .await
        .unwrap();
    let status = service
        .status(&sent.manage_link.id, &sent.manage_link.token)
        .await
        .unwrap();
    assert_eq!(status.reference.as_deref(), Some("order 99"));
    let plain = client.send("none", &SendOptions::new()).await.unwrap();
    assert_eq!(
        client.status(&plain.manage_link).await.unwrap().reference,
        None
    );

    // Bounded, on both paths, with its own code.
    let long = "r".repeat(otm_store::MAX_REFERENCE_BYTES + 1);
    let err = service
        .send("x", &SendOptions::new().reference(&long))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadReference, "{err}");
    let err = client
        .send("x", &SendOptions::new().reference(""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadReference), "{err}");
}

#[tokio::test]
async fn sending_needs_a_base_url() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("otm.sqlite3")))
        .await
        .unwrap();
    let service = Service::new(Arc::new(store), Config::default());
    let err = service.send("x", &SendOptions::new()).await.unwrap_err();
    assert!(matches!(err, ServiceError::NoBaseUrl), "{err}");
}

/// Every creator gets the same quota here: 3 creates an hour.
struct ThreeAnHour;

#[async_trait::async_trait]
impl otm_http::policy::CreatePolicy for ThreeAnHour {
    async fn decide(&self, _: &axum::http::request::Parts) -> otm_http::policy::Decision {
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
        SqliteStore::open(SqliteConfig::new(dir.path().join("otm.sqlite3")))
            .await
            .unwrap(),
    );
    let mut bases = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app: axum::Router = otm_http::router(
            store.clone(),
            Config::default()
                .with_base_url(&base)
                .with_create_policy(ThreeAnHour),
        );
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

/// A store is never behind two breakers: a service wraps a plain store in
/// one (as `Config::store_breaker` says), and takes a store that already is
/// a breaker as it is.
#[tokio::test]
async fn a_store_gets_exactly_one_breaker() {
    use otm_store::{Breaker, BreakerConfig, MemoryStore};
    let plain: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(Default::default()));
    let service = Service::new(plain.clone(), Config::default());
    assert!(service.store().breaker().is_some(), "wrapped in one");
    assert!(!Arc::ptr_eq(service.store(), &plain));

    let breaker: Arc<dyn BlobStore> = Arc::new(Breaker::new(plain, BreakerConfig::default()));
    let service = Service::new(breaker.clone(), Config::default());
    assert!(
        Arc::ptr_eq(service.store(), &breaker),
        "the host's own breaker is used, not wrapped again"
    );
}
