//! An event file read and parsed on a thread of its own ([`ParsedEvents`]), so that a replay
//! parses the next events while the engine processes the previous ones (`varpulis run`).
//!
//! * The reader thread drives an [`EvtStream`] (same order, same reorder window, same errors)
//!   and sends its events in batches of at most [`BATCH_EVENTS`] through a channel of at most
//!   [`BATCHES_IN_FLIGHT`] batches: memory stays bounded whatever the file's length.
//! * A batch is sent when it is full, or earlier when the next line is not buffered yet (a pipe
//!   that may wait): events that arrived are never held back waiting for more input.
//! * Processed batches come back ([`ParsedEvents::recycle`]) so their field lists are reused by
//!   the reader thread: no allocation per event, and the events are dropped on the thread that
//!   made them.
//! * A bad line ends the batches with its [`EvtError`] after the events before it; the end of
//!   the input ends them with `Ok`. Dropping [`ParsedEvents`] lets the thread stop at its next
//!   send (a thread blocked reading a pipe stops when the process exits).

use crate::event::Event;
use crate::evt::EvtError;
use crate::evt_stream::{EvtStream, ReplayOrder};
use crate::value::Value;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};

/// Events per batch at most.
pub const BATCH_EVENTS: usize = 512;
/// Batches parsed ahead of the engine at most.
pub const BATCHES_IN_FLIGHT: usize = 4;

/// What the reader thread hands over next.
#[derive(Debug)]
pub enum Batch {
    /// Events in replay order (never empty).
    Events(Vec<Event>),
    /// The end: of the input (`Ok`) or at a bad line.
    End(Result<(), EvtError>),
}

enum Msg {
    Events(Vec<Event>),
    End {
        late: u64,
        result: Result<(), EvtError>,
    },
}

/// The events of a reader, parsed on a thread of its own.
pub struct ParsedEvents {
    rx: Receiver<Msg>,
    back: Sender<Vec<Event>>,
    late: u64,
    ended: bool,
}

impl ParsedEvents {
    /// Starts the reader thread over `reader` in `order`.
    pub fn spawn<R: Read + Send + 'static>(reader: R, order: ReplayOrder) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let (back, back_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("evt-reader".into())
            .spawn(move || read_loop(EvtStream::new(reader, order), &tx, &back_rx))?;
        Ok(ParsedEvents {
            rx,
            back,
            late: 0,
            ended: false,
        })
    }

    /// The next batch if the reader thread has one ready (`None`: not yet; waiting for it may
    /// block).
    pub fn try_next(&mut self) -> Option<Batch> {
        if self.ended {
            return Some(Batch::End(Ok(())));
        }
        match self.rx.try_recv() {
            Ok(m) => Some(self.take(m)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(self.lost()),
        }
    }

    /// The next batch, waiting for it.
    pub fn next_batch(&mut self) -> Batch {
        if self.ended {
            return Batch::End(Ok(()));
        }
        match self.rx.recv() {
            Ok(m) => self.take(m),
            Err(_) => self.lost(),
        }
    }

    /// Hands a processed batch back: its events' field lists are reused for later events when
    /// nothing else holds them.
    pub fn recycle(&self, batch: Vec<Event>) {
        // The thread is gone once the input ended: the batch is simply dropped.
        let _ = self.back.send(batch);
    }

    /// Events handed out with an offset smaller than an earlier one's (known at the end).
    pub fn late(&self) -> u64 {
        self.late
    }

    fn take(&mut self, m: Msg) -> Batch {
        match m {
            Msg::Events(events) => Batch::Events(events),
            Msg::End { late, result } => {
                self.late = late;
                self.ended = true;
                Batch::End(result)
            }
        }
    }

    /// The thread ended without saying so (it panicked).
    fn lost(&mut self) -> Batch {
        self.ended = true;
        Batch::End(Err(EvtError {
            line: 0,
            message: "the event reader stopped unexpectedly".into(),
        }))
    }
}

/// Reads every event of `batch` once: its field list and its string values. The reader thread
/// wrote them on the other core; read here in a tight loop, many of those cache misses are in
/// flight together, instead of one after another while each event is processed (`varpulis run`
/// calls it on each batch before processing it).
pub fn warm(batch: &[Event]) {
    let mut sum = 0usize;
    for e in batch {
        sum = sum.wrapping_add(e.fields.len());
    }
    for e in batch {
        for (_, v) in e.fields.iter() {
            if let Value::Str(s) = v {
                sum = sum.wrapping_add(usize::from(s.as_bytes().first().copied().unwrap_or(0)));
            }
        }
    }
    std::hint::black_box(sum);
}

