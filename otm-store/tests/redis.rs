//! The conformance suite against a real Redis (standalone) and a real Redis
//! Cluster, plus the raw stored bytes and reconnection after a restart.
//!
//! `OTM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and
//! `OTM_TEST_REDIS_CLUSTER_URLS` (comma-separated seed nodes, default ports
//! 7101-7103 on 127.0.0.1, started by `scripts/test`). Each store on them
//! has its own key prefix, whose keys are deleted when the test ends
//! ([`RedisPrefix`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use otm_store::conformance::Fixture;
use otm_store::{
    BlobStore, Breaker, BreakerConfig, BreakerOpen, RedisConfig, RedisStore, StoreError,
};
use otm_testkit::{skip, RedisPrefix, RedisServer};

#[test]
fn redis_urls_parse() {
    let c: RedisConfig = "redis://127.0.0.1:6379/2?prefix=app:otm:".parse().unwrap();
    assert_eq!(c.urls, ["redis://127.0.0.1:6379/2"]);
    assert!(!c.cluster);
    assert_eq!(c.key_prefix, "app:otm:");
    let c: RedisConfig = "redis+cluster://a:7001,b:7002".parse().unwrap();
    assert_eq!(c.urls, ["redis://a:7001", "redis://b:7002"]);
    assert!(c.cluster);
    assert_eq!(c.key_prefix, "otm:");
    let c: RedisConfig = "rediss://h:6380/1?ca=/etc/otm/ca.pem".parse().unwrap();
    assert_eq!(c.urls, ["rediss://h:6380/1"]);
    assert_eq!(
        c.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/otm/ca.pem"))
    );
    assert!(c.tls());
    let c: RedisConfig = "rediss+cluster://a:7001,b:7002".parse().unwrap();
    assert_eq!(c.urls, ["rediss://a:7001", "rediss://b:7002"]);
    assert!(c.cluster && c.tls() && c.ca_file.is_none());
    for bad in [
        "redis://h:1?prefx=x",
        "redis://h:1?prefix=a&prefix=b",
        "redis+cluster://",
        "redis+cluster://a:1,,b:2",
        "rediss+cluster://a:1,",
        // Certificate checks cannot be turned off.
        "rediss://h:1/#insecure",
        // A CA file means nothing without TLS.
        "redis://h:1?ca=/ca.pem",
        "redis+cluster://a:1?ca=/ca.pem",
        "rediss://h:1?ca=",
        "redisss://h:1",
    ] {
        let err = RedisConfig::from_url(bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{bad}: {err}");
    }
    let err = RedisConfig::from_url("redis://h:1?prefx=x").unwrap_err();
    assert!(err.to_string().contains("`prefx`"), "{err}");
}

fn standalone_url() -> String {
    otm_testkit::env::redis_url()
}

fn cluster_urls() -> Vec<String> {
    otm_testkit::env::redis_cluster_urls()
}

/// A store with a fresh key prefix, and the guard that deletes its keys.
async fn connect(config: RedisConfig) -> Option<(RedisStore, RedisPrefix)> {
    let what = format!("Redis at {:?}", config.urls);
    let prefix = RedisPrefix::new("otm-test-");
    let config = config.with_key_prefix(prefix.as_str());
    match RedisStore::connect(config).await {
        Ok(store) => match store.check().await {
            Ok(()) => Some((store, prefix)),
            Err(e) => skip(&format!("{what} does not answer: {e}")),
        },
        Err(e) => skip(&format!("{what} is unreachable: {e}")),
    }
}

/// [`connect`] as a conformance suite's `make` wants it.
async fn suite_store(config: RedisConfig) -> Option<(Arc<dyn BlobStore>, RedisPrefix)> {
    let (store, prefix) = connect(config).await?;
    let store: Arc<dyn BlobStore> = Arc::new(store);
    Some((store, prefix))
}

mod standalone {
    use super::*;
    async fn make() -> Option<(Arc<dyn BlobStore>, RedisPrefix)> {
        suite_store(RedisConfig::standalone(standalone_url())).await
    }
    otm_store::conformance_suite!(make);

    /// What Redis declares: outbox and quotas; no purge (keys expire).
    #[tokio::test]
    async fn redis_declares_outbox_and_quotas() {
        let Some((store, _prefix)) = make().await else {
            return;
        };
        assert!(store.quotas().is_some() && store.outbox().is_some());
        assert!(store.purger().is_none());
    }
}

mod with_events {
    use super::*;
    use otm_store::StoreOptions;
    async fn make() -> Option<(Arc<dyn BlobStore>, RedisPrefix)> {
        let config = RedisConfig::standalone(standalone_url())
            .with_options(StoreOptions::default().with_events(true));
        suite_store(config).await
    }
    otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT);
    otm_store::outbox_suite!(make);
}

