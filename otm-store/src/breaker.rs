//! A circuit breaker in front of any store.
//!
//! When a backend is down, each call waits out the backend's own timeouts
//! before it fails (a PostgreSQL pool waits its `acquire_timeout`, 5 s by
//! default, retrying the refused connection): every request of an outage
//! holds its connection and memory that long. [`Breaker`] wraps a store and,
//! after [`BreakerConfig::failures_to_open`] consecutive
//! [`StoreError::Unavailable`] failures, *opens*: calls then fail at once
//! with [`StoreError::Unavailable`] (source [`BreakerOpen`]) without
//! touching the backend. After [`BreakerConfig::cooldown`] one call is let
//! through as a probe; its success closes the breaker, its failure opens it
//! for another cooldown. Any success (or an answer that is not
//! `Unavailable`: `NotFound`, `WrongProof`, ...) resets the count.
//!
//! A refused call did nothing: no message is put, taken, burned or counted,
//! so failing fast never loses or burns a message. [`BlobStore::check`]
//! always reaches the backend (a readiness probe must tell the truth) and
//! its answer counts too: any error from it, not only `Unavailable`,
//! counts as a failure.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use otm_core::{AccessProof, ClaimProof, MessageId};

use crate::{BlobStore, MessageStatus, NewMessage, Result, StoreError};

/// Settings for [`Breaker`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive `Unavailable` failures, with no other answer between
    /// them, that open the breaker (default 3, at least 1).
    pub failures_to_open: u32,
    /// How long an open breaker refuses calls before it lets one probe
    /// through (default 1 s).
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 3,
            cooldown: Duration::from_secs(1),
        }
    }
}

impl BreakerConfig {
    /// Sets [`Self::failures_to_open`] (at least 1).
    pub fn with_failures_to_open(mut self, n: u32) -> Self {
        self.failures_to_open = n.max(1);
        self
    }

    /// Sets [`Self::cooldown`].
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// The source of the [`StoreError::Unavailable`] an open breaker answers.
#[derive(Debug, thiserror::Error)]
#[error("the store failed {failures} times in a row; calls fail fast for {retry_in:?} more, then one probe is let through")]
#[non_exhaustive]
pub struct BreakerOpen {
    /// Consecutive failures so far.
    pub failures: u32,
    /// Time until the next probe may go (zero while a probe is out).
    pub retry_in: Duration,
}

/// A [`BlobStore`] that fails fast while its backend is failing; see the
/// [module docs](self).
pub struct Breaker {
    inner: Arc<dyn BlobStore>,
    config: BreakerConfig,
    circuit: Mutex<Circuit>,
    refused: AtomicU64,
    opened: AtomicU64,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Breaker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>, config: BreakerConfig) -> Self {
        Breaker {
            inner,
            config,
            circuit: Mutex::new(Circuit::default()),
            refused: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    /// Whether calls are being refused right now.
    pub fn is_open(&self) -> bool {
        self.circuit().open_until.is_some()
    }

    /// Calls refused without reaching the backend, since creation.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How often the breaker has opened, since creation.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn circuit(&self) -> MutexGuard<'_, Circuit> {
        // The state stays consistent under a panic elsewhere: every update
        // is a few plain assignments.
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `call` if the breaker admits it, and learns from its answer.
    async fn guard<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let admitted = self.circuit().admit(Instant::now());
        let probe = match admitted {
            Admit::Pass => false,
            Admit::Probe => true,
            Admit::Refuse { failures, retry_in } => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Unavailable {
                    op,
                    source: Box::new(BreakerOpen { failures, retry_in }),
                });
            }
        };
        let mut ticket = Ticket {
            breaker: self,
            probe,
        };
        let result = call.await;
        ticket.finish(!matches!(result, Err(StoreError::Unavailable { .. })));
        result
    }
}

/// A call let through; dropping it unfinished (the caller went away) frees
/// the probe slot for the next caller.
struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Ticket<'_> {
    fn finish(&mut self, healthy: bool) {
        let b = self.breaker;
        let change = b
            .circuit()
            .record(Instant::now(), healthy, self.probe, &b.config);
        self.probe = false;
        match change {
            Change::Opened { failures } => {
                b.opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    backend = b.inner.backend_name(),
                    failures,
                    cooldown_ms = b.config.cooldown.as_millis() as u64,
                    "store failing: breaker open, calls fail fast until a probe succeeds"
                );
            }
            Change::Closed => {
                tracing::info!(
                    backend = b.inner.backend_name(),
                    "store answers again: breaker closed"
                );
            }
            Change::None => {}
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.circuit().probing = false;
        }
    }
}

