//! The `otm-server` binary as an operator runs it: a real process on a real
//! socket, on SQLite (and on Redis), its log free of secrets, a clear error
//! for a bad store URL, and a clean exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_client::Client;
use otm_core::{seal, Key, Secrets};
use otm_testkit::{free_port, skip, unique_suffix, OtmServer, Process};
use serde_json::Value;

/// Starts otm-server with `args`, its log piped at `level` (the secrets
/// check reads it; keep it short enough for the pipe), and waits until it
/// is ready.
async fn start(args: &[&str], level: &str, dir: &std::path::Path) -> (Process, String) {
    let port = free_port();
    let mut command = OtmServer::command(env!("CARGO_BIN_EXE_otm-server"), port, dir);
    command
        .args(args)
        .env("OTM_LOG", level)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let server = OtmServer {
        process: Process::spawn(command).unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    server.wait_until("readyz").await;
    (server.process, server.base)
}

/// One message through the server with otm-client: stored, opened once,
/// gone the second time. Returns what must never reach a log: the key, the
/// proof and the envelope (base64url, as they would travel).
async fn round_trip(base: &str, text: &str) -> (String, String, String) {
    let client = Client::new(base).unwrap();
    let key = Key::generate().unwrap();
    let secrets = Secrets::derive(&key, None);
    let envelope = seal(&secrets, text).unwrap();
    let stored = client
        .create(&envelope, &secrets, Some(Duration::from_secs(300)))
        .await
        .unwrap();
    let got = client
        .claim(&stored.id, secrets.access_proof(), secrets.claim_proof())
        .await
        .unwrap();
    assert_eq!(otm_core::open(&secrets, &got).unwrap().as_str(), text);
    assert!(matches!(
        client
            .claim(&stored.id, secrets.access_proof(), secrets.claim_proof())
            .await,
        Err(otm_client::Error::Gone)
    ));
    (
        key.to_base64url().to_string(),
        secrets.claim_proof().to_base64url().to_string(),
        URL_SAFE_NO_PAD.encode(&envelope),
    )
}

/// otm-server on the store `url`: ready on the `backend` it names, one
/// message round trip, a clean exit on SIGTERM.
async fn serves_from_url(url: &str, backend: &str, level: &str, dir: &std::path::Path) {
    let (proc, base) = start(&["--store", url], level, dir).await;
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], backend);
    round_trip(&base, &format!("over {backend}")).await;
    assert_eq!(stop(proc).0, Some(0));
}

/// SIGTERM: the server finishes in-flight requests and exits cleanly; its
/// exit code and log.
fn stop(mut proc: Process) -> (Option<i32>, String) {
    proc.terminate(Duration::from_secs(15))
}

#[tokio::test]
async fn server_on_sqlite_serves_logs_no_secrets_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, base) = start(&[], "debug", dir.path()).await;
    // With no --store it creates its SQLite file in the working directory.
    assert!(dir.path().join("otm.sqlite3").exists());
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        otm_http::CONTENT_SECURITY_POLICY
    );
    let text = "operator smoke test: s3cr3t";
    let (key, proof, envelope) = round_trip(&base, text).await;
    // A proxy nobody told the server to trust: its X-Forwarded-For is
    // ignored, and the operator is told so once.
    for _ in 0..3 {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/messages"))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let (code, log) = stop(proc);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        log.matches("X-Forwarded-For from a peer that is not a trusted proxy")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("message created") && log.contains("shut down cleanly"),
        "{log}"
    );
    for secret in [key.as_str(), proof.as_str(), &envelope[..40], text] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
}

#[tokio::test]
async fn server_on_redis_from_a_store_url() {
    let url = otm_testkit::env::redis_url();
    if redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        return skip(&format!("Redis at {url} is unreachable")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("otm-srv-{}:", unique_suffix());
    let url = format!("{url}?prefix={prefix}");
    serves_from_url(&url, "redis", "debug", dir.path()).await;
}

#[test]
fn a_bad_store_url_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    // What otm-server prints when it refuses to start with `args`.
    let refused = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_otm-server"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let text = refused(&["--listen", "127.0.0.1:0", "--store", "ftp://nowhere"]);
    assert!(text.contains("unknown store URL"), "{text}");
    // A parameter the backend does not know is refused, by name, before
    // anything is created.
    let text = refused(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        "sqlite://x.sqlite3?prefix=otm:",
    ]);
    assert!(
        text.contains("unknown SQLite URL parameter `prefix`"),
        "{text}"
    );
    assert!(!dir.path().join("x.sqlite3").exists());
    assert!(refused(&["--max-ttl", "forever"]).contains("--max-ttl"));
    for attempts in ["0", "21", "many"] {
        let text = refused(&["--max-failed-attempts", attempts]);
        assert!(text.contains("--max-failed-attempts"), "{text}");
    }
}

#[tokio::test]
async fn server_on_s3_from_a_store_url() {
    let endpoint = otm_testkit::env::s3_endpoint();
    if reqwest::get(format!("{endpoint}/moto-api/")).await.is_err() {
        return skip(&format!("no S3 server at {endpoint}")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://otm-test/srv-{}/?endpoint={endpoint}&path_style=true&create_bucket=true&lifecycle_days=8",
        unique_suffix()
    );
    // moto accepts any credentials; OtmServer::command sets test ones.
    serves_from_url(&url, "s3", "info", dir.path()).await;
}
