//! Printing for client commands that survives a closed pipe.
//!
//! `println!` panics when stdout is a pipe whose reader went away (`varpulis cluster topology |
//! head`): Rust ignores SIGPIPE, so the write fails with `EPIPE` and the macro panics. Commands
//! print through [`outln!`] instead, which returns the failure as an [`std::io::Error`] of kind
//! `BrokenPipe`; `main` ends the process quietly on it ([`is_broken_pipe`]). Messages for the
//! user go through [`errln!`], which never fails.

use std::io::{self, Write};

/// Writes `text` and a newline to stdout and flushes, so a follower (`events`, `output`) shows
/// each line at once and notices a closed pipe on the next line.
pub fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `text` and a newline to stderr, ignoring failures (nothing else could report them).
pub fn err_line(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.write_all(b"\n");
}

/// Whether `err` (or an error it wraps) is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns `io::Result<()>` instead of panicking on a closed stdout.
macro_rules! outln {
    () => {
        $crate::cmd::output::line("")
    };
    ($($arg:tt)*) => {
        $crate::cmd::output::line(&format!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cmd::output::err_line(&format!($($arg)*))
    };
}

pub(crate) use errln;
pub(crate) use outln;

/// Prints rows as an aligned table under `headers` (cells padded to the widest of each column).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(cell.chars().count()),
                None => widths.push(cell.chars().count()),
            }
        }
    }
    let render = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_owned()
    };
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    line(&render(&head))?;
    for row in rows {
        line(&render(row))?;
    }
    Ok(())
}

/// Pretty-prints a JSON value on stdout.
pub fn json(value: &serde_json::Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    line(&text)
}

/// `x` as text, or `-` when absent.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_found_through_context() {
        let err =
            anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("printing");
        assert!(is_broken_pipe(&err));
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
        assert!(!is_broken_pipe(&anyhow::anyhow!("plain")));
    }
}
