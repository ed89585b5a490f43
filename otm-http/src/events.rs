//! Delivering the store's events ([`otm_store::Event`]) to the host: a
//! dispatcher task leases due events from the store's outbox, hands each to
//! an [`EventSink`] (your code in process, or a signed webhook with the
//! `webhooks` feature), and marks it delivered (the deliveries that finish
//! together are taken out of the outbox together, one store round trip for
//! them all), or failed with a retry time
//! (exponential backoff with jitter), or, after the last attempt, keeps it
//! in the outbox as a dead letter (logged and counted in
//! `otm_events_total{outcome="dead"}`; listed by
//! [`Service::dead_letters`](crate::Service::dead_letters) and due again
//! after [`Service::replay_dead_letters`](crate::Service::replay_dead_letters)). Up to
//! [`DispatchConfig::batch`] events are delivered at once, each on its own,
//! so their order is not kept and a slow receiver holds up only the events
//! it is slow with.
//!
//! Delivery is at least once: a sink may see an event again (after a crash
//! between delivery and marking, or when a lease runs out), always with the
//! same [`Event::id`], so de-duplicate by it. Several replicas may dispatch
//! from one store; the outbox leases each event to one of them at a time.
//!
//! ```no_run
//! use std::sync::Arc;
//! use otm_http::events::{DispatchConfig, Event, EventKind, EventSink};
//! use otm_http::{Config, Service};
//! use otm_store::{BoxError, SqliteConfig, SqliteStore, StoreOptions};
//!
//! struct Tickets;
//!
//! #[async_trait::async_trait]
//! impl EventSink for Tickets {
//!     async fn deliver(&self, event: &Event) -> Result<(), BoxError> {
//!         if event.kind == EventKind::Opened {
//!             // e.g. close the ticket of the message the host stored,
//!             // idempotently (keyed by event.id()): an event may come twice.
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The store records events; the service delivers them.
//! let options = StoreOptions::default().with_events(true);
//! let store = SqliteStore::connect(SqliteConfig::new("otm.sqlite3").with_options(options)).await?;
//! let config = Config::default().with_events(Arc::new(Tickets), DispatchConfig::default());
//! let otm = Service::new(Arc::new(store), config)?;
//! // … serve otm.router(); events flow while the service lives.
//! otm.shutdown().await; // finishes the batch in flight
//! # Ok(()) }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use otm_store::{BlobStore, BoxError};

use crate::metrics::EventCounters;
pub use otm_store::{Event, EventKind};

/// Where events go. Return `Ok` once the event is safely handled: an `Err`
/// (or a delivery slower than [`DispatchConfig::deliver_timeout`]) is
/// retried later.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Handles one event.
    async fn deliver(&self, event: &Event) -> Result<(), BoxError>;
}

/// How the dispatcher polls and retries.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// How long to wait before asking the outbox again when it had nothing
    /// due; a change made through the same [`Service`](crate::Service)
    /// wakes the dispatcher at once. Default 500 ms.
    pub poll: Duration,
    /// Deliveries in flight at once, and the most events leased at once.
    /// Default 32.
    pub batch: usize,
    /// How long a leased event is this dispatcher's alone: longer than
    /// [`DispatchConfig::deliver_timeout`] (a batch is delivered at once).
    /// After a crash, the events it held wait this long. Default 60 s.
    pub lease: Duration,
    /// Longest one delivery may take before it counts as failed. Default 10 s.
    pub deliver_timeout: Duration,
    /// Deliveries tried before an event is kept as a dead letter. Default 12.
    pub max_attempts: u32,
    /// The first retry's delay; each further one doubles, up to
    /// [`DispatchConfig::max_backoff`], with up to a quarter of random
    /// jitter. Default 1 s.
    pub backoff: Duration,
    /// The cap on the backoff before jitter (a delay may exceed it by up to
    /// a quarter). Default 10 minutes.
    pub max_backoff: Duration,
}

/// How much longer than [`DispatchConfig::deliver_timeout`] a lease must
/// be at least: marking an event takes a round trip to the store too.
pub const MIN_LEASE_MARGIN: Duration = Duration::from_secs(5);

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            poll: Duration::from_millis(500),
            batch: 32,
            lease: Duration::from_secs(60),
            deliver_timeout: Duration::from_secs(10),
            max_attempts: 12,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
        }
    }
}

impl DispatchConfig {
    /// Sets [`DispatchConfig::poll`].
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Sets [`DispatchConfig::max_attempts`] (at least 1: see
    /// [`validate`](DispatchConfig::validate)).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets [`DispatchConfig::backoff`] and [`DispatchConfig::max_backoff`]
    /// (`max` at least `first`).
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max;
        self
    }

    /// Sets [`DispatchConfig::lease`] (at least
    /// [`MIN_LEASE_MARGIN`] longer than the delivery timeout).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`DispatchConfig::deliver_timeout`].
    pub fn with_deliver_timeout(mut self, timeout: Duration) -> Self {
        self.deliver_timeout = timeout;
        self
    }

