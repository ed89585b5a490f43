//! End to end in real headless Chromium (driven through chromedriver):
//! compose → link → reveal in a fresh browser → gone on reload; passphrase
//! (wrong, then right); a preview bot's plain GET leaves the message intact;
//! interop with otm-core both ways; the shared JSON vectors in the browser;
//! and no request the server sees carries the key, passphrase or plaintext.
//! Runs on the SQLite and the Redis store.
//!
//! Needs `chromium` and `chromedriver` (Debian packages `chromium`,
//! `chromium-driver`; `scripts/test` installs them). Set
//! `OTM_UPDATE_SCREENSHOTS=1` to rewrite `docs/screenshots/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otm_core::{Key, Link, Secrets};
use otm_store::{BlobStore, RedisConfig, RedisStore, SqliteConfig, SqliteStore};
use otm_testkit::browser::fantoccini::Client;
use otm_testkit::browser::{reveal, value, visible, wait_until};
use otm_testkit::{skip, unique_suffix, RedisPrefix};
use otm_testkit::{Driver, TestServer};
use serde_json::{json, Value};

async fn wait_attr(
    e: &otm_testkit::browser::fantoccini::elements::Element,
    name: &str,
    want: &str,
) {
    wait_until(|| async {
        let got = e.attr(name).await.unwrap_or_default();
        match got.as_deref() == Some(want) {
            true => Ok(()),
            false => Err(format!("{name} is {got:?}, want {want}")),
        }
    })
    .await;
}

async fn screenshot(c: &Client, name: &str) {
    otm_testkit::browser::readme_screenshot(c, name).await;
}

/// Composes a message in the browser and returns the share link.
async fn compose(
    c: &Client,
    base: &str,
    text: &str,
    passphrase: Option<&str>,
    shots: bool,
) -> String {
    c.goto(&format!("{base}/")).await.unwrap();
    let area = visible(c, "#message").await;
    // The expiry defaults to the server's default (7 days) once config loads.
    let start = Instant::now();
    while value(c, "#ttl").await != "604800" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ttl default is not 7 days"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    area.send_keys(text).await.unwrap();
    let counter = visible(c, "#counter").await.text().await.unwrap();
    assert!(
        counter.starts_with(&format!("{} / 8,000", text.chars().count())),
        "counter {counter:?}"
    );
    if let Some(p) = passphrase {
        visible(c, "#passphrase").await.send_keys(p).await.unwrap();
    }
    if shots {
        screenshot(c, "compose").await;
    }
    visible(c, "#create").await.click().await.unwrap();
    let link = value(c, "#link").await;
    assert!(value(c, "#status-link").await.contains("/manage/"));
    visible(c, "#copy-link").await.click().await.unwrap();
    qr_code_holds(c, &link, shots).await;
    if shots {
        screenshot(c, "link").await;
    }
    link
}

/// The link page's QR code: absent until asked for, then decoded by a real
/// decoder (zbarimg) from a screenshot back to the exact link, labelled
/// without the key, and removed from the page again when hidden.
async fn qr_code_holds(c: &Client, link: &str, shots: bool) {
    use otm_testkit::browser::fantoccini::Locator;
    let figure = c.find(Locator::Css("#qr")).await.unwrap();
    assert!(
        !figure.is_displayed().await.unwrap(),
        "the QR code shows unasked"
    );
    assert!(c.find(Locator::Css("#qr-code svg")).await.is_err());
    let toggle = visible(c, "#show-qr").await;
    toggle.click().await.unwrap();
    wait_attr(&toggle, "aria-expanded", "true").await;
    let code = visible(c, "#qr-code svg").await;
    let label = code.attr("aria-label").await.unwrap().unwrap_or_default();
    let key = link.split("#key=").nth(1).unwrap();
    assert!(
        !label.is_empty() && !label.contains(key),
        "alt text {label:?}"
    );
    let png = code.screenshot().await.unwrap();
    if let Some(texts) = otm_testkit::browser::decode_qr(&png) {
        assert_eq!(
            texts,
            vec![link.to_owned()],
            "the QR code does not read back"
        );
    }
    if shots {
        screenshot(c, "qr").await;
    }
    toggle.click().await.unwrap();
    wait_attr(&toggle, "aria-expanded", "false").await;
    assert!(c.find(Locator::Css("#qr-code svg")).await.is_err());
}

