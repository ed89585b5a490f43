//! Requests for a secret through otm-client against the real router on a
//! loopback socket: ask, read, reply once, receive once (with and without
//! a passphrase), status and withdraw, each link doing only what it may.
#![cfg(feature = "request")]

use std::sync::Arc;
use std::time::Duration;

use otm_client::{AskOptions, Client, Error};
use otm_core::api::RequestState;
use otm_core::{Passphrase, ReceiveLink, RequestLink};
use otm_http::Config;
use otm_store::{MemoryStore, StoreOptions};
use otm_testkit::TestServer;

async fn server() -> TestServer {
    let store = Arc::new(MemoryStore::new(StoreOptions::default()));
    TestServer::start_with(store, Config::default()).await
}

#[tokio::test]
async fn ask_reply_once_and_receive_once() {
    let server = server().await;
    let asker = Client::new(&server.base).unwrap();
    let asked = asker
        .ask(
            &AskOptions::new()
                .note("the VPN password for the Berlin office")
                .ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let request_url = asked.request_link.to_url();
    let receive_url = asked.receive_link.to_url();
    assert!(request_url.starts_with(&format!("{}/request/", server.base)));
    assert!(receive_url.starts_with(&format!("{}/receive/", server.base)));
    let receive = ReceiveLink::parse(&receive_url).unwrap();
    let status = asker.request_status(&receive).await.unwrap();
    assert_eq!(status.state, RequestState::Waiting);
    // Nothing to receive yet.
    assert!(matches!(
        asker.receive(&receive, None).await,
        Err(Error::Gone)
    ));

    // The responder has only the request link.
    let link = RequestLink::parse(&request_url).unwrap();
    let responder = Client::new(&link.base).unwrap();
    let request = responder.read_request(&link).await.unwrap();
    assert_eq!(
        request.note.as_str(),
        "the VPN password for the Berlin office"
    );
    assert_eq!(request.creator, None, "anonymous: anyone could have asked");
    assert_eq!(
        request.fingerprint,
        asked.receive_link.secret.public_key().fingerprint()
    );
    assert!(!request.answered);
    responder
        .reply(&link, "correct horse battery staple")
        .await
        .unwrap();
    assert!(matches!(
        responder.reply(&link, "again").await,
        Err(Error::AlreadyAnswered)
    ));
    let status = asker.request_status(&receive).await.unwrap();
    assert_eq!(status.state, RequestState::Answered);
    assert!(status.answered_at.is_some());

    assert_eq!(
        asker.receive(&receive, None).await.unwrap().as_str(),
        "correct horse battery staple"
    );
    assert!(matches!(
        asker.receive(&receive, None).await,
        Err(Error::Gone)
    ));
    let status = asker.request_status(&receive).await.unwrap();
    assert_eq!(status.state, RequestState::Opened);
    assert!(status.changed_at.is_some());

    asker.withdraw(&receive).await.unwrap();
    assert!(matches!(
        asker.request_status(&receive).await,
        Err(Error::Gone)
    ));
    assert!(matches!(
        responder.read_request(&link).await,
        Err(Error::Gone)
    ));
    assert!(matches!(asker.withdraw(&receive).await, Err(Error::Gone)));
}

#[tokio::test]
async fn a_passphrase_guards_the_answer_and_a_withdrawal_destroys_it() {
    let server = server().await;
    let client = Client::new(&server.base).unwrap();
    let phrase = Passphrase::new("tulip lantern").unwrap();
    let asked = client
        .ask(&AskOptions::new().passphrase(&phrase))
        .await
        .unwrap();
    assert!(asked.receive_link.to_url().ends_with("&p=1"));
    let link = asked.request_link;
    assert_eq!(client.read_request(&link).await.unwrap().note.as_str(), "");
    client.reply(&link, "42").await.unwrap();
    let receive = asked.receive_link;
    assert!(matches!(
        client.receive(&receive, None).await,
        Err(Error::Format(otm_core::Error::PassphraseRequired))
    ));
    let wrong = Passphrase::new("wrong").unwrap();
    assert!(matches!(
        client.receive(&receive, Some(&wrong)).await,
        Err(Error::WrongProof { attempts_left: 4 })
    ));
    assert_eq!(
        client
            .receive(&receive, Some(&phrase))
            .await
            .unwrap()
            .as_str(),
        "42"
    );

    // Withdrawn after an answer: the answer is gone with the request.
    let asked = client.ask(&AskOptions::new()).await.unwrap();
    client
        .reply(&asked.request_link, "never read")
        .await
        .unwrap();
    client.withdraw(&asked.receive_link).await.unwrap();
    assert!(matches!(
        client.receive(&asked.receive_link, None).await,
        Err(Error::Gone)
    ));
}
