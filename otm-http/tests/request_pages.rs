//! Requests for a secret end to end in real headless Chromium: the asker's
//! "Request a secret" page → the responder in a fresh browser profile (sees
//! the fingerprint and the "anyone could have made this request" notice,
//! answers once) → the asker's receive page reveals the answer once, with a
//! passphrase. No request either browser sends carries the receive secret,
//! the answer token, the public key, the note or the plaintext, and the
//! server's log holds none of them.
//!
//! Needs `chromium` and `chromedriver` (`scripts/services` installs them).
//! Set `OTM_UPDATE_SCREENSHOTS=1` to rewrite `docs/screenshots/`.

use std::sync::Arc;

use otm_core::{ReceiveLink, RequestLink};
use otm_store::{SqliteConfig, SqliteStore};
use otm_testkit::browser::fantoccini::Client;
use otm_testkit::browser::{axe_audit, axe_source, readme_screenshot, value, visible, wait_until};
use otm_testkit::{unique_suffix, Driver, TestServer};

async fn text_of(c: &Client, css: &str) -> String {
    visible(c, css).await.text().await.unwrap()
}

async fn wait_text(c: &Client, css: &str, want: &str) {
    wait_until(|| async {
        let got = visible(c, css).await.text().await.unwrap_or_default();
        match got.contains(want) {
            true => Ok(()),
            false => Err(format!("{css} says {got:?}, want {want:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_asks_answers_once_and_receives_once() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let Some(axe) = axe_source() else {
        return;
    };
    let mut found = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("requests.sqlite3")))
        .await
        .unwrap();
    let server = TestServer::start(Arc::new(store)).await;
    let base = &server.base;
    let note = format!(
        "The VPN password for the Berlin office, please ({})",
        unique_suffix()
    );
    let secret = format!("tulip-lantern-{}\nsecond line", unique_suffix());
    let passphrase = "only mine 42";

    // 1. The asker makes the request.
    let (asker, _p1) = driver.browser().await;
    asker.goto(&format!("{base}/request")).await.unwrap();
    visible(&asker, "#note")
        .await
        .send_keys(&note)
        .await
        .unwrap();
    visible(&asker, "#passphrase")
        .await
        .send_keys(passphrase)
        .await
        .unwrap();
    readme_screenshot(&asker, "request").await;
    axe_audit(&asker, &axe, "request a secret", &mut found).await;
    visible(&asker, "#ask-button").await.click().await.unwrap();
    visible(&asker, "#asked").await;
    let request_link = value(&asker, "#request-link").await;
    let receive_link = value(&asker, "#receive-link").await;
    let fingerprint = text_of(&asker, "#fingerprint").await;
    assert!(
        request_link.starts_with(&format!("{base}/request/")),
        "{request_link}"
    );
    assert!(
        receive_link.starts_with(&format!("{base}/receive/")),
        "{receive_link}"
    );
    assert!(receive_link.ends_with("&p=1"), "{receive_link}");
    let parsed_request = RequestLink::parse(&request_link).unwrap();
    let parsed_receive = ReceiveLink::parse(&receive_link).unwrap();
    assert_eq!(parsed_request.id, parsed_receive.id);
    assert_eq!(
        parsed_request.public_key,
        parsed_receive.secret.public_key(),
        "the request link carries the receive secret's key"
    );
    assert_eq!(fingerprint, parsed_request.public_key.fingerprint());
    readme_screenshot(&asker, "request-links").await;
    axe_audit(&asker, &axe, "request made", &mut found).await;

    // 2. The responder, in a fresh profile, sees who asked (anyone), the
    // note as text, the same fingerprint, and answers once.
    let (responder, _p2) = driver.browser().await;
    responder.goto(&request_link).await.unwrap();
    visible(&responder, "#respond").await;
    let notice = text_of(&responder, "#anonymous").await;
    assert!(
        notice.contains("Anyone could have made this request."),
        "{notice}"
    );
    assert_eq!(text_of(&responder, "#note").await, note);
    assert_eq!(text_of(&responder, "#fingerprint").await, fingerprint);
    visible(&responder, "#secret")
        .await
        .send_keys(&secret)
        .await
        .unwrap();
    readme_screenshot(&responder, "answer").await;
    axe_audit(&responder, &axe, "answer", &mut found).await;
    visible(&responder, "#send-answer")
        .await
        .click()
        .await
        .unwrap();
    visible(&responder, "#sent").await;
    axe_audit(&responder, &axe, "answer sent", &mut found).await;
    // Opened again, the link answers no more.
    responder.refresh().await.unwrap();
    wait_text(&responder, "#answered", "already answered").await;
    axe_audit(&responder, &axe, "request already answered", &mut found).await;
    responder.close().await.unwrap();

    // 3. The asker sees it answered and reveals it once, with the passphrase.
    asker.goto(&receive_link).await.unwrap();
    wait_text(&asker, "#state", "Answered").await;
    assert_eq!(text_of(&asker, "#fingerprint").await, fingerprint);
    axe_audit(&asker, &axe, "receive, answered", &mut found).await;
    let field = visible(&asker, "#passphrase-field").await;
    field.send_keys("not mine").await.unwrap();
    visible(&asker, "#reveal").await.click().await.unwrap();
    wait_text(&asker, "#error", "Wrong passphrase").await;
    field.clear().await.unwrap();
    field.send_keys(passphrase).await.unwrap();
    visible(&asker, "#reveal").await.click().await.unwrap();
    visible(&asker, "#revealed").await;
    assert_eq!(value(&asker, "#plaintext").await, secret);
    readme_screenshot(&asker, "receive").await;
    axe_audit(&asker, &axe, "receive, revealed", &mut found).await;
    asker.refresh().await.unwrap();
    wait_text(&asker, "#state", "Answer opened").await;

    // 4. Withdrawn: the responder's link is dead too.
    visible(&asker, "#withdraw").await.click().await.unwrap();
    visible(&asker, "#withdraw-confirm")
        .await
        .click()
        .await
        .unwrap();
    visible(&asker, "#gone").await;
    asker.close().await.unwrap();
    let (late, _p3) = driver.browser().await;
    late.goto(&request_link).await.unwrap();
    visible(&late, "#gone").await;
    axe_audit(&late, &axe, "request withdrawn", &mut found).await;
    late.close().await.unwrap();
    assert!(
        found.is_empty(),
        "axe-core found {} serious or critical violations:\n{}",
        found.len(),
        found.join("\n")
    );

    // 5. Nothing the server received carries a secret of either link, the
    // note or the answer.
    let log = server.log_text();
    assert!(
        log.contains("/api/v1/requests"),
        "the log recorded the API calls"
    );
    let secrets = [
        parsed_receive.secret.to_base64url().to_string(),
        parsed_request.token.to_base64url().to_string(),
        parsed_request.public_key.to_base64url(),
        note.clone(),
        secret.clone(),
        secret.lines().next().unwrap().to_owned(),
        passphrase.to_owned(),
    ];
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "the server saw {s:?}");
    }
}
