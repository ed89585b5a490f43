//! Helpers shared by the test files that run real `otm-server` processes.
#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use otm_client::{Client, Error};
use otm_core::{seal, Key, MessageId, Secrets};

/// A running `otm-server`, killed when dropped.
pub(crate) type Server = otm_testkit::OtmServer;

pub(crate) async fn start(store: &str, dir: &std::path::Path) -> Server {
    start_with(store, dir, &[]).await
}

pub(crate) async fn start_with(store: &str, dir: &std::path::Path, extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_otm-server"), store, dir, extra).await
}

pub(crate) struct Created {
    pub(crate) id: MessageId,
    pub(crate) secrets: Secrets,
    pub(crate) envelope: Vec<u8>,
}

/// A client of the server at `base`.
pub(crate) fn client(base: &str) -> Client {
    Client::new(base).expect("a loopback base URL")
}

/// The HTTP status behind a client error (0: no HTTP answer at all).
pub(crate) fn status_of(e: &Error) -> u16 {
    match e {
        Error::Gone => 404,
        Error::WrongProof { .. } | Error::WrongToken => 403,
        Error::NotWaiting { .. } | Error::AlreadyAnswered => 409,
        Error::RateLimited { .. } => 429,
        Error::Unavailable { .. } => 503,
        Error::Refused { status, .. }
        | Error::Redirected { status, .. }
        | Error::Unexpected { status, .. } => *status,
        _ => 0,
    }
}

/// Seals a message here and stores it (600 s); the status of a refusal.
pub(crate) async fn create(client: &Client) -> Result<Created, u16> {
    let secrets = Secrets::derive(&Key::generate().unwrap(), None);
    let envelope = seal(&secrets, "replica race").unwrap();
    let stored = client
        .create(&envelope, &secrets, Some(Duration::from_secs(600)), None)
        .await
        .map_err(|e| status_of(&e))?;
    Ok(Created {
        id: stored.id,
        secrets,
        envelope,
    })
}

/// Opens `c` with its right proof: 200 and the envelope, or the status of
/// the refusal.
pub(crate) async fn open(client: &Client, c: &Created) -> (u16, Option<Vec<u8>>) {
    match client
        .claim(&c.id, c.secrets.access_proof(), c.secrets.claim_proof())
        .await
    {
        Ok(envelope) => (200, Some(envelope)),
        Err(e) => (status_of(&e), None),
    }
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
