//! Redis via the `redis` crate: standalone (through a reconnecting
//! `ConnectionManager`) or Redis Cluster.

use async_trait::async_trait;
use otm_core::{AccessProof, ClaimProof, MessageId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script, Value};
// Only for its `ring` feature: rustls's process-wide default provider, which
// redis's TLS config is built with.
use rustls as _;

use crate::{
    check_group, check_new, from_unix_ms, unix_ms, wrong_proof, BlobStore, MessageState,
    MessageStatus, NewMessage, Outbox, Result, StoreError, StoreOptions,
};

mod config;
mod outbox;
mod requests;
pub use config::RedisConfig;
use config::{check_transport, tls_certificates};
use otm_core::ManageVerifier;
use std::time::{Duration, SystemTime};

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A [`BlobStore`] in Redis.
///
/// Each message is one hash (`e` envelope, `v` claim verifier, `a` access
/// verifier, `f` failed attempts, `m` management verifier, `x` expiry in
/// Unix ms, `r` the embedder's reference or empty, `o` its creator's text
/// form or empty) with a native
/// `PEXPIRE`, so Redis itself never returns or keeps an expired message. Its
/// receipt (`s` state, `c` when, `m`, `x`, `r`, `o`) lives in a second key with the
/// remaining TTL of the message. Put and take are single Lua scripts on the
/// message's key (on a Cluster, take, burn and status run a second one on a
/// pre-bucket key when the first finds nothing): Redis runs a script
/// without interleaving other commands, so the proof check, the attempt
/// counter and the delete are one atomic step, on one server or on the
/// cluster node that owns the key.
///
/// Key layout, under the prefix (`otm:` here):
///
/// | | message, receipt, request | event outbox |
/// |---|---|---|
/// | standalone | `otm:{ID}`, `otm:{ID}:r`, `otm:{ID}:q` | `otm:{events}:seq`, `:due`, `:data` |
/// | Cluster | `otm:{TAG}:ID`, `otm:{TAG}:ID:r`, `otm:{TAG}:ID:q` | `otm:{TAG}:seq`, `:due`, `:data` |
///
/// A request for a secret is a hash of its own (`n` sealed note, `q`
/// answer verifier, `a`, `v`, `x`, `r`, `o` as for a message, `d` when it
/// was answered) beside the key its answer will have, so answering (mark
/// the request, store the answer as a message) is one script on one slot.
///
/// A script may only touch keys of one cluster slot, so on a Cluster each
/// message lives in one of [`CLUSTER_BUCKETS`] buckets (by its ID's first
/// byte) with that bucket's outbox: the bucket's hash tag puts them in one
/// slot, and the event is recorded in the same script as the change there
/// too. Bucket `NN`'s tag is the first of `bNN.0`, `bNN.1`, … whose slot
/// lies in the `NN`th 256-slot range, so the buckets are evenly spaced over
/// the 16384 slots and any even split of them among primaries (as
/// `redis-cli --cluster create` makes) holds equal shares, to within one. Messages a Cluster store wrote before it had
/// buckets (`otm:{ID}`) are still found, taken and burned there, without
/// events.
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
    quota_script: Script,
    rate_script: Script,
    group_script: Script,
    pending_script: Script,
    settle_script: Script,
    unput_script: Script,
    outbox: outbox::Scripts,
    requests: requests::Scripts,
}

/// How many buckets a Redis Cluster store spreads its messages over (see
/// [`RedisStore`]): 64 evenly spaced slots of the cluster's 16384, so a
/// cluster of up to 64 primaries with evenly split slots holds equal shares
/// (to within one bucket), and few enough for a dispatcher to poll every
/// bucket's outbox. A bucket is one slot to move when resharding.
pub const CLUSTER_BUCKETS: u8 = 64;

/// Redis Cluster's key slot of a hash tag: CRC-16/XMODEM modulo 16384 (the
/// Redis Cluster specification).
pub(super) fn cluster_slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The hash tag of each Cluster bucket: bucket `NN`'s is the first of
/// `bNN.0`, `bNN.1`, … whose slot lies in `[NN × 256, NN × 256 + 256)`.
/// The layout of stored data: never change it.
pub(crate) fn bucket_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let width = 16384 / u16::from(CLUSTER_BUCKETS);
        (0..u16::from(CLUSTER_BUCKETS))
            .map(|bucket| {
                (0u32..)
                    .map(|n| format!("b{bucket:02}.{n}"))
                    .find(|tag| cluster_slot(tag) / width == bucket)
                    .expect("CRC-16 reaches every range")
            })
            .collect()
    })
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.conn, Conn::Cluster(_)))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

