//! Proof under faults, with real `otm-server` processes:
//!
//! - exactly once across replicas: two servers on one store, 32 openers split
//!   across both racing for each message (`OTM_REPLICA_TRIALS`, default 200;
//!   1000 for the long run), on SQLite (two processes, one file), Redis,
//!   Redis Cluster, PostgreSQL and S3;
//! - a Redis outage: 503 with a JSON error while it is down, the server stays
//!   up and recovers by itself when Redis returns;
//! - crash durability: `kill -9` of the server on SQLite with creates in
//!   flight; every message whose create got a 201 opens exactly once after
//!   a restart.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{seal, Key, Secrets};
use otm_store::conformance::{env_or, skip, unique_suffix};
use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(store: &str, dir: &std::path::Path) -> Server {
    start_with(store, dir, &[]).await
}

async fn start_with(store: &str, dir: &std::path::Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--store", store])
        .args(extra)
        .args([
            "--create-per-minute",
            "10000000",
            "--open-per-minute",
            "10000000",
        ])
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "otm-test")
        .env("AWS_SECRET_ACCESS_KEY", "otm-test")
        .env("AWS_REGION", "us-east-1")
        .env("OTM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "otm-server on {store} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, base }
}

struct Created {
    id: String,
    secrets: Secrets,
    envelope: Vec<u8>,
}

async fn create(http: &reqwest::Client, base: &str) -> Result<Created, u16> {
    let secrets = Secrets::derive(&Key::generate().unwrap(), None);
    let envelope = seal(&secrets, "replica race").unwrap();
    let r = http
        .post(format!("{base}/api/v1/messages"))
        .json(&json!({
            "envelope": URL_SAFE_NO_PAD.encode(&envelope),
            "verifier": secrets.claim_verifier().to_base64url(),
            "ttl_seconds": 600,
        }))
        .send()
        .await
        .map_err(|_| 0u16)?;
    if r.status() != 201 {
        return Err(r.status().as_u16());
    }
    let v: Value = r.json().await.map_err(|_| 0u16)?;
    Ok(Created {
        id: v["id"].as_str().unwrap().to_owned(),
        secrets,
        envelope,
    })
}

