//! otm-server behind a real nginx running the server block shipped in
//! `docs/proxy/nginx.conf` (only its two addresses changed): per-client rate
//! limits follow the client's address through the proxy, a client's own
//! `X-Forwarded-For` is not believed, the browser flow works through the
//! proxy in Chromium, and a client that sends its head too slowly is cut off.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otm_testkit::{free_port, skip, unique_suffix, OtmServer, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// nginx on `port` in front of `upstream` (`127.0.0.1:PORT`), with the
/// shipped server block; `None` (skipped) when nginx is not installed.
fn nginx(port: u16, upstream: &str, dir: &std::path::Path) -> Option<Process> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let shipped = include_str!("../../docs/proxy/nginx.conf");
    let server = shipped
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"))
        .replace("http://127.0.0.1:8080", &format!("http://{upstream}"));
    assert_ne!(server, shipped, "the shipped config changed its addresses");
    let d = dir.display();
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {server}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Some(Process::spawn(command).expect("nginx starts"))
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address
/// is this machine, so each is a different client to the proxy).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Statuses of `n` creates (with an empty body: the rate limit comes first)
/// sent by `client`, with `forwarded` as the client's own X-Forwarded-For.
async fn creates(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    forwarded: Option<&str>,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let mut request = client
            .post(format!("{base}/api/v1/messages"))
            .json(&serde_json::json!({}));
        if let Some(f) = forwarded {
            request = request.header("x-forwarded-for", format!("{f}{i}"));
        }
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_clients_are_told_apart_and_spoofing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("proxy.sqlite3").display());
    // Creates: 6 a minute, a burst of 2 per client. Everything arrives
    // from the proxy, so the per-client connection cap goes up (PROXY.md).
    let server_port = free_port();
    let mut command = OtmServer::command(env!("CARGO_BIN_EXE_otm-server"), server_port, dir.path());
    command
        .args(["--store", &url, "--trusted-proxy", "127.0.0.1/32"])
        .args([
            "--create-per-minute",
            "6",
            "--max-connections-per-client",
            "4096",
        ])
        .env("OTM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let server = OtmServer {
        process: Process::spawn(command).unwrap(),
        base: format!("http://127.0.0.1:{server_port}"),
    };
    server.wait_until("healthz").await;
    let port = free_port();
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let Some(_nginx) = nginx(port, &upstream, dir.path()) else {
        return skip("nginx is not installed").unwrap_or(());
    };
    assert!(
        otm_testkit::process::wait_for_port(port, Duration::from_secs(10)).await,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default()
    );
    let base = format!("http://127.0.0.1:{port}");

    // Two clients, each with its own bucket: the third create of each is 429.
    let a = creates(&client_from("127.0.0.2"), &base, 3, None).await;
    let b = creates(&client_from("127.0.0.3"), &base, 3, None).await;
    assert_eq!(a, [400, 400, 429], "client A through the proxy");
    assert_eq!(
        b,
        [400, 400, 429],
        "client B through the proxy: its own bucket"
    );
    // A client that writes a new X-Forwarded-For each time is still itself.
    let spoofer = creates(&client_from("127.0.0.4"), &base, 3, Some("203.0.113.")).await;
    assert_eq!(
        spoofer,
        [400, 400, 429],
        "a spoofed X-Forwarded-For was believed"
    );

    // The whole flow through the proxy with otm-client.
    let otm = otm_client::Client::new(&base).unwrap();
    let text = format!("through nginx {}", unique_suffix());
    let sent = otm
        .send(&text, &otm_client::SendOptions::new())
        .await
        .unwrap();
    assert!(sent.link.to_url().starts_with(&base));
    assert_eq!(otm.open(&sent.link, None).await.unwrap().as_str(), text);
    // The largest message (8,000 four-byte characters: a 32 KiB envelope,
    // about 44 kB of JSON) passes in memory: nginx warns when it buffers a
    // body to a temporary file.
    let largest = "\u{1F512}".repeat(8000);
    let sent = otm
        .send(&largest, &otm_client::SendOptions::new())
        .await
        .unwrap();
    assert_eq!(otm.open(&sent.link, None).await.unwrap().as_str(), largest);
    let log = std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default();
    assert!(
        !log.contains("buffered to a temporary file"),
        "nginx wrote a body to disk: {log}"
    );

    // A client sending its head a byte now and then is cut off by the proxy.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "a slow head was not cut off within 20 s");
    eprintln!("nginx cut off a slow head after {:?}", started.elapsed());

    // The browser flow through the proxy, in Chromium.
    let Some(driver) = otm_testkit::Driver::start().await else {
        return skip("Chromium is not installed").unwrap_or(());
    };
    let (sender, _p1) = driver.browser().await;
    let text = format!("browser through nginx {}", unique_suffix());
    let (link, _status) = otm_testkit::browser::compose(&sender, &base, &text, None).await;
    assert!(link.starts_with(&base), "{link}");
    let (reader, _p2) = otm_testkit::browser::reveal(&driver, &link, None).await;
    assert_eq!(
        otm_testkit::browser::value(&reader, "#plaintext").await,
        text
    );
    let _ = reader.close().await;
    let _ = sender.close().await;
}
