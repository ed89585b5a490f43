//! Signed webhooks (feature `webhooks`): an [`EventSink`] that POSTs each
//! event as JSON to one URL from the operator's configuration (never from a
//! request), signed the Standard Webhooks way. The wire format (headers,
//! body, signature) and the receiver's side are in [`otm_core::webhook`]:
//! a receiver needs otm-core alone; [`verify`] here is the same check on an
//! axum/http [`HeaderMap`].
//!
//! A 2xx answer is a delivery; anything else, a redirect included (never
//! followed), is retried by the dispatcher.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::http::HeaderMap;
pub use otm_core::webhook::{
    BadSecret, Received, Rejected, WebhookBody, WebhookData, WebhookSecret, DEFAULT_TOLERANCE,
    MAX_SIGNATURES,
};
use otm_store::BoxError;

use crate::events::{Event, EventSink};

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
            WebhookError::BadSecret => BadSecret.fmt(f),
            WebhookError::BadUrl(why) => write!(f, "the webhook URL {why}"),
            WebhookError::NoSecret => f.write_str("a webhook needs at least one signing secret"),
            WebhookError::Client(e) => write!(f, "the webhook HTTP client: {e}"),
        }
    }
}

impl std::error::Error for WebhookError {}

impl From<BadSecret> for WebhookError {
    fn from(_: BadSecret) -> Self {
        WebhookError::BadSecret
    }
}

/// [`otm_core::webhook::verify`] on a request's [`HeaderMap`]: the
/// signature against any of `secrets` (constant time), the timestamp's age
/// within `tolerance`, and the body decoded.
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
    otm_core::webhook::verify(
        secrets,
        |name| headers.get(name).and_then(|v| v.to_str().ok()),
        body,
        tolerance,
    )
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
    /// (the dispatcher's own timeout may be shorter). `url` is `https://`,
    /// or `http://` to this machine (`localhost`, a loopback address):
    /// plain HTTP to another host is refused, since anyone on the path could
    /// read the events or answer for the receiver (see
    /// [`new_allow_unverified`](Webhook::new_allow_unverified)).
    pub fn new(url: &str, secrets: Vec<WebhookSecret>) -> Result<Self, WebhookError> {
        Self::build(url, secrets, false)
    }

    /// [`new`](Webhook::new), also allowing `http://` to another host: for
    /// a receiver on a private network the operator trusts, and only when
    /// the operator says so (otm-server's `--webhook-allow-unverified`).
    pub fn new_allow_unverified(
        url: &str,
        secrets: Vec<WebhookSecret>,
    ) -> Result<Self, WebhookError> {
        Self::build(url, secrets, true)
    }

    fn build(
        url: &str,
        secrets: Vec<WebhookSecret>,
        allow_unverified: bool,
    ) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| WebhookError::BadUrl(format!("does not parse: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(WebhookError::BadUrl(
                "is not an http:// or https:// URL with a host".into(),
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if url.scheme() == "http" && !loopback && !allow_unverified {
            return Err(WebhookError::BadUrl(
                "is plain http:// to another machine, so anyone on the path could read the \
                 events or answer for the receiver: use https://, or on a private network \
                 you trust allow it explicitly (--webhook-allow-unverified)"
                    .into(),
            ));
        }
        if url.scheme() == "http" && !loopback {
            tracing::warn!(
                host,
                "webhooks go over plain http:// to another machine, allowed by \
                 --webhook-allow-unverified"
            );
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

    /// The JSON body of `event` ([`WebhookBody`]).
    pub fn body(event: &Event) -> Vec<u8> {
        WebhookBody::new(
            event.kind,
            &event.message,
            event.creator.as_ref(),
            event.reference.as_deref(),
            event.at,
        )
        .to_json()
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
    use otm_store::EventKind;

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

    #[test]
    fn plain_http_goes_only_to_this_machine_unless_allowed() {
        let secret = || vec![WebhookSecret::generate().unwrap()];
        for local in [
            "http://127.0.0.1:9/otm",
            "http://localhost/otm",
            "http://[::1]:8080/",
        ] {
            assert!(Webhook::new(local, secret()).is_ok(), "{local}");
        }
        for remote in [
            "http://hooks.example/otm",
            "http://10.0.0.5/otm",
            "http://receiver:8080/",
            "http://localhost@evil.example/",
            "http://127.0.0.1.evil.example/",
        ] {
            match Webhook::new(remote, secret()) {
                Err(WebhookError::BadUrl(why)) => {
                    assert!(why.contains("--webhook-allow-unverified"), "{why}")
                }
                other => panic!("{remote}: {other:?}"),
            }
            assert!(Webhook::new_allow_unverified(remote, secret()).is_ok());
        }
    }
}
