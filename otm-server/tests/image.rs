//! The container image (`Containerfile`, `scripts/image`), built with
//! podman from this build's `otm-server` and run: against SQLite in a named
//! volume (as UID 65532, root file system read-only), where a message sent
//! with the `otm` CLI outlives a restart of the container and then opens
//! exactly once; against the host's Redis; with the image's own health
//! check; and stopped by SIGTERM, which ends the server cleanly (exit 0)
//! well before podman would resort to SIGKILL. Also `compose.yaml`, checked
//! by podman-compose where it is installed (scripts/services installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use otm_testkit::process::output_with_input;
use otm_testkit::{free_port, skip, unique_suffix, RedisPrefix};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("podman runs")
}

/// `podman args…`, which must succeed; its stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The `otm` CLI of this build: beside `otm-server` when the workspace was
/// built, else built now.
fn otm_cli() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_otm-server"));
    let cli = server.with_file_name("otm");
    if !cli.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "otm-cli", "--bin", "otm"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p otm-cli failed");
    }
    cli
}

fn otm(args: &[&str], stdin: Option<&str>) -> Output {
    output_with_input(
        Command::new(otm_cli()).args(args).env_remove("OTM_SERVER"),
        stdin,
    )
}

/// Removes what the test made, whatever happens.
struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", c]);
        }
        for v in &self.volumes {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

/// Starts a container of `image` named `name` on the host network (the
/// server on 127.0.0.1:`port`, its admin listener on a free port of its
/// own), root file system read-only, with `extra` arguments, and waits for
/// its /healthz on the admin listener. The operator endpoints (but the
/// liveness answer) are not on the public port.
async fn run(image: &str, name: &str, port: u16, extra: &[&str]) {
    let listen = format!("OTM_LISTEN=127.0.0.1:{port}");
    let admin_port = free_port();
    let admin = format!("OTM_ADMIN_LISTEN=127.0.0.1:{admin_port}");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "-e",
        &listen,
        "-e",
        &admin,
    ];
    args.extend_from_slice(extra);
    args.push(image);
    podman_ok(&args);
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{admin_port}/healthz");
    loop {
        if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "{name} never answered /healthz: {}",
                text(&podman(&["logs", name]))
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for private in ["metrics", "readyz"] {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/{private}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "/{private} on the public port");
    }
}

