//! The binary framing of `POST /raft/forward-batch` (follower → leader, many requests in one).
//!
//! Both directions start with the magic `VFB` and a format version byte (currently 1); a version
//! this node cannot read is refused with a clear error instead of being guessed at. Then a `u32`
//! item count and the items, every integer big-endian:
//!
//! - request item: method (`u16` length + bytes), path and query (`u32` + bytes), headers
//!   (`u16` count, each name `u16` + bytes and value `u32` + bytes), body (`u32` + bytes);
//! - answer frame: the index of the item it answers (`u32`), status (`u16`), headers (as
//!   above), body (`u32` + bytes).
//!
//! The answer is streamed: each frame is written as soon as its item is answered, in completion
//! order, so a slow item (a deploy that talks to workers) does not hold back the fast ones sent
//! with it ([`AnswerDecoder`] reads frames as they arrive). Bodies travel as they are (no
//! base64): the commands are JSON already. Decoding never trusts a length: every read is
//! checked against what is left.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::BytesMut;

/// Route of the batch endpoint (served by `forward_batch`, called by `forwarder`).
pub const PATH: &str = "/raft/forward-batch";
/// Magic at the start of every batch and every answer.
const MAGIC: &[u8; 3] = b"VFB";
/// Format version written by this node; the only one it reads.
pub const FORMAT_VERSION: u8 = 1;
/// Content type of both directions.
pub const CONTENT_TYPE: &str = "application/vnd.varpulis.forward-batch";

/// One forwarded request.
#[derive(Debug, Clone)]
pub struct WireRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query, as the client sent them.
    pub path_and_query: String,
    /// End-to-end headers (hop-by-hop ones already dropped).
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
}

/// The leader's answer to one forwarded request.
#[derive(Debug, Clone)]
pub struct WireResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// End-to-end headers of the answer.
    pub headers: HeaderMap,
    /// The answer body.
    pub body: Bytes,
}

/// A batch or answer that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Does not start with `VFB`.
    #[error("not a forward batch (bad magic)")]
    BadMagic,
    /// Written in a format version this node does not read.
    #[error("forward batch format version {0} is not supported (this node reads version {FORMAT_VERSION})")]
    Version(u8),
    /// Ends before a length says it should.
    #[error("forward batch truncated")]
    Truncated,
    /// Bytes after the last item.
    #[error("forward batch has trailing bytes")]
    Trailing,
    /// A method, path, header or status that is not valid HTTP.
    #[error("forward batch item is not valid HTTP: {0}")]
    Invalid(&'static str),
    /// More items than the receiver takes.
    #[error("forward batch has {0} items, more than allowed")]
    TooMany(usize),
}

/// Encodes a batch of requests.
pub fn encode_requests(items: &[WireRequest]) -> Vec<u8> {
    let size: usize = items.iter().map(request_size).sum();
    let mut out = Vec::with_capacity(8 + size);
    header(&mut out, items.len());
    for item in items {
        put_u16_bytes(&mut out, item.method.as_str().as_bytes());
        put_u32_bytes(&mut out, item.path_and_query.as_bytes());
        put_headers(&mut out, &item.headers);
        put_u32_bytes(&mut out, &item.body);
    }
    out
}

/// Encoded size of one request item (what a batch's byte budget counts).
pub fn request_size(item: &WireRequest) -> usize {
    2 + item.method.as_str().len()
        + 4
        + item.path_and_query.len()
        + headers_size(&item.headers)
        + 4
        + item.body.len()
}

/// Decodes a batch of requests holding at most `max_items`.
pub fn decode_requests(bytes: &Bytes, max_items: usize) -> Result<Vec<WireRequest>, WireError> {
    let mut r = Reader {
        bytes: bytes.as_ref(),
        pos: 0,
    };
    let count = r.header()?;
    if count > max_items {
        return Err(WireError::TooMany(count));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let method = r.u16_bytes()?;
        let method = Method::from_bytes(method).map_err(|_| WireError::Invalid("method"))?;
        let path = r.u32_bytes()?;
        let path_and_query = std::str::from_utf8(path)
            .map_err(|_| WireError::Invalid("path"))?
            .to_string();
        if !path_and_query.starts_with('/') {
            return Err(WireError::Invalid("path"));
        }
        let headers = r.headers()?;
        let start = r.pos;
        let body = r.u32_bytes()?;
        // The body is a slice of the batch: no copy.
        let body = bytes.slice(start + 4..start + 4 + body.len());
        items.push(WireRequest {
            method,
            path_and_query,
            headers,
            body,
        });
    }
    r.finish()?;
    Ok(items)
}

