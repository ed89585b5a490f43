//! [`Creator`]: who created a message, as the service established it and
//! as stores, events and webhooks carry it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who created a message: established by the service when the message was
/// stored (never chosen by the request), kept with the message, and carried
/// by its events and webhooks, so that a receiver can tell a message its
/// own backend made from one a stranger made.
///
/// Its text form (the one stores keep) is `anonymous`, `server`,
/// `token:NAME` or `identity:NAME` ([`Creator::parse`] reads it back). An
/// anonymous creator's address is never kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Creator {
    /// A client the host did not know.
    Anonymous,
    /// The holder of the API token of this name.
    Token(String),
    /// Someone the host's own authentication identified, by the name the
    /// host chose.
    Identity(String),
    /// The host's own backend.
    Server,
}

/// The longest name a [`Creator::Token`] or [`Creator::Identity`] may
/// carry, in bytes.
pub const MAX_CREATOR_NAME_BYTES: usize = 128;

/// A creator's name that is empty, longer than
/// [`MAX_CREATOR_NAME_BYTES`], or holds a control character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadCreatorName;

impl fmt::Display for BadCreatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a creator's name is 1 to {MAX_CREATOR_NAME_BYTES} bytes of printable text"
        )
    }
}

impl std::error::Error for BadCreatorName {}

impl Creator {
    /// The kind's name: `anonymous`, `token`, `identity` or `server`.
    pub fn kind(&self) -> &'static str {
        match self {
            Creator::Anonymous => "anonymous",
            Creator::Token(_) => "token",
            Creator::Identity(_) => "identity",
            Creator::Server => "server",
        }
    }

    /// The token's or identity's name.
    pub fn name(&self) -> Option<&str> {
        match self {
            Creator::Token(name) | Creator::Identity(name) => Some(name),
            Creator::Anonymous | Creator::Server => None,
        }
    }

    /// Checks the name: 1 to [`MAX_CREATOR_NAME_BYTES`] bytes, no control
    /// character.
    pub fn check(&self) -> Result<(), BadCreatorName> {
        match self.name() {
            Some(name) if !is_name(name) => Err(BadCreatorName),
            _ => Ok(()),
        }
    }

    /// The creator of a text form ([`Display`](fmt::Display)), if it is one
    /// with a valid name.
    pub fn parse(text: &str) -> Option<Creator> {
        Creator::from_parts(
            text.split_once(':')
                .map_or((text, None), |(k, n)| (k, Some(n))),
        )
    }

    /// The creator of a kind and a name, if they make one.
    fn from_parts((kind, name): (&str, Option<&str>)) -> Option<Creator> {
        let creator = match (kind, name) {
            ("anonymous", None) => Creator::Anonymous,
            ("server", None) => Creator::Server,
            ("token", Some(name)) => Creator::Token(name.to_owned()),
            ("identity", Some(name)) => Creator::Identity(name.to_owned()),
            _ => return None,
        };
        creator.check().ok().map(|()| creator)
    }
}

/// Whether `name` is 1 to [`MAX_CREATOR_NAME_BYTES`] bytes without a
/// control character.
fn is_name(name: &str) -> bool {
    (1..=MAX_CREATOR_NAME_BYTES).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// `anonymous`, `server`, `token:NAME`, `identity:NAME`.
impl fmt::Display for Creator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}:{name}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// A creator as a webhook body carries it: `{"kind": "token", "name":
/// "ci"}`, `{"kind": "server"}`. Its kind is a string, so that a receiver
/// reads a kind newer than itself ([`CreatorInfo::creator`] is then
/// `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorInfo {
    /// [`Creator::kind`].
    pub kind: String,
    /// [`Creator::name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CreatorInfo {
    /// The creator it describes, if it is a kind this version knows.
    pub fn creator(&self) -> Option<Creator> {
        Creator::from_parts((&self.kind, self.name.as_deref()))
    }
}

impl From<&Creator> for CreatorInfo {
    fn from(creator: &Creator) -> Self {
        CreatorInfo {
            kind: creator.kind().to_owned(),
            name: creator.name().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_back() {
        for creator in [
            Creator::Anonymous,
            Creator::Server,
            Creator::Token("ci".into()),
            Creator::Identity("user:42".into()),
        ] {
            assert_eq!(Creator::parse(&creator.to_string()), Some(creator.clone()));
            assert_eq!(CreatorInfo::from(&creator).creator(), Some(creator));
        }
        assert_eq!(
            Creator::Identity("user:42".into()).to_string(),
            "identity:user:42"
        );
        for bad in [
            "",
            "token",
            "token:",
            "server:x",
            "anonymous:1.2.3.4",
            "robot:x",
            "token:a\nb",
        ] {
            assert_eq!(Creator::parse(bad), None, "{bad:?}");
        }
        let long = "x".repeat(MAX_CREATOR_NAME_BYTES + 1);
        assert_eq!(Creator::Token(long).check(), Err(BadCreatorName));
    }

    #[test]
    fn a_webhook_carries_kind_and_name() {
        let json = serde_json::to_string(&CreatorInfo::from(&Creator::Token("ci".into()))).unwrap();
        assert_eq!(json, r#"{"kind":"token","name":"ci"}"#);
        let json = serde_json::to_string(&CreatorInfo::from(&Creator::Server)).unwrap();
        assert_eq!(json, r#"{"kind":"server"}"#);
        let newer: CreatorInfo = serde_json::from_str(r#"{"kind":"robot","name":"r2"}"#).unwrap();
        assert_eq!(
            newer.creator(),
            None,
            "a newer kind is read, not understood"
        );
    }
}
