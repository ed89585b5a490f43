//! The browser app: seven HTML pages and their assets, compiled into the
//! binary. Every page is `assets/layout.html` (head, header, footer) around
//! its own `<main>` content from `assets/{page}.html`, in the language the
//! request asks for ([`crate::i18n`]): `{{t:KEY}}` becomes that language's
//! string of `KEY`, escaped. `{{BASE}}` becomes the router's mount path, so
//! the app works at `/` and nested under any prefix.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{Html, IntoResponse, Response};
use otm_core::ErrorCode;

use crate::error::ApiError;
use crate::i18n::{escape, to_html, Language, Text, Translations};
use crate::service::Service;

/// The page around each page's content. Its placeholders: `{{BASE}}`,
/// `{{LANG}}`, `{{DIR}}`, `{{TITLE}}`, `{{META}}`, `{{STRINGS}}`,
/// `{{SCRIPT}}`, `{{NAV_COMPOSE}}`, `{{NAV_ASK}}`, `{{NAV_ABOUT}}`, `{{MAIN_CLASS}}`,
/// `{{BODY}}`, `{{FOOTER}}` and `{{LANGUAGES}}`, and strings as `{{t:KEY}}`.
const LAYOUT: &str = include_str!("../../assets/layout.html");

/// The main navigation's entries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Compose,
    Ask,
    About,
}

/// What sets one page apart within the layout. Texts are string keys
/// ([`crate::i18n`]); markup is written here or in `assets/`, never taken
/// from a request or a string table.
struct Page {
    /// The key of the `<title>`, after "otm · ".
    title: &'static str,
    /// The key of `<meta name="description">`, for the pages worth indexing.
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
    /// The key of the footer's text.
    footer: &'static str,
    /// Whether the footer links to the about page after its text.
    footer_about_link: bool,
}

const COMPOSE: Page = Page {
    title: "title.compose",
    description: Some("description.compose"),
    noindex: false,
    script: Some("compose.js"),
    current: Some(Nav::Compose),
    main_class: None,
    body: include_str!("../../assets/index.html"),
    footer: "footer.compose",
    footer_about_link: true,
};

const ABOUT: Page = Page {
    title: "title.about",
    description: Some("description.about"),
    noindex: false,
    script: None,
    current: Some(Nav::About),
    main_class: Some("prose"),
    body: include_str!("../../assets/about.html"),
    footer: "footer.about",
    footer_about_link: false,
};

const ASK: Page = Page {
    title: "title.ask",
    description: Some("description.ask"),
    noindex: false,
    script: Some("ask.js"),
    current: Some(Nav::Ask),
    main_class: None,
    body: include_str!("../../assets/ask.html"),
    footer: "footer.ask",
    footer_about_link: true,
};

const RESPOND: Page = Page {
    title: "title.respond",
    description: None,
    noindex: true,
    script: Some("respond.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/respond.html"),
    footer: "footer.respond",
    footer_about_link: true,
};

const RECEIVE: Page = Page {
    title: "title.receive",
    description: None,
    noindex: true,
    script: Some("receive.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/receive.html"),
    footer: "footer.receive",
    footer_about_link: true,
};

const REVEAL: Page = Page {
    title: "title.reveal",
    description: None,
    noindex: true,
    script: Some("reveal.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/reveal.html"),
    footer: "footer.reveal",
    footer_about_link: true,
};

const MANAGE: Page = Page {
    title: "title.manage",
    description: None,
    noindex: true,
    script: Some("manage.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/manage.html"),
    footer: "footer.manage",
    footer_about_link: true,
};

const GROUP: Page = Page {
    title: "title.group",
    description: None,
    noindex: true,
    script: Some("group.js"),
    current: None,
    main_class: None,
    body: include_str!("../../assets/group.html"),
    footer: "footer.group",
    footer_about_link: true,
};

