//! One message for several recipients: a group of independent messages
//! created together, and the sender's one status link for all of them.
//!
//! Each member is an ordinary message (its own key, its own share link, its
//! own receipt). What makes them a group is only on the sender's side: the
//! **group status link** (FORMAT.md §9.6)
//!
//! ```text
//! {base}/group#s={secret}&m={id},{id}…&l={label},{label}…
//! ```
//!
//! where each member's management token is derived from the group's
//! [`ManageSecret`] (`secret.token_for(id)`), or written out as
//! `{id}.{token}` when it was not derived from it (a creator whose tokens
//! derive from its own credential). The labels ("Ana", "Ben") exist only in
//! the fragment: the server never learns them.

use zeroize::Zeroizing;

use crate::key::{ManageSecret, ManageToken, MessageId};
use crate::link::{bad, check_base};
use crate::Result;

/// The most messages one group holds.
pub const MAX_GROUP: usize = 20;

/// The longest label of a member, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// The path of the group status page, after the base.
pub const GROUP_PATH: &str = "/group";

/// One member of a [`GroupLink`].
#[derive(Clone, Debug)]
pub struct GroupMember {
    /// The message's ID.
    pub id: MessageId,
    /// Its management token.
    pub token: ManageToken,
    /// The sender's name for its recipient, if any (never sent to a server).
    pub label: Option<String>,
}

/// The sender's status link of a group: every member's ID and management
/// token, and its label. The secret and tokens are zeroized on drop.
///
/// ```
/// use otm_core::{GroupLink, GroupMember, ManageSecret, MessageId};
/// let secret = ManageSecret::generate()?;
/// let members = ["Ana", "Ben"]
///     .into_iter()
///     .map(|label| {
///         let id = MessageId::generate()?;
///         Ok(GroupMember { token: secret.token_for(&id), id, label: Some(label.into()) })
///     })
///     .collect::<otm_core::Result<Vec<_>>>()?;
/// let link = GroupLink::new("https://otm.example", Some(secret), members)?;
/// let url = link.to_url();
/// assert!(url.starts_with("https://otm.example/group#s="));
/// let back = GroupLink::parse(&url)?;
/// assert_eq!(back.members[1].label.as_deref(), Some("Ben"));
/// assert_eq!(back.members[1].token, link.members[1].token);
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GroupLink {
    /// Scheme, host and any path before `/group`, without a trailing slash.
    pub base: String,
    /// The secret the members' tokens derive from, if they do.
    pub secret: Option<ManageSecret>,
    /// The members, in the order they were created.
    pub members: Vec<GroupMember>,
}

impl GroupLink {
    /// A group status link for `base`: 1 to [`MAX_GROUP`] members with
    /// distinct IDs, labels of at most [`MAX_LABEL_CHARS`] characters
    /// without control characters.
    pub fn new(
        base: &str,
        secret: Option<ManageSecret>,
        members: Vec<GroupMember>,
    ) -> Result<Self> {
        let base = check_base(base.trim().trim_end_matches('/'))?.to_owned();
        check_members(&members)?;
        Ok(GroupLink {
            base,
            secret,
            members,
        })
    }

    /// The whole link, zeroized on drop. Members whose token derives from
    /// the secret are written as their ID alone.
    pub fn to_url(&self) -> Zeroizing<String> {
        let mut url = Zeroizing::new(String::with_capacity(
            self.base.len() + 80 * self.members.len(),
        ));
        url.push_str(&self.base);
        url.push_str(GROUP_PATH);
        url.push('#');
        if let Some(secret) = &self.secret {
            url.push_str("s=");
            url.push_str(&secret.to_base64url());
            url.push('&');
        }
        url.push_str("m=");
        for (n, member) in self.members.iter().enumerate() {
            if n > 0 {
                url.push(',');
            }
            url.push_str(&member.id.to_string());
            let derived = self
                .secret
                .as_ref()
                .is_some_and(|s| s.token_for(&member.id) == member.token);
            if !derived {
                url.push('.');
                url.push_str(&member.token.to_base64url());
            }
        }
        if self.members.iter().any(|m| m.label.is_some()) {
            url.push_str("&l=");
            for (n, member) in self.members.iter().enumerate() {
                if n > 0 {
                    url.push(',');
                }
                if let Some(label) = &member.label {
                    percent_encode(label, &mut url);
                }
            }
        }
        url
    }