/// The start of a streamed answer to a batch of `count` requests.
pub fn encode_answer_header(count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    header(&mut out, count);
    out
}

/// One answer frame: the answer to the batch's item `index`.
pub fn encode_answer_frame(index: usize, answer: &WireResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + headers_size(&answer.headers) + answer.body.len());
    out.extend_from_slice(&(index as u32).to_be_bytes());
    out.extend_from_slice(&answer.status.as_u16().to_be_bytes());
    put_headers(&mut out, &answer.headers);
    put_u32_bytes(&mut out, &answer.body);
    out
}

/// Reads a streamed answer as its bytes arrive: feed chunks with [`AnswerDecoder::push`], take
/// complete frames with [`AnswerDecoder::next_frame`].
#[derive(Debug)]
pub struct AnswerDecoder {
    expected: usize,
    /// Items announced by the header, once it was read.
    count: Option<usize>,
    /// Received, not yet decoded; a decoded frame is split off its front and its body is a
    /// slice of it (no copy, no shifting of what follows).
    buf: BytesMut,
    answered: Vec<bool>,
}

impl AnswerDecoder {
    /// A decoder for the answer to a batch of `expected` requests.
    pub fn new(expected: usize) -> Self {
        Self {
            expected,
            count: None,
            buf: BytesMut::new(),
            answered: vec![false; expected],
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<(usize, WireResponse)>, WireError> {
        if self.count.is_none() {
            let mut r = Reader {
                bytes: &self.buf,
                pos: 0,
            };
            match r.header() {
                Ok(count) if count == self.expected => {
                    self.count = Some(count);
                    let _ = self.buf.split_to(r.pos);
                }
                Ok(_) => return Err(WireError::Invalid("answer count")),
                Err(WireError::Truncated) => return Ok(None),
                Err(WireError::BadMagic) if self.buf.len() < 3 => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let mut r = Reader {
            bytes: &self.buf,
            pos: 0,
        };
        let frame = (|| {
            let index = r.u32()? as usize;
            let status = r.u16()?;
            let headers = r.headers()?;
            let len = r.u32()? as usize;
            let start = r.pos;
            r.take(len)?;
            Ok((index, status, headers, start..start + len))
        })();
        let (index, status, headers, body) = match frame {
            Ok(frame) => frame,
            Err(WireError::Truncated) => return Ok(None),
            Err(e) => return Err(e),
        };
        let consumed = r.pos;
        let body = self.buf.split_to(consumed).freeze().slice(body);
        let status = StatusCode::from_u16(status).map_err(|_| WireError::Invalid("status"))?;
        match self.answered.get_mut(index) {
            Some(seen) if !*seen => *seen = true,
            _ => return Err(WireError::Invalid("answer index")),
        }
        Ok(Some((
            index,
            WireResponse {
                status,
                headers,
                body,
            },
        )))
    }

    /// Whether every item was answered and nothing is left over.
    pub fn complete(&self) -> bool {
        self.buf.is_empty() && self.answered.iter().all(|a| *a)
    }
}

fn header(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(count as u32).to_be_bytes());
}

fn headers_size(headers: &HeaderMap) -> usize {
    2 + headers
        .iter()
        .map(|(n, v)| 2 + n.as_str().len() + 4 + v.len())
        .sum::<usize>()
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    // A request never carries 65,535 headers (hyper refuses far fewer); cap defensively.
    let count = headers.len().min(u16::MAX as usize);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for (name, value) in headers.iter().take(count) {
        put_u16_bytes(out, name.as_str().as_bytes());
        put_u32_bytes(out, value.as_bytes());
    }
}

fn put_u16_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..len]);
}

