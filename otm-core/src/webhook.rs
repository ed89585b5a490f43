//! Webhooks on the wire: the signed JSON body otm sends for each event, and
//! the receiver's side, [`verify`], which needs nothing else of otm (a
//! receiver depends on otm-core alone, not on the sender's HTTP stack).
//!
//! otm signs the Standard Webhooks way (<https://www.standardwebhooks.com>):
//!
//! - `webhook-id`: the event's ID, the same on every retry: de-duplicate by it;
//! - `webhook-timestamp`: Unix seconds of this attempt: refuse old ones;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`,
//!   one per configured secret, space-separated, so a receiver can rotate
//!   its secret without missing an event.
//!
//! The body is a [`WebhookBody`]: `{"type": "message.opened", "timestamp":
//! "<RFC 3339>", "data": {"message_id": "…", "creator": {"kind": "token",
//! "name": "ci"}, "reference": "…"}}` (`creator` for every message stored
//! by this version on, `reference` only when the creator gave one). It
//! never holds content,
//! keys, proofs or tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Creator, CreatorInfo, EventKind, MessageId};

/// A webhook signing secret: `whsec_` and the base64 of 24 to 64 random
/// bytes (the Standard Webhooks form). Zeroized on drop; `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// A text that is not `whsec_<base64 of 24 to 64 bytes>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSecret;

impl std::fmt::Display for BadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a webhook secret is whsec_ and the base64 of 24 to 64 bytes")
    }
}

impl std::error::Error for BadSecret {}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (standard base64, padding optional).
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let b64 = text.trim().strip_prefix("whsec_").ok_or(BadSecret)?;
        let bytes = STANDARD
            .decode(b64)
            .or_else(|_| STANDARD_NO_PAD.decode(b64))
            .map_err(|_| BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(BadSecret);
        }
        Ok(WebhookSecret(Zeroizing::new(bytes)))
    }

    /// A fresh secret of 32 random bytes from the operating system.
    pub fn generate() -> crate::Result<Self> {
        let key = crate::Key::generate()?;
        Ok(WebhookSecret(Zeroizing::new(key.as_bytes().to_vec())))
    }

    /// The `whsec_…` text of this secret, to give the receiver.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("whsec_{}", STANDARD.encode(&*self.0)))
    }

    /// One `webhook-signature` entry: `v1,<base64 HMAC-SHA256(secret,
    /// "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.mac(id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The HMAC over `{id}.{timestamp}.{body}`, not yet finalized.
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The JSON body of one webhook: what otm sends and what [`verify`]
/// decodes. Its `type` is a string, not an [`EventKind`], so that a
/// receiver can read a body of a kind newer than itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// The event's kind ([`EventKind::as_str`]: `message.opened`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened, RFC 3339 in UTC with milliseconds.
    pub timestamp: String,
    /// What it happened to.
    pub data: WebhookData,
}

/// The `data` of a [`WebhookBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookData {
    /// The message's ID.
    pub message_id: String,
    /// Who created the message, as the service established it (absent for
    /// messages stored before otm kept it). A host acts on an event only
    /// for messages it made itself: by this, or by a message ID it kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<CreatorInfo>,
    /// The creator's reference, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl WebhookBody {
    /// The body of an event of `kind` about `message` at `at`.
    pub fn new(
        kind: EventKind,
        message: &MessageId,
        creator: Option<&Creator>,
        reference: Option<&str>,
        at: SystemTime,
    ) -> Self {
        WebhookBody {
            kind: kind.as_str().to_owned(),
            timestamp: humantime::format_rfc3339_millis(at).to_string(),
            data: WebhookData {
                message_id: message.to_string(),
                creator: creator.map(CreatorInfo::from),
                reference: reference.map(str::to_owned),
            },
        }
    }

    /// The JSON bytes to send (and sign).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings serialize")
    }
}

/// The most `webhook-signature` entries [`verify`] looks at (a sender
/// rotating secrets sends two).
pub const MAX_SIGNATURES: usize = 16;

/// How far a `webhook-timestamp` may be from the receiver's clock, either
/// way (the Standard Webhooks recommendation).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// An event received and verified by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The `webhook-id`: the same on every retry; de-duplicate by it.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// To which message.
    pub message: MessageId,
    /// Who created the message, as the body says it ([`Received::creator`]
    /// reads it).
    pub creator_info: Option<CreatorInfo>,
    /// The creator's reference, if it gave one.
    pub reference: Option<String>,
    /// When it happened.
    pub at: SystemTime,
}

impl Received {
    /// Who created the message, when the body says so in a form this
    /// version knows (`Some(Creator::Server)`: the host's own backend).
    pub fn creator(&self) -> Option<Creator> {
        self.creator_info.as_ref().and_then(CreatorInfo::creator)
    }
}

