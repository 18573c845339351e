//! Following a Server-Sent Events stream of the coordinators (`events`, `groups output`).
//!
//! The stream is read from the first coordinator that answers; when it closes or fails the next
//! one is tried after a short pause, resuming after the last event id seen (streams that have
//! ids). A 4xx answer (unknown group, wrong key) ends the follow with that error.

use anyhow::bail;
use reqwest::Method;
use std::time::Duration;
use varpulis_api::ErrorBody;

use super::client::{error_message, transport_reason, Client, ClientError};
use crate::cmd::output::errln;

/// How long one stream may stay open (the client's `--timeout` must not cut it).
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// Pause before reconnecting.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:` (absent on streams without ids).
    pub id: Option<String>,
    /// `event:` (default `message`).
    pub kind: String,
    /// The joined `data:` lines.
    pub data: String,
}

/// Parses one block (the text between two blank lines); `None` for comments and keep-alives.
pub fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut kind = "message".to_owned();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => kind = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent {
        id,
        kind,
        data: data.join("\n"),
    })
}

/// Whether to keep reading after an event.
pub enum Flow {
    /// Read on.
    Continue,
    /// Stop following (e.g. `--count` reached).
    Stop,
}

/// Follows the stream `path(last_id)` over the coordinators, calling `on_event` for each event,
/// until `on_event` says stop or fails (a closed stdout ends the follow that way).
pub async fn follow(
    c: &Client,
    path: impl Fn(Option<&str>) -> String,
    mut last_id: Option<String>,
    mut on_event: impl FnMut(SseEvent) -> anyhow::Result<Flow>,
) -> anyhow::Result<()> {
    let mut attempt = 0usize;
    loop {
        let url = &c.urls[attempt % c.urls.len()];
        attempt += 1;
        let p = path(last_id.as_deref());
        let req = c.builder(url, Method::GET, &p).timeout(STREAM_TIMEOUT);
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let parsed = serde_json::from_str::<ErrorBody>(&text).ok();
                if status.is_client_error() && status.as_u16() != 421 {
                    return Err(ClientError::Http {
                        method: Method::GET,
                        path: p,
                        url: url.clone(),
                        status,
                        message: error_message(parsed.as_ref(), &text),
                    }
                    .into());
                }
                errln!("{url}: HTTP {status}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                errln!("{url}: {}; retrying", transport_reason(&e));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut buffer: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = find_blank_line(&buffer) {
                let block: Vec<u8> = buffer.drain(..end).collect();
                let Some(event) = parse_block(&String::from_utf8_lossy(&block)) else {
                    continue;
                };
                if event.id.is_some() {
                    last_id.clone_from(&event.id);
                }
                if let Flow::Stop = on_event(event)? {
                    return Ok(());
                }
            }
        }
        errln!("{url}: stream closed; reconnecting");
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// End (exclusive, blank line included) of the first complete block in `buf`.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Fails when `n` is zero (a `--count 0` would never print anything).
pub fn check_count(n: Option<u64>) -> anyhow::Result<()> {
    if n == Some(0) {
        bail!("--count must be at least 1");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_like_the_spec_says() {
        let e = parse_block("id: 57.1\nevent: worker_unhealthy\ndata: {\"a\":1}\n\n").unwrap();
        assert_eq!(e.id.as_deref(), Some("57.1"));
        assert_eq!(e.kind, "worker_unhealthy");
        assert_eq!(e.data, "{\"a\":1}");
        let e = parse_block("data:x\r\ndata: y\r\n\r\n").unwrap();
        assert_eq!((e.kind.as_str(), e.data.as_str()), ("message", "x\ny"));
        assert!(parse_block(": keep-alive\n\n").is_none());
        assert!(parse_block("event: ping\n\n").is_none());
    }

    #[test]
    fn blank_lines_split_blocks() {
        assert_eq!(find_blank_line(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_blank_line(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(find_blank_line(b"data: a\n"), None);
    }
}
