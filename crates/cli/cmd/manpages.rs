//! `varpulis man`: roff man pages generated from the clap definitions.
//!
//! Without `--out-dir` the page of `varpulis` itself goes to stdout (`varpulis man | man -l -`).
//! With `--out-dir DIR` one page per command is written, `varpulis.1`, `varpulis-cluster.1`,
//! `varpulis-cluster-status.1`, ..., for `man -M` or a package's `share/man/man1`.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cmd::output::outln;

/// Flags of `varpulis man`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one page per command into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Renders the page of `cmd`, named `name` (e.g. `varpulis-cluster-status`).
fn render(cmd: &clap::Command, name: &str) -> anyhow::Result<Vec<u8>> {
    let page = cmd.clone().name(name.to_owned());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    Ok(buf)
}

/// Writes the page of `cmd` and of every subcommand below it; returns the files written.
fn write_tree(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, render(cmd, name)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = vec![path];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_tree(sub, &sub_name, dir)?);
    }
    Ok(written)
}

/// Runs the subcommand.
pub fn run(args: Args, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    cli.build();
    match &args.out_dir {
        None => {
            let page = render(&cli, "varpulis")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let written = write_tree(&cli, "varpulis", dir)?;
            outln!("{} man page(s) written to {}", written.len(), dir.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
