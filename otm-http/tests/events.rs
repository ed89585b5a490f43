//! Events delivered by the service (`Config::with_events`): every change
//! reaches an in-process sink; an expiry is reported by the purge the
//! service runs by itself; signed webhooks reach a real HTTP receiver that
//! checks the Standard Webhooks signature with its own HMAC; a receiver
//! that fails twice gets the event on the third try with the same
//! `webhook-id`; one that always fails sees exactly `max_attempts` tries,
//! the event is counted dead and kept as a dead letter that the operator
//! lists and replays; events without a store that records
//! them, a store that records them without a sink, and contradictory
//! dispatch settings are refused at start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use otm_client::Client;
use otm_core::{Passphrase, SendOptions};
use otm_http::events::{DispatchConfig, Event, EventKind, EventSink};
use otm_http::webhook::{Webhook, WebhookSecret};
use otm_http::{Caller, Config, RateLimit, Service, ServiceError};
use otm_store::{BlobStore, BoxError, SqliteConfig, SqliteStore, StoreOptions};
use otm_testkit::webhooks::receiver;

/// A SQLite store on a new file, recording events or not.
async fn store(events: bool) -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(dir.path().join("otm.sqlite3"))
        .with_options(StoreOptions::default().with_events(events));
    let store = SqliteStore::connect(config).await.unwrap();
    (Arc::new(store), dir)
}

/// A service on a SQLite file with events on, delivering to `sink`, served
/// on loopback (public and operator routes).
async fn serve(
    sink: Arc<dyn EventSink>,
    dispatch: DispatchConfig,
) -> (Service, String, tempfile::TempDir) {
    serve_with(sink, dispatch, |c| c).await
}

async fn serve_with(
    sink: Arc<dyn EventSink>,
    dispatch: DispatchConfig,
    more: impl FnOnce(Config) -> Config,
) -> (Service, String, tempfile::TempDir) {
    let (store, dir) = store(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let plenty = RateLimit {
        per_minute: 10_000,
        burst: 10_000,
    };
    let config = Config::default()
        .with_base_url(&base)
        .with_rate_limits(plenty, plenty)
        .with_events(sink, dispatch);
    let service = Service::new(store, more(config)).unwrap();
    let app: axum::Router = service.router_with_admin();
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
    let sink = Arc::new(Collect::default());
    let (service, base, _dir) = serve(sink.clone(), fast()).await;
    let client = Client::new(&base).unwrap();

    let opened = service
        .send(
            &Caller::Server,
            "read me",
            &SendOptions::new().reference("ticket 7"),
        )
        .await
        .unwrap();
    client.open(&opened.link, None).await.unwrap();
    let burned = service
        .send(&Caller::Server, "burn me", &SendOptions::new())
        .await
        .unwrap();
    service
        .burn(
            &Caller::Server,
            &burned.manage_link.id,
            &burned.manage_link.token,
        )
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
    // Each event says who created its message: the host's backend, or an
    // anonymous browser.
    assert_eq!(opened_event.creator, Some(otm_core::Creator::Server));
    for event in events.iter().filter(|e| e.message == guessed.link.id) {
        assert_eq!(
            event.creator,
            Some(otm_core::Creator::Anonymous),
            "{event:?}"
        );
    }
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
    // Mid-rotation: the receiver knows only the new secret; otm signs with both.
    let (old, new) = (
        WebhookSecret::generate().unwrap(),
        WebhookSecret::generate().unwrap(),
    );
    let (received, url) = receiver(vec![secret_bytes(&new)], 2).await;
    let hook = Webhook::new(&url, vec![old, new]).unwrap();
    let (service, _base, _dir) = serve(Arc::new(hook), fast()).await;

    let sent = service
        .send(
            &Caller::Server,
            "hooked",
            &SendOptions::new().reference("user:ada"),
        )
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
    assert_eq!(
        body["data"]["creator"],
        serde_json::json!({"kind": "server"})
    );
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    // Nothing secret in the body: just these fields.
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["data"].as_object().unwrap().len(), 3, "{body}");
}

