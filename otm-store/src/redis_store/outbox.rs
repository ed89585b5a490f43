//! The standalone Redis store's event outbox: a sequence counter, a sorted
//! set of event numbers scored by when each is due (for delivery, or the end
//! of its lease), and a hash of each event's JSON (`k` kind, `m` message ID,
//! `r` reference, `a` when, `n` failed attempts). The message scripts add
//! to it in the same script as their change; leasing, delivering and
//! rescheduling are scripts too, so each is atomic.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::{Script, Value};

use super::{unexpected, RedisStore};
use crate::events::parse_handle;
use crate::{from_unix_ms, unix_ms, Event, EventHandle, EventKind, Outbox, Result, StoreError};

// KEYS: due, data. ARGV: now, lease end, max. {seq, json, seq, json, …}
const LEASE: &str = r"
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, s in ipairs(seqs) do
  local d = redis.call('HGET', KEYS[2], s)
  if d then
    redis.call('ZADD', KEYS[1], ARGV[2], s)
    table.insert(out, s)
    table.insert(out, d)
  else
    redis.call('ZREM', KEYS[1], s)
  end
end
return out
";

// KEYS: due, data. ARGV: seq.
const DELIVERED: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

// KEYS: due, data. ARGV: seq, the caller's lease end, retry time. Only
// while the caller's lease holds.
const FAILED: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
local d = redis.call('HGET', KEYS[2], ARGV[1])
if not d then return 0 end
local e = cjson.decode(d)
e.n = (e.n or 0) + 1
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(e))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
";

/// The outbox scripts, loaded once per store.
#[derive(Clone)]
pub(super) struct Scripts {
    lease: Script,
    delivered: Script,
    failed: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            lease: Script::new(LEASE),
            delivered: Script::new(DELIVERED),
            failed: Script::new(FAILED),
        }
    }
}

/// One event as the scripts store it.
#[derive(serde::Deserialize)]
struct Stored {
    k: i64,
    m: String,
    #[serde(default)]
    r: String,
    a: serde_json::Value,
    #[serde(default)]
    n: u32,
}

impl RedisStore {
    /// The outbox keys: sequence, due set, data (one hash tag: one node).
    pub(super) fn outbox_keys(&self) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}{{events}}:seq"),
            format!("{p}{{events}}:due"),
            format!("{p}{{events}}:data"),
        ]
    }
}

fn decode(seq: &str, json: &[u8], until: i64) -> Result<Event> {
    let op = "lease events";
    let corrupt = |what: String| StoreError::Backend {
        op,
        source: what.into(),
    };
    let stored: Stored =
        serde_json::from_slice(json).map_err(|e| corrupt(format!("an event is not JSON: {e}")))?;
    let at_ms = match &stored.a {
        serde_json::Value::String(s) => s.parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| corrupt("an event has no time".into()))?;
    Ok(Event {
        kind: EventKind::from_code(stored.k)
            .ok_or_else(|| corrupt(format!("unknown event kind {}", stored.k)))?,
        message: stored
            .m
            .parse()
            .map_err(|_| corrupt("an event has a malformed message ID".into()))?,
        reference: (!stored.r.is_empty()).then_some(stored.r),
        at: from_unix_ms(at_ms),
        attempts: stored.n,
        handle: EventHandle(format!("{seq}.{until}")),
    })
}

#[async_trait]
impl Outbox for RedisStore {
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        let op = "lease events";
        let now = unix_ms(SystemTime::now());
        let until = crate::events::lease_end(now, lease);
        let [_, due, data] = self.outbox_keys();
        let mut invocation = self.outbox.lease.key(&due);
        invocation.key(&data).arg(now).arg(until).arg(max);
        let reply = self.run(op, invocation).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected(op, reply));
        };
        let mut events = Vec::new();
        for pair in items.chunks(2) {
            let [Value::BulkString(seq), Value::BulkString(json)] = pair else {
                return Err(unexpected(op, Value::Array(pair.to_vec())));
            };
            let seq = String::from_utf8_lossy(seq).into_owned();
            // An entry that does not decode is logged and left out, so that
            // it cannot hold back the others.
            match decode(&seq, json, until) {
                Ok(event) => events.push((seq.parse::<i64>().unwrap_or(i64::MAX), event)),
                Err(e) => tracing::error!(
                    error = %e.with_sources(),
                    "an outbox entry is unreadable; skipped"
                ),
            }
        }
        events.sort_by_key(|(seq, _)| *seq);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        let (seq, _) = parse_handle(event)?;
        let [_, due, data] = self.outbox_keys();
        let mut invocation = self.outbox.delivered.key(&due);
        invocation.key(&data).arg(seq);
        self.run("mark an event delivered", invocation).await?;
        Ok(())
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (seq, lease) = parse_handle(event)?;
        let [_, due, data] = self.outbox_keys();
        let mut invocation = self.outbox.failed.key(&due);
        invocation
            .key(&data)
            .arg(seq)
            .arg(lease)
            .arg(unix_ms(retry_at));
        self.run("reschedule an event", invocation).await?;
        Ok(())
    }
}
