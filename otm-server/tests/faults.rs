//! Proof under faults, with real `otm-server` processes (one file past 500
//! lines on purpose: the drills share the load clients and the
//! exactly-once check):
//!
//! - exactly once across replicas: two servers on one store, 32 openers split
//!   across both racing for each message (`OTM_REPLICA_TRIALS`, default 200,
//!   40 on the S3 emulator unless `OTM_FULL_ROUNDS=1`; 1000 for the long
//!   run), on SQLite (two processes, one file), Redis,
//!   Redis Cluster, PostgreSQL and S3;
//! - outages of Redis and of PostgreSQL (a private instance) with a load
//!   running: 503 with a JSON error while the store is down, the server
//!   stays up and recovers by itself when the store returns;
//! - crash durability: `kill -9` of the server on SQLite, and of every
//!   PostgreSQL process, with creates in flight; every message whose create
//!   got a 201 opens exactly once afterwards;
//! - requests for a secret: after each replica race, 32 responders split
//!   across the replicas answer one request (a tenth as many trials, at
//!   least 5): at most one answer is stored, and the acknowledged one is
//!   the one the asker reads; `kill -9` of the server on SQLite with
//!   answers in flight: every acknowledged answer opens afterwards, and
//!   every request holds at most one.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, create, open, start, status_of, trials, Created};
use otm_client::{AskOptions, Error};
use otm_core::ErrorCode;
use otm_testkit::{
    free_port, skip, unique_suffix, PgSchema, PrivatePostgres, RedisPrefix, RedisServer,
};

/// Two replicas on one store; 32 openers, half on each, race per message.
async fn replica_race(store: &str, label: &str, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let a = start(store, dir.path()).await;
    let b = start(store, dir.path()).await;
    let (ca, cb) = (client(&a.base), client(&b.base));
    let (mut unavailable, mut retried) = (0, 0);
    for trial in 0..n {
        let creator = if trial % 2 == 0 { &ca } else { &cb };
        // A store's own transient failure (503) is retried, and counted.
        let mut created = create(creator).await;
        while created.as_ref().err() == Some(&503) {
            unavailable += 1;
            created = create(creator).await;
        }
        let c = Arc::new(created.unwrap_or_else(|s| panic!("{label}: create {s}")));
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (c, barrier) = (c.clone(), barrier.clone());
            let opener = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            set.spawn(async move {
                barrier.wait().await;
                open(&opener, &c).await
            });
        }
        let (mut winners, mut failed) = (0, 0);
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                (200, Some(env)) => {
                    assert_eq!(env, c.envelope, "{label}: trial {trial}: wrong envelope");
                    winners += 1;
                }
                (404, None) => {}
                // The store failed this opener (moto, the S3 emulator, has
                // answered 500 under this load): it received nothing.
                (503, None) => failed += 1,
                other => panic!("{label}: trial {trial}: unexpected {:?}", other.0),
            }
        }
        unavailable += failed;
        if winners == 0 && failed > 0 {
            // Nobody won because the store failed: the message must still
            // be there, for exactly one more open.
            let (status, env) = open(&ca, &c).await;
            assert_eq!(
                (status, env.as_deref()),
                (200, Some(&c.envelope[..])),
                "{label}: trial {trial}: after {failed} store failures and no winner the message is gone"
            );
            retried += 1;
        } else {
            assert_eq!(
                winners, 1,
                "{label}: trial {trial}: {winners} openers received the message"
            );
        }
    }
    eprintln!(
        "{label}: {n} trials × 32 openers over 2 replicas: never more than one winner; \
         {retried} trials without a winner after store failures (message still there, opened once after); \
         {unavailable} answers 503 from store failures in all"
    );
    answer_race(&ca, &cb, label, (n / 10).max(5)).await;
}