    /// Parses a group status link strictly: `s` (optional), `m` and `l`
    /// (optional) in this order; a member without `.token` needs `s`; as
    /// many labels as members (an empty one is no label).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (url, fragment) = text
            .split_once('#')
            .ok_or(bad("the group status link has no # part"))?;
        let url = url.split_once('?').map_or(url, |(before, _)| before);
        let url = url.strip_suffix('/').unwrap_or(url);
        let base = url
            .strip_suffix(GROUP_PATH)
            .ok_or(bad("the group status link has no /group path"))?;
        let mut parts = fragment.split('&').peekable();
        let secret = match parts.peek().and_then(|p| p.strip_prefix("s=")) {
            Some(s) => {
                parts.next();
                Some(
                    ManageSecret::from_base64url(s)
                        .map_err(|_| bad("the group status link's secret is malformed"))?,
                )
            }
            None => None,
        };
        let ids = parts
            .next()
            .and_then(|p| p.strip_prefix("m="))
            .ok_or(bad("the group status link has no m= part"))?;
        let labels = match parts.next() {
            None => None,
            Some(p) => Some(
                p.strip_prefix("l=")
                    .ok_or(bad("the group status link has an unknown part"))?,
            ),
        };
        if parts.next().is_some() {
            return Err(bad("the group status link has an unknown part"));
        }
        let mut members = Vec::new();
        for entry in ids.split(',') {
            if members.len() == MAX_GROUP {
                return Err(bad("the group status link names too many messages"));
            }
            let (id, token) = match entry.split_once('.') {
                Some((id, token)) => (id, Some(token)),
                None => (entry, None),
            };
            let id: MessageId = id
                .parse()
                .map_err(|_| bad("a message ID in the group status link is malformed"))?;
            let token = match (token, &secret) {
                (Some(token), _) => ManageToken::from_base64url(token)
                    .map_err(|_| bad("a token in the group status link is malformed"))?,
                (None, Some(secret)) => secret.token_for(&id),
                (None, None) => {
                    return Err(bad(
                        "the group status link has neither a secret nor a token",
                    ))
                }
            };
            members.push(GroupMember {
                id,
                token,
                label: None,
            });
        }
        if let Some(labels) = labels {
            let labels: Vec<&str> = labels.split(',').collect();
            if labels.len() != members.len() {
                return Err(bad("the group status link has not one label per message"));
            }
            for (member, label) in members.iter_mut().zip(labels) {
                let label = percent_decode(label)
                    .ok_or(bad("a label in the group status link is malformed"))?;
                member.label = (!label.is_empty()).then_some(label);
            }
        }
        GroupLink::new(base, secret, members)
    }
}

/// Checks members of a group link: a count of 1 to [`MAX_GROUP`], distinct
/// IDs, labels within [`MAX_LABEL_CHARS`] characters, no control characters.
fn check_members(members: &[GroupMember]) -> Result<()> {
    if members.is_empty() || members.len() > MAX_GROUP {
        return Err(bad("a group has 1 to 20 messages"));
    }
    for (n, member) in members.iter().enumerate() {
        if members[..n].iter().any(|m| m.id == member.id) {
            return Err(bad("a message appears twice in the group"));
        }
        if let Some(label) = &member.label {
            check_label(label)?;
        }
    }
    Ok(())
}

