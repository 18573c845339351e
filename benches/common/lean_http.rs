//! A lean HTTP/1.1 keep-alive client for the write benchmarks: one TCP connection per client,
//! the request head written into a reused buffer, the answer parsed by hand (status line,
//! `content-length`, body). No connection pool, header map, URL parsing or body stream per
//! request, so on a shared 2-core box the load generator takes as little CPU as it can from the
//! servers it measures (reqwest costs several times more per request).
//!
//! Only what the coordinator answers is understood: a `content-length` body (a chunked answer
//! is an error). A connection the server closes (`connection: close`, or EOF) is reopened on
//! the next request.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection to `addr` sending `POST path` requests.
pub struct LeanClient {
    addr: String,
    /// `POST {path} HTTP/1.1` and the fixed headers, up to (excluding) `content-length`.
    head: Vec<u8>,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

/// One answer: the status and the body.
pub struct LeanResponse {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl LeanClient {
    /// A client of `http://{addr}{path}` sending `headers` (name, value) on every request.
    pub fn new(addr: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("content-type: application/json\r\n");
        Self {
            addr: addr.to_owned(),
            head: head.into_bytes(),
            stream: None,
            out: Vec::with_capacity(1024),
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends `body` and reads the answer; reconnects first when the previous answer closed
    /// the connection.
    pub async fn post(&mut self, body: &[u8]) -> io::Result<LeanResponse> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        self.out.extend_from_slice(b"content-length: ");
        self.out
            .extend_from_slice(body.len().to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        let result = self.exchange().await;
        if !matches!(&result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(response, _)| response)
    }

    /// Writes `out`, reads one answer; the flag says whether the connection stays open.
    async fn exchange(&mut self) -> io::Result<(LeanResponse, bool)> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no connection"));
        };
        stream.write_all(&self.out).await?;
        // Read until the head is complete.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| bad("answer head is not UTF-8"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad("no status in the answer"))?;
        let mut length = None;
        let mut keep_alive = true;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked answers are not supported"));
            }
        }
        let length = length.ok_or_else(|| bad("answer without content-length"))?;
        while self.buf.len() < head_end + length {
            read_more(stream, &mut self.buf).await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        Ok((LeanResponse { status, body }, keep_alive))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
