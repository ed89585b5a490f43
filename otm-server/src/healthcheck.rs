//! `otm-server healthcheck`: asks a running server's `/healthz` and exits 0
//! when it answers 200, 1 otherwise. It needs no shell, no curl and no TLS,
//! so it works as a container image's health check (`FROM scratch`). It
//! reads the same `--listen` / `--admin-listen` settings (flags or `OTM_*`
//! environment) as the server it checks, and asks the admin address when
//! one is set.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Where to ask: `address`, with an unspecified IP (`0.0.0.0`, `::`)
/// replaced by the loopback address of the same family.
pub(crate) fn target(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

/// One `GET /healthz` over plain HTTP/1.1 to `address`, all of it within
/// `timeout`: `Ok` with the status line for a 200, `Err` saying what went
/// wrong otherwise.
pub(crate) fn check(address: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer from http://{address}/healthz within {timeout:?}"))
    };
    let mut stream = TcpStream::connect_timeout(&address, left()?)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|()| {
            write!(
                stream,
                "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
            )
        })
        .map_err(|e| format!("cannot send to {address}: {e}"))?;
    // The status line is all that is needed; the answer is small.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("{address}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer from {address}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    let mut parts = status_line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(status_line),
        _ if status_line.is_empty() => {
            Err(format!("{address} closed the connection without an answer"))
        }
        _ => Err(format!("http://{address}/healthz answered `{status_line}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(
            target("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            target("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            target("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    /// A one-connection server that answers `reply` (or nothing).
    fn answering(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut request = [0u8; 512];
                let _ = s.read(&mut request);
                let _ = s.write_all(reply);
                // Keep the connection open a moment when silent.
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        address
    }

    #[test]
    fn only_a_200_is_healthy() {
        let second = Duration::from_secs(1);
        assert!(check(
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            second
        )
        .is_ok());
        let err = check(
            answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            second,
        )
        .unwrap_err();
        assert!(err.contains("503"), "{err}");
        let err = check(answering(b"SSH-2.0-OpenSSH\r\n"), second).unwrap_err();
        assert!(err.contains("SSH"), "{err}");
        let err = check(answering(b""), Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("no answer") || err.contains("closed"), "{err}");
        // Nothing listening.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check(closed, second).unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}
