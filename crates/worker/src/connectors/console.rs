//! The console sink (kind `console`, docs/connectors.md): each output as one JSON line on
//! stdout, in the shape of `varpulis run` (`{"event_type", "timestamp", "fields"}`, VPL.md
//! §13). Lines are written in batches under the stdout lock, so lines of different pipelines
//! never interleave within a line.

use super::lines::LineTarget;
use std::io::Write;

/// Standard output as a line target.
#[derive(Debug, Default)]
pub struct Stdout;

impl LineTarget for Stdout {
    fn write_lines(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for l in lines {
            out.write_all(l)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
