//! put + take cycles per backend at 1, 8 and 64 concurrent tasks, with the
//! raw client doing the same work beside it (Redis `SET PX` + `GETDEL`;
//! PostgreSQL `INSERT` + `DELETE … RETURNING`), so otm's overhead is a ratio.
//! Each criterion "iteration" is one cycle; with concurrency c the time per
//! iteration is wall time / cycles, i.e. 1 / throughput.
//!
//! `probe/<backend>` times, one at a time, an open with a wrong access proof
//! of a live message (the largest envelope) against an open of an ID that
//! was never stored: both must answer `NotFound` at about the same cost, or
//! timing would tell a prober that the ID exists (FORMAT.md §13).
//!
//! `rate/<backend>` times the store-side rate limit (`RateCounter`, what
//! `--shared-rate-limits` adds to every limited request): one admitted
//! count at 1 and 8 concurrent tasks, over 1,000 clients' buckets.
//!
//! Servers come from the same environment variables as the tests; a missing
//! server skips its benches. `OTM_BENCH_LARGE=1` adds take latency with 10k
//! and 1M stored messages (Redis, PostgreSQL; takes minutes to fill). What
//! the benches store in PostgreSQL and Redis is removed when they end, also
//! when one panics (otm-testkit's `PgSchema` and `RedisPrefix` guards).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use otm_store::conformance::Fixture;
use otm_store::redis::AsyncCommands;
use otm_store::{
    BlobStore, MemoryStore, PostgresConfig, PostgresStore, RedisConfig, RedisStore, S3Config,
    S3Store, SqliteConfig, SqliteStore,
};
use otm_testkit::{unique_suffix, PgSchema, RedisPrefix};

