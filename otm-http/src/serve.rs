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
//! - at most [`ConnectionLimits::max_connections_per_client`] of them from
//!   one client (an IPv4 address or an IPv6 /64): a further connection from
//!   it is closed at once, so one client cannot take every slot;
//! - a response that the client does not read is given up after
//!   [`ConnectionLimits::write_timeout`] without progress, and the
//!   connection closed, so a client that never reads cannot hold a slot;
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

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt;

/// Bounds on what one client connection may hold; see the [module
/// docs](self).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most connections served at once (default 4096). Make sure the
    /// process may open that many files (`ulimit -n`).
    pub max_connections: usize,
    /// Most connections from one client at once (default 64): an IPv4
    /// address, or an IPv6 /64. A further connection is closed at once.
    /// Behind a reverse proxy every client is the proxy: raise it there.
    pub max_connections_per_client: usize,
    /// Longest a response write may make no progress (default 30 s): a
    /// client that stops reading loses its connection then.
    pub write_timeout: Duration,
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
            max_connections_per_client: 64,
            write_timeout: Duration::from_secs(30),
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

    /// Sets [`Self::max_connections_per_client`] (at least 1).
    pub fn with_max_connections_per_client(mut self, n: usize) -> Self {
        self.max_connections_per_client = n.max(1);
        self
    }

    /// Sets [`Self::write_timeout`].
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
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
    let per_client = PerClient::default();
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
        let Some(client_slot) = per_client.enter(peer.ip(), limits.max_connections_per_client)
        else {
            tracing::debug!(peer = %peer.ip(), "per-client connection limit reached; closed");
            continue; // drops the stream (closing it) and the permit
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteTimeout::new(stream, limits.write_timeout);
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
            drop(client_slot);
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

/// Open connections per client (see [`crate::limit::bucket`]).
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`PerClient`], given back on drop.
struct ClientSlot {
    clients: PerClient,
    bucket: IpAddr,
}

impl PerClient {
    /// A slot for one more connection from `ip`, unless it has `max`.
    fn enter(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let bucket = crate::caller::net_of(ip);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(bucket).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            bucket,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.bucket) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.bucket);
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has made no progress
/// for `limit`: hyper then ends the connection. Reads are untouched (the
/// header and request timeouts bound them).
struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: `Pending` until the limit
    /// (the timer wakes the task), then the error.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its response within the write timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The inner poll's outcome, with the stall timer run or reset.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        inner: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match inner {
            Poll::Pending => self.stall(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, inner)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let inner = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, inner)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, inner)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_counted_and_given_back() {
        let clients = PerClient::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = clients.enter(a, 2).unwrap();
        let _second = clients.enter(a, 2).unwrap();
        assert!(clients.enter(a, 2).is_none(), "a third from one client");
        assert!(
            clients.enter(b, 2).is_some(),
            "another client is not affected"
        );
        drop(first);
        assert!(
            clients.enter(a, 2).is_some(),
            "a closed connection frees its slot"
        );
        // One IPv6 /64 is one client.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
        let _x = clients.enter(v6a, 1).unwrap();
        assert!(clients.enter(v6b, 1).is_none());
    }
}
