//! Redis via the `redis` crate: standalone (through a reconnecting
//! `ConnectionManager`) or Redis Cluster.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use otm_core::{AccessProof, ClaimProof, MessageId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script, TlsCertificates, Value};
// Only for its `ring` feature: rustls's process-wide default provider, which
// redis's TLS config is built with.
use rustls as _;

use crate::url::{invalid_url, Query};
use crate::{
    check_new, from_unix_ms, unix_ms, wrong_proof, BlobStore, MessageState, MessageStatus,
    NewMessage, Result, StoreError, StoreOptions,
};
use otm_core::ManageVerifier;
use std::time::SystemTime;

/// Settings for [`RedisStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` for a standalone server, or
    /// the seed nodes of a cluster (see [`RedisConfig::cluster`]);
    /// `rediss://` for TLS, with the server's certificate verified (against
    /// the Mozilla roots, or [`RedisConfig::ca_file`]) and its name checked.
    pub urls: Vec<String>,
    /// Whether `urls` are Redis Cluster seed nodes.
    pub cluster: bool,
    /// Prefix of every key otm writes. Default `otm:`.
    pub key_prefix: String,
    /// A PEM file of CA certificates that replaces the Mozilla roots for
    /// `rediss://` (a private CA, as managed services and self-hosted TLS
    /// often use). Only for TLS URLs.
    pub ca_file: Option<PathBuf>,
    /// How long one command may take before the store reports itself
    /// unavailable. Default 2 s.
    pub response_timeout: Duration,
    /// How long one connection attempt may take. Default 2 s.
    pub connection_timeout: Duration,
    /// Options every backend honours.
    pub options: StoreOptions,
}

impl RedisConfig {
    /// A standalone server at `url`.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::build(vec![url.into()], false)
    }

    /// A Redis Cluster reached through any of `seed_urls`.
    pub fn cluster<I, S>(seed_urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(seed_urls.into_iter().map(Into::into).collect(), true)
    }

    fn build(urls: Vec<String>, cluster: bool) -> Self {
        RedisConfig {
            urls,
            cluster,
            key_prefix: "otm:".into(),
            ca_file: None,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            options: StoreOptions::default(),
        }
    }

    /// Parses `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (standalone) or
    /// `redis+cluster://HOST:PORT,HOST:PORT,…` (cluster seed nodes), and
    /// their TLS forms `rediss://` and `rediss+cluster://`, with
    /// `prefix=PREFIX` for [`RedisConfig::key_prefix`] and, with TLS,
    /// `ca=PATH` for [`RedisConfig::ca_file`]; any other parameter is an
    /// error naming it. Certificate checks cannot be turned off: redis's
    /// `#insecure` is refused. Same as `url.parse()`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, mut query) = Query::split(url, "Redis")?;
        if base.contains('#') {
            return Err(invalid_url(
                "a Redis store URL takes no #fragment: certificate checks stay on; \
                 give a private CA with ca=PATH",
            ));
        }
        let (scheme, rest) = base.split_once("://").unwrap_or_default();
        let mut config = match scheme {
            "redis+cluster" | "rediss+cluster" => {
                let hosts = rest.split('/').next().unwrap_or_default();
                if hosts.split(',').any(str::is_empty) {
                    return Err(invalid_url(format!(
                        "{scheme}:// takes HOST:PORT seed nodes separated by commas"
                    )));
                }
                let node = scheme.trim_end_matches("+cluster");
                RedisConfig::cluster(hosts.split(',').map(|h| format!("{node}://{h}")))
            }
            "redis" | "rediss" => RedisConfig::standalone(base),
            _ => {
                return Err(invalid_url(
                    "a Redis store URL starts with redis://, rediss://, redis+cluster:// \
                     or rediss+cluster://",
                ))
            }
        };
        if let Some(prefix) = query.take("prefix") {
            config = config.with_key_prefix(prefix);
        }
        if let Some(ca) = query.take("ca") {
            if !scheme.starts_with("rediss") {
                return Err(invalid_url(
                    "the Redis URL parameter `ca` needs TLS: use rediss:// or rediss+cluster://",
                ));
            }
            if ca.is_empty() {
                return Err(invalid_url(
                    "the Redis URL parameter `ca` takes a file path",
                ));
            }
            config = config.with_ca_file(ca);
        }
        query.finish()?;
        Ok(config)
    }

    /// Whether the URLs ask for TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("rediss://"))
    }

    /// Sets [`RedisConfig::ca_file`].
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets [`RedisConfig::key_prefix`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`RedisConfig::options`].
    pub fn with_options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }
}

