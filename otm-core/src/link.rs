//! Share links: `{base}/otm/{id}#key={key}` and, for a passphrase-protected
//! message, `{base}/otm/{id}#key={key}&p=1`.
//!
//! The key lives in the fragment, which browsers never send to a server.

use zeroize::Zeroizing;

use crate::key::{Key, MessageId};
use crate::{Error, Result};

/// The path segment in front of the ID.
pub const LINK_PATH_PREFIX: &str = "/otm/";

/// A parsed share link. The key is zeroized on drop with the link.
///
/// ```
/// use otm_core::{Key, Link, MessageId};
/// let link = Link::new("https://example.org/", MessageId::generate()?, Key::generate()?, false)?;
/// let url = link.to_url();
/// assert!(url.starts_with("https://example.org/otm/"));
/// let back = Link::parse(&url)?;
/// assert_eq!(back.id, link.id);
/// assert_eq!(back.base, "https://example.org");
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Link {
    /// Scheme, host and any path before `/otm/`, without a trailing slash.
    pub base: String,
    /// The message ID.
    pub id: MessageId,
    /// The key from the fragment.
    pub key: Key,
    /// Whether the link says the message needs a passphrase.
    pub passphrase: bool,
}

/// The key part of a link: what follows `#`.
#[derive(Clone, Debug)]
pub struct Fragment {
    /// The key.
    pub key: Key,
    /// Whether a passphrase is needed.
    pub passphrase: bool,
}

impl Fragment {
    /// The fragment text without `#`, zeroized on drop.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(Key::TEXT_LEN + 8));
        text.push_str("key=");
        text.push_str(&self.key.to_base64url());
        if self.passphrase {
            text.push_str("&p=1");
        }
        text
    }

    /// Parses a fragment strictly. Accepts `#key=…[&p=1]`, the same without
    /// `#`, or a bare 43-character key (as typed in by hand).
    pub fn parse(text: &str) -> Result<Fragment> {
        let text = text.trim();
        Self::parse_exact(text.strip_prefix('#').unwrap_or(text))
    }

    /// Parses exactly the text after `#`: no trimming, no second `#`.
    fn parse_exact(text: &str) -> Result<Fragment> {
        if text.is_empty() {
            return Err(bad("the key is missing"));
        }
        if !text.contains('=') {
            let key = Key::from_base64url(text).map_err(|_| bad("the key is not a valid key"))?;
            return Ok(Fragment {
                key,
                passphrase: false,
            });
        }
        let mut key = None;
        let mut passphrase = None;
        for part in text.split('&') {
            let (name, value) = part
                .split_once('=')
                .ok_or(bad("a fragment parameter has no value"))?;
            match name {
                "key" if key.is_some() => return Err(bad("the key is given twice")),
                "key" => {
                    key = Some(
                        Key::from_base64url(value)
                            .map_err(|_| bad("the key is not a valid key"))?,
                    );
                }
                "p" if passphrase.is_some() => return Err(bad("p is given twice")),
                "p" => {
                    passphrase = Some(match value {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad("p must be 0 or 1")),
                    })
                }
                _ => return Err(bad("unknown fragment parameter")),
            }
        }
        Ok(Fragment {
            key: key.ok_or(bad("the key is missing"))?,
            passphrase: passphrase.unwrap_or(false),
        })
    }
}

impl Link {
    /// A link for `base` (an `http://` or `https://` URL, trailing `/` ignored).
    pub fn new(base: &str, id: MessageId, key: Key, passphrase: bool) -> Result<Link> {
        let base = check_base(base.trim().trim_end_matches('/'))?;
        Ok(Link {
            base: base.to_owned(),
            id,
            key,
            passphrase,
        })
    }

    /// The path of the reveal page, `/otm/{id}` (relative to `base`).
    pub fn path(&self) -> String {
        format!("{LINK_PATH_PREFIX}{}", self.id)
    }

    /// The whole link, zeroized on drop (it carries the key).
    pub fn to_url(&self) -> Zeroizing<String> {
        let fragment = Fragment {
            key: self.key.clone(),
            passphrase: self.passphrase,
        };
        let mut url = Zeroizing::new(String::with_capacity(self.base.len() + 100));
        url.push_str(&self.base);
        url.push_str(&self.path());
        url.push('#');
        url.push_str(&fragment.to_text());
        url
    }

