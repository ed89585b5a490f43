//! A webhook receiver for the tests: a real HTTP server on loopback that
//! checks each request the Standard Webhooks way with its own HMAC-SHA256
//! (not otm's code), records every try per `webhook-id`, and refuses the
//! first tries of each ID when asked to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the receiver saw, per `webhook-id`: each try's JSON body.
#[derive(Default)]
pub struct Received {
    tries: Mutex<HashMap<String, Vec<serde_json::Value>>>,
}

impl Received {
    /// Every ID seen and its tries.
    pub fn tries(&self) -> HashMap<String, Vec<serde_json::Value>> {
        self.tries.lock().expect("not poisoned").clone()
    }

    /// The tries of one ID.
    pub fn of(&self, id: &str) -> Vec<serde_json::Value> {
        self.tries().remove(id).unwrap_or_default()
    }

    /// Waits (at most `limit`) until `done` holds for what was received.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&HashMap<String, Vec<serde_json::Value>>) -> bool,
    ) {
        let start = Instant::now();
        while !done(&self.tries()) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}: {:?}",
                self.tries()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The raw bytes of a `whsec_…` secret.
pub fn secret_bytes(whsec: &str) -> Vec<u8> {
    STANDARD
        .decode(whsec.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64")
}

/// Checks one request: a fresh timestamp and a `v1` signature by one of
/// `secrets` over `id.timestamp.body`. The ID, or why not.
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let id = header("webhook-id")?;
    let timestamp: u64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    if now.abs_diff(timestamp) > 300 {
        return Err("stale timestamp".into());
    }
    let signatures = header("webhook-signature")?;
    let signed = format!("{id}.{timestamp}.");
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(signed.as_bytes());
        mac.update(body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        if signatures.split(' ').any(|s| s == expected) {
            return Ok(id);
        }
    }
    Err(format!("no valid signature in {signatures}"))
}

/// Serves a receiver at `/hooks/otm` on `listener` that accepts requests
/// signed by any of `secrets`, answering 500 to the first `refuse` tries of
/// each ID (`u32::MAX`: always) and 200 after; 401 to a bad signature.
pub fn serve_receiver(
    listener: tokio::net::TcpListener,
    secrets: Vec<Vec<u8>>,
    refuse: u32,
) -> (Arc<Received>, String) {
    let received = Arc::new(Received::default());
    let url = format!(
        "http://{}/hooks/otm",
        listener.local_addr().expect("bound address")
    );
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hooks/otm",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            let secrets = secrets.clone();
            async move {
                let id = match verify(&headers, &body, &secrets) {
                    Ok(id) => id,
                    Err(why) => return (StatusCode::UNAUTHORIZED, why),
                };
                let json: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let mut tries = state.tries.lock().expect("not poisoned");
                let seen = tries.entry(id).or_default();
                seen.push(json);
                if seen.len() as u64 <= u64::from(refuse) {
                    (StatusCode::INTERNAL_SERVER_ERROR, "not now".into())
                } else {
                    (StatusCode::OK, String::new())
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (received, url)
}

/// [`serve_receiver`] on a fresh loopback port.
pub async fn receiver(secrets: Vec<Vec<u8>>, refuse: u32) -> (Arc<Received>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    serve_receiver(listener, secrets, refuse)
}