/// A plain string as HTML (a plural or a missing key shows the key, which
/// the tests rule out for the shipped pages).
fn string_html(t: &Translations, language: &Language, key: &str) -> String {
    match t.text(language, key) {
        Some(Text::Plain(text)) => to_html(text),
        _ => escape(key),
    }
}

/// Replaces every `{{t:KEY}}` of `template` in one pass (a string's own
/// text is never read for keys).
fn fill_strings(template: &str, t: &Translations, language: &Language) -> String {
    let mut out = String::with_capacity(template.len() + template.len() / 4);
    let mut rest = template;
    while let Some(at) = rest.find("{{t:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&string_html(t, language, &after[..end]));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{t:");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Page {
    /// The whole page in `language`, with `{{BASE}}` and `{{STRINGS}}` still
    /// in it.
    fn render(&self, t: &Translations, language: &Language) -> String {
        let robots = if self.noindex {
            "\n  <meta name=\"robots\" content=\"noindex, nofollow\">"
        } else {
            ""
        };
        let description = self.description.map_or_else(String::new, |key| {
            format!("\n  <meta name=\"description\" content=\"{{{{t:{key}}}}}\">")
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
        let footer = if self.footer_about_link {
            format!(
                "{{{{t:{}}}}} <a href=\"{{{{BASE}}}}/about\">{{{{t:site.nav_about}}}}</a>",
                self.footer
            )
        } else {
            format!("{{{{t:{}}}}}", self.footer)
        };
        let languages: String = t
            .languages()
            .iter()
            .map(|l| {
                let selected = if l.tag() == language.tag() {
                    " selected"
                } else {
                    ""
                };
                format!(
                    "<option value=\"{tag}\" lang=\"{tag}\"{selected}>{name}</option>",
                    tag = escape(l.tag()),
                    name = escape(l.name()),
                )
            })
            .collect();
        // The body goes in last, so none of its text is taken for a placeholder.
        let template = LAYOUT
            .replace("{{LANG}}", &escape(language.tag()))
            .replace("{{DIR}}", language.dir().as_str())
            .replace("{{TITLE}}", &format!("{{{{t:{}}}}}", self.title))
            .replace("{{META}}", &format!("{robots}{description}"))
            .replace("{{SCRIPT}}", &script)
            .replace("{{NAV_COMPOSE}}", current(Nav::Compose))
            .replace("{{NAV_ASK}}", current(Nav::Ask))
            .replace("{{NAV_ABOUT}}", current(Nav::About))
            .replace("{{MAIN_CLASS}}", &main_class)
            .replace("{{FOOTER}}", &footer)
            .replace("{{LANGUAGES}}", &languages)
            .replace("{{BODY}}", self.body);
        fill_strings(&template, t, language)
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
        "otm-hpke.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/otm-hpke.js"),
    ),
    (
        "otm-request.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/otm-request.js"),
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
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/i18n.js"),
    ),
    (
        "lang.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/lang.js"),
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
    (
        "group.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/group.js"),
    ),
    (
        "ask.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ask.js"),
    ),
    (
        "respond.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/respond.js"),
    ),
    (
        "receive.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/receive.js"),
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

fn page(
    service: &Service,
    headers: &HeaderMap,
    spec: &Page,
    original: &Uri,
    uri: &Uri,
) -> Response {
    let base = mount_prefix(original, uri);
    // A router nested at "/secrets" answers "/secrets", not "/secrets/".
    let home = if base.is_empty() { "/" } else { base.as_str() };
    let t = &service.config().translations;
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let language = t.pick(cookies, accept);
    let html = spec
        .render(t, language)
        .replace("\"{{BASE}}/\"", &format!("\"{home}\""))
        .replace("{{BASE}}", &base)
        // Last: the strings are data, never read for placeholders.
        .replace(
            "{{STRINGS}}",
            &t.script_data(
                language,
                serde_json::json!({
                    "max_failed_attempts": service.public_config().max_failed_attempts,
                }),
            ),
        );
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    if let Ok(tag) = HeaderValue::from_str(language.tag()) {
        headers.insert(header::CONTENT_LANGUAGE, tag);
    }
    response
}