    /// Sets [`DispatchConfig::batch`] (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Refuses settings that contradict each other, saying which:
    /// [`Service::new`](crate::Service::new) calls it, so nothing is
    /// clamped behind the operator's back.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("events: max_attempts must be at least 1".into());
        }
        if self.batch == 0 {
            return Err("events: batch must be at least 1".into());
        }
        if self.deliver_timeout.is_zero() || self.poll.is_zero() {
            return Err("events: deliver_timeout and poll must be longer than 0".into());
        }
        if self.max_backoff < self.backoff {
            return Err(format!(
                "events: max_backoff ({:?}) is shorter than the first backoff ({:?})",
                self.max_backoff, self.backoff
            ));
        }
        let least = self.deliver_timeout + MIN_LEASE_MARGIN;
        if self.lease < least {
            return Err(format!(
                "events: the lease ({}) must be at least the delivery timeout ({}) and {} more \
                 (a batch is delivered, then marked, within its lease): at least {}",
                humantime::format_duration(self.lease),
                humantime::format_duration(self.deliver_timeout),
                humantime::format_duration(MIN_LEASE_MARGIN),
                humantime::format_duration(least),
            ));
        }
        Ok(())
    }

    /// The delay before attempt `attempts + 1`, given `attempts` failures
    /// so far (at least 1), with `jitter` in `[0, 1)` adding up to a quarter.
    pub(crate) fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        let base = self.backoff.saturating_mul(doubling).min(self.max_backoff);
        let spread = Duration::try_from_secs_f64(base.as_secs_f64() * jitter.clamp(0.0, 1.0) / 4.0)
            .unwrap_or_default();
        base.saturating_add(spread)
    }
}

/// The dispatcher task of a [`Service`](crate::Service): keeps up to
/// [`DispatchConfig::batch`] deliveries in flight until `stop` turns true,
/// then finishes those in hand (so their events are marked, not left to
/// their lease) and delivers one more batch of what is due.
///
/// Deliveries are independent: each holds one slot, and free slots are
/// filled with newly leased events as soon as half of them are free, so a
/// slow or hanging receiver delays only the events it holds, never the
/// rest of the outbox behind a whole batch.
pub(crate) async fn dispatch(
    store: Arc<dyn BlobStore>,
    sink: Arc<dyn EventSink>,
    config: DispatchConfig,
    counters: Arc<EventCounters>,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut in_flight = tokio::task::JoinSet::new();
    // Lease again once this many slots are free (or none is busy): one
    // store round trip per half batch, not per event.
    let refill = config.batch.div_ceil(2).max(1);
    while !*stop.borrow() {
        let free = config.batch.saturating_sub(in_flight.len());
        let mut pause = config.poll;
        if free >= refill || in_flight.is_empty() {
            match lease(&store, free, &config).await {
                // Every slot is busy: wait for one to free.
                Ok(events) if events.len() == free && free > 0 => {
                    spawn_deliveries(&mut in_flight, events, &store, &sink, &config, &counters);
                    pause = Duration::MAX;
                }
                Ok(events) => {
                    spawn_deliveries(&mut in_flight, events, &store, &sink, &config, &counters);
                }
                Err(e) => {
                    tracing::warn!(error = %e.with_sources(), "reading the event outbox failed");
                    pause = config.poll.max(Duration::from_secs(1));
                }
            }
        }
        // Wait for a delivery to finish, the next poll (nothing more was
        // due), a change made through this instance, or the end.
        let mut delivered = Vec::new();
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                // With every other delivery that has finished meanwhile:
                // one acknowledgement for them all.
                finished(done, &mut delivered);
                while let Some(done) = in_flight.try_join_next() {
                    finished(done, &mut delivered);
                }
            }
            () = tokio::time::sleep(pause), if pause != Duration::MAX => {}
            () = wake.notified() => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
        // After the select: its output holds the stop flag's guard, which
        // may not be held across an await.
        acknowledge(&store, delivered, &counters).await;
    }
    // The deliveries in hand, then one last batch, so that what the host did
    // just before it stopped goes out now rather than when a replica next runs.
    finish(&mut in_flight, &store, &counters).await;
    match lease(&store, config.batch, &config).await {
        Ok(events) => {
            spawn_deliveries(&mut in_flight, events, &store, &sink, &config, &counters);
            finish(&mut in_flight, &store, &counters).await;
        }
        Err(e) => {
            tracing::warn!(error = %e.with_sources(), "the last batch of events before the stop failed")
        }
    }
}

/// Leases up to `count` due events (none without an outbox).
async fn lease(
    store: &Arc<dyn BlobStore>,
    count: usize,
    config: &DispatchConfig,
) -> Result<Vec<Event>, otm_store::StoreError> {
    match store.outbox() {
        Some(outbox) if count > 0 => outbox.lease_events(count, config.lease).await,
        _ => Ok(Vec::new()),
    }
}

/// A delivery's task: the event when it was delivered (to be acknowledged
/// with others), nothing when its failure was marked, or the error of that
/// marking.
type Delivery = Result<Option<Event>, otm_store::StoreError>;

