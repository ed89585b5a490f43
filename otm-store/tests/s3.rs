//! The conformance suite against a real S3 API server (moto, started by
//! `scripts/test`; `OTM_TEST_S3_ENDPOINT`, default http://127.0.0.1:9100),
//! with both claim methods; the connect-time probe against a proxy that
//! strips `If-Match` (as some S3-compatible servers ignore it); the
//! lifecycle helper; and the raw object bytes.

use std::sync::Arc;

use otm_store::conformance::{Fixture, Rounds};
use otm_store::{BlobStore, ClaimMethod, S3Config, S3Store, StoreError};
use otm_testkit::{skip, unique_suffix};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: &str = "otm-test";

/// moto answers a few hundred requests a second, so the repeated cases run
/// [`Rounds::LIGHT`] by default; `OTM_FULL_ROUNDS=1` runs the full counts
/// (BENCHMARKS.md, "CI and test time").
fn s3_rounds() -> Rounds {
    Rounds::LIGHT.or_full_from_env()
}

fn endpoint() -> String {
    otm_testkit::env::s3_endpoint()
}

fn config(endpoint: &str, method: ClaimMethod) -> S3Config {
    S3Config::new(BUCKET, format!("run-{}/", unique_suffix()))
        .with_endpoint(endpoint)
        .with_create_bucket(true)
        .with_claim_method(method)
        // One rule per test run's prefix would pile up in the shared bucket.
        .with_allow_no_lifecycle(true)
        // moto accepts any credentials.
        .with_static_credentials("otm-test", "otm-test")
}

async fn connect(config: S3Config) -> Option<S3Store> {
    let what = format!("S3 at {:?}", config.endpoint);
    match S3Store::connect(config).await {
        Ok(store) => Some(store),
        Err(StoreError::Unavailable { source, .. }) => {
            skip(&format!("{what} is unreachable: {source}"))
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

mod conditional_delete {
    use super::*;
    async fn make() -> Option<Arc<dyn BlobStore>> {
        let store = connect(config(&endpoint(), ClaimMethod::Auto)).await?;
        assert_eq!(store.claim_method(), ClaimMethod::ConditionalDelete);
        Some(Arc::new(store))
    }
    otm_store::conformance_suite!(make, rounds = s3_rounds());
}

mod claim_object {
    use super::*;
    async fn make() -> Option<Arc<dyn BlobStore>> {
        Some(Arc::new(
            connect(config(&endpoint(), ClaimMethod::ClaimObject)).await?,
        ))
    }
    otm_store::conformance_suite!(make, rounds = s3_rounds());
}

/// A proxy that forwards HTTP/1.1 to the S3 server but drops every
/// `If-Match` header, like a server that ignores it.
async fn if_match_stripping_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                });
                let mut reader = BufReader::new(client_r);
                loop {
                    // One request: head lines, then Content-Length bytes.
                    let mut head = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        let end = line == "\r\n";
                        if !lower.starts_with("if-match:") {
                            head.extend_from_slice(line.as_bytes());
                        }
                        if end {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if server_w.write_all(&head).await.is_err()
                        || server_w.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn s3_probe_catches_a_server_that_ignores_if_match() {
    let Some(_) = connect(config(&endpoint(), ClaimMethod::Auto)).await else {
        return;
    };
    let proxy = if_match_stripping_proxy(endpoint()).await;
    // Demanding conditional delete from such a server is refused…
    let refused = S3Store::connect(config(&proxy, ClaimMethod::ConditionalDelete)).await;
    assert!(
        matches!(refused, Err(StoreError::NotImplemented { .. })),
        "{refused:?}"
    );
    // …and Auto falls back to claim objects, which stay exactly-once there.
    let store = S3Store::connect(config(&proxy, ClaimMethod::Auto))
        .await
        .unwrap();
    assert_eq!(store.claim_method(), ClaimMethod::ClaimObject);
    let store: Arc<dyn BlobStore> = Arc::new(store);
    // Each trial is 17 requests through the proxy: 40 trials in the full run.
    let trials = if s3_rounds() == Rounds::FULL { 40 } else { 10 };
    otm_store::conformance::race(store.clone(), 16, trials).await;
    otm_store::conformance::wrong_proofs_burn_at_the_limit(store).await;
}

#[tokio::test]
async fn s3_keeps_exactly_the_ciphertext_and_metadata() {
    let Some(store) = connect(config(&endpoint(), ClaimMethod::Auto)).await else {
        return;
    };
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    let raw = store
        .client()
        .get_object()
        .bucket(store.bucket())
        .key(store.key_of(&f.id))
        .send()
        .await
        .unwrap();
    let meta = raw.metadata().cloned().unwrap_or_default();
    assert_eq!(meta["otm-verifier"], f.message.verifier.to_base64url());
    let bytes = raw.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], &f.message.envelope[..]);
}

#[tokio::test]
async fn s3_lifecycle_rule_is_installed_and_read_back() {
    let Some(store) = connect(config(&endpoint(), ClaimMethod::Auto)).await else {
        return;
    };
    assert_eq!(store.lifecycle_rule_days().await.unwrap(), None);
    let days = otm_store::lifecycle_days_for(std::time::Duration::from_secs(7 * 24 * 3600));
    assert_eq!(days, 8);
    store.install_lifecycle_rule(days).await.unwrap();
    assert_eq!(store.lifecycle_rule_days().await.unwrap(), Some(8));
    // Installing again replaces the rule instead of adding a second one.
    store.install_lifecycle_rule(3).await.unwrap();
    assert_eq!(store.lifecycle_rule_days().await.unwrap(), Some(3));
}

#[test]
fn s3_urls_parse() {
    let c = S3Config::from_url("s3://bucket/otm/?endpoint=http://127.0.0.1:9000&path_style=true&region=eu-west-1&claim=claim-object").unwrap();
    assert_eq!(c.bucket, "bucket");
    assert_eq!(c.prefix, "otm/");
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.force_path_style);
    assert_eq!(c.claim_method, ClaimMethod::ClaimObject);
    assert!(S3Config::from_url("s3://").is_err());
    assert_eq!(
        S3Config::from_url("s3://b/p?lifecycle_days=8")
            .unwrap()
            .lifecycle_days,
        Some(8)
    );
    assert!(S3Config::from_url("s3://b/p?lifecycle_days=0").is_err());
    assert!(S3Config::from_url("s3://b/p?bogus=1").is_err());
    assert!(S3Config::from_url("s3://b/p?claim=maybe").is_err());
}