impl std::str::FromStr for RedisConfig {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A [`BlobStore`] in Redis.
///
/// Each message is one hash (`e` envelope, `v` claim verifier, `a` access
/// verifier, `f` failed attempts, `m` management verifier, `x` expiry in
/// Unix ms) with a native
/// `PEXPIRE`, so Redis itself never returns or keeps an expired message. Its
/// receipt (`s` state, `c` when, `m`, `x`) lives in a second key with the
/// remaining TTL of the message. Both keys share a hash tag (`otm:{ID}` and
/// `otm:{ID}:r`), so they live on one cluster node and one script can touch
/// both. Put and take are single Lua scripts on the message's
/// key: Redis runs a script without interleaving other commands, so the proof
/// check, the attempt counter and the delete are one atomic step, on one
/// server or on the cluster node that owns the key.
///
/// Durability is Redis's: a server without persistence (`appendonly no`,
/// no snapshots) loses every stored message on restart.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    opts: StoreOptions,
    put_script: Script,
    take_script: Script,
    burn_script: Script,
    status_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.conn, Conn::Cluster(_)))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'v', ARGV[2], 'f', 0, 'x', ARGV[4], 'm', ARGV[5], 'a', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

// Shared by the scripts that remove a message: copies what the sender may
// learn into the receipt key, for the message's remaining lifetime.
const RECEIPT_FN: &str = r"
local function receipt(state, now)
  local m = redis.call('HGET', KEYS[1], 'm')
  local ttl = redis.call('PTTL', KEYS[1])
  if m and m ~= '' and ttl > 0 then
    redis.call('HSET', KEYS[2], 's', state, 'c', now, 'm', m, 'x', redis.call('HGET', KEYS[1], 'x'))
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  redis.call('DEL', KEYS[1])
end
";

// Returns {1, envelope} on success, {0} when absent or for a wrong access
// proof (ARGV[4], nothing counted), {2, failures} for a wrong claim proof
// (the key is deleted when failures reach ARGV[2]).
const TAKE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {0} end
if redis.call('HGET', KEYS[1], 'a') ~= ARGV[4] then return {0} end
if v == ARGV[1] then
  local e = redis.call('HGET', KEYS[1], 'e')
  receipt('opened', ARGV[3])
  return {1, e}
end
local n = redis.call('HINCRBY', KEYS[1], 'f', 1)
if n >= tonumber(ARGV[2]) then receipt('burned', ARGV[3]) end
return {2, n}
";

const BURN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
receipt('burned', ARGV[1])
return 1
";

// {1, expires, manage} for a message, {2, state, changed, expires, manage}
// for a receipt, {0} for nothing.
const STATUS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('HGET', KEYS[1], 'x'), redis.call('HGET', KEYS[1], 'm') or ''}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {2, redis.call('HGET', KEYS[2], 's'), redis.call('HGET', KEYS[2], 'c'),
          redis.call('HGET', KEYS[2], 'x'), redis.call('HGET', KEYS[2], 'm')}
end
return {0}
";