    /// Parses a full link. A query string after the ID is ignored (some chat
    /// apps add one); a missing or malformed fragment, ID or scheme is an error.
    pub fn parse(text: &str) -> Result<Link> {
        let text = text.trim();
        let (url, fragment) = text
            .split_once('#')
            .ok_or(bad("the link has no #key= part (it may have been cut off)"))?;
        let url = url.split_once('?').map_or(url, |(before, _)| before);
        let url = url.strip_suffix('/').unwrap_or(url);
        let at = url
            .rfind(LINK_PATH_PREFIX)
            .ok_or(bad("the link has no /otm/ path"))?;
        let base = check_base(url[..at].trim_end_matches('/'))?;
        let id: MessageId = url[at + LINK_PATH_PREFIX.len()..]
            .parse()
            .map_err(|_| bad("the message ID in the link is malformed"))?;
        let fragment = Fragment::parse_exact(fragment)?;
        Ok(Link {
            base: base.to_owned(),
            id,
            key: fragment.key,
            passphrase: fragment.passphrase,
        })
    }
}

pub(crate) fn check_base(base: &str) -> Result<&str> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or(bad("the link must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("the link has no host"));
    }
    if base.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the link contains whitespace or control characters"));
    }
    if base.contains(['?', '#']) {
        return Err(bad("the base URL must not contain ? or #"));
    }
    Ok(base)
}

pub(crate) fn bad(reason: &'static str) -> Error {
    Error::BadLink { reason }
}

/// The path segment in front of the ID in a sender's status link.
pub const MANAGE_PATH_PREFIX: &str = "/manage/";

/// The sender's private status link: `{base}/manage/{id}#token={token}`.
/// The token is in the fragment, so it is not sent when the page loads.
///
/// ```
/// use otm_core::{ManageLink, ManageToken, MessageId};
/// let link = ManageLink::new("https://otm.example", MessageId::generate()?, ManageToken::generate()?)?;
/// let back = ManageLink::parse(&link.to_url())?;
/// assert_eq!(back.id, link.id);
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ManageLink {
    /// Scheme, host and any path before `/manage/`, without a trailing slash.
    pub base: String,
    /// The message ID.
    pub id: MessageId,
    /// The management token.
    pub token: crate::ManageToken,
}

impl ManageLink {
    /// A status link for `base`.
    pub fn new(base: &str, id: MessageId, token: crate::ManageToken) -> Result<Self> {
        let base = check_base(base.trim().trim_end_matches('/'))?;
        Ok(ManageLink {
            base: base.to_owned(),
            id,
            token,
        })
    }

    /// The whole link, zeroized on drop.
    pub fn to_url(&self) -> Zeroizing<String> {
        let mut url = Zeroizing::new(String::with_capacity(self.base.len() + 90));
        url.push_str(&self.base);
        url.push_str(MANAGE_PATH_PREFIX);
        url.push_str(&self.id.to_string());
        url.push_str("#token=");
        url.push_str(&self.token.to_base64url());
        url
    }

    /// Parses a status link strictly.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (url, fragment) = text
            .split_once('#')
            .ok_or(bad("the status link has no #token= part"))?;
        let url = url.split_once('?').map_or(url, |(before, _)| before);
        let url = url.strip_suffix('/').unwrap_or(url);
        let at = url
            .rfind(MANAGE_PATH_PREFIX)
            .ok_or(bad("the status link has no /manage/ path"))?;
        let base = check_base(url[..at].trim_end_matches('/'))?;
        let id: MessageId = url[at + MANAGE_PATH_PREFIX.len()..]
            .parse()
            .map_err(|_| bad("the message ID in the status link is malformed"))?;
        let token = fragment
            .strip_prefix("token=")
            .and_then(|t| crate::ManageToken::from_base64url(t).ok())
            .ok_or(bad("the status link's token is malformed"))?;
        Ok(ManageLink {
            base: base.to_owned(),
            id,
            token,
        })
    }
}