// The event outbox (with `StoreOptions::events`): when a
// script is given the outbox keys (sequence counter, due sorted set, data
// hash) from KEYS[base] on, `record` writes the event of its change in the
// same script, so in the same atomic step, with the reference (`r`) and
// creator (`o`) of the hash `src`. Message scripts have them at KEYS[3..5]
// and call `event` before the message key is deleted; request scripts
// (requests.rs) at KEYS[4..6].
const EVENT_FN: &str = r"
local function record(base, src, kind, now, id)
  if #KEYS < base + 2 then return end
  local seq = redis.call('INCR', KEYS[base])
  local r = redis.call('HGET', src, 'r') or ''
  local o = redis.call('HGET', src, 'o') or ''
  redis.call('HSET', KEYS[base + 2], seq, cjson.encode({k = kind, m = id, r = r, o = o, a = now, n = 0}))
  redis.call('ZADD', KEYS[base + 1], now, seq)
end
local function event(kind, now, id)
  record(3, KEYS[1], kind, now, id)
end
";
// ARGV 1-9: a message's nine values (`message_args`), ARGV[10] now.
const PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'v', ARGV[2], 'f', 0, 'x', ARGV[4], 'm', ARGV[5], 'a', ARGV[6],
           'r', ARGV[7], 'o', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
event(1, ARGV[10], ARGV[8])
return 1
";

// Shared by the scripts that remove a message: copies what the sender may
// learn into the receipt key, for the message's remaining lifetime.
const RECEIPT_FN: &str = r"
local function receipt(state, now)
  local m = redis.call('HGET', KEYS[1], 'm')
  local ttl = redis.call('PTTL', KEYS[1])
  if m and m ~= '' and ttl > 0 then
    redis.call('HSET', KEYS[2], 's', state, 'c', now, 'm', m, 'x', redis.call('HGET', KEYS[1], 'x'),
               'r', redis.call('HGET', KEYS[1], 'r') or '', 'o', redis.call('HGET', KEYS[1], 'o') or '')
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  redis.call('DEL', KEYS[1])
end
";

// Returns {1, envelope} on success, {0} when absent or for a wrong access
// proof (ARGV[4], nothing counted), {2, failures} for a wrong claim proof
// (the key is deleted when failures reach ARGV[2]). ARGV[5]: the ID's text.
const TAKE: &str = r"
local g = redis.call('HGET', KEYS[1], 'g')
if g then return {3, g} end
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {0} end
if redis.call('HGET', KEYS[1], 'a') ~= ARGV[4] then return {0} end
if v == ARGV[1] then
  local e = redis.call('HGET', KEYS[1], 'e')
  event(2, ARGV[3], ARGV[5])
  receipt('opened', ARGV[3])
  return {1, e}
end
local n = redis.call('HINCRBY', KEYS[1], 'f', 1)
if n >= tonumber(ARGV[2]) then
  event(4, ARGV[3], ARGV[5])
  receipt('burned', ARGV[3])
end
return {2, n}
";

// ARGV[1] now, ARGV[2] the ID's text.
const BURN: &str = r"
local g = redis.call('HGET', KEYS[1], 'g')
if g then return {3, g} end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
event(3, ARGV[1], ARGV[2])
receipt('burned', ARGV[1])
return 1
";

// {1, expires, manage, reference, creator} for a message, {2, state,
// changed, expires, manage, reference, creator} for a receipt, {0} for
// nothing.
const STATUS: &str = r"
local g = redis.call('HGET', KEYS[1], 'g')
if g then return {3, g} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('HGET', KEYS[1], 'x'), redis.call('HGET', KEYS[1], 'm') or '',
          redis.call('HGET', KEYS[1], 'r') or '', redis.call('HGET', KEYS[1], 'o') or ''}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {2, redis.call('HGET', KEYS[2], 's'), redis.call('HGET', KEYS[2], 'c'),
          redis.call('HGET', KEYS[2], 'x'), redis.call('HGET', KEYS[2], 'm'),
          redis.call('HGET', KEYS[2], 'r') or '', redis.call('HGET', KEYS[2], 'o') or ''}
end
return {0}
";

