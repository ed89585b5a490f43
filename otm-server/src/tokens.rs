//! API tokens for machine clients: `Authorization: Bearer otm_…`. The
//! server keeps only each token's SHA-256, from a file (`--api-tokens-file`)
//! or the environment (`OTM_API_TOKENS`), one entry a line (`;` also
//! separates entries):
//!
//! ```text
//! # NAME  SCOPES         SHA-256 OF THE TOKEN (base64url)  [QUOTA]
//! ci      create         q5Jp3n2m0p…
//! deploy  create,manage  Zk1vQ3J0c…                        100/1h
//! ```
//!
//! Scopes:
//! - `create`: the token may create messages.
//! - `manage`: the token may show and burn, by ID, the messages it created
//!   while it had this scope, without their management tokens: their tokens
//!   are derived ([`otm_core::ManageSecret`]) from a secret that is itself
//!   derived from the token and the server's manage key
//!   (`OTM_MANAGE_KEY`, `otm-server manage-key` makes one; the same on
//!   every replica), so nothing about the token is stored with a message
//!   and the token alone computes nothing: once its entry is removed, its
//!   holder can neither present it nor derive a message's management token
//!   from it. Removing `create` keeps a token able to manage what it made
//!   by ID. A server with a `manage` token and no manage key refuses to
//!   start.
//!
//! A quota `N/PERIOD` (`100/1h`, `5000/1d`) limits the token's creates per
//! window, counted in the store across replicas, per token (entries that
//! share a name count apart).
//!
//! `otm-server token NAME` makes a token and prints its entry. With
//! `--create-requires-token`, only token holders may create (browsers
//! included); without it a token is optional, but a wrong one is refused
//! rather than ignored.

use std::net::IpAddr;

use async_trait::async_trait;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use otm_core::ManageSecret;
use otm_http::policy::{CreateAsk, CreateLimits, CreatePolicy, Decision, Refusal};
use otm_http::{Authorization, Caller, TokenHolder};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The prefix of every token, so that a leaked one is easy to recognise.
const PREFIX: &str = "otm_";

/// The prefix of a manage key.
const KEY_PREFIX: &str = "otmk_";

/// The server's manage key: 32 random bytes, the same on every replica,
/// from which (with an API token) the secret that token manages its
/// messages with is derived. Zeroized on drop; `Debug` redacted.
pub(crate) struct ManageKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ManageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManageKey(..)")
    }
}

impl ManageKey {
    /// A fresh key in its text form, `otmk_` and 43 base64url characters.
    pub(crate) fn generate() -> Result<String, String> {
        let key = otm_core::Key::generate().map_err(|e| e.to_string())?;
        Ok(format!("{KEY_PREFIX}{}", &*key.to_base64url()))
    }

    /// A key from its text form (surrounding whitespace ignored, so a file
    /// with a final newline reads as it is meant); `source` names it in
    /// errors, which never quote it.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{source}: a manage key is `otmk_` and 43 base64url characters \
                 (otm-server manage-key makes one)"
            )
        };
        let body = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?);
        if bytes.len() != 32 {
            return Err(bad());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        Ok(ManageKey(key))
    }

    /// The secret the API token `token` manages its messages with:
    /// `HMAC-SHA256(key, "otm api token manage v2" || 0x00 || token)`.
    fn secret_for(&self, token: &str) -> ManageSecret {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        mac.update(b"otm api token manage v2\0");
        mac.update(token.as_bytes());
        let mut derived = Zeroizing::new([0u8; 32]);
        derived.copy_from_slice(&mac.finalize().into_bytes());
        ManageSecret::new(&derived[..]).expect("32 bytes are long enough")
    }
}

/// One configured token.
#[derive(Debug)]
struct Entry {
    name: String,
    digest: [u8; 32],
    create: bool,
    manage: bool,
    /// Creates per window.
    quota: Option<(u32, std::time::Duration)>,
}

/// The scopes a token may have.
const SCOPES: &[&str] = &["create", "manage"];

/// The configured tokens and whether one is needed to create.
#[derive(Debug)]
pub(crate) struct TokenPolicy {
    entries: Vec<Entry>,
    required: bool,
    manage_key: Option<ManageKey>,
    /// Who may ask for a secret (`--requests`).
    askers: Askers,
}

