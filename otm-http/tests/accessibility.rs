//! Accessibility in real headless Chromium:
//! - axe-core (WCAG 2.0, 2.1 and 2.2, levels A and AA) on every page and
//!   state (compose, its error, near the limit (whose count a screen reader
//!   hears), the link with its QR code, about, reveal
//!   before and after, the reload after a reveal, gone, a wrong passphrase,
//!   a link without its key, the status page waiting, asking to burn and
//!   burned), each in the light and the dark colour scheme, with no
//!   violation of impact "serious" or "critical";
//! - the whole flow with the keyboard alone: compose, create, copy, the QR
//!   code, another message, reveal, copy the text, and burn from the status
//!   page, each control reached with Tab and pressed with Enter or Space,
//!   the focus moving to what each step shows.
//!
//! Needs Chromium and chromedriver, and axe-core's `axe.min.js`, which
//! `scripts/services` downloads into `.otm-run/` (`OTM_AXE_JS` names
//! another file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use otm_store::MemoryStore;
use otm_testkit::browser::fantoccini::Client;
use otm_testkit::browser::{
    axe_source, axe_violations, focused_id, press, readme_screenshot, reveal, tab_to, type_text,
    value, visible, wait_until,
};
use otm_testkit::{unique_suffix, Driver, TestServer};

const ENTER: char = '\u{e007}';
const SPACE: char = '\u{e00d}';

/// Runs axe-core on the page as it is, in both colour schemes.
async fn audit(c: &Client, axe: &str, state: &str, found: &mut Vec<String>) {
    otm_testkit::browser::axe_audit(c, axe, state, found).await;
}

/// Waits until the status page's `data-state` is `want`.
async fn wait_state(c: &Client, want: &str) {
    wait_until(|| async {
        let state = visible(c, "#state").await.attr("data-state").await.unwrap();
        match state.as_deref() == Some(want) {
            true => Ok(()),
            false => Err(format!("state is {state:?}, want {want}")),
        }
    })
    .await;
}

/// Waits until the element `id` has the focus.
async fn wait_focus(c: &Client, id: &str) {
    wait_until(|| async {
        let now = focused_id(c).await;
        match now == id {
            true => Ok(()),
            false => Err(format!("the focus is on {now:?}, want #{id}")),
        }
    })
    .await;
}

