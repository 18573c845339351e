//! The file sink (kind `file`, docs/connectors.md): JSON lines appended to `path`, one output
//! per line in the egress shape (`{"event_type", "timestamp", <fields…>}`, readable back as
//! `.evt` JSON lines), rotated by size. Also used by `varpulis run`.
//!
//! Rotation: before a line would take the file past `rotate_bytes` (and the file is not
//! empty), it is flushed and renamed `path.1`, older rotations shifting to `path.2`, `path.3`…
//! (the highest number is the oldest; none are deleted), and a new `path` is started. A single
//! line longer than `rotate_bytes` gets a file of its own. The file is opened in append mode,
//! so a restart continues it. Lines reach the OS after each batch; `finish` (pipeline stop,
//! SIGTERM) also fsyncs.

use super::lines::LineTarget;
use super::plan::output::FileParams;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An append-only JSON-lines file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotate_bytes: Option<u64>,
    out: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
}

impl RotatingFile {
    /// Opens (creating, appending) the file of `params`; its parent directory must exist.
    pub fn open(params: &FileParams) -> std::io::Result<Self> {
        let (out, size) = open_append(&params.path)?;
        Ok(Self {
            path: params.path.clone(),
            rotate_bytes: params.rotate_bytes,
            out,
            size,
        })
    }

    /// Writes one line (without its newline), rotating first when it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if let Some(max) = self.rotate_bytes {
            if self.size > 0 && self.size + len > max {
                self.rotate()?;
            }
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u64| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        let mut highest = 0;
        while numbered(highest + 1).exists() {
            highest += 1;
        }
        for n in (1..=highest).rev() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
        std::fs::rename(&self.path, numbered(1))?;
        let (out, size) = open_append(&self.path)?;
        self.out = out;
        self.size = size;
        Ok(())
    }

    /// Flushes buffered lines to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata()?.len();
    Ok((BufWriter::with_capacity(64 * 1024, f), size))
}

impl LineTarget for RotatingFile {
    fn write_lines(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        for l in lines {
            self.write_line(l)?;
        }
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeping_every_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let params = FileParams {
            path: path.clone(),
            rotate_bytes: Some(30),
        };
        let mut f = RotatingFile::open(&params).unwrap();
        let lines: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("{{\"n\":{i:04}}}").into_bytes())
            .collect();
        f.write_lines(&lines).unwrap();
        f.finish().unwrap();
        // 11 bytes per line: two per file, five files, the oldest with the highest number.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let mut all = String::new();
        for n in (1..=4).rev() {
            let text = read(&dir.path().join(format!("out.jsonl.{n}")));
            assert!(text.len() <= 30, "{text}");
            all.push_str(&text);
        }
        all.push_str(&read(&path));
        let expected: String = (0..10).map(|i| format!("{{\"n\":{i:04}}}\n")).collect();
        assert_eq!(all, expected);
        assert!(!dir.path().join("out.jsonl.5").exists());
        // Reopening appends.
        let mut f = RotatingFile::open(&params).unwrap();
        f.write_lines(&[b"{}".to_vec()]).unwrap();
        assert!(
            read(&dir.path().join("out.jsonl.1")).ends_with("{}\n")
                || read(&path).ends_with("{}\n")
        );
    }
}
