//! `varpulis check FILE.vpl`: parse, check and compile a program (with the files it imports,
//! relative to it); print diagnostics.
//!
//! Exit 0 when the program loads (warnings are printed to stderr), 1 with rendered diagnostics on
//! stderr when it does not. Diagnostics about an imported file point into that file.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use varpulis_runtime::{Engine, EngineOptions};

use crate::cmd::output::outln;

/// Flags of `varpulis check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The VPL program to check.
    pub file: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let file_name = args.file.display().to_string();
    // The runtime checks the program too, and rejects a few things the front-end accepts.
    let opts = EngineOptions {
        file_name: file_name.clone(),
        loader: Some(Arc::new(varpulis_vpl::FsLoader)),
        ..EngineOptions::default()
    };
    match Engine::compile(&source, &opts) {
        Ok(engine) => {
            if !engine.warnings().is_empty() {
                eprint!(
                    "{}",
                    varpulis_vpl::render_all(&source, &file_name, engine.warnings())
                );
            }
            outln!("{file_name}: ok")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{}", e.rendered);
            Ok(ExitCode::from(1))
        }
    }
}