/// Why [`verify`] refused a request: answer it with a 4xx (but see
/// [`Rejected::UnknownType`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// A `webhook-id`, `webhook-timestamp` or `webhook-signature` header is
    /// missing or not text.
    MissingHeader(&'static str),
    /// The timestamp is not Unix seconds within the tolerance of now (a
    /// replay, or a clock far off).
    Stale,
    /// No signature is the HMAC of any of the receiver's secrets.
    BadSignature,
    /// Signed, but not an otm event body.
    BadBody(String),
    /// Signed, and an otm event, but of a type this version does not know
    /// (a newer sender): answer 2xx and ignore it, or the sender retries
    /// it until it gives up.
    UnknownType(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::MissingHeader(name) => write!(f, "the {name} header is missing"),
            Rejected::Stale => f.write_str("the webhook-timestamp is too far from now"),
            Rejected::BadSignature => f.write_str("no valid webhook-signature"),
            Rejected::BadBody(why) => write!(f, "the body is not an otm event: {why}"),
            Rejected::UnknownType(kind) => write!(f, "an event of an unknown type {kind:?}"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The receiving side: checks a webhook request's headers (`header` looks
/// one up by its lower-case name, with any HTTP library) and raw body
/// against the receiver's `secrets` (any one of them may have signed it, so
/// a receiver can rotate), refuses a timestamp further than `tolerance`
/// from now, and decodes the event. Signatures are compared in constant
/// time, one MAC per secret whatever the request holds. Check the raw body
/// bytes, before any JSON parsing of your own. A replay within the
/// tolerance passes: act once per [`Received::id`]. Answer
/// [`Rejected::UnknownType`] with a 2xx (a newer sender's event), the
/// others with a 4xx.
///
/// ```
/// use std::collections::HashMap;
/// use otm_core::webhook::{verify, WebhookSecret, DEFAULT_TOLERANCE};
///
/// fn receive(headers: &HashMap<String, String>, body: &[u8], secret: &WebhookSecret) -> u16 {
///     let header = |name: &str| headers.get(name).map(String::as_str);
///     match verify(std::slice::from_ref(secret), header, body, DEFAULT_TOLERANCE) {
///         Ok(event) => {
///             println!("{} {} {}", event.id, event.kind, event.message);
///             204
///         }
///         Err(otm_core::webhook::Rejected::UnknownType(_)) => 204,
///         Err(_) => 401,
///     }
/// }
/// let secret = WebhookSecret::generate().unwrap();
/// assert_eq!(receive(&HashMap::new(), b"{}", &secret), 401);
/// ```
pub fn verify<'h>(
    secrets: &[WebhookSecret],
    header: impl Fn(&'static str) -> Option<&'h str>,
    body: &[u8],
    tolerance: Duration,
) -> Result<Received, Rejected> {
    let get = |name: &'static str| header(name).ok_or(Rejected::MissingHeader(name));
    let id = get("webhook-id")?;
    // Signed as sent: the header's text, not a number formatted again.
    let timestamp = get("webhook-timestamp")?.trim();
    let seconds: u64 = timestamp.parse().map_err(|_| Rejected::Stale)?;
    let signatures = get("webhook-signature")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(seconds) > tolerance.as_secs() {
        return Err(Rejected::Stale);
    }
    let expected: Vec<CtOutput<Hmac<Sha256>>> = secrets
        .iter()
        .map(|secret| secret.mac(id, timestamp, body).finalize())
        .collect();
    let signed = signatures
        .split(' ')
        .take(MAX_SIGNATURES)
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .filter(|tag| tag.len() == 32)
        .any(|tag| {
            let tag = CtOutput::new(Output::<Hmac<Sha256>>::clone_from_slice(&tag));
            expected.contains(&tag)
        });
    if !signed {
        return Err(Rejected::BadSignature);
    }
    decode(id, body)
}

/// The event in a signed body.
fn decode(id: &str, body: &[u8]) -> Result<Received, Rejected> {
    let bad = |why: String| Rejected::BadBody(why);
    let body: WebhookBody = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let kind =
        EventKind::from_name(&body.kind).ok_or_else(|| Rejected::UnknownType(body.kind.clone()))?;
    Ok(Received {
        id: id.to_owned(),
        kind,
        message: body
            .data
            .message_id
            .parse()
            .map_err(|e: crate::Error| bad(e.to_string()))?,
        creator_info: body.data.creator,
        reference: body.data.reference,
        at: humantime::parse_rfc3339(&body.timestamp).map_err(|e| bad(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_only_in_the_standard_form() {
        let s = WebhookSecret::generate().unwrap();
        let again = WebhookSecret::parse(&s.to_text()).unwrap();
        assert_eq!(*again.to_text(), *s.to_text());
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
            &format!("whsec_{}", STANDARD.encode([7u8; 65])),
        ] {
            assert_eq!(WebhookSecret::parse(bad).err(), Some(BadSecret), "{bad}");
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_known_answer() {
        // The example of the Standard Webhooks libraries' tests; an
        // independent HMAC-SHA256 (Python's hmac module) gives the same.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_body_round_trips_and_omits_an_absent_reference() {
        let id = MessageId::generate().unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(1_764_633_600_123);
        let body = WebhookBody::new(EventKind::Opened, &id, None, None, at);
        let json: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(json["type"], "message.opened");
        assert_eq!(json["timestamp"], "2025-12-02T00:00:00.123Z");
        assert_eq!(json["data"].as_object().unwrap().len(), 1, "{json}");
        let secret = WebhookSecret::generate().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let bytes = body.to_json();
        let signature = secret.sign("evt_1", now, &bytes);
        let now = now.to_string();
        let header = |name: &str| match name {
            "webhook-id" => Some("evt_1"),
            "webhook-timestamp" => Some(now.as_str()),
            "webhook-signature" => Some(signature.as_str()),
            _ => None,
        };
        let got = verify(&[secret], header, &bytes, DEFAULT_TOLERANCE).unwrap();
        assert_eq!((got.kind, got.message, got.at), (EventKind::Opened, id, at));
        assert_eq!(got.creator(), None);
    }

    #[test]
    fn a_body_says_who_created_the_message() {
        let id = MessageId::generate().unwrap();
        let creator = Creator::Token("ci".into());
        let body = WebhookBody::new(
            EventKind::Opened,
            &id,
            Some(&creator),
            Some("t-1"),
            UNIX_EPOCH,
        );
        let json: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            json["data"]["creator"],
            serde_json::json!({"kind": "token", "name": "ci"})
        );
        let got = decode("evt_1", &body.to_json()).unwrap();
        assert_eq!(got.creator(), Some(creator));
        assert_eq!(got.reference.as_deref(), Some("t-1"));
    }
}