/// The reader thread: parses, batches, sends; takes processed batches back.
fn read_loop<R: Read>(mut stream: EvtStream<R>, tx: &SyncSender<Msg>, back: &Receiver<Vec<Event>>) {
    let mut spare: Vec<Vec<Event>> = Vec::new();
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH_EVENTS);
    loop {
        if !batch.is_empty() && (batch.len() >= BATCH_EVENTS || !stream.line_ready()) {
            while let Ok(mut done) = back.try_recv() {
                for event in done.drain(..) {
                    stream.recycle(event);
                }
                if spare.len() <= BATCHES_IN_FLIGHT {
                    spare.push(done);
                }
            }
            let next = spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BATCH_EVENTS));
            if tx
                .send(Msg::Events(std::mem::replace(&mut batch, next)))
                .is_err()
            {
                return;
            }
        }
        let result = match stream.next() {
            Some(Ok(event)) => {
                batch.push(event);
                continue;
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        if !batch.is_empty() && tx.send(Msg::Events(batch)).is_err() {
            return;
        }
        let _ = tx.send(Msg::End {
            late: stream.late(),
            result,
        });
        return;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every event of `text` (offset and JSON, taken before its batch is recycled, so that
    /// field lists are reused in place), and the end.
    fn drain(text: &str, order: ReplayOrder) -> (Vec<(i64, String)>, Result<(), EvtError>, u64) {
        let mut p = ParsedEvents::spawn(std::io::Cursor::new(text.to_string()), order).unwrap();
        let mut all = Vec::new();
        loop {
            match p.next_batch() {
                Batch::Events(b) => {
                    assert!(!b.is_empty() && b.len() <= BATCH_EVENTS);
                    all.extend(json(&b));
                    p.recycle(b);
                }
                Batch::End(r) => return (all, r, p.late()),
            }
        }
    }

    fn json(events: &[Event]) -> Vec<(i64, String)> {
        events
            .iter()
            .map(|e| {
                let names: Vec<&str> = e.fields.iter().map(|(k, _)| &**k).collect();
                (
                    e.timestamp_ns,
                    format!("{} {:?} {}", e.event_type, names, e.to_json()),
                )
            })
            .collect()
    }

    #[test]
    fn a_bad_line_ends_the_batches_after_the_events_before_it() {
        let mut text = String::new();
        for i in 0..2_000 {
            text.push_str(&format!("@{i} T {{ i: {i} }}\n"));
        }
        text.push_str("T { i: \"open }\nT { i: 1 }\n");
        let (events, end, _) = drain(&text, ReplayOrder::File);
        assert_eq!(events.len(), 2_000);
        assert_eq!(end.unwrap_err().line, 2_001);
    }

    #[test]
    fn late_events_are_counted_at_the_end() {
        let mut text = String::new();
        for i in 10..20 {
            text.push_str(&format!("@{i} T {{i: {i}}}\n"));
        }
        text.push_str("@0 T {i: 0}\n");
        let (events, end, late) = drain(&text, ReplayOrder::Time { window: 4 });
        assert!(end.is_ok());
        assert_eq!(events.len(), 11);
        assert_eq!(late, 1);
    }

    #[test]
    fn events_on_a_pipe_are_handed_over_before_more_input_comes() {
        let (r, mut w) = std::io::pipe().unwrap();
        let mut p = ParsedEvents::spawn(r, ReplayOrder::File).unwrap();
        use std::io::Write;
        w.write_all(b"T { a: 1 }\nT { a: 2 }\n").unwrap();
        // The writer stays open: both events come without waiting for more lines.
        let mut got = 0;
        while got < 2 {
            match p.next_batch() {
                Batch::Events(b) => got += b.len(),
                Batch::End(r) => panic!("ended early: {r:?}"),
            }
        }
        assert!(p.try_next().is_none());
        drop(w);
        assert!(matches!(p.next_batch(), Batch::End(Ok(()))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The batches carry exactly the events of the single-threaded stream, in its order.
        #[test]
        fn batches_equal_the_stream(
            offsets in prop::collection::vec(0i64..50, 0..1_500),
            window in 1usize..40,
            time in any::<bool>(),
        ) {
            let mut text = String::new();
            for (i, o) in offsets.iter().enumerate() {
                if i % 7 == 0 {
                    text.push_str(&format!("BATCH {}\n", o * 2));
                }
                // Shapes change from line to line: recycled field lists are overwritten in
                // place, renamed, grown and shortened.
                let line = match (o + i as i64) % 6 {
                    0 => format!("@{o} R {{ n: {i}, s: \"x{}\" }}\n", i % 3),
                    1 => format!("@{o} R {{ s: \"y{}\", n: {i}.5 }}\n", i % 2),
                    2 => format!("@{o} Q {{ n: {i} }}\n"),
                    3 => format!("@{o} R {{ n: -{i}, s: \"x\", t: true, u: null }}\n"),
                    4 => format!("@{o} R {{}}\n"),
                    _ => format!("@{o} R {{ n: [{i}, 2], s: 'q' }}\n"),
                };
                text.push_str(&line);
            }
            let order = if time { ReplayOrder::Time { window } } else { ReplayOrder::File };
            let mut stream = EvtStream::new(text.as_bytes(), order);
            let single: Vec<Event> = stream.by_ref().map(Result::unwrap).collect();
            let (piped, end, late) = drain(&text, order);
            prop_assert!(end.is_ok());
            prop_assert_eq!(late, stream.late());
            prop_assert_eq!(piped, json(&single));
        }
    }
}