fn put_u32_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(u32::MAX as usize);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&bytes[..len]);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        if end > self.bytes.len() {
            return Err(WireError::Truncated);
        }
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    fn u32_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn header(&mut self) -> Result<usize, WireError> {
        if self.take(3).map_err(|_| WireError::BadMagic)? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = self.take(1)?[0];
        if version != FORMAT_VERSION {
            return Err(WireError::Version(version));
        }
        Ok(self.u32()? as usize)
    }

    fn headers(&mut self) -> Result<HeaderMap, WireError> {
        let count = self.u16()? as usize;
        let mut headers = HeaderMap::with_capacity(count);
        for _ in 0..count {
            let name = self.u16_bytes()?;
            let name =
                HeaderName::from_bytes(name).map_err(|_| WireError::Invalid("header name"))?;
            let value = self.u32_bytes()?;
            let value =
                HeaderValue::from_bytes(value).map_err(|_| WireError::Invalid("header value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> WireRequest {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        WireRequest {
            method: Method::POST,
            path_and_query: format!("/api/v1/cluster/connectors?n={n}"),
            headers,
            body: Bytes::from(format!("{{\"n\":{n}}}")),
        }
    }

    #[test]
    fn requests_round_trip_in_order_with_repeated_headers() {
        let items: Vec<_> = (0..5).map(request).collect();
        let bytes = Bytes::from(encode_requests(&items));
        assert_eq!(
            bytes.len(),
            8 + items.iter().map(request_size).sum::<usize>()
        );
        let back = decode_requests(&bytes, 10).unwrap();
        assert_eq!(back.len(), 5);
        for (a, b) in items.iter().zip(&back) {
            assert_eq!(a.method, b.method);
            assert_eq!(a.path_and_query, b.path_and_query);
            assert_eq!(a.body, b.body);
            assert_eq!(
                b.headers.get_all("x-multi").iter().count(),
                2,
                "repeated headers survive"
            );
        }
    }

    #[test]
    fn streamed_answers_arrive_out_of_order_in_any_chunking() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("1"));
        let conflict = WireResponse {
            status: StatusCode::CONFLICT,
            headers,
            body: Bytes::from_static(b"{\"code\":\"conflict\"}"),
        };
        let created = WireResponse {
            status: StatusCode::CREATED,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let mut stream = encode_answer_header(2);
        stream.extend(encode_answer_frame(1, &created));
        stream.extend(encode_answer_frame(0, &conflict));
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut decoder = AnswerDecoder::new(2);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert!(decoder.complete(), "chunks of {chunk}");
            assert_eq!(got.len(), 2);
            assert_eq!((got[0].0, got[0].1.status), (1, StatusCode::CREATED));
            assert_eq!((got[1].0, got[1].1.status), (0, StatusCode::CONFLICT));
            assert_eq!(got[1].1.headers["retry-after"], "1");
            assert_eq!(got[1].1.body, conflict.body);
        }
        // The wrong count, an index out of range, an index answered twice: errors.
        let mut decoder = AnswerDecoder::new(3);
        decoder.push(&stream);
        assert_eq!(
            decoder.next_frame().unwrap_err(),
            WireError::Invalid("answer count")
        );
        let mut bad = encode_answer_header(1);
        bad.extend(encode_answer_frame(5, &created));
        let mut decoder = AnswerDecoder::new(1);
        decoder.push(&bad);
        assert_eq!(
            decoder.next_frame().unwrap_err(),
            WireError::Invalid("answer index")
        );
        let mut twice = encode_answer_header(2);
        twice.extend(encode_answer_frame(0, &created));
        twice.extend(encode_answer_frame(0, &created));
        let mut decoder = AnswerDecoder::new(2);
        decoder.push(&twice);
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(decoder.next_frame().is_err());
        assert!(!decoder.complete());
    }

    #[test]
    fn hostile_batches_are_refused_not_trusted() {
        let good = encode_requests(&[request(1)]);
        // Every truncation is an error, never a panic.
        for cut in 0..good.len() {
            let bytes = Bytes::copy_from_slice(&good[..cut]);
            assert!(decode_requests(&bytes, 10).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode_requests(&Bytes::from(trailing), 10).unwrap_err(),
            WireError::Trailing
        );
        let mut version = good.clone();
        version[3] = 9;
        assert_eq!(
            decode_requests(&Bytes::from(version), 10).unwrap_err(),
            WireError::Version(9)
        );
        assert_eq!(
            decode_requests(&Bytes::from_static(b"XYZ\x01\0\0\0\0"), 10).unwrap_err(),
            WireError::BadMagic
        );
        // A count far beyond the bytes present: refused by the bound, no huge allocation.
        let huge = Bytes::from_static(b"VFB\x01\xff\xff\xff\xff");
        assert_eq!(
            decode_requests(&huge, 1024).unwrap_err(),
            WireError::TooMany(u32::MAX as usize)
        );
        // A length that points past the end.
        let mut lying = good.clone();
        lying[8] = 0xff;
        assert!(decode_requests(&Bytes::from(lying), 10).is_err());
        // A path that is not a path.
        let mut bad = request(1);
        bad.path_and_query = "http://elsewhere/".into();
        let bytes = Bytes::from(encode_requests(&[bad]));
        assert_eq!(
            decode_requests(&bytes, 10).unwrap_err(),
            WireError::Invalid("path")
        );
    }
}
