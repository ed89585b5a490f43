//! `otm-server`: the reference otm server.
//!
//! With no flags it serves on 127.0.0.1:8080 from a SQLite file
//! (`otm.sqlite3` in the working directory) that it creates. `--help` lists
//! every flag; the store is chosen by URL (`otm_store::connect`), with each
//! backend's options as URL parameters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use otm_http::events::DispatchConfig;
use otm_http::webhook::{Webhook, WebhookSecret};
use otm_http::{Config, ConnectionLimits, IpNet, RateLimit, Service};
use otm_store::{BreakerConfig, StoreOptions};
use tower_http::trace::TraceLayer;
use tracing_subscriber::EnvFilter;

mod healthcheck;
mod tokens;

/// One-time secret messages: the browser encrypts, the server stores
/// ciphertext and hands it out exactly once.
#[derive(Parser, Debug)]
#[command(name = "otm-server", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "OTM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Where messages are kept: sqlite://PATH, memory:,
    /// redis://HOST:PORT[?prefix=otm:], redis+cluster://HOST:PORT,HOST:PORT,
    /// rediss:// and rediss+cluster:// for TLS (with ca=PATH for a private CA),
    /// postgres://USER@HOST/DB[?schema=NAME],
    /// s3://BUCKET/PREFIX[?endpoint=URL&path_style=true&region=R]. An
    /// unknown URL parameter is refused, naming it. A connection to another
    /// machine that is not verified TLS is refused unless the URL adds
    /// allow_unverified=true.
    #[arg(
        long,
        env = "OTM_STORE",
        default_value = "sqlite://otm.sqlite3",
        hide_env_values = true
    )]
    store: String,

    /// Public base URL for share links, such as `https://otm.example`. By
    /// default browsers use the address they loaded the page from.
    #[arg(long, env = "OTM_BASE_URL")]
    base_url: Option<String>,

    /// Longest expiry a sender may choose (e.g. 7d, 24h, 30m).
    #[arg(long, env = "OTM_MAX_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    max_ttl: Duration,

    /// Wrong passphrases allowed per message (1 to 20): the one that
    /// reaches this number destroys it. Only a holder of the link can try one.
    #[arg(long, env = "OTM_MAX_FAILED_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    max_failed_attempts: u32,

    /// Creates per minute per client (burst allowed: a third of it, at least 1).
    #[arg(long, env = "OTM_CREATE_PER_MINUTE", default_value_t = 30)]
    create_per_minute: u32,

    /// Opens, status checks and burns per minute per client, together
    /// (wrong and malformed requests count too).
    #[arg(long, env = "OTM_OPEN_PER_MINUTE", default_value_t = 60)]
    open_per_minute: u32,

    /// Count the rate limits in the store, shared by every replica on it
    /// (SQLite, PostgreSQL, Redis; not S3), instead of in this process: a
    /// client spread over N replicas then gets each limit once, not N
    /// times. Costs one store round trip per request.
    #[arg(long, env = "OTM_SHARED_RATE_LIMITS")]
    shared_rate_limits: bool,

    /// Reverse proxies whose X-Forwarded-For is trusted (IPs or CIDRs,
    /// comma-separated).
    #[arg(long, env = "OTM_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxy: Vec<IpNet>,

    /// A directory of string tables for the pages (`{tag}.json`, the format
    /// of otm-http's assets/i18n/): each changes texts of a built-in
    /// language or adds a language; checked at start.
    #[arg(long, env = "OTM_TRANSLATIONS_DIR")]
    translations_dir: Option<std::path::PathBuf>,

    /// How often expired messages are purged from stores that need it.
    #[arg(long, env = "OTM_PURGE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    purge_interval: Duration,

    /// Longest time to receive one request, body included; slower clients
    /// get 408. (Store work, once begun, is bounded by the store's own
    /// timeouts, so an open in progress always gets its answer.)
    #[arg(long, env = "OTM_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,

    /// Serve /metrics, /readyz and /healthz on this address instead of the
    /// public one (which then has only /healthz of the three): live counters
    /// and store round trips only for operators.
    #[arg(long, env = "OTM_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,

    /// Most client connections served at once; beyond it new connections
    /// wait in the kernel's listen backlog. Keep `ulimit -n` above it.
    #[arg(long, env = "OTM_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,

    /// Most connections from one client (an IPv4 address or an IPv6 /64);
    /// a further one is closed at once. Behind a reverse proxy every client
    /// is the proxy: raise it there.
    #[arg(long, env = "OTM_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    max_connections_per_client: usize,

    /// Longest a response write may make no progress; a client that stops
    /// reading its responses loses its connection then.
    #[arg(long, env = "OTM_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,

    /// Longest wait for a request's head (request line and headers); also
    /// how long an idle keep-alive connection stays open.
    #[arg(long, env = "OTM_HEADER_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,

    /// Largest request head in bytes (request line and headers); larger
    /// heads get 431.
    #[arg(long, env = "OTM_MAX_HEADER_BYTES", default_value_t = 16384)]
    max_header_bytes: usize,

    /// Store failures in a row after which requests get their 503 at once
    /// (a circuit breaker) instead of each waiting out the store's own
    /// timeouts; 0 turns the breaker off.
    #[arg(long, env = "OTM_STORE_BREAKER_FAILURES", default_value_t = 3)]
    store_breaker_failures: u32,

    /// While the breaker is open, how often one request probes the store.
    #[arg(long, env = "OTM_STORE_BREAKER_COOLDOWN", default_value = "1s", value_parser = humantime::parse_duration)]
    store_breaker_cooldown: Duration,

    /// Log format.
    #[arg(long, env = "OTM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// Send every event (message.created, .opened, .burned, .destroyed,
    /// .expired) as a signed POST to this URL (Standard Webhooks). Needs
    /// OTM_WEBHOOK_SECRETS, and a store with an outbox (SQLite, PostgreSQL,
    /// Redis or Redis Cluster, memory; not S3). https://, or http:// to
    /// this machine (see --webhook-allow-unverified).
    #[arg(long, env = "OTM_WEBHOOK_URL", hide_env_values = true)]
    webhook_url: Option<String>,

    /// Allow --webhook-url to be plain http:// to another machine (a
    /// receiver on a private network you trust). Without it such a URL is
    /// refused at start: anyone on the path could read the events or answer
    /// for the receiver.
    #[arg(long, env = "OTM_WEBHOOK_ALLOW_UNVERIFIED")]
    webhook_allow_unverified: bool,

    /// The webhook signing secrets, `whsec_<base64>`, comma-separated (two
    /// while rotating: each request carries a signature by each). Set it in
    /// the environment, not on the command line, where other users see it.
    #[arg(
        long,
        env = "OTM_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    webhook_secrets: Vec<String>,

    /// Deliveries of one event tried before it is kept as a dead letter
    /// (counted in otm_events_total{outcome="dead"}; see `dead-letters`).
    #[arg(long, env = "OTM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    webhook_max_attempts: u32,

    /// A file of API tokens: NAME SCOPES SHA256 and an optional QUOTA per
    /// line, as in `ci create,manage <sha256> 100/1h` (`otm-server token
    /// NAME` makes one). OTM_API_TOKENS may hold more, separated by `;`.
    #[arg(long, env = "OTM_API_TOKENS_FILE")]
    api_tokens_file: Option<std::path::PathBuf>,

    /// The server's manage key (`otmk_…`, from `otm-server manage-key`),
    /// needed by API tokens with the manage scope: the secret each such
    /// token manages its messages with is derived from the token and this
    /// key, so a revoked token derives nothing. The same on every replica;
    /// keep it like a password. Set it in the environment or a file
    /// (--manage-key-file), not on the command line.
    #[arg(long, env = "OTM_MANAGE_KEY", hide_env_values = true)]
    manage_key: Option<String>,

    /// A file holding the manage key (see --manage-key), for secrets
    /// mounted as files.
    #[arg(long, env = "OTM_MANAGE_KEY_FILE", conflicts_with = "manage_key")]
    manage_key_file: Option<std::path::PathBuf>,

    /// Only holders of an API token may create messages (browsers too).
    #[arg(long, env = "OTM_CREATE_REQUIRES_TOKEN")]
    create_requires_token: bool,

    /// Who may ask someone for a secret ("Request a secret", POST
    /// /api/v1/requests): anyone who may create messages, only API token
    /// holders, or nobody. A request page on your domain is what a phishing
    /// page would want: keep it to people you know where that matters.
    #[arg(long, env = "OTM_REQUESTS", value_enum, default_value = "anyone")]
    requests: tokens::Askers,

    /// How long a server holds the events it is delivering before another
    /// replica may take them over; after a crash, its events wait this long.
    /// At least 15 s: a delivery's 10 s timeout and 5 s to mark it.
    #[arg(long, env = "OTM_WEBHOOK_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    webhook_lease: Duration,
}