impl RedisStore {
    /// Connects to a standalone server or a cluster.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let op = "connect to Redis";
        if config.key_prefix.contains(['{', '}']) {
            // Braces would change the cluster hash tag that keeps a message
            // and its receipt on one node.
            return Err(StoreError::Invalid {
                reason: "a Redis key prefix must not contain { or }",
            });
        }
        let certificates = tls_certificates(&config)?;
        warn_if_plaintext(&config);
        let conn = if config.cluster {
            let mut builder = ClusterClient::builder(config.urls.clone())
                .connection_timeout(config.connection_timeout)
                .response_timeout(config.response_timeout);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build().map_err(|e| classify(op, e))?;
            Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| classify(op, e))?,
            )
        } else {
            let url = config.urls.first().ok_or(StoreError::Invalid {
                reason: "no Redis URL given",
            })?;
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(url.as_str(), certificates),
                None => redis::Client::open(url.as_str()),
            }
            .map_err(|e| classify(op, e))?;
            let manager = ConnectionManagerConfig::new()
                .set_response_timeout(Some(config.response_timeout))
                .set_connection_timeout(Some(config.connection_timeout))
                .set_number_of_retries(2);
            Conn::Single(
                ConnectionManager::new_with_config(client, manager)
                    .await
                    .map_err(|e| classify(op, e))?,
            )
        };
        Ok(RedisStore {
            conn,
            prefix: config.key_prefix,
            opts: config.options,
            put_script: Script::new(PUT),
            take_script: Script::new(&format!("{RECEIPT_FN}{TAKE}")),
            burn_script: Script::new(&format!("{RECEIPT_FN}{BURN}")),
            status_script: Script::new(STATUS),
        })
    }

    /// The Redis key of a message (its receipt key adds `:r`).
    pub fn key_of(&self, id: &MessageId) -> String {
        format!("{}{{{id}}}", self.prefix)
    }

    async fn run(
        &self,
        op: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        let result = match self.conn.clone() {
            Conn::Single(mut c) => invocation.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        };
        result.map_err(|e| classify(op, e))
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let result = match self.conn.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        result.map_err(|e| classify(op, e))
    }
}

#[async_trait]
impl BlobStore for RedisStore {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        let (_, ttl) = check_new(&self.opts, &message)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = self.key_of(id);
        let mut invocation = self.put_script.key(&key);
        invocation
            .key(format!("{key}:r"))
            .arg(&message.envelope[..])
            .arg(&message.verifier.as_bytes()[..])
            .arg(ttl_ms)
            .arg(crate::unix_ms(message.expires_at))
            .arg(
                message
                    .manage
                    .map(|m| m.as_bytes().to_vec())
                    .unwrap_or_default(),
            )
            .arg(&message.access.as_bytes()[..]);
        match self.run("store a message", invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::Conflict),
            other => Err(unexpected("store a message", other)),
        }
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let op = "take a message";
        let verifier = proof.verifier();
        let access = access.verifier();
        let key = self.key_of(id);
        let mut invocation = self.take_script.key(&key);
        invocation
            .key(format!("{key}:r"))
            .arg(&verifier.as_bytes()[..])
            .arg(self.opts.max_failed_attempts)
            .arg(unix_ms(SystemTime::now()))
            .arg(&access.as_bytes()[..]);
        let reply = self.run(op, invocation).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected(op, reply));
        };
        match items.as_slice() {
            [Value::Int(0)] => Err(StoreError::NotFound),
            [Value::Int(1), Value::BulkString(envelope)] => Ok(envelope.clone()),
            [Value::Int(2), Value::Int(n)] => Err(wrong_proof(
                &self.opts,
                u32::try_from(*n).unwrap_or(u32::MAX),
            )),
            _ => Err(unexpected(op, Value::Array(items))),
        }
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        let key = self.key_of(id);
        let mut invocation = self.burn_script.key(&key);
        invocation
            .key(format!("{key}:r"))
            .arg(unix_ms(SystemTime::now()));
        match self.run("burn a message", invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::NotFound),
            other => Err(unexpected("burn a message", other)),
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let op = "read a message's status";
        let key = self.key_of(id);
        let mut invocation = self.status_script.key(&key);
        invocation.key(format!("{key}:r"));
        let reply = self.run(op, invocation).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected(op, reply));
        };
        let int = |v: &Value| -> Option<i64> {
            match v {
                Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                Value::Int(n) => Some(*n),
                _ => None,
            }
        };
        let verifier = |v: &Value| match v {
            Value::BulkString(b) => <[u8; 32]>::try_from(b.as_slice())
                .ok()
                .map(ManageVerifier::from_bytes),
            _ => None,
        };
        match items.as_slice() {
            [Value::Int(0)] => Err(StoreError::NotFound),
            [Value::Int(1), x, m] => Ok(MessageStatus {
                // Redis drops a message at its expiry, so a present one waits.
                state: MessageState::Waiting,
                expires_at: from_unix_ms(int(x).ok_or_else(|| unexpected(op, x.clone()))?),
                changed_at: None,
                manage: verifier(m),
            }),
            [Value::Int(2), Value::BulkString(s), c, x, m] => Ok(MessageStatus {
                state: if s.as_slice() == b"opened" {
                    MessageState::Opened
                } else {
                    MessageState::Burned
                },
                expires_at: from_unix_ms(int(x).ok_or_else(|| unexpected(op, x.clone()))?),
                changed_at: int(c).map(from_unix_ms),
                manage: verifier(m),
            }),
            _ => Err(unexpected(op, Value::Array(items))),
        }
    }

    async fn check(&self) -> Result<()> {
        let _: String = self.command("check Redis", &redis::cmd("PING")).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        match self.conn {
            Conn::Single(_) => "redis",
            Conn::Cluster(_) => "redis-cluster",
        }
    }

    fn options(&self) -> &StoreOptions {
        &self.opts
    }
}

