//! The `otm` command against a real server: send, open, status and burn on
//! every backend; passphrases; exit codes and JSON output; and interop with
//! the browser app in real Chromium, both ways.

use std::process::{Command, Stdio};
use std::sync::Arc;

use otm_store::{
    BlobStore, MemoryStore, PostgresConfig, PostgresStore, RedisConfig, RedisStore, S3Config,
    S3Store, SqliteConfig, SqliteStore,
};
use otm_testkit::browser::{compose, reveal, value};
use otm_testkit::process::output_with_input;
use otm_testkit::{skip, unique_suffix, PgSchema, RedisPrefix};
use otm_testkit::{Driver, TestServer};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|_| panic!("not JSON: {} / {}", self.stdout, self.stderr))
    }
}

fn otm(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let out = output_with_input(
        Command::new(env!("CARGO_BIN_EXE_otm"))
            .args(args)
            .env_remove("OTM_SERVER")
            .env_remove("OTM_API_TOKEN")
            .envs(env.iter().copied()),
        stdin,
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Send, status, open once, status again, burn another: the whole life.
async fn life_cycle(store: Arc<dyn BlobStore>, label: &str) {
    let server = TestServer::start(store).await;
    let base = server.base.as_str();
    let text = format!(
        "from the command line on {label}: {}\nsecond line",
        unique_suffix()
    );
    let sent = otm(
        &["send", "--server", base, "--ttl", "1h", "--json"],
        Some(&text),
        &[],
    );
    assert_eq!(sent.code, 0, "{label}: {}", sent.stderr);
    let v = sent.json();
    let link = v["link"].as_str().unwrap().to_owned();
    let status_link = v["status_link"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{base}/otm/")), "{link}");

    let status = otm(&["status", &status_link, "--json"], None, &[]);
    assert_eq!(
        (status.code, status.json()["state"].as_str()),
        (0, Some("waiting")),
        "{label}"
    );
    let opened = otm(&["open", &link], None, &[]);
    assert_eq!(opened.code, 0, "{label}: {}", opened.stderr);
    assert_eq!(
        opened.stdout, text,
        "{label}: the exact text, no extra newline when piped"
    );
    let again = otm(&["open", &link], None, &[]);
    assert_eq!(again.code, 3, "{label}: {}", again.stderr);
    assert!(again.stderr.contains("already opened or has expired"));
    let status = otm(&["status", &status_link], None, &[]);
    assert!(
        status.stdout.starts_with("opened at "),
        "{label}: {}",
        status.stdout
    );

    let sent = otm(&["send", "--server", base, "--json"], Some("burn me"), &[]).json();
    let burned = otm(
        &["burn", sent["status_link"].as_str().unwrap(), "--json"],
        None,
        &[],
    );
    assert_eq!(
        (burned.code, burned.json()["state"].as_str()),
        (0, Some("burned")),
        "{label}"
    );
    let open_burned = otm(&["open", sent["link"].as_str().unwrap()], None, &[]);
    assert_eq!(open_burned.code, 3, "{label}");
    let burn_again = otm(&["burn", sent["status_link"].as_str().unwrap()], None, &[]);
    assert_eq!(burn_again.code, 3, "{label}: {}", burn_again.stderr);

    // Nothing secret reached the server except through its own channels.
    let log = server.log_text();
    assert!(!log.contains(text.lines().next().unwrap()));
    assert!(!log.contains(link.split("#key=").nth(1).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_memory_and_sqlite() {
    life_cycle(Arc::new(MemoryStore::new(Default::default())), "memory").await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("cli.sqlite3")))
        .await
        .unwrap();
    life_cycle(Arc::new(store), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_redis_and_redis_cluster() {
    let url = otm_testkit::env::redis_url();
    let prefix = RedisPrefix::new("otm-cli-");
    match RedisStore::connect(RedisConfig::standalone(&url).with_key_prefix(prefix.as_str())).await
    {
        Ok(s) => life_cycle(Arc::new(s), "redis").await,
        Err(e) => return skip(&format!("Redis at {url}: {e}")).unwrap_or(()),
    }
    let seeds = otm_testkit::env::redis_cluster_urls();
    match RedisStore::connect(RedisConfig::cluster(seeds).with_key_prefix(prefix.as_str())).await {
        Ok(s) => life_cycle(Arc::new(s), "redis-cluster").await,
        Err(e) => skip(&format!("Redis Cluster: {e}")).unwrap_or(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_postgres_and_s3() {
    let url = otm_testkit::env::postgres_url();
    let schema = PgSchema::new("otm_test_");
    let config = PostgresConfig::new(&url).with_schema(schema.name());
    match PostgresStore::connect(config).await {
        Ok(s) => life_cycle(Arc::new(s), "postgres").await,
        Err(e) => return skip(&format!("PostgreSQL at {url}: {e}")).unwrap_or(()),
    }
    let endpoint = otm_testkit::env::s3_endpoint();
    let config = S3Config::new("otm-test", format!("cli-{}/", unique_suffix()))
        .with_allow_no_lifecycle(true)
        .with_endpoint(&endpoint)
        .with_create_bucket(true)
        .with_static_credentials("otm-test", "otm-test");
    match S3Store::connect(config).await {
        Ok(s) => life_cycle(Arc::new(s), "s3").await,
        Err(e) => skip(&format!("S3 at {endpoint}: {e}")).unwrap_or(()),
    }
}

// Multi-threaded: the CLI runs as a blocking child process while the server
// task must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrases_and_failures_have_clear_exit_codes() {
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    let base = server.base.as_str();
    let sent = otm(
        &[
            "send",
            "--server",
            base,
            "--passphrase-env",
            "SECRET_WORDS",
            "--json",
        ],
        Some("two factors"),
        &[("SECRET_WORDS", "correct horse")],
    );
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let link = sent.json()["link"].as_str().unwrap().to_owned();
    assert!(link.ends_with("&p=1"));
    let wrong = otm(
        &["open", &link, "--passphrase-env", "W"],
        None,
        &[("W", "wrong horse")],
    );
    assert_eq!(wrong.code, 4, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("wrong passphrase (4 attempts left)"),
        "{}",
        wrong.stderr
    );
    let right = otm(
        &["open", &link, "--passphrase-env", "W", "--json"],
        None,
        &[("W", "correct horse")],
    );
    assert_eq!(right.code, 0, "{} {}", right.stdout, right.stderr);
    assert_eq!(right.json()["message"], "two factors");

    let bad = otm(
        &["open", "https://example.org/otm/nope#key=short", "--json"],
        None,
        &[],
    );
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json()["error"], "bad_input");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = otm(
        &["send", "--server", &format!("http://127.0.0.1:{closed}")],
        Some("x"),
        &[],
    );
    assert_eq!(down.code, 5, "{}", down.stderr);
    assert!(down.stderr.contains("cannot reach the otm server"));
    let empty = otm(&["send", "--server", base], Some(""), &[]);
    assert_eq!(empty.code, 2);
    let too_long = otm(&["send", "--server", base, "--ttl", "30d"], Some("x"), &[]);
    assert_eq!(too_long.code, 2, "{}", too_long.stderr);
    assert!(too_long.stderr.contains("at most"), "{}", too_long.stderr);
    let missing_env = otm(
        &["send", "--server", base, "--passphrase-env", "NOPE_NOT_SET"],
        Some("x"),
        &[],
    );
    assert_eq!(missing_env.code, 2);
    let help = otm(&["send", "--help"], None, &[]);
    assert!(help.stdout.contains("--passphrase-env") && help.stdout.contains("--ttl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_browser_read_each_others_messages() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    // CLI → browser.
    let text = format!("sealed by the CLI, read in Chromium {}", unique_suffix());
    let sent = otm(
        &["send", "--server", &server.base, "--json"],
        Some(&text),
        &[],
    );
    let link = sent.json()["link"].as_str().unwrap().to_owned();
    let (reader, _p) = reveal(&driver, &link, None).await;
    assert_eq!(value(&reader, "#plaintext").await, text);
    reader.close().await.unwrap();
    // Browser → CLI, with a passphrase.
    let (sender, _q) = driver.browser().await;
    let text = format!("sealed in Chromium, read by the CLI {}", unique_suffix());
    let (link, status_link) = compose(&sender, &server.base, &text, Some("open sesame")).await;
    sender.close().await.unwrap();
    let opened = otm(
        &["open", &link, "--passphrase-env", "P", "--json"],
        None,
        &[("P", "open sesame")],
    );
    assert_eq!(opened.code, 0, "{}", opened.stderr);
    assert_eq!(opened.json()["message"], text.as_str());
    let status = otm(&["status", &status_link, "--json"], None, &[]);
    assert_eq!(status.json()["state"], "opened");
}

/// Links from standard input (kept out of the process list), plain http
/// refused beyond this machine, and a failed write of an opened message is
/// an error, not success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_from_standard_input_no_plain_http_and_failed_writes() {
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    let base = server.base.as_str();
    let sent = otm(
        &["send", "--server", base, "--json"],
        Some("via stdin"),
        &[],
    )
    .json();
    let link = sent["link"].as_str().unwrap();
    let status_link = sent["status_link"].as_str().unwrap();

    // The link on standard input, after blank lines and with spaces around.
    let status = otm(
        &["status", "--json"],
        Some(&format!("\n  {status_link}  \n")),
        &[],
    );
    assert_eq!(status.json()["state"], "waiting", "{}", status.stderr);
    let opened = otm(&["open"], Some(&format!("{link}\n")), &[]);
    assert_eq!(
        (opened.code, opened.stdout.as_str()),
        (0, "via stdin"),
        "{}",
        opened.stderr
    );
    let nothing = otm(&["open"], Some(""), &[]);
    assert_eq!(nothing.code, 2);
    assert!(
        nothing.stderr.contains("no link given"),
        "{}",
        nothing.stderr
    );
    let help = otm(&["open", "--help"], None, &[]);
    assert!(
        help.stdout.contains("visible to other users"),
        "{}",
        help.stdout
    );

    // Plain http to another machine: refused before any connection.
    for args in [
        vec!["send", "--server", "http://otm.example"],
        vec!["open", "http://otm.example/otm/AAAAAAAAAAAAAAAAAAAAAA#key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    ] {
        let refused = otm(&args, Some("x"), &[]);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("--insecure-http"), "{}", refused.stderr);
    }

    // Standard output that cannot be written (a full disk): the message is
    // consumed, so the command must fail loudly.
    let sent = otm(&["send", "--server", base, "--json"], Some("lost?"), &[]).json();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otm"))
        .args(["open", sent["link"].as_str().unwrap()])
        .env_remove("OTM_SERVER")
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writing it failed"), "{stderr}");
}

/// The stand-in API token of [`NeedsToken`].
const CLI_TOKEN: &str = "cli-token-of-some-length";

/// Creates only with `Authorization: Bearer cli-token-of-some-length` (a
/// stand-in for a server's API tokens), and lets that token manage what it
/// created.
struct NeedsToken;

impl NeedsToken {
    fn presented(request: &axum::http::request::Parts) -> bool {
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {CLI_TOKEN}"))
    }

    fn secret() -> otm_core::ManageSecret {
        otm_core::ManageSecret::new(CLI_TOKEN.as_bytes()).unwrap()
    }
}

#[async_trait::async_trait]
impl otm_http::policy::CreatePolicy for NeedsToken {
    async fn identify(
        &self,
        request: &axum::http::request::Parts,
        client: std::net::IpAddr,
    ) -> Result<otm_http::Caller, otm_http::policy::Refusal> {
        use otm_http::{Caller, TokenHolder};
        Ok(match Self::presented(request) {
            true => Caller::ApiToken(TokenHolder::new("cli", "cli").with_manage(Self::secret())),
            false => Caller::Anonymous(client),
        })
    }

    async fn decide(
        &self,
        caller: &otm_http::Caller,
        _: &otm_http::policy::CreateAsk<'_>,
    ) -> otm_http::policy::Decision {
        use otm_http::policy::{CreateLimits, Decision};
        match caller.manage_secret() {
            Some(secret) => {
                Decision::allow(CreateLimits::default().with_manage_secret(secret.clone()))
            }
            None => Decision::deny("API token holders only."),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_the_api_token_from_the_environment() {
    let config = otm_http::Config::default().with_create_policy(NeedsToken);
    let server =
        TestServer::start_with(Arc::new(MemoryStore::new(Default::default())), config).await;
    let base = server.base.as_str();
    let refused = otm(&["send", "--server", base], Some("no token"), &[]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("API token holders only."),
        "{}",
        refused.stderr
    );
    let sent = otm(
        &["send", "--server", base, "--json"],
        Some("with a token"),
        &[("OTM_API_TOKEN", CLI_TOKEN)],
    );
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let link = sent.json()["link"].as_str().unwrap().to_owned();
    // Reading needs no token.
    let opened = otm(&["open", &link], None, &[]);
    assert_eq!(opened.stdout, "with a token");

    // The token manages what it created, by ID.
    let sent = otm(
        &["send", "--server", base, "--json"],
        Some("managed by the token"),
        &[("OTM_API_TOKEN", CLI_TOKEN)],
    )
    .json();
    let id = sent["id"].as_str().unwrap().to_owned();
    let by_id = |command: &str, token: Option<&str>| {
        let env: Vec<(&str, &str)> = token.map(|t| ("OTM_API_TOKEN", t)).into_iter().collect();
        otm(
            &[command, "--id", &id, "--server", base, "--json"],
            None,
            &env,
        )
    };
    let no_token = by_id("status", None);
    assert_eq!(no_token.code, 2, "{}", no_token.stderr);
    // With --json the failure is a JSON line on standard output.
    assert!(
        no_token.stdout.contains("OTM_API_TOKEN"),
        "{}",
        no_token.stdout
    );
    let wrong = by_id("status", Some("another-token-of-some-length"));
    assert_ne!(wrong.code, 0, "{}", wrong.stdout);
    let status = by_id("status", Some(CLI_TOKEN));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["state"], "waiting");
    let burned = by_id("burn", Some(CLI_TOKEN));
    assert_eq!(burned.code, 0, "{}", burned.stderr);
    assert_eq!(burned.json()["state"], "burned");
    // The token returned at create (in the status link) is the same token.
    let status = otm(
        &["status", sent["status_link"].as_str().unwrap(), "--json"],
        None,
        &[],
    );
    assert_eq!(status.json()["state"], "burned", "{}", status.stderr);
}

/// `otm request` prints the request link (stdout) and the receive link
/// (stderr); `otm reply` reads the request link from a file and the secret
/// from standard input, once; `otm open`, `otm status` and `otm burn` take
/// the receive link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_and_receive_from_the_command_line() {
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    let base = server.base.as_str();
    let dir = tempfile::tempdir().unwrap();
    let note_file = dir.path().join("note");
    std::fs::write(&note_file, "the staging DB password\n").unwrap();
    let asked = otm(
        &[
            "request",
            "--server",
            base,
            "--note-file",
            note_file.to_str().unwrap(),
            "--ttl",
            "1h",
        ],
        None,
        &[],
    );
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    let request_link = asked.stdout.trim().to_owned();
    assert!(
        request_link.starts_with(&format!("{base}/request/")),
        "{request_link}"
    );
    let receive_link = asked
        .stderr
        .lines()
        .find(|l| l.contains("/receive/"))
        .expect("the receive link on stderr")
        .trim()
        .to_owned();
    let fingerprint = asked
        .stderr
        .lines()
        .find_map(|l| l.split("over another channel): ").nth(1))
        .expect("the fingerprint")
        .to_owned();

    let status = otm(&["status", &receive_link, "--json"], None, &[]);
    assert_eq!(status.json()["state"], "waiting", "{}", status.stderr);
    let early = otm(&["open", &receive_link], None, &[]);
    assert_eq!(early.code, 3, "{}", early.stderr);

    let link_file = dir.path().join("request-link");
    std::fs::write(&link_file, format!("{request_link}\n")).unwrap();
    let link_arg = link_file.to_str().unwrap();
    let secret = format!("s3cr3t {}\nline two", unique_suffix());
    let replied = otm(&["reply", "--link-file", link_arg], Some(&secret), &[]);
    assert_eq!(replied.code, 0, "{}", replied.stderr);
    assert!(
        replied.stderr.contains("Note: the staging DB password"),
        "{}",
        replied.stderr
    );
    assert!(
        replied
            .stderr
            .contains("anyone could have made this request"),
        "{}",
        replied.stderr
    );
    assert!(replied.stderr.contains(&fingerprint), "{}", replied.stderr);
    assert!(
        replied.stdout.starts_with("answered at "),
        "{}",
        replied.stdout
    );
    let again = otm(&["reply", "--link-file", link_arg], Some("another"), &[]);
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(
        again.stderr.contains("already answered"),
        "{}",
        again.stderr
    );

    let status = otm(&["status", &receive_link, "--json"], None, &[]);
    assert_eq!(status.json()["state"], "answered");
    let opened = otm(&["open", &receive_link], None, &[]);
    assert_eq!(
        (opened.code, opened.stdout.as_str()),
        (0, secret.as_str()),
        "{}",
        opened.stderr
    );
    let twice = otm(&["open", &receive_link], None, &[]);
    assert_eq!(twice.code, 3);
    let status = otm(&["status", &receive_link], None, &[]);
    assert!(status.stdout.contains("opened at"), "{}", status.stdout);

    let withdrawn = otm(&["burn", &receive_link], None, &[]);
    assert_eq!(withdrawn.code, 0, "{}", withdrawn.stderr);
    let gone = otm(&["reply", "--link-file", link_arg], Some("late"), &[]);
    assert_eq!(gone.code, 3, "{}", gone.stderr);
    // A request link is not a receive link: it opens nothing.
    let wrong = otm(&["open", &request_link], None, &[]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}

/// `otm send --to … / --recipients N`: one link per person, each opening
/// once; the group status link on standard error follows them by name, and
/// `otm burn` with it destroys the unopened ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_several_people_and_follow_them() {
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    let base = server.base.as_str();
    let secret = format!("team password {}", unique_suffix());
    let sent = otm(
        &[
            "send", "--server", base, "--to", "Ana Lima", "--to", "Ben", "--ttl", "1h",
        ],
        Some(&secret),
        &[],
    );
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let lines: Vec<(&str, &str)> = sent
        .stdout
        .lines()
        .map(|l| l.split_once('\t').expect("NAME<tab>LINK"))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        ["Ana Lima", "Ben"]
    );
    assert_ne!(lines[0].1, lines[1].1);
    let group_link = sent
        .stderr
        .lines()
        .find(|l| l.contains("/group#"))
        .expect("the group status link on stderr")
        .trim()
        .to_owned();
    assert!(
        !group_link.contains("Ana Lima"),
        "names are percent-encoded"
    );
    assert!(group_link.contains("Ana%20Lima"), "{group_link}");

    let opened = otm(&["open"], Some(lines[1].1), &[]);
    assert_eq!(
        (opened.code, opened.stdout.as_str()),
        (0, secret.as_str()),
        "{}",
        opened.stderr
    );
    let status = otm(&["status", &group_link], None, &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let states: Vec<&str> = status.stdout.lines().collect();
    assert!(states[0].starts_with("Ana Lima: waiting"), "{states:?}");
    assert!(states[1].starts_with("Ben: opened at "), "{states:?}");

    let burned = otm(&["burn", "--json"], Some(&group_link), &[]);
    assert_eq!(burned.code, 0, "{}", burned.stderr);
    let members = burned.json()["members"].clone();
    assert_eq!(members[0]["label"], "Ana Lima");
    assert_eq!(members[0]["status"]["state"], "burned");
    assert_eq!(members[1]["status"]["state"], "opened");
    let late = otm(&["open"], Some(lines[0].1), &[]);
    assert_eq!(late.code, 3, "{}", late.stderr);

    // --recipients N: unnamed links, one per line; out of range is refused.
    let three = otm(
        &["send", "--server", base, "--recipients", "3", "--json"],
        Some("x"),
        &[],
    );
    assert_eq!(three.code, 0, "{}", three.stderr);
    let answer = three.json();
    assert_eq!(answer["links"].as_array().unwrap().len(), 3);
    assert!(answer["status_link"]
        .as_str()
        .unwrap()
        .contains("/group#s="));
    let one = otm(
        &["send", "--server", base, "--recipients", "1"],
        Some("x"),
        &[],
    );
    assert_eq!(one.code, 2, "{}", one.stderr);
    let lonely = otm(&["send", "--server", base, "--to", "Ana"], Some("x"), &[]);
    assert_eq!(lonely.code, 2, "{}", lonely.stderr);
    assert!(
        lonely.stderr.contains("2 to 20 people"),
        "{}",
        lonely.stderr
    );
}
