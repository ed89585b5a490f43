//! Webhooks from the reference server (`--webhook-url`,
//! `--webhook-secrets`), received by a real HTTP receiver that checks the
//! signatures with its own HMAC:
//! - `kill -9` right after a take: the `opened` event was recorded with the
//!   take, so it is delivered after a restart (SQLite, PostgreSQL, Redis);
//! - two replicas on one PostgreSQL store deliver every event exactly once
//!   between them.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{client, Server};
use otm_core::SendOptions;
use otm_testkit::webhooks::{receiver, serve_receiver};
use otm_testkit::{free_port, skip, PgSchema, RedisPrefix};

const BIN: &str = env!("CARGO_BIN_EXE_otm-server");

/// A fresh `whsec_` secret and its bytes.
fn secret() -> (String, Vec<u8>) {
    let bytes = otm_core::Key::generate().unwrap().as_bytes().to_vec();
    (format!("whsec_{}", STANDARD.encode(&bytes)), bytes)
}

/// A PostgreSQL store URL in a fresh schema and the guard that drops the
/// schema, or `None` (skipped) when the server is unreachable.
async fn postgres_store() -> Option<(String, PgSchema)> {
    let url = otm_testkit::env::postgres_url();
    let schema = PgSchema::new("otm_test_ev_");
    let store = schema.store_url();
    match otm_store::connect(&store, otm_store::StoreOptions::default()).await {
        Ok(_) => Some((store, schema)),
        Err(e) => skip(&format!("PostgreSQL at {url} is unreachable: {e}")),
    }
}

/// Sends and opens a message through a server whose webhook receiver is
/// not listening yet, kills the server with SIGKILL right after the open,
/// then starts the receiver and a new server on the same store: both the
/// `created` and the `opened` event arrive, signed, with the reference.
async fn opened_survives_kill_9(store: &str, dir: &std::path::Path) {
    let (whsec, bytes) = secret();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/otm");
    // The shortest lease: if the killed server held one, it runs out soon.
    let flags = [
        "--webhook-url",
        url.as_str(),
        "--webhook-secrets",
        whsec.as_str(),
        "--webhook-lease",
        "15s",
    ];
    let first = Server::start(BIN, store, dir, &flags).await;
    let c = client(&first.base);
    let sent = c
        .send("open, then crash", &SendOptions::new())
        .await
        .unwrap();
    c.open(&sent.link, None).await.unwrap();
    first.process.signal("KILL");
    drop(first);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (received, _) = serve_receiver(listener, vec![bytes], 0);
    let _second = Server::start(BIN, store, dir, &flags).await;
    let created = format!("evt_{}_created", sent.link.id);
    let opened = format!("evt_{}_opened", sent.link.id);
    // Due again within the retry backoff, or after the dead server's lease
    // if it died holding one.
    received
        .wait_for(Duration::from_secs(45), "created and opened", |t| {
            t.contains_key(&created) && t.contains_key(&opened)
        })
        .await;
    let body = &received.of(&opened)[0];
    assert_eq!(body["type"], "message.opened");
    assert_eq!(body["data"]["message_id"], sent.link.id.to_string());
    assert_eq!(body["data"]["creator"]["kind"], "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_is_reported_after_a_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    opened_survives_kill_9("sqlite://otm.sqlite3", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_is_reported_after_a_kill_9_on_postgres() {
    let Some((store, _schema)) = postgres_store().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    opened_survives_kill_9(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_is_reported_after_a_kill_9_on_redis() {
    let url = otm_testkit::env::redis_url();
    let keys = RedisPrefix::new("otm-ev-");
    let store = format!("{url}?prefix={keys}");
    if let Err(e) = otm_store::connect(&store, otm_store::StoreOptions::default()).await {
        return skip(&format!("Redis at {url} is unreachable: {e}")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    opened_survives_kill_9(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_is_reported_after_a_kill_9_on_redis_cluster() {
    let nodes: Vec<String> = otm_testkit::env::redis_cluster_urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    let keys = RedisPrefix::new("otm-ev-");
    let store = format!("redis+cluster://{}?prefix={keys}", nodes.join(","));
    if let Err(e) = otm_store::connect(&store, otm_store::StoreOptions::default()).await {
        return skip(&format!("Redis Cluster at {nodes:?} is unreachable: {e}")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    opened_survives_kill_9(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    let Some((store, _schema)) = postgres_store().await else {
        return;
    };
    let (whsec, bytes) = secret();
    let (received, url) = receiver(vec![bytes], 0).await;
    let flags = [
        "--webhook-url",
        url.as_str(),
        "--webhook-secrets",
        whsec.as_str(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(BIN, &store, dir.path(), &flags).await;
    let b = Server::start(BIN, &store, dir.path(), &flags).await;
    let (ca, cb) = (client(&a.base), client(&b.base));
    let mut expected = HashSet::new();
    for i in 0..30 {
        let (sender, reader) = if i % 2 == 0 { (&ca, &cb) } else { (&cb, &ca) };
        let sent = sender
            .send("replicated", &SendOptions::new())
            .await
            .unwrap();
        expected.insert(format!("evt_{}_created", sent.link.id));
        if i % 3 != 0 {
            reader.open(&sent.link, None).await.unwrap();
            expected.insert(format!("evt_{}_opened", sent.link.id));
        }
    }
    received
        .wait_for(Duration::from_secs(30), "every event", |t| {
            expected.iter().all(|id| t.contains_key(id))
        })
        .await;
    // Both replicas poll twice a second; give a duplicate time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tries = received.tries();
    assert_eq!(tries.len(), expected.len(), "only the expected events");
    for (id, seen) in &tries {
        assert_eq!(seen.len(), 1, "{id} delivered {} times", seen.len());
    }
}

/// `otm-server dead-letters` lists the events whose deliveries all failed
/// (kept in the store), and `--replay` makes them due again.
#[tokio::test]
async fn the_operator_lists_and_replays_dead_letters() {
    use otm_store::StoreOptions;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("otm.sqlite3").display());
    let store = otm_store::connect(&url, StoreOptions::default().with_events(true))
        .await
        .unwrap();
    let key = otm_core::Key::generate().unwrap();
    let secrets = otm_core::Secrets::derive(&key, None);
    let id = otm_core::MessageId::generate().unwrap();
    let message = otm_store::NewMessage {
        envelope: otm_core::seal(&secrets, "undeliverable").unwrap(),
        verifier: secrets.claim_verifier(),
        access: secrets.access_verifier(),
        expires_at: std::time::SystemTime::now() + Duration::from_secs(3600),
        manage: None,
        creator: None,
        reference: None,
    };
    store.put(&id, message).await.unwrap();
    let outbox = store.outbox().unwrap();
    let leased = outbox
        .lease_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    outbox.event_dead(&leased[0]).await.unwrap();
    drop(store);

    let run = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["--store", &url, "dead-letters"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = run(&[]);
    assert!(
        listed.contains(&format!("evt_{id}_created\tmessage.created\tattempts=1")),
        "{listed}"
    );
    assert!(listed.ends_with("1 dead letters\n"), "{listed}");
    assert_eq!(
        run(&["--replay"]),
        "replayed 1 dead letters: due now, delivered by the running servers\n"
    );
    assert!(run(&[]).ends_with("0 dead letters\n"));
}
