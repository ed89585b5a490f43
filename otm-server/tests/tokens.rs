//! API tokens on the reference server: `otm-server token NAME` makes one;
//! with `--api-tokens-file` and `--create-requires-token`, only a client
//! sending it (`Authorization: Bearer`) may create, a wrong one is refused,
//! and readers need none.

mod common;

use std::process::Command;

use common::{client, Server};
use otm_client::{AskOptions, Client, Error};
use otm_core::{ErrorCode, SendOptions};

const BIN: &str = env!("CARGO_BIN_EXE_otm-server");

/// `otm-server token NAME`: the token and its entry line.
fn new_token(name: &str) -> (String, String) {
    new_token_with(name, "create")
}

/// `otm-server token NAME --scopes SCOPES`: the token and its entry line.
fn new_token_with(name: &str, scopes: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["token", name, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {text}"))
            .trim()
            .to_owned()
    };
    (field("token:"), field("entry:"))
}

/// `otm-server manage-key`: a fresh manage key.
fn new_manage_key() -> String {
    let out = Command::new(BIN).arg("manage-key").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("otmk_"), "{key}");
    key
}

/// A client of the server at `base` that sends the API token `token`.
fn with_token(base: &str, token: &str) -> Client {
    Client::builder(base).api_token(token).build().unwrap()
}

fn denied(e: &Error) -> bool {
    e.code() == Some(ErrorCode::CreateDenied)
}

#[tokio::test]
async fn only_token_holders_create_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let (token, entry) = new_token("ci");
    assert!(
        !entry.contains(&token),
        "the entry holds the token's digest only"
    );
    let (other, _) = new_token("stranger");
    std::fs::write(
        dir.path().join("tokens"),
        format!("# machine clients\n{entry}\n"),
    )
    .unwrap();
    let server = Server::start(
        BIN,
        "sqlite://otm.sqlite3",
        dir.path(),
        &["--api-tokens-file", "tokens", "--create-requires-token"],
    )
    .await;

    let anonymous = client(&server.base);
    let err = anonymous
        .send("no token", &SendOptions::new())
        .await
        .unwrap_err();
    assert!(denied(&err), "{err}");
    let wrong = with_token(&server.base, &other);
    let err = wrong
        .send("wrong token", &SendOptions::new())
        .await
        .unwrap_err();
    assert!(denied(&err), "{err}");

    let holder = with_token(&server.base, &token);
    let sent = holder
        .send("with the token", &SendOptions::new())
        .await
        .unwrap();
    // The reader needs no token.
    let text = anonymous.open(&sent.link, None).await.unwrap();
    assert_eq!(text.as_str(), "with the token");
    // Nor does the sender's status, which takes the message's own token.
    assert!(anonymous.status(&sent.manage_link).await.is_ok());
}

/// A `create,manage` token shows and burns, by ID, the messages it created
/// (and only those), a `create` token cannot, and a token's quota holds.
#[tokio::test]
async fn manage_tokens_manage_what_they_created() {
    let dir = tempfile::tempdir().unwrap();
    let (deploy, deploy_entry) = new_token_with("deploy", "create,manage");
    assert!(
        deploy_entry.starts_with("deploy create,manage "),
        "{deploy_entry}"
    );
    let (other, other_entry) = new_token_with("other", "create,manage");
    let (ci, ci_entry) = new_token("ci");
    std::fs::write(
        dir.path().join("tokens"),
        format!("{deploy_entry} 3/1h\n{other_entry}\n{ci_entry}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("manage.key"), new_manage_key()).unwrap();
    let server = Server::start(
        BIN,
        "sqlite://otm.sqlite3",
        dir.path(),
        &[
            "--api-tokens-file",
            "tokens",
            "--manage-key-file",
            "manage.key",
        ],
    )
    .await;
    let with = |token: &str| with_token(&server.base, token);
    let (deploy_client, other_client, ci_client) = (with(&deploy), with(&other), with(&ci));

    let sent = deploy_client
        .send("managed by deploy", &SendOptions::new())
        .await
        .unwrap();
    let id = sent.link.id;
    let receipt = deploy_client.status_by_id(&id).await.unwrap();
    assert_eq!(receipt.state, otm_core::api::MessageState::Waiting);
    // Another manage token did not create it; a create-only token manages
    // nothing; no token at all is a client error.
    let err = other_client.status_by_id(&id).await.unwrap_err();
    assert!(matches!(err, Error::Gone), "{err}");
    let err = ci_client.status_by_id(&id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TokenRequired), "{err}");
    let err = client(&server.base).status_by_id(&id).await.unwrap_err();
    assert!(matches!(err, Error::NoApiToken), "{err}");
    // The management link returned at create still works.
    assert!(client(&server.base).status(&sent.manage_link).await.is_ok());

    let burned = deploy_client.burn_by_id(&id).await.unwrap();
    assert_eq!(burned.state, otm_core::api::MessageState::Burned);
    let err = client(&server.base)
        .open(&sent.link, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Gone), "{err}");

    // deploy's quota is 3 an hour: it has used 1.
    for _ in 0..2 {
        deploy_client
            .send("within the quota", &SendOptions::new())
            .await
            .unwrap();
    }
    let err = deploy_client
        .send("over the quota", &SendOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded), "{err}");
    // Other tokens have their own (none).
    other_client
        .send("no quota", &SendOptions::new())
        .await
        .unwrap();
}

