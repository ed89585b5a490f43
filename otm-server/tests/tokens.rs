//! API tokens on the reference server: `otm-server token NAME` makes one;
//! with `--api-tokens-file` and `--create-requires-token`, only a client
//! sending it (`Authorization: Bearer`) may create, a wrong one is refused,
//! and readers need none.

mod common;

use std::process::Command;

use common::{client, Server};
use otm_client::{Client, Error};
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
    let wrong = Client::builder(&server.base)
        .api_token(&other)
        .build()
        .unwrap();
    let err = wrong
        .send("wrong token", &SendOptions::new())
        .await
        .unwrap_err();
    assert!(denied(&err), "{err}");

    let holder = Client::builder(&server.base)
        .api_token(&token)
        .build()
        .unwrap();
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
    let server = Server::start(
        BIN,
        "sqlite://otm.sqlite3",
        dir.path(),
        &["--api-tokens-file", "tokens"],
    )
    .await;
    let with = |token: &str| {
        Client::builder(&server.base)
            .api_token(token)
            .build()
            .unwrap()
    };
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

#[tokio::test]
async fn a_bad_token_configuration_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "ci create not-a-digest\n").unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--store", "memory:"])
        .args(["--api-tokens-file", "tokens"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
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
