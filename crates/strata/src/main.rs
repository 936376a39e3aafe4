//! `strata`: the docker-compatible command line. A thin layer: it parses arguments,
//! calls the engine, and prints what docker prints.

mod cli;
mod format;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => return cli::usage_error(e),
    };
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            e.print();
            ExitCode::from(e.exit_code())
        }
    }
}