const CONCURRENCY: [usize; 3] = [1, 8, 64];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `work(i)` for i in 0..n on `c` concurrent tasks; returns wall time.
async fn run<F, Fut>(n: usize, c: usize, work: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..c.min(n.max(1)))
        .map(|_| {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    work(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn BlobStore>,
    levels: &[usize],
) {
    bench_probe(c, rt, name, &store);
    bench_rate(c, rt, name, &store);
    let mut group = c.benchmark_group(format!("cycle/{name}"));
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for &conc in levels {
        let store = store.clone();
        group.bench_function(BenchmarkId::new("otm_put_take", conc), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    let fixtures: Arc<Vec<Fixture>> =
                        Arc::new((0..iters).map(|_| Fixture::hour()).collect());
                    run(iters as usize, conc, move |i| {
                        let (store, fixtures) = (store.clone(), fixtures.clone());
                        async move {
                            let f = &fixtures[i];
                            store.put(&f.id, f.message.clone()).await.unwrap();
                            store.take(&f.id, f.access(), f.proof()).await.unwrap();
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
}

fn bench_raw_redis(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    let client = otm_store::redis::Client::open(url).unwrap();
    let Ok(conn) = rt.block_on(client.get_multiplexed_async_connection()) else {
        return;
    };
    let envelope = Arc::new(Fixture::hour().message.envelope);
    let keys = RedisPrefix::new("otm-bench-raw-");
    let prefix = keys.to_string();
    let mut group = c.benchmark_group("cycle/redis");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for conc in CONCURRENCY {
        let (conn, envelope, prefix) = (conn.clone(), envelope.clone(), prefix.clone());
        group.bench_function(BenchmarkId::new("raw_set_getdel", conc), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (conn, envelope, prefix) = (conn.clone(), envelope.clone(), prefix.clone());
                async move {
                    run(iters as usize, conc, move |i| {
                        let (mut conn, envelope, key) = (
                            conn.clone(),
                            envelope.clone(),
                            format!("{prefix}{i}-{}", unique_suffix()),
                        );
                        async move {
                            let _: () = conn
                                .pset_ex(&key, envelope.as_slice(), 3_600_000)
                                .await
                                .unwrap();
                            let got: Vec<u8> = conn.get_del(&key).await.unwrap();
                            assert_eq!(got.len(), envelope.len());
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
}

fn bench_raw_postgres(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    use otm_store::sqlx;
    let Ok(pool) = rt.block_on(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(url),
    ) else {
        return;
    };
    // The table in a schema of its own, dropped with it at the end.
    let schema = PgSchema::new("otm_test_bench_raw_");
    rt.block_on(sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&pool))
        .unwrap();
    let table = format!("\"{schema}\".cycle");
    rt.block_on(sqlx::query(&format!(
        "CREATE TABLE {table} (id BYTEA PRIMARY KEY, envelope BYTEA NOT NULL, verifier BYTEA NOT NULL, expires_at_ms BIGINT NOT NULL)"
    )).execute(&pool)).unwrap();
    let envelope = Arc::new(Fixture::hour().message.envelope);
    let mut group = c.benchmark_group("cycle/postgres");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for conc in CONCURRENCY {
        let (pool, envelope, table) = (pool.clone(), envelope.clone(), table.clone());
        group.bench_function(BenchmarkId::new("raw_insert_delete_returning", conc), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (pool, envelope, table) = (pool.clone(), envelope.clone(), table.clone());
                async move {
                    let insert = Arc::new(format!("INSERT INTO {table} VALUES ($1, $2, $3, $4)"));
                    let delete = Arc::new(format!(
                        "DELETE FROM {table} WHERE id = $1 AND verifier = $2 RETURNING envelope"
                    ));
                    run(iters as usize, conc, move |_| {
                        let (pool, envelope, insert, delete) = (
                            pool.clone(),
                            envelope.clone(),
                            insert.clone(),
                            delete.clone(),
                        );
                        async move {
                            let id = otm_core::MessageId::generate().unwrap();
                            sqlx::query(&insert)
                                .bind(&id.as_bytes()[..])
                                .bind(envelope.as_slice())
                                .bind(&[7u8; 32][..])
                                .bind(i64::MAX)
                                .execute(&pool)
                                .await
                                .unwrap();
                            let got: Vec<u8> = sqlx::query_scalar(&delete)
                                .bind(&id.as_bytes()[..])
                                .bind(&[7u8; 32][..])
                                .fetch_one(&pool)
                                .await
                                .unwrap();
                            assert_eq!(got.len(), envelope.len());
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
    // Closed before the schema guard drops the table.
    rt.block_on(pool.close());
}

/// Take latency (one put + take, concurrency 1) with `n` messages already stored.
fn bench_backlog(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn BlobStore>,
    fill: &dyn Fn(usize),
) {
    let mut group = c.benchmark_group(format!("backlog/{name}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for n in [10_000usize, 1_000_000] {
        fill(n);
        let store = store.clone();
        group.bench_function(BenchmarkId::new("put_take_with_stored", n), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    let fixtures: Vec<Fixture> = (0..iters).map(|_| Fixture::hour()).collect();
                    let start = Instant::now();
                    for f in &fixtures {
                        store.put(&f.id, f.message.clone()).await.unwrap();
                        store.take(&f.id, f.access(), f.proof()).await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
    }
    group.finish();
}

/// Admitted counts of the store's rate limit, spread over 1,000 keys.
fn bench_rate(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &Arc<dyn BlobStore>,
) {
    if store.rates().is_none() {
        return;
    }
    let mut group = c.benchmark_group(format!("rate/{name}"));
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let run_id = unique_suffix();
    for conc in [1, 8] {
        let (store, run_id) = (store.clone(), run_id.clone());
        group.bench_function(BenchmarkId::new("count_admitted", conc), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, run_id) = (store.clone(), run_id.clone());
                async move {
                    run(iters as usize, conc, move |i| {
                        let store = store.clone();
                        let key = format!("open:bench-{run_id}-{}", i % 1000);
                        async move {
                            let rates = store.rates().expect("declared");
                            let wait = rates
                                .count_rate(&key, u32::MAX, Duration::from_millis(1))
                                .await
                                .unwrap();
                            assert_eq!(wait, None);
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
}

/// Wrong-access opens of a live message against opens of an unknown ID.
fn bench_probe(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &Arc<dyn BlobStore>,
) {
    let mut group = c.benchmark_group(format!("probe/{name}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let live = Fixture::new(&"x".repeat(8000), Duration::from_secs(3600));
    rt.block_on(store.put(&live.id, live.message.clone()))
        .unwrap();
    let wrong = Arc::new(otm_store::conformance::wrong_proof());
    let unknown = Fixture::hour();
    for (what, id) in [("wrong_access_live", live.id), ("unknown_id", unknown.id)] {
        let (store, wrong) = (store.clone(), wrong.clone());
        group.bench_function(what, |b| {
            b.to_async(rt).iter(|| {
                let (store, wrong) = (store.clone(), wrong.clone());
                async move {
                    let r = store
                        .take(&id, wrong.access_proof(), wrong.claim_proof())
                        .await;
                    assert!(matches!(r, Err(otm_store::StoreError::NotFound)), "{r:?}");
                }
            })
        });
    }
    group.finish();
    // The live message was never counted against nor taken.
    rt.block_on(store.take(&live.id, live.access(), live.proof()))
        .unwrap();
}

fn stores(c: &mut Criterion) {
    let rt = runtime();
    bench_store(
        c,
        &rt,
        "memory",
        Arc::new(MemoryStore::new(Default::default())),
        &CONCURRENCY,
    );

    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::connect(SqliteConfig::new(
            dir.path().join("bench.sqlite3"),
        )))
        .unwrap();
    bench_store(c, &rt, "sqlite", Arc::new(sqlite), &CONCURRENCY);

    let redis_url = otm_testkit::env::redis_url();
    let prefix = RedisPrefix::new("otm-bench-");
    if let Ok(store) = rt.block_on(RedisStore::connect(
        RedisConfig::standalone(&redis_url).with_key_prefix(prefix.as_str()),
    )) {
        bench_store(c, &rt, "redis", Arc::new(store), &CONCURRENCY);
        bench_raw_redis(c, &rt, &redis_url);
    } else {
        eprintln!("SKIPPED: Redis benches (no server at {redis_url})");
    }
    let seeds: Vec<String> = otm_testkit::env::redis_cluster_urls()
        .join(",")
        .split(',')
        .map(str::to_owned)
        .collect();
    if let Ok(store) = rt.block_on(RedisStore::connect(
        RedisConfig::cluster(seeds).with_key_prefix(prefix.as_str()),
    )) {
        bench_store(c, &rt, "redis_cluster", Arc::new(store), &CONCURRENCY);
    }

    let pg_url = otm_testkit::env::postgres_url();
    let schema = PgSchema::new("otm_test_bench_");
    if let Ok(store) = rt.block_on(PostgresStore::connect(
        PostgresConfig::new(&pg_url).with_schema(schema.name()),
    )) {
        bench_store(c, &rt, "postgres", Arc::new(store), &CONCURRENCY);
        bench_raw_postgres(c, &rt, &pg_url);
    } else {
        eprintln!("SKIPPED: PostgreSQL benches (no server at {pg_url})");
    }

    let s3_endpoint = otm_testkit::env::s3_endpoint();
    let s3 = S3Config::new("otm-test", format!("bench-{}/", unique_suffix()))
        .with_allow_no_lifecycle(true)
        .with_endpoint(&s3_endpoint)
        .with_create_bucket(true)
        .with_static_credentials("otm-test", "otm-test");
    if let Ok(store) = rt.block_on(S3Store::connect(s3)) {
        // An emulator (moto), not AWS: a functional figure, not a prediction.
        bench_store(c, &rt, "s3_moto", Arc::new(store), &[1, 8]);
    }

    if std::env::var_os("OTM_BENCH_LARGE").is_some() {
        large(c, &rt, &redis_url, &pg_url);
    }
}

fn large(c: &mut Criterion, rt: &tokio::runtime::Runtime, redis_url: &str, pg_url: &str) {
    use otm_store::sqlx;
    let schema = PgSchema::new("otm_test_large_");
    if let Ok(store) = rt.block_on(PostgresStore::connect(
        PostgresConfig::new(pg_url).with_schema(schema.name()),
    )) {
        let table = store.table().to_owned();
        let pool = store.pool().clone();
        let filled = std::sync::Mutex::new(0usize);
        let fill = |n: usize| {
            let mut have = filled.lock().unwrap();
            let sql = format!(
                "INSERT INTO {table} (id, envelope, verifier, expires_at_ms, failed_attempts)
                 SELECT decode(md5('fill' || i::text), 'hex'), decode(repeat('ab', 289), 'hex'), decode(md5(i::text), 'hex') || decode(md5(i::text), 'hex'), 9000000000000, 0
                 FROM generate_series($1::bigint, $2::bigint) AS i"
            );
            // In chunks: the store's pool has a 5 s statement timeout.
            for from in (*have..n).step_by(100_000) {
                let to = (from + 100_000).min(n);
                rt.block_on(
                    sqlx::query(&sql)
                        .bind(from as i64 + 1)
                        .bind(to as i64)
                        .execute(&pool),
                )
                .unwrap();
            }
            rt.block_on(sqlx::query(&format!("ANALYZE {table}")).execute(&pool))
                .unwrap();
            *have = n;
        };
        bench_backlog(c, rt, "postgres", Arc::new(store), &fill);
    }
    let prefix = RedisPrefix::new("otm-bench-large-");
    if let Ok(store) = rt.block_on(RedisStore::connect(
        RedisConfig::standalone(redis_url).with_key_prefix(prefix.as_str()),
    )) {
        let client = otm_store::redis::Client::open(redis_url).unwrap();
        let filled = std::sync::Mutex::new(0usize);
        let fill = |n: usize| {
            let mut have = filled.lock().unwrap();
            let mut conn = rt
                .block_on(client.get_multiplexed_async_connection())
                .unwrap();
            let envelope = vec![0xABu8; 289];
            for chunk_start in (*have..n).step_by(10_000) {
                let mut pipe = otm_store::redis::pipe();
                for i in chunk_start..(chunk_start + 10_000).min(n) {
                    pipe.cmd("HSET")
                        .arg(format!("{prefix}{{fill{i}}}"))
                        .arg("e")
                        .arg(&envelope)
                        .arg("v")
                        .arg(&[7u8; 32][..])
                        .ignore();
                    pipe.cmd("PEXPIRE")
                        .arg(format!("{prefix}{{fill{i}}}"))
                        .arg(3_600_000)
                        .ignore();
                }
                let _: () = rt.block_on(pipe.query_async(&mut conn)).unwrap();
            }
            *have = n;
        };
        bench_backlog(c, rt, "redis", Arc::new(store), &fill);
    }
}

#[allow(missing_docs)] // the macro generates an undocumented pub fn
mod group {
    use super::*;
    criterion_group!(benches, stores);
}
use group::benches;
criterion_main!(benches);
