//! `otm-load`: drives full one-time-message cycles against a running otm
//! server over HTTP — seal a message of a chosen size, create it, open it
//! with its proof — at a chosen concurrency for a duration or a count, and
//! reports throughput, latency percentiles per request kind and errors by
//! status.
//!
//! ```text
//! otm-load --server http://127.0.0.1:8080 --concurrency 16 --duration 10s --size 1024
//! ```
//!
//! The server's per-client rate limits apply to the load tool too: start it
//! with `--create-per-minute` and `--open-per-minute` high enough.
//!
//! With `--webhook-listen ADDR` it also receives the server's webhooks
//! (start the server with `--webhook-url http://ADDR/`) and reports events
//! per second, duplicates, and the delivery latency from each event's
//! timestamp to its arrival.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use otm_client::Client;
use otm_core::{seal, Key, Secrets};
use serde_json::{json, Value};

/// Load generator for otm servers.
#[derive(Parser, Debug)]
#[command(name = "otm-load", version, about)]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Concurrent cycles in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Run for this long (e.g. 10s, 1m). Ignored when --count is given.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Run exactly this many cycles instead of for a duration.
    #[arg(long)]
    count: Option<u64>,
    /// Message size in bytes (ASCII; at most 8000).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Expiry of created messages, in seconds.
    #[arg(long, default_value_t = 600)]
    ttl: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Do not print the progress line.
    #[arg(long)]
    quiet: bool,
    /// Only create messages, leave them stored (to measure a full store).
    #[arg(long)]
    create_only: bool,
    /// Receive the server's webhooks here and report their rate and
    /// delivery latency (signatures are not checked: this measures).
    #[arg(long)]
    webhook_listen: Option<std::net::SocketAddr>,
    /// The server's process ID (Linux, same machine): report the CPU time
    /// the server spent per cycle over the run (user + system, from
    /// `/proc/PID/stat`; 10 ms resolution, so run for seconds).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// User + system CPU time of a process so far, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(
        ticks * 1_000_000 / clock_ticks_per_s(),
    ))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 if that
/// cannot be asked).
fn clock_ticks_per_s() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// What the webhook receiver saw: each event's delivery latency, and the
/// IDs, to count duplicates.
#[derive(Default)]
struct Webhooks {
    latency_us: Vec<u64>,
    ids: std::collections::HashSet<String>,
    duplicates: u64,
}

