//! The browser app: three HTML pages and their assets, compiled into the
//! binary. Pages are templates whose `{{BASE}}` becomes the router's mount
//! path, so the app works at `/` and nested under any prefix.

use axum::extract::{OriginalUri, Path};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use otm_core::ErrorCode;

use crate::error::ApiError;

const INDEX: &str = include_str!("../assets/index.html");
const REVEAL: &str = include_str!("../assets/reveal.html");
const ABOUT: &str = include_str!("../assets/about.html");
const MANAGE: &str = include_str!("../assets/manage.html");

/// `(name, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "otm-format.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/otm-format.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/api.js"),
    ),
    (
        "compose.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/compose.js"),
    ),
    (
        "reveal.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/reveal.js"),
    ),
    (
        "manage.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/manage.js"),
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

fn page(template: &str, original: &Uri, uri: &Uri) -> Html<String> {
    let base = mount_prefix(original, uri);
    // A router nested at "/secrets" answers "/secrets", not "/secrets/".
    let home = if base.is_empty() { "/" } else { base.as_str() };
    Html(
        template
            .replace("\"{{BASE}}/\"", &format!("\"{home}\""))
            .replace("{{BASE}}", &base),
    )
}

/// `GET /`: the compose page.
pub(crate) async fn compose(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(INDEX, &original, &uri)
}

/// `GET /about`: how it works and FAQ.
pub(crate) async fn about(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(ABOUT, &original, &uri)
}

/// `GET /otm/{id}`: the reveal page. It is the same static page for every
/// ID and never touches the store, so link-preview bots that fetch it
/// consume nothing.
pub(crate) async fn reveal(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(REVEAL, &original, &uri)
}

/// `GET /manage/{id}`: the sender's status page. The management token is in
/// the fragment; the page asks the API with it.
pub(crate) async fn manage(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    page(MANAGE, &original, &uri)
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
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoSuchAsset,
            "No such asset.",
        )
        .into_response(),
    }
}
