//! Quotas on S3, counted with the one atomic primitive every supported
//! server has: `PutObject` with `If-None-Match: *`.
//!
//! A window's count is a set of empty slot objects
//! `Pquota/{SHA-256 of the key}/{window end}/{n}`, `n` in `0..limit`
//! (zero-padded, so they list in order). A count creates the lowest free
//! slot: exactly one caller creates each slot, so no more than `limit`
//! counts succeed in a window, however many replicas count at once.
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
    ) -> Result<bool> {
        if limit == 0 {
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
        let mut n = self.count_slots(&dir, limit).await?;
        let mut failures = 0;
        while n < limit {
            match self
                .put_if_absent(&format!("{dir}{n:010}"), Vec::new(), &[])
                .await
                .map_err(|e| e.into_store("count a quota"))
            {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => n += 1,
                // A transient failure is tried again on the same slot. If
                // the failed put did create it, the retry finds it taken and
                // moves on: the window counts one less, never one more.
                Err(e) if e.is_retryable() && failures < RETRIES => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(failures))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// How many slots exist under `dir`, counting no further than `limit`.
    async fn count_slots(&self, dir: &str, limit: u32) -> Result<u32> {
        let mut count = 0u32;
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
            count = count.saturating_add(u32::try_from(page.contents().len()).unwrap_or(u32::MAX));
            token = page.next_continuation_token().map(str::to_owned);
            if count >= limit || token.is_none() || page.is_truncated() != Some(true) {
                return Ok(count);
            }
        }
    }
}
