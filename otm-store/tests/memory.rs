//! The conformance suite against the in-memory store.
#![cfg(feature = "memory")]

use std::sync::Arc;

use otm_store::{conformance::Fixture, BlobStore, MemoryStore, StoreOptions};

async fn make() -> Option<Arc<dyn BlobStore>> {
    Some(Arc::new(MemoryStore::new(StoreOptions::default())))
}

otm_store::conformance_suite!(make);

#[tokio::test]
async fn memory_keeps_exactly_the_ciphertext_and_purges() {
    let store = MemoryStore::new(StoreOptions::default());
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    assert_eq!(store.peek_raw(&f.id).unwrap(), f.message.envelope);
    let short = Fixture::new("x", std::time::Duration::from_millis(50));
    store.put(&short.id, short.message.clone()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert_eq!(
        otm_store::PurgeExpired::purge_expired(&store)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.len(), 1);
}

/// The whole contract again through a [`otm_store::Breaker`]: wrapping a
/// store changes nothing a caller can see while the store answers.
mod through_a_breaker {
    use super::*;
    use otm_store::{Breaker, BreakerConfig};

    async fn make() -> Option<Arc<dyn BlobStore>> {
        let inner: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(StoreOptions::default()));
        Some(Arc::new(Breaker::new(inner, BreakerConfig::default())))
    }

    otm_store::conformance_suite!(make);
}

mod with_events {
    use super::*;
    async fn make() -> Option<Arc<dyn BlobStore>> {
        Some(Arc::new(MemoryStore::new(
            StoreOptions::default().with_events(true),
        )))
    }
    otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT);
    otm_store::outbox_suite!(make);
}

/// What the memory store declares: every capability, also behind a breaker.
#[tokio::test]
async fn memory_declares_purge_outbox_and_quotas() {
    let store = make().await.unwrap();
    assert!(store.quotas().is_some() && store.purger().is_some() && store.outbox().is_some());
    let breaker = otm_store::Breaker::new(store, otm_store::BreakerConfig::default());
    assert!(breaker.quotas().is_some() && breaker.purger().is_some() && breaker.outbox().is_some());
}
