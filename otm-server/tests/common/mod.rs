//! Helpers shared by the test files that run real `otm-server` processes.
#![allow(dead_code)] // each test file uses a different part

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{seal, Key, Secrets};
use serde_json::{json, Value};

/// A running `otm-server`, killed when dropped.
pub(crate) type Server = otm_testkit::OtmServer;

pub(crate) async fn start(store: &str, dir: &std::path::Path) -> Server {
    start_with(store, dir, &[]).await
}

pub(crate) async fn start_with(store: &str, dir: &std::path::Path, extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_otm-server"), store, dir, extra).await
}

pub(crate) struct Created {
    pub(crate) id: String,
    pub(crate) secrets: Secrets,
    pub(crate) envelope: Vec<u8>,
}

pub(crate) async fn create(http: &reqwest::Client, base: &str) -> Result<Created, u16> {
    let secrets = Secrets::derive(&Key::generate().unwrap(), None);
    let envelope = seal(&secrets, "replica race").unwrap();
    let r = http
        .post(format!("{base}/api/v1/messages"))
        .json(&json!({
            "envelope": URL_SAFE_NO_PAD.encode(&envelope),
            "verifier": secrets.claim_verifier().to_base64url(),
            "ttl_seconds": 600,
        }))
        .send()
        .await
        .map_err(|_| 0u16)?;
    if r.status() != 201 {
        return Err(r.status().as_u16());
    }
    let v: Value = r.json().await.map_err(|_| 0u16)?;
    Ok(Created {
        id: v["id"].as_str().unwrap().to_owned(),
        secrets,
        envelope,
    })
}

pub(crate) async fn open(
    http: &reqwest::Client,
    base: &str,
    c: &Created,
) -> (u16, Option<Vec<u8>>) {
    let r = open_request(http, base, c).await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (
        status,
        body["envelope"]
            .as_str()
            .and_then(|e| URL_SAFE_NO_PAD.decode(e).ok()),
    )
}

/// Trials of a replica race: `OTM_REPLICA_TRIALS` when set, else 200; on an
/// emulator (S3 on moto, a few hundred requests a second) 40 unless
/// `OTM_FULL_ROUNDS` asks for the full count.
pub(crate) fn trials(emulator: bool) -> usize {
    let full = otm_store::conformance::Rounds::LIGHT.or_full_from_env()
        == otm_store::conformance::Rounds::FULL;
    std::env::var("OTM_REPLICA_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if emulator && !full { 40 } else { 200 })
}

/// Sends the open request for `c` with its right proof; the raw answer.
pub(crate) async fn open_request(
    http: &reqwest::Client,
    base: &str,
    c: &Created,
) -> reqwest::Response {
    http.post(format!("{base}/api/v1/messages/{}/open", c.id))
        .json(&json!({ "proof": c.secrets.claim_proof().to_base64url().as_str() }))
        .send()
        .await
        .unwrap()
}
