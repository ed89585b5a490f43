//! PostgreSQL over TLS, against a private server started by the test with
//! `ssl = on` and a certificate the test makes with `openssl`: verification
//! against the right CA succeeds (and the whole conformance suite passes
//! over it), a wrong CA or a host name the certificate does not name fails
//! with a clear error.
#![cfg(feature = "postgres")]

use std::path::Path;
use std::sync::Arc;

use otm_store::conformance::{self, Rounds};
use otm_store::{BlobStore, PostgresConfig, PostgresStore, StoreError};
use otm_testkit::{unique_suffix, PrivatePostgres, TestCerts};

async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(PostgresConfig::from_url(url)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_over_tls_verifies_the_server_and_passes_the_suite() {
    let certs_dir = tempfile::tempdir().unwrap();
    let Some(certs) = TestCerts::make(certs_dir.path()) else {
        return;
    };
    let (ca, other_ca) = (&certs.ca, &certs.other_ca);
    let Some(mut pg) = PrivatePostgres::init() else {
        return;
    };
    pg.enable_tls(&certs.server_cert, &certs.server_key);
    pg.start().await;
    let port = pg.port();
    let url = |host: &str, ca: &Path, schema: &str| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}&schema={schema}",
            ca.display()
        )
    };

    // The right CA and the name on the certificate: a verified connection.
    let store = connect(&url("localhost", ca, "tls_ok")).await.unwrap();
    let in_use: bool =
        otm_store::sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(in_use, "the connection is not TLS");

    // Another CA: refused, and the error says why.
    let err = connect(&url("localhost", other_ca, "tls_wrong_ca"))
        .await
        .unwrap_err();
    let text = err.with_sources().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknown issuer") || text.contains("tls"),
        "{text}"
    );
    // A name the certificate does not carry (it names localhost only).
    let err = connect(&url("127.0.0.1", ca, "tls_wrong_name"))
        .await
        .unwrap_err();
    let text = err.with_sources().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("name") || text.contains("tls"),
        "{text}"
    );

    // The conformance suite over TLS, each case on a fresh schema.
    let fresh = || async {
        let schema = format!("tls_{}", unique_suffix());
        Arc::new(connect(&url("localhost", ca, &schema)).await.unwrap()) as Arc<dyn BlobStore>
    };
    conformance::run_all(fresh, Rounds::LIGHT).await;
    pg.stop().await;
}
