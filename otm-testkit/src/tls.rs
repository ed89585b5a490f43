//! Certificates for tests of TLS connections to the stores, made with the
//! `openssl` command: a CA, a server certificate it signed, and an
//! unrelated second CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::skip;

/// A test CA and what it signed, as PEM files in one directory.
#[derive(Debug)]
pub struct TestCerts {
    /// The CA that signed [`TestCerts::server_cert`].
    pub ca: PathBuf,
    /// Its private key (for servers that also present a client certificate,
    /// such as the nodes of a TLS Redis Cluster).
    pub ca_key: PathBuf,
    /// A CA that signed nothing here: verification against it must fail.
    pub other_ca: PathBuf,
    /// The server certificate, valid for the DNS name `localhost` only (so
    /// connecting to `127.0.0.1` is a name mismatch).
    pub server_cert: PathBuf,
    /// Its private key, unencrypted.
    pub server_key: PathBuf,
}

impl TestCerts {
    /// Makes the files in `dir`, or [`skip`]s when `openssl` cannot.
    pub fn make(dir: &Path) -> Option<TestCerts> {
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
        if !ok {
            return skip("openssl cannot make test certificates");
        }
        Some(TestCerts {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            other_ca: dir.join("other.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        })
    }
}
