//! The conformance suite against SQLite files, plus restart survival and
//! the raw bytes on disk.
#![cfg(feature = "sqlite")]

use std::sync::Arc;

use otm_store::conformance::Fixture;
use otm_store::{BlobStore, SqliteConfig, SqliteStore};

async fn make() -> Option<Arc<dyn BlobStore>> {
    // Each store gets its own file in a directory kept for the test's life.
    let dir = tempfile::tempdir().unwrap().keep();
    let store = SqliteStore::open(SqliteConfig::new(dir.join("otm.sqlite3")))
        .await
        .unwrap();
    Some(Arc::new(store))
}

otm_store::conformance_suite!(make);

#[tokio::test]
async fn sqlite_keeps_exactly_the_ciphertext_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otm.sqlite3");
    let f = Fixture::hour();
    {
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        store.put(&f.id, f.message.clone()).await.unwrap();
        let raw: Vec<u8> =
            otm_store::sqlx::query_scalar("SELECT envelope FROM otm_messages WHERE id = ?1")
                .bind(&f.id.as_bytes()[..])
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(raw, f.message.envelope);
        let mode: String = otm_store::sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        store.pool().close().await;
    }
    let reopened = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        reopened.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );
}

#[tokio::test]
async fn sqlite_two_stores_on_one_file_race_with_one_winner() {
    // Two pools on one file behave like two processes: SQLite's file lock,
    // not a mutex in this process, decides the winner.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    let a = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    let b = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    for _ in 0..50 {
        let f = Fixture::hour();
        a.put(&f.id, f.message.clone()).await.unwrap();
        let (ra, rb) = tokio::join!(
            a.take(&f.id, f.access(), f.proof()),
            b.take(&f.id, f.access(), f.proof())
        );
        assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
    }
}

#[test]
fn sqlite_urls_parse() {
    assert!(SqliteConfig::from_url("sqlite://data/otm.db").is_ok());
    assert!(SqliteConfig::from_url("sqlite:otm.db").is_ok());
    assert!(SqliteConfig::from_url("sqlite://").is_err());
    assert!(SqliteConfig::from_url("postgres://x").is_err());
    let c: SqliteConfig = "sqlite://otm.db?max_connections=4&synchronous=normal"
        .parse()
        .unwrap();
    assert_eq!((c.max_connections, c.synchronous_full), (4, false));
    // Parameters used to be ignored; now an unknown one is named.
    let err = SqliteConfig::from_url("sqlite://otm.db?cache=shared").unwrap_err();
    assert!(matches!(err, otm_store::StoreError::InvalidUrl { .. }));
    assert!(err.to_string().contains("`cache`"), "{err}");
    assert!(SqliteConfig::from_url("sqlite://otm.db?synchronous=off").is_err());
}
