//! `registry` commands: `serve` runs the distribution server on a directory in the
//! reference registry's layout; `gc` reclaims what nothing references. Neither opens the
//! engine's data root.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_registry::server::gc::{self, GcOptions};
use strata_registry::server::{Config, Layout, Server};

use super::CliError;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (the reference registry's on-disk layout)
    Serve(ServeArgs),
    /// Remove blobs no manifest references, and stale uploads
    Gc(GcArgs),
}

#[derive(Args)]
pub struct Location {
    /// Storage root (distribution's rootdirectory) [default: /var/lib/strata-registry]
    #[arg(long)]
    root: Option<PathBuf>,
    /// A distribution config file (YAML); flags override it
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    loc: Location,
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long)]
    addr: Option<String>,
    /// htpasswd file (bcrypt) for basic auth
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Realm of the basic auth challenge
    #[arg(long)]
    realm: Option<String>,
    /// TLS certificate chain (PEM)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse every write (maintenance)
    #[arg(long)]
    read_only: bool,
}

#[derive(Args)]
pub struct GcArgs {
    #[command(flatten)]
    loc: Location,
    /// Report what would be removed, remove nothing
    #[arg(short = 'd', long)]
    dry_run: bool,
    /// Also remove manifests no tag points at (referrers of kept manifests stay)
    #[arg(short = 'm', long)]
    delete_untagged: bool,
    /// Keep anything younger than this (blobs, links, uploads): 1h, 30m, 0s
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    min_age: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mul) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1),
        Some((i, _)) => (
            &s[..i],
            match &s[i..] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86400,
                u => return Err(format!("unknown unit {u:?} (s, m, h, d)")),
            },
        ),
    };
    num.parse::<u64>().map(|n| Duration::from_secs(n * mul)).map_err(|_| format!("invalid duration {s:?}"))
}

/// There is no daemon here: errors print as they are, without docker's
/// "Error response from daemon" prefix.
fn plain(e: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("strata registry: {e}"))
}

fn config(loc: &Location) -> Result<Config, CliError> {
    let mut c = Config::default();
    if let Some(f) = &loc.config {
        c = c.load_file(f).map_err(plain)?;
    }
    if let Some(r) = &loc.root {
        c.root = r.clone();
    }
    Ok(c)
}

pub fn run(c: RegistryCommand) -> Result<u8, CliError> {
    match c {
        RegistryCommand::Serve(a) => {
            let mut cfg = config(&a.loc)?;
            if let Some(v) = a.addr {
                cfg.addr = v;
            }
            if let Some(v) = a.htpasswd {
                cfg.htpasswd = Some(v);
            }
            if let Some(v) = a.realm {
                cfg.realm = v;
            }
            if a.tls_cert.is_some() {
                cfg.tls_cert = a.tls_cert;
                cfg.tls_key = a.tls_key;
            }
            cfg.read_only |= a.read_only;
            let root = cfg.root.clone();
            let server = Server::bind(cfg).map_err(plain)?;
            let scheme = if server.is_tls() { "https" } else { "http" };
            println!("strata registry listening on {scheme}://{} (root {})", server.local_addr(), root.display());
            server.run_blocking().map_err(plain)?;
            Ok(0)
        }
        RegistryCommand::Gc(a) => {
            let cfg = config(&a.loc)?;
            let layout = Layout::open(&cfg.root).map_err(plain)?;
            let opts = GcOptions { dry_run: a.dry_run, delete_untagged: a.delete_untagged, min_age: a.min_age };
            let r = gc::collect(&layout, &opts).map_err(plain)?;
            let verb = if a.dry_run { "eligible for deletion" } else { "deleted" };
            for (repo, d) in &r.manifests {
                println!("{repo}: manifest {d} {verb}");
            }
            for d in &r.blobs {
                println!("blob {d} {verb}");
            }
            for (repo, id) in &r.uploads {
                println!("{repo}: upload {id} {verb}");
            }
            for (repo, t) in &r.tags {
                println!("{repo}: tag {t} without current link {verb}");
            }
            println!(
                "{} blobs marked, {} blobs and {} manifests {verb}, {} uploads {verb}",
                r.marked,
                r.blobs.len(),
                r.manifests.len(),
                r.uploads.len()
            );
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("0s").unwrap().as_secs(), 0);
        assert_eq!(super::parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(super::parse_duration("2h").unwrap().as_secs(), 7200);
        assert!(super::parse_duration("1y").is_err());
    }
}
