//! `varpulis check FILE.vpl`: parse, check and compile a program; print diagnostics.
//!
//! Exit 0 when the program loads (warnings are printed to stderr), 1 with rendered diagnostics on
//! stderr when it does not.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
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
    match varpulis_vpl::check(&source, &varpulis_vpl::CheckOptions::default()) {
        Ok(checked) => {
            if !checked.warnings.is_empty() {
                eprint!(
                    "{}",
                    varpulis_vpl::render_all(&source, &file_name, &checked.warnings)
                );
            }
        }
        Err(diagnostics) => {
            eprint!(
                "{}",
                varpulis_vpl::render_all(&source, &file_name, &diagnostics)
            );
            return Ok(ExitCode::from(1));
        }
    }
    // The runtime rejects a few things the front-end accepts (e.g. operators not implemented yet).
    let opts = EngineOptions {
        file_name: file_name.clone(),
        ..EngineOptions::default()
    };
    if let Err(e) = Engine::compile(&source, &opts) {
        eprint!("{}", e.rendered);
        return Ok(ExitCode::from(1));
    }
    outln!("{file_name}: ok")?;
    Ok(ExitCode::SUCCESS)
}
