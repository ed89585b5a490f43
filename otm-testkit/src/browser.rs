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
