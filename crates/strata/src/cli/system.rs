use clap::Subcommand;
use strata_engine::Engine;

use super::CliError;

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Verify the store: every blob's digest, every snapshot's parent chain, every image's layers
    Check {
        /// Remove what is corrupt or orphaned
        #[arg(long)]
        repair: bool,
    },
}

pub fn run(engine: &Engine, cmd: SystemCommand) -> Result<u8, CliError> {
    match cmd {
        SystemCommand::Check { repair } => {
            let r = engine.check(repair)?;
            for p in &r.problems {
                println!("problem: {p}");
            }
            for f in &r.repaired {
                println!("repaired: {f}");
            }
            println!("checked {} blobs, {} snapshots, {} images: {} problems", r.blobs, r.snapshots, r.images, r.problems.len());
            Ok(if r.problems.is_empty() || (repair && r.problems.len() == r.repaired.len()) { 0 } else { 1 })
        }
    }
}
