//! A store written outside otm-store, with nothing but otm-store's public
//! API: every message, receipt and event in one JSON file, rewritten whole
//! (to a temporary file, then renamed over the old one) after each change,
//! under one lock. It declares the purge of expired messages and an event
//! outbox (not quotas), and its tests run otm-store's conformance and
//! outbox suites against it, exactly as against the built-in backends.
//!
//! It is a model, not a production backend: one process, one lock, the
//! whole file written on every change (fine for a few thousand messages),
//! and no `fsync` (a power loss may lose the last changes; a crash of the
//! process loses nothing that was answered).
//!
//! `cargo run -p otm-examples --example custom_store` serves otm on
//! http://127.0.0.1:3003 with its state in `custom-store.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use otm_core::{AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageVerifier, MessageId};
use otm_store::{
    is_reference, BlobStore, Creator, Event, EventHandle, EventKind, MessageState, MessageStatus,
    NewMessage, Outbox, PurgeExpired, Result, StoreError, StoreOptions, DEAD_LETTER_MS,
};
use serde::{Deserialize, Serialize};

/// Everything the store holds, as the file holds it.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// Live (and expired, until purged) messages by ID.
    messages: BTreeMap<String, Message>,
    /// What is left of opened and burned messages for their senders.
    receipts: BTreeMap<String, Receipt>,
    /// The outbox, oldest first.
    events: Vec<StoredEvent>,
    next_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct Message {
    envelope: Vec<u8>,
    verifier: [u8; 32],
    access: [u8; 32],
    expires_ms: i64,
    failures: u32,
    manage: Option<[u8; 32]>,
    /// The creator's text form ([`Creator::parse`] reads it back).
    #[serde(default)]
    creator: Option<String>,
    reference: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    /// `opened` or `burned`.
    opened: bool,
    changed_ms: i64,
    expires_ms: i64,
    manage: [u8; 32],
    #[serde(default)]
    creator: Option<String>,
    reference: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredEvent {
    seq: u64,
    /// [`EventKind::code`].
    kind: i32,
    message: String,
    #[serde(default)]
    creator: Option<String>,
    reference: Option<String>,
    at_ms: i64,
    attempts: u32,
    /// When it is due: now for a new event, the lease's end while leased,
    /// the retry time after a failure, [`DEAD_LETTER_MS`] for a dead letter.
    due_ms: i64,
}

/// The store: the file's path, the options, and the state behind a lock.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    options: StoreOptions,
    state: Mutex<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print ciphertext.
        f.debug_struct("State")
            .field("messages", &self.messages.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    ms(SystemTime::now())
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A failure of the file, as the contract wants it: the backend's.
fn io(op: &'static str, e: impl Into<otm_store::BoxError>) -> StoreError {
    StoreError::Backend {
        op,
        source: e.into(),
    }
}

impl FileStore {
    /// The store in `path` (created when missing).
    pub fn open(path: impl Into<PathBuf>, options: StoreOptions) -> Result<Self> {
        let path = path.into();
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io("read the store", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io("read the store", e)),
        };
        Ok(FileStore {
            path,
            options,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the whole state: a temporary file renamed over the old one,
    /// so the file is always one whole state or the next.
    fn save(&self, state: &State) -> Result<()> {
        let op = "write the store";
        let bytes = serde_json::to_vec(state).map_err(|e| io(op, e))?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| io(op, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(op, e))
    }
}

impl State {
    /// Records an event of `kind` when events are on.
    fn record(&mut self, on: bool, kind: EventKind, id: &str, message: &Message, now: i64) {
        if on {
            self.next_seq += 1;
            self.events.push(StoredEvent {
                seq: self.next_seq,
                kind: kind.code(),
                message: id.to_owned(),
                creator: message.creator.clone(),
                reference: message.reference.clone(),
                at_ms: now,
                attempts: 0,
                due_ms: now,
            });
        }
    }

    /// Removes a message, leaving a receipt (opened or burned) for its
    /// sender, and records `kind`.
    fn finish(
        &mut self,
        id: &str,
        opened: bool,
        kind: EventKind,
        events: bool,
        now: i64,
    ) -> Option<Message> {
        let message = self.messages.remove(id)?;
        self.record(events, kind, id, &message, now);
        if let Some(manage) = message.manage {
            let receipt = Receipt {
                opened,
                changed_ms: now,
                expires_ms: message.expires_ms,
                manage,
                creator: message.creator.clone(),
                reference: message.reference.clone(),
            };
            self.receipts.insert(id.to_owned(), receipt);
        }
        Some(message)
    }

    /// Removes an expired message unread, recording `expired`.
    fn expire(&mut self, id: &str, events: bool, now: i64) {
        if let Some(message) = self.messages.remove(id) {
            self.record(events, EventKind::Expired, id, &message, now);
        }
    }
}

#[async_trait]
impl BlobStore for FileStore {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        let max = self.options.max_envelope_len;
        if message.envelope.len() > max {
            return Err(StoreError::TooLarge {
                len: message.envelope.len(),
                max,
            });
        }
        let invalid = |reason| Err(StoreError::Invalid { reason });
        if message.envelope.is_empty() {
            return invalid("the envelope is empty");
        }
        if message
            .reference
            .as_deref()
            .is_some_and(|r| !is_reference(r))
        {
            return invalid("a reference, when given, is 1 to 256 bytes of text");
        }
        if message.creator.as_ref().is_some_and(|c| c.check().is_err()) {
            return invalid("a creator's name is 1 to 128 bytes of text");
        }
        let now = now_ms();
        let expires_ms = ms(message.expires_at);
        if expires_ms <= now {
            return invalid("the expiry is not in the future");
        }
        let key = id.to_string();
        let mut state = self.lock();
        if state.messages.get(&key).is_some_and(|m| m.expires_ms > now) {
            return Err(StoreError::Conflict);
        }
        state.receipts.remove(&key);
        let stored = Message {
            envelope: message.envelope,
            verifier: *message.verifier.as_bytes(),
            access: *message.access.as_bytes(),
            expires_ms,
            failures: 0,
            manage: message.manage.map(|m| *m.as_bytes()),
            creator: message.creator.as_ref().map(ToString::to_string),
            reference: message.reference,
        };
        state.record(self.options.events, EventKind::Created, &key, &stored, now);
        state.messages.insert(key, stored);
        self.save(&state)
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let (key, now, events) = (id.to_string(), now_ms(), self.options.events);
        let mut state = self.lock();
        let message = state.messages.get_mut(&key).ok_or(StoreError::NotFound)?;
        if message.expires_ms <= now {
            state.expire(&key, events, now);
            self.save(&state)?;
            return Err(StoreError::NotFound);
        }
        // A wrong access proof: the message is not there for this caller,
        // and nothing changes.
        if !AccessVerifier::from_bytes(message.access).verify(access) {
            return Err(StoreError::NotFound);
        }
        if ClaimVerifier::from_bytes(message.verifier).verify(proof) {
            let message = state.finish(&key, true, EventKind::Opened, events, now);
            self.save(&state)?;
            return message.map(|m| m.envelope).ok_or(StoreError::NotFound);
        }
        message.failures += 1;
        let failures = message.failures;
        let limit = self.options.max_failed_attempts;
        if failures >= limit {
            state.finish(&key, false, EventKind::Destroyed, events, now);
        }
        self.save(&state)?;
        Err(StoreError::WrongProof {
            attempts_left: limit.saturating_sub(failures),
        })
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        let (key, now, events) = (id.to_string(), now_ms(), self.options.events);
        let mut state = self.lock();
        let live = match state.messages.get(&key) {
            None => return Err(StoreError::NotFound),
            Some(m) => m.expires_ms > now,
        };
        if live {
            state.finish(&key, false, EventKind::Burned, events, now);
        } else {
            state.expire(&key, events, now);
        }
        self.save(&state)?;
        live.then_some(()).ok_or(StoreError::NotFound)
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let (key, now) = (id.to_string(), now_ms());
        let state = self.lock();
        if let Some(m) = state.messages.get(&key) {
            return Ok(MessageStatus {
                state: match m.expires_ms > now {
                    true => MessageState::Waiting,
                    false => MessageState::Expired,
                },
                expires_at: time(m.expires_ms),
                changed_at: None,
                manage: m.manage.map(ManageVerifier::from_bytes),
                creator: m.creator.as_deref().and_then(Creator::parse),
                reference: m.reference.clone(),
            });
        }
        match state.receipts.get(&key) {
            Some(r) if r.expires_ms > now => Ok(MessageStatus {
                state: match r.opened {
                    true => MessageState::Opened,
                    false => MessageState::Burned,
                },
                expires_at: time(r.expires_ms),
                changed_at: Some(time(r.changed_ms)),
                manage: Some(ManageVerifier::from_bytes(r.manage)),
                creator: r.creator.as_deref().and_then(Creator::parse),
                reference: r.reference.clone(),
            }),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "json-file"
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    // The capabilities this store declares.
    fn purger(&self) -> Option<&dyn PurgeExpired> {
        Some(self)
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }
}

#[async_trait]
impl PurgeExpired for FileStore {
    async fn purge_expired(&self) -> Result<u64> {
        let (now, events) = (now_ms(), self.options.events);
        let mut state = self.lock();
        let expired: Vec<String> = state
            .messages
            .iter()
            .filter(|(_, m)| m.expires_ms <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            state.expire(id, events, now);
        }
        let receipts = state.receipts.len();
        state.receipts.retain(|_, r| r.expires_ms > now);
        let purged = expired.len() + receipts - state.receipts.len();
        if purged > 0 {
            self.save(&state)?;
        }
        Ok(purged as u64)
    }
}

impl StoredEvent {
    /// The event as the outbox hands it out, its handle `seq.due_ms`.
    fn event(&self) -> Result<Event> {
        let corrupt = |what: &'static str| io("read an event", what);
        Ok(Event {
            kind: EventKind::from_code(i64::from(self.kind))
                .ok_or_else(|| corrupt("an unknown kind"))?,
            message: self
                .message
                .parse()
                .map_err(|_| corrupt("a malformed message ID"))?,
            creator: self.creator.as_deref().and_then(Creator::parse),
            reference: self.reference.clone(),
            at: time(self.at_ms),
            attempts: self.attempts,
            handle: EventHandle::new(format!("{}.{}", self.seq, self.due_ms)),
        })
    }
}

/// The `(seq, due_ms)` of a handle this store made.
fn handle(event: &Event) -> Result<(u64, i64)> {
    event
        .handle
        .as_str()
        .split_once('.')
        .and_then(|(seq, due)| Some((seq.parse().ok()?, due.parse().ok()?)))
        .ok_or(StoreError::Invalid {
            reason: "not an event handle of this store",
        })
}

#[async_trait]
impl Outbox for FileStore {
    async fn lease_events(&self, max: usize, lease: Duration) -> Result<Vec<Event>> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut state = self.lock();
        let mut leased = Vec::new();
        for e in state
            .events
            .iter_mut()
            .filter(|e| e.due_ms <= now)
            .take(max)
        {
            e.due_ms = until;
            leased.push(e.event()?);
        }
        if !leased.is_empty() {
            self.save(&state)?;
        }
        Ok(leased)
    }

    async fn event_delivered(&self, event: &Event) -> Result<()> {
        let (seq, _) = handle(event)?;
        let mut state = self.lock();
        state.events.retain(|e| e.seq != seq);
        self.save(&state)
    }

    async fn event_failed(&self, event: &Event, retry_at: SystemTime) -> Result<()> {
        let (seq, lease) = handle(event)?;
        let mut state = self.lock();
        // Only while the caller's lease holds.
        if let Some(e) = state
            .events
            .iter_mut()
            .find(|e| e.seq == seq && e.due_ms == lease)
        {
            e.attempts += 1;
            e.due_ms = ms(retry_at);
            self.save(&state)?;
        }
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Event>> {
        let state = self.lock();
        state
            .events
            .iter()
            .filter(|e| e.due_ms >= DEAD_LETTER_MS)
            .take(max)
            .map(StoredEvent::event)
            .collect()
    }

    async fn replay_dead_letters(&self) -> Result<u64> {
        let now = now_ms();
        let mut state = self.lock();
        let mut n = 0;
        for e in state
            .events
            .iter_mut()
            .filter(|e| e.due_ms >= DEAD_LETTER_MS)
        {
            (e.due_ms, e.attempts) = (now, 0);
            n += 1;
        }
        if n > 0 {
            self.save(&state)?;
        }
        Ok(n)
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let options = StoreOptions::default();
    let store = Arc::new(FileStore::open("custom-store.json", options)?);
    // The service purges it (it declared a purger) like any built-in store.
    let otm = otm_http::Service::new(store, otm_http::Config::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3003").await?;
    println!("otm on a JSON file store: http://127.0.0.1:3003");
    let limits = otm_http::ConnectionLimits::default();
    otm_http::serve(listener, otm.router(), limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    otm.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a fresh file, dropped (with its directory) after the case.
    async fn make() -> Option<(Arc<dyn BlobStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("otm.json"), StoreOptions::default()).unwrap();
        Some((Arc::new(store), dir))
    }
    otm_store::conformance_suite!(make);

    mod with_events {
        use super::*;

        async fn make() -> Option<(Arc<dyn BlobStore>, tempfile::TempDir)> {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions::default().with_events(true);
            let store = FileStore::open(dir.path().join("otm.json"), options).unwrap();
            Some((Arc::new(store), dir))
        }
        otm_store::outbox_suite!(make);
    }

    /// What it wrote survives a reopen: the state is the file.
    #[tokio::test]
    async fn a_message_survives_a_reopen_and_opens_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("otm.json");
        let fixture = otm_store::conformance::Fixture::hour();
        let store = FileStore::open(&path, StoreOptions::default()).unwrap();
        store
            .put(&fixture.id, fixture.message.clone())
            .await
            .unwrap();
        drop(store);
        let store = FileStore::open(&path, StoreOptions::default()).unwrap();
        let got = store
            .take(&fixture.id, fixture.access(), fixture.proof())
            .await
            .unwrap();
        assert_eq!(got, fixture.message.envelope);
        let again = store
            .take(&fixture.id, fixture.access(), fixture.proof())
            .await;
        assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
        // It declares purge and an outbox, not quotas: the service runs the
        // one and the quota case is skipped for it.
        assert!(store.purger().is_some() && store.outbox().is_some() && store.quotas().is_none());
    }
}
