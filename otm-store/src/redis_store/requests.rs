//! The Redis store's requests for a secret: a hash beside the key its
//! answer will have (same hash tag, so the same slot on a Cluster), with
//! the request's expiry as its TTL. Putting, answering and withdrawing are
//! each one script: Redis runs a script without interleaving other
//! commands, so of concurrent answers exactly one finds the request
//! unanswered, marks it and stores its answer as the message.

use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::{AccessVerifier, AnswerVerifier, ClaimVerifier, MessageId};
use redis::{Script, Value};

use super::{unexpected, RedisStore, EVENT_FN};
use crate::{
    check_answer, check_request, from_unix_ms, unix_ms, NewRequest, RequestStore, Result,
    StoreError, StoredRequest, ANSWER_MANAGE,
};

// KEYS: 1 the answer's message key, 2 its receipt key, 3 the request key,
// 4..6 the outbox (with events). ARGV: 1 note, 2 answer verifier, 3 access
// verifier, 4 claim verifier, 5 expiry (Unix ms), 6 TTL (ms), 7 reference,
// 8 creator, 9 now, 10 the ID's text.
const PUT_REQUEST: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[3], 'n', ARGV[1], 'q', ARGV[2], 'a', ARGV[3], 'v', ARGV[4], 'x', ARGV[5],
           'r', ARGV[7], 'o', ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
record(4, KEYS[3], 6, ARGV[9], ARGV[10])
return 1
";
// ARGV: 1 the answer, 2 now, 3 the ID's text, 4 the answer's management
// verifier. 1 stored, 0 no live request, 2 already answered.
const ANSWER: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[3], 'd') == 1 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
local ttl = redis.call('PTTL', KEYS[3])
if ttl <= 0 then return 0 end
redis.call('HSET', KEYS[3], 'd', ARGV[2])
local q = redis.call('HMGET', KEYS[3], 'v', 'a', 'x', 'r', 'o')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'v', q[1], 'f', 0, 'x', q[3], 'm', ARGV[4], 'a', q[2],
           'r', q[4], 'o', q[5])
redis.call('PEXPIRE', KEYS[1], ttl)
record(4, KEYS[1], 7, ARGV[2], ARGV[3])
return 1
";
// ARGV: 1 now, 2 the ID's text. 1 withdrawn, 0 no live request.
const WITHDRAW: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  record(4, KEYS[1], 3, ARGV[1], ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
";

/// The request scripts, loaded once per store.
#[derive(Clone)]
pub(super) struct Scripts {
    put: Script,
    answer: Script,
    withdraw: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            put: Script::new(&format!("{EVENT_FN}{PUT_REQUEST}")),
            answer: Script::new(&format!("{EVENT_FN}{ANSWER}")),
            withdraw: Script::new(&format!("{EVENT_FN}{WITHDRAW}")),
        }
    }
}

impl RedisStore {
    /// The key of request `id` (its answer's message key plus `:q`).
    fn request_key(&self, id: &MessageId) -> String {
        format!("{}:q", self.key_of(id))
    }

    /// A script invocation on request `id`: the answer's message and
    /// receipt keys, the request key and, when events are on, the outbox.
    fn on_request<'a>(&self, script: &'a Script, id: &MessageId) -> redis::ScriptInvocation<'a> {
        let key = self.key_of(id);
        let mut invocation = script.key(&key);
        invocation.key(format!("{key}:r")).key(format!("{key}:q"));
        if self.opts.events {
            let [seq, due, data] = self.outbox_keys(self.bucket_of(id));
            invocation.key(seq).key(due).key(data);
        }
        invocation
    }
}

#[async_trait]
impl RequestStore for RedisStore {
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()> {
        let (expires_at_ms, ttl) = check_request(&request)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.on_request(&self.requests.put, id);
        invocation
            .arg(&request.note[..])
            .arg(&request.answer.as_bytes()[..])
            .arg(&request.access.as_bytes()[..])
            .arg(&request.verifier.as_bytes()[..])
            .arg(expires_at_ms)
            .arg(ttl_ms)
            .arg(request.reference.as_deref().unwrap_or_default())
            .arg(
                request
                    .creator
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
            .arg(unix_ms(SystemTime::now()))
            .arg(id.to_string());
        match self.run("store a request", invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::Conflict),
            other => Err(unexpected("store a request", other)),
        }
    }

    async fn request(&self, id: &MessageId) -> Result<StoredRequest> {
        let op = "read a request";
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.request_key(id))
            .arg(&["n", "q", "a", "v", "x", "r", "o", "d"][..]);
        let fields: Vec<Option<Vec<u8>>> = self.command(op, &cmd).await?;
        let corrupt = || StoreError::Backend {
            op,
            source: "a request hash has a malformed field".into(),
        };
        let [Some(note), Some(q), Some(a), Some(v), Some(x), r, o, d] =
            <[Option<Vec<u8>>; 8]>::try_from(fields).map_err(|_| corrupt())?
        else {
            return Err(StoreError::NotFound);
        };
        let bytes32 = |b: Vec<u8>| <[u8; 32]>::try_from(b.as_slice()).map_err(|_| corrupt());
        let int = |b: Vec<u8>| -> Result<i64> {
            std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(corrupt)
        };
        // An empty field is no reference or creator (neither is ever empty).
        let text = |b: Option<Vec<u8>>| {
            b.filter(|b| !b.is_empty())
                .and_then(|b| String::from_utf8(b).ok())
        };
        let expires_at_ms = int(x)?;
        if expires_at_ms <= unix_ms(SystemTime::now()) {
            return Err(StoreError::NotFound);
        }
        Ok(StoredRequest {
            request: NewRequest {
                note,
                answer: AnswerVerifier::from_bytes(bytes32(q)?),
                access: AccessVerifier::from_bytes(bytes32(a)?),
                verifier: ClaimVerifier::from_bytes(bytes32(v)?),
                expires_at: from_unix_ms(expires_at_ms),
                creator: crate::creator_from(text(o).as_deref()),
                reference: text(r),
            },
            answered_at: d.map(int).transpose()?.map(from_unix_ms),
        })
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&self.opts, &answer)?;
        let op = "answer a request";
        let mut invocation = self.on_request(&self.requests.answer, id);
        invocation
            .arg(&answer[..])
            .arg(unix_ms(SystemTime::now()))
            .arg(id.to_string())
            .arg(&ANSWER_MANAGE.as_bytes()[..]);
        match self.run(op, invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::NotFound),
            Value::Int(2) => Err(StoreError::AlreadyAnswered),
            other => Err(unexpected(op, other)),
        }
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let op = "withdraw a request";
        let mut invocation = self.on_request(&self.requests.withdraw, id);
        invocation
            .arg(unix_ms(SystemTime::now()))
            .arg(id.to_string());
        match self.run(op, invocation).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::NotFound),
            other => Err(unexpected(op, other)),
        }
    }
}