/// Who may create requests for a secret (`--requests`): a request page on
/// a trusted domain is what a phishing page would want, so an operator
/// can keep it to API token holders, or turn it off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Askers {
    /// Whoever may create messages.
    #[default]
    Anyone,
    /// Holders of an API token with the create scope only.
    TokenHolders,
    /// Nobody: the server takes no requests.
    Off,
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
            let (name, scopes, digest, quota) =
                match fields[..] {
                    [name, scopes, digest] => (name, scopes, digest, None),
                    [name, scopes, digest, quota] => (name, scopes, digest, Some(quota)),
                    _ => return Err(bad(
                        "expected NAME SCOPES SHA256 [QUOTA] (otm-server token NAME prints one)",
                    )),
                };
            let scopes: Vec<&str> = scopes.split(',').collect();
            if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(s)) {
                return Err(bad(&format!(
                    "unknown scope `{unknown}` (scopes: create, manage, comma-separated)"
                )));
            }
            let quota = quota.map(parse_quota).transpose().map_err(|e| bad(&e))?;
            if quota.is_some() && !scopes.contains(&"create") {
                return Err(bad("a quota limits creates: the token has no create scope"));
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
                create: scopes.contains(&"create"),
                manage: scopes.contains(&"manage"),
                quota,
            });
        }
        if required && !entries.iter().any(|e| e.create) {
            return Err(format!(
                "--create-requires-token without any create token in {source}"
            ));
        }
        Ok(TokenPolicy {
            entries,
            required,
            manage_key: None,
            askers: Askers::Anyone,
        })
    }

    /// Adds the entries of another source (a name used twice across
    /// sources is allowed: each entry is checked).
    pub(crate) fn extend(&mut self, other: TokenPolicy) {
        self.entries.extend(other.entries);
        self.required |= other.required;
    }

    /// Sets the manage key; a policy with a `manage` token needs one
    /// ([`check_manage_key`](Self::check_manage_key)).
    pub(crate) fn set_manage_key(&mut self, key: ManageKey) {
        self.manage_key = Some(key);
    }

    /// Refuses a `manage` token without a manage key, naming the fix.
    pub(crate) fn check_manage_key(&self) -> Result<(), String> {
        match self.entries.iter().find(|e| e.manage) {
            Some(entry) if self.manage_key.is_none() => Err(format!(
                "the API token `{}` has the manage scope, which needs the server's manage \
                 key: make one with `otm-server manage-key` and give the same one to every \
                 replica in OTM_MANAGE_KEY (or a file named by --manage-key-file)",
                entry.name
            )),
            _ => Ok(()),
        }
    }

    /// Makes a token necessary to create.
    pub(crate) fn require(&mut self) {
        self.required = true;
    }

    /// Sets who may ask for a secret.
    pub(crate) fn with_askers(mut self, askers: Askers) -> Self {
        self.askers = askers;
        self
    }

    /// How many tokens are configured.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether some token may create.
    pub(crate) fn any_create(&self) -> bool {
        self.entries.iter().any(|e| e.create)
    }

    /// The entry of the token `presented`, compared with every entry in
    /// constant time.
    fn find(&self, presented: &str) -> Option<&Entry> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
    }
}

/// A quota `N/PERIOD`: `100/1h`, `5000/1d`.
fn parse_quota(text: &str) -> Result<(u32, std::time::Duration), String> {
    let bad = || format!("the quota `{text}` is not N/PERIOD, as in 100/1h");
    let (max, per) = text.split_once('/').ok_or_else(bad)?;
    let max: u32 = max.parse().map_err(|_| bad())?;
    let per = humantime::parse_duration(per).map_err(|_| bad())?;
    if per < std::time::Duration::from_secs(1) {
        return Err(format!("the quota `{text}`: a period is at least 1s"));
    }
    Ok((max, per))
}

impl TokenPolicy {
    /// The entry whose digest is `key` ([`TokenHolder::key`]): a token that
    /// was already found, so the comparison is not secret.
    fn by_key(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| URL_SAFE_NO_PAD.encode(e.digest) == key)
    }
}

#[async_trait]
impl CreatePolicy for TokenPolicy {
    /// An API token's holder, or the anonymous client without one. A
    /// credential that is not a configured token is refused, even where
    /// none is needed.
    async fn identify(&self, request: &Parts, client: IpAddr) -> Result<Caller, Refusal> {
        let token = match Authorization::of(&request.headers) {
            Authorization::Absent => return Ok(Caller::Anonymous(client)),
            Authorization::Other => return Err(Refusal::new("This API token is not valid here.")),
            Authorization::Bearer(token) => token,
        };
        let entry = self
            .find(token)
            .ok_or_else(|| Refusal::new("This API token is not valid here."))?;
        // Counted per token (its digest), not per name: two entries may
        // share a name.
        let mut holder = TokenHolder::new(entry.name.clone(), URL_SAFE_NO_PAD.encode(entry.digest));
        if entry.manage {
            // The server refuses to start with a manage token and no key.
            let key = self
                .manage_key
                .as_ref()
                .ok_or_else(|| Refusal::new("This server has no manage key."))?;
            holder = holder.with_manage(key.secret_for(token));
        }
        tracing::debug!(token = entry.name, "request with an API token");
        Ok(Caller::ApiToken(holder))
    }