// A group, all or none (standalone only: its keys are in many slots).
// KEYS: each member's message and receipt key (2i-1, 2i), then, with
// events, the outbox. ARGV[1] the count n, ARGV[2] now, then each
// member's nine values (`message_args`).
const PUT_GROUP: &str = r"
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then return 0 end
end
for i = 1, n do
  local a = 3 + (i - 1) * 9
  local key = KEYS[2 * i - 1]
  redis.call('DEL', KEYS[2 * i])
  redis.call('HSET', key, 'e', ARGV[a], 'v', ARGV[a + 1], 'f', 0, 'x', ARGV[a + 3], 'm', ARGV[a + 4],
             'a', ARGV[a + 5], 'r', ARGV[a + 6], 'o', ARGV[a + 8])
  redis.call('PEXPIRE', key, ARGV[a + 2])
  record(2 * n + 1, key, 1, ARGV[2], ARGV[a + 7])
end
return 1
";
// A group member on a Cluster, stored pending (see `GroupStore` below):
// like PUT, without its event, with field `g` naming the group's commit
// key (ARGV[10]). Take, burn and status answer {3, g} for it.
const PUT_PENDING: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'v', ARGV[2], 'f', 0, 'x', ARGV[4], 'm', ARGV[5], 'a', ARGV[6],
           'r', ARGV[7], 'o', ARGV[9], 'g', ARGV[10])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";
// A committed member made ordinary: its pending mark (ARGV[1], the commit
// key) removed and its `created` event recorded (ARGV[2] now, ARGV[3] the
// ID's text). 0 when it is not pending under that commit key.
const SETTLE: &str = r"
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'g')
event(1, ARGV[2], ARGV[3])
return 1
";
// A member of a group that did not commit removed, if it is still pending
// under this group's commit key (ARGV[1]).
const UNPUT: &str = r"
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

// One quota window's count (KEYS[1], expiring with the window: ARGV[2]
// ms): 1 if ARGV[3] uses were counted within the limit ARGV[1], 0
// (nothing counted) if they do not fit.
const QUOTA: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local uses = tonumber(ARGV[3])
if n + uses > tonumber(ARGV[1]) then return 0 end
redis.call('INCRBY', KEYS[1], uses)
if n == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

