//! In-process store: for tests, examples and single-process servers that may
//! lose messages on restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::{AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageVerifier, MessageId};

use crate::{
    check_new, from_unix_ms, unix_ms, wrong_proof, BlobStore, MessageState, MessageStatus,
    NewMessage, PurgeExpired, Result, StoreError, StoreOptions,
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
}

struct Entry {
    envelope: Vec<u8>,
    verifier: ClaimVerifier,
    access: AccessVerifier,
    expires_at_ms: i64,
    failures: u32,
    manage: Option<ManageVerifier>,
    reference: Option<String>,
}

#[derive(Debug)]
struct Receipt {
    state: MessageState,
    changed_at_ms: i64,
    expires_at_ms: i64,
    manage: ManageVerifier,
    reference: Option<String>,
}

impl Maps {
    /// Removes a message, leaving a receipt when it has a manager.
    fn remove(&mut self, id: &MessageId, state: MessageState, now: i64) -> Option<Entry> {
        let entry = self.messages.remove(id)?;
        if let Some(manage) = entry.manage {
            self.receipts.insert(
                *id,
                Receipt {
                    state,
                    changed_at_ms: now,
                    expires_at_ms: entry.expires_at_ms,
                    manage,
                    reference: entry.reference.clone(),
                },
            );
        }
        Some(entry)
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
        if maps.messages.get(id).is_some_and(|e| e.expires_at_ms > now) {
            return Err(StoreError::Conflict);
        }
        maps.receipts.remove(id);
        maps.messages.insert(
            *id,
            Entry {
                envelope: message.envelope,
                verifier: message.verifier,
                access: message.access,
                expires_at_ms,
                failures: 0,
                manage: message.manage,
                reference: message.reference,
            },
        );
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
            maps.messages.remove(id);
            return Err(StoreError::NotFound);
        }
        // Without the access proof the message is not there for this caller.
        if !entry.access.verify(access) {
            return Err(StoreError::NotFound);
        }
        if entry.verifier.verify(proof) {
            let entry = maps
                .remove(id, MessageState::Opened, now)
                .ok_or(StoreError::NotFound)?;
            return Ok(entry.envelope);
        }
        entry.failures += 1;
        let failures = entry.failures;
        if failures >= self.opts.max_failed_attempts {
            maps.remove(id, MessageState::Burned, now);
        }
        Err(wrong_proof(&self.opts, failures))
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        match maps.messages.get(id) {
            Some(e) if e.expires_at_ms > now => {
                maps.remove(id, MessageState::Burned, now);
                Ok(())
            }
            Some(_) => {
                maps.messages.remove(id);
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
                reference: e.reference.clone(),
            });
        }
        match maps.receipts.get(id) {
            Some(r) if r.expires_at_ms > now => Ok(MessageStatus {
                state: r.state,
                expires_at: from_unix_ms(r.expires_at_ms),
                changed_at: Some(from_unix_ms(r.changed_at_ms)),
                manage: Some(r.manage),
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
}

#[async_trait]
impl PurgeExpired for MemoryStore {
    async fn purge_expired(&self) -> Result<u64> {
        let now = unix_ms(SystemTime::now());
        let mut maps = self.lock();
        let before = maps.messages.len() + maps.receipts.len();
        maps.messages.retain(|_, e| e.expires_at_ms > now);
        maps.receipts.retain(|_, r| r.expires_at_ms > now);
        Ok((before - maps.messages.len() - maps.receipts.len()) as u64)
    }
}
