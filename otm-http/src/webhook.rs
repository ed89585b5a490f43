//! Signed webhooks (feature `webhooks`): an [`EventSink`] that POSTs each
//! event as JSON to one URL from the operator's configuration (never from a
//! request), signed the Standard Webhooks way
//! (<https://www.standardwebhooks.com>):
//!
//! - `webhook-id`: [`Event::id`], the same on every retry: de-duplicate by it;
//! - `webhook-timestamp`: Unix seconds of this attempt: refuse old ones;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`,
//!   one per configured secret, space-separated, so a receiver can rotate
//!   its secret without missing an event.
//!
//! The body is `{"type": "message.opened", "timestamp": "<RFC 3339>",
//! "data": {"message_id": "…", "reference": "…"}}` (`reference` only when
//! the sender gave one). It never holds content, keys, proofs or tokens.
//! A 2xx answer is a delivery; anything else, a redirect included (never
//! followed), is retried by the dispatcher.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, Mac};
use otm_core::Zeroizing;
use otm_store::BoxError;
use sha2::Sha256;

use axum::http::HeaderMap;

use crate::events::{Event, EventKind, EventSink};

/// A webhook signing secret: `whsec_` and the base64 of 24 to 64 random
/// bytes (the Standard Webhooks form).
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Why a webhook could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookError {
    /// The secret is not `whsec_<base64 of 24 to 64 bytes>`.
    BadSecret,
    /// The URL is not an absolute `http://` or `https://` URL (the text
    /// says why, without the URL).
    BadUrl(String),
    /// No secret was given: events are never sent unsigned.
    NoSecret,
    /// The HTTP client could not be built.
    Client(String),
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::BadSecret => {
                f.write_str("a webhook secret is whsec_ and the base64 of 24 to 64 bytes")
            }
            WebhookError::BadUrl(why) => write!(f, "the webhook URL {why}"),
            WebhookError::NoSecret => f.write_str("a webhook needs at least one signing secret"),
            WebhookError::Client(e) => write!(f, "the webhook HTTP client: {e}"),
        }
    }
}

impl std::error::Error for WebhookError {}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (standard base64, padding optional).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(WebhookError::BadSecret)?;
        let bytes = STANDARD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .map_err(|_| WebhookError::BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(WebhookError::BadSecret);
        }
        Ok(WebhookSecret(Zeroizing::new(bytes)))
    }

    /// A fresh secret of 32 random bytes from the operating system.
    pub fn generate() -> Result<Self, otm_core::Error> {
        let key = otm_core::Key::generate()?;
        Ok(WebhookSecret(Zeroizing::new(key.as_bytes().to_vec())))
    }

    /// The `whsec_…` text of this secret, to give the receiver.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("whsec_{}", STANDARD.encode(&*self.0)))
    }

    /// `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
    fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
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
    pub message: otm_core::MessageId,
    /// The sender's reference, if it gave one.
    pub reference: Option<String>,
    /// When it happened.
    pub at: SystemTime,
}

/// Why [`verify`] refused a request: answer it with a 4xx.
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

/// The receiving side: checks a webhook request's headers and raw body
/// against the receiver's `secrets` (any one of them may have signed it,
/// so a receiver can rotate), refuses a timestamp further than `tolerance`
/// from now, and decodes the event. Signatures are compared in constant
/// time. Check the raw body bytes, before any JSON parsing of your own. A
/// replay within the tolerance passes: act once per [`Received::id`].
/// Answer [`Rejected::UnknownType`] with a 2xx (a newer sender's event),
/// the others with a 4xx.
///
/// ```
/// use otm_http::webhook::{verify, WebhookSecret, DEFAULT_TOLERANCE};
/// # fn receive(headers: &axum::http::HeaderMap, body: &[u8], secret: &WebhookSecret) {
/// match verify(std::slice::from_ref(secret), headers, body, DEFAULT_TOLERANCE) {
///     Ok(event) => println!("{} {:?}", event.id, event.kind),
///     Err(rejected) => eprintln!("refused: {rejected}"), // answer 401
/// }
/// # }
/// ```
pub fn verify(
    secrets: &[WebhookSecret],
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
) -> Result<Received, Rejected> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(Rejected::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    // Signed as sent: the header's text, not a number formatted again.
    let timestamp = header("webhook-timestamp")?.trim();
    let seconds: u64 = timestamp.parse().map_err(|_| Rejected::Stale)?;
    let signatures = header("webhook-signature")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(seconds) > tolerance.as_secs() {
        return Err(Rejected::Stale);
    }
    // One MAC per secret, whatever the header holds; then constant-time
    // comparisons with at most MAX_SIGNATURES of its entries.
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
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "type")]
        kind: String,
        timestamp: String,
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        message_id: String,
        reference: Option<String>,
    }
    let bad = |why: String| Rejected::BadBody(why);
    let body: Body = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let kind = EventKind::ALL
        .into_iter()
        .find(|k| k.as_str() == body.kind)
        .ok_or_else(|| Rejected::UnknownType(body.kind.clone()))?;
    Ok(Received {
        id: id.to_owned(),
        kind,
        message: body
            .data
            .message_id
            .parse()
            .map_err(|e: otm_core::Error| bad(e.to_string()))?,
        reference: body.data.reference,
        at: humantime::parse_rfc3339(&body.timestamp).map_err(|e| bad(e.to_string()))?,
    })
}

