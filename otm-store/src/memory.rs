//! In-process store: for tests, examples and single-process servers that may
//! lose messages on restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_core::{
    AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, Creator, ManageVerifier, MessageId,
};

use crate::{
    check_answer, check_new, check_request, from_unix_ms, unix_ms, wrong_proof, BlobStore, Event,
    EventHandle, EventKind, MessageState, MessageStatus, NewMessage, NewRequest, Outbox,
    PurgeExpired, RequestStore, Result, StoreError, StoreOptions, StoredRequest, ANSWER_MANAGE,
};

/// A [`BlobStore`] in memory: a mutex around a map. Atomic within one process
/// only; everything is lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    opts: StoreOptions,
    map: Mutex<Maps>,
}

#[derive(Default, Debug)]
struct Maps {
    messages: HashMap<MessageId, Entry>,
    receipts: HashMap<MessageId, Receipt>,
    /// Requests for a secret (their answers are messages).
    requests: HashMap<MessageId, RequestEntry>,
    /// The outbox, oldest first (with `StoreOptions::events`).
    events: Vec<StoredEvent>,
    /// Quota counts by key and window end.
    quotas: HashMap<(String, i64), u32>,
    /// Rate buckets: each key's theoretical arrival time (Unix ms).
    rates: HashMap<String, i64>,
    /// Rate counts since the full buckets were last forgotten.
    rate_counts: u32,
    next_seq: u64,
}

/// An event in the outbox: due (for a lease or a retry) at `due_ms`.
#[derive(Debug)]
struct StoredEvent {
    seq: u64,
    kind: EventKind,
    message: MessageId,
    creator: Option<Creator>,
    reference: Option<String>,
    at_ms: i64,
    attempts: u32,
    due_ms: i64,
}

struct Entry {
    envelope: Vec<u8>,
    verifier: ClaimVerifier,
    access: AccessVerifier,
    expires_at_ms: i64,
    failures: u32,
    manage: Option<ManageVerifier>,
    creator: Option<Creator>,
    reference: Option<String>,
}

/// A stored request.
#[derive(Debug)]
struct RequestEntry {
    request: NewRequest,
    expires_at_ms: i64,
    answered_at_ms: Option<i64>,
}

#[derive(Debug)]
struct Receipt {
    state: MessageState,
    changed_at_ms: i64,
    expires_at_ms: i64,
    manage: ManageVerifier,
    creator: Option<Creator>,
    reference: Option<String>,
}

impl Maps {
    /// Whether a live message has this ID.
    fn is_live(&self, id: &MessageId, now: i64) -> bool {
        self.messages.get(id).is_some_and(|e| e.expires_at_ms > now)
    }

    /// Stores a checked message (replacing a dead one and a stale
    /// receipt) and records `created` when `events`.
    fn insert(
        &mut self,
        events: bool,
        id: &MessageId,
        message: NewMessage,
        expires_at_ms: i64,
        now: i64,
    ) {
        self.receipts.remove(id);
        let origin = (message.creator.clone(), message.reference.clone());
        self.messages.insert(
            *id,
            Entry {
                envelope: message.envelope,
                verifier: message.verifier,
                access: message.access,
                expires_at_ms,
                failures: 0,
                manage: message.manage,
                creator: message.creator,
                reference: message.reference,
            },
        );
        self.record(events, EventKind::Created, id, origin, now);
    }

    /// Records an event when `on` (the store's `events` option), in the
    /// same locked step as the change it reports.
    fn record(
        &mut self,
        on: bool,
        kind: EventKind,
        id: &MessageId,
        (creator, reference): (Option<Creator>, Option<String>),
        now: i64,
    ) {
        if on {
            self.next_seq += 1;
            self.events.push(StoredEvent {
                seq: self.next_seq,
                kind,
                message: *id,
                creator,
                reference,
                at_ms: now,
                attempts: 0,
                due_ms: now,
            });
        }
    }

