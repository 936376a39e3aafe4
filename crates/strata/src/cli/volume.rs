//! `volume` commands: create, ls, inspect, rm, prune; and strata's own export, import,
//! clone (volume data as a first-class object).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_engine::Engine;
use strata_volume::{LabelFilter, ListFilters};

use super::CliError;
use crate::format::{self, ListFormat};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a custom template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. "label=<label>")
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Write a volume's content to a tar archive (streamed to STDOUT by default)
    Export {
        /// Write to a file, instead of STDOUT
        #[arg(short, long)]
        output: Option<String>,
        name: String,
    },
    /// Fill a volume from a tar archive (a file, or `-` for STDIN); creates the volume if needed
    Import {
        name: String,
        file: String,
    },
    /// Copy a volume into a new volume, with its labels
    Clone {
        source: String,
        target: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long)]
    pub driver: Option<String>,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opts: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

fn pairs(v: &[String]) -> BTreeMap<String, String> {
    v.iter().map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((s.clone(), String::new()))).collect()
}

pub fn run(engine: &Engine, cmd: VolumeCommand) -> Result<u8, CliError> {
    let vs = engine.volumes();
    match cmd {
        VolumeCommand::Create(a) => {
            let v = vs.create(a.name.as_deref(), a.driver.as_deref(), pairs(&a.labels), pairs(&a.opts))?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let mut f = ListFilters::default();
            for raw in &a.filters {
                let (k, v) = raw.split_once('=').ok_or_else(|| CliError::usage("bad format of filter (expected name=value)"))?;
                match k {
                    "dangling" => {
                        f.dangling = Some(match v {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => return Err(CliError { message: format!("invalid filter 'dangling={v}'"), ..CliError::usage("") }.engine()),
                        })
                    }
                    "driver" => f.driver.push(v.into()),
                    "label" => f.label.push(LabelFilter::parse(v)),
                    "name" => f.name.push(v.into()),
                    _ => return Err(CliError { message: format!("invalid filter '{k}'"), ..CliError::usage("") }.engine()),
                }
            }
            let rows: Vec<Value> = vs
                .list(&f)?
                .into_iter()
                .map(|v| {
                    let labels: Vec<String> = v.labels.iter().map(|(k, val)| format!("{k}={val}")).collect();
                    json!({
                        "Driver": v.driver,
                        "Labels": labels.join(","),
                        "Links": "N/A",
                        "Mountpoint": v.mountpoint,
                        "Name": v.name,
                        "Scope": v.scope,
                        "Size": "N/A",
                        "ID": v.name,
                    })
                })
                .collect();
            let spec = ListFormat {
                default_table: "table {{.Driver}}\t{{.Name}}",
                headers: &[("Driver", "DRIVER"), ("Labels", "LABELS"), ("Links", "LINKS"), ("Mountpoint", "MOUNTPOINT"), ("Name", "VOLUME NAME"), ("Scope", "SCOPE"), ("Size", "SIZE")],
            };
            super::print_list(a.quiet, a.format.as_deref(), &spec, &rows)
        }
        VolumeCommand::Inspect { format, names } => {
            let mut found = Vec::new();
            let mut code = 0;
            let mut errors = Vec::new();
            for n in &names {
                match vs.get(n) {
                    Ok(v) => found.push(volume_json(engine, &v)),
                    Err(_) => {
                        errors.push(format!("Error: No such volume: {n}"));
                        code = 1;
                    }
                }
            }
            print!("{}", format::render_inspect(format.as_deref(), &found).map_err(|e| CliError::usage(e.to_string()))?);
            for e in errors {
                eprintln!("{e}");
            }
            Ok(code)
        }
        VolumeCommand::Rm { force, names } => {
            let mut code = 0;
            for n in &names {
                match vs.remove(n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        CliError::from(e).print();
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune { all, force, filters } => {
            if !force && super::image::stdin_is_tty() {
                let what = if all { "all volumes not used by at least one container" } else { "all anonymous local volumes not used by at least one container" };
                print!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
                std::io::Write::flush(&mut std::io::stdout()).ok();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).ok();
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let mut labels = Vec::new();
            for raw in &filters {
                match raw.split_once('=') {
                    Some(("label", v)) => labels.push(LabelFilter::parse(v)),
                    Some(("label!", v)) => labels.push(LabelFilter::parse(v).negated()),
                    Some(("all", v)) => {
                        if matches!(v, "true" | "1") {
                            return run(engine, VolumeCommand::Prune { all: true, force: true, filters: vec![] });
                        }
                    }
                    _ => return Err(CliError { message: format!("invalid filter '{raw}'"), ..CliError::usage("") }.engine()),
                }
            }
            let r = vs.prune(all, &labels)?;
            if !r.volumes_deleted.is_empty() {
                println!("Deleted Volumes:");
                for v in &r.volumes_deleted {
                    println!("{v}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", format::units::human_size(r.space_reclaimed as f64));
            Ok(0)
        }
        VolumeCommand::Export { output, name } => export(engine, &name, output.as_deref()),
        VolumeCommand::Import { name, file } => {
            let v = if file == "-" {
                engine.import_volume(&name, std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file).map_err(|e| CliError::usage(format!("open {file}: {}", super::image::os_msg(&e))))?;
                engine.import_volume(&name, std::io::BufReader::with_capacity(1 << 20, f))?
            };
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Clone { source, target } => {
            println!("{}", engine.clone_volume(&source, &target)?.name);
            Ok(0)
        }
    }
}

fn export(engine: &Engine, name: &str, output: Option<&str>) -> Result<u8, CliError> {
    use std::io::Write;
    let Some(path) = output else {
        if super::image::unsafe_stdout_is_tty() {
            return Err(CliError::usage("cowardly refusing to save to a terminal. Use the -o flag or redirect"));
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        engine.export_volume(name, &mut out)?;
        out.flush().map_err(|e| CliError::usage(e.to_string()))?;
        return Ok(0);
    };
    // Beside the target, then renamed: a refused or failed export leaves no torn file.
    let tmp = format!("{path}.strata-tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| CliError::usage(format!("open {tmp}: {}", super::image::os_msg(&e))))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    let res = engine.export_volume(name, &mut out).map_err(CliError::from).and_then(|()| {
        let f = out.into_inner().map_err(|e| CliError::usage(e.to_string()))?;
        f.sync_all().map_err(|e| CliError::usage(format!("write {path}: {}", super::image::os_msg(&e))))?;
        std::fs::rename(&tmp, path).map_err(|e| CliError::usage(format!("rename {tmp}: {}", super::image::os_msg(&e))))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|()| 0)
}

/// `volume inspect` JSON; strata adds which containers hold the volume (`UsedBy`), so
/// no one has to guess before pruning.
pub fn volume_json(engine: &Engine, v: &strata_volume::Volume) -> Value {
    let mut j = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Ok(refs) = engine.volumes().refs(&v.name) {
        if !refs.is_empty() {
            j["UsedBy"] = json!(refs);
        }
    }
    j
}