/// Events on a Redis Cluster: each bucket's outbox shares its messages'
/// slot, so the same scripts record them atomically there too.
mod cluster_with_events {
    use super::*;
    use otm_store::StoreOptions;
    async fn make() -> Option<(Arc<dyn BlobStore>, RedisPrefix)> {
        let config = RedisConfig::cluster(cluster_urls())
            .with_options(StoreOptions::default().with_events(true));
        suite_store(config).await
    }
    otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT);
    otm_store::outbox_suite!(make);
}

/// A Cluster store still finds, takes and burns the messages it wrote
/// before it had buckets (keys `PREFIX{ID}`), without events for them.
#[tokio::test]
async fn a_cluster_store_takes_messages_from_before_buckets() {
    use otm_store::StoreOptions;
    let prefix = RedisPrefix::new("otm-test-");
    let config = RedisConfig::cluster(cluster_urls())
        .with_key_prefix(prefix.as_str())
        .with_options(StoreOptions::default().with_events(true));
    let store = match RedisStore::connect(config).await {
        Ok(store) => store,
        Err(e) => return skip(&format!("Redis Cluster is unreachable: {e}")).unwrap_or(()),
    };
    let client = redis::cluster::ClusterClient::new(cluster_urls()).unwrap();
    let mut raw = client.get_async_connection().await.unwrap();
    let (opened, burned) = (Fixture::hour(), Fixture::hour());
    for f in [&opened, &burned] {
        // The layout before buckets, written as that version did.
        let key = format!("{prefix}{{{}}}", f.id);
        assert_ne!(key, store.key_of(&f.id));
        let expires_ms = f
            .message
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("e")
            .arg(&f.message.envelope[..])
            .arg("v")
            .arg(&f.message.verifier.as_bytes()[..])
            .arg("f")
            .arg(0)
            .arg("x")
            .arg(expires_ms)
            .arg("m")
            .arg(&f.message.manage.unwrap().as_bytes()[..])
            .arg("a")
            .arg(&f.message.access.as_bytes()[..])
            .arg("r")
            .arg("")
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: () = redis::cmd("PEXPIRE")
            .arg(&key)
            .arg(3_600_000)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let status = store.status(&opened.id).await.unwrap();
    assert_eq!(status.state, otm_store::MessageState::Waiting);
    assert!(status.manage.unwrap().verify(&opened.manage));
    // A wrong access proof finds nothing there either (and counts
    // nothing); a wrong claim proof counts an attempt.
    let stranger = Fixture::hour();
    assert!(matches!(
        store
            .take(&opened.id, stranger.access(), opened.proof())
            .await,
        Err(StoreError::NotFound)
    ));
    let wrong = store
        .take(&opened.id, opened.access(), stranger.proof())
        .await;
    let left = store.options().max_failed_attempts - 1;
    assert!(
        matches!(wrong, Err(StoreError::WrongProof { attempts_left }) if attempts_left == left),
        "{wrong:?}"
    );
    let envelope = store
        .take(&opened.id, opened.access(), opened.proof())
        .await
        .unwrap();
    assert_eq!(envelope, opened.message.envelope);
    assert!(matches!(
        store
            .take(&opened.id, opened.access(), opened.proof())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.status(&opened.id).await.unwrap().state,
        otm_store::MessageState::Opened
    );
    store.burn(&burned.id).await.unwrap();
    assert_eq!(
        store.status(&burned.id).await.unwrap().state,
        otm_store::MessageState::Burned
    );
    // New messages go to a bucket, whose slot Redis itself puts in the
    // bucket's 256-slot range; the old ones recorded no events.
    let fresh = Fixture::hour();
    store.put(&fresh.id, fresh.message.clone()).await.unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(store.key_of(&fresh.id))
        .query_async(&mut raw)
        .await
        .unwrap();
    let bucket = fresh.id.as_bytes()[0] % otm_store::CLUSTER_BUCKETS;
    assert_eq!(slot / 256, u16::from(bucket), "{}", store.key_of(&fresh.id));
    let outbox = store.outbox().unwrap();
    let events = outbox
        .lease_events(100, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.message).collect();
    assert_eq!(ids, [fresh.id]);
}

mod cluster {
    use super::*;
    async fn make() -> Option<(Arc<dyn BlobStore>, RedisPrefix)> {
        suite_store(RedisConfig::cluster(cluster_urls())).await
    }
    otm_store::conformance_suite!(make);
}

#[tokio::test]
async fn redis_keeps_exactly_the_ciphertext_with_a_native_ttl() {
    let Some((store, _prefix)) = connect(RedisConfig::standalone(standalone_url())).await else {
        return;
    };
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    let client = redis::Client::open(standalone_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let key = store.key_of(&f.id);
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("e")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(stored, f.message.envelope);
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl_ms > 3_500_000 && ttl_ms <= 3_600_000, "PTTL {ttl_ms}");
    store.take(&f.id, f.access(), f.proof()).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_cluster_spreads_keys_over_nodes() {
    let Some((store, _keys)) = connect(RedisConfig::cluster(cluster_urls())).await else {
        return;
    };
    assert_eq!(store.backend_name(), "redis-cluster");
    // The buckets' slots are evenly spaced: Redis puts each in its own
    // 256-slot range, so 64 messages land on every one of the three
    // primaries. This store's keys (its own prefix) are counted on each.
    let mut fixtures = Vec::new();
    for _ in 0..64 {
        let f = Fixture::hour();
        store.put(&f.id, f.message.clone()).await.unwrap();
        fixtures.push(f);
    }
    let prefix = store.key_of(&fixtures[0].id);
    let prefix = &prefix[..prefix.find('{').unwrap()];
    let mut holding = Vec::new();
    for url in cluster_urls() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut cursor = 0u64;
        let mut keys = 0;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            keys += found.len();
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        holding.push(keys);
    }
    assert_eq!(holding.iter().sum::<usize>(), 64, "{holding:?}");
    assert!(
        holding.iter().all(|&k| k > 0),
        "keys per primary: {holding:?}"
    );
    for f in &fixtures {
        store.take(&f.id, f.access(), f.proof()).await.unwrap();
    }
}

async fn wait_until_ok(store: &RedisStore, limit: Duration) -> Result<(), StoreError> {
    let start = Instant::now();
    loop {
        match store.check().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A private redis-server on a free port, a store connected to it, and the
/// port (to start it again).
async fn private_redis(dir: &std::path::Path) -> Option<(RedisServer, u16, RedisStore)> {
    // A port the OS just handed out and released: free, unlike a guessed one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let server = RedisServer::start(port, dir)?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let start = Instant::now();
    while client.get_multiplexed_async_connection().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = RedisStore::connect(RedisConfig::standalone(&url))
        .await
        .unwrap();
    Some((server, port, store))
}

#[tokio::test]
async fn redis_store_reconnects_by_itself_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port, store)) = private_redis(dir.path()).await else {
        return;
    };
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();

    drop(server);
    // While Redis is down the store says so, as a retryable error.
    let down = store.take(&f.id, f.access(), f.proof()).await;
    assert!(matches!(&down, Err(e) if e.is_retryable()), "{down:?}");

    let _server = RedisServer::start(port, dir.path()).unwrap();
    wait_until_ok(&store, Duration::from_secs(15))
        .await
        .expect("store reconnects");
    // The server kept nothing (no persistence): the old message is gone and
    // new ones work without a new store.
    assert!(matches!(
        store.take(&f.id, f.access(), f.proof()).await,
        Err(StoreError::NotFound)
    ));
    let g = Fixture::hour();
    store.put(&g.id, g.message.clone()).await.unwrap();
    assert_eq!(
        store.take(&g.id, g.access(), g.proof()).await.unwrap(),
        g.message.envelope
    );
}

/// A [`Breaker`] in front of a real Redis that goes away: after two
/// failures in a row calls fail at once without reaching Redis, and once
/// Redis is back a probe closes the breaker by itself.
#[tokio::test]
async fn a_breaker_fails_fast_while_redis_is_down_and_closes_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port, store)) = private_redis(dir.path()).await else {
        return;
    };
    let config = BreakerConfig::default()
        .with_failures_to_open(2)
        .with_cooldown(Duration::from_millis(300));
    let breaker = Breaker::new(Arc::new(store), config);
    let f = Fixture::hour();
    breaker.put(&f.id, f.message.clone()).await.unwrap();
    assert!(!breaker.is_open());

    drop(server);
    let from_breaker = |r: &Result<Vec<u8>, StoreError>| match r {
        Err(StoreError::Unavailable { source, .. }) => source.is::<BreakerOpen>(),
        other => panic!("want Unavailable while Redis is down, got {other:?}"),
    };
    // Two calls reach Redis and fail; then the breaker is open.
    for _ in 0..2 {
        assert!(!from_breaker(
            &breaker.take(&f.id, f.access(), f.proof()).await
        ));
    }
    assert!(breaker.is_open());
    assert_eq!(breaker.times_opened(), 1);
    // Now calls are refused without reaching Redis.
    for _ in 0..10 {
        assert!(from_breaker(
            &breaker.take(&f.id, f.access(), f.proof()).await
        ));
    }
    assert_eq!(breaker.refused(), 10);

    let _server = RedisServer::start(port, dir.path()).unwrap();
    let start = Instant::now();
    let g = Fixture::hour();
    // Through the breaker only: probes after each cooldown find Redis back.
    while breaker.put(&g.id, g.message.clone()).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the breaker did not close after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!breaker.is_open());
    assert_eq!(
        breaker.take(&g.id, g.access(), g.proof()).await.unwrap(),
        g.message.envelope
    );
}