/// `GET /`: the compose page.
pub(crate) async fn compose(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &COMPOSE, &original, &uri)
}

/// `GET /request`: the page that asks someone for a secret.
pub(crate) async fn ask(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &ASK, &original, &uri)
}

/// `GET /request/{id}`: the responder's page. The public key and the
/// answer token are in the fragment; like the reveal page it is the same
/// static page for every ID, and reading a request consumes nothing.
pub(crate) async fn respond(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &RESPOND, &original, &uri)
}

/// `GET /receive/{id}`: the asker's page. The receive secret is in the
/// fragment.
pub(crate) async fn receive(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &RECEIVE, &original, &uri)
}

/// `GET /about`: how it works and FAQ.
pub(crate) async fn about(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &ABOUT, &original, &uri)
}

/// `GET /otm/{id}`: the reveal page. It is the same static page for every
/// ID and never touches the store, so link-preview bots that fetch it
/// consume nothing.
pub(crate) async fn reveal(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &REVEAL, &original, &uri)
}

/// `GET /manage/{id}`: the sender's status page. The management token is in
/// the fragment; the page asks the API with it.
pub(crate) async fn manage(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &MANAGE, &original, &uri)
}

/// `GET /group`: the sender's status page of a group of messages (the
/// IDs, tokens and labels are in the fragment, which is never sent).
pub(crate) async fn group(
    State(service): State<Service>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    page(&service, &headers, &GROUP, &original, &uri)
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
    fn every_page_fills_the_layout_in_every_language() {
        let t = Translations::builtin();
        for language in t.languages() {
            for page in [
                &COMPOSE, &ASK, &ABOUT, &REVEAL, &MANAGE, &GROUP, &RESPOND, &RECEIVE,
            ] {
                let html = page.render(&t, language);
                let title = format!("{} {}", language.tag(), page.title);
                // Only {{BASE}} and {{STRINGS}} are left, for the request to fill.
                let rest = html.replace("{{BASE}}", "").replace("{{STRINGS}}", "");
                assert!(!rest.contains("{{"), "{title}");
                assert!(html.contains(&format!(
                    "<html lang=\"{}\" dir=\"{}\">",
                    language.tag(),
                    language.dir().as_str()
                )));
                assert_eq!(html.matches("<main id=\"main\"").count(), 1, "{title}");
                let marked = html.matches(" aria-current=\"page\"").count();
                assert_eq!(marked, usize::from(page.current.is_some()), "{title}");
                let scripts = html.matches("<script type=\"module\"").count();
                assert_eq!(scripts, 1 + usize::from(page.script.is_some()), "{title}");
                if let Some(file) = page.script {
                    assert!(ASSETS.iter().any(|(name, _, _)| *name == file), "{file}");
                }
            }
        }
    }

    #[test]
    fn every_key_of_every_page_is_a_plain_string_in_english() {
        let t = Translations::builtin();
        let english = t.fallback();
        for body in [
            LAYOUT,
            COMPOSE.body,
            ASK.body,
            ABOUT.body,
            REVEAL.body,
            MANAGE.body,
            RESPOND.body,
            RECEIVE.body,
        ] {
            for part in body.split("{{t:").skip(1) {
                let key = part.split("}}").next().unwrap();
                assert!(
                    matches!(english.get(key), Some(Text::Plain(_))),
                    "{key} is not a plain English string"
                );
            }
        }
        for page in [
            &COMPOSE, &ASK, &ABOUT, &REVEAL, &MANAGE, &GROUP, &RESPOND, &RECEIVE,
        ] {
            for key in [Some(page.title), page.description, Some(page.footer)]
                .into_iter()
                .flatten()
            {
                assert!(matches!(english.get(key), Some(Text::Plain(_))), "{key}");
            }
        }
    }
}