async fn full_flow(store: Arc<dyn BlobStore>, label: &str) {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(store).await;
    let base = &server.base;
    let secret_text = format!("door code 4711 {label} {}", unique_suffix());
    let passphrase = "correct horse battery staple";
    let phrased_text = format!("behind a passphrase {}", unique_suffix());
    let mut keys = Vec::new();
    // Management tokens go to the server, but only in Authorization headers.
    let mut tokens: Vec<String> = Vec::new();

    // 1. Compose, then reveal in a fresh browser, then gone on reload.
    let (sender, _p1) = driver.browser().await;
    let link = compose(&sender, base, &secret_text, None, label == "sqlite").await;
    assert!(link.starts_with(&format!("{base}/otm/")), "{link}");
    let parsed = Link::parse(&link).unwrap();
    keys.push(parsed.key.to_base64url().to_string());

    // A link-preview bot fetches the page (without the fragment): harmless.
    let bot = reqwest::get(link.split('#').next().unwrap()).await.unwrap();
    assert_eq!(bot.status(), 200);

    let (reader, _p2) = reveal(&driver, &link, None).await;
    assert_eq!(value(&reader, "#plaintext").await, secret_text);
    if label == "sqlite" {
        screenshot(&reader, "reveal").await;
    }
    let url = reader.current_url().await.unwrap();
    assert!(
        url.fragment().is_none_or(|f| !f.contains("key=")),
        "key left in the address bar: {url}"
    );
    // A reload after the reveal (the key is gone from the address bar), or
    // the link opened again in this tab, says what happened instead of
    // asking for a key; the tab kept the ID only, for its session.
    reader.refresh().await.unwrap();
    let here = visible(&reader, "#opened-here").await.text().await.unwrap();
    assert!(here.contains("You already opened this message"), "{here}");
    if label == "sqlite" {
        screenshot(&reader, "opened-here").await;
    }
    let stored = reader
        .execute(
            "return JSON.stringify(Object.entries(sessionStorage));",
            vec![],
        )
        .await
        .unwrap();
    let stored = stored.as_str().unwrap().to_owned();
    let parsed = Link::parse(&link).unwrap();
    assert!(stored.contains(&parsed.id.to_string()), "{stored}");
    assert!(
        !stored.contains(&parsed.key.to_base64url().to_string()) && !stored.contains(&secret_text),
        "the tab kept the key or the text: {stored}"
    );
    reader.goto(&link).await.unwrap();
    reader.refresh().await.unwrap();
    visible(&reader, "#opened-here").await;
    let intro = reader
        .find(otm_testkit::browser::fantoccini::Locator::Css(
            "#reveal-intro",
        ))
        .await
        .unwrap();
    assert!(!intro.is_displayed().await.unwrap(), "the intro is shown");
    reader.close().await.unwrap();
    // Another tab (a new session) that opens the spent link is told it is
    // gone, without guessing why.
    let (other, _p2b) = reveal(&driver, &link, None).await;
    let gone = visible(&other, "#gone").await.text().await.unwrap();
    assert!(
        gone.contains("This message was already opened or has expired.")
            && gone.contains("Ask the sender for a new link."),
        "{gone}"
    );
    if label == "sqlite" {
        screenshot(&other, "gone").await;
    }
    other.close().await.unwrap();

    // 2. Passphrase: wrong (does not burn), then right.
    let link = compose(&sender, base, &phrased_text, Some(passphrase), false).await;
    assert!(link.ends_with("&p=1"), "{link}");
    keys.push(Link::parse(&link).unwrap().key.to_base64url().to_string());
    let (reader, _p3) = reveal(&driver, &link, Some("wrong horse")).await;
    let hint = visible(&reader, "#passphrase-field-hint")
        .await
        .text()
        .await
        .unwrap();
    assert!(hint.contains("after 5 wrong attempts"), "{hint}");
    let err = visible(&reader, "#error").await.text().await.unwrap();
    assert!(err.contains("Wrong passphrase"), "{err}");
    let field = visible(&reader, "#passphrase-field").await;
    field.clear().await.unwrap();
    field.send_keys(passphrase).await.unwrap();
    visible(&reader, "#reveal").await.click().await.unwrap();
    assert_eq!(value(&reader, "#plaintext").await, phrased_text);
    // Leaving the page takes the message off it (pagehide).
    let left = reader
        .execute(
            "window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true})); \
             return [document.getElementById('plaintext').value, \
                     document.getElementById('revealed').hidden];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        left,
        json!(["", true]),
        "the message stays on a page left behind"
    );
    reader.close().await.unwrap();

    // 3. Browser-sealed → opened by otm-core in Rust.
    let rust_reads = format!("sealed in Chromium {}", unique_suffix());
    let link = compose(&sender, base, &rust_reads, None, false).await;
    let parsed = Link::parse(&link).unwrap();
    keys.push(parsed.key.to_base64url().to_string());
    let client = otm_client::Client::new(base).unwrap();
    let text = client.open(&parsed, None).await.unwrap();
    assert_eq!(text.as_str(), rust_reads);
    sender.close().await.unwrap();

    // 4. Rust-sealed → revealed in Chromium (with multi-byte text).
    let browser_reads = format!("sealed in Rust: Grüße 🌍 秘密 {}", unique_suffix());
    let key = Key::generate().unwrap();
    keys.push(key.to_base64url().to_string());
    let secrets = Secrets::derive(&key, None);
    let env = otm_core::seal(&secrets, &browser_reads).unwrap();
    let stored = client
        .create(&env, &secrets, Some(Duration::from_secs(600)), None)
        .await
        .unwrap();
    let link = Link::new(base, stored.id, key, false).unwrap().to_url();
    let (reader, _p4) = reveal(&driver, &link, None).await;
    assert_eq!(value(&reader, "#plaintext").await, browser_reads);
    reader.close().await.unwrap();

    // 5. The sender's status page: waiting, then destroyed with "Burn now";
    //    the reader then finds nothing. Another message reads "opened".
    let (sender, _p5) = driver.browser().await;
    let burn_text = format!("to be burned {}", unique_suffix());
    let (link, status_link) = otm_testkit::browser::compose(&sender, base, &burn_text, None).await;
    keys.push(Link::parse(&link).unwrap().key.to_base64url().to_string());
    tokens.push(status_link.split("#token=").nth(1).unwrap().to_owned());
    sender.goto(&status_link).await.unwrap();
    let state = visible(&sender, "#state").await;
    wait_attr(&state, "data-state", "waiting").await;
    if label == "sqlite" {
        screenshot(&sender, "status").await;
    }
    visible(&sender, "#burn").await.click().await.unwrap();
    visible(&sender, "#burn-confirm")
        .await
        .click()
        .await
        .unwrap();
    wait_attr(&visible(&sender, "#state").await, "data-state", "burned").await;
    let (reader, _p6) = reveal(&driver, &link, None).await;
    visible(&reader, "#gone").await;
    reader.close().await.unwrap();
    let opened_text = format!("read then checked {}", unique_suffix());
    let (link, status_link) =
        otm_testkit::browser::compose(&sender, base, &opened_text, None).await;
    keys.push(Link::parse(&link).unwrap().key.to_base64url().to_string());
    tokens.push(status_link.split("#token=").nth(1).unwrap().to_owned());
    // A link whose fragment was lost: the reader types the key by hand.
    let (reader, _p7) = driver.browser().await;
    reader.goto(link.split('#').next().unwrap()).await.unwrap();
    let key_text = link.split("#key=").nth(1).unwrap();
    visible(&reader, "#manual-key")
        .await
        .send_keys(key_text)
        .await
        .unwrap();
    visible(&reader, "#reveal").await.click().await.unwrap();
    assert_eq!(value(&reader, "#plaintext").await, opened_text);
    reader.close().await.unwrap();
    sender.goto(&status_link).await.unwrap();
    wait_attr(&visible(&sender, "#state").await, "data-state", "opened").await;
    sender.close().await.unwrap();

    // 6. Nothing the server received carries a key, the passphrase or plaintext.
    let log = server.log_text();
    assert!(
        log.contains("/api/v1/messages"),
        "the log recorded the API calls"
    );
    for secret in keys.iter().map(String::as_str).chain([
        passphrase,
        "wrong horse",
        secret_text.as_str(),
        phrased_text.as_str(),
        rust_reads.as_str(),
        browser_reads.as_str(),
        burn_text.as_str(),
        opened_text.as_str(),
    ]) {
        assert!(!log.contains(secret), "the server saw {secret:?}");
    }
    for entry in server.log.lock().unwrap().iter() {
        for line in entry.lines().take_while(|l| !l.is_empty()) {
            if line.starts_with("authorization: Bearer ") {
                continue;
            }
            for token in &tokens {
                assert!(
                    !line.contains(token.as_str()),
                    "a token outside Authorization: {line}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("e2e.sqlite3")))
        .await
        .unwrap();
    full_flow(Arc::new(store), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow_on_redis() {
    let url = otm_testkit::env::redis_url();
    let prefix = RedisPrefix::new("otm-e2e-");
    let config = RedisConfig::standalone(&url).with_key_prefix(prefix.as_str());
    let store = match RedisStore::connect(config).await {
        Ok(s) => s,
        Err(e) => return skip(&format!("Redis at {url} is unreachable: {e}")).unwrap_or(()),
    };
    full_flow(Arc::new(store), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_opens_the_shared_json_vectors() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(Arc::new(otm_store::MemoryStore::new(Default::default()))).await;
    let vectors = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../otm-core/tests/data/envelope_v1_vectors.json"),
    )
    .unwrap();
    let (c, _p) = driver.browser().await;
    c.goto(&format!("{}/", server.base)).await.unwrap();
    visible(&c, "#message").await;
    c.update_timeouts(
        otm_testkit::browser::fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(120)),
            None,
            None,
        ),
    )
    .await
    .unwrap();
    let script = r#"
        const [vectorsText, done] = arguments;
        (async () => {
          const f = await import('/assets/otm-format.js');
          const v = JSON.parse(vectorsText);
          const b64 = f.base64urlDecode;
          const results = { ok: 0, fail: 0, errors: [] };
          for (const t of v.vectors) {
            const s = await f.deriveSecrets(b64(t.key), t.passphrase);
            const text = await f.open(s, b64(t.envelope));
            if (text !== t.message) results.errors.push(t.name + ': wrong text');
            else results.ok++;
          }
          for (const t of v.fail) {
            try {
              const s = await f.deriveSecrets(b64(t.key), t.passphrase);
              await f.open(s, b64(t.envelope));
              results.errors.push(t.name + ': opened');
            } catch (e) {
              if (e.code === t.error) results.fail++;
              else results.errors.push(t.name + ': ' + e.code + ' != ' + t.error);
            }
          }
          return results;
        })().then(done, e => done({ errors: [String(e)] }));
    "#;
    let result = c.execute_async(script, vec![json!(vectors)]).await.unwrap();
    let parsed: Value = serde_json::from_str(&vectors).unwrap();
    assert_eq!(result["errors"], json!([]), "{result}");
    assert_eq!(result["ok"], parsed["vectors"].as_array().unwrap().len());
    assert_eq!(result["fail"], parsed["fail"].as_array().unwrap().len());
    c.close().await.unwrap();
}

/// The page's QR drawing at sizes a link page never needs (an embedder's
/// long base URL): each read back from a screenshot by zbarimg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_draws_qr_codes_a_decoder_reads() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(Arc::new(otm_store::MemoryStore::new(Default::default()))).await;
    let (c, _p) = driver.browser().await;
    c.goto(&format!("{}/", server.base)).await.unwrap();
    visible(&c, "#message").await;
    let base = format!("{}/a/very/long/mount/path/", server.base);
    for length in [0, 150, 700, 1500] {
        let text = format!("{base}{}", "x1-_".repeat(length / 4));
        let script = r#"
            const [text, done] = arguments;
            import('/assets/qr.js').then((qr) => {
              document.getElementById('drawn')?.remove();
              const box = document.createElement('div');
              box.id = 'drawn';
              // Inside the viewport (about 1100 × 850), or the shot is cut.
              box.style.cssText = 'position:fixed;inset:0;background:#fff;z-index:9';
              const svg = qr.qrSvg(document, text, 'QR code');
              svg.style.cssText = 'width:800px;height:800px';
              box.append(svg);
              document.body.append(box);
              done(qr.encodeQr(text).version);
            }, (e) => done(String(e)));
        "#;
        let version = c.execute_async(script, vec![json!(text)]).await.unwrap();
        assert!(version.is_u64(), "{version}");
        let png = visible(&c, "#drawn svg").await.screenshot().await.unwrap();
        let Some(texts) = otm_testkit::browser::decode_qr(&png) else {
            return;
        };
        assert_eq!(texts, vec![text.clone()], "version {version}");
    }
    c.close().await.unwrap();
}

/// Chromium's WebCrypto runs the browser's HPKE and request modules to the
/// same bytes as otm-core: RFC 9180's vectors of otm's suite (every value
/// of the base mode) and otm's own answer vectors (key, fingerprint, token,
/// sealed note and answer, links).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_runs_the_hpke_and_answer_vectors() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start(Arc::new(otm_store::MemoryStore::new(Default::default()))).await;
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../otm-core/tests/data");
    let rfc = std::fs::read_to_string(data.join("hpke_rfc9180_a1.json")).unwrap();
    let answers = std::fs::read_to_string(data.join("answer_v1_vectors.json")).unwrap();
    let (c, _p) = driver.browser().await;
    c.goto(&format!("{}/", server.base)).await.unwrap();
    visible(&c, "#message").await;
    let script = r#"
        const [rfcText, answersText, done] = arguments;
        (async () => {
          const hpke = await import('/assets/otm-hpke.js');
          const req = await import('/assets/otm-request.js');
          const f = await import('/assets/otm-format.js');
          const hex = (s) => new Uint8Array((s.match(/../g) || []).map((h) => parseInt(h, 16)));
          const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
          const errors = [];
          const rfc = JSON.parse(rfcText);
          const s = rfc.setup;
          const r = await hpke.deriveKeyPair(hex(s.ikmR));
          if (toHex(r.publicKey) !== s.pkRm) errors.push('pkR');
          const { enc, context } = await hpke.setupSender(r.publicKey, hex(s.info), hex(s.ikmE));
          if (toHex(enc) !== s.enc) errors.push('enc');
          const recipient = await hpke.setupRecipient(enc, r, hex(s.info));
          for (const x of rfc.encryptions) {
            context.seq = x.seq;
            recipient.seq = x.seq;
            if (toHex(await context.seal(hex(x.aad), hex(x.pt))) !== x.ct) errors.push('seal ' + x.seq);
            if (toHex(await recipient.open(hex(x.aad), hex(x.ct))) !== x.pt) errors.push('open ' + x.seq);
          }
          for (const x of rfc.exports) {
            if (toHex(await recipient.export(hex(x.context), x.length)) !== x.value) errors.push('export');
          }
          let answers = 0;
          for (const x of JSON.parse(answersText).vectors) {
            const secret = f.decodeBase64url(x.receive_secret);
            const id = f.decodeBase64url(x.request_id);
            const pair = await req.receiveKeyPair(secret);
            if (f.encodeBase64url(pair.publicKey) !== x.public_key) errors.push(x.name + ': key');
            if ((await req.fingerprint(pair.publicKey)) !== x.fingerprint) errors.push(x.name + ': fingerprint');
            const sealed = await req.sealAnswer(pair.publicKey, id, x.note, x.text, f.decodeBase64url(x.ikm_e));
            if (f.encodeBase64url(sealed) !== x.answer) errors.push(x.name + ': answer');
            if ((await req.openAnswer(secret, id, x.note, sealed)) !== x.text) errors.push(x.name + ': open');
            const token = await req.answerToken(secret);
            const note = await req.sealNote(token, pair.publicKey, x.note, f.decodeBase64url(x.note_nonce));
            if (f.encodeBase64url(note) !== x.sealed_note) errors.push(x.name + ': note');
            answers++;
          }
          return { errors, answers };
        })().then(done, (e) => done({ errors: [String(e)] }));
    "#;
    let result = c
        .execute_async(script, vec![json!(rfc), json!(answers)])
        .await
        .unwrap();
    assert_eq!(result["errors"], json!([]), "{result}");
    let expected: Value = serde_json::from_str(&answers).unwrap();
    assert_eq!(
        result["answers"],
        expected["vectors"].as_array().unwrap().len()
    );
    c.close().await.unwrap();
}
