//! Typed configuration of the HTTP layer.

use std::time::Duration;

use otm_store::BreakerConfig;

use crate::limit::{IpNet, RateLimit};

/// How the router behaves. Build with [`Config::default`] and the `with_*` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Public base URL for share links (`https://otm.example`). `None`: the
    /// browser uses its own origin and the router's mount path.
    pub base_url: Option<String>,
    /// Longest expiry a sender may choose. Default 7 days.
    pub max_ttl: Duration,
    /// Expiry when a request names none, and the compose page's default. Default 7 days.
    pub default_ttl: Duration,
    /// Expiry choices offered by the compose page (those above `max_ttl` are dropped).
    pub ttl_choices: Vec<Duration>,
    /// Creates allowed per caller (an anonymous client's address, an API
    /// token, a host identity; never [`Caller::Server`](crate::Caller::Server)):
    /// a burst, refilled at `per_minute`.
    pub create_limit: RateLimit,
    /// Opens, status checks and burns allowed per caller, together (wrong
    /// proofs and malformed requests count too).
    pub open_limit: RateLimit,
    /// Count both rate limits in the store instead of this process, so that
    /// every replica on one store shares them: a client spread over N
    /// replicas gets each limit once, not N times. The store must count
    /// rates ([`BlobStore::rates`](otm_store::BlobStore::rates): memory,
    /// SQLite, PostgreSQL, Redis; not S3), else
    /// [`Service::new`](crate::Service::new) refuses. Each limited request
    /// then costs one store round trip (BENCHMARKS.md, "rate"), and a store
    /// that fails fails the request (503). Default `false`: counted in
    /// process, with no store round trip; right for one replica, or when a
    /// load balancer keeps each client on one replica.
    pub shared_rate_limits: bool,
    /// Proxies whose `X-Forwarded-For` is believed when they are the peer.
    pub trusted_proxies: Vec<IpNet>,
    /// Longest time to receive a whole request, body included (else 408).
    /// The work a request starts in the store is not cut short by it; the
    /// stores' own timeouts bound that. Default 10 s.
    pub request_timeout: Duration,
    /// The circuit breaker [`Service::new`](crate::Service::new) puts in
    /// front of the store (see [`otm_store::Breaker`]): while the store
    /// keeps failing, requests get their 503 at once instead of each
    /// waiting out the store's timeouts. `None` turns it off. Default
    /// [`BreakerConfig::default`] (opens after 3 failures in a row, one
    /// probe a second). Give the service the plain store: one that already
    /// is a `Breaker` would be wrapped in a second.
    pub store_breaker: Option<BreakerConfig>,
    /// Who may create what ([`crate::policy`]). `None`: anyone, within the
    /// limits above.
    pub create_policy: Option<crate::policy::SharedPolicy>,
    /// How often the service removes expired messages from a store that
    /// keeps them until someone does (memory, SQLite, PostgreSQL; their
    /// `message.expired` events are recorded then). Default 60 s.
    pub purge_interval: Duration,
    /// Where the store's events go and how ([`Config::with_events`]).
    /// `None`: no events; a store that records them is then refused at
    /// start, since its outbox would only grow.
    pub events: Option<Events>,
    /// The languages of the pages ([`Config::with_translations`]): by
    /// default the built-in ones ([`Translations::builtin`](crate::i18n::Translations::builtin)).
    pub translations: std::sync::Arc<crate::i18n::Translations>,
}

/// Event delivery: a sink and how to dispatch to it ([`Config::with_events`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct Events {
    /// Where events go.
    pub sink: SharedSink,
    /// How they are leased, retried and given up.
    pub dispatch: crate::events::DispatchConfig,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("dispatch", &self.dispatch)
            .finish_non_exhaustive()
    }
}

/// An [`EventSink`](crate::events::EventSink) in the [`Config`] (cheap to clone).
#[derive(Clone)]
pub struct SharedSink(pub(crate) std::sync::Arc<dyn crate::events::EventSink>);

impl Default for Config {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        Config {
            base_url: None,
            max_ttl: 7 * 24 * hour,
            default_ttl: 7 * 24 * hour,
            ttl_choices: vec![hour, 24 * hour, 7 * 24 * hour],
            create_limit: RateLimit {
                per_minute: 30,
                burst: 10,
            },
            open_limit: RateLimit {
                per_minute: 60,
                burst: 20,
            },
            shared_rate_limits: false,
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(10),
            store_breaker: Some(BreakerConfig::default()),
            create_policy: None,
            purge_interval: Duration::from_secs(60),
            events: None,
            translations: std::sync::Arc::new(crate::i18n::Translations::builtin()),
        }
    }
}

impl Config {
    /// Sets [`Config::base_url`] (a trailing `/` is dropped).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Sets [`Config::max_ttl`], lowering the default to it when needed.
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self.default_ttl = self.default_ttl.min(max);
        self
    }

    /// Sets both rate limits.
    pub fn with_rate_limits(mut self, create: RateLimit, open: RateLimit) -> Self {
        self.create_limit = create;
        self.open_limit = open;
        self
    }

    /// Sets [`Config::shared_rate_limits`].
    pub fn with_shared_rate_limits(mut self, shared: bool) -> Self {
        self.shared_rate_limits = shared;
        self
    }

    /// Sets [`Config::request_timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`Config::store_breaker`] (`None`: no breaker).
    pub fn with_store_breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.store_breaker = breaker;
        self
    }

    /// Sets [`Config::create_policy`].
    pub fn with_create_policy(mut self, policy: impl crate::policy::CreatePolicy) -> Self {
        self.create_policy = Some(crate::policy::SharedPolicy(std::sync::Arc::new(policy)));
        self
    }

    /// Sets [`Config::purge_interval`].
    pub fn with_purge_interval(mut self, every: Duration) -> Self {
        self.purge_interval = every;
        self
    }

    /// Delivers the store's events to `sink` ([`Config::events`]): the
    /// service starts a dispatcher that runs while it lives. The store must
    /// record them (`StoreOptions::events` on, a backend with an outbox);
    /// [`Service::new`](crate::Service::new) refuses the one without the
    /// other. Several replicas may each deliver from one store.
    pub fn with_events(
        mut self,
        sink: std::sync::Arc<dyn crate::events::EventSink>,
        dispatch: crate::events::DispatchConfig,
    ) -> Self {
        self.events = Some(Events {
            sink: SharedSink(sink),
            dispatch,
        });
        self
    }

    /// Sets [`Config::translations`]: for example the built-in languages
    /// with an operator's directory laid over them
    /// (`Translations::builtin().with_dir(dir)?`).
    pub fn with_translations(mut self, translations: crate::i18n::Translations) -> Self {
        self.translations = std::sync::Arc::new(translations);
        self
    }

    /// Sets [`Config::trusted_proxies`].
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The offered choices that do not exceed the maximum, plus the maximum.
    pub fn effective_ttl_choices(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .ttl_choices
            .iter()
            .copied()
            .filter(|d| *d <= self.max_ttl && !d.is_zero())
            .collect();
        if !v.contains(&self.max_ttl) {
            v.push(self.max_ttl);
        }
        v.sort();
        v.dedup();
        v
    }
}
