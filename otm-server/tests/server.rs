//! The `otm-server` binary as an operator runs it: a real process on a real
//! socket, on SQLite, Redis, PostgreSQL and S3, its log free of secrets
//! even at `trace` (create, open, status and burn), a clear error for a bad
//! store URL, and a clean exit on SIGTERM.

use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_client::Client;
use otm_core::{seal, Key, Secrets};
use otm_testkit::{free_port, skip, unique_suffix, OtmServer, PgSchema, Process, RedisPrefix};
use serde_json::Value;

/// A running otm-server whose log goes to a file (any length: `trace` is
/// long), read back by [`stop`].
struct Logged {
    process: Process,
    log: std::path::PathBuf,
}

/// Starts otm-server with `args`, logging at `level` to a file in `dir`,
/// and waits until it is ready.
async fn start(args: &[&str], level: &str, dir: &std::path::Path) -> (Logged, String) {
    let port = free_port();
    let log = dir.join(format!("otm-server-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = OtmServer::command(env!("CARGO_BIN_EXE_otm-server"), port, dir);
    command
        .args(args)
        .env("OTM_LOG", level)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let server = OtmServer {
        process: Process::spawn(command).unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    // With an admin listener the public side has no /readyz.
    let admin = args.contains(&"--admin-listen");
    server
        .wait_until(if admin { "healthz" } else { "readyz" })
        .await;
    (
        Logged {
            process: server.process,
            log,
        },
        server.base,
    )
}

/// Every form in which `bytes` could show up in a log: base64url, hex and
/// Rust's `Debug` of a byte slice (a prefix, enough to be unambiguous).
fn forms(bytes: &[u8]) -> Vec<String> {
    let head = &bytes[..bytes.len().min(24)];
    let debug = format!("{head:?}");
    vec![
        URL_SAFE_NO_PAD.encode(bytes)[..30.min(bytes.len() * 4 / 3)].to_owned(),
        head.iter().map(|b| format!("{b:02x}")).collect(),
        debug[..debug.len() - 1].to_owned(),
    ]
}

/// Messages through the server with otm-client: one stored, opened once and
/// gone the second time; one sent, its status read and burned. Returns
/// everything that must never reach a log, in every form it could take.
async fn round_trip(base: &str, text: &str) -> Vec<String> {
    let client = Client::new(base).unwrap();
    let key = Key::generate().unwrap();
    let secrets = Secrets::derive(&key, None);
    let envelope = seal(&secrets, text).unwrap();
    let stored = client
        .create(&envelope, &secrets, Some(Duration::from_secs(300)), None)
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
    let sent = client
        .send(text, &otm_client::SendOptions::new())
        .await
        .unwrap();
    let waiting = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(waiting.state, otm_core::api::MessageState::Waiting);
    let burned = client.burn(&sent.manage_link).await.unwrap();
    assert_eq!(burned.state, otm_core::api::MessageState::Burned);

    let sent_secrets = Secrets::derive(&sent.link.key, None);
    let mut secret = vec![text.to_owned()];
    for s in [&secrets, &sent_secrets] {
        secret.extend(forms(s.claim_proof().as_bytes()));
        secret.extend(forms(s.access_proof().as_bytes()));
        secret.extend(forms(s.claim_verifier().as_bytes()));
        secret.extend(forms(s.access_verifier().as_bytes()));
    }
    secret.extend(forms(key.as_bytes()));
    secret.extend(forms(sent.link.key.as_bytes()));
    secret.extend(forms(&envelope[..64]));
    secret.push(sent.manage_link.token.to_base64url().to_string());
    secret.extend(forms(sent.manage_link.token.verifier().as_bytes()));
    secret
}

/// otm-server on the store `url`: ready on the `backend` it names, one
/// message round trip, a clean exit on SIGTERM.
async fn serves_from_url(url: &str, backend: &str, dir: &std::path::Path) {
    let (proc, base) = start(&["--store", url], "trace", dir).await;
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], backend);
    let secrets = round_trip(&base, &format!("over {backend}: s3cr3t")).await;
    let (code, log) = stop(proc);
    assert_eq!(code, Some(0), "{}", tail(&log));
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is not verbose"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{backend}: the trace log contains {secret:?}"
        );
    }
    eprintln!(
        "{backend}: {} bytes of trace log, no secret in it",
        log.len()
    );
}

/// The Redis server's URL, or `None` (skipped with a printed reason, a
/// failure in CI) when it is unreachable.
async fn redis_url() -> Option<String> {
    let url = otm_testkit::env::redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    match client.get_multiplexed_async_connection().await {
        Ok(_) => Some(url),
        Err(_) => skip(&format!("Redis at {url} is unreachable")),
    }
}

/// The store URL of `schema`, or `None` (skipped with a printed reason, a
/// failure in CI) when PostgreSQL is unreachable.
async fn postgres_url(schema: &PgSchema) -> Option<String> {
    let store = schema.store_url();
    match otm_store::connect(&store, otm_store::StoreOptions::default()).await {
        Ok(_) => Some(store),
        Err(_) => skip(&format!(
            "PostgreSQL at {} is unreachable",
            otm_testkit::env::postgres_url()
        )),
    }
}

