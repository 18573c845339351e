//! Streaming replay of an event file (`.evt` lines, JSON lines, or both mixed; VPL.md §13): lines
//! are read, parsed and handed out one at a time, so memory does not grow with the file.
//!
//! * [`ReplayOrder::File`]: events in file order, each as soon as its line is read.
//! * [`ReplayOrder::Time`]: events by offset, ties in file order, through a *bounded reorder
//!   window* of `window` events: an event is handed out once `window` later events have been
//!   read (or the input ended), smallest offset first. Every event displaced by at most `window`
//!   lines from its sorted position comes out exactly as a full stable sort would place it. An
//!   event whose offset is smaller than one already handed out (displaced further) is handed out
//!   at once, out of order, and counted ([`EvtStream::late`]); nothing is dropped. Memory: at
//!   most `window` events are held.
//! * A bad line ends the stream with its [`EvtError`] (line number); events before it have
//!   been handed out already.

use crate::event::Event;
use crate::evt::{EvtError, LineParser};
use crate::evt_fast::{parse_named, Names};
use crate::evt_scan::{scan_line, LineReader};
use std::collections::VecDeque;
use std::io::Read;

/// The reorder window of `varpulis run` by default (events).
pub const DEFAULT_REORDER_WINDOW: usize = 10_000;

/// In which order [`EvtStream`] hands out events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOrder {
    /// As written.
    File,
    /// By offset (stable) within a reorder window of this many events (at least 1).
    Time {
        /// Events held at most.
        window: usize,
    },
}

struct Held {
    ts: i64,
    event: Event,
}

/// Events of an event file read incrementally from `R`.
pub struct EvtStream<R> {
    lines: LineReader<R>,
    line_no: usize,
    parser: LineParser,
    names: Names,
    order: ReplayOrder,
    /// Held events sorted by offset, ties in file order (mostly appended: input is mostly
    /// sorted, so inserting a displaced event moves few entries).
    held: VecDeque<Held>,
    released: Option<i64>,
    late: u64,
    ended: bool,
}

impl<R: Read> EvtStream<R> {
    /// A stream over `reader` in `order` (it does its own buffering: `reader` may be a file).
    pub fn new(reader: R, order: ReplayOrder) -> Self {
        EvtStream {
            lines: LineReader::new(reader),
            line_no: 0,
            parser: LineParser::default(),
            names: Names::default(),
            order,
            held: VecDeque::new(),
            released: None,
            late: 0,
            ended: false,
        }
    }

    /// Events handed out with an offset smaller than an earlier one's (displaced by more than
    /// the reorder window).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Hands back an event this stream produced once it has been processed: its field list is
    /// reused for a later event when nothing else holds it any more.
    pub fn recycle(&mut self, event: Event) {
        self.names.recycle(event);
    }

    /// Whether the next line is already buffered (or the input ended), so that reading it does
    /// not wait (on a pipe).
    pub fn line_ready(&mut self) -> bool {
        self.lines.line_ready()
    }

    /// Reads the next event line in file order (`Ok(None)`: end of input).
    fn read_event(&mut self) -> Result<Option<Event>, EvtError> {
        loop {
            self.line_no += 1;
            let line = match self.lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(EvtError {
                        line: self.line_no,
                        message: format!("cannot read: {e}"),
                    })
                }
            };
            if let Some(ev) = scan_line(line, self.parser.batch_ms(), &mut self.names) {
                return Ok(Some(ev));
            }
            let text = std::str::from_utf8(line).map_err(|_| EvtError {
                line: self.line_no,
                message: "cannot read: stream did not contain valid UTF-8".into(),
            })?;
            let names = &mut self.names;
            let mut fast = |body: &str, ts: i64| parse_named(body, ts, names);
            if let Some(ev) = self.parser.line(text, self.line_no, Some(&mut fast))? {
                return Ok(Some(ev));
            }
        }
    }

    fn release(&mut self) -> Option<Event> {
        let h = self.held.pop_front()?;
        match self.released {
            Some(r) if h.ts < r => self.late += 1,
            _ => self.released = Some(h.ts),
        }
        Some(h.event)
    }
}

impl<R: Read> Iterator for EvtStream<R> {
    type Item = Result<Event, EvtError>;

