//! A host application whose own backend mints one-time links: an admin
//! endpoint creates a new employee's initial password and seals it in
//! process with `otm_http::Service::send`, hands back only the share link
//! (to be mailed), and keeps the sender's status link to itself so that it
//! can tell later whether the employee opened it, or burn it. The same
//! service serves the reveal page and API under `/secrets`. Its events come
//! back as signed webhooks (`otm_http::webhook::Webhook`, Standard Webhooks
//! signatures) to the host's own `POST /hooks/otm`, exactly as they would
//! reach a separate service: the receiver checks the signature and age with
//! `otm_http::webhook::verify`, acts once per `webhook-id` (delivery is at
//! least once), and, when the employee opens the link, logs it and marks
//! the onboarding step done. It acts only on events of messages it sent
//! itself: their creator is the host's own backend (`Creator::Server`, set
//! by the service, never by a request) and their message ID is one it
//! stored. Anyone may create messages here, so neither a reference nor a
//! message ID the host never stored proves anything. (In one process an
//! `EventSink` would do without HTTP; the webhook shows the path most hosts
//! take.)
//!
//! `cargo run -p otm-examples --example backend_send`, then
//! `curl -X POST http://127.0.0.1:3002/onboard/ada` and open the link it
//! prints; `curl http://127.0.0.1:3002/onboard/ada` says whether it was read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use otm_core::{Creator, ManageLink, SendOptions};
use otm_http::events::{DispatchConfig, EventKind};
use otm_http::webhook::{verify, Rejected, Webhook, WebhookSecret, DEFAULT_TOLERANCE};
use otm_http::{Caller, Config, Service};
use otm_store::{MemoryStore, StoreOptions};

/// The host's state: the otm service and, per user, the status link of the
/// password sent to them (the host's own records; never shown to users).
#[derive(Clone)]
struct Host {
    otm: Service,
    sent: Sent,
}

/// The host's webhook receiver: the secret it shares with the sender, the
/// event IDs it has acted on, what it sent (to find the user of a message
/// by its ID), and who opened their link.
#[derive(Clone)]
struct Hooks {
    secret: WebhookSecret,
    seen: Arc<Mutex<HashSet<String>>>,
    sent: Sent,
    opened: Arc<Mutex<Vec<String>>>,
}

/// Per user, the status link of the password sent to them.
type Sent = Arc<Mutex<HashMap<String, ManageLink>>>;

/// `POST /hooks/otm`: one signed event. Anything unsigned, signed with
/// another secret, or older than five minutes is refused with 401.
async fn hook(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secrets = std::slice::from_ref(&hooks.secret);
    let event = match verify(secrets, &headers, &body, DEFAULT_TOLERANCE) {
        Ok(event) => event,
        // Signed, but of a kind this version does not know: take it, or
        // the sender would retry it until it gives up.
        Err(Rejected::UnknownType(_)) => return StatusCode::NO_CONTENT,
        Err(rejected) => {
            eprintln!("webhook refused: {rejected}");
            return StatusCode::UNAUTHORIZED;
        }
    };
    // At least once: a retry brings the same webhook-id; act on it once.
    if !hooks
        .seen
        .lock()
        .expect("not poisoned")
        .insert(event.id.clone())
    {
        return StatusCode::NO_CONTENT;
    }
    // Only messages this host sent: created by its own backend, and their
    // IDs in its own records. A stranger's message matches neither.
    let ours = event.creator() == Some(Creator::Server);
    let user = hooks
        .sent
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|(_, link)| ours && link.id == event.message)
        .map(|(user, _)| user.clone());
    match (event.kind, user) {
        (EventKind::Opened, Some(user)) => {
            println!("{user} opened their initial password ({})", event.id);
            hooks.opened.lock().expect("not poisoned").push(user);
        }
        (_, None) => println!("an event of a message this host did not send: ignored"),
        _ => {}
    }
    StatusCode::NO_CONTENT
}

/// `POST /onboard/{user}`: a fresh initial password, sealed into a link that
/// opens once within a day. Only the link leaves this handler.
async fn onboard(State(host): State<Host>, Path(user): Path<String>) -> (StatusCode, String) {
    let password = initial_password();
    let options = SendOptions::new()
        .ttl(Duration::from_secs(24 * 3600))
        .reference(&user);
    let text = format!("Welcome, {user}. Your initial password: {password}");
    // The host's own backend: trusted because it says so, checked like
    // any other creator.
    match host.otm.send(&Caller::Server, &text, &options).await {
        Ok(sent) => {
            host.sent
                .lock()
                .expect("not poisoned")
                .insert(user, sent.manage_link);
            (StatusCode::CREATED, sent.link.to_url().to_string())
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not send: {e}\n"),
        ),
    }
}

