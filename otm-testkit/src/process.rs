//! Processes the tests run: free ports, a kill-on-drop guard, and private
//! redis-server, PostgreSQL and otm-server processes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::skip;

/// A loopback port the OS just handed out and released: free, unlike a
/// guessed one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs `command` to its end with `input` on its standard input (closed
/// at once when `None`) and its output captured. A command that exits
/// before reading its input is no error here: its status tells the test.
pub fn output_with_input(command: &mut Command, input: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    if let Some(text) = input {
        let _ = stdin.write_all(text.as_bytes());
    }
    drop(stdin);
    child.wait_with_output().expect("the command's output")
}

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Process(Child);

impl Process {
    /// Spawns `command`.
    pub fn spawn(mut command: Command) -> std::io::Result<Process> {
        command.spawn().map(Process)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The child itself (for its piped output or `try_wait`).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.0
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGTERM, then waits up to `limit` for the exit (panics after it):
    /// the exit code and whatever the process wrote to its piped stdout
    /// and stderr.
    pub fn terminate(&mut self, limit: Duration) -> (Option<i32>, String) {
        self.signal("TERM");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "no exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_string(&mut log);
        }
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_string(&mut log);
        }
        (status.code(), log)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` until something accepts TCP connections on
/// 127.0.0.1:`port`; whether it did.
pub async fn wait_for_port(port: u16, limit: Duration) -> bool {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// A private `redis-server` (no persistence) on 127.0.0.1, killed when
/// dropped: for tests that stop and restart Redis under a running client.
#[derive(Debug)]
pub struct RedisServer {
    _process: Process,
    port: u16,
    tls: bool,
}

impl RedisServer {
    /// Starts one on `port` with `dir` as its working directory (it does not
    /// wait for it to listen), or [`skip`]s when `redis-server` cannot run.
    pub fn start(port: u16, dir: &Path) -> Option<RedisServer> {
        Self::start_with(port, dir, &["--port".into(), port.to_string()], false)
    }

    /// Starts one that speaks TLS only, on `port`, with the server
    /// certificate of `certs` (client certificates not asked for), plus
    /// `extra` arguments (such as the cluster settings).
    pub fn start_tls(
        port: u16,
        dir: &Path,
        certs: &crate::TestCerts,
        extra: &[String],
    ) -> Option<RedisServer> {
        let path = |p: &Path| p.display().to_string();
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path(&certs.server_cert),
            "--tls-key-file",
            &path(&certs.server_key),
            "--tls-ca-cert-file",
            &path(&certs.ca),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from)
        .to_vec();
        args.extend_from_slice(extra);
        Self::start_with(port, dir, &args, true)
    }

    fn start_with(port: u16, dir: &Path, args: &[String], tls: bool) -> Option<RedisServer> {
        let mut command = Command::new("redis-server");
        command
            .args(args)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match Process::spawn(command) {
            Ok(process) => Some(RedisServer {
                _process: process,
                port,
                tls,
            }),
            Err(e) => skip(&format!("cannot run redis-server: {e}")),
        }
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` (the name on
    /// the test certificate) for a TLS server.
    pub fn url(&self) -> String {
        match self.tls {
            false => format!("redis://127.0.0.1:{}", self.port),
            true => format!("rediss://localhost:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A running `otm-server` on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct OtmServer {
    /// The process.
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl OtmServer {
    /// The command that runs `binary` (a test's
    /// `env!("CARGO_BIN_EXE_otm-server")`) on 127.0.0.1:`port` in `dir`,
    /// with the test S3 credentials in its environment.
    pub fn command(binary: &str, port: u16, dir: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .env("AWS_ACCESS_KEY_ID", "otm-test")
            .env("AWS_SECRET_ACCESS_KEY", "otm-test")
            .env("AWS_REGION", "us-east-1");
        command
    }

    /// Starts `binary` on `store` in `dir` with `extra` flags and rate
    /// limits out of the way, logging warnings to the test's stderr, and
    /// waits (up to 30 s) until `/healthz` answers.
    pub async fn start(binary: &str, store: &str, dir: &Path, extra: &[&str]) -> OtmServer {
        let port = free_port();
        let mut command = Self::command(binary, port, dir);
        command
            .args(["--store", store])
            .args(extra)
            .args([
                "--create-per-minute",
                "10000000",
                "--open-per-minute",
                "10000000",
            ])
            .env("OTM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let server = OtmServer {
            process: Process::spawn(command).expect("otm-server runs"),
            base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until("healthz").await;
        server
    }

    /// Waits (up to 30 s) until `/{path}` answers 200 (`healthz` or `readyz`).
    /// Each probe asks the server to close its connection, so that none is
    /// left open to count against a test's per-client connection cap.
    pub async fn wait_until(&self, path: &str) {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("a plain HTTP client");
        loop {
            let probe = client
                .get(format!("{}/{path}", self.base))
                .header("connection", "close")
                .send()
                .await;
            if let Ok(r) = probe {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "otm-server at {} did not answer /{path}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A private PostgreSQL instance (`initdb` in a temporary directory, its own
/// port), which a test may stop, crash and restart without touching the
/// shared server the other tests use. As root it runs as user `postgres`.
/// The server binaries are found under `/usr/lib/postgresql/*/bin` or in
/// `OTM_PG_BINDIR`.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    postmaster: Option<Child>,
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn postgres_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("OTM_PG_BINDIR") {
        return Some(dir.into());
    }
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        ["/usr/local/bin", "/usr/bin", "/usr/local/pgsql/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("initdb").exists() && p.join("postgres").exists())
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PrivatePostgres {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            // PostgreSQL refuses to run as root.
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A new data directory (`initdb`), not yet started; or [`skip`]s when
    /// the server binaries are missing.
    pub fn init() -> Option<PrivatePostgres> {
        let Some(bin) = postgres_bindir() else {
            return skip("no PostgreSQL server binaries (initdb) found; set OTM_PG_BINDIR");
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return skip("cannot hand a data directory to user postgres");
            }
        }
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
            postmaster: None,
        };
        let out = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(pg.dir.path().join("data"))
            .output()
            .expect("initdb runs");
        if !out.status.success() {
            return skip(&format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Some(pg)
    }

    /// Turns TLS on (`ssl = on`) with the PEM certificate and key given,
    /// before [`start`](Self::start). Connections without TLS stay allowed.
    pub fn enable_tls(&self, cert_pem: &Path, key_pem: &Path) {
        let data = self.dir.path().join("data");
        std::fs::copy(cert_pem, data.join("server.crt")).expect("copy the certificate");
        std::fs::copy(key_pem, data.join("server.key")).expect("copy the key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("key permissions");
        if running_as_root() {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        use std::io::Write;
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .expect("write postgresql.conf");
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL (database `postgres`, user `postgres`, trust auth).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (durable settings: fsync and synchronous commit
    /// on) and waits until it accepts queries. After a crash the old
    /// backends may linger a moment, so a refused start is retried.
    pub async fn start(&mut self) {
        let began = Instant::now();
        loop {
            let log =
                std::fs::File::create(self.dir.path().join("postgres.log")).expect("a log file");
            let mut child = self
                .command("postgres")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
                .args(["-c", "synchronous_commit=on", "-c", "max_connections=60"])
                .arg("-c")
                .arg(format!(
                    "unix_socket_directories={}",
                    self.dir.path().display()
                ))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("postgres runs");
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: retry
                }
                let ready = self
                    .command("pg_isready")
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    self.postmaster = Some(child);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if began.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    panic!(
                        "private PostgreSQL did not start: {}",
                        std::fs::read_to_string(self.dir.path().join("postgres.log"))
                            .unwrap_or_default()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A clean, fast shutdown (what an operator's restart does).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// A crash: SIGKILL to the postmaster and every backend at once.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let pid = child.id().to_string();
            let children = Command::new("pgrep")
                .args(["-P", &pid])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            let mut pids = vec![pid];
            pids.extend(
                String::from_utf8_lossy(&children)
                    .split_whitespace()
                    .map(str::to_owned),
            );
            let _ = Command::new("kill").arg("-9").args(&pids).status();
            let _ = child.wait();
        }
    }
}
