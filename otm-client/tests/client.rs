//! otm-client against the real router on a loopback socket (an in-process
//! otm-http server on the memory store), and against small hostile servers:
//! every call, every typed refusal, no redirects followed, timeouts.

use std::sync::Arc;
use std::time::Duration;

use otm_client::{Client, Error, SendOptions};
use otm_core::api::MessageState;
use otm_core::{ErrorCode, Key, Link, ManageLink, ManageToken, Passphrase};
use otm_http::Config;
use otm_store::{MemoryStore, StoreOptions};
use otm_testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn server(config: Config) -> TestServer {
    let store = Arc::new(MemoryStore::new(StoreOptions::default()));
    TestServer::start_with(store, config).await
}

#[tokio::test]
async fn send_open_status_and_a_second_open() {
    let server = server(Config::default()).await;
    let client = Client::new(&server.base).unwrap();
    let config = client.config().await.unwrap();
    assert_eq!(config.max_message_chars, 8_000);

    let sent = client
        .send(
            "the door code is 4711",
            &SendOptions::new().ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let url = sent.link.to_url();
    assert!(
        url.starts_with(&format!("{}/otm/", server.base)),
        "{}",
        url.as_str()
    );
    let waiting = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(waiting.state, MessageState::Waiting);
    assert_eq!(waiting.changed_at, None);
    assert_eq!(waiting.expires_at, sent.expires_at);

    // The reader parses the shared text, as a recipient would.
    let link = Link::parse(&url).unwrap();
    let text = Client::new(&link.base)
        .unwrap()
        .open(&link, None)
        .await
        .unwrap();
    assert_eq!(text.as_str(), "the door code is 4711");
    assert!(matches!(client.open(&link, None).await, Err(Error::Gone)));

    let opened = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(opened.state, MessageState::Opened);
    assert!(opened.changed_at.is_some());
    match client.burn(&sent.manage_link).await {
        Err(Error::NotWaiting { receipt }) => assert_eq!(receipt.state, MessageState::Opened),
        other => panic!("burn after open: {other:?}"),
    }

    // The server saw ciphertext only: no text, no key.
    let log = server.log_text();
    assert!(!log.contains("4711"));
    assert!(!log.contains(link.key.to_base64url().as_str()));
}

#[tokio::test]
async fn passphrases_wrong_proofs_and_the_attempt_limit() {
    let server = server(Config::default()).await;
    let client = Client::new(&server.base).unwrap();
    let phrase = Passphrase::new("correct horse").unwrap();
    let sent = client
        .send(
            "behind a passphrase",
            &SendOptions::new().passphrase(&phrase),
        )
        .await
        .unwrap();
    assert!(sent.link.passphrase);

    // Without the passphrase the client refuses locally: no attempt spent.
    let err = client.open(&sent.link, None).await.unwrap_err();
    assert!(
        matches!(err, Error::Format(otm_core::Error::PassphraseRequired)),
        "{err:?}"
    );
    let wrong = Passphrase::new("wrong horse").unwrap();
    for left in (1..5).rev() {
        match client.open(&sent.link, Some(&wrong)).await {
            Err(Error::WrongProof { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("wrong passphrase: {other:?}"),
        }
    }
    let text = client.open(&sent.link, Some(&phrase)).await.unwrap();
    assert_eq!(text.as_str(), "behind a passphrase");

    // Five wrong ones destroy a message; the last answer says so.
    let doomed = client
        .send("doomed", &SendOptions::new().passphrase(&phrase))
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(client.open(&doomed.link, Some(&wrong)).await.unwrap_err());
    }
    let last = last.unwrap();
    assert!(
        matches!(last, Error::WrongProof { attempts_left: 0 }),
        "{last:?}"
    );
    assert_eq!(last.code(), Some(ErrorCode::WrongProof));
    assert!(matches!(
        client.open(&doomed.link, Some(&phrase)).await,
        Err(Error::Gone)
    ));
    let receipt = client.status(&doomed.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Burned);
}

/// A link with the right ID but another key (someone who saw the URL path,
/// not the fragment): the answer of a missing message, and no attempt used.
#[tokio::test]
async fn a_wrong_key_is_gone_and_costs_nothing() {
    let plenty = otm_http::RateLimit {
        per_minute: 10_000,
        burst: 10_000,
    };
    let server = server(Config::default().with_rate_limits(plenty, plenty)).await;
    let client = Client::new(&server.base).unwrap();
    let sent = client
        .send("only for the link", &SendOptions::new())
        .await
        .unwrap();
    let guess = Link::new(&server.base, sent.link.id, Key::generate().unwrap(), false).unwrap();
    for _ in 0..20 {
        assert!(matches!(client.open(&guess, None).await, Err(Error::Gone)));
    }
    let receipt = client.status(&sent.manage_link).await.unwrap();
    assert_eq!(receipt.state, MessageState::Waiting);
    assert_eq!(
        client.open(&sent.link, None).await.unwrap().as_str(),
        "only for the link"
    );
}

#[tokio::test]
async fn burn_and_wrong_tokens() {
    let server = server(Config::default()).await;
    let client = Client::new(&server.base).unwrap();
    let sent = client.send("burn me", &SendOptions::new()).await.unwrap();

    let stranger =
        ManageLink::new(&server.base, sent.link.id, ManageToken::generate().unwrap()).unwrap();
    // A wrong token is answered like an unknown ID, and burns nothing.
    assert!(matches!(client.status(&stranger).await, Err(Error::Gone)));
    assert!(matches!(client.burn(&stranger).await, Err(Error::Gone)));

    let burned = client.burn(&sent.manage_link).await.unwrap();
    assert_eq!(burned.state, MessageState::Burned);
    assert!(matches!(
        client.open(&sent.link, None).await,
        Err(Error::Gone)
    ));
    match client.burn(&sent.manage_link).await {
        Err(Error::NotWaiting { receipt }) => assert_eq!(receipt.state, MessageState::Burned),
        other => panic!("second burn: {other:?}"),
    }
}

#[tokio::test]
async fn refusals_carry_their_code_and_links_use_the_announced_base() {
    let config = Config::default()
        .with_max_ttl(Duration::from_secs(3_600))
        .with_base_url("https://otm.example/secrets");
    let server = server(config).await;
    let client = Client::new(&server.base).unwrap();
    let err = client
        .send("x", &SendOptions::new().ttl(Duration::from_secs(7_200)))
        .await
        .unwrap_err();
    match &err {
        Error::Refused { status, code, .. } => {
            assert_eq!((*status, *code), (400, ErrorCode::TtlTooLong))
        }
        other => panic!("ttl over the maximum: {other:?}"),
    }
    assert!(!err.is_retryable());

    let sent = client.send("y", &SendOptions::new()).await.unwrap();
    assert!(sent
        .link
        .to_url()
        .starts_with("https://otm.example/secrets/otm/"));
    assert!(sent
        .manage_link
        .to_url()
        .starts_with("https://otm.example/secrets/manage/"));
    // The link names another origin; this client still talks to its own.
    assert_eq!(client.open(&sent.link, None).await.unwrap().as_str(), "y");

    let long = "x".repeat(8_001);
    assert!(matches!(
        client.send(&long, &SendOptions::new()).await,
        Err(Error::Format(otm_core::Error::MessageTooLong { .. }))
    ));
}

/// A server that answers every request with `response` (raw HTTP/1.1).
async fn answering(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let target = server(Config::default()).await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {}/api/v1/messages\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            target.base
        )
        .into_boxed_str(),
    );
    let base = answering(redirect).await;
    let client = Client::new(&base).unwrap();
    let sent = Client::new(&target.base)
        .unwrap()
        .send("not for the redirector", &SendOptions::new())
        .await
        .unwrap();
    match client.open(&sent.link, None).await {
        Err(Error::Redirected { status, location }) => {
            assert_eq!(status, 307);
            assert_eq!(
                location.unwrap(),
                format!("{}/api/v1/messages", target.base)
            );
        }
        other => panic!("a 307: {other:?}"),
    }
    // Nothing reached the redirect's target: the message is still there.
    assert!(!target.log_text().contains("/open"));
}

#[tokio::test]
async fn answers_that_are_not_otm_are_typed_errors() {
    let proxy = answering(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 5\r\nconnection: close\r\n\r\noops!",
    )
    .await;
    let err = Client::new(&proxy).unwrap().config().await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { code: None, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());

    let other = answering(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 6\r\nconnection: close\r\n\r\n<html>",
    )
    .await;
    let err = Client::new(&other).unwrap().config().await.unwrap_err();
    assert!(
        matches!(err, Error::Unexpected { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accept, never answer
        }
    });
    let client = Client::builder(&base)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client.config().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(err.is_retryable());
    hold.abort();
}

#[tokio::test]
async fn bad_bases_and_unreachable_servers() {
    for bad in [
        "ftp://otm.example",
        "https://otm.example/?q=1",
        "https://otm.example/#key=x",
        "https://user:pw@otm.example",
        "not a url",
    ] {
        assert!(
            matches!(Client::new(bad), Err(Error::InvalidBase(_))),
            "{bad} accepted"
        );
    }
    let client = Client::new("https://otm.example/sub/").unwrap();
    assert_eq!(client.base(), "https://otm.example/sub");

    // A port nobody listens on.
    let port = otm_testkit::free_port();
    let err = Client::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .config()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
}