/// The custom CA of a TLS config, read from [`RedisConfig::ca_file`]; `None`
/// keeps redis's own roots (the Mozilla set) or plain TCP.
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    if !config.tls() {
        return Err(StoreError::Invalid {
            reason: "a Redis CA file needs rediss:// URLs",
        });
    }
    let pem = std::fs::read(path).map_err(|e| StoreError::Misconfigured {
        reason: format!("cannot read the Redis CA file {}: {e}", path.display()),
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// Warns at connect for a plain `redis://` URL to another machine: anyone
/// on the path can read the ciphertext and the verifiers, or answer
/// instead of the server.
fn warn_if_plaintext(config: &RedisConfig) {
    for host in config.urls.iter().filter_map(|u| plaintext_remote_host(u)) {
        tracing::warn!(
            %host,
            "the Redis connection is not encrypted: use rediss:// (with ca=PATH for a \
             private CA) for a server on another machine"
        );
    }
}

/// The host of a plain `redis://[user:password@]host[:port][/db]` URL when
/// it is not this machine (never the password).
fn plaintext_remote_host(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("redis://")?.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => host_port,
    };
    (!crate::is_loopback_host(host)).then_some(host)
}

fn classify(op: &'static str, err: RedisError) -> StoreError {
    let retryable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_cluster_error()
        || matches!(
            err.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY")
        );
    StoreError::driver(op, retryable, err)
}

fn unexpected(op: &'static str, value: Value) -> StoreError {
    // Only the shape is reported: the value may hold an envelope.
    let shape = match value {
        Value::Array(_) => "an array",
        Value::BulkString(_) => "a string",
        Value::Int(_) => "an integer",
        Value::Nil => "nil",
        _ => "another type",
    };
    StoreError::Backend {
        op,
        source: format!("unexpected reply from Redis: {shape}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::plaintext_remote_host;

    #[test]
    fn plaintext_to_another_machine_is_noticed() {
        for local in [
            "redis://127.0.0.1:6379",
            "redis://localhost:6379/2",
            "redis://:pw@[::1]:6379",
            "redis://user:p@ss@127.0.0.1",
            "rediss://redis.example:6380",
        ] {
            assert_eq!(plaintext_remote_host(local), None, "{local}");
        }
        assert_eq!(
            plaintext_remote_host("redis://:pw@10.0.0.5:6379/1"),
            Some("10.0.0.5")
        );
        assert_eq!(
            plaintext_remote_host("redis://cache.internal"),
            Some("cache.internal")
        );
        assert_eq!(
            plaintext_remote_host("redis://[2001:db8::1]:6379"),
            Some("[2001:db8::1]")
        );
    }
}
