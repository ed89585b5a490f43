//! The sender's status link (`ManageLink`) against the vectors shared with
//! the browser: `tests/data/manage_link_vectors.json`, which
//! `otm-http/assets/test/format.test.mjs` runs against `otm-format.js`.

use std::path::PathBuf;

use otm_core::{Error, ManageLink, ManageToken, MessageId};
use serde_json::Value;

const VECTORS: &str = "manage_link_vectors.json";

fn load_vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(VECTORS);
    let text = std::fs::read_to_string(path).expect("committed vectors exist");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn list<'a>(doc: &'a Value, name: &str) -> &'a [Value] {
    doc[name]
        .as_array()
        .unwrap_or_else(|| panic!("{VECTORS} has a list {name:?}"))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field:?} is a string in {v}"))
}

fn id(v: &Value) -> MessageId {
    text(v, "id").parse().expect("the vector's ID is canonical")
}

fn token(v: &Value) -> ManageToken {
    ManageToken::from_base64url(text(v, "token")).expect("the vector's token is canonical")
}

/// `ManageLink::parse(url)` succeeds with the vector's base, ID and token.
fn assert_parses(name: &str, url: &str, v: &Value) {
    let link = ManageLink::parse(url).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(link.base, text(v, "base"), "{name}: base");
    assert_eq!(link.id.to_string(), text(v, "id"), "{name}: id");
    assert_eq!(
        link.token.to_base64url().as_str(),
        text(v, "token"),
        "{name}: token"
    );
}

/// The reason of the `BadLink` error in `result`.
fn bad_link_reason(name: &str, result: Result<ManageLink, Error>) -> &'static str {
    match result {
        Err(Error::BadLink { reason }) => reason,
        Err(other) => panic!("{name}: expected Error::BadLink, got {other:?}"),
        Ok(link) => panic!("{name}: accepted as {link:?}"),
    }
}

#[test]
fn valid_links_format_and_parse_back() {
    let vectors = load_vectors();
    let valid = list(&vectors, "valid");
    assert!(valid.len() >= 4);
    for v in valid {
        let name = text(v, "name");
        let base_input = v
            .get("base_input")
            .and_then(Value::as_str)
            .unwrap_or_else(|| text(v, "base"));
        let link =
            ManageLink::new(base_input, id(v), token(v)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(link.base, text(v, "base"), "{name}: base");
        assert_eq!(link.to_url().as_str(), text(v, "url"), "{name}: url");
        assert_parses(name, text(v, "url"), v);
    }
}

#[test]
fn lenient_spellings_parse_to_the_same_link() {
    let vectors = load_vectors();
    let lenient = list(&vectors, "lenient");
    assert!(lenient.len() >= 7);
    for v in lenient {
        assert_parses(text(v, "name"), text(v, "text"), v);
    }
}

#[test]
fn invalid_links_fail_with_the_named_reason() {
    let vectors = load_vectors();
    let invalid = list(&vectors, "invalid");
    assert!(invalid.len() >= 30);
    for v in invalid {
        let name = text(v, "name");
        let reason = bad_link_reason(name, ManageLink::parse(text(v, "url")));
        assert_eq!(reason, text(v, "reason"), "{name}");
    }
}

#[test]
fn invalid_bases_fail_with_the_named_reason() {
    let vectors = load_vectors();
    let sample = &list(&vectors, "valid")[0];
    let invalid = list(&vectors, "invalid_base");
    assert!(invalid.len() >= 7);
    for v in invalid {
        let name = text(v, "name");
        let reason = bad_link_reason(
            name,
            ManageLink::new(text(v, "base"), id(sample), token(sample)),
        );
        assert_eq!(reason, text(v, "reason"), "{name}");
    }
}

#[test]
fn the_vectors_cover_every_rejection() {
    let vectors = load_vectors();
    let named: Vec<&str> = list(&vectors, "invalid")
        .iter()
        .chain(list(&vectors, "invalid_base"))
        .map(|v| text(v, "reason"))
        .collect();
    for reason in [
        "the status link has no #token= part",
        "the status link has no /manage/ path",
        "the link must start with http:// or https://",
        "the link has no host",
        "the link contains whitespace or control characters",
        "the base URL must not contain ? or #",
        "the message ID in the status link is malformed",
        "the status link's token is malformed",
    ] {
        assert!(
            named.contains(&reason),
            "no vector is rejected with {reason:?}"
        );
    }
}
