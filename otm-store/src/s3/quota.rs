//! Quotas on S3, counted with the one atomic primitive every supported
//! server has: `PutObject` with `If-None-Match: *`.
//!
//! A window's count is a set of empty slot objects
//! `Pquota/{SHA-256 of the key}/{window end}/{n}`, `n` in `0..limit`
//! (zero-padded, so they list in order). A count creates the lowest free
//! slot: exactly one caller creates each slot (a slot given back by a count
//! of several uses is deleted only by the count that created it, and is
//! then free again), so no more than `limit` uses are counted in a window,
//! however many replicas count at once.
//! Listing the window first skips the taken slots; it only saves requests
//! (a slot created meanwhile makes the put fail and the caller try the
//! next one). A count costs one `ListObjectsV2` page per 1000 slots already
//! taken plus one or more puts: cheap for hourly quotas, slower late in a
//! window of many thousands. A put answered 409 (a concurrent conditional
//! write) counts its slot as taken, and a put that failed transiently (a
//! 5xx) is tried again up to three times on the same slot, which finds it
//! taken if the failed put had created it: both can only count less. A
//! failed listing fails the count (the create is refused as the store being
//! unavailable) rather than starting at slot 0, which could cost `limit`
//! puts per create. The bucket's
//! lifecycle rule removes the slots, with everything else under the prefix:
//! a window longer than the rule's days forgets its oldest counts; without
//! a rule (`allow_no_lifecycle`), slots stay until removed by hand.
//!
//! A count of several uses (a group of messages) creates one slot per use;
//! if the window has no room for all of them it deletes the slots it
//! created and counts nothing. Meanwhile a concurrent count may find the
//! window fuller than it ends up and be refused: a window admits less,
//! never more than its limit.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::*;
use crate::window_end;

/// Slots listed per request (S3's maximum page).
const PAGE: u32 = 1000;

/// Transient failures of slot puts a count tries again (the store turns off
/// the SDK's own retries).
const RETRIES: u32 = 3;

impl S3Store {
    /// See [`QuotaCounter::count_quota`](crate::QuotaCounter::count_quota)
    /// and the module documentation.
    pub(super) async fn count_in_slots(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> Result<bool> {
        if uses > limit {
            return Ok(false);
        }
        let end = window_end(unix_ms(SystemTime::now()), window);
        let dir = format!(
            "{}quota/{}/{end}/",
            self.prefix,
            URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes()))
        );
        // Fail closed: counting from slot 0 without the listing would cost
        // up to `limit` puts per create.
        let taken = self.taken_slots(&dir, limit).await?;
        let mut free = (0..limit).filter(|n| taken.binary_search(n).is_err());
        let mut n = free.next();
        let mut failures = 0;
        let mut claimed: Vec<String> = Vec::with_capacity(uses as usize);
        while let Some(slot_n) = n {
            if claimed.len() == uses as usize {
                break;
            }
            let slot = format!("{dir}{slot_n:010}");
            match self
                .put_if_absent(&slot, Vec::new(), &[])
                .await
                .map_err(|e| e.into_store("count a quota"))
            {
                Ok(Some(_)) => {
                    claimed.push(slot);
                    n = free.next();
                }
                Ok(None) => n = free.next(),
                // A transient failure is tried again on the same slot. If
                // the failed put did create it, the retry finds it taken and
                // moves on: the window counts one less, never one more.
                Err(e) if e.is_retryable() && failures < RETRIES => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(failures))).await;
                }
                Err(e) => {
                    self.release_slots(&claimed).await;
                    return Err(e);
                }
            }
        }
        if claimed.len() == uses as usize {
            return Ok(true);
        }
        // Not all of them fit: give back the slots this count took. A
        // concurrent count that found them taken meanwhile was refused: the
        // window admits less, never more.
        self.release_slots(&claimed).await;
        Ok(false)
    }

    /// Deletes the slots of a count that did not fit (best effort: a slot
    /// left behind counts one use more, which can only refuse a create).
    async fn release_slots(&self, slots: &[String]) {
        for slot in slots {
            let deleted = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(slot)
                .send()
                .await;
            if let Err(e) = deleted {
                tracing::warn!(error = %classify("release a quota slot", e), "a quota slot stays counted");
            }
        }
    }

    /// The slots taken under `dir`, in order, listing no further than
    /// `limit` of them. (Slots given back by a count of several uses that
    /// did not fit leave gaps below the highest slot; they are used again.)
    async fn taken_slots(&self, dir: &str, limit: u32) -> Result<Vec<u32>> {
        let mut taken = Vec::new();
        let mut token = None;
        loop {
            // A listing only reads, so a transient failure (S3 answers the
            // odd 500 or 503) is asked again, a few times, before the count
            // fails closed.
            let mut failures = 0;
            let page = loop {
                let sent = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(dir)
                    .max_keys(PAGE.min(limit) as i32)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify("count a quota", e));
                match sent {
                    Ok(page) => break page,
                    Err(e) if e.is_retryable() && failures < RETRIES => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(failures))).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            taken.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(dir)?.parse::<u32>().ok()),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if taken.len() >= limit as usize || token.is_none() || page.is_truncated() != Some(true)
            {
                taken.sort_unstable();
                return Ok(taken);
            }
        }
    }
}