/// Checks one label: 1 to [`MAX_LABEL_CHARS`] characters, no control
/// characters.
pub fn check_label(label: &str) -> Result<()> {
    let chars = label.chars().count();
    if chars == 0 || chars > MAX_LABEL_CHARS {
        return Err(bad("a label has 1 to 64 characters"));
    }
    if label.chars().any(char::is_control) {
        return Err(bad("a label has no control characters"));
    }
    Ok(())
}

/// Appends `text` percent-encoded: everything but ASCII letters, digits and
/// `-_.~` as `%XX` of its UTF-8 bytes (so `,` and `&` never appear).
fn percent_encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes percent-encoding (either case of hex digits; other characters
/// as they are): `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Exactly two hex digits (`from_str_radix` alone would take "+A").
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(secret: Option<&ManageSecret>, labels: &[Option<&str>]) -> Vec<GroupMember> {
        labels
            .iter()
            .map(|label| {
                let id = MessageId::generate().unwrap();
                let token = match secret {
                    Some(s) => s.token_for(&id),
                    None => ManageToken::generate().unwrap(),
                };
                GroupMember {
                    id,
                    token,
                    label: label.map(str::to_owned),
                }
            })
            .collect()
    }

    #[test]
    fn links_round_trip_with_and_without_a_secret() {
        let secret = ManageSecret::generate().unwrap();
        let labels = [Some("Ana"), None, Some("Ben & Co, Zürich"), Some("مريم")];
        let link = GroupLink::new(
            "https://otm.example/x/",
            Some(secret.clone()),
            members(Some(&secret), &labels),
        )
        .unwrap();
        let url = link.to_url();
        let fragment = url.split_once('#').unwrap().1;
        assert!(
            !fragment.contains('.'),
            "derived tokens are left out: {fragment}"
        );
        let back = GroupLink::parse(&url).unwrap();
        assert_eq!(back.base, "https://otm.example/x");
        for (a, b) in back.members.iter().zip(&link.members) {
            assert_eq!((a.id, &a.token, &a.label), (b.id, &b.token, &b.label));
        }
        // Tokens not derived from a secret are written out.
        let explicit =
            GroupLink::new("https://otm.example", None, members(None, &[None, None])).unwrap();
        let url = explicit.to_url();
        assert!(!url.contains("&l="));
        let back = GroupLink::parse(&url).unwrap();
        assert_eq!(back.members[1].token, explicit.members[1].token);
        assert!(back.secret.is_none());
    }

    #[test]
    fn malformed_links_name_their_fault() {
        let secret = ManageSecret::generate().unwrap();
        let link = GroupLink::new(
            "https://otm.example",
            Some(secret.clone()),
            members(Some(&secret), &[Some("a"), Some("b")]),
        )
        .unwrap();
        let url = link.to_url().to_string();
        let id = link.members[0].id.to_string();
        let cases = [
            (url.replace("#s=", "#x="), "m= part"),
            (url.replace("&l=a,b", "&l=a"), "one label per message"),
            (url.replace("&l=a,b", "&l=a,%ZZ"), "label"),
            (url.replace("&l=a,b", "&l=a,b&q=1"), "unknown part"),
            (url.replace("/group#", "/groups#"), "/group path"),
            (url.split("&m=").next().unwrap().to_owned(), "m= part"),
            (
                format!("https://otm.example/group#m={id}"),
                "neither a secret nor a token",
            ),
            (url.replace(&id, "short"), "message ID"),
        ];
        for (text, reason) in cases {
            let e = GroupLink::parse(&text).unwrap_err().to_string();
            assert!(e.contains(reason), "{text}: {e}");
        }
        let twice = vec![link.members[0].clone(), link.members[0].clone()];
        assert!(GroupLink::new("https://otm.example", None, twice).is_err());
        let long = "x".repeat(MAX_LABEL_CHARS + 1);
        assert!(check_label(&long).is_err() && check_label("a\nb").is_err());
        assert!(GroupLink::new("https://otm.example", None, vec![]).is_err());
    }
}
