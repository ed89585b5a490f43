//! Events from `Service::dispatch_events`: every change reaches an
//! in-process sink; signed webhooks reach a real HTTP receiver that checks
//! the Standard Webhooks signature with its own HMAC; a receiver that fails
//! twice gets the event on the third try with the same `webhook-id`; one
//! that always fails sees exactly `max_attempts` tries and the event is
//! counted dead; a store without events is refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use otm_client::Client;
use otm_core::{Passphrase, SendOptions};
use otm_http::events::{DispatchConfig, Event, EventKind, EventSink};
use otm_http::webhook::{Webhook, WebhookSecret};
use otm_http::{Config, RateLimit, Service, ServiceError};
use otm_store::{BlobStore, BoxError, SqliteConfig, SqliteStore, StoreOptions};
use otm_testkit::webhooks::receiver;

/// A service on a SQLite file with events on, served on loopback.
async fn serve(events: bool) -> (Service, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(dir.path().join("otm.sqlite3"))
        .with_options(StoreOptions::default().with_events(events));
    let store = SqliteStore::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let plenty = RateLimit {
        per_minute: 10_000,
        burst: 10_000,
    };
    let service = Service::new(
        Arc::new(store) as Arc<dyn BlobStore>,
        Config::default()
            .with_base_url(&base)
            .with_rate_limits(plenty, plenty),
    );
    let app: axum::Router = service.router();
    otm_testkit::server::spawn_app(listener, app);
    (service, base, dir)
}

fn fast() -> DispatchConfig {
    DispatchConfig::default()
        .with_poll(Duration::from_millis(50))
        .with_backoff(Duration::from_millis(100), Duration::from_millis(400))
}

/// Waits until `done` holds, for at most 15 s.
async fn until(mut done: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

#[async_trait]
impl EventSink for Collect {
    async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

#[tokio::test]
async fn every_change_reaches_an_in_process_sink() {
    let (service, base, _dir) = serve(true).await;
    let sink = Arc::new(Collect::default());
    let _dispatcher = service.dispatch_events(sink.clone(), fast()).unwrap();
    let client = Client::new(&base).unwrap();

    let opened = service
        .send("read me", &SendOptions::new().reference("ticket 7"))
        .await
        .unwrap();
    client.open(&opened.link, None).await.unwrap();
    let burned = service.send("burn me", &SendOptions::new()).await.unwrap();
    service
        .burn(&burned.manage_link.id, &burned.manage_link.token)
        .await
        .unwrap();
    let phrase = Passphrase::new("right").unwrap();
    let wrong = Passphrase::new("wrong").unwrap();
    let guessed = client
        .send("guess me", &SendOptions::new().passphrase(&phrase))
        .await
        .unwrap();
    for _ in 0..5 {
        let _ = client.open(&guessed.link, Some(&wrong)).await;
    }

    until(|| sink.0.lock().unwrap().len() >= 6, "six events").await;
    let events = sink.0.lock().unwrap().clone();
    let kinds: Vec<(String, EventKind)> = events
        .iter()
        .map(|e| (e.message.to_string(), e.kind))
        .collect();
    let id = |l: &otm_core::Link| l.id.to_string();
    for expected in [
        (id(&opened.link), EventKind::Created),
        (id(&opened.link), EventKind::Opened),
        (id(&burned.link), EventKind::Created),
        (id(&burned.link), EventKind::Burned),
        (id(&guessed.link), EventKind::Created),
        (id(&guessed.link), EventKind::Destroyed),
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected:?} missing from {kinds:?}"
        );
    }
    let opened_event = events.iter().find(|e| e.kind == EventKind::Opened).unwrap();
    assert_eq!(opened_event.reference.as_deref(), Some("ticket 7"));
    // Nothing is left in the outbox, and the counters say so.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.0.lock().unwrap().len(), 6, "no event twice");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("otm_events_total{outcome=\"delivered\"} 6"),
        "{metrics}"
    );
}

fn secret_bytes(secret: &WebhookSecret) -> Vec<u8> {
    otm_testkit::webhooks::secret_bytes(&secret.to_text())
}

#[tokio::test]
async fn signed_webhooks_are_retried_with_the_same_id() {
    let (service, _base, _dir) = serve(true).await;
    // Mid-rotation: the receiver knows only the new secret; otm signs with both.
    let (old, new) = (
        WebhookSecret::generate().unwrap(),
        WebhookSecret::generate().unwrap(),
    );
    let (received, url) = receiver(vec![secret_bytes(&new)], 2).await;
    let hook = Webhook::new(&url, vec![old, new]).unwrap();
    let _dispatcher = service.dispatch_events(Arc::new(hook), fast()).unwrap();

    let sent = service
        .send("hooked", &SendOptions::new().reference("user:ada"))
        .await
        .unwrap();
    let id = format!("evt_{}_created", sent.link.id);
    received
        .wait_for(Duration::from_secs(15), "three tries", |t| {
            t.get(&id).is_some_and(|t| t.len() >= 3)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = received.of(&id);
    assert_eq!(seen.len(), 3, "two refusals, then one delivery: {seen:?}");
    let body = &seen[2];
    assert_eq!(body["type"], "message.created");
    assert_eq!(body["data"]["message_id"], sent.link.id.to_string());
    assert_eq!(body["data"]["reference"], "user:ada");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    // Nothing secret in the body: just these fields.
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["data"].as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn an_event_is_dropped_after_its_last_attempt() {
    let (service, base, _dir) = serve(true).await;
    let secret = WebhookSecret::generate().unwrap();
    let (received, url) = receiver(vec![secret_bytes(&secret)], u32::MAX).await;
    let hook = Webhook::new(&url, vec![secret]).unwrap();
    let config = fast()
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(100));
    let _dispatcher = service.dispatch_events(Arc::new(hook), config).unwrap();
    let sent = service
        .send("nobody listens", &SendOptions::new())
        .await
        .unwrap();
    let id = format!("evt_{}_created", sent.link.id);
    let metrics = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let start = Instant::now();
    while !metrics()
        .await
        .contains("otm_events_total{outcome=\"dead\"} 1")
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}",
            metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(received.of(&id).len(), 3);
    assert!(metrics()
        .await
        .contains("otm_events_total{outcome=\"retried\"} 2"));
}

#[tokio::test]
async fn a_store_without_events_is_refused() {
    let (service, _base, _dir) = serve(false).await;
    let err = service
        .dispatch_events(Arc::new(Collect::default()), DispatchConfig::default())
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::NoEvents { backend: "sqlite" }),
        "{err}"
    );
}
