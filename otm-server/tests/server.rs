//! The `otm-server` binary as an operator runs it: a real process on a real
//! socket, on SQLite (and on Redis), its log free of secrets, a clear error
//! for a bad store URL, and a clean exit on SIGTERM.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{seal, Key, Secrets};
use serde_json::{json, Value};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(args: &[&str], dir: &std::path::Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .current_dir(dir)
        .env("OTM_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(base: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn round_trip(base: &str, text: &str) -> (String, String, String) {
    let key = Key::generate().unwrap();
    let secrets = Secrets::derive(&key, None);
    let envelope = seal(&secrets, text).unwrap();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/v1/messages"))
        .json(&json!({
            "envelope": URL_SAFE_NO_PAD.encode(&envelope),
            "verifier": secrets.claim_verifier().to_base64url(),
            "ttl_seconds": 300,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let proof = secrets.claim_proof().to_base64url().to_string();
    let open = |p: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/messages/{id}/open");
        async move {
            http.post(url)
                .json(&json!({ "proof": p }))
                .send()
                .await
                .unwrap()
        }
    };
    let first = open(proof.clone()).await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    let got = URL_SAFE_NO_PAD
        .decode(body["envelope"].as_str().unwrap())
        .unwrap();
    assert_eq!(otm_core::open(&secrets, &got).unwrap().as_str(), text);
    assert_eq!(open(proof.clone()).await.status(), 404);
    (
        key.to_base64url().to_string(),
        proof,
        URL_SAFE_NO_PAD.encode(&envelope),
    )
}

fn stop(mut proc: Proc) -> (Option<i32>, String) {
    // SIGTERM: the server finishes in-flight requests and exits cleanly.
    let pid = proc.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    proc.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    proc.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (status.code(), log)
}

#[tokio::test]
async fn server_on_sqlite_serves_logs_no_secrets_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, base) = start(&[], dir.path());
    wait_ready(&base).await;
    // With no --store it creates its SQLite file in the working directory.
    assert!(dir.path().join("otm.sqlite3").exists());
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        otm_http::CONTENT_SECURITY_POLICY
    );
    let text = "operator smoke test: s3cr3t";
    let (key, proof, envelope) = round_trip(&base, text).await;
    let (code, log) = stop(proc);
    assert_eq!(code, Some(0), "{log}");
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
    let url = otm_store::conformance::env_or("OTM_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    if redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        return otm_store::conformance::skip(&format!("Redis at {url} is unreachable"))
            .unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("otm-srv-{}:", otm_store::conformance::unique_suffix());
    let url = format!("{url}?prefix={prefix}");
    let (proc, base) = start(&["--store", &url], dir.path());
    wait_ready(&base).await;
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "redis");
    round_trip(&base, "over redis").await;
    assert_eq!(stop(proc).0, Some(0));
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
}

#[tokio::test]
async fn server_on_s3_from_a_store_url() {
    let endpoint = otm_store::conformance::env_or("OTM_TEST_S3_ENDPOINT", "http://127.0.0.1:9100");
    if reqwest::get(format!("{endpoint}/moto-api/")).await.is_err() {
        return otm_store::conformance::skip(&format!("no S3 server at {endpoint}")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://otm-test/srv-{}/?endpoint={endpoint}&path_style=true&create_bucket=true&lifecycle_days=8",
        otm_store::conformance::unique_suffix()
    );
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--store", &url])
        .current_dir(dir.path())
        // moto accepts any credentials; the SDK's provider chain reads these.
        .env("AWS_ACCESS_KEY_ID", "otm-test")
        .env("AWS_SECRET_ACCESS_KEY", "otm-test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "s3");
    round_trip(&base, "over s3").await;
    assert_eq!(stop(proc).0, Some(0));
}
