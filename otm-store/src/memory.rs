//! In-process store: for tests, examples and single-process servers that may
//! lose messages on restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use otm_core::{ClaimProof, ClaimVerifier, MessageId};

use crate::{
    check_new, unix_ms, wrong_proof, BlobStore, NewMessage, Result, StoreError, StoreOptions,
};

/// A [`BlobStore`] in memory: a mutex around a map. Atomic within one process
/// only; everything is lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    opts: StoreOptions,
    map: Mutex<HashMap<MessageId, Entry>>,
}

struct Entry {
    envelope: Vec<u8>,
    verifier: ClaimVerifier,
    expires_at_ms: i64,
    failures: u32,
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

    /// Number of entries held, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.lock().len()
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
            .get(id)
            .filter(|e| e.expires_at_ms > now)
            .map(|e| e.envelope.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, Entry>> {
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
        let mut map = self.lock();
        if map.get(id).is_some_and(|e| e.expires_at_ms > now) {
            return Err(StoreError::Conflict);
        }
        map.insert(
            *id,
            Entry {
                envelope: message.envelope,
                verifier: message.verifier,
                expires_at_ms,
                failures: 0,
            },
        );
        Ok(())
    }

    async fn take(&self, id: &MessageId, proof: &ClaimProof) -> Result<Vec<u8>> {
        let now = unix_ms(SystemTime::now());
        let mut map = self.lock();
        let entry = map.get_mut(id).ok_or(StoreError::NotFound)?;
        if entry.expires_at_ms <= now {
            map.remove(id);
            return Err(StoreError::NotFound);
        }
        if entry.verifier.verify(proof) {
            let entry = map.remove(id).ok_or(StoreError::NotFound)?;
            return Ok(entry.envelope);
        }
        entry.failures += 1;
        let failures = entry.failures;
        if failures >= self.opts.max_failed_attempts {
            map.remove(id);
        }
        Err(wrong_proof(&self.opts, failures))
    }

    async fn delete(&self, id: &MessageId) -> Result<()> {
        let now = unix_ms(SystemTime::now());
        match self.lock().remove(id) {
            Some(e) if e.expires_at_ms > now => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = unix_ms(SystemTime::now());
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, e| e.expires_at_ms > now);
        Ok((before - map.len()) as u64)
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
