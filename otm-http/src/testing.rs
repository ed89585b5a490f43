//! Test support (feature `test-support`): serve the router on a loopback
//! socket with a request log, and drive real headless Chromium through
//! chromedriver. Used by this workspace's end-to-end tests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
pub use fantoccini;
use fantoccini::{Client, ClientBuilder, Locator};
use otm_store::conformance::skip;
use otm_store::BlobStore;

use crate::Config;

/// Every request a [`TestServer`] received: method, URI, headers and body.
pub type RequestLog = Arc<Mutex<Vec<String>>>;

async fn record(State(log): State<RequestLog>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut entry = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        entry.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    entry.push_str(&String::from_utf8_lossy(&bytes));
    log.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The otm router on `127.0.0.1:<free port>`, recording every request.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What the server received.
    pub log: RequestLog,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Serves `store` with the default configuration.
    pub async fn start(store: Arc<dyn BlobStore>) -> TestServer {
        let log: RequestLog = Arc::default();
        let app: Router = crate::router(store, Config::default())
            .layer(axum::middleware::from_fn_with_state(log.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            log,
            task,
        }
    }

    /// The whole request log as one text.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n----\n")
    }
}

/// A running chromedriver, stopped on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    /// Starts chromedriver on a free port, or skips (see
    /// [`otm_store::conformance::skip`]) when Chromium is missing.
    pub async fn start() -> Option<Driver> {
        if chromium_binary().is_none() {
            return skip("Chromium is not installed (apt-get install chromium chromium-driver)");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return skip(&format!("cannot run chromedriver: {e}")),
        };
        let driver = Driver {
            child,
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
