//! PostgreSQL over TLS, against a private server started by the test with
//! `ssl = on` and a certificate the test makes with `openssl`: verification
//! against the right CA succeeds (and the whole conformance suite passes
//! over it), a wrong CA or a host name the certificate does not name fails
//! with a clear error.
#![cfg(feature = "postgres")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use otm_store::conformance::{self, Rounds};
use otm_store::{BlobStore, PostgresConfig, PostgresStore, StoreError};
use otm_testkit::{skip, unique_suffix, PrivatePostgres};

/// A CA and a server certificate it signed for `localhost` (DNS name only),
/// plus an unrelated CA: `(ca, other_ca, server_cert, server_key)`.
fn certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf, PathBuf)> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let self_signed = |subject: &str, name: &str| {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout", &key, "-out", &pem,
        ])
    };
    let ok = self_signed("/CN=otm test CA", "ca")
        && self_signed("/CN=another CA", "other")
        && run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])
        && std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").is_ok()
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
    ok.then(|| {
        (
            dir.join("ca.pem"),
            dir.join("other.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        )
    })
}

async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(PostgresConfig::from_url(url)?).await
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_over_tls_verifies_the_server_and_passes_the_suite() {
    let certs_dir = tempfile::tempdir().unwrap();
    let Some((ca, other_ca, cert, key)) = certificates(certs_dir.path()) else {
        return skip("openssl cannot make test certificates").unwrap_or(());
    };
    let Some(mut pg) = PrivatePostgres::init() else {
        return;
    };
    pg.enable_tls(&cert, &key);
    pg.start().await;
    let port = pg.port();
    let url = |host: &str, ca: &Path, schema: &str| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}&schema={schema}",
            ca.display()
        )
    };

    // The right CA and the name on the certificate: a verified connection.
    let store = connect(&url("localhost", &ca, "tls_ok")).await.unwrap();
    let in_use: bool =
        otm_store::sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(in_use, "the connection is not TLS");

    // Another CA: refused, and the error says why.
    let err = connect(&url("localhost", &other_ca, "tls_wrong_ca"))
        .await
        .unwrap_err();
    let text = chain(&err).to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknown issuer") || text.contains("tls"),
        "{text}"
    );
    // A name the certificate does not carry (it names localhost only).
    let err = connect(&url("127.0.0.1", &ca, "tls_wrong_name"))
        .await
        .unwrap_err();
    let text = chain(&err).to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("name") || text.contains("tls"),
        "{text}"
    );

    // The conformance suite over TLS, each case on a fresh schema.
    let fresh = || async {
        let schema = format!("tls_{}", unique_suffix());
        Arc::new(connect(&url("localhost", &ca, &schema)).await.unwrap()) as Arc<dyn BlobStore>
    };
    let rounds = Rounds::LIGHT;
    conformance::round_trip(fresh().await).await;
    conformance::second_take_finds_nothing(fresh().await).await;
    conformance::duplicate_id_conflicts(fresh().await).await;
    conformance::expired_is_never_returned(fresh().await).await;
    conformance::purge_keeps_live_messages(fresh().await).await;
    conformance::burn_destroys(fresh().await).await;
    conformance::wrong_proof_does_not_consume(fresh().await).await;
    conformance::wrong_proofs_burn_at_the_limit(fresh().await).await;
    conformance::max_size_blob(fresh().await).await;
    conformance::past_expiry_is_invalid(fresh().await).await;
    conformance::status_reports_receipts(fresh().await).await;
    conformance::receipts_expire_with_the_message(fresh().await).await;
    conformance::race_exactly_one_winner(fresh().await, rounds).await;
    conformance::concurrent_wrong_proofs_are_all_counted(fresh().await, rounds).await;
    conformance::concurrent_guesses_cannot_exceed_the_limit(fresh().await, rounds).await;
    conformance::wrong_access_never_counts_or_burns(fresh().await, rounds).await;
    conformance::model_matches_reference(fresh().await, rounds).await;
    pg.stop().await;
}
