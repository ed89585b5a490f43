//! The HTTP parser's refusals, answered as JSON errors.
//!
//! hyper refuses a request head it cannot parse (a malformed request line or
//! header field, a head over the size limit) before any route exists, and
//! has no hook to change that answer: it writes a bare head
//! (`HTTP/1.1 400 Bad Request`, `content-length: 0`, `date`) and closes the
//! connection. [`Refusals`] sits between hyper and the socket and replaces
//! exactly that write with the same status as a JSON error carrying the
//! security headers.
//!
//! A write is taken for such a refusal only when all of these hold, so a
//! response of the application is never touched:
//! - no response of the application is in flight on the connection (the
//!   service has been called as often as response bodies have been
//!   dropped): hyper refuses a head only between requests;
//! - the write is, alone and in full, a response head with status 400, 414
//!   or 431 and no fields but `content-length: 0`, `date` and
//!   `connection: close`, which is what hyper writes;
//! - every response of the application carries `x-content-type-options`
//!   ([`super::serve`] adds it where missing), so none of them has such a
//!   head.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{NO_STORE, SECURITY_HEADERS};

/// The longest head hyper writes for a refusal (status line, three short
/// fields); anything longer is not one.
const MAX_REFUSAL_HEAD: usize = 256;

/// Counts the application's responses in flight on one connection: a
/// [`Busy`] guard lives from the service call until hyper drops the
/// response body.
#[derive(Clone, Default)]
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Marks one response in flight until the guard is dropped.
    pub(super) fn enter(&self) -> Busy {
        self.0.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(&self.0))
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

/// One response in flight; see [`InFlight`].
pub(super) struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's byte stream that answers hyper's refusals with JSON; see
/// the [module docs](self).
pub(super) struct Refusals<S> {
    inner: S,
    in_flight: InFlight,
    max_header_bytes: usize,
    max_headers: usize,
    /// A JSON refusal still to be written, and how much of it is.
    queued: Vec<u8>,
    written: usize,
}

impl<S> Refusals<S> {
    pub(super) fn new(
        inner: S,
        in_flight: InFlight,
        max_header_bytes: usize,
        max_headers: usize,
    ) -> Self {
        Refusals {
            inner,
            in_flight,
            max_header_bytes,
            max_headers,
            queued: Vec::new(),
            written: 0,
        }
    }

    /// The JSON answer replacing `write`, if `write` is hyper's refusal.
    fn replacement(&self, write: &[u8]) -> Option<Vec<u8>> {
        if !self.in_flight.idle() {
            return None;
        }
        let refusal = Refusal::parse(write)?;
        Some(refusal.json_answer(self.max_header_bytes, self.max_headers))
    }
}

