//! Serving a router over HTTP/1.1 with every connection bounded.
//!
//! `axum::serve` keeps a connection for as long as the client likes: a
//! client that sends its request head one byte a minute (slowloris), or
//! opens thousands of idle connections, holds the server's memory and file
//! descriptors forever. [`serve`] is the same loop with the bounds an
//! internet-facing server needs; `otm-server` uses it and embedders can too:
//!
//! - at most [`ConnectionLimits::max_connections`] connections at once;
//!   beyond that the server stops accepting and new connections wait in
//!   the kernel's listen backlog (nothing is refused, nothing is dropped);
//! - a request head must arrive within [`ConnectionLimits::header_timeout`],
//!   counted from the moment the connection waits for it, so the same bound
//!   closes idle keep-alive connections;
//! - a request head is at most [`ConnectionLimits::max_header_bytes`] long
//!   with at most [`ConnectionLimits::max_headers`] fields (else 431);
//! - bodies and whole requests are bounded by the router itself
//!   ([`crate::Config::with_request_timeout`], [`crate::API_BODY_LIMIT`]).
//!
//! Every request that parses as HTTP/1.1 reaches the router, and every
//! refusal of the router is a JSON error. Bytes that are not an HTTP/1.1
//! request at all (a malformed request line or header field, a head over
//! the limit, broken framing) are refused by hyper's parser before any
//! route exists: the client gets hyper's own bare `400`, `414` or `431`
//! with `connection: close`, and the connection is closed. That answer is
//! hyper's to write; otm does not rewrite its bytes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Bounds on what one client connection may hold; see the [module
/// docs](self).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most connections served at once (default 4096). Make sure the
    /// process may open that many files (`ulimit -n`).
    pub max_connections: usize,
    /// Longest wait for a complete request head (default 15 s), which also
    /// bounds how long an idle keep-alive connection stays open. On expiry
    /// the connection is closed without an answer.
    pub header_timeout: Duration,
    /// Largest request head, request line included (default 16 KiB).
    pub max_header_bytes: usize,
    /// Most header fields in one request (default 64).
    pub max_headers: usize,
    /// How long a graceful shutdown waits for requests in flight before
    /// closing their connections (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(15),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// Sets [`Self::max_connections`] (at least 1).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`Self::header_timeout`].
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`Self::max_header_bytes`] (at least 1 KiB).
    pub fn with_max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(1024);
        self
    }

    /// Sets [`Self::max_headers`] (at least 8).
    pub fn with_max_headers(mut self, n: usize) -> Self {
        self.max_headers = n.max(8);
        self
    }

    /// Sets [`Self::shutdown_grace`].
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(self.max_header_bytes)
            .max_headers(self.max_headers)
            // The read buffer holds a head or a slice of a body: bounded
            // per connection, never below hyper's minimum.
            .max_buf_size((2 * self.max_header_bytes).max(64 * 1024));
        b
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish for up to
/// [`ConnectionLimits::shutdown_grace`] and returns.
///
/// Each request carries [`ConnectInfo<SocketAddr>`] of the peer, which the
/// router's per-client rate limits read. Errors accepting a connection
/// (such as running out of file descriptors) are logged and retried after a
/// short pause; they never end the loop.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let http = Arc::new(limits.http1());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Take a connection slot before accepting: at the limit, new
        // connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req)
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
