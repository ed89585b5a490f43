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
//!   it is closed at once, so one client cannot take every slot; and since
//!   one IPv6 holder commonly has a /56 or a /48 (256 or 65,536 /64s), at
//!   most four times that from one /56, and at most a quarter of
//!   `max_connections` (but never less than the per-client cap) from one
//!   /48, so one allocation cannot fill the server. Connections are counted
//!   as they are accepted, by the peer address: behind a proxy, that is the
//!   proxy's;
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
    /// An IPv6 /56 may hold four times this, a /48 a quarter of
    /// [`max_connections`](Self::max_connections) (at least this). Behind a
    /// reverse proxy every client is the proxy: raise it there.
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
        let Some(client_slot) = per_client.enter(peer.ip(), &limits) else {
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

/// Open connections per network: an IPv4 address; an IPv6 /64, /56 and
/// /48, each with its own cap.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<(IpAddr, u8), usize>>>);

/// One connection's places in [`PerClient`], given back on drop.
struct ClientSlot {
    clients: PerClient,
    buckets: Vec<(IpAddr, u8)>,
}

/// The networks a connection from `ip` counts in, with their caps.
fn networks(ip: IpAddr, limits: &ConnectionLimits) -> Vec<((IpAddr, u8), usize)> {
    let client = limits.max_connections_per_client;
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = |bits: u32| {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            };
            vec![
                ((net(64), 64), client),
                ((net(56), 56), client.saturating_mul(4)),
                ((net(48), 48), (limits.max_connections / 4).max(client)),
            ]
        }
        v4 => vec![((v4, 32), client)],
    }
}

impl PerClient {
    /// Places for one more connection from `ip`, unless one of its
    /// networks is at its cap.
    fn enter(&self, ip: IpAddr, limits: &ConnectionLimits) -> Option<ClientSlot> {
        let networks = networks(ip, limits);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if networks
            .iter()
            .any(|(key, max)| open.get(key).is_some_and(|n| n >= max))
        {
            return None;
        }
        for (key, _) in &networks {
            *open.entry(*key).or_insert(0) += 1;
        }
        Some(ClientSlot {
            clients: self.clone(),
            buckets: networks.into_iter().map(|(key, _)| key).collect(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.buckets {
            if let Some(n) = open.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(key);
                }
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
        let two = ConnectionLimits::default().with_max_connections_per_client(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = clients.enter(a, &two).unwrap();
        let _second = clients.enter(a, &two).unwrap();
        assert!(clients.enter(a, &two).is_none(), "a third from one client");
        assert!(
            clients.enter(b, &two).is_some(),
            "another client is not affected"
        );
        drop(first);
        assert!(
            clients.enter(a, &two).is_some(),
            "a closed connection frees its slot"
        );
        // One IPv6 /64 is one client.
        let one = ConnectionLimits::default().with_max_connections_per_client(1);
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
        let _x = clients.enter(v6a, &one).unwrap();
        assert!(clients.enter(v6b, &one).is_none());
    }

    #[test]
    fn one_ipv6_allocation_cannot_fill_the_server() {
        let clients = PerClient::default();
        // 64 a client, 4096 in all: a /56 holds 256, a /48 1024.
        let limits = ConnectionLimits::default();
        let addr = |net48: u16, sub: u16, host: u16| -> IpAddr {
            std::net::Ipv6Addr::new(0x2001, 0xdb8, net48, sub, 0, 0, 0, host).into()
        };
        let mut held = Vec::new();
        // One /56 (sub 0x0000..0x00ff): 4 /64s fill it.
        for sub in 0..8u16 {
            for host in 0..64u16 {
                if let Some(slot) = clients.enter(addr(1, sub, host), &limits) {
                    held.push(slot);
                }
            }
        }
        assert_eq!(held.len(), 256, "one /56");
        // The whole /48, through its /56s: a quarter of the server.
        for net56 in (0x100..0x2000u16).step_by(0x100) {
            for net64 in net56..net56 + 4 {
                for host in 0..64u16 {
                    if let Some(slot) = clients.enter(addr(1, net64, host), &limits) {
                        held.push(slot);
                    }
                }
            }
        }
        assert_eq!(held.len(), 1024, "one /48");
        // Another /48 is not affected; freeing one frees its place.
        assert!(clients.enter(addr(2, 0, 1), &limits).is_some());
        held.pop();
        assert!(clients.enter(addr(1, 0x1f00, 0x4000), &limits).is_some());
    }
}