#[async_trait]
impl BlobStore for Breaker {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        self.guard("store a message", self.inner.put(id, message))
            .await
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        self.guard("take a message", self.inner.take(id, access, proof))
            .await
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        self.guard("burn a message", self.inner.burn(id)).await
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        self.guard("read a message's status", self.inner.status(id))
            .await
    }

    async fn check(&self) -> Result<()> {
        let result = self.inner.check().await;
        let mut ticket = Ticket {
            breaker: self,
            probe: false,
        };
        ticket.finish(result.is_ok());
        result
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    fn options(&self) -> &crate::StoreOptions {
        self.inner.options()
    }

    fn purger(&self) -> Option<&dyn crate::PurgeExpired> {
        // The purge goes through the breaker too, when the store has one.
        self.inner
            .purger()
            .map(|_| self as &dyn crate::PurgeExpired)
    }

    fn outbox(&self) -> Option<&dyn crate::Outbox> {
        // The dispatcher polls on its own schedule and backs off by itself.
        self.inner.outbox()
    }

    fn quotas(&self) -> Option<&dyn crate::QuotaCounter> {
        // Counting goes through the breaker, when the store counts.
        self.inner
            .quotas()
            .map(|_| self as &dyn crate::QuotaCounter)
    }

    fn rates(&self) -> Option<&dyn crate::RateCounter> {
        // Counting goes through the breaker, when the store counts.
        self.inner.rates().map(|_| self as &dyn crate::RateCounter)
    }

    fn groups(&self) -> Option<&dyn crate::GroupStore> {
        // Storing goes through the breaker, when the store can.
        self.inner.groups().map(|_| self as &dyn crate::GroupStore)
    }

    fn requests(&self) -> Option<&dyn crate::RequestStore> {
        // Requests go through the breaker, when the store keeps them.
        self.inner
            .requests()
            .map(|_| self as &dyn crate::RequestStore)
    }
}

impl Breaker {
    /// The inner store's requests; only reached through [`Breaker::requests`]
    /// when it has them.
    fn inner_requests(&self) -> crate::Result<&dyn crate::RequestStore> {
        self.inner
            .requests()
            .ok_or(crate::StoreError::NotImplemented { what: "requests" })
    }
}

#[async_trait]
impl crate::GroupStore for Breaker {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        let Some(inner) = self.inner.groups() else {
            return Err(crate::StoreError::NotImplemented { what: "groups" });
        };
        self.guard("store a group of messages", inner.put_group(messages))
            .await
    }
}

#[async_trait]
impl crate::RequestStore for Breaker {
    async fn put_request(&self, id: &MessageId, request: crate::NewRequest) -> Result<()> {
        let inner = self.inner_requests()?;
        self.guard("store a request", inner.put_request(id, request))
            .await
    }

    async fn request(&self, id: &MessageId) -> Result<crate::StoredRequest> {
        let inner = self.inner_requests()?;
        self.guard("read a request", inner.request(id)).await
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        let inner = self.inner_requests()?;
        self.guard("answer a request", inner.answer_request(id, answer))
            .await
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let inner = self.inner_requests()?;
        self.guard("withdraw a request", inner.withdraw_request(id))
            .await
    }

    async fn repair_request(&self, id: &MessageId) -> Result<()> {
        let inner = self.inner_requests()?;
        self.guard("repair a request", inner.repair_request(id))
            .await
    }
}

#[async_trait]
impl crate::RateCounter for Breaker {
    async fn count_rate(
        &self,
        key: &str,
        burst: u32,
        interval: Duration,
    ) -> crate::Result<Option<Duration>> {
        let Some(rates) = self.inner.rates() else {
            return Err(crate::StoreError::NotImplemented { what: "rates" });
        };
        self.guard("count a rate", rates.count_rate(key, burst, interval))
            .await
    }
}

