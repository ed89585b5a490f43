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
use hmac::{Hmac, Mac};
use otm_core::Zeroizing;
use otm_store::BoxError;
use sha2::Sha256;

use crate::events::{Event, EventSink};

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
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
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