    async fn decide(&self, caller: &Caller, ask: &CreateAsk<'_>) -> Decision {
        if ask.request {
            match (self.askers, caller) {
                (Askers::Off, _) => {
                    return Decision::deny("This server takes no requests for a secret.")
                }
                (Askers::TokenHolders, Caller::Anonymous(_)) => {
                    return Decision::deny(
                        "On this server only API token holders may ask for a secret: send \
                         Authorization: Bearer <token>.",
                    )
                }
                _ => {}
            }
        }
        match caller {
            Caller::Anonymous(_) if self.required => Decision::deny(
                "This server creates messages for API token holders only: send \
                 Authorization: Bearer <token>.",
            ),
            Caller::Anonymous(_) | Caller::Server => Decision::allow(CreateLimits::default()),
            Caller::ApiToken(holder) => match self.by_key(&holder.key) {
                Some(entry) if entry.create => {
                    let mut limits = CreateLimits::default();
                    if let Some((max, per)) = entry.quota {
                        limits = limits.with_quota(format!("token:{}", holder.key), max, per);
                    }
                    if let Some(secret) = &holder.manage {
                        limits = limits.with_manage_secret(secret.clone());
                    }
                    Decision::allow(limits)
                }
                Some(_) => Decision::deny("This API token may not create messages."),
                None => Decision::deny("This API token is not valid here."),
            },
            _ => Decision::deny("This server does not know this caller."),
        }
    }

    fn counts_quotas(&self) -> bool {
        self.entries.iter().any(|e| e.quota.is_some())
    }
}

/// A new token and its entry line for `name` with `scopes`
/// (comma-separated).
pub(crate) fn new_token(name: &str, scopes: &str) -> Result<(String, String), String> {
    if scopes.split(',').any(|s| !SCOPES.contains(&s)) {
        return Err(format!(
            "scopes are create and manage, comma-separated, not `{scopes}`"
        ));
    }
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ';' || c == '#') {
        return Err("a token name is one word (no spaces, ; or #)".into());
    }
    let key = otm_core::Key::generate().map_err(|e| e.to_string())?;
    let token = format!("{PREFIX}{}", &*key.to_base64url());
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    Ok((token, format!("{name} {scopes} {digest}")))
}