/// `otm send` through the container on `port`: the link.
fn send(port: u16, message: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let out = otm(
        &["send", "--server", &base, "--ttl", "1h", "--json"],
        Some(message),
    );
    assert!(out.status.success(), "otm send: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["link"].as_str().unwrap().to_owned()
}

/// Stops `name` the way podman does (the image's STOPSIGNAL, SIGTERM, then
/// SIGKILL after 20 s) and checks the server ended by itself: exit code 0,
/// its clean-shutdown line logged, long before the SIGKILL.
fn stop_gracefully(name: &str) {
    let start = Instant::now();
    podman_ok(&["stop", "-t", "20", name]);
    let took = start.elapsed();
    let code = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", name]);
    let logs = text(&podman(&["logs", name]));
    assert_eq!(code, "0", "{name} exit code after SIGTERM; log:\n{logs}");
    assert!(logs.contains("shut down cleanly"), "{logs}");
    assert!(
        took < Duration::from_secs(15),
        "stopping {name} took {took:?}"
    );
}

/// The capability number of CAP_SYS_RESOURCE (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process holds capability `cap` (its effective set, from
/// `/proc/self/status`).
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|set| set & (1 << cap) != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_on_sqlite_and_redis_and_stops_on_sigterm() {
    if !Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return skip("podman is not installed (scripts/services installs it)").unwrap_or(());
    }
    // runc sets each container's resource limits (open files, processes)
    // with prlimit, which needs CAP_SYS_RESOURCE: a sandbox that drops it
    // cannot start any container ("error setting rlimit type 7: operation
    // not permitted"), whatever the image. That is the machine's limit, not
    // a missing service the scripts could start, so it skips even in CI,
    // saying why.
    if !has_capability(CAP_SYS_RESOURCE) {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: this process lacks CAP_SYS_RESOURCE, without which runc cannot start a container"
        );
        return;
    }
    let suffix = unique_suffix().to_lowercase();
    let image = format!("localhost/otm-server-test:{suffix}");
    let (first, second, redis) = (
        format!("otm-test-a-{suffix}"),
        format!("otm-test-b-{suffix}"),
        format!("otm-test-r-{suffix}"),
    );
    let volume = format!("otm-test-{suffix}");
    // The host Redis's keys go last, after the containers.
    let keys = RedisPrefix::new("otm-image-");
    let _cleanup = Cleanup {
        containers: vec![first.clone(), second.clone(), redis.clone()],
        volumes: vec![volume.clone()],
        image: image.clone(),
    };

    // Built from this build's binary by the published recipe's runtime stage.
    let built = Command::new(workspace().join("scripts/image"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_otm-server"),
            "--tag",
            &image,
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(built.status.success(), "scripts/image: {}", text(&built));
    println!("{}", String::from_utf8_lossy(&built.stdout).trim());
    let config = podman_ok(&[
        "image", "inspect", "--format",
        "{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Volumes}} {{json .Config.Healthcheck.Test}}",
        &image,
    ]);
    assert!(config.starts_with("65532:65532 SIGTERM "), "{config}");
    assert!(config.contains("\"/data\""), "{config}");
    assert!(config.contains("otm-server\",\"healthcheck\""), "{config}");
    // Operator endpoints (live counters) are private by default: on an
    // admin listener that only the container itself reaches.
    let env = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &image,
    ]);
    assert!(env.contains("OTM_ADMIN_LISTEN=127.0.0.1:9090"), "{env}");

    // SQLite (the image's default store) in a named volume.
    let port = free_port();
    let mount = format!("{volume}:/data");
    run(&image, &first, port, &["-v", &mount]).await;
    let user = podman_ok(&["top", &first, "huser"]);
    assert!(
        user.lines().skip(1).all(|u| u.trim() == "65532"),
        "runs as {user}"
    );
    let health = podman(&["healthcheck", "run", &first]);
    assert!(health.status.success(), "healthcheck: {}", text(&health));
    let message = format!("through the container {suffix}\nline two");
    let link = send(port, &message);
    stop_gracefully(&first);
    // Server down: the image's health check says so.
    let down = podman(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        &format!("OTM_LISTEN=127.0.0.1:{port}"),
        "-e",
        &format!("OTM_ADMIN_LISTEN=127.0.0.1:{port}"),
        &image,
        "healthcheck",
        "--timeout",
        "1s",
    ]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(text(&down).contains("unhealthy"), "{}", text(&down));

    // A new container on the same volume still has the message; it opens once.
    run(&image, &second, port, &["-v", &mount]).await;
    let opened = otm(&["open", &link], None);
    assert!(opened.status.success(), "otm open: {}", text(&opened));
    assert_eq!(String::from_utf8_lossy(&opened.stdout), message);
    let again = otm(&["open", &link], None);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    stop_gracefully(&second);

    // The host's Redis.
    let store = format!("OTM_STORE={}?prefix={keys}", otm_testkit::env::redis_url());
    let port = free_port();
    run(&image, &redis, port, &["-e", &store]).await;
    let link = send(port, "kept in Redis");
    let opened = otm(&["open", &link], None);
    assert!(opened.status.success(), "otm open: {}", text(&opened));
    assert_eq!(String::from_utf8_lossy(&opened.stdout), "kept in Redis");
    let logs = text(&podman(&["logs", &redis]));
    assert!(
        logs.contains("store=\"redis\"") || logs.contains("store=redis"),
        "{logs}"
    );
    stop_gracefully(&redis);
}

#[test]
fn compose_file_is_valid_and_names_real_settings() {
    let compose = workspace().join("compose.yaml");
    let yaml = std::fs::read_to_string(&compose).unwrap();
    // Every OTM_ variable it sets is one otm-server reads.
    let help = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in yaml
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("OTM_"))
    {
        assert!(
            help.contains(&format!("[env: {name}")),
            "compose.yaml sets {name}, which otm-server does not read"
        );
    }
    let Ok(tool) = std::env::var("OTM_PODMAN_COMPOSE") else {
        return skip("podman-compose is not installed (scripts/services installs it)")
            .unwrap_or(());
    };
    let out = Command::new(tool)
        .args(["-f"])
        .arg(&compose)
        .arg("config")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman-compose config: {}",
        text(&out)
    );
    let config = String::from_utf8_lossy(&out.stdout);
    for expected in ["otm:", "redis:", "healthcheck", "OTM_STORE"] {
        assert!(
            config.contains(expected),
            "{expected} missing from:\n{config}"
        );
    }
}