impl<S: AsyncWrite + Unpin> Refusals<S> {
    /// Writes out a queued answer before anything else.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.queued.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.queued[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `write` (all `len` bytes of it) if it is a refusal to replace.
    fn take_refusal(&mut self, write: &[u8], len: usize) -> Option<Poll<io::Result<usize>>> {
        let answer = self.replacement(write)?;
        self.queued = answer;
        self.written = 0;
        Some(Poll::Ready(Ok(len)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Refusals<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Refusals<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(done) = self.take_refusal(buf, buf.len()) {
            return done;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        // Only small writes between responses can be a refusal: look closer
        // at those alone, on the stack.
        if len <= MAX_REFUSAL_HEAD && self.in_flight.idle() {
            let mut joined = [0u8; MAX_REFUSAL_HEAD];
            let mut at = 0;
            for b in bufs {
                joined[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            if let Some(done) = self.take_refusal(&joined[..len], len) {
                return done;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A refusal hyper wrote: its status and `date` field.
#[derive(Debug, PartialEq)]
struct Refusal<'a> {
    status: u16,
    date: Option<&'a str>,
}

impl<'a> Refusal<'a> {
    /// Recognises hyper's refusal head, exactly; anything else is `None`.
    fn parse(write: &'a [u8]) -> Option<Self> {
        if write.len() > MAX_REFUSAL_HEAD {
            return None;
        }
        let text = std::str::from_utf8(write).ok()?;
        let mut lines = text
            .strip_prefix("HTTP/1.1 ")?
            .strip_suffix("\r\n\r\n")?
            .split("\r\n");
        let (code, _reason) = lines.next()?.split_once(' ')?;
        let status = match code {
            "400" => 400,
            "414" => 414,
            "431" => 431,
            _ => return None,
        };
        let mut date = None;
        for line in lines {
            let (name, value) = line.split_once(": ")?;
            if name.eq_ignore_ascii_case("content-length") && value == "0" {
                continue;
            }
            if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                continue;
            }
            if name.eq_ignore_ascii_case("date") && date.is_none() {
                date = Some(value);
                continue;
            }
            return None;
        }
        Some(Refusal { status, date })
    }

    /// The whole JSON answer: same status, a JSON error, the security
    /// headers, `connection: close` (hyper closes the connection next).
    fn json_answer(&self, max_header_bytes: usize, max_headers: usize) -> Vec<u8> {
        let (reason, code, message) = match self.status {
            414 => (
                "URI Too Long",
                "uri_too_long",
                format!(
                    "The request target is too long: the whole request head may have at most {max_header_bytes} bytes."
                ),
            ),
            431 => (
                "Request Header Fields Too Large",
                "headers_too_large",
                format!(
                    "The request head is too large: at most {max_header_bytes} bytes and {max_headers} header fields."
                ),
            ),
            _ => (
                "Bad Request",
                "malformed_request",
                "The request is not valid HTTP/1.1: its request line, a header field or its framing could not be parsed."
                    .to_owned(),
            ),
        };
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            body.len()
        );
        if let Some(date) = self.date {
            head.push_str(&format!("date: {date}\r\n"));
        }
        for (name, value) in SECURITY_HEADERS.iter().chain(&NO_STORE) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut answer = head.into_bytes();
        answer.extend_from_slice(body.as_bytes());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 25 Nov 2026 14:07:36 GMT";

    #[test]
    fn recognises_hypers_refusals_exactly() {
        for (status, reason) in [
            (400, "Bad Request"),
            (414, "URI Too Long"),
            (431, "Request Header Fields Too Large"),
        ] {
            let head =
                format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
            assert_eq!(
                Refusal::parse(head.as_bytes()),
                Some(Refusal {
                    status,
                    date: Some(DATE)
                })
            );
        }
        let closing = format!(
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"
        );
        assert!(Refusal::parse(closing.as_bytes()).is_some());
    }

    #[test]
    fn leaves_everything_else_alone() {
        let not = [
            // The application's answers carry more fields.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-content-type-options: nosniff\r\ndate: {DATE}\r\n\r\n"),
            // A body follows.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\ndate: {DATE}\r\n\r\n{{}}"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
            // Other statuses.
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            // Not a whole head, or not a head.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n".to_owned(),
            "0\r\n\r\n".to_owned(),
            String::new(),
            format!("HTTP/1.1 400 Bad Request\r\ndate: {DATE}\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {}\r\n\r\n", "x".repeat(300)),
        ];
        for write in &not {
            assert_eq!(Refusal::parse(write.as_bytes()), None, "{write:?}");
        }
    }

    #[test]
    fn the_answer_is_json_with_the_security_headers() {
        let refusal = Refusal {
            status: 431,
            date: Some(DATE),
        };
        let answer = refusal.json_answer(16384, 64);
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head.contains("\r\nconnection: close\r\n"));
        assert!(head.contains(&format!("\r\ndate: {DATE}\r\n")));
        assert!(head.contains("\r\nreferrer-policy: no-referrer\r\n"));
        assert!(head.contains("\r\ncache-control: no-store\r\n"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "headers_too_large");
        assert!(json["message"].as_str().unwrap().contains("16384 bytes"));
    }

    #[test]
    fn nothing_is_replaced_while_a_response_is_in_flight() {
        let in_flight = InFlight::default();
        let refusals = Refusals::new((), in_flight.clone(), 16384, 64);
        let head = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
        let busy = in_flight.enter();
        assert!(refusals.replacement(head.as_bytes()).is_none());
        drop(busy);
        assert!(refusals.replacement(head.as_bytes()).is_some());
    }
}
