//! Redis over TLS (`rediss://`, `rediss+cluster://`), against private
//! TLS-only `redis-server`s started by the test with a certificate it makes
//! with `openssl`: the right CA connects and the whole conformance suite
//! passes over it, standalone and on a three-node Cluster; another CA, the
//! Mozilla roots alone, a host name the certificate does not carry and plain
//! TCP are refused at connect with an error that says why.
#![cfg(feature = "redis")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otm_store::conformance::{self, Rounds};
use otm_store::{BlobStore, RedisConfig, RedisStore, StoreError};
use otm_testkit::process::wait_for_port;
use otm_testkit::{free_port, skip, unique_suffix, RedisServer, TestCerts};

async fn connect(url: &str) -> Result<RedisStore, StoreError> {
    let config =
        RedisConfig::from_url(url)?.with_key_prefix(format!("otm-tls-{}:", unique_suffix()));
    let store = RedisStore::connect(config).await?;
    store.check().await?;
    Ok(store)
}

/// Connecting to `url` fails, and the error chain names one of `words`.
async fn refused(url: &str, words: &[&str]) {
    let err = connect(url).await.expect_err(url);
    let text = err.with_sources().to_lowercase();
    assert!(words.iter().any(|w| text.contains(w)), "{url}: {text}");
}

fn with_ca(url: &str, ca: &Path) -> String {
    format!("{url}?ca={}", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_over_tls_verifies_the_server_and_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let Some(certs) = TestCerts::make(dir.path()) else {
        return;
    };
    let Some(server) = RedisServer::start_tls(free_port(), dir.path(), &certs, &[]) else {
        return;
    };
    assert!(
        wait_for_port(server.port(), Duration::from_secs(10)).await,
        "the TLS redis-server did not start"
    );
    let port = server.port();
    let good = with_ca(&server.url(), &certs.ca);

    // The right CA and the name on the certificate: connected.
    connect(&good).await.unwrap();
    // Another CA, or the Mozilla roots alone: the issuer is unknown.
    refused(
        &with_ca(&server.url(), &certs.other_ca),
        &["unknownissuer", "certificate"],
    )
    .await;
    refused(&server.url(), &["unknownissuer", "certificate"]).await;
    // A name the certificate does not carry (it names localhost only).
    refused(
        &with_ca(&format!("rediss://127.0.0.1:{port}"), &certs.ca),
        &["notvalidforname", "certificate"],
    )
    .await;
    // The server speaks only TLS: plain TCP gets no answer it can read.
    assert!(connect(&format!("redis://127.0.0.1:{port}")).await.is_err());
    // A CA file that is not there is a configuration error naming it.
    let missing = dir.path().join("missing.pem");
    let err = connect(&with_ca(&server.url(), &missing))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Misconfigured { reason } if reason.contains("missing.pem")),
        "{err}"
    );

    let fresh = || async { Arc::new(connect(&good).await.unwrap()) as Arc<dyn BlobStore> };
    conformance::run_all(fresh, Rounds::LIGHT).await;
}

/// A three-node TLS-only Redis Cluster: the nodes talk TLS on the cluster
/// bus too, and announce the name on the certificate (`localhost`) so that
/// clients following the slot map can check it.
struct TlsCluster {
    _nodes: Vec<RedisServer>,
    ports: Vec<u16>,
}

impl TlsCluster {
    async fn start(dir: &Path, certs: &TestCerts) -> Option<TlsCluster> {
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-port",
                &free_port().to_string(),
                "--tls-cluster",
                "yes",
                "--cluster-announce-hostname",
                "localhost",
                "--cluster-preferred-endpoint-type",
                "hostname",
            ]
            .map(String::from)
            .to_vec();
            nodes.push(RedisServer::start_tls(port, dir, certs, &extra)?);
            ports.push(port);
        }
        for &port in &ports {
            assert!(
                wait_for_port(port, Duration::from_secs(10)).await,
                "node {port}"
            );
        }
        let cli = |args: &[String]| {
            Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(&certs.ca)
                .args(args)
                .output()
        };
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        match cli(&create) {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => return skip(&format!("cannot run redis-cli: {e}")),
        }
        let start = Instant::now();
        loop {
            let ok = ports.iter().all(|p| {
                cli(&["-p".into(), p.to_string(), "cluster".into(), "info".into()])
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the TLS cluster never became ok"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(TlsCluster {
            _nodes: nodes,
            ports,
        })
    }

    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("localhost:{p}"))
            .collect();
        format!("rediss+cluster://{}", seeds.join(","))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_over_tls_verifies_every_node_and_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let Some(certs) = TestCerts::make(dir.path()) else {
        return;
    };
    let Some(cluster) = TlsCluster::start(dir.path(), &certs).await else {
        return;
    };
    let good = with_ca(&cluster.url(), &certs.ca);
    let store = connect(&good).await.unwrap();
    assert_eq!(store.backend_name(), "redis-cluster");
    refused(
        &with_ca(&cluster.url(), &certs.other_ca),
        &["unknownissuer", "certificate"],
    )
    .await;

    let fresh = || async { Arc::new(connect(&good).await.unwrap()) as Arc<dyn BlobStore> };
    conformance::run_all(fresh, Rounds::LIGHT).await;
}