/// What the server decides for the create request `request`: identified,
/// then decided, as the service does.
#[cfg(test)]
async fn decide_request(policy: &TokenPolicy, request: &Parts) -> Decision {
    let client = IpAddr::from([192, 0, 2, 1]);
    let ask = CreateAsk::new(100);
    match policy.identify(request, client).await {
        Ok(caller) => policy.decide(&caller, &ask).await,
        Err(refusal) => Decision::deny(refusal.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = axum::http::Request::post("/api/v1/messages");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn tokens_are_checked_by_their_digest() {
        let (token, entry) = new_token("ci", "create").unwrap();
        assert!(token.starts_with("otm_") && token.len() == 47, "{token}");
        let text = format!("# tokens\n{entry}\n\n");
        let optional = TokenPolicy::parse(&text, "test", false).unwrap();
        let required = TokenPolicy::parse(&text, "test", true).unwrap();
        let bearer = format!("Bearer {token}");
        let other = format!("Bearer {}", new_token("x", "create").unwrap().0);
        let allowed = |d: Decision| matches!(d, Decision::Allow(_));
        assert!(allowed(
            decide_request(&required, &parts(Some(&bearer))).await
        ));
        assert!(!allowed(decide_request(&required, &parts(None)).await));
        assert!(!allowed(
            decide_request(&required, &parts(Some(&other))).await
        ));
        assert!(allowed(decide_request(&optional, &parts(None)).await));
        // A wrong token is refused even where none is needed.
        assert!(!allowed(
            decide_request(&optional, &parts(Some(&other))).await
        ));
        assert!(!allowed(
            decide_request(&optional, &parts(Some("Bearer "))).await
        ));
        assert!(!allowed(
            decide_request(&optional, &parts(Some("Basic dXNlcjpwYXNz"))).await
        ));
        let lower = format!("bearer {token}");
        assert!(allowed(
            decide_request(&required, &parts(Some(&lower))).await
        ));
    }

    #[test]
    fn entries_are_checked() {
        let (_, entry) = new_token("ci", "create").unwrap();
        assert_eq!(
            TokenPolicy::parse(
                &format!("{entry};{}", new_token("b", "create").unwrap().1),
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
            "ci read q5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5J",
            "ci create q5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5J 10",
            "ci create q5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5J 10/0s",
            "ci manage q5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5J 10/1h",
            "ci create q5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5Jp3n2m0pq5J 10/1h extra",
            "ci create notbase64!",
            &format!("{entry}\n{entry}"),
        ] {
            assert!(TokenPolicy::parse(bad, "file", false).is_err(), "{bad}");
        }
        let err = TokenPolicy::parse("# none", "file", true).unwrap_err();
        assert!(err.contains("--create-requires-token"), "{err}");
        let (_, manage_only) = new_token("m", "manage").unwrap();
        assert!(TokenPolicy::parse(&manage_only, "file", true).is_err());
        let quota = TokenPolicy::parse(&format!("{entry} 100/1h"), "file", false).unwrap();
        assert_eq!(
            quota.entries[0].quota,
            Some((100, Duration::from_secs(3600)))
        );
        assert!(new_token("two words", "create").is_err());
        assert!(new_token("ci", "read").is_err());
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    fn parts(method: &str, auth: &str) -> Parts {
        axum::http::Request::builder()
            .method(method)
            .uri("/api/v1/messages")
            .header("authorization", auth)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[tokio::test]
    async fn scopes_decide_create_and_manage() {
        let (both, both_entry) = new_token("both", "create,manage").unwrap();
        let (create, create_entry) = new_token("create", "create").unwrap();
        let (manage, manage_entry) = new_token("manage", "manage").unwrap();
        let text = format!("{both_entry} 5/1h\n{create_entry}\n{manage_entry}\n");
        let mut policy = TokenPolicy::parse(&text, "test", false).unwrap();
        let err = policy.check_manage_key().unwrap_err();
        assert!(
            err.contains("`both`") && err.contains("OTM_MANAGE_KEY"),
            "{err}"
        );
        let key_text = ManageKey::generate().unwrap();
        assert!(key_text.starts_with("otmk_") && key_text.len() == 48);
        policy.set_manage_key(ManageKey::parse(&format!("{key_text}\n"), "test").unwrap());
        policy.check_manage_key().unwrap();
        let bearer = |t: &str| format!("Bearer {t}");

        let Decision::Allow(limits) = decide_request(&policy, &parts("POST", &bearer(&both))).await
        else {
            panic!("create,manage may create");
        };
        let secret = limits
            .manage_secret
            .clone()
            .expect("its messages are managed by it");
        // Keyed by the server: the token alone derives nothing, and another
        // key derives another secret.
        assert_ne!(secret, ManageSecret::new(both.as_bytes()).unwrap());
        let other_key = ManageKey::parse(&ManageKey::generate().unwrap(), "test").unwrap();
        assert_ne!(secret, other_key.secret_for(&both));
        assert_eq!(
            secret,
            ManageKey::parse(&key_text, "test")
                .unwrap()
                .secret_for(&both)
        );
        let quota = limits.quota.expect("its quota");
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(both.as_bytes()));
        assert_eq!(quota.creator, format!("token:{digest}"));
        assert_eq!(quota.max, 5);

        let Decision::Allow(limits) =
            decide_request(&policy, &parts("POST", &bearer(&create))).await
        else {
            panic!("create may create");
        };
        assert!(limits.manage_secret.is_none() && limits.quota.is_none());
        assert!(matches!(
            decide_request(&policy, &parts("POST", &bearer(&manage))).await,
            Decision::Deny { .. }
        ));

        let secret_of = |t: String| {
            let policy = &policy;
            async move {
                let client = IpAddr::from([192, 0, 2, 1]);
                match policy.identify(&parts("GET", &bearer(&t)), client).await {
                    Ok(caller) => caller.manage_secret().cloned(),
                    Err(_) => None,
                }
            }
        };
        assert_eq!(secret_of(both.clone()).await, Some(secret));
        assert!(secret_of(manage.clone()).await.is_some());
        assert!(secret_of(create).await.is_none(), "create only");
        assert!(secret_of(format!("{both}x")).await.is_none(), "unknown");
    }

    #[test]
    fn manage_keys_are_checked_and_never_quoted() {
        let good = ManageKey::generate().unwrap();
        for bad in [
            "",
            "otmk_",
            &good[..good.len() - 1],
            &good.replace("otmk_", "otm_"),
            &format!("{good}A"),
            "otmk_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            let err = ManageKey::parse(bad, "OTM_MANAGE_KEY").unwrap_err();
            assert!(err.starts_with("OTM_MANAGE_KEY: "), "{err}");
            assert!(bad.len() < 8 || !err.contains(&bad[5..]), "{err}");
        }
        let key = ManageKey::parse(&format!("  {good}\n"), "file").unwrap();
        assert_eq!(format!("{key:?}"), "ManageKey(..)");
    }
}