/// Requests for a secret across the two replicas: 32 responders, half on
/// each, answer one request at once; exactly one answer is stored (the
/// others are told `already_answered`), and the asker reads that one, once.
async fn answer_race(ca: &otm_client::Client, cb: &otm_client::Client, label: &str, n: usize) {
    let mut unavailable = 0;
    for trial in 0..n {
        let asker = if trial % 2 == 0 { ca } else { cb };
        let asked = loop {
            match asker.ask(&AskOptions::new().note("race")).await {
                Ok(asked) => break asked,
                Err(e) if status_of(&e) == 503 => unavailable += 1,
                Err(e) => panic!("{label}: ask: {e}"),
            }
        };
        let link = Arc::new(asked.request_link);
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (link, barrier) = (link.clone(), barrier.clone());
            let responder = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            set.spawn(async move {
                barrier.wait().await;
                (i, responder.reply(&link, &format!("answer {i}")).await)
            });
        }
        let (mut winners, mut failed) = (Vec::new(), 0);
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                (i, Ok(_)) => winners.push(i),
                (_, Err(Error::AlreadyAnswered)) => {}
                (_, Err(e)) if status_of(&e) == 503 => failed += 1,
                (i, Err(e)) => panic!("{label}: trial {trial}: responder {i}: {e}"),
            }
        }
        unavailable += failed;
        assert!(
            winners.len() <= 1,
            "{label}: trial {trial}: {} answers stored",
            winners.len()
        );
        match asker.receive(&asked.receive_link, None).await {
            Ok(text) => {
                // An answer whose responder saw a store failure may still
                // have been stored; an acknowledged one is the one stored.
                if let [i] = winners[..] {
                    assert_eq!(
                        text.as_str(),
                        format!("answer {i}"),
                        "{label}: trial {trial}"
                    );
                }
            }
            Err(e) => assert!(
                winners.is_empty() && failed > 0,
                "{label}: trial {trial}: the acknowledged answer does not open: {e}"
            ),
        }
    }
    eprintln!(
        "{label}: {n} requests × 32 responders over 2 replicas: never more than one answer; \
         {unavailable} answers 503 from store failures"
    );
}

