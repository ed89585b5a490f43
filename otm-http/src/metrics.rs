//! Prometheus metrics kept with atomics. Labels never carry IDs or secrets:
//! only the route kind, the outcome and the status class.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Route kinds that are measured.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Route {
    Create = 0,
    Open = 1,
    Other = 2,
}

const ROUTES: [&str; 3] = ["create", "open", "other"];
const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000];

/// Outcomes that are counted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Created = 0,
    Opened = 1,
    NotFound = 2,
    WrongProof = 3,
    Burned = 4,
    RateLimited = 5,
    BadRequest = 6,
    StoreUnavailable = 7,
    InternalError = 8,
    BurnedBySender = 9,
    RequestCreated = 10,
    RequestAnswered = 11,
}

const OUTCOMES: [&str; 12] = [
    "created",
    "opened",
    "not_found",
    "wrong_proof",
    "burned_by_attempts",
    "rate_limited",
    "bad_request",
    "store_unavailable",
    "internal_error",
    "burned_by_sender",
    "request_created",
    "request_answered",
];

#[derive(Default)]
pub(crate) struct Metrics {
    outcomes: [AtomicU64; 12],
    // Per route: one counter per bucket, +Inf, count, and the sum in µs.
    buckets: [[AtomicU64; 12]; 3],
    count: [AtomicU64; 3],
    sum_us: [AtomicU64; 3],
    status: [[AtomicU64; 5]; 3],
    /// Store round trips made for `/readyz` (cached answers do not count).
    store_checks: AtomicU64,
    /// Event deliveries, when a dispatcher runs.
    pub(crate) events: std::sync::Arc<EventCounters>,
}

impl Metrics {
    pub(crate) fn count_store_check(&self) {
        self.store_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        let r = route as usize;
        let ms = elapsed.as_millis() as u64;
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            if ms <= *bound {
                self.buckets[r][i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count[r].fetch_add(1, Ordering::Relaxed);
        self.sum_us[r].fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.status[r][class].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub(crate) fn render(&self, backend: &str, breaker: Option<&otm_store::Breaker>) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP otm_messages_total Message outcomes.\n# TYPE otm_messages_total counter\n",
        );
        for (i, name) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "otm_messages_total{{outcome=\"{name}\"}} {}",
                get(&self.outcomes[i])
            );
        }
        out.push_str("# HELP otm_http_responses_total Responses by route and status class.\n# TYPE otm_http_responses_total counter\n");
        for (r, route) in ROUTES.iter().enumerate() {
            for (c, count) in self.status[r].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "otm_http_responses_total{{route=\"{route}\",class=\"{}xx\"}} {}",
                    c + 1,
                    get(count)
                );
            }
        }
        out.push_str("# HELP otm_http_request_duration_seconds Request latency.\n# TYPE otm_http_request_duration_seconds histogram\n");
        for (r, route) in ROUTES.iter().enumerate() {
            for (i, bound) in BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "otm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {}",
                    *bound as f64 / 1000.0,
                    get(&self.buckets[r][i])
                );
            }
            let count = get(&self.count[r]);
            let _ = writeln!(
                out,
                "otm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "otm_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                get(&self.sum_us[r]) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "otm_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP otm_store_info The configured store backend.\n# TYPE otm_store_info gauge\notm_store_info{{backend=\"{backend}\"}} 1");
        if let Some(b) = breaker {
            let _ = writeln!(
                out,
                "# HELP otm_store_breaker_open Whether the store's circuit breaker refuses calls (1) or not (0).\n# TYPE otm_store_breaker_open gauge\notm_store_breaker_open {}",
                u8::from(b.is_open())
            );
            let _ = writeln!(
                out,
                "# HELP otm_store_breaker_opened_total Times the store's circuit breaker opened.\n# TYPE otm_store_breaker_opened_total counter\notm_store_breaker_opened_total {}",
                b.times_opened()
            );
            let _ = writeln!(
                out,
                "# HELP otm_store_breaker_refused_total Store calls refused at once by the open breaker.\n# TYPE otm_store_breaker_refused_total counter\notm_store_breaker_refused_total {}",
                b.refused()
            );
        }
        let _ = writeln!(
            out,
            "# HELP otm_store_checks_total Store round trips made for readiness (answers are cached for a second).\n# TYPE otm_store_checks_total counter\notm_store_checks_total {}",
            get(&self.store_checks)
        );
        let _ = writeln!(
            out,
            "# HELP otm_events_total Event deliveries: delivered, retried (a failed attempt with another to come), dead (kept as a dead letter after the last attempt).\n# TYPE otm_events_total counter\notm_events_total{{outcome=\"delivered\"}} {}\notm_events_total{{outcome=\"retried\"}} {}\notm_events_total{{outcome=\"dead\"}} {}",
            get(&self.events.delivered),
            get(&self.events.retried),
            get(&self.events.dead)
        );
        out
    }
}

/// Delivery counters (`otm_events_total{outcome}`).
#[derive(Debug, Default)]
pub(crate) struct EventCounters {
    pub(crate) delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
}