/// Revoking a `manage` token (removing its entry) ends managing by it:
/// its holder can neither present it nor compute a message's management
/// token from it (the derivation needs the server's manage key), while the
/// management link returned at create keeps working.
#[tokio::test]
async fn a_revoked_manage_token_manages_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (deploy, deploy_entry) = new_token_with("deploy", "create,manage");
    let (_, ci_entry) = new_token("ci");
    std::fs::write(dir.path().join("manage.key"), new_manage_key()).unwrap();
    std::fs::write(dir.path().join("tokens"), format!("{deploy_entry}\n")).unwrap();
    let args = [
        "--api-tokens-file",
        "tokens",
        "--manage-key-file",
        "manage.key",
    ];
    let mut server = Server::start(BIN, "sqlite://otm.sqlite3", dir.path(), &args).await;
    let deploy_client = with_token(&server.base, &deploy);
    let sent = deploy_client
        .send("made by deploy", &SendOptions::new())
        .await
        .unwrap();
    let id = sent.link.id;
    assert!(deploy_client.status_by_id(&id).await.is_ok());
    // What the holder computes from the token alone is no management
    // token of the message, even before revocation.
    let offline = otm_core::ManageSecret::new(deploy.as_bytes())
        .unwrap()
        .token_for(&id);
    let forged = otm_core::ManageLink::new(&server.base, id, offline).unwrap();
    let err = client(&server.base).status(&forged).await.unwrap_err();
    assert!(matches!(err, Error::Gone), "{err}");

    // Revoked: the entry is gone (another token stays configured).
    server.process.terminate(std::time::Duration::from_secs(10));
    std::fs::write(dir.path().join("tokens"), format!("{ci_entry}\n")).unwrap();
    let server = Server::start(BIN, "sqlite://otm.sqlite3", dir.path(), &args).await;
    let deploy_client = with_token(&server.base, &deploy);
    assert!(deploy_client.status_by_id(&id).await.is_err());
    assert!(deploy_client.burn_by_id(&id).await.is_err());
    let forged = otm_core::ManageLink::new(&server.base, id, forged.token).unwrap();
    let err = client(&server.base).burn(&forged).await.unwrap_err();
    assert!(matches!(err, Error::Gone), "{err}");
    // The management link handed out at create still works, and the
    // message was never burned.
    let link = otm_core::ManageLink::new(&server.base, id, sent.manage_link.token).unwrap();
    let receipt = client(&server.base).status(&link).await.unwrap();
    assert_eq!(receipt.state, otm_core::api::MessageState::Waiting);
}

/// otm-server on the memory store with `--api-tokens-file tokens` in `dir`
/// and the environment `env`, expected to refuse to start: its output.
fn refused_start(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0", "--store", "memory:"])
        .args(["--api-tokens-file", "tokens"])
        .env_remove("OTM_MANAGE_KEY")
        .current_dir(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[tokio::test]
async fn a_manage_token_without_a_manage_key_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_, entry) = new_token_with("deploy", "create,manage");
    std::fs::write(dir.path().join("tokens"), format!("{entry}\n")).unwrap();
    let log = refused_start(dir.path(), &[]);
    assert!(
        log.contains("manage scope") && log.contains("otm-server manage-key"),
        "{log}"
    );
    // A malformed key is refused without being quoted.
    let log = refused_start(
        dir.path(),
        &[("OTM_MANAGE_KEY", "otmk_s3cr3t-but-too-short")],
    );
    assert!(log.contains("OTM_MANAGE_KEY: a manage key is"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
}

#[tokio::test]
async fn a_bad_token_configuration_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "ci create not-a-digest\n").unwrap();
    let log = refused_start(dir.path(), &[]);
    assert!(log.contains("tokens, entry 1"), "{log}");
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--create-requires-token",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `--requests token-holders`: anyone may still send messages, but only an
/// API token holder may ask for a secret; the responder needs no token.
/// `--requests off`: nobody may ask.
#[tokio::test]
async fn operators_decide_who_may_ask_for_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (token, entry) = new_token("helpdesk");
    std::fs::write(dir.path().join("tokens"), format!("{entry}\n")).unwrap();
    let server = Server::start(
        BIN,
        "sqlite://otm.sqlite3",
        dir.path(),
        &["--api-tokens-file", "tokens", "--requests", "token-holders"],
    )
    .await;
    let anonymous = client(&server.base);
    let err = anonymous.ask(&AskOptions::new()).await.unwrap_err();
    assert!(denied(&err), "{err}");
    assert!(err.to_string().contains("only API token holders"), "{err}");
    // Messages are not affected.
    anonymous
        .send("still fine", &SendOptions::new())
        .await
        .unwrap();
    let asked = with_token(&server.base, &token)
        .ask(&AskOptions::new().note("for the helpdesk"))
        .await
        .unwrap();
    let request = anonymous.read_request(&asked.request_link).await.unwrap();
    assert_eq!(
        request.creator.as_ref().and_then(|c| c.name()),
        Some("helpdesk"),
        "the responder is told who asked"
    );
    anonymous.reply(&asked.request_link, "42").await.unwrap();
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        BIN,
        "sqlite://otm.sqlite3",
        dir.path(),
        &["--requests", "off"],
    )
    .await;
    let err = client(&server.base)
        .ask(&AskOptions::new())
        .await
        .unwrap_err();
    assert!(denied(&err), "{err}");
    client(&server.base)
        .send("messages still work", &SendOptions::new())
        .await
        .unwrap();
}
