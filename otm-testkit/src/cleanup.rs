//! Guards for what a test makes in the shared services: a PostgreSQL schema
//! ([`PgSchema`]) and a Redis key prefix ([`RedisPrefix`]). Each removes its
//! data when dropped, so also when the test panics, through the
//! command-line clients `psql` and `redis-cli` (`scripts/services` installs
//! both): `Drop` needs no async runtime that way. What a guard cannot remove
//! it reports on stderr, and the `leftovers` step of `scripts/test` fails on
//! whatever is left.
//!
//! The names start with `otm_test_` and `otm-`: the patterns
//! `scripts/services` clears before a run and counts after it. (The server's
//! own default key prefix, `otm:`, is not one of them.)

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::env::{postgres_url, redis_cluster_urls, redis_url, unique_suffix};

/// A fresh schema name on the shared PostgreSQL ([`postgres_url`]),
/// `{stem}{random suffix}`; the schema and everything in it is dropped
/// (`DROP SCHEMA … CASCADE`) when the guard is dropped. Declare it before
/// anything that uses the schema (a store, a server process), so that it is
/// dropped after them.
#[derive(Debug)]
pub struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    /// A new name, `stem` (`otm_test_` and then lowercase letters, digits
    /// and `_`; panics otherwise) followed by a random suffix.
    pub fn new(stem: &str) -> PgSchema {
        assert!(
            stem.starts_with("otm_test_")
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a test schema's stem starts with otm_test_ and is [a-z0-9_]: {stem:?}"
        );
        PgSchema {
            url: postgres_url(),
            name: format!("{stem}{}", unique_suffix()),
        }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store URL for this schema on the shared server: its URL with
    /// `schema=NAME` added (for `otm_store::connect` or `otm-server --store`).
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl std::fmt::Display for PgSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let result = Command::new("psql")
            .arg(&self.url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            // A connection of the test's that is still in a transaction
            // holds locks: wait for it a while, not forever.
            .env(
                "PGOPTIONS",
                "-c lock_timeout=15s -c client_min_messages=warning",
            )
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output();
        let what = format!("drop schema {} in {}", self.name, self.url);
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => report(&what, &text(&out)),
            Err(e) => report(&what, &format!("cannot run psql: {e}")),
        }
    }
}

/// A fresh Redis key prefix, `{stem}{random suffix}:`; every key that
/// starts with it is deleted (`UNLINK`) from the shared standalone Redis
/// ([`redis_url`]) and from every primary of the shared Cluster
/// ([`redis_cluster_urls`]) when the guard is dropped. Declare it before
/// anything that writes with the prefix (a store, a server process), so that
/// it is dropped after them.
#[derive(Debug)]
pub struct RedisPrefix {
    prefix: String,
}

impl RedisPrefix {
    /// A new prefix, `stem` (`otm-` and then lowercase letters, digits, `-`
    /// and `_`; panics otherwise) followed by a random suffix and `:`.
    pub fn new(stem: &str) -> RedisPrefix {
        assert!(
            stem.starts_with("otm-")
                && stem.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }),
            "a test key prefix's stem starts with otm- and is [a-z0-9_-]: {stem:?}"
        );
        RedisPrefix {
            prefix: format!("{stem}{}:", unique_suffix()),
        }
    }

    /// The prefix, ending in `:`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }
}

impl std::fmt::Display for RedisPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.prefix)
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        // The prefix is [a-z0-9_:-]: nothing in it is a glob character.
        let pattern = format!("{}*", self.prefix);
        let mut nodes = vec![redis_url()];
        nodes.extend(cluster_primaries());
        for node in nodes {
            if let Err(why) = unlink_matching(&node, &pattern) {
                report(&format!("delete the keys {pattern} on {node}"), &why);
            }
        }
    }
}

/// The primaries of the shared Cluster, as URLs, from the first seed that
/// answers `CLUSTER NODES`; none when no seed does (no Cluster running).
fn cluster_primaries() -> Vec<String> {
    for seed in redis_cluster_urls() {
        let scheme = seed.split_once("://").map_or("redis", |(s, _)| s);
        let Ok(out) = Command::new("redis-cli")
            .args(["-u", &seed, "cluster", "nodes"])
            .stdin(Stdio::null())
            .output()
        else {
            // No redis-cli: the standalone server's cleanup reports that.
            return Vec::new();
        };
        if !out.status.success() {
            continue;
        }
        let nodes = primaries(&String::from_utf8_lossy(&out.stdout), scheme);
        if !nodes.is_empty() {
            return nodes;
        }
    }
    Vec::new()
}

