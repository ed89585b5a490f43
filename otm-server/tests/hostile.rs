//! Hostile and broken clients against a real `otm-server` process on a real
//! socket, byte by byte (one file past 500 lines on purpose: the cases share
//! the raw-socket answer parser):
//!
//! - slow heads (slowloris) and idle keep-alive connections are closed after
//!   `--header-timeout`, while other clients are served;
//! - slow bodies get 408 after `--request-timeout`;
//! - at `--max-connections` new connections wait, and are served as soon as
//!   a slot frees;
//! - a corpus of malformed requests: every answer is a 4xx; every request
//!   that parses as HTTP gets a JSON error with the security headers, and
//!   the bytes the HTTP parser refuses (first or later on a keep-alive
//!   connection) get its bare 400/414/431 and a closed connection; the
//!   server stays up, and a stored message is neither consumed nor damaged.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{client, create, open, start_with, Created, Server};
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
    /// The first answer in `raw` (its body: everything after the head).
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

    /// Every answer in `raw`, one after another (framed by Content-Length).
    fn parse_all(mut raw: &[u8]) -> Vec<Answer> {
        let mut all = Vec::new();
        while let Some(mut answer) = Answer::parse(raw) {
            let len: usize = answer
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(answer.body.len());
            let rest = answer.body.split_off(len.min(answer.body.len()));
            raw = &raw[raw.len() - rest.len()..];
            all.push(answer);
        }
        all
    }

    /// Asserts a 4xx with a JSON error, a message and the security headers.
    fn assert_json_error(&self, name: &str) {
        assert!(
            (400..500).contains(&self.status),
            "{name}: status {} (want 4xx): {:?}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{name}: {} without a JSON body: {:?}",
            self.status,
            self.headers
        );
        // The documented error body, with a code the API defines.
        let body: otm_core::api::ErrorBody = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{name}: not an error body: {e}"));
        assert!(!body.message.is_empty(), "{name}: no message: {body:?}");
        assert!(
            self.header("content-security-policy").is_some()
                && self.header("referrer-policy") == Some("no-referrer")
                && self.header("cache-control") == Some("no-store"),
            "{name}: security headers missing: {:?}",
            self.headers
        );
    }

    /// Whether this answer carries a JSON body.
    fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    }

    /// Asserts the HTTP parser's own refusal of bytes that are not an
    /// HTTP/1.1 request: 400, 414 or 431 and no body. (Its exact head is
    /// hyper's business; that the connection then closes is checked by the
    /// caller, which reads until it does.)
    fn assert_parser_refusal(&self, name: &str) {
        assert!(
            matches!(self.status, 400 | 414 | 431),
            "{name}: status {} (want the parser's 400, 414 or 431)",
            self.status
        );
        assert!(
            self.body.is_empty() && self.header("content-length").is_none_or(|l| l == "0"),
            "{name}: a parser refusal with a body: {self:?}"
        );
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
    let (server, _dir) = server(&[
        "--header-timeout",
        "1s",
        "--max-connections-per-client",
        "1000",
    ])
    .await;
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
    let otm = client(&server.base);
    assert!(create(&otm).await.is_ok());

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
    assert!(create(&otm).await.is_ok());
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
    let otm = client(&server.base);
    assert!(create(&otm).await.is_ok());
    let answer = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the server kept a stalled request open for 10 s");
    let answer = Answer::parse(&answer).expect("an HTTP answer");
    assert_eq!(answer.status, 408);
    let body: otm_core::api::ErrorBody =
        serde_json::from_slice(&answer.body).expect("a JSON error");
    assert_eq!(body.error, otm_core::ErrorCode::RequestTimeout);
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

/// The malformed requests. The first [`PARSER_LEVEL`] of them are broken at
/// the HTTP layer and may be refused by the parser before any route; every
/// other one parses as HTTP and must get a JSON error.
fn corpus(canary: &Created, opened: &Created) -> Vec<(&'static str, Vec<u8>)> {
    let id = &canary.id;
    let proof = canary.secrets.claim_proof().to_base64url().to_string();
    let access = canary.secrets.access_proof().to_base64url().to_string();
    let envelope = URL_SAFE_NO_PAD.encode(&canary.envelope);
    let verifier = canary.secrets.claim_verifier().to_base64url().to_string();
    let access_verifier = canary.secrets.access_verifier().to_base64url().to_string();
    let open_path = format!("/api/v1/messages/{id}/open");
    let ct = "application/json";
    let mut c: Vec<(&'static str, Vec<u8>)> = vec![
        // The HTTP layer.
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec()),
        ("binary noise", vec![0, 1, 2, 255, 254, 13, 10, 13, 10]),
        ("unknown version", b"GET / HTTP/7.1\r\nHost: x\r\n\r\n".to_vec()),
        ("space in the path", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad header name", b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec()),
        ("NUL in a header value", b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n".to_vec()),
        ("huge header", get("/api/v1/config", &format!("X-Big: {}\r\n", "a".repeat(40_000)))),
        ("too many headers", get("/api/v1/config", &(0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>())),
        ("huge path", get(&format!("/otm/{}", "a".repeat(70_000)), "")),
        ("content-length not a number", b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("two content-lengths", b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec()),
        ("bad UTF-8 in the path", b"GET /otm/\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("bad UTF-8 in a header value", [format!("GET /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ").into_bytes(), b"\xff\xfe\r\n\r\n".to_vec()].concat()),
        ("bad chunk size", format!("POST {open_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        // (PARSER_LEVEL ends here.)
        // Bad IDs.
        ("short ID", json_post("/api/v1/messages/abc/open", ct, format!(r#"{{"access_proof":"{access}","proof":"{proof}"}}"#).as_bytes())),
        ("ID with bad characters", json_post("/api/v1/messages/!!!!!!!!!!!!!!!!!!!!!!/open", ct, format!(r#"{{"access_proof":"{access}","proof":"{proof}"}}"#).as_bytes())),
        ("percent-encoded ID", json_post("/api/v1/messages/%2e%2e%2f%2e%2e/open", ct, b"{}")),
        ("status with bad ID", get("/api/v1/messages/zzz", "Authorization: Bearer abc\r\n")),
        // Bodies.
        ("oversize body", json_post("/api/v1/messages", ct, &vec![b'a'; 200_000])),
        ("truncated JSON", json_post(&open_path, ct, format!(r#"{{"proof":"{}"#, &proof[..10]).as_bytes())),
        ("empty body", json_post(&open_path, ct, b"")),
        ("bad UTF-8 in JSON", json_post(&open_path, ct, b"{\"proof\":\"\xff\xfe\"}")),
        ("JSON nested 100000 deep", json_post("/api/v1/messages", ct, &[vec![b'['; 50_000], vec![b']'; 50_000]].concat())),
        ("wrong JSON type", json_post(&open_path, ct, format!(r#"{{"access_proof":"{access}","proof":42}}"#).as_bytes())),
        ("missing proof", json_post(&open_path, ct, b"{}")),
        ("unknown field", json_post(&open_path, ct, format!(r#"{{"access_proof":"{access}","proof":"{proof}","x":1}}"#).as_bytes())),
        ("proof in bad base64", json_post(&open_path, ct, format!(r#"{{"access_proof":"{access}","proof":"!!!not base64!!!"}}"#).as_bytes())),
        ("proof of the wrong length", json_post(&open_path, ct, format!(r#"{{"access_proof":"{access}","proof":"AAAA"}}"#).as_bytes())),
        ("wrong content type", json_post(&open_path, "text/plain", format!(r#"{{"access_proof":"{access}","proof":"{proof}"}}"#).as_bytes())),
        ("form content type", json_post(&open_path, "application/x-www-form-urlencoded", format!("proof={proof}").as_bytes())),
        ("no content type", format!("POST {open_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes()),
        ("create: envelope in bad base64", json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"***","verifier":"{verifier}","access_verifier":"{access_verifier}","ttl_seconds":60}}"#).as_bytes())),
        ("create: not an envelope", json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"AAAAAAAA","verifier":"{verifier}","access_verifier":"{access_verifier}","ttl_seconds":60}}"#).as_bytes())),
        ("create: missing verifier", json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","ttl_seconds":60}}"#).as_bytes())),
        ("create: negative ttl", json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","verifier":"{verifier}","access_verifier":"{access_verifier}","ttl_seconds":-5}}"#).as_bytes())),
        ("create: ttl too long", json_post("/api/v1/messages", ct, format!(r#"{{"envelope":"{envelope}","verifier":"{verifier}","access_verifier":"{access_verifier}","ttl_seconds":99999999999}}"#).as_bytes())),
        // Methods, paths, tokens.
        ("PUT on messages", b"PUT /api/v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("DELETE without a token", format!("DELETE /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("DELETE with a wrong token", format!("DELETE /api/v1/messages/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {proof}\r\n\r\n").into_bytes()),
        ("status with a garbage token", get(&format!("/api/v1/messages/{id}"), "Authorization: Basic Zm9vOmJhcg==\r\n")),
        ("unknown API path", get("/api/v1/nothing-here", "")),
        ("unknown API version", get("/api/v2/messages", "")),
    ];
    // Replays: the exact request that opened `opened`, again.
    let replay = json_post(
        &format!("/api/v1/messages/{}/open", opened.id),
        ct,
        format!(
            r#"{{"access_proof":"{}","proof":"{}"}}"#,
            opened.secrets.access_proof().to_base64url().as_str(),
            opened.secrets.claim_proof().to_base64url().as_str()
        )
        .as_bytes(),
    );
    c.push(("replayed open", replay.clone()));
    c.push(("replayed open again", replay));
    c
}

/// How many of the corpus's first entries are broken at the HTTP layer.
const PARSER_LEVEL: usize = 14;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_and_consume_nothing() {
    let (server, _dir) = server(&[]).await;
    let otm = client(&server.base);
    let canary = create(&otm).await.unwrap();
    let opened = create(&otm).await.unwrap();
    assert_eq!(open(&otm, &opened).await.0, 200);

    let cases = corpus(&canary, &opened);
    assert_eq!(cases[PARSER_LEVEL - 1].0, "bad chunk size");
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut by_parser = 0;
    for (i, (name, request)) in cases.iter().enumerate() {
        let raw = exchange(&server, request).await;
        let answer = Answer::parse(&raw).unwrap_or_else(|| {
            panic!(
                "{name}: no HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        if i < PARSER_LEVEL && !answer.is_json() {
            answer.assert_parser_refusal(name);
            by_parser += 1;
        } else {
            answer.assert_json_error(name);
        }
        *statuses.entry(answer.status).or_default() += 1;
        assert!(
            server_alive(&server).await,
            "{name}: the server died or stopped answering"
        );
    }
    eprintln!(
        "{} malformed requests: all 4xx, {by_parser} refused by the HTTP parser (no body, connection closed), \
         the rest with a JSON error; by status: {statuses:?}",
        cases.len()
    );
    // Nothing damaged: no malformed request used one of the canary's
    // attempts (the first wrong proof leaves 4 of 5)...
    // The canary's access proof (the link) with another message's claim
    // proof (a wrong passphrase): counted.
    let wrong = otm
        .claim(
            &canary.id,
            canary.secrets.access_proof(),
            opened.secrets.claim_proof(),
        )
        .await;
    assert!(
        matches!(
            wrong,
            Err(otm_client::Error::WrongProof { attempts_left: 4 })
        ),
        "{wrong:?}"
    );
    // ...and nothing consumed: the canary opens exactly once.
    let (status, envelope) = open(&otm, &canary).await;
    assert_eq!(
        status, 200,
        "the canary was consumed by a malformed request"
    );
    assert_eq!(envelope.unwrap(), canary.envelope);
    assert_eq!(open(&otm, &canary).await.0, 404);
}

async fn server_alive(server: &Server) -> bool {
    matches!(reqwest::get(format!("{}/healthz", server.base)).await, Ok(r) if r.status() == 200)
}

/// Reads one answer framed by Content-Length from a connection that stays
/// open.
async fn read_one(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(answer) = Answer::parse(&raw) {
            let len: usize = answer
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .expect("a Content-Length");
            if answer.body.len() >= len {
                return answer;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole answer: {raw:?}");
        raw.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parser_refusal_later_on_a_keep_alive_connection_closes_it() {
    let (server, _dir) = server(&[]).await;
    let good = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let huge = get(
        "/api/v1/config",
        &format!("X-Big: {}\r\n", "a".repeat(40_000)),
    );
    for (name, bad) in [
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "bad header name",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
        ),
        ("huge header", huge),
    ] {
        // One request at a time: answered, then the bad one.
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        for _ in 0..3 {
            s.write_all(&good).await.unwrap();
            let answer = read_one(&mut s).await;
            assert_eq!(answer.status, 200, "{name}");
        }
        let _ = s.write_all(&bad).await;
        let rest = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("not closed after a refusal");
        let answers = Answer::parse_all(&rest);
        assert_eq!(
            answers.len(),
            1,
            "{name}: {:?}",
            String::from_utf8_lossy(&rest)
        );
        answers[0].assert_parser_refusal(name);

        // Pipelined: both in one write.
        let raw = exchange(&server, &[good.clone(), bad].concat()).await;
        let answers = Answer::parse_all(&raw);
        assert_eq!(
            answers.len(),
            2,
            "{name}: {:?}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(answers[0].status, 200, "{name}");
        answers[1].assert_parser_refusal(name);
    }
}

/// `otm_http::serve` with an application of its own: its answers pass
/// untouched, even a bare 400 or a body that spells out a refusal, on a
/// connection that stays open; garbage then gets the parser's refusal and
/// the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_leaves_the_applications_own_answers_alone() {
    use axum::http::StatusCode;
    const SPELLED: &str = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    let app = axum::Router::new()
        .route(
            "/bare",
            axum::routing::get(|| async { StatusCode::BAD_REQUEST }),
        )
        .route("/spelled", axum::routing::get(|| async { SPELLED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(otm_http::serve(
        listener,
        app,
        otm_http::ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /bare HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let bare = read_one(&mut s).await;
    assert_eq!(bare.status, 400);
    assert!(bare.body.is_empty(), "{bare:?}");
    assert_eq!(bare.header("content-type"), None, "{bare:?}");
    // The connection stays open: the bare 400 was the application's.
    s.write_all(b"GET /spelled HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let spelled = read_one(&mut s).await;
    assert_eq!(spelled.status, 200);
    assert_eq!(spelled.body, SPELLED.as_bytes());
    // Garbage on the same connection: the parser's refusal, then closed.
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let rest = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("not closed after a refusal");
    Answer::parse(&rest)
        .expect("an answer")
        .assert_parser_refusal("garbage after the application's answers");

    let _ = stop.send(());
    served.await.unwrap();
}

/// One client cannot hold more than its share of connections: a connection
/// past `--max-connections-per-client` is closed at once, the others are
/// served, and a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection_slot() {
    let (server, _dir) = server(&[
        "--max-connections-per-client",
        "3",
        "--header-timeout",
        "30s",
    ])
    .await;
    // The start-up probe's connection (closed by the server) must be gone
    // before this client's three are counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Three kept-alive connections, each shown to be accepted and served.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_one(&mut s).await.status, 200);
        held.push(s);
    }
    let mut fourth = TcpStream::connect(addr(&server)).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let closed = read_until_closed(&mut fourth, Duration::from_secs(5))
        .await
        .expect("a fourth connection from one client stayed open");
    assert!(closed.is_empty(), "the fourth connection was served");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(addr(&server)).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut again, Duration::from_secs(5))
        .await
        .expect("a freed place was not given to the next connection");
    assert_eq!(Answer::parse(&answer).expect("an answer").status, 200);
}

/// A client that sends requests and never reads the answers: once the
/// server's writes stall for `--write-timeout`, the connection is closed
/// and its slot serves others (here the only other slot is held by an idle
/// connection that the long header timeout keeps open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_its_slot() {
    let (server, _dir) = server(&[
        "--max-connections",
        "2",
        "--write-timeout",
        "1s",
        "--header-timeout",
        "60s",
    ])
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut deaf = socket
        .connect(addr(&server).parse().unwrap())
        .await
        .unwrap();
    let _idle = TcpStream::connect(addr(&server)).await.unwrap();
    // Pipelined requests for a large asset, never read: megabytes of
    // answers pile up until the server's writes stall.
    let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), deaf.write_all(&request)).await;
    // Both slots are taken; the next client waits until the deaf one is cut off.
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        reqwest::get(format!("{}/healthz", server.base)),
    )
    .await
    .expect("the slot of a client that never reads was never freed")
    .unwrap();
    assert_eq!(served.status(), 200);
    eprintln!(
        "a client that never read lost its slot; the next one was served after {:?}",
        started.elapsed()
    );
    drop(deaf);
}
