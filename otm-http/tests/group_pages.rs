//! One message for several recipients end to end in real headless
//! Chromium: the sender composes once for three people (two named) → one
//! recipient reveals their own link in a fresh profile → the sender's group
//! status page shows who opened theirs, by name, destroys one link and then
//! every unopened one → a destroyed link reveals nothing. The names, the
//! keys, the group secret and the message never reach the server.
//!
//! Needs `chromium` and `chromedriver` (`scripts/services` installs them).
//! Set `OTM_UPDATE_SCREENSHOTS=1` to rewrite `docs/screenshots/`.

use std::sync::Arc;

use otm_core::{GroupLink, Link};
use otm_store::{SqliteConfig, SqliteStore};
use otm_testkit::browser::fantoccini::{Client, Locator};
use otm_testkit::browser::{
    axe_audit, axe_source, readme_screenshot, reveal, value, visible, wait_until,
};
use otm_testkit::{unique_suffix, Driver, TestServer};

/// The text of each row of the group status table: name, then state.
async fn rows(c: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in c
        .find_all(Locator::Css("#members tr"))
        .await
        .unwrap_or_default()
    {
        let name = match row.find(Locator::Css("th")).await {
            Ok(th) => th.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        let state = match row.find(Locator::Css(".state")).await {
            Ok(s) => s.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push((name, state));
    }
    out
}

async fn wait_rows(c: &Client, want: &[(&str, &str)]) {
    wait_until(|| async {
        let got = rows(c).await;
        let fits = got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((name, state), (n, s))| name == n && state.starts_with(s));
        match fits {
            true => Ok(()),
            false => Err(format!("rows {got:?}, want {want:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sends_one_message_to_three_people_and_follows_each() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let Some(axe) = axe_source() else {
        return;
    };
    let mut found = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("groups.sqlite3")))
        .await
        .unwrap();
    let server = TestServer::start(Arc::new(store)).await;
    let base = &server.base;
    let suffix = unique_suffix();
    // Names with a space never occur by chance in IDs, keys or tokens, so
    // the log check below cannot miss them or find them by accident.
    let (ana, ben) = ("Ana Lima".to_owned(), "Ben Okafor".to_owned());
    let secret = format!("wifi otm-guest / marble-{suffix}");

    // 1. Compose once for three people, two of them named.
    let (sender, _p1) = driver.browser().await;
    sender.goto(&format!("{base}/")).await.unwrap();
    visible(&sender, "#message")
        .await
        .send_keys(&secret)
        .await
        .unwrap();
    visible(&sender, "#several").await.click().await.unwrap();
    visible(&sender, "#recipient-1")
        .await
        .send_keys(&ana)
        .await
        .unwrap();
    visible(&sender, "#recipient-2")
        .await
        .send_keys(&ben)
        .await
        .unwrap();
    visible(&sender, "#add-recipient")
        .await
        .click()
        .await
        .unwrap();
    visible(&sender, "#recipient-3").await;
    // The third person gets a passphrase of their own.
    visible(&sender, "#recipient-passphrase-3")
        .await
        .send_keys("only for three")
        .await
        .unwrap();
    readme_screenshot(&sender, "group-compose").await;
    axe_audit(&sender, &axe, "compose for several people", &mut found).await;
    visible(&sender, "#create").await.click().await.unwrap();
    visible(&sender, "#group-result").await;
    let links = [
        value(&sender, "#group-link-1").await,
        value(&sender, "#group-link-2").await,
        value(&sender, "#group-link-3").await,
    ];
    let status_link = value(&sender, "#group-status-link").await;
    readme_screenshot(&sender, "group-links").await;
    axe_audit(&sender, &axe, "links for several people", &mut found).await;

    // Three independent links, each its own key; the status link names
    // them in order, with the names only in its fragment.
    let parsed: Vec<Link> = links.iter().map(|l| Link::parse(l).unwrap()).collect();
    assert_ne!(parsed[0].key.to_base64url(), parsed[1].key.to_base64url());
    let protected: Vec<bool> = parsed.iter().map(|l| l.passphrase).collect();
    assert_eq!(
        protected,
        [false, false, true],
        "only the third needs a passphrase"
    );
    let group = GroupLink::parse(&status_link).unwrap();
    assert!(
        status_link.starts_with(&format!("{base}/group#s=")),
        "{status_link}"
    );
    let ids: Vec<_> = group.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, parsed.iter().map(|l| l.id).collect::<Vec<_>>());
    let labels: Vec<Option<&str>> = group.members.iter().map(|m| m.label.as_deref()).collect();
    assert_eq!(labels, [Some(ana.as_str()), Some(ben.as_str()), None]);

    // 2. Ben opens his own link in a fresh profile.
    let (reader, _p2) = reveal(&driver, &links[1], None).await;
    visible(&reader, "#revealed").await;
    assert_eq!(value(&reader, "#plaintext").await, secret);
    reader.close().await.unwrap();

    // 3. The sender's group status: Ben opened his, the others wait.
    sender.goto(&status_link).await.unwrap();
    wait_rows(
        &sender,
        &[
            (ana.as_str(), "Waiting"),
            (ben.as_str(), "Opened"),
            ("Link 3", "Waiting"),
        ],
    )
    .await;
    assert_eq!(
        visible(&sender, "#summary").await.text().await.unwrap(),
        "Opened: 1 of 3"
    );
    readme_screenshot(&sender, "group-status").await;
    axe_audit(&sender, &axe, "group status", &mut found).await;

    // 4. Destroy Ana's link, then every unopened one (Link 3).
    let destroy_ana = format!("button[aria-label='Destroy the link for {ana}']");
    visible(&sender, &destroy_ana).await.click().await.unwrap();
    let question = visible(&sender, "#burn-question")
        .await
        .text()
        .await
        .unwrap();
    assert!(question.contains(&ana), "{question}");
    axe_audit(
        &sender,
        &axe,
        "group status, asking to destroy one",
        &mut found,
    )
    .await;
    visible(&sender, "#burn-confirm")
        .await
        .click()
        .await
        .unwrap();
    wait_rows(
        &sender,
        &[
            (ana.as_str(), "Destroyed"),
            (ben.as_str(), "Opened"),
            ("Link 3", "Waiting"),
        ],
    )
    .await;
    visible(&sender, "#burn-all").await.click().await.unwrap();
    let question = visible(&sender, "#burn-question")
        .await
        .text()
        .await
        .unwrap();
    assert!(question.contains("1 unopened link"), "{question}");
    visible(&sender, "#burn-confirm")
        .await
        .click()
        .await
        .unwrap();
    wait_rows(
        &sender,
        &[
            (ana.as_str(), "Destroyed"),
            (ben.as_str(), "Opened"),
            ("Link 3", "Destroyed"),
        ],
    )
    .await;
    assert_eq!(
        visible(&sender, "#checked").await.text().await.unwrap(),
        "Destroyed 1 link."
    );
    let burn_all = visible(&sender, "#burn-all").await;
    assert!(
        !burn_all.is_enabled().await.unwrap(),
        "nothing is left to destroy"
    );
    axe_audit(&sender, &axe, "group status, all destroyed", &mut found).await;
    sender.close().await.unwrap();

    // 5. A destroyed link reveals nothing.
    let (late, _p3) = reveal(&driver, &links[0], None).await;
    visible(&late, "#gone").await;
    late.close().await.unwrap();
    assert!(
        found.is_empty(),
        "axe-core found {} serious or critical violations:\n{}",
        found.len(),
        found.join("\n")
    );

    // 6. The server received none of the names, keys, the group secret or
    // the message.
    let log = server.log_text();
    assert!(
        log.contains("/api/v1/groups"),
        "the log recorded the API calls"
    );
    let mut secrets = vec![
        secret.clone(),
        ana.clone(),
        ben.clone(),
        group.secret.as_ref().unwrap().to_base64url().to_string(),
    ];
    // (The management tokens are what the status page presents; the
    // server keeps only their digests. The group secret stays in the link.)
    for link in &parsed {
        secrets.push(link.key.to_base64url().to_string());
    }
    for s in &secrets {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(s.as_str())).collect();
        assert!(lines.is_empty(), "the server saw {s:?}: {lines:?}");
    }
}