/// The primaries (not failed) in the output of `CLUSTER NODES`, one node a
/// line, `<id> <host:port@cport[,hostname]> <flags> …`, as `scheme://`
/// URLs; nothing from other output (a server not in cluster mode answers
/// with an error).
fn primaries(cluster_nodes: &str, scheme: &str) -> Vec<String> {
    cluster_nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let flagged = |flag: &str| flags.split(',').any(|f| f == flag);
            if !flagged("master") || flagged("fail") {
                return None;
            }
            let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
            match (host, host.contains(':')) {
                ("", _) => None,
                (_, true) => Some(format!("{scheme}://[{host}]:{port}")),
                (_, false) => Some(format!("{scheme}://{host}:{port}")),
            }
        })
        .collect()
}

/// Deletes the keys matching `pattern` on one server or Cluster node:
/// `SCAN`, then one `UNLINK` per key (a Cluster node refuses keys of
/// different slots in one command), sent in one go with `redis-cli --pipe`.
fn unlink_matching(node: &str, pattern: &str) -> Result<(), String> {
    let scan = Command::new("redis-cli")
        .args(["-u", node, "--scan", "--pattern", pattern])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !scan.status.success() {
        return Err(text(&scan));
    }
    let mut commands: Vec<u8> = Vec::new();
    for key in scan.stdout.split(|&b| b == b'\n').filter(|k| !k.is_empty()) {
        commands.extend_from_slice(format!("*2\r\n$6\r\nUNLINK\r\n${}\r\n", key.len()).as_bytes());
        commands.extend_from_slice(key);
        commands.extend_from_slice(b"\r\n");
    }
    if commands.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("redis-cli")
        .args(["-u", node, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written from another thread while this one reads the replies, so
    // that neither side can fill a pipe and wait for the other.
    let writer = std::thread::spawn(move || stdin.write_all(&commands));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    match (out.status.success(), writer.join()) {
        (true, Ok(Ok(()))) => Ok(()),
        (true, Ok(Err(e))) => Err(format!("writing to redis-cli: {e}")),
        _ => Err(text(&out)),
    }
}

/// A command's stderr and stdout, trimmed.
fn text(out: &Output) -> String {
    format!(
        "{} {}",
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
    .trim()
    .to_owned()
}

/// Says on the real stderr (past the test harness's capture) that `what`
/// failed and why; silent when the server refused the connection, as it
/// does when a test was skipped for want of it (nothing was made there).
fn report(what: &str, why: &str) {
    if why.to_ascii_lowercase().contains("connection refused") {
        return;
    }
    let _ = writeln!(
        std::io::stderr(),
        "CLEANUP FAILED: {what}: {why} (the leftovers step of scripts/test counts what is left)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_come_from_cluster_nodes() {
        let nodes = "\
4d97 127.0.0.1:7102@17102 master - 0 1796200609728 2 connected 5461-10922
d998 127.0.0.1:7103@17103,node-c master,fail - 0 1796200608725 3 connected
72f0 127.0.0.1:7101@17101 myself,master - 0 1796200609000 1 connected 0-5460
aa11 127.0.0.1:7104@17104 slave 72f0 0 1796200609000 1 connected
bb22 :0@0 master,noaddr - 0 0 0 disconnected
cc33 ::1:7105@17105 master - 0 0 4 connected 1-2
";
        assert_eq!(
            primaries(nodes, "redis"),
            [
                "redis://127.0.0.1:7102",
                "redis://127.0.0.1:7101",
                "redis://[::1]:7105"
            ]
        );
        let refused = "ERR This instance has cluster support disabled";
        assert!(primaries(refused, "redis").is_empty());
    }

    #[test]
    fn names_are_fresh_and_match_the_leftover_patterns() {
        let (a, b) = (PgSchema::new("otm_test_"), PgSchema::new("otm_test_"));
        assert_ne!(a.name(), b.name());
        assert!(a.name().starts_with("otm_test_") && a.name().len() <= 63);
        assert!(a.store_url().ends_with(&format!("schema={a}")));
        let keys = RedisPrefix::new("otm-test-");
        assert!(keys.as_str().starts_with("otm-test-") && keys.as_str().ends_with(':'));
        // Not dropped: nothing was made, and this test needs no server.
        std::mem::forget((a, b, keys));
    }
}