/// SIGTERM: the server finishes in-flight requests and exits cleanly; its
/// exit code and log.
fn stop(mut server: Logged) -> (Option<i32>, String) {
    let (code, _) = server.process.terminate(Duration::from_secs(15));
    (
        code,
        std::fs::read_to_string(&server.log).unwrap_or_default(),
    )
}

/// The end of a long log, for failure messages.
fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(0);
    &log[start..]
}

#[tokio::test]
async fn server_on_sqlite_serves_logs_no_secrets_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, base) = start(&[], "trace", dir.path()).await;
    // With no --store it creates its SQLite file in the working directory.
    assert!(dir.path().join("otm.sqlite3").exists());
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        otm_http::CONTENT_SECURITY_POLICY
    );
    let text = "operator smoke test: s3cr3t";
    let secrets = round_trip(&base, text).await;
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
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the trace log contains {secret:?}"
        );
    }
}

#[tokio::test]
async fn server_on_redis_from_a_store_url() {
    let Some(url) = redis_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = RedisPrefix::new("otm-srv-");
    let url = format!("{url}?prefix={prefix}");
    serves_from_url(&url, "redis", dir.path()).await;
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
    // Transports that are not verified TLS, to another machine (a
    // documentation address: nothing is ever connected), are refused at
    // start with the fix, unless the URL or the flag says so.
    for (store, fix) in [
        ("redis://192.0.2.1:6379", "use rediss://"),
        (
            "redis+cluster://127.0.0.1:7000,192.0.2.1:7001",
            "use rediss://",
        ),
        ("postgres://otm@192.0.2.1/otm", "sslmode=verify-full"),
        (
            "postgres://otm@db.internal/otm?sslmode=require",
            "sslmode=verify-full",
        ),
        (
            "s3://bucket/otm/?endpoint=http://192.0.2.1:9000",
            "https:// endpoint",
        ),
    ] {
        let text = refused(&["--listen", "127.0.0.1:0", "--store", store]);
        assert!(
            text.contains("would not be verified TLS")
                && text.contains(fix)
                && text.contains("allow_unverified=true"),
            "{store}: {text}"
        );
    }
    let hook = [
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory:",
        "--webhook-url",
        "http://192.0.2.1/otm",
    ];
    let text = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .args(hook)
        .env(
            "OTM_WEBHOOK_SECRETS",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!text.status.success());
    let text =
        String::from_utf8_lossy(&text.stdout).into_owned() + &String::from_utf8_lossy(&text.stderr);
    assert!(text.contains("--webhook-allow-unverified"), "{text}");
    // --help never prints the values of settings that carry credentials.
    let help = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .arg("--help")
        .env("OTM_STORE", "postgres://otm:hunter2@db/otm")
        .env("OTM_WEBHOOK_URL", "https://hooks.example/otm?key=hunter2")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("OTM_STORE") && !help.contains("hunter2"),
        "{help}"
    );
    for attempts in ["0", "21", "many"] {
        let text = refused(&["--max-failed-attempts", attempts]);
        assert!(text.contains("--max-failed-attempts"), "{text}");
    }
}

#[tokio::test]
async fn server_on_postgres_from_a_store_url() {
    let schema = PgSchema::new("otm_test_srv_");
    let Some(store) = postgres_url(&schema).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    serves_from_url(&store, "postgres", dir.path()).await;
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
    serves_from_url(&url, "s3", dir.path()).await;
}

/// `--admin-listen`: /metrics and /readyz only there, /healthz on both;
/// readiness answers are cached, so polling cannot hammer the store.
#[tokio::test]
async fn operator_endpoints_move_to_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let (proc, base) = start(&["--admin-listen", &admin_addr], "info", dir.path()).await;
    let admin = format!("http://{admin_addr}");
    let get = |url: String| async move { reqwest::get(url).await.unwrap() };
    for path in ["metrics", "readyz"] {
        let public = get(format!("{base}/{path}")).await;
        assert_eq!(public.status(), 404, "public /{path}");
        let body: otm_core::api::ErrorBody = public.json().await.unwrap();
        assert_eq!(body.error, otm_core::ErrorCode::NoRoute);
    }
    assert_eq!(get(format!("{base}/healthz")).await.status(), 200);
    assert_eq!(get(format!("{admin}/healthz")).await.status(), 200);
    for _ in 0..30 {
        assert_eq!(get(format!("{admin}/readyz")).await.status(), 200);
    }
    // The public traffic shows on the admin listener's counters.
    round_trip(&base, "counted on the admin side").await;
    let metrics = get(format!("{admin}/metrics")).await.text().await.unwrap();
    assert!(
        metrics.contains("otm_messages_total{outcome=\"opened\"} 1"),
        "{metrics}"
    );
    let checks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("otm_store_checks_total "))
        .and_then(|v| v.parse().ok())
        .expect("otm_store_checks_total");
    // One check when the server became ready, one or two for the 30 polls.
    assert!(
        (1..=4).contains(&checks),
        "{checks} store checks for 31 readiness polls"
    );
    assert!(get(format!("{admin}/api/v1/config")).await.status() == 404);
    let (code, log) = stop(proc);
    assert_eq!(code, Some(0), "{}", tail(&log));
}

