//! The browser app: four HTML pages and their assets, compiled into the
//! binary. Every page is `assets/layout.html` (head, header, footer) around
//! its own `<main>` content from `assets/{page}.html`. `{{BASE}}` becomes the
//! router's mount path, so the app works at `/` and nested under any prefix.

use axum::extract::{OriginalUri, Path};
use axum::http::{header, Uri};
use axum::response::{Html, IntoResponse, Response};
use otm_core::ErrorCode;

use crate::error::ApiError;

/// The page around each page's content. Its placeholders: `{{BASE}}`,
/// `{{TITLE}}`, `{{META}}`, `{{SCRIPT}}`, `{{NAV_COMPOSE}}`, `{{NAV_ABOUT}}`,
/// `{{MAIN_CLASS}}`, `{{BODY}}` and `{{FOOTER}}`.
const LAYOUT: &str = include_str!("../../assets/layout.html");

/// The main navigation's entries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Compose,
    About,
}

/// What sets one page apart within the layout. Texts are HTML, written here
/// or in `assets/`, never taken from a request.
struct Page {
    /// The `<title>`, after "otm · ".
    title: &'static str,
    /// `<meta name="description">`, for the pages worth indexing.
    description: Option<&'static str>,
    /// Ask search engines to skip the page (it only makes sense with a link).
    noindex: bool,
    /// The page's module in `assets/`, loaded with `<script type="module">`.
    script: Option<&'static str>,
    /// The navigation entry marked `aria-current="page"`.
    current: Option<Nav>,
    /// The class of `<main>`, if any.
    main_class: Option<&'static str>,
    /// The content of `<main>`.
    body: &'static str,
    /// The content of the footer's paragraph.
    footer: &'static str,
}

const COMPOSE: Page = Page {
    title: "Send a secret that opens once",
    description: Some("Send a secret message that can be read once. It is encrypted in your browser before it is uploaded."),
    noindex: false,
    script: Some("compose.js"),
    current: Some(Nav::Compose),
    main_class: None,
    body: include_str!("../../assets/index.html"),
    footer: r#"Encrypted in your browser with AES-256-GCM. <a href="{{BASE}}/about">How it works</a>"#,
};

const ABOUT: Page = Page {
    title: "How it works",
    description: Some("How otm one-time secret messages work, and when to use them."),
    noindex: false,
    script: None,
    current: Some(Nav::About),
    main_class: Some("prose"),
    body: include_str!("../../assets/about.html"),
    footer: "otm: one-time secret messages, encrypted in your browser.",
};

const REVEAL: Page = Page {
    title: "A secret message for you",
    description: None,
    noindex: true,
    script: Some("reveal.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/reveal.html"),
    footer: r#"Decrypted in your browser; the key in the link never reaches the server. <a href="{{BASE}}/about">How it works</a>"#,
};

const MANAGE: Page = Page {
    title: "Status of your message",
    description: None,
    noindex: true,
    script: Some("manage.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/manage.html"),
    footer: r#"Only the status is shown here; the message itself can be read only with the link you sent. <a href="{{BASE}}/about">How it works</a>"#,
};

impl Page {
    /// The whole page, with `{{BASE}}` still in it.
    fn render(&self) -> String {
        let robots = if self.noindex {
            "\n  <meta name=\"robots\" content=\"noindex, nofollow\">"
        } else {
            ""
        };
        let description = self.description.map_or_else(String::new, |text| {
            format!("\n  <meta name=\"description\" content=\"{text}\">")
        });
        let script = self.script.map_or_else(String::new, |file| {
            format!("\n  <script type=\"module\" src=\"{{{{BASE}}}}/assets/{file}\"></script>")
        });
        let current = |nav| {
            if self.current == Some(nav) {
                " aria-current=\"page\""
            } else {
                ""
            }
        };
        let main_class = self
            .main_class
            .map_or_else(String::new, |class| format!(" class=\"{class}\""));
        // The body goes in last, so none of its text is taken for a placeholder.
        LAYOUT
            .replace("{{TITLE}}", self.title)
            .replace("{{META}}", &format!("{robots}{description}"))
            .replace("{{SCRIPT}}", &script)
            .replace("{{NAV_COMPOSE}}", current(Nav::Compose))
            .replace("{{NAV_ABOUT}}", current(Nav::About))
            .replace("{{MAIN_CLASS}}", &main_class)
            .replace("{{FOOTER}}", self.footer)
            .replace("{{BODY}}", self.body)
    }
}

/// `(name, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../assets/favicon.svg"),
    ),
    (
        "otm-format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/otm-format.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui.js"),
    ),
    (
        "qr.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/qr.js"),
    ),
    (
        "compose.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/compose.js"),
    ),
    (
        "reveal.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/reveal.js"),
    ),
    (
        "manage.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/manage.js"),
    ),
];

/// The prefix the router is mounted under ("" at the root).
fn mount_prefix(original: &Uri, uri: &Uri) -> String {
    let full = original.path();
    let local = uri.path();
    let prefix = if local == "/" {
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(local).unwrap_or("")
    };
    // The prefix is the host app's route, but escape it anyway: it lands in HTML.
    prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/-_.~%".contains(*c))
        .collect()
}

fn page(spec: &Page, original: &Uri, uri: &Uri) -> Html<String> {
    let base = mount_prefix(original, uri);
    // A router nested at "/secrets" answers "/secrets", not "/secrets/".
    let home = if base.is_empty() { "/" } else { base.as_str() };
    Html(
        spec.render()
            .replace("\"{{BASE}}/\"", &format!("\"{home}\""))
            .replace("{{BASE}}", &base),
    )
}

/// `GET /`: the compose page.
pub(crate) async fn compose(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(&COMPOSE, &original, &uri)
}

/// `GET /about`: how it works and FAQ.
pub(crate) async fn about(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(&ABOUT, &original, &uri)
}

/// `GET /otm/{id}`: the reveal page. It is the same static page for every
/// ID and never touches the store, so link-preview bots that fetch it
/// consume nothing.
pub(crate) async fn reveal(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(&REVEAL, &original, &uri)
}

/// `GET /manage/{id}`: the sender's status page. The management token is in
/// the fragment; the page asks the API with it.
pub(crate) async fn manage(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(&MANAGE, &original, &uri)
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Not secret; short caching keeps upgrades visible.
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(ErrorCode::NoSuchAsset, "No such asset.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_fills_the_layout() {
        for page in [&COMPOSE, &ABOUT, &REVEAL, &MANAGE] {
            let html = page.render();
            let title = page.title;
            // Only {{BASE}} is left, for the request to fill.
            assert!(!html.replace("{{BASE}}", "").contains("{{"), "{title}");
            assert!(html.contains(&format!("<title>otm · {title}</title>")));
            assert_eq!(html.matches("<main id=\"main\"").count(), 1, "{title}");
            let marked = html.matches(" aria-current=\"page\"").count();
            assert_eq!(marked, usize::from(page.current.is_some()), "{title}");
            let scripts = html.matches("<script").count();
            assert_eq!(scripts, usize::from(page.script.is_some()), "{title}");
            if let Some(file) = page.script {
                assert!(ASSETS.iter().any(|(name, _, _)| *name == file), "{file}");
            }
        }
    }
}