    fn next(&mut self) -> Option<Self::Item> {
        let window = match self.order {
            ReplayOrder::File => {
                if self.ended {
                    return None;
                }
                return match self.read_event() {
                    Ok(Some(e)) => Some(Ok(e)),
                    Ok(None) => {
                        self.ended = true;
                        None
                    }
                    Err(e) => {
                        self.ended = true;
                        Some(Err(e))
                    }
                };
            }
            ReplayOrder::Time { window } => window.max(1),
        };
        while !self.ended && self.held.len() <= window {
            match self.read_event() {
                Ok(Some(event)) => {
                    let ts = event.timestamp_ns;
                    // After every held event with an offset <= ts (stable).
                    if self.held.back().is_none_or(|h| h.ts <= ts) {
                        self.held.push_back(Held { ts, event });
                    } else {
                        let at = self.held.partition_point(|h| h.ts <= ts);
                        self.held.insert(at, Held { ts, event });
                    }
                }
                Ok(None) => self.ended = true,
                Err(e) => {
                    // The error ends the replay where it is found; held events are dropped
                    // with it (the caller stops with the error).
                    self.ended = true;
                    self.held.clear();
                    return Some(Err(e));
                }
            }
        }
        self.release().map(Ok)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::evt::{parse_evt, parse_evt_in_file_order};
    use proptest::prelude::*;

    fn collect(text: &str, order: ReplayOrder) -> (Vec<Event>, u64) {
        let mut s = EvtStream::new(text.as_bytes(), order);
        let evs = s.by_ref().map(Result::unwrap).collect();
        (evs, s.late())
    }

    fn key(e: &Event) -> (i64, String) {
        (e.timestamp_ns, e.to_json().to_string())
    }

    #[test]
    fn errors_name_the_line_and_end_the_stream() {
        let mut s = EvtStream::new(
            "T {a: 1}\n\nT {a: \"open}\nT {a: 2}\n".as_bytes(),
            ReplayOrder::File,
        );
        assert!(s.next().unwrap().is_ok());
        assert_eq!(s.next().unwrap().unwrap_err().line, 3);
        assert!(s.next().is_none());
    }

    #[test]
    fn invalid_utf8_is_an_error_on_its_line() {
        let text: &[u8] = b"T {a: 1}\nT {a: \"\xff\"}\nT {a: 2}\n";
        let mut s = EvtStream::new(text, ReplayOrder::File);
        assert!(s.next().unwrap().is_ok());
        let e = s.next().unwrap().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        assert!(s.next().is_none());
    }

    #[test]
    fn beyond_the_window_events_come_late_not_lost() {
        // Ten events at offsets 10..19, then one at offset 0: with a window of 4 it is
        // handed out after six others, counted late; with 16 it is sorted.
        let mut text = String::new();
        for i in 10..20 {
            text.push_str(&format!("@{i} T {{i: {i}}}\n"));
        }
        text.push_str("@0 T {i: 0}\n");
        let (evs, late) = collect(&text, ReplayOrder::Time { window: 4 });
        assert_eq!(evs.len(), 11);
        assert_eq!(late, 1);
        assert_eq!(evs[6].timestamp_ns, 0);
        let (evs, late) = collect(&text, ReplayOrder::Time { window: 16 });
        assert_eq!(late, 0);
        assert_eq!(evs[0].timestamp_ns, 0);
    }

    proptest! {
        /// Within the window, the stream equals the whole-file stable sort; in file order it
        /// equals the old parser; beyond the window nothing is lost.
        #[test]
        fn stream_matches_the_whole_file_parser(
            offsets in prop::collection::vec(0i64..50, 0..60),
            window in 1usize..70,
            batch_every in 3usize..10,
        ) {
            let mut text = String::new();
            for (i, o) in offsets.iter().enumerate() {
                if i % batch_every == 0 {
                    text.push_str(&format!("BATCH {}\n# comment\n", o * 2));
                }
                if i % 2 == 0 {
                    text.push_str(&format!("@{o} Reading {{ n: {i}, s: \"x{}\" }}\n", i % 3));
                } else {
                    text.push_str(&format!("{{\"event_type\": \"J\", \"data\": {{\"n\": {i}}}}}\n"));
                }
            }
            let (file, _) = collect(&text, ReplayOrder::File);
            let old: Vec<_> = parse_evt_in_file_order(&text).unwrap().iter().map(key).collect();
            prop_assert_eq!(file.iter().map(key).collect::<Vec<_>>(), old);
            let sorted: Vec<_> = parse_evt(&text).unwrap().iter().map(key).collect();
            let (timed, late) = collect(&text, ReplayOrder::Time { window });
            let timed: Vec<_> = timed.iter().map(key).collect();
            if window > offsets.len() {
                prop_assert_eq!(&timed, &sorted);
                prop_assert_eq!(late, 0);
            }
            let mut a = timed.clone();
            a.sort();
            let mut b = sorted.clone();
            b.sort();
            prop_assert_eq!(a, b);
        }
    }
}