async fn open(http: &reqwest::Client, base: &str, c: &Created) -> (u16, Option<Vec<u8>>) {
    let r = http
        .post(format!("{base}/api/v1/messages/{}/open", c.id))
        .json(&json!({ "proof": c.secrets.claim_proof().to_base64url().as_str() }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (
        status,
        body["envelope"]
            .as_str()
            .and_then(|e| URL_SAFE_NO_PAD.decode(e).ok()),
    )
}

fn trials() -> usize {
    std::env::var("OTM_REPLICA_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Two replicas on one store; 32 openers, half on each, race per message.
async fn replica_race(store: &str, label: &str) {
    let prefix = format!("otm-rep-{}:", unique_suffix());
    let extra = ["--redis-prefix", prefix.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let a = start_with(store, dir.path(), &extra).await;
    let b = start_with(store, dir.path(), &extra).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let n = trials();
    for trial in 0..n {
        let creator = if trial % 2 == 0 { &a.base } else { &b.base };
        let c = Arc::new(
            create(&http, creator)
                .await
                .unwrap_or_else(|s| panic!("{label}: create {s}")),
        );
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (http, c, barrier) = (http.clone(), c.clone(), barrier.clone());
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            set.spawn(async move {
                barrier.wait().await;
                open(&http, &base, &c).await
            });
        }
        let mut winners = 0;
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                (200, Some(env)) => {
                    assert_eq!(env, c.envelope, "{label}: trial {trial}: wrong envelope");
                    winners += 1;
                }
                (404, None) => {}
                other => panic!("{label}: trial {trial}: unexpected {:?}", other.0),
            }
        }
        assert_eq!(
            winners, 1,
            "{label}: trial {trial}: {winners} openers received the message"
        );
    }
    eprintln!("{label}: {n} trials × 32 openers over 2 replicas: exactly one winner each");
}

async fn reachable(what: &str, ok: bool) -> bool {
    if !ok {
        let _ = skip::<()>(&format!("{what} is unreachable"));
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_sqlite_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.sqlite3").display());
    replica_race(&url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_and_redis_cluster() {
    let url = env_or("OTM_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let up = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_ok();
    if !reachable(&url, up).await {
        return;
    }
    replica_race(&url, "redis").await;
    let seeds = env_or(
        "OTM_TEST_REDIS_CLUSTER_URLS",
        "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103",
    );
    let hosts: Vec<&str> = seeds
        .split(',')
        .map(|s| s.trim_start_matches("redis://"))
        .collect();
    replica_race(
        &format!("redis+cluster://{}", hosts.join(",")),
        "redis-cluster",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_and_s3() {
    let pg = env_or(
        "OTM_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let schema = format!("otm_test_rep_{}", unique_suffix());
    let sep = if pg.contains('?') { '&' } else { '?' };
    replica_race(&format!("{pg}{sep}otm_schema={schema}"), "postgres").await;
    let endpoint = env_or("OTM_TEST_S3_ENDPOINT", "http://127.0.0.1:9100");
    if !reachable(
        &endpoint,
        reqwest::get(format!("{endpoint}/moto-api/")).await.is_ok(),
    )
    .await
    {
        return;
    }
    let url = format!(
        "s3://otm-test/rep-{}/?endpoint={endpoint}&create_bucket=true",
        unique_suffix()
    );
    replica_race(&url, "s3").await;
}

struct Redis(Child);
impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server(port: u16, dir: &std::path::Path) -> Option<Redis> {
    match Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Some(Redis(c)),
        Err(e) => skip(&format!("cannot run redis-server: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_and_the_server_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(redis) = redis_server(port, dir.path()) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let start_at = Instant::now();
    while redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        assert!(start_at.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = start(&url, dir.path()).await;
    let http = reqwest::Client::new();
    let before = create(&http, &server.base)
        .await
        .expect("create while Redis is up");

    drop(redis);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = http
        .post(format!(
            "{}/api/v1/messages/{}/open",
            server.base, before.id
        ))
        .json(&json!({ "proof": before.secrets.claim_proof().to_base64url().as_str() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    assert_eq!(create(&http, &server.base).await.err(), Some(503));
    assert_eq!(
        reqwest::get(format!("{}/healthz", server.base))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", server.base))
            .await
            .unwrap()
            .status(),
        503
    );

    let _redis = redis_server(port, dir.path()).unwrap();
    let back = Instant::now();
    let recovered = loop {
        if let Ok(c) = create(&http, &server.base).await {
            break c;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "no recovery within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("recovered {:?} after Redis returned", back.elapsed());
    assert_eq!(open(&http, &server.base, &recovered).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.sqlite3").display());
    let server = start(&url, dir.path()).await;
    let http = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<Created>>> = Arc::default();
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, base, acked) = (http.clone(), server.base.clone(), acked.clone());
        creators.spawn(async move {
            // Until the server dies: connection errors end the loop.
            while let Ok(c) = create(&http, &base).await {
                acked.lock().unwrap().push(c);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    while creators.join_next().await.is_some() {}
    drop(server);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() > 50,
        "only {} creates before the crash",
        acked.len()
    );

    let server = start(&url, dir.path()).await;
    for c in &acked {
        let (status, env) = open(&http, &server.base, c).await;
        assert_eq!(
            status, 200,
            "message {} acknowledged before the crash is lost",
            c.id
        );
        assert_eq!(env.unwrap(), c.envelope);
        assert_eq!(open(&http, &server.base, c).await.0, 404);
    }
    eprintln!(
        "{} acknowledged messages survived kill -9 and opened exactly once",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_cannot_hold_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = start_with("memory:", dir.path(), &["--request-timeout", "1s"]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    // Promise 1000 bytes, send 10, then stall.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"envelop",
    )
    .await
    .unwrap();
    let started = Instant::now();
    // Meanwhile the server answers others.
    let http = reqwest::Client::new();
    assert!(create(&http, &server.base).await.is_ok());
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept a stalled request open for 10 s"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