    /// Removes a message, leaving a receipt when it has a manager, and
    /// records `kind` when `events`.
    fn remove(
        &mut self,
        id: &MessageId,
        state: MessageState,
        kind: EventKind,
        events: bool,
        now: i64,
    ) -> Option<Entry> {
        let entry = self.messages.remove(id)?;
        self.record(events, kind, id, entry.origin(), now);
        if let Some(manage) = entry.manage {
            self.receipts.insert(
                *id,
                Receipt {
                    state,
                    changed_at_ms: now,
                    expires_at_ms: entry.expires_at_ms,
                    manage,
                    creator: entry.creator.clone(),
                    reference: entry.reference.clone(),
                },
            );
        }
        Some(entry)
    }
}

impl Entry {
    /// Its creator and reference, for an event.
    fn origin(&self) -> (Option<Creator>, Option<String>) {
        (self.creator.clone(), self.reference.clone())
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new(opts: StoreOptions) -> Self {
        MemoryStore {
            opts,
            map: Mutex::default(),
        }
    }

    /// Number of messages held, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored bytes of a live message without taking it (for tests that
    /// check the store keeps exactly the ciphertext).
    pub fn peek_raw(&self, id: &MessageId) -> Option<Vec<u8>> {
        let now = unix_ms(SystemTime::now());
        self.lock()
            .messages
            .get(id)
            .filter(|e| e.expires_at_ms > now)
            .map(|e| e.envelope.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave an entry half-written
        // (every update is a single insert/remove), so poisoning is ignored.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        let (expires_at_ms, _) = check_new(&self.opts, &message)?;
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        if maps.is_live(id, now) {
            return Err(StoreError::Conflict);
        }
        maps.insert(self.opts.events, id, message, expires_at_ms, now);
        Ok(())
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        let entry = maps.messages.get_mut(id).ok_or(StoreError::NotFound)?;
        if entry.expires_at_ms <= now {
            expire(&mut maps, id, self.opts.events, now);
            return Err(StoreError::NotFound);
        }
        // Without the access proof the message is not there for this caller.
        if !entry.access.verify(access) {
            return Err(StoreError::NotFound);
        }
        if entry.verifier.verify(proof) {
            let entry = maps
                .remove(
                    id,
                    MessageState::Opened,
                    EventKind::Opened,
                    self.opts.events,
                    now,
                )
                .ok_or(StoreError::NotFound)?;
            return Ok(entry.envelope);
        }
        entry.failures += 1;
        let failures = entry.failures;
        if failures >= self.opts.max_failed_attempts {
            let events = self.opts.events;
            maps.remove(id, MessageState::Burned, EventKind::Destroyed, events, now);
        }
        Err(wrong_proof(&self.opts, failures))
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        match maps.messages.get(id) {
            Some(e) if e.expires_at_ms > now => {
                maps.remove(
                    id,
                    MessageState::Burned,
                    EventKind::Burned,
                    self.opts.events,
                    now,
                );
                Ok(())
            }
            Some(_) => {
                expire(&mut maps, id, self.opts.events, now);
                Err(StoreError::NotFound)
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let now = unix_ms(SystemTime::now());
        let maps = self.lock();
        if let Some(e) = maps.messages.get(id) {
            return Ok(MessageStatus {
                state: if e.expires_at_ms > now {
                    MessageState::Waiting
                } else {
                    MessageState::Expired
                },
                expires_at: from_unix_ms(e.expires_at_ms),
                changed_at: None,
                manage: e.manage,
                creator: e.creator.clone(),
                reference: e.reference.clone(),
            });
        }
        match maps.receipts.get(id) {
            Some(r) if r.expires_at_ms > now => Ok(MessageStatus {
                state: r.state,
                expires_at: from_unix_ms(r.expires_at_ms),
                changed_at: Some(from_unix_ms(r.changed_at_ms)),
                manage: Some(r.manage),
                creator: r.creator.clone(),
                reference: r.reference.clone(),
            }),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn options(&self) -> &StoreOptions {
        &self.opts
    }

    fn purger(&self) -> Option<&dyn PurgeExpired> {
        Some(self)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn quotas(&self) -> Option<&dyn crate::QuotaCounter> {
        Some(self)
    }

    fn rates(&self) -> Option<&dyn crate::RateCounter> {
        Some(self)
    }

    fn requests(&self) -> Option<&dyn RequestStore> {
        Some(self)
    }

    fn groups(&self) -> Option<&dyn crate::GroupStore> {
        Some(self)
    }
}

#[async_trait]
impl crate::GroupStore for MemoryStore {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let checked = crate::check_group(&self.opts, &messages)?;
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        if messages.iter().any(|(id, _)| maps.is_live(id, now)) {
            return Err(StoreError::Conflict);
        }
        for ((id, message), (expires_at_ms, _)) in messages.into_iter().zip(checked) {
            maps.insert(self.opts.events, &id, message, expires_at_ms, now);
        }
        Ok(())
    }
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()> {
        let (expires_at_ms, _) = check_request(&request)?;
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        if maps.requests.get(id).is_some_and(|r| r.expires_at_ms > now) {
            return Err(StoreError::Conflict);
        }
        let origin = (request.creator.clone(), request.reference.clone());
        maps.requests.insert(
            *id,
            RequestEntry {
                request,
                expires_at_ms,
                answered_at_ms: None,
            },
        );
        maps.record(self.opts.events, EventKind::RequestCreated, id, origin, now);
        Ok(())
    }

    async fn request(&self, id: &MessageId) -> Result<StoredRequest> {
        let now = unix_ms(SystemTime::now());
        let maps = self.lock();
        let entry = maps
            .requests
            .get(id)
            .filter(|r| r.expires_at_ms > now)
            .ok_or(StoreError::NotFound)?;
        Ok(StoredRequest {
            request: entry.request.clone(),
            answered_at: entry.answered_at_ms.map(from_unix_ms),
        })
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&self.opts, &answer)?;
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        let entry = maps
            .requests
            .get_mut(id)
            .filter(|r| r.expires_at_ms > now)
            .ok_or(StoreError::NotFound)?;
        if entry.answered_at_ms.is_some() {
            return Err(StoreError::AlreadyAnswered);
        }
        entry.answered_at_ms = Some(now);
        let request = &entry.request;
        let message = Entry {
            envelope: answer,
            verifier: request.verifier,
            access: request.access,
            expires_at_ms: entry.expires_at_ms,
            failures: 0,
            manage: Some(ANSWER_MANAGE),
            creator: request.creator.clone(),
            reference: request.reference.clone(),
        };
        let origin = message.origin();
        maps.receipts.remove(id);
        maps.messages.insert(*id, message);
        maps.record(
            self.opts.events,
            EventKind::RequestAnswered,
            id,
            origin,
            now,
        );
        Ok(())
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        match maps.requests.remove(id) {
            Some(r) if r.expires_at_ms > now => {}
            _ => return Err(StoreError::NotFound),
        }
        if maps.messages.get(id).is_some_and(|e| e.expires_at_ms > now) {
            let events = self.opts.events;
            maps.remove(id, MessageState::Burned, EventKind::Burned, events, now);
        }
        maps.receipts.remove(id);
        Ok(())
    }
}

#[async_trait]
impl crate::RateCounter for MemoryStore {
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Option<Duration>> {
        let mut maps = self.lock();
        // The clock is read under the lock: counts see it in order.
        let now = unix_ms(SystemTime::now());
        // Forget full buckets now and then, so idle keys do not pile up.
        maps.rate_counts += 1;
        if maps.rate_counts >= 4096 {
            maps.rate_counts = 0;
            maps.rates.retain(|_, tat| *tat > now);
        }
        let tat = maps.rates.get(key).copied();
        match crate::rate_step(tat, now, burst, interval) {
            Ok(next) => {
                maps.rates.insert(key.to_owned(), next);
                Ok(None)
            }
            Err(wait) => Ok(Some(Duration::from_millis(wait.unsigned_abs()))),
        }
    }
}

#[async_trait]
impl crate::QuotaCounter for MemoryStore {
    async fn count_quota(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> Result<bool> {
        let uses = uses.max(1);
        let now = unix_ms(SystemTime::now());
        let end = crate::window_end(now, window);
        let mut maps = self.lock();
        maps.quotas.retain(|(_, until), _| *until > now);
        let count = maps.quotas.entry((key.to_owned(), end)).or_default();
        if count.saturating_add(uses) > limit {
            return Ok(false);
        }
        *count += uses;
        Ok(true)
    }
}

/// Drops an expired message, recording that it expired unread.
fn expire(maps: &mut Maps, id: &MessageId, events: bool, now: i64) {
    if let Some(entry) = maps.messages.remove(id) {
        maps.record(events, EventKind::Expired, id, entry.origin(), now);
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        let now = unix_ms(SystemTime::now());
        let until = crate::contract::events::lease_end(now, lease);
        let mut maps = self.lock();
        let mut leased = Vec::new();
        for e in maps.events.iter_mut().filter(|e| e.due_ms <= now).take(max) {
            e.due_ms = until;
            leased.push(Event {
                kind: e.kind,
                message: e.message,
                creator: e.creator.clone(),
                reference: e.reference.clone(),
                at: from_unix_ms(e.at_ms),
                attempts: e.attempts,
                handle: EventHandle(format!("{}.{until}", e.seq)),
            });
        }
        Ok(leased)
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        let (seq, _) = crate::contract::events::parse_handle(event)?;
        self.lock()
            .events
            .retain(|e| i64::try_from(e.seq) != Ok(seq));
        Ok(())
    }

    async fn events_delivered(&self, events: &[Event]) -> Result<()> {
        let seqs = events
            .iter()
            .map(|e| crate::contract::events::parse_handle(e).map(|(seq, _)| seq))
            .collect::<Result<std::collections::HashSet<i64>>>()?;
        self.lock()
            .events
            .retain(|e| i64::try_from(e.seq).map_or(true, |seq| !seqs.contains(&seq)));
        Ok(())
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (seq, lease) = crate::contract::events::parse_handle(event)?;
        let mut maps = self.lock();
        // Only while the caller's lease holds: after it ran out, another
        // caller may be delivering the event.
        let found = maps
            .events
            .iter_mut()
            .find(|e| i64::try_from(e.seq) == Ok(seq) && e.due_ms == lease);
        if let Some(e) = found {
            e.attempts += 1;
            e.due_ms = unix_ms(retry_at);
        }
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>> {
        let maps = self.lock();
        Ok(maps
            .events
            .iter()
            .filter(|e| e.due_ms >= crate::DEAD_LETTER_MS)
            .take(max)
            .map(|e| Event {
                kind: e.kind,
                message: e.message,
                creator: e.creator.clone(),
                reference: e.reference.clone(),
                at: from_unix_ms(e.at_ms),
                attempts: e.attempts,
                handle: EventHandle(format!("{}.{}", e.seq, e.due_ms)),
            })
            .collect())
    }

    async fn replay_dead_letters(&self) -> Result<u64> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        let mut n = 0;
        for e in maps
            .events
            .iter_mut()
            .filter(|e| e.due_ms >= crate::DEAD_LETTER_MS)
        {
            e.due_ms = now;
            e.attempts = 0;
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl PurgeExpired for MemoryStore {
    async fn purge_expired(&self) -> Result<u64> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        let before = maps.messages.len() + maps.receipts.len();
        let expired: Vec<MessageId> = maps
            .messages
            .iter()
            .filter(|(_, e)| e.expires_at_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            expire(&mut maps, id, self.opts.events, now);
        }
        maps.receipts.retain(|_, r| r.expires_at_ms > now);
        let requests = maps.requests.len();
        maps.requests.retain(|_, r| r.expires_at_ms > now);
        let requests = requests - maps.requests.len();
        Ok((before - maps.messages.len() - maps.receipts.len() + requests) as u64)
    }
}
