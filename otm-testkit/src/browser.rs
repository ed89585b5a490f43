//! Real headless Chromium driven through chromedriver (WebDriver, with
//! fantoccini): start a driver, open fresh browsers, and the page steps the
//! browser tests share.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::{free_port, skip, Process};

/// A running chromedriver, stopped on drop.
pub struct Driver {
    _process: Process,
    url: String,
}

/// The Chromium binary, if installed.
pub fn chromium_binary() -> Option<String> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(|p| p.to_string())
}

impl Driver {
    /// Starts chromedriver on a free port, or [`skip`]s when Chromium is
    /// missing.
    pub async fn start() -> Option<Driver> {
        if chromium_binary().is_none() {
            return skip("Chromium is not installed (apt-get install chromium chromium-driver)");
        }
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = match Process::spawn(command) {
            Ok(p) => p,
            Err(e) => return skip(&format!("cannot run chromedriver: {e}")),
        };
        let driver = Driver {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(driver)
    }

    /// A fresh headless browser with its own empty profile (kept alive by
    /// the returned directory).
    pub async fn browser(&self) -> (Client, tempfile::TempDir) {
        let profile = tempfile::tempdir().expect("a temp dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium_binary().expect("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1100,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromedriver session");
        (client, profile)
    }
}

/// Waits (up to 30 s) until an element is displayed and returns it.
pub async fn visible(c: &Client, css: &str) -> fantoccini::elements::Element {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.is_displayed().await.unwrap_or(false) {
                return e;
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let html = c.source().await.unwrap_or_default();
            panic!("{css} did not become visible; page:\n{html}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `value` of a visible input.
pub async fn value(c: &Client, css: &str) -> String {
    visible(c, css)
        .await
        .prop("value")
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Opens a share link in a fresh browser, types the passphrase if given,
/// and presses Reveal.
pub async fn reveal(
    driver: &Driver,
    link: &str,
    passphrase: Option<&str>,
) -> (Client, tempfile::TempDir) {
    let (c, dir) = driver.browser().await;
    c.goto(link).await.expect("navigate");
    visible(&c, "#reveal-intro").await;
    if let Some(p) = passphrase {
        visible(&c, "#passphrase-field")
            .await
            .send_keys(p)
            .await
            .expect("type");
    }
    visible(&c, "#reveal").await.click().await.expect("click");
    (c, dir)
}

/// Composes a message on the page at `base` and returns the share link and
/// the private status link.
pub async fn compose(
    c: &Client,
    base: &str,
    text: &str,
    passphrase: Option<&str>,
) -> (String, String) {
    c.goto(&format!("{base}/")).await.expect("navigate");
    visible(c, "#message")
        .await
        .send_keys(text)
        .await
        .expect("type");
    if let Some(p) = passphrase {
        visible(c, "#passphrase")
            .await
            .send_keys(p)
            .await
            .expect("type");
    }
    visible(c, "#create").await.click().await.expect("click");
    let link = value(c, "#link").await;
    let status = value(c, "#status-link").await;
    (link, status)
}

/// The texts of the QR codes in a PNG image, read by a real decoder
/// (`zbarimg` of Debian's `zbar-tools`, which `scripts/services` installs),
/// one per symbol found; [`skip`]s when `zbarimg` is missing.
pub fn decode_qr(png: &[u8]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("qr.png");
    std::fs::write(&file, png).expect("write the screenshot");
    let output = match Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            return skip(&format!(
                "cannot run zbarimg (apt-get install zbar-tools): {e}"
            ))
        }
    };
    // zbarimg exits 4 when it found no symbol: an empty answer, not an error.
    let text = String::from_utf8(output.stdout).expect("zbarimg prints text");
    Some(text.lines().map(str::to_owned).collect())
}

// ---------------------------------------------------------------------------
// Accessibility: axe-core and the colour scheme

/// Where `scripts/services` puts axe-core's browser build: `OTM_AXE_JS`,
/// which it exports, or else its default in the workspace's `.otm-run/`.
pub fn axe_path() -> std::path::PathBuf {
    match std::env::var_os("OTM_AXE_JS") {
        Some(path) => path.into(),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.otm-run/axe-core/axe.min.js")
        }
    }
}

/// The source of axe-core (the npm package's `axe.min.js`, which
/// `scripts/services` downloads and checks), or [`skip`] when it is missing.
pub fn axe_source() -> Option<String> {
    let path = axe_path();
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(e) => skip(&format!(
            "axe-core is not at {} ({e}); scripts/services downloads it",
            path.display()
        )),
    }
}

/// The WCAG 2.2 A and AA violations of impact "serious" or "critical" that
/// axe-core finds on the page as it is now, one line each (rule, impact,
/// help, the elements). axe-core is put into this browser session only
/// (through WebDriver, never served by the app), once per page load.
pub async fn axe_violations(c: &Client, axe: &str) -> Vec<String> {
    let loaded = c
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .expect("ask for axe");
    if loaded != serde_json::Value::Bool(true) {
        c.execute(&format!("{axe}\n;return true;"), vec![])
            .await
            .expect("load axe-core into the page");
    }
    let script = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, {
          runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
          resultTypes: ['violations'],
        }).then(
          (r) => done(r.violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)),
          (e) => done([`axe failed: ${e}`]),
        );
    "#;
    let found = c.execute_async(script, vec![]).await.expect("run axe");
    serde_json::from_value(found).expect("a list of violations")
}

