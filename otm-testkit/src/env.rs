//! Which services the tests talk to, and the one skip rule: a test whose
//! service is unreachable prints `SKIPPED: <reason>` and passes on a
//! developer's machine, and fails when `CI` or `OTM_REQUIRE_SERVICES` is set.

/// Whether a missing service must fail the run: when `OTM_REQUIRE_SERVICES`
/// or `CI` is set to anything but `0`/`false`.
pub fn services_required() -> bool {
    ["OTM_REQUIRE_SERVICES", "CI"].iter().any(|var| flag(var))
}

/// Whether the environment variable `var` is set to anything but
/// empty, `0` or `false`.
pub fn flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports an unreachable service: panics when services are required,
/// otherwise prints the reason and returns `None` so the test is skipped.
pub fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        !services_required(),
        "required service unavailable (OTM_REQUIRE_SERVICES/CI is set): {reason}"
    );
    // Written to the real stderr, past the test harness's capture, so the
    // reason shows even though the test counts as passed.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {reason} (set OTM_REQUIRE_SERVICES=1 to make this a failure)"
    );
    None
}

/// The value of an environment variable, or `default`.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A random suffix (128 bits from the OS, lowercase `[a-z0-9_]`) for
/// prefixes, schema names and files, so concurrent test runs never share
/// data.
pub fn unique_suffix() -> String {
    otm_core::MessageId::generate()
        .expect("OS random number generator")
        .to_string()
        .to_ascii_lowercase()
        .replace('-', "_")
}

/// The shared PostgreSQL (`OTM_TEST_POSTGRES_URL`).
pub fn postgres_url() -> String {
    env_or(
        "OTM_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// The shared standalone Redis (`OTM_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    env_or("OTM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// The Redis Cluster's seed nodes (`OTM_TEST_REDIS_CLUSTER_URLS`,
/// comma-separated `redis://` URLs).
pub fn redis_cluster_urls() -> Vec<String> {
    env_or(
        "OTM_TEST_REDIS_CLUSTER_URLS",
        "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103",
    )
    .split(',')
    .map(str::to_owned)
    .collect()
}

/// The S3 API server (`OTM_TEST_S3_ENDPOINT`; moto, started by
/// `scripts/services`).
pub fn s3_endpoint() -> String {
    env_or("OTM_TEST_S3_ENDPOINT", "http://127.0.0.1:9100")
}
