//! `strata`: the docker-compatible command line. A thin layer: it parses arguments,
//! calls the engine, and prints what docker prints.

mod cli;
mod format;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A port proxy needs none of the CLI (nor the database): it starts lean.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__proxy") {
        return ExitCode::from(strata_network::proxy::main(&argv[2..]) as u8);
    }
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
