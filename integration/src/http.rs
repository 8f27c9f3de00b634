//! A plain HTTP/1.1 client for the tests that talk to `routerctl metrics --listen` and to
//! Prometheus: one request per connection, on a loopback address.

use std::io::{Read, Write};
use std::time::Duration;

/// A reply: status code, the head (status line and headers) and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub head: String,
    pub body: String,
}

/// `METHOD path` with `extra` header lines (each ending in CRLF); the connection closes after
/// the reply. A reply without a complete head is an error.
pub fn request(addr: &str, method: &str, path: &str, extra: &str) -> std::io::Result<Reply> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{method} {path} on {addr}: no complete reply head in {text:?}"),
        )
    })?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        code,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// `GET path`.
pub fn get(addr: &str, path: &str) -> std::io::Result<Reply> {
    request(addr, "GET", path, "")
}