/// The compose page once its configuration has loaded.
async fn open_compose(c: &Client, base: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    visible(c, "#message").await;
    let start = Instant::now();
    while value(c, "#ttl").await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no expiry choices"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chromium, axe-core and a server on the memory store; `None` (after
/// [`otm_testkit::skip`]) when Chromium or axe-core is missing.
async fn set_up() -> Option<(Driver, String, TestServer)> {
    let driver = Driver::start().await?;
    let axe = axe_source()?;
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    Some((driver, axe, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_state_passes_axe_in_both_colour_schemes() {
    let Some((driver, axe, server)) = set_up().await else {
        return;
    };
    let base = &server.base;
    let mut found = Vec::new();
    let (sender, _p1) = driver.browser().await;

    open_compose(&sender, base).await;
    audit(&sender, &axe, "compose", &mut found).await;
    // The check can fail: a field without its label, and grey on white, are
    // found (then the page is loaded again).
    sender
        .execute(
            "document.querySelector('label[for=message]').remove(); \
             document.querySelector('.lead').style.color = '#bbbbbb';",
            vec![],
        )
        .await
        .unwrap();
    let planted = axe_violations(&sender, &axe).await.join("\n");
    assert!(
        planted.contains("label (critical)") && planted.contains("color-contrast (serious)"),
        "axe-core missed planted violations: {planted}"
    );
    open_compose(&sender, base).await;
    visible(&sender, "#create").await.click().await.unwrap();
    visible(&sender, "#error").await;
    audit(&sender, &axe, "compose, an error", &mut found).await;
    // Near the limit a screen reader hears what is left, once typing pauses.
    sender
        .execute(
            "const m = document.getElementById('message'); \
             m.value = 'x'.repeat(7500); m.dispatchEvent(new Event('input'));",
            vec![],
        )
        .await
        .unwrap();
    let live = sender
        .find(otm_testkit::browser::fantoccini::Locator::Css(
            "#counter-live",
        ))
        .await
        .unwrap();
    assert_eq!(
        live.attr("aria-live").await.unwrap().as_deref(),
        Some("polite")
    );
    wait_until(|| async {
        let said = live.text().await.unwrap();
        match said == "500 characters left." {
            true => Ok(()),
            false => Err(format!("announced {said:?}")),
        }
    })
    .await;
    audit(&sender, &axe, "compose, near the limit", &mut found).await;
    open_compose(&sender, base).await;

    let text = format!("checked by axe {}", unique_suffix());
    let (link, status) =
        otm_testkit::browser::compose(&sender, base, &text, Some("a passphrase")).await;
    visible(&sender, "#show-qr").await.click().await.unwrap();
    visible(&sender, "#qr-code svg").await;
    audit(&sender, &axe, "link, QR code shown", &mut found).await;

    sender.goto(&format!("{base}/about")).await.unwrap();
    visible(&sender, "main h1").await;
    audit(&sender, &axe, "about", &mut found).await;

    sender.goto(&status).await.unwrap();
    wait_state(&sender, "waiting").await;
    audit(&sender, &axe, "status, waiting", &mut found).await;

    // The reader: before, a wrong passphrase, revealed, reloaded.
    let (reader, _p2) = driver.browser().await;
    reader.goto(&link).await.unwrap();
    visible(&reader, "#passphrase-field").await;
    audit(
        &reader,
        &axe,
        "reveal, before (passphrase asked)",
        &mut found,
    )
    .await;
    visible(&reader, "#passphrase-field")
        .await
        .send_keys("not it")
        .await
        .unwrap();
    visible(&reader, "#reveal").await.click().await.unwrap();
    visible(&reader, "#error").await;
    audit(&reader, &axe, "reveal, wrong passphrase", &mut found).await;
    let field = visible(&reader, "#passphrase-field").await;
    field.clear().await.unwrap();
    field.send_keys("a passphrase").await.unwrap();
    visible(&reader, "#reveal").await.click().await.unwrap();
    assert_eq!(value(&reader, "#plaintext").await, text);
    audit(&reader, &axe, "revealed", &mut found).await;
    reader.refresh().await.unwrap();
    visible(&reader, "#opened-here").await;
    audit(&reader, &axe, "reload after the reveal", &mut found).await;
    reader.close().await.unwrap();

    // Another reader: gone. A link without its key.
    let (late, _p3) = reveal(&driver, &link, Some("a passphrase")).await;
    visible(&late, "#gone").await;
    audit(&late, &axe, "gone", &mut found).await;
    late.goto(link.split('#').next().unwrap()).await.unwrap();
    visible(&late, "#manual-key").await;
    audit(&late, &axe, "reveal, no key in the link", &mut found).await;
    late.close().await.unwrap();

    // The sender burns another message from its status page.
    let (_, status) = otm_testkit::browser::compose(&sender, base, "to burn", None).await;
    sender.goto(&status).await.unwrap();
    wait_state(&sender, "waiting").await;
    visible(&sender, "#burn").await.click().await.unwrap();
    visible(&sender, "#burn-confirm").await;
    audit(&sender, &axe, "status, asking to burn", &mut found).await;
    visible(&sender, "#burn-confirm")
        .await
        .click()
        .await
        .unwrap();
    wait_state(&sender, "burned").await;
    audit(&sender, &axe, "status, burned", &mut found).await;
    sender.close().await.unwrap();

    assert!(
        found.is_empty(),
        "axe-core found {} serious or critical violations:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_works_with_the_keyboard_alone() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(Arc::new(MemoryStore::new(Default::default()))).await;
    let base = &server.base;
    let text = format!("typed without a mouse {}", unique_suffix());

    // Compose and create: Tab to the field, type, Tab to the button, Enter.
    let (sender, _p1) = driver.browser().await;
    open_compose(&sender, base).await;
    tab_to(&sender, "message").await;
    type_text(&sender, &text).await;
    tab_to(&sender, "create").await;
    press(&sender, ENTER).await;
    // The focus moves to the result, which names what happened.
    wait_focus(&sender, "result-title").await;
    let link = value(&sender, "#link").await;
    tab_to(&sender, "copy-link").await;
    press(&sender, ENTER).await;
    wait_until(|| async {
        let said = visible(&sender, "#copy-status").await.text().await.unwrap();
        match said.is_empty() {
            false => Ok(()),
            true => Err("copying said nothing".to_owned()),
        }
    })
    .await;
    tab_to(&sender, "show-qr").await;
    press(&sender, SPACE).await;
    visible(&sender, "#qr-code svg").await;
    press(&sender, SPACE).await;
    wait_until(|| async {
        let toggle = visible(&sender, "#show-qr").await;
        match toggle.attr("aria-expanded").await.unwrap().as_deref() {
            Some("false") => Ok(()),
            other => Err(format!("the QR code stays (aria-expanded {other:?})")),
        }
    })
    .await;

    // Another message, to burn later: "Create another" puts the focus back
    // in the message field.
    tab_to(&sender, "new-message").await;
    press(&sender, ENTER).await;
    wait_focus(&sender, "message").await;
    type_text(&sender, "burn me").await;
    tab_to(&sender, "create").await;
    press(&sender, ENTER).await;
    wait_focus(&sender, "result-title").await;
    let status = value(&sender, "#status-link").await;

    // Reveal with the keyboard: the focus moves to the revealed message.
    let (reader, _p2) = driver.browser().await;
    reader.goto(&link).await.unwrap();
    visible(&reader, "#reveal-intro").await;
    tab_to(&reader, "reveal").await;
    press(&reader, ENTER).await;
    wait_focus(&reader, "revealed-title").await;
    assert_eq!(value(&reader, "#plaintext").await, text);
    tab_to(&reader, "copy-text").await;
    press(&reader, ENTER).await;
    reader.close().await.unwrap();

    // Burn from the status page: Enter on Burn moves the focus to the
    // confirmation, Enter again destroys the message.
    sender.goto(&status).await.unwrap();
    wait_state(&sender, "waiting").await;
    tab_to(&sender, "burn").await;
    press(&sender, ENTER).await;
    wait_focus(&sender, "burn-confirm").await;
    press(&sender, ENTER).await;
    wait_state(&sender, "burned").await;

    // An error takes the focus, so it is read out and the next Tab starts
    // there: a status link whose token was cut off.
    let cut = status.split("#token=").next().unwrap().to_owned() + "#token=abc";
    sender.goto(&cut).await.unwrap();
    wait_focus(&sender, "error").await;
    sender.close().await.unwrap();
}

/// Picks `tag` in the page's language menu and waits for the page to come
/// back in that language.
async fn choose_language(c: &Client, tag: &str) {
    visible(c, "#language")
        .await
        .select_by_value(tag)
        .await
        .unwrap();
    // Choosing alone changes nothing (arrow keys move through the menu).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = c
        .execute("return document.documentElement.lang;", vec![])
        .await
        .unwrap();
    assert_eq!(still.as_str(), Some("en"), "the menu reloaded on its own");
    visible(c, "#language-apply").await.click().await.unwrap();
    wait_until(|| async {
        let now = c
            .execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap();
        match now.as_str() == Some(tag) {
            true => Ok(()),
            false => Err(format!("the page is in {now}, want {tag}")),
        }
    })
    .await;
}

/// Each shipped language, picked with the page's menu: the pages (compose,
/// link, status, about, reveal before and after, gone, the reload after a
/// reveal) come in it (no English text left), right to left for Arabic, and
/// pass axe-core in both colour schemes; and a revealed message that holds bidirectional controls
/// shows them as visible markers, with a notice, in a field of its own
/// direction, while links stay left to right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_reads_right_and_passes_axe() {
    let Some((driver, axe, server)) = set_up().await else {
        return;
    };
    let base = &server.base;
    let api = otm_client::Client::new(base).unwrap();
    let mut found = Vec::new();
    for (tag, dir) in [("de", "ltr"), ("fr", "ltr"), ("ar", "rtl")] {
        let (c, _profile) = driver.browser().await;
        open_compose(&c, base).await;
        choose_language(&c, tag).await;
        open_compose(&c, base).await;
        let page_dir = c
            .execute("return document.documentElement.dir;", vec![])
            .await
            .unwrap();
        assert_eq!(page_dir.as_str(), Some(dir), "{tag}");
        let text = c
            .execute("return document.body.innerText;", vec![])
            .await
            .unwrap();
        let text = text.as_str().unwrap();
        for english in [
            "Create link",
            "Secret message",
            "Delete unread after",
            "New message",
        ] {
            assert!(!text.contains(english), "{tag}: {english:?} on the page");
        }
        audit(&c, &axe, &format!("{tag}: compose"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "compose-ar").await;
        }

        let (link, status) = otm_testkit::browser::compose(&c, base, "ein Test", None).await;
        // Links read left to right whatever the page's direction.
        for field in ["#link", "#status-link"] {
            let direction = c
                .execute(
                    &format!(
                        "return getComputedStyle(document.querySelector('{field}')).direction;"
                    ),
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(direction.as_str(), Some("ltr"), "{tag} {field}");
        }
        audit(&c, &axe, &format!("{tag}: link"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "link-ar").await;
        }
        c.goto(&status).await.unwrap();
        wait_state(&c, "waiting").await;
        audit(&c, &axe, &format!("{tag}: status"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "status-ar").await;
        }
        c.goto(&format!("{base}/about")).await.unwrap();
        visible(&c, "main h1").await;
        audit(&c, &axe, &format!("{tag}: about"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "about-ar").await;
        }
        // A link to a message that is not there (opened, expired or never
        // made: one answer for all).
        let nowhere = otm_core::Link::new(
            base,
            otm_core::MessageId::generate().unwrap(),
            otm_core::Key::generate().unwrap(),
            false,
        )
        .unwrap()
        .to_url();
        c.goto(&nowhere).await.unwrap();
        visible(&c, "#reveal").await.click().await.unwrap();
        visible(&c, "#gone").await;
        audit(&c, &axe, &format!("{tag}: gone"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "gone-ar").await;
        }

        // A message whose bidirectional controls would reorder what is shown.
        let trojan = "user\u{202E} \u{2066}// admin\u{2069} \u{2066}";
        let key = otm_core::Key::generate().unwrap();
        let secrets = otm_core::Secrets::derive(&key, None);
        let envelope = otm_core::seal(&secrets, trojan).unwrap();
        let stored = api.create(&envelope, &secrets, None, None).await.unwrap();
        let tricky = otm_core::Link::new(base, stored.id, key, false)
            .unwrap()
            .to_url();
        c.goto(&tricky).await.unwrap();
        visible(&c, "#reveal-intro").await;
        audit(&c, &axe, &format!("{tag}: reveal, before"), &mut found).await;
        visible(&c, "#reveal").await.click().await.unwrap();
        let shown = value(&c, "#plaintext").await;
        assert_eq!(
            shown, "user⟦U+202E⟧ ⟦U+2066⟧// admin⟦U+2069⟧ ⟦U+2066⟧",
            "{tag}"
        );
        let notice = visible(&c, "#controls-box").await.text().await.unwrap();
        assert!(notice.contains("⟦U+…⟧"), "{tag}: {notice}");
        // The original, controls and all, can still be copied on purpose.
        visible(&c, "#copy-original").await.click().await.unwrap();
        wait_until(|| async {
            let said = visible(&c, "#copy-status").await.text().await.unwrap();
            match said.is_empty() {
                false => Ok(()),
                true => Err("copying the original said nothing".to_owned()),
            }
        })
        .await;
        let field = c.find(otm_testkit::browser::fantoccini::Locator::Css("#plaintext"));
        assert_eq!(
            field.await.unwrap().attr("dir").await.unwrap().as_deref(),
            Some("auto")
        );
        audit(&c, &axe, &format!("{tag}: revealed"), &mut found).await;
        if tag == "ar" {
            readme_screenshot(&c, "reveal-ar").await;
        }
        c.refresh().await.unwrap();
        visible(&c, "#opened-here").await;
        audit(
            &c,
            &axe,
            &format!("{tag}: reload after the reveal"),
            &mut found,
        )
        .await;
        // The first link, spent by nobody yet, is left to expire; the
        // memory store goes with the server.
        let _ = link;
        c.close().await.unwrap();
    }
    assert!(
        found.is_empty(),
        "axe-core found {} serious or critical violations:\n{}",
        found.len(),
        found.join("\n")
    );
}
