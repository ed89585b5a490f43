//! The conformance suite against a real PostgreSQL, each store in a fresh
//! schema that is dropped when the test ends ([`PgSchema`]).
//! `OTM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::Arc;

use otm_store::conformance::Fixture;
use otm_store::{BlobStore, PostgresConfig, PostgresStore, StoreError};
use otm_testkit::{skip, PgSchema};

fn url() -> String {
    otm_testkit::env::postgres_url()
}

/// A store in a fresh schema, and the guard that drops the schema.
async fn connect() -> Option<(PostgresStore, PgSchema)> {
    let schema = PgSchema::new("otm_test_");
    let config = PostgresConfig::new(url())
        .with_schema(schema.name())
        .with_max_connections(8);
    match PostgresStore::connect(config).await {
        Ok(store) => Some((store, schema)),
        Err(e) => skip(&format!("PostgreSQL at {} is unreachable: {e}", url())),
    }
}

async fn make() -> Option<(Arc<dyn BlobStore>, PgSchema)> {
    let (store, schema) = connect().await?;
    let store: Arc<dyn BlobStore> = Arc::new(store);
    Some((store, schema))
}

otm_store::conformance_suite!(make);

mod with_events {
    use super::*;
    use otm_store::StoreOptions;
    async fn make() -> Option<(Arc<dyn BlobStore>, PgSchema)> {
        let schema = PgSchema::new("otm_test_");
        let config = PostgresConfig::new(url())
            .with_schema(schema.name())
            .with_max_connections(8)
            .with_options(StoreOptions::default().with_events(true));
        match PostgresStore::connect(config).await {
            Ok(store) => {
                let store: Arc<dyn BlobStore> = Arc::new(store);
                Some((store, schema))
            }
            Err(e) => skip(&format!("PostgreSQL at {} is unreachable: {e}", url())),
        }
    }
    otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT);
    otm_store::outbox_suite!(make);
}

#[tokio::test]
async fn postgres_keeps_exactly_the_ciphertext() {
    let Some((store, _schema)) = connect().await else {
        return;
    };
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    let raw: Vec<u8> = otm_store::sqlx::query_scalar(&format!(
        "SELECT envelope FROM {} WHERE id = $1",
        store.table()
    ))
    .bind(&f.id.as_bytes()[..])
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(raw, f.message.envelope);
}

#[tokio::test]
async fn postgres_migrations_are_idempotent_and_race_free() {
    let schema = PgSchema::new("otm_test_");
    let config = PostgresConfig::new(url()).with_schema(schema.name());
    // Several replicas starting at once apply the schema exactly once.
    let results = futures_join_all(config.clone()).await;
    for r in &results {
        match r {
            Ok(_) => {}
            // Only an unreachable server may skip; anything else (a
            // migration that lost a race, say) is this test's failure.
            Err(otm_store::StoreError::Unavailable { .. }) => {
                let _ = skip::<()>(&format!("PostgreSQL at {} is unreachable", url()));
                return;
            }
            Err(e) => panic!("a replica failed to start: {e:?}"),
        }
    }
    let store = results.into_iter().next().unwrap().unwrap();
    let applied: i64 =
        otm_store::sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".otm_migrations"))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(
        applied, 10,
        "each of the 10 migrations applied exactly once"
    );
}

async fn futures_join_all(
    config: PostgresConfig,
) -> Vec<Result<PostgresStore, otm_store::StoreError>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let c = config.clone();
        set.spawn(async move { PostgresStore::connect(c).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn postgres_rejects_bad_schema_names() {
    let r = PostgresStore::connect(PostgresConfig::new(url()).with_schema("bad; drop")).await;
    assert!(matches!(r, Err(otm_store::StoreError::Invalid { .. })));
}

#[test]
fn postgres_urls_parse() {
    let c: PostgresConfig =
        "postgres://otm:pw@db:5433/otm?schema=app&sslmode=require&max_connections=4&batch_workers=3&application_name=otm"
            .parse()
            .unwrap();
    assert_eq!(c.schema, "app");
    assert_eq!(c.max_connections, 4);
    assert_eq!(c.batch_workers, 3);
    // The driver's parameters stay in the URL, in their order; otm's go.
    assert_eq!(
        c.url,
        "postgres://otm:pw@db:5433/otm?sslmode=require&application_name=otm"
    );
    let c: PostgresConfig = "postgresql://h/db".parse().unwrap();
    assert_eq!(
        (c.url.as_str(), c.schema.as_str(), c.batch_workers),
        ("postgresql://h/db", "public", 2)
    );
    for bad in [
        "postgres://h/db?otm_schema=x",
        "postgres://h/db?max_connections=many",
        "postgres://h/db?batch_workers=0",
        "postgres://h/db?batch_workers=17",
        "mysql://h/db",
    ] {
        let err = PostgresConfig::from_url(bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{bad}: {err}");
    }
    let err = PostgresConfig::from_url("postgres://h/db?otm_schema=x").unwrap_err();
    assert!(err.to_string().contains("`otm_schema`"), "{err}");
}

/// What the PostgreSQL store declares: purge, outbox and quotas.
#[tokio::test]
async fn postgres_declares_purge_outbox_and_quotas() {
    let Some((store, _schema)) = make().await else {
        return;
    };
    assert!(store.quotas().is_some() && store.purger().is_some() && store.outbox().is_some());
}
