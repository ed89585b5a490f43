//! API tokens for machine clients: `Authorization: Bearer otm_…` on a
//! create request. The server keeps only each token's SHA-256, from a file
//! (`--api-tokens-file`) or the environment (`OTM_API_TOKENS`), one entry a
//! line (`;` also separates entries):
//!
//! ```text
//! # NAME  SCOPES  SHA-256 OF THE TOKEN (base64url)
//! ci      create  q5Jp3n2m0p…
//! ```
//!
//! `otm-server token NAME` makes a token and prints its entry. The only
//! scope is `create` (status and burn take each message's own management
//! token). With `--create-requires-token`, only token holders may create
//! (browsers included); without it a token is optional, but a wrong one is
//! refused rather than ignored.

use async_trait::async_trait;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_http::policy::{CreateLimits, CreatePolicy, Decision};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token, so that a leaked one is easy to recognise.
const PREFIX: &str = "otm_";

/// One configured token.
#[derive(Debug)]
struct Entry {
    name: String,
    digest: [u8; 32],
}

/// The configured tokens and whether one is needed to create.
#[derive(Debug)]
pub(crate) struct TokenPolicy {
    entries: Vec<Entry>,
    required: bool,
}

impl TokenPolicy {
    /// Reads the entries of `text` (a file's or `OTM_API_TOKENS`'s), naming
    /// `source` and the line in errors.
    pub(crate) fn parse(text: &str, source: &str, required: bool) -> Result<Self, String> {
        let mut entries = Vec::new();
        let lines = text.split(['\n', ';']).enumerate();
        for (i, line) in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("{source}, entry {}: {why}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, digest] = fields[..] else {
                return Err(bad(
                    "expected NAME SCOPES SHA256 (otm-server token NAME prints one)",
                ));
            };
            if scopes.split(',').any(|s| s != "create") {
                return Err(bad("the only scope is `create`"));
            }
            let digest = URL_SAFE_NO_PAD
                .decode(digest)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| bad("the SHA-256 is not 43 base64url characters"))?;
            if entries.iter().any(|e: &Entry| e.name == name) {
                return Err(bad("the name is used twice"));
            }
            entries.push(Entry {
                name: name.to_owned(),
                digest,
            });
        }
        if required && entries.is_empty() {
            return Err(format!(
                "--create-requires-token without any token in {source}"
            ));
        }
        Ok(TokenPolicy { entries, required })
    }

    /// Adds the entries of another source (a name used twice across
    /// sources is allowed: each entry is checked).
    pub(crate) fn extend(&mut self, other: TokenPolicy) {
        self.entries.extend(other.entries);
        self.required |= other.required;
    }

    /// Makes a token necessary to create.
    pub(crate) fn require(&mut self) {
        self.required = true;
    }

    /// How many tokens are configured.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the token `presented`, compared with every entry in
    /// constant time.
    fn find(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry.name.as_str());
            }
        }
        found
    }
}

#[async_trait]
impl CreatePolicy for TokenPolicy {
    async fn decide(&self, request: &Parts) -> Decision {
        // A header that is there but holds no bearer token is a wrong
        // token, not a missing one.
        let presented = request
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .unwrap_or_default()
            });
        match presented {
            None if self.required => Decision::deny(
                "This server creates messages for API token holders only: send \
                 Authorization: Bearer <token>.",
            ),
            None => Decision::allow(CreateLimits::default()),
            Some(token) => match self.find(token) {
                Some(name) => {
                    tracing::debug!(token = name, "create with an API token");
                    Decision::allow(CreateLimits::default())
                }
                None => Decision::deny("This API token is not valid here."),
            },
        }
    }
}

/// A new token and its entry line for `name`.
pub(crate) fn new_token(name: &str) -> Result<(String, String), String> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ';' || c == '#') {
        return Err("a token name is one word (no spaces, ; or #)".into());
    }
    let key = otm_core::Key::generate().map_err(|e| e.to_string())?;
    let token = format!("{PREFIX}{}", &*key.to_base64url());
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    Ok((token, format!("{name} create {digest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = axum::http::Request::post("/api/v1/messages");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn tokens_are_checked_by_their_digest() {
        let (token, entry) = new_token("ci").unwrap();
        assert!(token.starts_with("otm_") && token.len() == 47, "{token}");
        let text = format!("# tokens\n{entry}\n\n");
        let optional = TokenPolicy::parse(&text, "test", false).unwrap();
        let required = TokenPolicy::parse(&text, "test", true).unwrap();
        let bearer = format!("Bearer {token}");
        let other = format!("Bearer {}", new_token("x").unwrap().0);
        let allowed = |d: Decision| matches!(d, Decision::Allow(_));
        assert!(allowed(required.decide(&parts(Some(&bearer))).await));
        assert!(!allowed(required.decide(&parts(None)).await));
        assert!(!allowed(required.decide(&parts(Some(&other))).await));
        assert!(allowed(optional.decide(&parts(None)).await));
        // A wrong token is refused even where none is needed.
        assert!(!allowed(optional.decide(&parts(Some(&other))).await));
        assert!(!allowed(optional.decide(&parts(Some("Bearer "))).await));
        assert!(!allowed(
            optional.decide(&parts(Some("Basic dXNlcjpwYXNz"))).await
        ));
        let lower = format!("bearer {token}");
        assert!(allowed(required.decide(&parts(Some(&lower))).await));
    }

    #[test]
    fn entries_are_checked() {
        let (_, entry) = new_token("ci").unwrap();
        assert_eq!(
            TokenPolicy::parse(
                &format!("{entry};{}", new_token("b").unwrap().1),
                "env",
                false
            )
            .unwrap()
            .len(),
            2
        );
        for bad in [
            "ci create",
            "ci manage AAAA",
            "ci create notbase64!",
            &format!("{entry}\n{entry}"),
        ] {
            assert!(TokenPolicy::parse(bad, "file", false).is_err(), "{bad}");
        }
        let err = TokenPolicy::parse("# none", "file", true).unwrap_err();
        assert!(err.contains("--create-requires-token"), "{err}");
        assert!(new_token("two words").is_err());
    }
}
