//! The Redis store's event outbox: a sequence counter, a sorted set of
//! event numbers scored by when each is due (for delivery, or the end of
//! its lease), and a hash of each event's JSON (`k` kind, `m` message ID,
//! `r` reference, `o` creator, `a` when, `n` failed attempts). The message scripts add
//! to it in the same script as their change; leasing, delivering and
//! rescheduling are scripts too, so each is atomic. A standalone server has
//! one outbox; a Cluster has one per bucket, in the bucket's slot (see
//! [`RedisStore`]), and a lease polls them all.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::{Script, Value};

use super::{unexpected, RedisStore};
use crate::contract::events::parse_handle;
use crate::{from_unix_ms, unix_ms, Event, EventHandle, EventKind, Outbox, Result, StoreError};

// KEYS: due, data. ARGV: highest score, new score ('' keeps it), max,
// lowest score. {seq, json, seq, json, …} of the entries scored between the
// two: leasing (from -inf to now, rescored to the lease's end) and listing
// dead letters (from the dead-letter score up, kept).
const LEASE: &str = r"
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, s in ipairs(seqs) do
  local d = redis.call('HGET', KEYS[2], s)
  if d then
    if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], ARGV[2], s) end
    table.insert(out, s)
    table.insert(out, d)
  else
    redis.call('ZREM', KEYS[1], s)
  end
end
return out
";

// KEYS: due, data. ARGV: the dead-letter score, now. Every dead letter due
// now with its attempts counted from 0; how many.
const REPLAY: &str = r"
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
local n = 0
for _, s in ipairs(seqs) do
  local d = redis.call('HGET', KEYS[2], s)
  if d then
    local e = cjson.decode(d)
    e.n = 0
    redis.call('HSET', KEYS[2], s, cjson.encode(e))
    redis.call('ZADD', KEYS[1], ARGV[2], s)
    n = n + 1
  else
    redis.call('ZREM', KEYS[1], s)
  end
end
return n
";

// KEYS: due, data. ARGV: the seqs (at most ACK_CHUNK).
const DELIVERED: &str = r"
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1
";

/// Most events acknowledged by one script call (Lua's `unpack` takes a
/// few thousand values; a dispatcher's batch is far smaller).
const ACK_CHUNK: usize = 256;

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
    replay: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            lease: Script::new(LEASE),
            delivered: Script::new(DELIVERED),
            failed: Script::new(FAILED),
            replay: Script::new(REPLAY),
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
    #[serde(default)]
    o: String,
    a: serde_json::Value,
    #[serde(default)]
    n: u32,
}

impl RedisStore {
    /// The outbox keys of `bucket`: sequence, due set, data (one hash tag:
    /// one slot, with the bucket's messages on a Cluster).
    pub(super) fn outbox_keys(&self, bucket: u8) -> [String; 3] {
        let p = &self.prefix;
        let tag = match self.buckets() {
            1 => "events".to_owned(),
            _ => super::bucket_tags()[usize::from(bucket)].clone(),
        };
        [
            format!("{p}{{{tag}}}:seq"),
            format!("{p}{{{tag}}}:due"),
            format!("{p}{{{tag}}}:data"),
        ]
    }

    /// An event's number in its bucket's outbox and its bucket, from the
    /// number in its handle (`seq × buckets + bucket`).
    fn split_handle(&self, number: i64) -> (i64, u8) {
        let buckets = i64::from(self.buckets());
        // rem_euclid is in 0..buckets, and buckets fit a u8.
        let bucket = number.rem_euclid(buckets) as u8;
        (number.div_euclid(buckets), bucket)
    }

    /// Leases up to `max` due events of one bucket.
    async fn lease_bucket(
        &self,
        bucket: u8,
        now: i64,
        until: i64,
        max: usize,
    ) -> Result<Vec<(i64, Event)>> {
        self.entries(bucket, "-inf", now, Some(until), max).await
    }

    /// Up to `max` entries of one bucket scored from `lowest` to `highest`,
    /// rescored to `rescore` when given (their handles name that score, or
    /// `highest`).
    async fn entries(
        &self,
        bucket: u8,
        lowest: &str,
        highest: i64,
        rescore: Option<i64>,
        max: usize,
    ) -> Result<Vec<(i64, Event)>> {
        let op = "lease events";
        let until = rescore.unwrap_or(highest);
        let [_, due, data] = self.outbox_keys(bucket);
        let mut invocation = self.outbox.lease.key(&due);
        invocation
            .key(&data)
            .arg(highest)
            .arg(rescore.map(|r| r.to_string()).unwrap_or_default())
            .arg(max)
            .arg(lowest);
        let reply = self.run(op, invocation).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected(op, reply));
        };
        let buckets = i64::from(self.buckets());
        let mut events = Vec::new();
        for pair in items.chunks(2) {
            let [Value::BulkString(seq), Value::BulkString(json)] = pair else {
                return Err(unexpected(op, Value::Array(pair.to_vec())));
            };
            let seq = String::from_utf8_lossy(seq).into_owned();
            let handle = seq
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(buckets)?.checked_add(i64::from(bucket)));
            let Some(handle) = handle else {
                tracing::error!("an outbox entry's number is out of range; skipped");
                continue;
            };
            let number = handle.div_euclid(buckets);
            // An entry that does not decode is logged and left out, so that
            // it cannot hold back the others.
            match decode(handle, json, until) {
                Ok(event) => events.push((number, event)),
                Err(e) => tracing::error!(
                    error = %e.with_sources(),
                    "an outbox entry is unreadable; skipped"
                ),
            }
        }
        Ok(events)
    }
}

