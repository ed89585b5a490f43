//! Hostile and broken clients against a real `otm-server` process on a real
//! socket, byte by byte:
//!
//! - slow heads (slowloris) and idle keep-alive connections are closed after
//!   `--header-timeout`, while other clients are served;
//! - slow bodies get 408 after `--request-timeout`;
//! - at `--max-connections` new connections wait, and are served as soon as
//!   a slot frees;
//! - a corpus of malformed requests: every answer is a 4xx, JSON for every
//!   request that parses as HTTP, the server stays up, and a stored message
//!   is neither consumed nor damaged.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{create, open, start_with, Created, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes: None).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(Ok(_)) => Some(out),
        // A reset is also the server closing the connection.
        Ok(Err(_)) => Some(out),
        Err(_) => None,
    }
}

/// A raw HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> Option<Answer> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..split]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a fresh connection and returns what comes back before
/// the server closes it.
async fn exchange(server: &Server, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr(server)).await.unwrap();
    // The server may close before reading everything (an early 4xx).
    let _ = s.write_all(request).await;
    read_until_closed(&mut s, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no answer within 15 s to {:?}",
                String::from_utf8_lossy(&request[..request.len().min(120)])
            )
        })
}

async fn server(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hostile.sqlite3").display());
    let server = start_with(&url, dir.path(), extra).await;
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_idle_connections_are_closed_after_the_header_timeout() {
    let (server, _dir) = server(&["--header-timeout", "1s"]).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(b"GET /api/v1/config HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    // The drip: a header byte every 200 ms, never the blank line.
    let drip = {
        let target = addr(&server);
        tokio::spawn(async move {
            let mut s = TcpStream::connect(target).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").await.unwrap();
            let t = Instant::now();
            while s.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if t.elapsed() > Duration::from_secs(20) {
                    return false;
                }
            }
            true
        })
    };
    // Meanwhile everyone else is served.
    let http = reqwest::Client::new();
    assert!(create(&http, &server.base).await.is_ok());

    for (i, s) in slow.iter_mut().enumerate() {
        let got = read_until_closed(s, Duration::from_secs(10)).await;
        let got = got.unwrap_or_else(|| panic!("slow head {i} still open after 10 s"));
        assert!(got.is_empty(), "a half-sent head got an answer");
    }
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle connection stayed open"
    );
    assert!(
        drip.await.unwrap(),
        "a head sent a byte at a time was never cut off"
    );
    eprintln!(
        "64 slow heads, 1 idle and 1 dripping connection closed after {:?}",
        started.elapsed()
    );
    assert!(create(&http, &server.base).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_cannot_hold_the_server() {
    let (server, _dir) = server(&["--request-timeout", "1s"]).await;
    // Promise 1000 bytes, send 10, then stall.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    slow.write_all(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"envelop",
    )
    .await
    .unwrap();
    // Meanwhile the server answers others.
    let http = reqwest::Client::new();
    assert!(create(&http, &server.base).await.is_ok());
    let answer = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the server kept a stalled request open for 10 s");
    let answer = Answer::parse(&answer).expect("an HTTP answer");
    assert_eq!(answer.status, 408);
    let body: Value = serde_json::from_slice(&answer.body).expect("a JSON error");
    assert_eq!(body["error"], "request_timeout");
    assert!(answer.header("content-security-policy").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_new_connections_wait_for_a_slot() {
    let (server, _dir) = server(&["--max-connections", "4", "--header-timeout", "3s"]).await;
    // Four silent connections fill every slot (accepted: they count).
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = TcpStream::connect(addr(&server)).await.unwrap();
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_until_closed(&mut fifth, Duration::from_millis(1500)).await;
    assert!(
        early.is_none(),
        "a fifth connection was served past --max-connections 4"
    );
    // The header timeout frees the slots; the waiting request is served.
    let answer = read_until_closed(&mut fifth, Duration::from_secs(15))
        .await
        .expect("the waiting connection was never served");
    assert_eq!(Answer::parse(&answer).expect("an answer").status, 200);
    drop(holders);
}

/// A request the HTTP parser refuses: 400/414/431, empty body.
const PROTOCOL: u8 = 0;
/// A request that parses: a 4xx with a JSON error body.
const JSON: u8 = 1;
/// Either one (depends on where the parser draws the line).
const EITHER: u8 = 2;

fn json_post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n")
        .into_bytes()
}

fn corpus(canary: &Created, opened: &Created) -> Vec<(&'static str, u8, Vec<u8>)> {
    let id = &canary.id;
    let proof = canary.secrets.claim_proof().to_base64url().to_string();
    let envelope = URL_SAFE_NO_PAD.encode(&canary.envelope);
    let verifier = canary.secrets.claim_verifier().to_base64url().to_string();
    let open_path = format!("/api/v1/messages/{id}/open");
    let ct = "application/json";
    let mut c: Vec<(&'static str, u8, Vec<u8>)> = vec![
        // The HTTP layer.
        ("not HTTP", PROTOCOL, b"GARBAGE\r\n\r\n".to_vec()),
        ("binary noise", PROTOCOL, vec![0, 1, 2, 255, 254, 13, 10, 13, 10]),
        ("unknown version", PROTOCOL, b"GET / HTTP/7.1\r\nHost: x\r\n\r\n".to_vec()),
        ("space in the path", PROTOCOL, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad header name", PROTOCOL, b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec()),
        ("NUL in a header value", PROTOCOL, b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n".to_vec()),
        ("huge header", PROTOCOL, get("/api/v1/config", &format!("X-Big: {}\r\n", "a".repeat(40_000)))),
        ("too many headers", PROTOCOL, get("/api/v1/config", &(0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>())),
        ("huge path", PROTOCOL, get(&format!("/otm/{}", "a".repeat(70_000)), "")),
        ("content-length not a number", PROTOCOL, b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("two content-lengths", PROTOCOL, b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec()),
        ("bad UTF-8 in the path", EITHER, b"GET /otm/\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("bad UTF-8 in a header value", JSON, [format!("GET /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ").into_bytes(), b"\xff\xfe\r\n\r\n".to_vec()].concat()),
        ("bad chunk size", EITHER, format!("POST {open_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        // Bad IDs.
        ("short ID", JSON, json_post("/api/v1/messages/abc/open", ct, format!(r#"{{"proof":"{proof}"}}"#).as_bytes())),
        ("ID with bad characters", JSON, json_post("/api/v1/messages/!!!!!!!!!!!!!!!!!!!!!!/open", ct, format!(r#"{{"proof":"{proof}"}}"#).as_bytes())),
        ("percent-encoded ID", JSON, json_post("/api/v1/messages/%2e%2e%2f%2e%2e/open", ct, b"{}")),
        ("status with bad ID", JSON, get("/api/v1/messages/zzz", "Authorization: Bearer abc\r\n")),
        // Bodies.
        ("oversize body", JSON, json_post("/api/v1/messages", ct, &vec![b'a'; 200_000])),
        ("truncated JSON", JSON, json_post(&open_path, ct, format!(r#"{{"proof":"{}"#, &proof[..10]).as_bytes())),
        ("empty body", JSON, json_post(&open_path, ct, b"")),
        ("bad UTF-8 in JSON", JSON, json_post(&open_path, ct, b"{\"proof\":\"\xff\xfe\"}")),
        ("JSON nested 100000 deep", JSON, json_post("/api/v1/messages", ct, &[vec![b'['; 50_000], vec![b']'; 50_000]].concat())),
        ("wrong JSON type", JSON, json_post(&open_path, ct, br#"{"proof":42}"#)),
        ("missing proof", JSON, json_post(&open_path, ct, b"{}")),
        ("unknown field", JSON, json_post(&open_path, ct, format!(r#"{{"proof":"{proof}","x":1}}"#).as_bytes())),
        ("proof in bad base64", JSON, json_post(&open_path, ct, br#"{"proof":"!!!not base64!!!"}"#)),
        ("proof of the wrong length", JSON, json_post(&open_path, ct, br#"{"proof":"AAAA"}"#)),
        ("wrong content type", JSON, json_post(&open_path, "text/plain", format!(r#"{{"proof":"{proof}"}}"#).as_bytes())),
        ("form content type", JSON, json_post(&open_path, "application/x-www-form-urlencoded", format!("proof={proof}").as_bytes())),
        ("no content type", JSON, format!("POST {open_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes()),
        ("create: envelope in bad base64", JSON, json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"***","verifier":"{verifier}","ttl_seconds":60}}"#).as_bytes())),
        ("create: not an envelope", JSON, json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"AAAAAAAA","verifier":"{verifier}","ttl_seconds":60}}"#).as_bytes())),
        ("create: missing verifier", JSON, json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","ttl_seconds":60}}"#).as_bytes())),
        ("create: negative ttl", JSON, json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","verifier":"{verifier}","ttl_seconds":-5}}"#).as_bytes())),
        ("create: ttl too long", JSON, json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","verifier":"{verifier}","ttl_seconds":99999999999}}"#).as_bytes())),
        // Methods, paths, tokens.
        ("PUT on messages", JSON, b"PUT /api/v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("DELETE without a token", JSON, format!("DELETE /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("DELETE with a wrong token", JSON, format!("DELETE /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {proof}\r\n\r\n").into_bytes()),
        ("status with a garbage token", JSON, get(&format!("/api/v1/messages/{id}"), "Authorization: Basic Zm9vOmJhcg==\r\n")),
        ("unknown API path", JSON, get("/api/v1/nothing-here", "")),
        ("unknown API version", JSON, get("/api/v2/messages", "")),
    ];
    // Replays: the exact request that opened `opened`, again.
    let replay = json_post(
        &format!("/api/v1/messages/{}/open", opened.id),
        ct,
        format!(
            r#"{{"proof":"{}"}}"#,
            opened.secrets.claim_proof().to_base64url().as_str()
        )
        .as_bytes(),
    );
    c.push(("replayed open", JSON, replay.clone()));
    c.push(("replayed open again", JSON, replay));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_and_consume_nothing() {
    let (server, _dir) = server(&[]).await;
    let http = reqwest::Client::new();
    let canary = create(&http, &server.base).await.unwrap();
    let opened = create(&http, &server.base).await.unwrap();
    assert_eq!(open(&http, &server.base, &opened).await.0, 200);

    let cases = corpus(&canary, &opened);
    let mut protocol = 0;
    for (name, kind, request) in &cases {
        let raw = exchange(&server, request).await;
        let answer = Answer::parse(&raw).unwrap_or_else(|| {
            panic!(
                "{name}: no HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        assert!(
            (400..500).contains(&answer.status),
            "{name}: status {} (want 4xx): {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        let is_json = answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        if *kind == JSON || (*kind == EITHER && is_json) {
            assert!(is_json, "{name}: {} without a JSON body", answer.status);
            let body: Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
            assert!(body["error"].is_string(), "{name}: no error code: {body}");
            assert!(body["message"].is_string(), "{name}: no message: {body}");
        } else {
            assert!(
                [400, 414, 431].contains(&answer.status),
                "{name}: {}",
                answer.status
            );
            assert!(answer.body.is_empty(), "{name}: unexpected body");
            protocol += 1;
        }
        assert!(
            server_alive(&server).await,
            "{name}: the server died or stopped answering"
        );
    }
    eprintln!(
        "{} malformed requests: all 4xx ({} refused by the HTTP parser, the rest JSON)",
        cases.len(),
        protocol
    );
    // Nothing damaged: no malformed request used one of the canary's
    // attempts (the first wrong proof leaves 4 of 5)...
    let wrong =
        serde_json::json!({ "proof": opened.secrets.claim_proof().to_base64url().as_str() });
    let r = http
        .post(format!(
            "{}/api/v1/messages/{}/open",
            server.base, canary.id
        ))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["attempts_left"], 4, "{body}");
    // ...and nothing consumed: the canary opens exactly once.
    let (status, envelope) = open(&http, &server.base, &canary).await;
    assert_eq!(
        status, 200,
        "the canary was consumed by a malformed request"
    );
    assert_eq!(envelope.unwrap(), canary.envelope);
    assert_eq!(open(&http, &server.base, &canary).await.0, 404);
}

async fn server_alive(server: &Server) -> bool {
    matches!(reqwest::get(format!("{}/healthz", server.base)).await, Ok(r) if r.status() == 200)
}