/// Starts one delivery task per leased event, each within
/// [`DispatchConfig::deliver_timeout`], so none outlives its lease.
fn spawn_deliveries(
    in_flight: &mut tokio::task::JoinSet<Delivery>,
    events: Vec<Event>,
    store: &Arc<dyn BlobStore>,
    sink: &Arc<dyn EventSink>,
    config: &DispatchConfig,
    counters: &Arc<EventCounters>,
) {
    for event in events {
        let (store, sink, config, counters) = (
            store.clone(),
            sink.clone(),
            config.clone(),
            counters.clone(),
        );
        in_flight.spawn(async move { deliver(&*store, &sink, &config, &counters, event).await });
    }
}

/// Waits for every delivery in hand and acknowledges those delivered.
async fn finish(
    in_flight: &mut tokio::task::JoinSet<Delivery>,
    store: &Arc<dyn BlobStore>,
    counters: &EventCounters,
) {
    let mut delivered = Vec::new();
    while let Some(done) = in_flight.join_next().await {
        finished(done, &mut delivered);
    }
    acknowledge(store, delivered, counters).await;
}

/// Takes in a finished delivery: its event joins `delivered`, or a failed
/// marking is logged (its lease runs out and the event is delivered again).
fn finished(done: Result<Delivery, tokio::task::JoinError>, delivered: &mut Vec<Event>) {
    match done {
        Ok(Ok(Some(event))) => delivered.push(event),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e.with_sources(), "marking a failed event delivery failed; its lease runs out and it is delivered again")
        }
        // The task only awaits the sink's own task: it does not panic.
        Err(e) => tracing::warn!(error = %e, "an event delivery task ended early"),
    }
}

/// Takes delivered events out of the outbox, all in one call (one round
/// trip on the SQL and Redis outboxes), then counts them. If that fails
/// their leases run out and they are delivered again (at least once).
async fn acknowledge(store: &Arc<dyn BlobStore>, delivered: Vec<Event>, counters: &EventCounters) {
    let Some(outbox) = store.outbox() else {
        return;
    };
    if delivered.is_empty() {
        return;
    }
    match outbox.events_delivered(&delivered).await {
        Ok(()) => {
            counters
                .delivered
                .fetch_add(delivered.len() as u64, Ordering::Relaxed);
            for event in &delivered {
                tracing::debug!(event = %event.id(), kind = %event.kind, "event delivered");
            }
        }
        Err(e) => tracing::warn!(error = %e.with_sources(), events = delivered.len(),
            "marking delivered events failed; they will be delivered again"),
    }
}

/// Delivers one leased event. Delivered, it is handed back to be
/// acknowledged with others ([`acknowledge`]); else it is marked here:
/// failed with its retry time, or kept as a dead letter after its last
/// attempt (see
/// [`Service::replay_dead_letters`](crate::Service::replay_dead_letters)).
async fn deliver(
    store: &dyn BlobStore,
    sink: &Arc<dyn EventSink>,
    config: &DispatchConfig,
    counters: &EventCounters,
    event: Event,
) -> Delivery {
    let Some(outbox) = store.outbox() else {
        return Ok(None);
    };
    // On its own task, so that a sink that panics fails this delivery
    // instead of leaving the event leased and its attempt uncounted.
    let task = tokio::spawn({
        let (sink, event) = (sink.clone(), event.clone());
        async move { sink.deliver(&event).await.map_err(|e| e.to_string()) }
    });
    let abort = task.abort_handle();
    let outcome = tokio::time::timeout(config.deliver_timeout, task).await;
    let error = match outcome {
        Ok(Ok(Ok(()))) => return Ok(Some(event)),
        Ok(Ok(Err(e))) => e,
        Ok(Err(_)) => "the sink panicked".to_owned(),
        Err(_) => {
            abort.abort();
            format!("no answer within {:?}", config.deliver_timeout)
        }
    };
    let attempts = event.attempts + 1;
    if attempts >= config.max_attempts {
        outbox.event_dead(&event).await?;
        counters.dead.fetch_add(1, Ordering::Relaxed);
        tracing::error!(event = %event.id(), kind = %event.kind, attempts, %error,
            "event kept as a dead letter after its last delivery attempt (replay it with Service::replay_dead_letters)");
    } else {
        let delay = config.delay(attempts, jitter());
        outbox
            .event_failed(&event, SystemTime::now() + delay)
            .await?;
        counters.retried.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = %event.id(), kind = %event.kind, attempts, %error,
            retry_in_ms = delay.as_millis() as u64, "event delivery failed; will retry");
    }
    Ok(None)
}

/// A number in `[0, 1)` from the OS random generator (0 if it fails:
/// jitter only spreads retries out).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match otm_core::MessageId::generate() {
        Ok(id) => bytes.copy_from_slice(&id.as_bytes()[..4]),
        Err(_) => return 0.0,
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let c =
            DispatchConfig::default().with_backoff(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(c.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(c.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(c.delay(5, 0.0), Duration::from_secs(16));
        assert_eq!(c.delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(c.delay(40, 0.0), Duration::from_secs(60));
        assert_eq!(
            c.delay(2, 0.999_999),
            Duration::from_secs(2).mul_f64(1.0 + 0.999_999 / 4.0)
        );
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
