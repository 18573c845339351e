//! The connectors `varpulis run` opens (docs/connectors.md): `file(...)` sinks get the events
//! bound to them as JSON lines (the egress shape, rotated like in a worker), and `console()`
//! sinks print the bound events that are not output events already (`run` prints every
//! output event on stdout anyway, so nothing is printed twice). Other kinds (MQTT, NATS,
//! Kafka, HTTP) are not opened: their `.to` only passes events through, as in `simulate`.

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use varpulis_runtime::{ConnectorDecl, OutputEvent};
use varpulis_worker::connectors::file::RotatingFile;
use varpulis_worker::connectors::plan::output::{OutputKind, OutputPlan};

/// The file and console sinks of a program run by `varpulis run`.
#[derive(Default)]
pub struct RunSinks {
    files: HashMap<String, RotatingFile>,
    consoles: HashSet<String>,
}

impl RunSinks {
    /// Opens the program's file sinks (an unusable path or bad parameter is an error).
    pub fn open(connectors: Vec<ConnectorDecl>) -> anyhow::Result<Self> {
        let mut sinks = Self::default();
        for c in connectors {
            let kind = c.kind.to_ascii_lowercase();
            if kind != "file" && kind != "console" {
                continue;
            }
            let params = c.params.into_iter().collect();
            let plan = OutputPlan::new(&c.name, &kind, &params)?;
            match plan.kind {
                OutputKind::File(p) => {
                    let f = RotatingFile::open(&p).with_context(|| {
                        format!(
                            "file connector `{}`: cannot open `{}`",
                            c.name,
                            p.path.display()
                        )
                    })?;
                    sinks.files.insert(c.name, f);
                }
                OutputKind::Console => {
                    sinks.consoles.insert(c.name);
                }
                OutputKind::Http(_) => {}
            }
        }
        Ok(sinks)
    }

    /// Writes the events of one step bound to the file and console sinks.
    pub fn write(&mut self, stdout: &mut impl Write, out: &[OutputEvent]) -> anyhow::Result<()> {
        if self.files.is_empty() && self.consoles.is_empty() {
            return Ok(());
        }
        for o in out {
            for b in &o.sinks {
                if let Some(f) = self.files.get_mut(&b.connector) {
                    let line = serde_json::to_vec(&o.event.to_flat_json())?;
                    f.write_line(&line).with_context(|| {
                        format!("file connector `{}`: write failed", b.connector)
                    })?;
                } else if !o.is_output && self.consoles.contains(&b.connector) {
                    serde_json::to_writer(&mut *stdout, &o.to_json())?;
                    stdout.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    /// Flushes the files.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        for (name, f) in &mut self.files {
            f.flush()
                .with_context(|| format!("file connector `{name}`: flush failed"))?;
        }
        Ok(())
    }
}