/// Two replicas of otm-server on the store `url`, limited to 6 creates and
/// 6 opens a minute (a burst of 2 each), with or without
/// `--shared-rate-limits`, and one client that alternates between them:
/// how many of its 8 creates and of its 8 status checks got through (the
/// rest got 429).
async fn through_two_replicas(url: &str, shared: bool, dir: &std::path::Path) -> (usize, usize) {
    let mut args = vec![
        "--store",
        url,
        "--create-per-minute",
        "6",
        "--open-per-minute",
        "6",
    ];
    if shared {
        args.push("--shared-rate-limits");
    }
    let (a, base_a) = start(&args, "warn", dir).await;
    let (b, base_b) = start(&args, "warn", dir).await;
    let http = reqwest::Client::new();
    let (mut created, mut checked) = (0, 0);
    for i in 0..8 {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let secrets = Secrets::derive(&Key::generate().unwrap(), None);
        let envelope = seal(&secrets, "limited").unwrap();
        match Client::new(base)
            .unwrap()
            .create(&envelope, &secrets, None, None)
            .await
        {
            Ok(_) => created += 1,
            Err(otm_client::Error::RateLimited { .. }) => {}
            Err(e) => panic!("create through {base}: {e}"),
        }
        let id = otm_core::MessageId::generate().unwrap();
        let status = http
            .get(format!("{base}/api/v1/messages/{id}"))
            .bearer_auth("A".repeat(43))
            .send()
            .await
            .unwrap()
            .status();
        match status.as_u16() {
            404 => checked += 1,
            429 => {}
            other => panic!("status through {base}: {other}"),
        }
    }
    for replica in [a, b] {
        let (code, log) = stop(replica);
        assert_eq!(code, Some(0), "{}", tail(&log));
    }
    (created, checked)
}

#[tokio::test]
async fn two_replicas_share_one_rate_limit_on_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = RedisPrefix::new("otm-rate-");
    let url = format!("{url}?prefix={prefix}");
    // Counted in each process, a client spread over two replicas gets
    // each limit twice; counted in the store, once.
    assert_eq!(through_two_replicas(&url, false, dir.path()).await, (4, 4));
    assert_eq!(through_two_replicas(&url, true, dir.path()).await, (2, 2));
}

#[tokio::test]
async fn two_replicas_share_one_rate_limit_on_postgres() {
    let schema = PgSchema::new("otm_test_rate_");
    let Some(store) = postgres_url(&schema).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(through_two_replicas(&store, true, dir.path()).await, (2, 2));
}

#[tokio::test]
async fn shared_rate_limits_on_a_store_that_cannot_count_them_is_a_startup_error() {
    let endpoint = otm_testkit::env::s3_endpoint();
    if reqwest::get(format!("{endpoint}/moto-api/")).await.is_err() {
        return skip(&format!("no S3 server at {endpoint}")).unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://otm-test/rate-{}/?endpoint={endpoint}&path_style=true&create_bucket=true&lifecycle_days=8",
        unique_suffix()
    );
    let mut command = OtmServer::command(env!("CARGO_BIN_EXE_otm-server"), free_port(), dir.path());
    command.args(["--store", &url, "--shared-rate-limits"]);
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("shared rate limits") && text.contains("s3 store cannot"),
        "{text}"
    );
}

/// `--translations-dir`: an operator's string tables change a text and add
/// a language, without a rebuild; a broken table stops the start with a
/// message that names the file and the key.
#[tokio::test]
async fn translations_from_a_directory_change_and_add_languages() {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("i18n");
    std::fs::create_dir(&tables).unwrap();
    std::fs::write(
        tables.join("nl.json"),
        r#"{"language":"nl","name":"Nederlands","dir":"ltr","strings":{"compose.title":"Stuur een geheim dat één keer opent"}}"#,
    )
    .unwrap();
    let tables_arg = tables.to_str().unwrap();
    let (server, base) = start(
        &["--store", "memory:", "--translations-dir", tables_arg],
        "info",
        dir.path(),
    )
    .await;
    let page = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("accept-language", "nl-BE, en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-language"], "nl");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Stuur een geheim dat één keer opent"),
        "{html}"
    );
    let (_, log) = stop(server);
    assert!(log.contains("string tables loaded"), "{}", tail(&log));

    std::fs::write(
        tables.join("nl.json"),
        r#"{"language":"nl","name":"Nederlands","dir":"ltr","strings":{"compose.titel":"x"}}"#,
    )
    .unwrap();
    let mut command = OtmServer::command(env!("CARGO_BIN_EXE_otm-server"), free_port(), dir.path());
    command.args(["--store", "memory:", "--translations-dir", tables_arg]);
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("--translations-dir")
            && text.contains("nl.json")
            && text.contains("compose.titel"),
        "{text}"
    );
}