#[tokio::test]
async fn an_event_is_kept_as_a_dead_letter_after_its_last_attempt_and_replayed() {
    let secret = WebhookSecret::generate().unwrap();
    let (received, url) = receiver(vec![secret_bytes(&secret)], u32::MAX).await;
    let hook = Webhook::new(&url, vec![secret]).unwrap();
    let config = fast()
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(100));
    let (service, base, _dir) = serve(Arc::new(hook), config).await;
    let sent = service
        .send(&Caller::Server, "nobody listens", &SendOptions::new())
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
    // Kept, not deleted: the operator sees it and replays it.
    let dead = service.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].id(), dead[0].attempts), (id.clone(), 3));
    assert_eq!(service.replay_dead_letters().await.unwrap(), 1);
    received
        .wait_for(Duration::from_secs(15), "the replayed event", |t| {
            t.get(&id).is_some_and(|t| t.len() >= 4)
        })
        .await;
}

#[tokio::test]
async fn an_expiry_is_reported_by_the_purge_the_service_runs_itself() {
    let sink = Arc::new(Collect::default());
    let (service, _base, _dir) = serve_with(sink.clone(), fast(), |c| {
        c.with_purge_interval(Duration::from_millis(200))
    })
    .await;
    let sent = service
        .send(
            &Caller::Server,
            "expires unread",
            &SendOptions::new().ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    // Nobody calls a purge: the service does.
    until(
        || {
            sink.0
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.kind == EventKind::Expired && e.message == sent.link.id)
        },
        "the expired event",
    )
    .await;
    service.shutdown().await;
}

/// An event sink that counts what it was given, slowly.
struct Slow(Mutex<u32>);