// One rate bucket (KEYS[1]): its theoretical arrival time, kept until
// then. ARGV: now (Unix ms), the emission interval and the tolerance (ms).
// Returns 0 when the request is counted, else the wait in ms.
const RATE: &str = r"
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local next = tat + tonumber(ARGV[2])
local over = next - now - tonumber(ARGV[3])
if over > 0 then return over end
redis.call('SET', KEYS[1], next, 'PX', next - now)
return 0
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
        check_transport(&config)?;
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
            put_script: Script::new(&format!("{EVENT_FN}{PUT}")),
            take_script: Script::new(&format!("{EVENT_FN}{RECEIPT_FN}{TAKE}")),
            burn_script: Script::new(&format!("{EVENT_FN}{RECEIPT_FN}{BURN}")),
            quota_script: Script::new(QUOTA),
            rate_script: Script::new(RATE),
            group_script: Script::new(&format!("{EVENT_FN}{PUT_GROUP}")),
            pending_script: Script::new(PUT_PENDING),
            settle_script: Script::new(&format!("{EVENT_FN}{SETTLE}")),
            unput_script: Script::new(UNPUT),
            outbox: outbox::Scripts::new(),
            requests: requests::Scripts::new(),
            status_script: Script::new(STATUS),
        })
    }

    /// The Redis key of a message (its receipt key adds `:r`).
    pub fn key_of(&self, id: &MessageId) -> String {
        match self.conn {
            Conn::Single(_) => self.legacy_key_of(id),
            Conn::Cluster(_) => {
                let tag = &bucket_tags()[usize::from(self.bucket_of(id))];
                format!("{}{{{tag}}}:{id}", self.prefix)
            }
        }
    }

    /// The key of a message on a standalone server, and on a Cluster
    /// before buckets.
    fn legacy_key_of(&self, id: &MessageId) -> String {
        format!("{}{{{id}}}", self.prefix)
    }

    /// How many outboxes the store has: one per bucket on a Cluster.
    pub(super) fn buckets(&self) -> u8 {
        match self.conn {
            Conn::Single(_) => 1,
            Conn::Cluster(_) => CLUSTER_BUCKETS,
        }
    }

    /// The bucket of message `id` (always 0 on a standalone server).
    pub(super) fn bucket_of(&self, id: &MessageId) -> u8 {
        id.as_bytes()[0] % self.buckets()
    }

    /// A script invocation on the message `id`: its key, its receipt key
    /// and, when events are on, its bucket's outbox keys.
    fn on_message<'a>(&self, script: &'a Script, id: &MessageId) -> redis::ScriptInvocation<'a> {
        let key = self.key_of(id);
        let mut invocation = script.key(&key);
        invocation.key(format!("{key}:r"));
        if self.opts.events {
            let [seq, due, data] = self.outbox_keys(self.bucket_of(id));
            invocation.key(seq).key(due).key(data);
        }
        invocation
    }

    /// On a Cluster, the same script on the message's key from before
    /// buckets (without events: that key is in no bucket's slot); `None`
    /// on a standalone server, where the key never changed.
    fn on_legacy<'a>(
        &self,
        script: &'a Script,
        id: &MessageId,
    ) -> Option<redis::ScriptInvocation<'a>> {
        if let Conn::Single(_) = self.conn {
            return None;
        }
        let key = self.legacy_key_of(id);
        let mut invocation = script.key(&key);
        invocation.key(format!("{key}:r"));
        Some(invocation)
    }

    /// Runs `script` on message `id` with `args`; on a Cluster, when the
    /// message is not there, runs it again on the key from before buckets.
    async fn run_on_message(
        &self,
        op: &'static str,
        script: &Script,
        id: &MessageId,
        args: impl Fn(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Value> {
        let mut invocation = self.on_message(script, id);
        args(&mut invocation);
        let reply = self.run(op, invocation).await?;
        let absent = match &reply {
            Value::Int(0) => true,
            Value::Array(items) => matches!(items.as_slice(), [Value::Int(0)]),
            _ => false,
        };
        match self.on_legacy(script, id) {
            Some(mut legacy) if absent => {
                args(&mut legacy);
                self.run(op, legacy).await
            }
            _ => Ok(reply),
        }
    }

    /// Runs `step` (a take, burn or status of message `id`) and, when it
    /// finds the message pending in a group (`{3, commit key}`), settles
    /// it if its group committed and runs `step` again; a member of a group
    /// that never committed is [`StoreError::NotFound`].
    async fn settled<F, Fut>(&self, id: &MessageId, step: F) -> Result<Value>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value>>,
    {
        let reply = step().await?;
        let commit = match &reply {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(3), Value::BulkString(g)] => String::from_utf8(g.clone()).ok(),
                _ => return Ok(reply),
            },
            _ => return Ok(reply),
        };
        let Some(commit) = commit else {
            return Err(unexpected("settle a group member", reply));
        };
        let op = "settle a group member";
        let committed: bool = self.command(op, redis::cmd("EXISTS").arg(&commit)).await?;
        if !committed {
            return Err(StoreError::NotFound);
        }
        let mut invocation = self.on_message(&self.settle_script, id);
        invocation
            .arg(&commit)
            .arg(unix_ms(SystemTime::now()))
            .arg(id.to_string());
        self.run(op, invocation).await?;
        match step().await? {
            Value::Array(items) if matches!(items.as_slice(), [Value::Int(3), _]) => {
                Err(unexpected(op, Value::Array(items)))
            }
            reply => Ok(reply),
        }
    }

    /// A group on a Cluster, whose members' keys lie in many slots: each
    /// member is stored pending (field `g` names the group's commit key),
    /// invisible to take, burn and status; then the commit key is set
    /// (`SET NX`, one key: the group's one atomic step); then each member
    /// is settled (mark removed, `created` event recorded). A put cut off
    /// before the commit leaves only invisible members, which expire; one
    /// cut off after it leaves members that settle when first read. A
    /// member whose ID is taken ends the put with [`StoreError::Conflict`]
    /// after the members already written are removed.
    async fn put_group_cluster(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let op = "store a group of messages";
        let checked = check_group(&self.opts, &messages)?;
        let (first, _) = &messages[0];
        let tag = &bucket_tags()[usize::from(self.bucket_of(first))];
        let commit = format!("{}{{{tag}}}:group:{first}", self.prefix);
        let mut written = Vec::with_capacity(messages.len());
        let mut ttl_ms = 1;
        for ((id, message), (expires_at_ms, ttl)) in messages.iter().zip(checked) {
            let member_ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            ttl_ms = ttl_ms.max(member_ttl);
            let key = self.key_of(id);
            let mut invocation = self.pending_script.key(&key);
            invocation.key(format!("{key}:r"));
            message_args(&mut invocation, id, message, expires_at_ms, member_ttl);
            invocation.arg(&commit);
            let stored = match self.run(op, invocation).await {
                Ok(Value::Int(1)) => Ok(()),
                Ok(Value::Int(0)) => Err(StoreError::Conflict),
                Ok(other) => Err(unexpected(op, other)),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                self.unput(&commit, &written).await;
                return Err(e);
            }
            written.push(*id);
        }
        let set: Option<String> = self
            .command(
                op,
                redis::cmd("SET")
                    .arg(&commit)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms),
            )
            .await?;
        if set.is_none() {
            // Only a reused first ID could find its commit key set.
            self.unput(&commit, &written).await;
            return Err(StoreError::Conflict);
        }
        // Committed: the group exists whole from here on. Settling each
        // member now spares its first reader the extra round trips and
        // records the `created` events; a member not settled (a cut-off
        // put) settles when it is first read.
        let now = unix_ms(SystemTime::now());
        for id in &written {
            let mut invocation = self.on_message(&self.settle_script, id);
            invocation.arg(&commit).arg(now).arg(id.to_string());
            if let Err(e) = self.run(op, invocation).await {
                tracing::warn!(error = %e, "a committed group member settles when it is first read");
            }
        }
        Ok(())
    }

    /// Removes the pending members `ids` of a group that did not commit
    /// (best effort: one left behind is invisible and expires).
    async fn unput(&self, commit: &str, ids: &[MessageId]) {
        for id in ids {
            let key = self.key_of(id);
            let mut invocation = self.unput_script.key(&key);
            invocation.arg(commit);
            if let Err(e) = self
                .run("remove an uncommitted group member", invocation)
                .await
            {
                tracing::warn!(error = %e, "an uncommitted group member stays until it expires");
            }
        }
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
        let (expires_at_ms, ttl) = check_new(&self.opts, &message)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.on_message(&self.put_script, id);
        message_args(&mut invocation, id, &message, expires_at_ms, ttl_ms);
        invocation.arg(unix_ms(SystemTime::now()));
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
        let now = unix_ms(SystemTime::now());
        let args = |invocation: &mut redis::ScriptInvocation<'_>| {
            invocation
                .arg(&verifier.as_bytes()[..])
                .arg(self.opts.max_failed_attempts)
                .arg(now)
                .arg(&access.as_bytes()[..])
                .arg(id.to_string());
        };
        let reply = self
            .settled(id, || self.run_on_message(op, &self.take_script, id, args))
            .await?;
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
        let now = unix_ms(SystemTime::now());
        let args = |invocation: &mut redis::ScriptInvocation<'_>| {
            invocation.arg(now).arg(id.to_string());
        };
        let op = "burn a message";
        let reply = self
            .settled(id, || self.run_on_message(op, &self.burn_script, id, args))
            .await?;
        match reply {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::NotFound),
            other => Err(unexpected("burn a message", other)),
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let op = "read a message's status";
        // The status script takes no outbox keys: with events on, they are
        // given but unused.
        let reply = self
            .settled(id, || {
                self.run_on_message(op, &self.status_script, id, |_| {})
            })
            .await?;
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
        // An empty field is no reference or creator (neither is ever empty).
        let reference = |v: &Value| match v {
            Value::BulkString(b) if !b.is_empty() => String::from_utf8(b.clone()).ok(),
            _ => None,
        };
        let creator = |v: &Value| crate::creator_from(reference(v).as_deref());
        match items.as_slice() {
            [Value::Int(0)] => Err(StoreError::NotFound),
            [Value::Int(1), x, m, r, o] => Ok(MessageStatus {
                // Redis drops a message at its expiry, so a present one waits.
                state: MessageState::Waiting,
                expires_at: from_unix_ms(int(x).ok_or_else(|| unexpected(op, x.clone()))?),
                changed_at: None,
                manage: verifier(m),
                creator: creator(o),
                reference: reference(r),
            }),
            [Value::Int(2), Value::BulkString(s), c, x, m, r, o] => Ok(MessageStatus {
                state: if s.as_slice() == b"opened" {
                    MessageState::Opened
                } else {
                    MessageState::Burned
                },
                expires_at: from_unix_ms(int(x).ok_or_else(|| unexpected(op, x.clone()))?),
                changed_at: int(c).map(from_unix_ms),
                manage: verifier(m),
                creator: creator(o),
                reference: reference(r),
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

    fn quotas(&self) -> Option<&dyn crate::QuotaCounter> {
        Some(self)
    }

    fn rates(&self) -> Option<&dyn crate::RateCounter> {
        Some(self)
    }

    fn requests(&self) -> Option<&dyn crate::RequestStore> {
        Some(self)
    }

    fn groups(&self) -> Option<&dyn crate::GroupStore> {
        // One script on a standalone server; pending members and one
        // commit key on a Cluster, whose slots no script spans.
        Some(self)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }
}

#[async_trait]
impl crate::QuotaCounter for RedisStore {
    async fn count_quota(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> Result<bool> {
        let now = unix_ms(SystemTime::now());
        let end = crate::window_end(now, window);
        let quota_key = format!("{}quota:{{{key}}}:{end}", self.prefix);
        let mut invocation = self.quota_script.key(&quota_key);
        invocation
            .arg(limit)
            .arg((end - now).max(1))
            .arg(uses.max(1));
        match self.run("count a quota", invocation).await? {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            other => Err(unexpected("count a quota", other)),
        }
    }
}

#[async_trait]
impl crate::GroupStore for RedisStore {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let op = "store a group of messages";
        if let Conn::Cluster(_) = self.conn {
            return self.put_group_cluster(messages).await;
        }
        let checked = check_group(&self.opts, &messages)?;
        let now = unix_ms(SystemTime::now());
        let mut invocation = self.group_script.prepare_invoke();
        for (id, _) in &messages {
            let key = self.key_of(id);
            invocation.key(&key).key(format!("{key}:r"));
        }
        if self.opts.events {
            let [seq, due, data] = self.outbox_keys(0);
            invocation.key(seq).key(due).key(data);
        }
        invocation.arg(messages.len()).arg(now);
        for ((id, message), (expires_at_ms, ttl)) in messages.iter().zip(checked) {
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            message_args(&mut invocation, id, message, expires_at_ms, ttl_ms);
        }
        match self.run(op, invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::Conflict),
            other => Err(unexpected(op, other)),
        }
    }
}

#[async_trait]
impl crate::RateCounter for RedisStore {
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Option<Duration>> {
        let op = "count a rate";
        let (step, tolerance) = crate::rate_params(burst, interval);
        let mut invocation = self.rate_script.key(format!("{}rate:{key}", self.prefix));
        invocation
            .arg(unix_ms(SystemTime::now()))
            .arg(step)
            .arg(tolerance);
        match self.run(op, invocation).await? {
            Value::Int(0) => Ok(None),
            Value::Int(wait) if wait > 0 => Ok(Some(Duration::from_millis(wait.unsigned_abs()))),
            other => Err(unexpected(op, other)),
        }
    }
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

/// A message's nine script arguments, in the order the put scripts read
/// them: envelope, claim verifier, TTL (ms), expiry (Unix ms), manage
/// verifier (or empty), access verifier, reference (or empty), the ID's
/// text, creator (or empty).
fn message_args(
    invocation: &mut redis::ScriptInvocation<'_>,
    id: &MessageId,
    message: &NewMessage,
    expires_at_ms: i64,
    ttl_ms: u64,
) {
    invocation
        .arg(&message.envelope[..])
        .arg(&message.verifier.as_bytes()[..])
        .arg(ttl_ms)
        .arg(expires_at_ms)
        .arg(
            message
                .manage
                .map(|m| m.as_bytes().to_vec())
                .unwrap_or_default(),
        )
        .arg(&message.access.as_bytes()[..])
        .arg(message.reference.as_deref().unwrap_or_default())
        .arg(id.to_string())
        .arg(
            message
                .creator
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
}

pub(super) fn unexpected(op: &'static str, value: Value) -> StoreError {
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
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // The specification's example: CRC-16/XMODEM("123456789") = 0x31C3.
        assert_eq!(cluster_slot("123456789"), 0x31C3); // below 16384 already
    }

    #[test]
    fn bucket_tags_are_evenly_spaced_and_fixed() {
        let tags = bucket_tags();
        assert_eq!(tags.len(), usize::from(CLUSTER_BUCKETS));
        for (bucket, tag) in tags.iter().enumerate() {
            assert_eq!(usize::from(cluster_slot(tag) / 256), bucket, "{tag}");
            assert!(tag.starts_with(&format!("b{bucket:02}.")), "{tag}");
        }
        // The stored layout: these must never change.
        assert_eq!(cluster_slot(&tags[0]) / 256, 0);
        let first_and_last = (tags[0].as_str(), tags[63].as_str());
        assert_eq!(first_and_last, FIRST_AND_LAST_TAGS);
    }

    /// Bucket 0's and bucket 63's tags, as first computed.
    const FIRST_AND_LAST_TAGS: (&str, &str) = ("b00.63", "b63.10");
}