/// `GET /onboard/{user}`: whether the user opened their link.
async fn onboarded(State(host): State<Host>, Path(user): Path<String>) -> (StatusCode, String) {
    let Some(link) = host.sent.lock().expect("not poisoned").get(&user).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            format!("nothing was sent to {user}\n"),
        );
    };
    match host
        .otm
        .status(&Caller::Server, &link.id, &link.token)
        .await
    {
        Ok(status) => (StatusCode::OK, format!("{}\n", status.state)),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Sixteen characters from the OS random generator, through otm-core's key
/// generation (the example needs no random crate of its own).
fn initial_password() -> String {
    let key = otm_core::Key::generate().expect("the OS random generator works");
    key.to_base64url().chars().take(16).collect()
}

/// The host's routes on `host_base` with otm under `/secrets`, the
/// service (events flow while it lives; `shutdown` ends them), and the
/// webhook receiver's records.
fn app(host_base: &str) -> (Router, Service, Hooks) {
    // One secret, shared by the sender and the receiver (here both are this
    // app; a real one reads it from its configuration).
    let secret = WebhookSecret::generate().expect("the OS random generator works");
    let webhook = Webhook::new(&format!("{host_base}/hooks/otm"), vec![secret.clone()])
        .expect("an http URL and a secret");
    // Events on: the store records each change in its outbox, and the
    // service delivers them to the webhook.
    let store = Arc::new(MemoryStore::new(StoreOptions::default().with_events(true)));
    let config = Config::default()
        .with_base_url(format!("{host_base}/secrets"))
        .with_events(Arc::new(webhook), DispatchConfig::default());
    let otm = Service::new(store, config).expect("a store with an outbox, in a runtime");
    let sent = Sent::default();
    let hooks = Hooks {
        secret,
        seen: Arc::default(),
        sent: sent.clone(),
        opened: Arc::default(),
    };
    let host = Host {
        otm: otm.clone(),
        sent,
    };
    let app = Router::new()
        .route("/onboard/{user}", post(onboard).get(onboarded))
        .with_state(host)
        .route("/hooks/otm", post(hook).with_state(hooks.clone()))
        .nest("/secrets", otm.router());
    (app, otm, hooks)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    let (app, otm, _) = app("http://127.0.0.1:3002");
    println!("POST http://127.0.0.1:3002/onboard/NAME mints a link");
    otm_http::serve(
        listener,
        app,
        otm_http::ConnectionLimits::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await;
    otm.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backend_mints_a_link_that_opens_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (app, otm, hooks) = app(&base);
        let opened = hooks.opened.clone();
        tokio::spawn(async move {
            otm_http::serve(listener, app, Default::default(), std::future::pending()).await;
        });
        let http = reqwest::Client::new();
        let minted = http
            .post(format!("{base}/onboard/ada"))
            .send()
            .await
            .unwrap();
        assert_eq!(minted.status(), 201);
        let link = otm_core::Link::parse(&minted.text().await.unwrap()).unwrap();
        let status = || async {
            http.get(format!("{base}/onboard/ada"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        assert_eq!(status().await, "waiting\n");

        // The employee opens it with any otm client (here the Rust one).
        let client = otm_client::Client::new(&link.base).unwrap();
        let text = client.open(&link, None).await.unwrap();
        assert!(
            text.starts_with("Welcome, ada. Your initial password: "),
            "{}",
            *text
        );
        assert!(client.open(&link, None).await.is_err(), "opens once");
        assert_eq!(status().await, "opened\n");
        // The opened webhook reached the host, with the user as reference.
        let start = std::time::Instant::now();
        while opened.lock().unwrap().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "no opened event");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*opened.lock().unwrap(), ["ada"]);

        // A forged "opened" (unsigned, or signed with another secret) is
        // refused and changes nothing.
        let body = format!(
            r#"{{"type":"message.opened","timestamp":"2026-11-30T00:00:00Z","data":{{"message_id":"{}","reference":"mallory"}}}}"#,
            link.id
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let other = WebhookSecret::generate().unwrap();
        let forged = Webhook::new("https://unused.example/", vec![other]).unwrap();
        for signature in [
            String::new(),
            forged.signature("evt_forged", now, body.as_bytes()),
        ] {
            let answer = http
                .post(format!("{base}/hooks/otm"))
                .header("webhook-id", "evt_forged")
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", signature)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 401);
        }
        assert_eq!(*opened.lock().unwrap(), ["ada"]);

        // A stranger may not give a reference through the public API; it
        // creates a message without one and opens it: correctly signed
        // events arrive, from an anonymous creator, and the host does
        // nothing with them.
        let public = otm_client::Client::new(&format!("{base}/secrets")).unwrap();
        let refused = public
            .send("not from the host", &SendOptions::new().reference("ada"))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(otm_core::ErrorCode::ReferenceNotAllowed),
            "{refused}"
        );
        let theirs = public
            .send("not from the host", &SendOptions::new())
            .await
            .unwrap();
        public.open(&theirs.link, None).await.unwrap();
        let theirs_opened = format!("evt_{}_opened", theirs.link.id);
        let start = std::time::Instant::now();
        while !hooks.seen.lock().unwrap().contains(&theirs_opened) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no stranger's event"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            *opened.lock().unwrap(),
            ["ada"],
            "a stranger's event acted on"
        );
        otm.shutdown().await;
    }
}
