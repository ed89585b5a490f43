//! The group status link (`GroupLink`, FORMAT.md §9.6) against the vectors
//! shared with the browser: `tests/data/group_link_vectors.json`, which
//! `otm-http/assets/test/format.test.mjs` runs against `otm-format.js`.

use std::path::PathBuf;

use otm_core::{Error, GroupLink, GroupMember, ManageSecret, ManageToken, MessageId};
use serde_json::Value;

fn load_vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/group_link_vectors.json");
    let text = std::fs::read_to_string(path).expect("committed vectors exist");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field:?} is a string in {v}"))
}

#[test]
fn valid_links_format_and_parse_back() {
    let vectors = load_vectors();
    let valid = vectors["valid"].as_array().unwrap();
    assert!(valid.len() >= 5);
    for v in valid {
        let name = text(v, "name");
        let secret = v["secret"]
            .as_str()
            .map(|s| ManageSecret::from_base64url(s).unwrap());
        let members: Vec<GroupMember> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| GroupMember {
                id: text(m, "id").parse::<MessageId>().unwrap(),
                token: ManageToken::from_base64url(text(m, "token")).unwrap(),
                label: m["label"].as_str().map(str::to_owned),
            })
            .collect();
        let link = GroupLink::new(text(v, "base"), secret, members.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(link.to_url().as_str(), text(v, "url"), "{name}: url");
        let back = GroupLink::parse(text(v, "url")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back.base, text(v, "base"), "{name}: base");
        assert_eq!(
            back.secret.is_some(),
            v["secret"].is_string(),
            "{name}: secret"
        );
        assert_eq!(back.members.len(), members.len(), "{name}");
        for (got, want) in back.members.iter().zip(&members) {
            assert_eq!(got.id, want.id, "{name}: id");
            assert!(got.token == want.token, "{name}: token of {}", want.id);
            assert_eq!(got.label, want.label, "{name}: label");
        }
    }
}

#[test]
fn invalid_links_fail_with_their_reason() {
    let vectors = load_vectors();
    let invalid = vectors["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 10);
    for v in invalid {
        let name = text(v, "name");
        match GroupLink::parse(text(v, "url")) {
            Err(Error::BadLink { reason }) => assert_eq!(reason, text(v, "reason"), "{name}"),
            Err(other) => panic!("{name}: expected Error::BadLink, got {other:?}"),
            Ok(link) => panic!("{name}: accepted as {link:?}"),
        }
    }
}