#[async_trait]
impl crate::QuotaCounter for Breaker {
    async fn count_quota(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> crate::Result<bool> {
        let Some(quotas) = self.inner.quotas() else {
            return Err(crate::StoreError::NotImplemented { what: "quotas" });
        };
        self.guard(
            "count a quota",
            quotas.count_quota(key, window, limit, uses),
        )
        .await
    }
}

/// The breaker's state, apart from the clock.
#[derive(Debug, Default)]
struct Circuit {
    /// Consecutive `Unavailable` answers.
    failures: u32,
    /// Set while open: until when calls are refused outright.
    open_until: Option<Instant>,
    /// A probe is out.
    probing: bool,
}

#[derive(Debug, PartialEq)]
enum Admit {
    Pass,
    Probe,
    Refuse { failures: u32, retry_in: Duration },
}

#[derive(Debug, PartialEq)]
enum Change {
    None,
    Opened { failures: u32 },
    Closed,
}

impl Circuit {
    fn admit(&mut self, now: Instant) -> Admit {
        match self.open_until {
            None => Admit::Pass,
            Some(until) if now < until || self.probing => Admit::Refuse {
                failures: self.failures,
                retry_in: until.saturating_duration_since(now),
            },
            Some(_) => {
                self.probing = true;
                Admit::Probe
            }
        }
    }

    fn record(
        &mut self,
        now: Instant,
        healthy: bool,
        probe: bool,
        config: &BreakerConfig,
    ) -> Change {
        if probe {
            self.probing = false;
        }
        if healthy {
            self.failures = 0;
            return match self.open_until.take() {
                Some(_) => Change::Closed,
                None => Change::None,
            };
        }
        self.failures = self.failures.saturating_add(1);
        let opens = self.open_until.is_none() && self.failures >= config.failures_to_open.max(1);
        if probe || opens {
            self.open_until = Some(now + config.cooldown);
        }
        if opens {
            Change::Opened {
                failures: self.failures,
            }
        } else {
            Change::None
        }
    }
}

#[async_trait]
impl crate::PurgeExpired for Breaker {
    async fn purge_expired(&self) -> Result<u64> {
        match self.inner.purger() {
            Some(purger) => {
                self.guard("purge expired messages", purger.purge_expired())
                    .await
            }
            // Not reached: `purger()` offers this only when the inner store
            // has one.
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig::default()
            .with_failures_to_open(3)
            .with_cooldown(Duration::from_secs(1))
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (c, t0) = (config(), Instant::now());
        let mut s = Circuit::default();
        assert_eq!(s.record(t0, false, false, &c), Change::None);
        assert_eq!(s.record(t0, false, false, &c), Change::None);
        // Any other answer in between starts the count again.
        assert_eq!(s.record(t0, true, false, &c), Change::None);
        assert_eq!(s.record(t0, false, false, &c), Change::None);
        assert_eq!(s.record(t0, false, false, &c), Change::None);
        assert_eq!(s.admit(t0), Admit::Pass);
        assert_eq!(
            s.record(t0, false, false, &c),
            Change::Opened { failures: 3 }
        );
        assert_eq!(
            s.admit(t0 + Duration::from_millis(400)),
            Admit::Refuse {
                failures: 3,
                retry_in: Duration::from_millis(600)
            }
        );
        // Late failures of calls admitted earlier neither reopen nor extend.
        assert_eq!(
            s.record(t0 + Duration::from_millis(500), false, false, &c),
            Change::None
        );
        assert_eq!(s.open_until, Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_or_reopens() {
        let (c, t0) = (config().with_failures_to_open(1), Instant::now());
        let mut s = Circuit::default();
        assert_eq!(
            s.record(t0, false, false, &c),
            Change::Opened { failures: 1 }
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.admit(t1), Admit::Probe);
        // While the probe is out, everyone else is refused.
        assert!(matches!(s.admit(t1), Admit::Refuse { .. }));
        // The probe fails: another full cooldown.
        assert_eq!(s.record(t1, false, true, &c), Change::None);
        assert!(matches!(
            s.admit(t1 + Duration::from_millis(999)),
            Admit::Refuse { .. }
        ));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(s.admit(t2), Admit::Probe);
        assert_eq!(s.record(t2, true, true, &c), Change::Closed);
        assert_eq!(s.admit(t2), Admit::Pass);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let (c, t0) = (config().with_failures_to_open(1), Instant::now());
        let mut s = Circuit::default();
        s.record(t0, false, false, &c);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(s.admit(t1), Admit::Probe);
        s.probing = false; // what dropping its Ticket does
        assert_eq!(s.admit(t1), Admit::Probe);
    }

    #[test]
    fn a_success_of_any_call_closes_an_open_breaker() {
        let (c, t0) = (config().with_failures_to_open(1), Instant::now());
        let mut s = Circuit::default();
        s.record(t0, false, false, &c);
        // A call admitted before the breaker opened comes back fine.
        assert_eq!(s.record(t0, true, false, &c), Change::Closed);
        assert_eq!(s.admit(t0), Admit::Pass);
    }
}