/// Events as signed POSTs to one URL. Neither its `Debug` nor its errors
/// show the URL: webhook URLs often carry a secret of the receiver's in the
/// path or query.
pub struct Webhook {
    url: reqwest::Url,
    secrets: Vec<WebhookSecret>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Events to `url`, signed with every one of `secrets` (two during a
    /// rotation). Redirects are not followed; a request gives up after 10 s
    /// (the dispatcher's own timeout may be shorter).
    pub fn new(url: &str, secrets: Vec<WebhookSecret>) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| WebhookError::BadUrl(format!("does not parse: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(WebhookError::BadUrl(
                "is not an http:// or https:// URL with a host".into(),
            ));
        }
        if secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("otm-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhook {
            url,
            secrets,
            client,
        })
    }

    /// The JSON body of `event`.
    pub fn body(event: &Event) -> Vec<u8> {
        let mut data = serde_json::Map::new();
        data.insert("message_id".into(), event.message.to_string().into());
        if let Some(r) = &event.reference {
            data.insert("reference".into(), r.clone().into());
        }
        let body = serde_json::json!({
            "type": event.kind.as_str(),
            "timestamp": humantime::format_rfc3339_millis(event.at).to_string(),
            "data": data,
        });
        serde_json::to_vec(&body).expect("a JSON value serializes")
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|s| s.sign(id, timestamp, body))
            .collect();
        signatures.join(" ")
    }
}