#[async_trait]
impl EventSink for Slow {
    async fn deliver(&self, _event: &Event) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_finishes_the_batch_in_flight_and_stops() {
    let sink = Arc::new(Slow(Mutex::new(0)));
    let (service, _base, _dir) = serve(sink.clone(), fast()).await;
    service
        .send(&Caller::Server, "one", &SendOptions::new())
        .await
        .unwrap();
    // The delivery is under way (300 ms); shutdown waits for it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    service.shutdown().await;
    assert_eq!(
        *sink.0.lock().unwrap(),
        1,
        "the batch in flight was delivered"
    );
    // Nothing is delivered after the shutdown.
    service
        .send(&Caller::Server, "two", &SendOptions::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(*sink.0.lock().unwrap(), 1, "no dispatcher after shutdown");
}

#[tokio::test]
async fn events_are_switched_on_in_one_place_or_refused_at_start() {
    let sink = || Arc::new(Collect::default()) as Arc<dyn EventSink>;
    // A sink, but a store that records no events.
    let (quiet, _dir) = store(false).await;
    let err = Service::new(
        quiet,
        Config::default().with_events(sink(), DispatchConfig::default()),
    )
    .unwrap_err();
    assert!(
        matches!(err, ServiceError::NoEvents { backend: "sqlite" }),
        "{err}"
    );
    // A store that records events, but nothing to deliver them: its outbox
    // would only grow.
    let (recording, _dir) = store(true).await;
    let err = Service::new(recording.clone(), Config::default()).unwrap_err();
    assert!(
        matches!(err, ServiceError::EventsUndelivered { backend: "sqlite" }),
        "{err}"
    );
    // Contradictory settings are refused, not clamped.
    for (dispatch, what) in [
        (
            DispatchConfig::default().with_max_attempts(0),
            "max_attempts",
        ),
        (
            DispatchConfig::default().with_lease(Duration::from_secs(11)),
            "lease",
        ),
        (
            DispatchConfig::default().with_backoff(Duration::from_secs(10), Duration::from_secs(1)),
            "max_backoff",
        ),
    ] {
        let err = Service::new(
            recording.clone(),
            Config::default().with_events(sink(), dispatch),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ServiceError::BadConfig { reason } if reason.contains(what)),
            "{what}: {err}"
        );
    }
}

/// A receiver that hangs on the first event it is given (until released)
/// and takes every other at once.
#[derive(Default)]
struct HangsOnFirst {
    first: Mutex<Option<String>>,
    delivered: Mutex<Vec<Event>>,
    release: tokio::sync::Notify,
}

#[async_trait]
impl EventSink for HangsOnFirst {
    async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
        let hang = {
            let mut first = self.first.lock().unwrap();
            *first.get_or_insert_with(|| event.id()) == event.id()
        };
        if hang {
            self.release.notified().await;
        }
        self.delivered.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// Deliveries are independent: while the receiver hangs on one event (well
/// within the delivery timeout), every later event still goes out; a batch
/// does not wait for its slowest delivery.
#[tokio::test]
async fn a_receiver_that_hangs_on_one_event_holds_up_only_that_event() {
    let sink = Arc::new(HangsOnFirst::default());
    let dispatch = fast()
        .with_batch(4)
        .with_deliver_timeout(Duration::from_secs(60))
        .with_lease(Duration::from_secs(70));
    let (service, _base, _dir) = serve(sink.clone(), dispatch).await;
    service
        .send(
            &Caller::Server,
            "the receiver hangs on this one",
            &SendOptions::new(),
        )
        .await
        .unwrap();
    until(
        || sink.first.lock().unwrap().is_some(),
        "the first delivery begins",
    )
    .await;
    for i in 0..20 {
        service
            .send(&Caller::Server, &format!("then {i}"), &SendOptions::new())
            .await
            .unwrap();
    }
    until(
        || sink.delivered.lock().unwrap().len() >= 20,
        "the 20 later events are delivered while the first one hangs",
    )
    .await;
    assert!(
        !sink
            .delivered
            .lock()
            .unwrap()
            .iter()
            .any(|e| Some(e.id()) == *sink.first.lock().unwrap()),
        "the hanging delivery finished early"
    );
    sink.release.notify_one();
    until(
        || sink.delivered.lock().unwrap().len() == 21,
        "the first event too",
    )
    .await;
    service.shutdown().await;
}

/// A request's own events (`request.created`, `request.answered`), then
/// its answer's `message.opened`, each with the request's creator and
/// reference, reach the sink; the event IDs name the request.
#[tokio::test]
async fn a_requests_events_reach_the_sink() {
    use otm_core::ReceiveSecret;
    use otm_http::Ask;
    let sink = Arc::new(Collect::default());
    let (service, _base, _dir) = serve(sink.clone(), fast()).await;
    let secret = ReceiveSecret::generate().unwrap();
    let token = secret.answer_token();
    let secrets = secret.answer_secrets(None);
    let note = token
        .seal_note(&secret.public_key(), "for ticket 9")
        .unwrap();
    let ask = Ask::new(
        note,
        token.proof().verifier(),
        secrets.access_verifier(),
        secrets.claim_verifier(),
    )
    .with_reference("ticket 9");
    let asked = service.ask(&Caller::Server, ask).await.unwrap();
    let id = asked.id;
    let sealed = secret
        .public_key()
        .seal_answer(&id, "for ticket 9", "the answer")
        .unwrap();
    service
        .answer(&Caller::Server, &id, &token.proof(), sealed.clone())
        .await
        .unwrap();
    let envelope = service
        .open(
            &Caller::Server,
            &id,
            secrets.access_proof(),
            secrets.claim_proof(),
        )
        .await
        .unwrap();
    assert_eq!(envelope, sealed);

    until(|| sink.0.lock().unwrap().len() >= 3, "three events").await;
    let events = sink.0.lock().unwrap().clone();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::RequestCreated,
            EventKind::RequestAnswered,
            EventKind::Opened
        ]
    );
    for event in &events {
        assert_eq!(event.message, id);
        assert_eq!(event.reference.as_deref(), Some("ticket 9"));
        assert_eq!(event.creator, Some(otm_core::Creator::Server));
    }
    assert_eq!(events[0].id(), format!("evt_{id}_request_created"));
    assert_eq!(events[1].id(), format!("evt_{id}_request_answered"));
    assert_eq!(events[2].id(), format!("evt_{id}_opened"));
}