/// What to do instead of serving.
#[derive(Subcommand, Debug)]
enum Command {
    /// Ask the server configured by the same flags and environment (its
    /// admin address if set, else its listen address; 0.0.0.0 and :: mean
    /// loopback) for /healthz, and exit 0 if it answers 200, 1 otherwise.
    /// For container health checks: it needs no shell or curl.
    Healthcheck {
        /// Longest time the whole check may take.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Make an API token for a machine client: prints the token (give it to
    /// the client; it is shown once) and its entry for --api-tokens-file or
    /// OTM_API_TOKENS (the server keeps only its SHA-256).
    Token {
        /// A name for the token (one word), shown in logs.
        name: String,
        /// What it may do, comma-separated: `create` (create messages),
        /// `manage` (show and burn by ID the messages it creates).
        #[arg(long, default_value = "create")]
        scopes: String,
    },
    /// Make a manage key for --manage-key / OTM_MANAGE_KEY (needed by API
    /// tokens with the manage scope) and print it. Replacing the key
    /// (rotating it) ends managing by API token for the messages created
    /// before; the management tokens returned at their create keep working.
    ManageKey,
    /// List the events of the store (--store) whose webhook deliveries all
    /// failed, kept as dead letters, one a line (ID, kind, failed attempts,
    /// when it happened); with --replay, make them all due again, attempts
    /// counted from 0: the running servers deliver them.
    DeadLetters {
        /// Make every dead letter due again instead of listing them.
        #[arg(long)]
        replay: bool,
        /// The most dead letters listed.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
}

/// Log targets capped at `info` whatever `OTM_LOG` asks for: at `debug` and
/// `trace` these drivers write request and response heads or bodies (S3
/// object metadata holds verifiers, request bodies hold envelopes, an
/// `Authorization` header holds a management token). otm's own events never
/// carry a key, proof, verifier, token, envelope or plaintext at any level.
const CAPPED_LOG_TARGETS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_s3",
    "aws_sigv4",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_types",
    "h2",
    "hyper",
    "hyper_util",
    "redis",
    "reqwest",
    "rustls",
    "sqlx",
];

/// Whether an event of `target` is in [`CAPPED_LOG_TARGETS`] (the target
/// itself or any module under it).
fn capped(target: &str) -> bool {
    CAPPED_LOG_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The log subscriber: `otm_log` (`OTM_LOG`; default `info`, with `sqlx` at
/// `warn`) chooses what is logged, and a second filter that no directive
/// can override (not a more specific target, not a span filter) drops
/// every event of a [`CAPPED_LOG_TARGETS`] driver above `info`.
/// (`tower_http` is not capped: its request events name method, path,
/// status and latency, never headers or bodies.)
fn log_subscriber<W>(
    otm_log: Option<&str>,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let filter = otm_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn"));
    let cap = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !capped(meta.target())
    });
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = match json {
        true => layer.json().with_filter(cap).boxed(),
        false => layer.with_filter(cap).boxed(),
    };
    Box::new(tracing_subscriber::registry().with(filter).with(layer))
}

fn limit(per_minute: u32) -> RateLimit {
    RateLimit {
        per_minute: per_minute.max(1),
        burst: (per_minute / 3).max(1),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::ManageKey) = &args.command {
        return match tokens::ManageKey::generate() {
            Ok(key) => {
                println!("{key}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otm-server manage-key: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Token { name, scopes }) = &args.command {
        return match tokens::new_token(name, scopes) {
            Ok((token, entry)) => {
                println!("token: {token}");
                println!("entry: {entry}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otm-server token: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Healthcheck { timeout }) = args.command {
        let address = healthcheck::target(args.admin_listen.unwrap_or(args.listen));
        return match healthcheck::check(address, timeout) {
            Ok(status) => {
                println!("healthy: {status} from http://{address}/healthz");
                std::process::ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("unhealthy: {reason}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::DeadLetters { replay, max }) = args.command {
        return match dead_letters(&args.store, replay, max).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("otm-server dead-letters: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let otm_log = std::env::var("OTM_LOG").ok();
    let subscriber = log_subscriber(
        otm_log.as_deref(),
        args.log_format == "json",
        std::io::stdout,
    );
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("otm-server: a log subscriber was already set");
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> Result<(), String> {
    // The manage key leaves the arguments at once, into memory that is
    // wiped when it goes.
    let manage_key = args.manage_key.take().map(zeroize::Zeroizing::new);
    let tokens = token_policy(&args, manage_key.as_deref().map(String::as_str))?;
    if let Some(policy) = &tokens {
        tracing::info!(
            tokens = policy.len(),
            required = args.create_requires_token,
            "API tokens for creating"
        );
    }
    let webhook = match &args.webhook_url {
        Some(url) => Some(webhook(
            url,
            &args.webhook_secrets,
            args.webhook_allow_unverified,
        )?),
        None if !args.webhook_secrets.is_empty() => {
            return Err("OTM_WEBHOOK_SECRETS is set without --webhook-url".into())
        }
        None => None,
    };
    let options = StoreOptions::default()
        .with_max_failed_attempts(args.max_failed_attempts)
        .with_events(webhook.is_some());
    let store = otm_store::connect(&args.store, options)
        .await
        .map_err(|e| {
            format!(
                "cannot open the store {}: {}",
                redacted(&args.store),
                e.with_sources()
            )
        })?;
    tracing::info!(store = store.backend_name(), "store ready");

    let mut config = Config::default()
        .with_max_ttl(args.max_ttl)
        .with_rate_limits(limit(args.create_per_minute), limit(args.open_per_minute))
        .with_shared_rate_limits(args.shared_rate_limits)
        .with_trusted_proxies(args.trusted_proxy)
        .with_request_timeout(args.request_timeout)
        .with_store_breaker((args.store_breaker_failures > 0).then(|| {
            BreakerConfig::default()
                .with_failures_to_open(args.store_breaker_failures)
                .with_cooldown(args.store_breaker_cooldown)
        }));
    if let Some(url) = args.base_url {
        config = config.with_base_url(url);
    }
    if let Some(dir) = &args.translations_dir {
        let translations = otm_http::i18n::Translations::builtin()
            .with_dir(dir)
            .map_err(|e| format!("cannot use --translations-dir: {e}"))?;
        let tags: Vec<&str> = translations.languages().iter().map(|l| l.tag()).collect();
        tracing::info!(languages = %tags.join(","), "string tables loaded");
        config = config.with_translations(translations);
    }
    if let Some(policy) = tokens {
        config = config.with_create_policy(policy);
    }
    if let Some(hook) = webhook {
        let dispatch = DispatchConfig::default()
            .with_max_attempts(args.webhook_max_attempts)
            .with_lease(args.webhook_lease);
        config = config.with_events(Arc::new(hook), dispatch);
        tracing::info!("events go to the webhook");
    }
    // Starts the purge of expired messages and the delivery of events.
    let service = Service::new(
        Arc::clone(&store),
        config.with_purge_interval(args.purge_interval),
    )
    .map_err(|e| format!("cannot start: {e}"))?;
    // The trace layer logs method, path and status; never bodies (which
    // hold ciphertext and proofs), and paths carry no secrets.
    let (app, admin) = match args.admin_listen {
        Some(_) => (service.router::<()>(), Some(service.admin_router::<()>())),
        None => (service.router_with_admin::<()>(), None),
    };
    let app = app.layer(TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(address = %args.listen, "otm-server listening on http://{}", args.listen);
    // The admin listener: the operator endpoints, on their own address,
    // with its own (small) connection bounds.
    let admin = match (admin, args.admin_listen) {
        (Some(admin), Some(address)) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("cannot listen on {address} (--admin-listen): {e}"))?;
            tracing::info!(%address, "admin endpoints (/metrics, /readyz, /healthz) on http://{address}");
            let limits = ConnectionLimits::default()
                .with_max_connections(64)
                .with_header_timeout(args.header_timeout);
            Some(tokio::spawn(otm_http::serve(
                listener,
                admin,
                limits,
                shutdown(),
            )))
        }
        _ => None,
    };
    let limits = ConnectionLimits::default()
        .with_max_connections(args.max_connections)
        .with_max_connections_per_client(args.max_connections_per_client)
        .with_write_timeout(args.write_timeout)
        .with_header_timeout(args.header_timeout)
        .with_max_header_bytes(args.max_header_bytes);
    otm_http::serve(listener, app, limits, shutdown()).await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    // Deliveries in flight finish and are marked before the process ends.
    service.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// `otm-server dead-letters`: lists or replays the store's dead letters.
async fn dead_letters(url: &str, replay: bool, max: usize) -> Result<(), String> {
    let options = StoreOptions::default().with_events(true);
    let store = otm_store::connect(url, options).await.map_err(|e| {
        format!(
            "cannot open the store {}: {}",
            redacted(url),
            e.with_sources()
        )
    })?;
    let outbox = store
        .outbox()
        .ok_or_else(|| format!("the {} store keeps no events", store.backend_name()))?;
    if replay {
        let n = outbox
            .replay_dead_letters()
            .await
            .map_err(|e| e.with_sources())?;
        println!("replayed {n} dead letters: due now, delivered by the running servers");
        return Ok(());
    }
    let letters = outbox
        .dead_letters(max)
        .await
        .map_err(|e| e.with_sources())?;
    for event in &letters {
        println!(
            "{}\t{}\tattempts={}\t{}",
            event.id(),
            event.kind,
            event.attempts,
            humantime::format_rfc3339_seconds(event.at)
        );
    }
    println!(
        "{} dead letters{}",
        letters.len(),
        if letters.len() == max {
            " (or more: --max)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The API tokens of `--api-tokens-file` and `OTM_API_TOKENS`, if any are
/// configured or required.
fn token_policy(
    args: &Args,
    manage_key: Option<&str>,
) -> Result<Option<tokens::TokenPolicy>, String> {
    let from_env = std::env::var("OTM_API_TOKENS").ok();
    if args.api_tokens_file.is_none()
        && from_env.is_none()
        && !args.create_requires_token
        && args.requests == tokens::Askers::Anyone
    {
        return Ok(None);
    }
    let mut policy = tokens::TokenPolicy::parse("", "no tokens", false)?;
    if let Some(path) = &args.api_tokens_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        policy.extend(tokens::TokenPolicy::parse(
            &text,
            &path.display().to_string(),
            false,
        )?);
    }
    if let Some(text) = from_env {
        policy.extend(tokens::TokenPolicy::parse(&text, "OTM_API_TOKENS", false)?);
    }
    if args.requests == tokens::Askers::TokenHolders && !policy.any_create() {
        return Err(
            "--requests token-holders, but no API token with the create scope is \
             configured (--api-tokens-file or OTM_API_TOKENS)"
                .into(),
        );
    }
    let mut policy = policy.with_askers(args.requests);
    if args.create_requires_token {
        if !policy.any_create() {
            return Err(
                "--create-requires-token, but no API token with the create scope \
                        is configured (--api-tokens-file or OTM_API_TOKENS)"
                    .into(),
            );
        }
        policy.require();
    }
    let key = match (manage_key, &args.manage_key_file) {
        (Some(text), _) => Some(tokens::ManageKey::parse(text, "OTM_MANAGE_KEY")?),
        (None, Some(path)) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
            Some(tokens::ManageKey::parse(
                &text,
                &path.display().to_string(),
            )?)
        }
        (None, None) => None,
    };
    if let Some(key) = key {
        policy.set_manage_key(key);
    }
    policy.check_manage_key()?;
    Ok(Some(policy))
}

/// The webhook of `--webhook-url` with its secrets, checked before the
/// store opens.
fn webhook(url: &str, secrets: &[String], allow_unverified: bool) -> Result<Webhook, String> {
    let secrets = secrets
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| WebhookSecret::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("OTM_WEBHOOK_SECRETS: {e}"))?;
    let hook = match allow_unverified {
        true => Webhook::new_allow_unverified(url, secrets),
        false => Webhook::new(url, secrets),
    };
    hook.map_err(|e| format!("--webhook-url: {e}"))
}

/// A store URL without its password (`user:password@` or a `password=`
/// parameter), for messages.
fn redacted(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => match base[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &base[..s + 3], user, &base[at..]),
            None => base.to_owned(),
        },
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{log_subscriber, redacted};
    use std::sync::{Arc, Mutex};

    /// A log writer into memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The cap on driver targets holds whatever OTM_LOG says: a more
    /// specific target directive, a span filter, a global trace.
    #[test]
    fn no_directive_lifts_the_cap_on_drivers() {
        for directives in [
            "trace",
            "info,aws_smithy_runtime::client::orchestrator=trace",
            "info,sqlx::query=trace,hyper_util::client=trace,redis=trace",
            "info,[request]=trace",
        ] {
            for json in [false, true] {
                let buffer = Buffer::default();
                let writer = {
                    let buffer = buffer.clone();
                    move || buffer.clone()
                };
                let subscriber = log_subscriber(Some(directives), json, writer);
                tracing::subscriber::with_default(subscriber, || {
                    let span = tracing::info_span!("request");
                    let _in = span.enter();
                    tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "SECRET-1 x-amz-meta-otm-verifier");
                    tracing::debug!(target: "sqlx::query", "SECRET-2 envelope bytes");
                    tracing::trace!(target: "hyper_util::client::legacy", "SECRET-3 authorization");
                    tracing::trace!(target: "redis", "SECRET-4");
                    tracing::info!(target: "aws_smithy_runtime", "driver info is kept");
                    tracing::info!("otm's own line");
                });
                let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
                assert!(!log.contains("SECRET"), "{directives}: {log}");
                assert!(log.contains("otm's own line"), "{directives}: {log}");
                assert!(log.contains("driver info is kept"), "{directives}: {log}");
            }
        }
        // The cap is on the driver's targets only, not on names that start
        // alike.
        assert!(super::capped("sqlx::query") && super::capped("sqlx"));
        assert!(!super::capped("sqlxtra") && !super::capped("otm_http"));
    }

    #[test]
    fn store_urls_lose_their_passwords() {
        assert_eq!(
            redacted("postgres://otm:s3cret@db:5432/otm?schema=x"),
            "postgres://otm:***@db:5432/otm?schema=x"
        );
        assert_eq!(
            redacted("postgres://otm@db/otm?password=s3cret&sslmode=verify-full"),
            "postgres://otm@db/otm?password=***&sslmode=verify-full"
        );
        assert_eq!(
            redacted("rediss://:pw@h:6380?ca=/a.pem"),
            "rediss://:***@h:6380?ca=/a.pem"
        );
        assert_eq!(redacted("sqlite://otm.sqlite3"), "sqlite://otm.sqlite3");
    }
}