/// Serves a receiver on `listener` that records each event's latency.
fn receive_webhooks(listener: tokio::net::TcpListener, seen: Arc<Mutex<Webhooks>>) {
    use axum::http::HeaderMap;
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let arrived = std::time::SystemTime::now();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let at = json["timestamp"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok());
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mut seen = seen.lock().unwrap();
            if let Some(at) = at {
                let latency = arrived.duration_since(at).unwrap_or_default();
                seen.latency_us.push(latency.as_micros() as u64);
            }
            if !seen.ids.insert(id) {
                seen.duplicates += 1;
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

#[derive(Default)]
struct Stats {
    create_us: Vec<u64>,
    open_us: Vec<u64>,
    cycle_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

fn summary(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    json!({
        "count": samples.len(),
        "p50_ms": percentile(samples, 50.0),
        "p90_ms": percentile(samples, 90.0),
        "p99_ms": percentile(samples, 99.0),
        "p999_ms": percentile(samples, 99.9),
        "max_ms": samples.last().copied().unwrap_or(0) as f64 / 1000.0,
    })
}

/// A short label of a failure for the error table: the API's code, or
/// what went wrong on the way.
fn label(step: &str, e: &otm_client::Error) -> String {
    use otm_client::Error;
    let what = match e {
        Error::Timeout(_) => "timeout".to_owned(),
        Error::Unreachable { .. } => "connect".to_owned(),
        Error::Redirected { status, .. } => format!("redirect {status}"),
        Error::Unexpected { status, .. } => format!("unexpected {status}"),
        other => match other.code() {
            Some(code) => code.to_string(),
            None => "error".to_owned(),
        },
    };
    format!("{step}: {what}")
}

/// One cycle: seal, create, open. Returns the (create, open) latencies.
async fn cycle(
    client: &Client,
    text: &str,
    ttl: Duration,
    create_only: bool,
) -> Result<(u64, u64), String> {
    let key = Key::generate().map_err(|e| e.to_string())?;
    let secrets = Secrets::derive(&key, None);
    let envelope = seal(&secrets, text).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let stored = client
        .create(&envelope, &secrets, Some(ttl), None)
        .await
        .map_err(|e| label("create", &e))?;
    let create_us = t0.elapsed().as_micros() as u64;
    if create_only {
        return Ok((create_us, 0));
    }
    let t1 = Instant::now();
    let back = client
        .claim(&stored.id, secrets.access_proof(), secrets.claim_proof())
        .await
        .map_err(|e| label("open", &e))?;
    let open_us = t1.elapsed().as_micros() as u64;
    if back != envelope {
        return Err("open: different envelope".into());
    }
    Ok((create_us, open_us))
}

/// Waits until no webhook has arrived for two seconds (at most 60 s), then
/// summarises them: the rate over the time from `start` to the last arrival.
async fn drain_webhooks(seen: &Arc<Mutex<Webhooks>>, start: Instant) -> Value {
    let mut last = (seen.lock().unwrap().latency_us.len(), Instant::now());
    let give_up = Instant::now() + Duration::from_secs(60);
    while last.1.elapsed() < Duration::from_secs(2) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = seen.lock().unwrap().latency_us.len();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let elapsed = (last.1 - start).as_secs_f64();
    let mut seen = seen.lock().unwrap();
    let count = seen.latency_us.len();
    json!({
        "duplicates": seen.duplicates,
        "elapsed_s": elapsed,
        "per_s": count as f64 / elapsed.max(f64::EPSILON),
        "latency": summary(&mut seen.latency_us),
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.size > 8000 || args.concurrency == 0 {
        eprintln!("otm-load: --size must be at most 8000 and --concurrency at least 1");
        return std::process::ExitCode::from(2);
    }
    let client = match Client::builder(&args.server)
        .user_agent(concat!("otm-load/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otm-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let server = client.base().to_owned();
    let webhooks = Arc::new(Mutex::new(Webhooks::default()));
    if let Some(addr) = args.webhook_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => receive_webhooks(listener, webhooks.clone()),
            Err(e) => {
                eprintln!("otm-load: cannot listen on {addr}: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let text: Arc<str> = "x".repeat(args.size).into();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = args.server_pid.and_then(process_cpu);
    if args.server_pid.is_some() && cpu_before.is_none() {
        eprintln!("otm-load: cannot read /proc/PID/stat of --server-pid");
        return std::process::ExitCode::from(2);
    }
    let start = Instant::now();
    let deadline = start + args.duration;

    let progress = (!args.quiet).then(|| {
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let secs = start.elapsed().as_secs_f64();
                let n = done.load(Ordering::Relaxed);
                eprint!(
                    "\r{secs:6.1}s  {n:>8} cycles  {:>8.1}/s  {:>6} errors ",
                    n as f64 / secs,
                    failed.load(Ordering::Relaxed)
                );
            }
            eprintln!();
        })
    });

    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, text) = (client.clone(), text.clone());
            let (stats, done, failed, issued) =
                (stats.clone(), done.clone(), failed.clone(), issued.clone());
            let (count, ttl, create_only) =
                (args.count, Duration::from_secs(args.ttl), args.create_only);
            tokio::spawn(async move {
                loop {
                    match count {
                        Some(n) if issued.fetch_add(1, Ordering::Relaxed) >= n => break,
                        None if Instant::now() >= deadline => break,
                        _ => {}
                    }
                    let t = Instant::now();
                    let result = cycle(&client, &text, ttl, create_only).await;
                    let mut s = stats.lock().unwrap();
                    match result {
                        Ok((c, o)) => {
                            s.create_us.push(c);
                            s.open_us.push(o);
                            s.cycle_us.push(t.elapsed().as_micros() as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(kind) => {
                            *s.errors.entry(kind).or_default() += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Measured before the webhooks drain: the CPU of the cycles themselves
    // (deliveries that run during the load are in it, the tail is not).
    let server_cpu = args
        .server_pid
        .and_then(process_cpu)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let events = match args.webhook_listen {
        Some(_) => Some(drain_webhooks(&webhooks, start).await),
        None => None,
    };
    let mut s = stats.lock().unwrap();
    let cycles = s.cycle_us.len() as f64;
    let report = json!({
        "server": server,
        "concurrency": args.concurrency,
        "message_bytes": args.size,
        "elapsed_s": elapsed,
        "cycles": s.cycle_us.len(),
        "cycles_per_s": cycles / elapsed,
        "requests_per_s": 2.0 * cycles / elapsed,
        "create": summary(&mut s.create_us),
        "open": summary(&mut s.open_us),
        "cycle": summary(&mut s.cycle_us),
        "errors": s.errors,
        "events": events,
        "server_cpu_s": server_cpu.map(|c| c.as_secs_f64()),
        "server_cpu_us_per_cycle": server_cpu.map(|c| c.as_secs_f64() * 1e6 / cycles.max(1.0)),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} cycles in {elapsed:.1}s at concurrency {}: {:.1} cycles/s, {:.1} requests/s",
            report["cycles"],
            args.concurrency,
            report["cycles_per_s"].as_f64().unwrap_or(0.0),
            report["requests_per_s"].as_f64().unwrap_or(0.0)
        );
        for kind in ["create", "open", "cycle"] {
            let k = &report[kind];
            println!("  {kind:<6} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms",
                k["p50_ms"].as_f64().unwrap_or(0.0), k["p90_ms"].as_f64().unwrap_or(0.0), k["p99_ms"].as_f64().unwrap_or(0.0),
                k["p999_ms"].as_f64().unwrap_or(0.0), k["max_ms"].as_f64().unwrap_or(0.0));
        }
        if let Some(cpu) = report["server_cpu_us_per_cycle"].as_f64() {
            println!(
                "  server CPU {:.2} s: {cpu:.1} µs per cycle",
                report["server_cpu_s"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(e) = &report["events"].as_object() {
            println!(
                "  events {} ({} duplicates) in {:.1}s: {:.1}/s; latency p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                e["latency"]["count"], e["duplicates"], e["elapsed_s"].as_f64().unwrap_or(0.0),
                e["per_s"].as_f64().unwrap_or(0.0), e["latency"]["p50_ms"].as_f64().unwrap_or(0.0),
                e["latency"]["p99_ms"].as_f64().unwrap_or(0.0), e["latency"]["max_ms"].as_f64().unwrap_or(0.0)
            );
        }
        if s.errors.is_empty() {
            println!("  no errors");
        } else {
            for (kind, n) in &s.errors {
                println!("  error {kind}: {n}");
            }
        }
    }
    if s.errors.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