fn decode(handle: i64, json: &[u8], until: i64) -> Result<Event> {
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
        creator: crate::creator_from(Some(&stored.o)),
        reference: (!stored.r.is_empty()).then_some(stored.r),
        at: from_unix_ms(at_ms),
        attempts: stored.n,
        handle: EventHandle(format!("{handle}.{until}")),
    })
}

/// Buckets leased from at once in one round of a Cluster lease: few enough
/// that each script leases several events under load, so that leasing a
/// batch costs a few scripts rather than one per event.
const ROUND_BUCKETS: usize = 8;

#[async_trait]
impl Outbox for RedisStore {
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        let now = unix_ms(SystemTime::now());
        let until = crate::contract::events::lease_end(now, lease);
        let buckets = self.buckets();
        // Start at a bucket that moves with the clock, so that the buckets
        // served first under load are not always the same.
        let start = u8::try_from(now.rem_euclid(i64::from(buckets))).unwrap_or(0);
        let mut untried: std::collections::VecDeque<u8> =
            (0..buckets).map(|i| (start + i) % buckets).collect();
        // Buckets that filled their share: they may hold more.
        let mut full: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        let mut failure = None;
        // Rounds of concurrent leases, an equal share from each bucket of
        // the round and never more than `max` in all: the untried buckets
        // first, then those that filled their share.
        while events.len() < max {
            let remaining = max - events.len();
            let mut group: Vec<u8> = Vec::new();
            while group.len() < remaining.min(ROUND_BUCKETS) {
                match untried.pop_front() {
                    Some(bucket) => group.push(bucket),
                    None => break,
                }
            }
            if group.is_empty() {
                let n = full.len().min(remaining).min(ROUND_BUCKETS);
                group = full.drain(..n).collect();
            }
            if group.is_empty() {
                break;
            }
            let share = remaining / group.len();
            let mut leases = tokio::task::JoinSet::new();
            for &bucket in &group {
                let store = self.clone();
                leases.spawn(async move {
                    let leased = store.lease_bucket(bucket, now, until, share).await;
                    (bucket, leased)
                });
            }
            let mut failed = false;
            while let Some(joined) = leases.join_next().await {
                match joined {
                    Ok((bucket, Ok(leased))) => {
                        if leased.len() == share {
                            full.push(bucket);
                        }
                        events.extend(leased.into_iter().map(|(n, e)| ((bucket, n), e)));
                    }
                    // What other buckets leased is kept (delivered now, or
                    // due again when its lease runs out); the error is
                    // returned only if nothing was leased.
                    Ok((bucket, Err(e))) => {
                        tracing::warn!(bucket, error = %e.with_sources(), "leasing a bucket's events failed");
                        failure = Some(e);
                        failed = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a lease task failed");
                        failure = Some(StoreError::Backend {
                            op: "lease events",
                            source: Box::new(e),
                        });
                        failed = true;
                    }
                }
            }
            if failed {
                break;
            }
        }
        if events.is_empty() {
            if let Some(e) = failure {
                return Err(e);
            }
        }
        // Oldest first within each bucket (one bucket on a standalone
        // server); a message's events are all in its bucket.
        events.sort_by_key(|(key, _)| *key);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        let (handle, _) = parse_handle(event)?;
        let (seq, bucket) = self.split_handle(handle);
        let [_, due, data] = self.outbox_keys(bucket);
        let mut invocation = self.outbox.delivered.key(&due);
        invocation.key(&data).arg(seq);
        self.run("mark an event delivered", invocation).await?;
        Ok(())
    }

    async fn events_delivered(&self, events: &[Event]) -> Result<()> {
        // One script call per bucket (one on a standalone server): a
        // bucket's keys share a slot.
        let mut by_bucket: std::collections::BTreeMap<u8, Vec<i64>> = Default::default();
        for event in events {
            let (handle, _) = parse_handle(event)?;
            let (seq, bucket) = self.split_handle(handle);
            by_bucket.entry(bucket).or_default().push(seq);
        }
        for (bucket, seqs) in by_bucket {
            let [_, due, data] = self.outbox_keys(bucket);
            for chunk in seqs.chunks(ACK_CHUNK) {
                let mut invocation = self.outbox.delivered.key(&due);
                invocation.key(&data);
                for seq in chunk {
                    invocation.arg(*seq);
                }
                self.run("mark events delivered", invocation).await?;
            }
        }
        Ok(())
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (handle, lease) = parse_handle(event)?;
        let (seq, bucket) = self.split_handle(handle);
        let [_, due, data] = self.outbox_keys(bucket);
        let mut invocation = self.outbox.failed.key(&due);
        invocation
            .key(&data)
            .arg(seq)
            .arg(lease)
            .arg(unix_ms(retry_at));
        self.run("reschedule an event", invocation).await?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>> {
        let dead = crate::DEAD_LETTER_MS.to_string();
        let mut out = Vec::new();
        for bucket in 0..self.buckets() {
            if out.len() >= max {
                break;
            }
            let mut found = self
                .entries(bucket, &dead, i64::MAX, None, max - out.len())
                .await?;
            found.sort_by_key(|(n, _)| *n);
            out.extend(found.into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    async fn replay_dead_letters(&self) -> Result<u64> {
        let now = unix_ms(SystemTime::now());
        let mut replayed = 0;
        for bucket in 0..self.buckets() {
            let [_, due, data] = self.outbox_keys(bucket);
            let mut invocation = self.outbox.replay.key(&due);
            invocation.key(&data).arg(crate::DEAD_LETTER_MS).arg(now);
            let op = "replay dead letters";
            match self.run(op, invocation).await? {
                Value::Int(n) => replayed += u64::try_from(n).unwrap_or(0),
                other => return Err(unexpected(op, other)),
            }
        }
        Ok(replayed)
    }
}