async fn reachable(what: &str, ok: bool) -> bool {
    if !ok {
        let _ = skip::<()>(&format!("{what} is unreachable"));
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_sqlite_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.sqlite3").display());
    replica_race(&url, "sqlite", trials(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_and_redis_cluster() {
    let url = otm_testkit::env::redis_url();
    let up = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_ok();
    if !reachable(&url, up).await {
        return;
    }
    // A private key prefix per run, as a store URL parameter; its keys are
    // deleted when the test ends.
    let keys = RedisPrefix::new("otm-rep-");
    let prefix = format!("?prefix={keys}");
    replica_race(&format!("{url}{prefix}"), "redis", trials(false)).await;
    let seeds = otm_testkit::env::redis_cluster_urls();
    let hosts: Vec<&str> = seeds
        .iter()
        .map(|s| s.trim_start_matches("redis://"))
        .collect();
    replica_race(
        &format!("redis+cluster://{}{prefix}", hosts.join(",")),
        "redis-cluster",
        trials(false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres() {
    let schema = PgSchema::new("otm_test_rep_");
    replica_race(&schema.store_url(), "postgres", trials(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_s3() {
    let endpoint = otm_testkit::env::s3_endpoint();
    if !reachable(
        &endpoint,
        reqwest::get(format!("{endpoint}/moto-api/")).await.is_ok(),
    )
    .await
    {
        return;
    }
    let url = format!(
        "s3://otm-test/rep-{}/?endpoint={endpoint}&create_bucket=true&allow_no_lifecycle=true",
        unique_suffix()
    );
    replica_race(&url, "s3", trials(true)).await;
}

/// Create→open cycles against a server from `tasks` clients until stopped,
/// counting every answer by request kind and status.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
    tally: Arc<Mutex<BTreeMap<String, u64>>>,
    /// How long each refused create (503) took to be answered.
    refusals: Arc<Mutex<Vec<Duration>>>,
}

impl Load {
    fn start(base: &str, tasks: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let refusals: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let mut set = tokio::task::JoinSet::new();
        let client = client(base);
        for _ in 0..tasks {
            let (client, stop, tally, refusals) = (
                client.clone(),
                stop.clone(),
                tally.clone(),
                refusals.clone(),
            );
            set.spawn(async move {
                let count = |what: String| *tally.lock().unwrap().entry(what).or_default() += 1;
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let created = create(&client).await;
                    if matches!(created, Err(503)) {
                        refusals.lock().unwrap().push(asked.elapsed());
                    }
                    match created {
                        Ok(c) => {
                            count("create 201".into());
                            count(format!("open {}", open(&client, &c).await.0));
                        }
                        Err(status) => {
                            count(format!("create {status}"));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            });
        }
        Load {
            stop,
            tasks: set,
            tally,
            refusals,
        }
    }

    fn count(&self, what: &str) -> u64 {
        self.tally.lock().unwrap().get(what).copied().unwrap_or(0)
    }

    /// Stops the clients; checks that every answer was one of `allowed`.
    async fn finish(mut self, label: &str, allowed: &[&str]) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(r) = self.tasks.join_next().await {
            r.expect("a load client failed (connection refused or reset?)");
        }
        let tally = std::mem::take(&mut *self.tally.lock().unwrap());
        let mut waits = std::mem::take(&mut *self.refusals.lock().unwrap());
        waits.sort();
        if let (Some(first), Some(last)) = (waits.first(), waits.last()) {
            eprintln!(
                "{label}: {} refused creates answered in {first:?} .. {last:?} (median {:?})",
                waits.len(),
                waits[waits.len() / 2]
            );
        }
        for (what, n) in &tally {
            assert!(
                allowed.contains(&what.as_str()),
                "{label}: {n} × {what} under load during the outage: {tally:?}"
            );
        }
        tally
    }
}

/// The answers while the store is down: 503 with a JSON error and
/// Retry-After for store work, alive but not ready.
async fn check_down(base: &str, before: &Created) {
    let client = client(base);
    let secrets = &before.secrets;
    match client
        .claim(&before.id, secrets.access_proof(), secrets.claim_proof())
        .await
    {
        Err(Error::Unavailable {
            code: Some(ErrorCode::StoreUnavailable),
            retry_after: Some(_),
            ..
        }) => {}
        other => panic!("an open while the store is down: {other:?}"),
    }
    assert_eq!(create(&client).await.err(), Some(503));
    let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 503);
}

/// One unlabelled sample from the server's /metrics.
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Waits for the server to serve a full cycle again after its store came
/// back (no restart); returns how long that took.
async fn await_recovery(base: &str, label: &str) -> Duration {
    let client = client(base);
    let back = Instant::now();
    let recovered = loop {
        if let Ok(c) = create(&client).await {
            break c;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "{label}: no recovery within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(open(&client, &recovered).await.0, 200);
    let took = back.elapsed();
    eprintln!("{label}: serving again {took:?} after the store returned");
    took
}

/// The outage drill on a running server: load running, store down, checks,
/// store up, recovery, load still fine.
async fn outage_drill(
    label: &str,
    base: &str,
    down: impl AsyncFnOnce(),
    up: impl AsyncFnOnce(),
    allowed: &[&str],
) {
    let before = create(&client(base))
        .await
        .expect("create while the store is up");
    let load = Load::start(base, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    down().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_down(base, &before).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The store kept failing: the breaker opened and refuses at once.
    assert!(
        metric(base, "otm_store_breaker_opened_total").await >= 1.0,
        "{label}: the store breaker never opened"
    );
    assert_eq!(metric(base, "otm_store_breaker_open").await, 1.0, "{label}");
    up().await;
    await_recovery(base, label).await;
    assert_eq!(
        metric(base, "otm_store_breaker_open").await,
        0.0,
        "{label}: the breaker is still open after recovery"
    );
    assert!(metric(base, "otm_store_breaker_refused_total").await > 0.0);
    let opened_before = load.count("open 200");
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.count("open 200") < opened_before + 50 {
        assert!(
            Instant::now() < deadline,
            "{label}: the load did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tally = load.finish(label, allowed).await;
    assert!(
        tally.get("create 503").is_some_and(|&n| n > 0),
        "{label}: the load never saw the outage: {tally:?}"
    );
    eprintln!("{label}: answers under load through the outage: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_and_the_server_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(redis) = RedisServer::start(port, dir.path()) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let start_at = Instant::now();
    while redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        assert!(start_at.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = start(&url, dir.path()).await;
    let redis = Mutex::new(Some(redis));
    // This Redis keeps nothing on disk: messages stored before the restart
    // are gone after it (404), which is Redis's durability, not otm's.
    outage_drill(
        "redis",
        &server.base,
        async || drop(redis.lock().unwrap().take()),
        async || *redis.lock().unwrap() = RedisServer::start(port, dir.path()),
        &[
            "create 201",
            "create 503",
            "open 200",
            "open 503",
            "open 404",
        ],
    )
    .await;
}

/// After a crash: every message acknowledged before it (at least 50 of
/// them, or the test proves little) opens once, with its envelope, and
/// never again.
async fn open_each_exactly_once(base: &str, acked: &Mutex<Vec<Created>>, label: &str) {
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() > 50,
        "{label}: only {} creates before the crash",
        acked.len()
    );
    let client = client(base);
    for c in &acked {
        let (status, env) = open(&client, c).await;
        assert_eq!(
            status, 200,
            "{label}: message {} acknowledged before the crash is lost",
            c.id
        );
        assert_eq!(env.unwrap(), c.envelope);
        assert_eq!(open(&client, c).await.0, 404);
    }
    eprintln!(
        "{label}: {} acknowledged messages survived and opened exactly once",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_503_and_the_server_recovers_by_itself() {
    let Some(pg) = PrivatePostgres::init() else {
        return;
    };
    let pg = tokio::sync::Mutex::new(pg);
    pg.lock().await.start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&pg.lock().await.url(), dir.path()).await;
    // PostgreSQL keeps what it committed: no message is lost (no 404).
    outage_drill(
        "postgres",
        &server.base,
        async || pg.lock().await.stop().await,
        async || pg.lock().await.start().await,
        &["create 201", "create 503", "open 200", "open 503"],
    )
    .await;
}

/// `n` clients creating messages as fast as they can, keeping every
/// acknowledged one in `acked`, each until its first refusal; each returns
/// the status of that refusal (0: no HTTP answer).
fn spawn_creators(
    base: &str,
    n: usize,
    acked: &Arc<Mutex<Vec<Created>>>,
) -> tokio::task::JoinSet<u16> {
    let client = client(base);
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, acked) = (client.clone(), acked.clone());
        creators.spawn(async move {
            loop {
                match create(&client).await {
                    Ok(c) => acked.lock().unwrap().push(c),
                    Err(status) => return status,
                }
            }
        });
    }
    creators
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_postgres_loses_no_acknowledged_message() {
    let Some(mut pg) = PrivatePostgres::init() else {
        return;
    };
    pg.start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&pg.url(), dir.path()).await;
    let acked: Arc<Mutex<Vec<Created>>> = Arc::default();
    let mut creators = spawn_creators(&server.base, 16, &acked);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.kill_9();
    // Until the store died under them: then every answer must be 503.
    while let Some(r) = creators.join_next().await {
        assert_eq!(
            r.unwrap(),
            503,
            "a create in flight during the crash got this status"
        );
    }
    // Crash recovery, then the same server process carries on.
    pg.start().await;
    await_recovery(&server.base, "postgres after kill -9").await;
    open_each_exactly_once(
        &server.base,
        &acked,
        "postgres (kill -9 of every PostgreSQL process)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.sqlite3").display());
    let server = start(&url, dir.path()).await;
    let acked: Arc<Mutex<Vec<Created>>> = Arc::default();
    // Until the server dies: connection errors end each loop.
    let mut creators = spawn_creators(&server.base, 16, &acked);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.process.signal("KILL");
    while creators.join_next().await.is_some() {}
    drop(server);
    let server = start(&url, dir.path()).await;
    open_each_exactly_once(&server.base, &acked, "sqlite (kill -9 of otm-server)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite_loses_no_acknowledged_answer() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("answers.sqlite3").display());
    let server = start(&url, dir.path()).await;
    // Enough requests that answering is still in full flow when the
    // server dies (it dies once 100 answers are acknowledged).
    let mut asking = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let asker = client(&server.base);
        asking.spawn(async move {
            let mut asked = Vec::new();
            for _ in 0..125 {
                asked.push(asker.ask(&AskOptions::new().note("crash")).await.unwrap());
            }
            asked
        });
    }
    let mut asked = Vec::new();
    while let Some(batch) = asking.join_next().await {
        asked.extend(batch.unwrap());
    }
    let links: Arc<Vec<_>> = Arc::new(asked.iter().map(|a| a.request_link.clone()).collect());
    // Two responders per request, racing, request after request, until the
    // server dies under them.
    let acked: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut responders = tokio::task::JoinSet::new();
    for r in 0..8 {
        let (links, acked, stop) = (links.clone(), acked.clone(), stop.clone());
        let responder = client(&server.base);
        responders.spawn(async move {
            // Responders r and r + 4 share each request.
            let mut i = r % 4;
            while i < links.len() && !stop.load(Ordering::Relaxed) {
                let text = format!("answer {i} from {r}");
                match responder.reply(&links[i], &text).await {
                    Ok(_) => {
                        let before = acked.lock().unwrap().insert(i, text);
                        assert!(before.is_none(), "request {i}: two answers acknowledged");
                    }
                    Err(Error::AlreadyAnswered) => {}
                    Err(_) => return,
                }
                i += 4;
            }
        });
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "answers stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.process.signal("KILL");
    stop.store(true, Ordering::Relaxed);
    while responders.join_next().await.is_some() {}
    drop(server);
    let server = start(&url, dir.path()).await;
    let asker = client(&server.base);
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no answer was acknowledged before the crash"
    );
    let mut answered_unacked = 0;
    for (i, a) in asked.iter().enumerate() {
        let status = asker.request_status(&a.receive_link).await.unwrap();
        match (acked.get(&i), asker.receive(&a.receive_link, None).await) {
            (Some(text), Ok(got)) => assert_eq!(got.as_str(), text, "request {i}"),
            (Some(_), Err(e)) => panic!("request {i}: an acknowledged answer is lost: {e}"),
            (None, Ok(_)) => answered_unacked += 1,
            (None, Err(Error::Gone)) => assert_eq!(
                status.state,
                otm_core::api::RequestState::Waiting,
                "request {i}: answered but nothing to open"
            ),
            (None, Err(e)) => panic!("request {i}: {e}"),
        }
    }
    eprintln!(
        "sqlite (kill -9 with answers in flight): {} acknowledged answers all open once; \
         {answered_unacked} answers stored whose reply the crash cut off",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite_leaves_groups_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let server = start(&url, dir.path()).await;
    // Eight senders each send one text to three people, group after group,
    // until the server dies under them (once 60 groups are acknowledged).
    let acked: Arc<Mutex<Vec<(String, otm_core::SentGroup)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..8 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let sender = client(&server.base);
        senders.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("group {n} of sender {s}");
                let labels = [Some("a"), Some("b"), None];
                match sender
                    .send_group(&text, &labels, &otm_core::SendOptions::new())
                    .await
                {
                    Ok(sent) => acked.lock().unwrap().push((text, sent)),
                    Err(_) => return,
                }
                n += 1;
            }
        });
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 60 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "groups stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.process.signal("KILL");
    stop.store(true, Ordering::Relaxed);
    while senders.join_next().await.is_some() {}
    drop(server);
    let server = start(&url, dir.path()).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    // Every message stored belongs to a whole group: nothing but groups of
    // three was created, so a part of one would leave a count that is not
    // a multiple of three.
    let pool = otm_store::sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let stored: i64 = otm_store::sqlx::query_scalar("SELECT COUNT(*) FROM otm_messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        stored % 3,
        0,
        "{stored} messages: a group was cut into parts"
    );
    assert!(
        stored >= 3 * acked.len() as i64,
        "acknowledged groups are lost"
    );

    // Every acknowledged group is whole: each link opens once, with its text.
    let reader = client(&server.base);
    for (text, sent) in &acked {
        let states = reader.group_status(&sent.group_link).await.unwrap();
        assert!(
            states.iter().all(|s| s
                .as_ref()
                .is_some_and(|r| r.state == otm_core::api::MessageState::Waiting)),
            "{text}: {states:?}"
        );
        for link in &sent.links {
            assert_eq!(reader.open(link, None).await.unwrap().as_str(), text);
        }
    }
    eprintln!(
        "sqlite (kill -9 with groups in flight): {} acknowledged groups all whole; {} messages \
         stored in groups of three ({} groups whose answer the crash cut off)",
        acked.len(),
        stored,
        stored / 3 - acked.len() as i64
    );
}