#[async_trait]
impl EventSink for Webhook {
    async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
        let id = event.id();
        let body = Webhook::body(event);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.signature(&id, timestamp, &body))
            .body(body)
            .send()
            .await
            // reqwest's error text names the URL; the logs must not.
            .map_err(|e| e.without_url())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_only_in_the_standard_form() {
        let s = WebhookSecret::generate().unwrap();
        let again = WebhookSecret::parse(&s.to_text()).unwrap();
        assert_eq!(*again.0, *s.0);
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
            &format!("whsec_{}", STANDARD.encode([7u8; 65])),
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_id_timestamp_and_body() {
        // The example of the Standard Webhooks libraries' tests; an
        // independent HMAC-SHA256 (Python's hmac module) gives the same.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let hook = Webhook::new(
            "https://hooks.example/otm",
            vec![secret.clone(), WebhookSecret::generate().unwrap()],
        )
        .unwrap();
        let header = hook.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert!(header.starts_with("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,"));
    }

    /// The headers of one signed delivery of `event` at `timestamp`.
    fn delivery(hook: &Webhook, event: &Event, timestamp: u64) -> (HeaderMap, Vec<u8>) {
        let body = Webhook::body(event);
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", event.id().parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        let signature = hook.signature(&event.id(), timestamp, &body);
        headers.insert("webhook-signature", signature.parse().unwrap());
        (headers, body)
    }

    /// Keeps the events it is given.
    #[derive(Default)]
    struct Keep(std::sync::Mutex<Vec<Event>>);

    #[async_trait]
    impl EventSink for Keep {
        async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }

    /// A real event: the `created` of a message sent through a service.
    async fn created_event() -> Event {
        let store = std::sync::Arc::new(otm_store::MemoryStore::new(
            otm_store::StoreOptions::default().with_events(true),
        ));
        let sink = std::sync::Arc::new(Keep::default());
        let config = crate::Config::default()
            .with_base_url("https://otm.example")
            .with_events(sink.clone(), crate::events::DispatchConfig::default());
        let otm = crate::Service::new(store, config).unwrap();
        let options = otm_core::SendOptions::new().reference("ada");
        otm.send(&crate::Caller::Server, "hello", &options)
            .await
            .unwrap();
        otm.shutdown().await;
        let mut events = std::mem::take(&mut *sink.0.lock().unwrap());
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[tokio::test]
    async fn receivers_verify_signature_time_and_body() {
        let (old, new) = (
            WebhookSecret::generate().unwrap(),
            WebhookSecret::generate().unwrap(),
        );
        // The sender signs with both during a rotation.
        let hook =
            Webhook::new("https://hooks.example/otm", vec![old.clone(), new.clone()]).unwrap();
        let event = created_event().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (headers, body) = delivery(&hook, &event, now);
        for receiver in [&old, &new] {
            let got = verify(
                std::slice::from_ref(receiver),
                &headers,
                &body,
                DEFAULT_TOLERANCE,
            )
            .unwrap();
            assert_eq!(got.id, event.id());
            assert_eq!((got.kind, got.message), (EventKind::Created, event.message));
            assert_eq!(got.reference.as_deref(), Some("ada"));
            let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
            assert_eq!(ms(got.at), ms(event.at));
        }
        let stranger = [WebhookSecret::generate().unwrap()];
        assert_eq!(
            verify(&stranger, &headers, &body, DEFAULT_TOLERANCE),
            Err(Rejected::BadSignature)
        );
        // A changed body, id or timestamp breaks the signature.
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        let mine = [old.clone()];
        assert_eq!(
            verify(&mine, &headers, &tampered, DEFAULT_TOLERANCE),
            Err(Rejected::BadSignature)
        );
        let mut other_id = headers.clone();
        other_id.insert("webhook-id", "evt_other".parse().unwrap());
        assert_eq!(
            verify(&mine, &other_id, &body, DEFAULT_TOLERANCE),
            Err(Rejected::BadSignature)
        );
        // Old (or far future) deliveries are refused, however well signed.
        for at in [now - 3600, now + 3600] {
            let (headers, body) = delivery(&hook, &event, at);
            assert_eq!(
                verify(&mine, &headers, &body, DEFAULT_TOLERANCE),
                Err(Rejected::Stale)
            );
        }
        // A timestamp past any clock is stale, not a panic.
        let mut huge = headers.clone();
        huge.insert("webhook-timestamp", u64::MAX.to_string().parse().unwrap());
        assert_eq!(
            verify(&mine, &huge, &body, DEFAULT_TOLERANCE),
            Err(Rejected::Stale)
        );
        // Only the first MAX_SIGNATURES entries count.
        let valid = headers["webhook-signature"].to_str().unwrap().to_owned();
        let padded = format!("{}{valid}", "v1,AAAA ".repeat(MAX_SIGNATURES));
        let mut many = headers.clone();
        many.insert("webhook-signature", padded.parse().unwrap());
        assert_eq!(
            verify(&mine, &many, &body, DEFAULT_TOLERANCE),
            Err(Rejected::BadSignature)
        );
        // A signed event of a type this version does not know.
        let newer = br#"{"type":"message.renamed","timestamp":"2026-11-30T00:00:00Z","data":{"message_id":"x"}}"#;
        let mut signed = headers.clone();
        let signature = hook.signature(&event.id(), now, newer);
        signed.insert("webhook-signature", signature.parse().unwrap());
        assert_eq!(
            verify(&mine, &signed, newer, DEFAULT_TOLERANCE),
            Err(Rejected::UnknownType("message.renamed".into()))
        );
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut missing = headers.clone();
            missing.remove(name);
            assert_eq!(
                verify(&mine, &missing, &body, DEFAULT_TOLERANCE),
                Err(Rejected::MissingHeader(name))
            );
        }
    }

    #[test]
    fn only_http_urls_with_a_secret() {
        let secret = || vec![WebhookSecret::generate().unwrap()];
        assert!(Webhook::new("https://hooks.example/otm", secret()).is_ok());
        for bad in [
            "ftp://hooks.example/",
            "file:///etc/passwd",
            "hooks.example",
            "https://",
        ] {
            assert!(
                matches!(Webhook::new(bad, secret()), Err(WebhookError::BadUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Webhook::new("https://hooks.example/otm", vec![]),
            Err(WebhookError::NoSecret)
        ));
    }
}
