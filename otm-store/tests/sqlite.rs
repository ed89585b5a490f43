//! The conformance suite against SQLite files, plus restart survival and
//! the raw bytes on disk.
#![cfg(feature = "sqlite")]

use std::sync::Arc;

use otm_store::conformance::Fixture;
use otm_store::{BlobStore, SqliteConfig, SqliteStore};

async fn make() -> Option<(Arc<dyn BlobStore>, tempfile::TempDir)> {
    // Each store gets its own file in a directory that lives as long as the
    // case and is removed after it.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(SqliteConfig::new(dir.path().join("otm.sqlite3")))
        .await
        .unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(store);
    Some((store, dir))
}

otm_store::conformance_suite!(make);

mod with_events {
    use super::*;
    use otm_store::StoreOptions;
    async fn make() -> Option<(Arc<dyn BlobStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig::new(dir.path().join("otm.sqlite3"))
            .with_options(StoreOptions::default().with_events(true));
        let store: Arc<dyn BlobStore> = Arc::new(SqliteStore::connect(config).await.unwrap());
        Some((store, dir))
    }
    otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT);
    otm_store::outbox_suite!(make);
}

#[tokio::test]
async fn sqlite_keeps_exactly_the_ciphertext_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otm.sqlite3");
    let f = Fixture::hour();
    {
        let store = SqliteStore::connect(SqliteConfig::new(&path))
            .await
            .unwrap();
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
    let reopened = SqliteStore::connect(format!("sqlite://{}", path.display()).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        reopened.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );
}

/// Whether `needle` occurs in the file at `path` (missing file: no).
fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// A taken or burned message's ciphertext does not stay in the file's free
/// pages (secure_delete), and after a checkpoint not in the WAL either.
#[tokio::test]
async fn taken_and_burned_ciphertext_is_overwritten_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otm.sqlite3");
    let wal = dir.path().join("otm.sqlite3-wal");
    let store = SqliteStore::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    let on = |marker: u8| {
        let mut f = Fixture::hour();
        // Distinctive bytes, easy to find in a file (stores keep bytes as given).
        f.message.envelope = (0..4096u32).map(|i| marker ^ (i % 251) as u8).collect();
        f
    };
    let (taken, burned, kept) = (on(0x5a), on(0xa5), on(0x3c));
    for f in [&taken, &burned, &kept] {
        store.put(&f.id, f.message.clone()).await.unwrap();
    }
    let checkpoint = || async {
        otm_store::sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .unwrap();
    };
    checkpoint().await;
    let probe = |f: &Fixture| f.message.envelope[100..164].to_vec();
    for f in [&taken, &burned, &kept] {
        assert!(
            file_contains(&path, &probe(f)),
            "the test cannot see stored bytes"
        );
    }
    store
        .take(&taken.id, taken.access(), taken.proof())
        .await
        .unwrap();
    store.burn(&burned.id).await.unwrap();
    checkpoint().await;
    for (what, f) in [("taken", &taken), ("burned", &burned)] {
        assert!(
            !file_contains(&path, &probe(f)),
            "{what} ciphertext left in the database file"
        );
        assert!(
            !file_contains(&wal, &probe(f)),
            "{what} ciphertext left in the WAL"
        );
    }
    assert!(file_contains(&path, &probe(&kept)));
}

#[tokio::test]
async fn sqlite_two_stores_on_one_file_race_with_one_winner() {
    // Two pools on one file behave like two processes: SQLite's file lock,
    // not a mutex in this process, decides the winner.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    let a = SqliteStore::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    let b = SqliteStore::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
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

/// What the SQLite store declares: purge, outbox and quotas.
#[tokio::test]
async fn sqlite_declares_purge_outbox_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("otm.sqlite3").display());
    let store = otm_store::connect(&url, Default::default()).await.unwrap();
    assert!(store.quotas().is_some() && store.purger().is_some() && store.outbox().is_some());
}