/// A bucket without an expiry rule over the prefix (unopened messages would
/// stay forever) is refused with the fix in the error, and accepted only
/// when asked or once otm installed the rule.
#[tokio::test]
async fn buckets_without_a_lifecycle_rule_are_refused() {
    let endpoint = endpoint();
    let bucket = format!("otm-ver-{}", unique_suffix().replace('_', "-"));
    let base = |prefix: &str| {
        S3Config::new(bucket.clone(), prefix)
            .with_endpoint(&endpoint)
            .with_static_credentials("otm-test", "otm-test")
    };
    let Some(first) = connect(
        base("a/")
            .with_create_bucket(true)
            .with_allow_no_lifecycle(true),
    )
    .await
    else {
        return;
    };
    // No lifecycle rule: refused, with the way out named.
    let err = S3Store::connect(base("a/")).await.unwrap_err();
    match &err {
        StoreError::Misconfigured { reason } => {
            assert!(reason.contains("lifecycle_days"), "{reason}");
            assert!(reason.contains("allow_no_lifecycle=true"), "{reason}");
        }
        other => panic!("without a lifecycle rule: {other:?}"),
    }
    // otm installs one; then a plain connect finds it.
    connect(base("a/").with_lifecycle_days(8)).await.unwrap();
    S3Store::connect(base("a/")).await.unwrap();
    // A rule for another prefix does not count.
    assert!(matches!(
        S3Store::connect(base("b/")).await,
        Err(StoreError::Misconfigured { .. })
    ));

    // The versioned-bucket refusal is a unit test in s3/lifecycle.rs: moto
    // answers GetBucketVersioning in a form the SDK does not read, and the
    // store then warns and skips the check.
    drop(first);
    let parsed =
        S3Config::from_url("s3://b/p?allow_versioning=true&allow_no_lifecycle=true").unwrap();
    assert!(parsed.allow_versioning && parsed.allow_no_lifecycle);
}

/// S3 declares what it can do: quotas, no purge (the bucket's lifecycle
/// rule expires objects), no outbox (no multi-object atomic write).
#[tokio::test]
async fn s3_declares_quotas_and_requests_only() {
    let Some(store) = connect(config(&endpoint(), ClaimMethod::ConditionalDelete)).await else {
        return;
    };
    assert!(store.quotas().is_some());
    assert!(store.requests().is_some());
    assert!(store.purger().is_none());
    assert!(store.outbox().is_none());
    assert!(store.rates().is_none());
}

/// A responder that dies after its answer is decided (its pending object
/// named by `P{id}.answered`) and before it is published as the message:
/// reading the request changes nothing, the repair (which the service runs
/// once a proof holds) publishes it and removes the pending copy, it is
/// taken once, and no later repair makes it readable again.
#[tokio::test]
async fn s3_publishes_a_decided_answer_once_after_a_crash() {
    use otm_store::conformance::RequestFixture;
    use otm_store::RequestStore;
    let Some(store) = connect(config(&endpoint(), ClaimMethod::ConditionalDelete)).await else {
        return;
    };
    let requests: &dyn RequestStore = store.requests().unwrap();
    let f = RequestFixture::hour();
    requests
        .put_request(&f.id, f.request.clone())
        .await
        .unwrap();
    // What `answer_request` writes before it publishes.
    let answer = RequestFixture::answer(6, 308);
    let key = store.key_of(&f.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let put = |key: String| {
        store
            .client()
            .put_object()
            .bucket(store.bucket())
            .key(key)
            .if_none_match("*")
    };
    put(format!("{key}.pending.crashed"))
        .body(answer.clone().into())
        .send()
        .await
        .unwrap();
    put(format!("{key}.answered"))
        .metadata("otm-changed", now.to_string())
        .metadata("otm-pending", "crashed")
        .body(Vec::new().into())
        .send()
        .await
        .unwrap();
    let take = || store.take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof());
    assert!(
        matches!(take().await, Err(StoreError::NotFound)),
        "not published yet"
    );
    // A second responder is still refused.
    let late = requests
        .answer_request(&f.id, RequestFixture::answer(7, 308))
        .await;
    assert!(matches!(late, Err(StoreError::AlreadyAnswered)), "{late:?}");
    // Reading publishes nothing; the repair does.
    assert!(requests.request(&f.id).await.unwrap().answered_at.is_some());
    assert!(
        matches!(take().await, Err(StoreError::NotFound)),
        "a read published it"
    );
    requests.repair_request(&f.id).await.unwrap();
    let pending = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key(format!("{key}.pending.crashed"))
        .send()
        .await;
    assert!(pending.is_err(), "the pending copy of the answer is left");
    assert_eq!(take().await.unwrap(), answer);
    // A repair after the take makes nothing readable again.
    requests.repair_request(&f.id).await.unwrap();
    assert!(matches!(take().await, Err(StoreError::NotFound)));
    requests.withdraw_request(&f.id).await.unwrap();
}