/// Runs axe-core ([`axe_violations`]) on the page as it is, in the light
/// and the dark colour scheme, and adds what it finds to `found`, each
/// named by `state` and the scheme; leaves the page in the light scheme.
pub async fn axe_audit(c: &Client, axe: &str, state: &str, found: &mut Vec<String>) {
    for scheme in ["light", "dark"] {
        emulate_color_scheme(c, scheme).await;
        let query = format!("return matchMedia('(prefers-color-scheme: {scheme})').matches;");
        assert_eq!(
            c.execute(&query, vec![]).await.expect("ask for the scheme"),
            serde_json::json!(true),
            "the page does not see the {scheme} scheme"
        );
        // Let the scheme's colours (and the 0.15 s button transitions) settle.
        tokio::time::sleep(Duration::from_millis(250)).await;
        for violation in axe_violations(c, axe).await {
            found.push(format!("{state} ({scheme}): {violation}"));
        }
    }
    emulate_color_scheme(c, "light").await;
}

/// A Chrome DevTools Protocol command through chromedriver's own endpoint.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, UrlParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        let body = serde_json::json!({ "cmd": self.cmd, "params": self.params });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// `url::ParseError`, named through reqwest's re-export of `Url`.
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Makes the page see `prefers-color-scheme: dark` (or `light`) from now
/// on, across navigations of this browser tab.
pub async fn emulate_color_scheme(c: &Client, scheme: &str) {
    c.issue_cmd(Cdp {
        cmd: "Emulation.setEmulatedMedia",
        params: serde_json::json!({
            "features": [{ "name": "prefers-color-scheme", "value": scheme }]
        }),
    })
    .await
    .expect("emulate the colour scheme");
}

/// Presses `key` (a WebDriver key code such as `'\u{e004}'` for Tab) on
/// whatever has the focus, as a keyboard would: no element is targeted.
pub async fn press(c: &Client, key: char) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let actions = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(actions).await.expect("press a key");
}

/// Types `text` into whatever has the focus, key by key.
pub async fn type_text(c: &Client, text: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut actions = KeyActions::new("keyboard".into());
    for ch in text.chars() {
        actions = actions
            .then(KeyAction::Down { value: ch })
            .then(KeyAction::Up { value: ch });
    }
    c.perform_actions(actions).await.expect("type");
}

/// The `id` of the focused element ("" for none or the body).
pub async fn focused_id(c: &Client) -> String {
    c.execute(
        "return document.activeElement ? document.activeElement.id : '';",
        vec![],
    )
    .await
    .expect("ask for the focus")
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// Presses Tab until the element `id` has the focus (at most 40 times),
/// proving it is reachable by keyboard; panics with the path taken if not.
pub async fn tab_to(c: &Client, id: &str) {
    let mut path = Vec::new();
    for _ in 0..40 {
        let now = focused_id(c).await;
        if now == id {
            return;
        }
        path.push(now);
        press(c, '\u{e004}').await;
    }
    panic!("#{id} is not reachable with Tab; the focus went through {path:?}");
}

/// Asks `check` every 100 ms until it answers `Ok`; after 15 s, panics with
/// its last answer (what the page shows instead of what was awaited).
pub async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if start.elapsed() > Duration::from_secs(15) => panic!("{why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Writes the page as it is now to `docs/screenshots/{name}.png` of the
/// workspace, for the README; only when `OTM_UPDATE_SCREENSHOTS` is set.
pub async fn readme_screenshot(c: &Client, name: &str) {
    if std::env::var_os("OTM_UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}
