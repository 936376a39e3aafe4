use clap::Subcommand;
use serde_json::{json, Value};
use strata_engine::{DiskUsage, Engine, UsageOptions};

use super::container::CONTAINER_HEADERS;
use super::image::IMAGE_HEADERS;
use super::CliError;
use crate::format::{self, units, ListFormat};

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Verify the store: every blob's digest, every snapshot's parent chain, every image's layers
    Check {
        /// Remove what is corrupt or orphaned
        #[arg(long)]
        repair: bool,
    },
    /// Show docker disk usage
    Df {
        /// Show detailed information on space usage
        #[arg(short, long)]
        verbose: bool,
        /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
        #[arg(long)]
        format: Option<String>,
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
        SystemCommand::Df { verbose, format } => df(engine, verbose, format.as_deref()),
    }
}

const SUMMARY_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const SUMMARY_RAW: &str = "type: {{.Type}}\ntotal: {{.TotalCount}}\nactive: {{.Active}}\nsize: {{.Size}}\nreclaimable: {{.Reclaimable}}\n";
const SUMMARY_HEADERS: &[(&str, &str)] =
    &[("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Active", "ACTIVE"), ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")];

/// docker's `-v --format raw`: its image, container (with size) and volume raw formats.
const VERBOSE_RAW: &str = "{{range .Images}}type: Image
repository: {{ .Repository }}
tag: {{.Tag}}
digest: {{.Digest}}
image_id: {{.ID}}
created_at: {{.CreatedAt}}
virtual_size: {{.Size}}

{{end -}}
{{range .Containers}}type: Container
container_id: {{.ID}}
image: {{.Image}}
command: {{.Command}}
created_at: {{.CreatedAt}}
state: {{- pad .State 1 0}}
status: {{- pad .Status 1 0}}
names: {{.Names}}
labels: {{- pad .Labels 1 0}}
ports: {{- pad .Ports 1 0}}
size: {{.Size}}

{{end -}}
{{range .Volumes}}type: Volume
name: {{.Name}}
driver: {{.Driver}}

{{end -}}
{{range .BuildCache}}type: Build Cache
{{end -}}";

const IMAGE_TABLE: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
const CONTAINER_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
const VOLUME_TABLE: &str = "table {{.Name}}\t{{.Links}}\t{{.Size}}";
const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Name", "VOLUME NAME"),
    ("Scope", "SCOPE"),
    ("Size", "SIZE"),
    ("UsedBy", "USED BY"),
];
const BUILD_CACHE_TABLE: &str = "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}";
const BUILD_CACHE_HEADERS: &[(&str, &str)] = &[
    ("ID", "CACHE ID"),
    ("CacheType", "CACHE TYPE"),
    ("Size", "SIZE"),
    ("CreatedSince", "CREATED"),
    ("LastUsedSince", "LAST USED"),
    ("UsageCount", "USAGE"),
    ("Shared", "SHARED"),
];

/// go-units `HumanSize`: decimal units, four significant digits (`1.049MB`).
fn human4(n: i64) -> String {
    units::human_size_with_precision(n as f64, 4)
}

/// `SIZE (PCT%)` as docker's summary prints the reclaimable space.
fn reclaimable(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human4(reclaimable), reclaimable * 100 / total)
    } else {
        human4(reclaimable)
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The summary rows, computed as the docker CLI computes them from `GET /system/df`.
fn summary_rows(du: &DiskUsage) -> Vec<Value> {
    let row = |t: &str, total: usize, active: usize, size: String, recl: String| {
        json!({ "Active": active.to_string(), "Reclaimable": recl, "Size": size, "TotalCount": total.to_string(), "Type": t })
    };
    // Images: everything but the unique part of images some container uses.
    let used: i64 = du.images.iter().filter(|i| i.containers != 0 && i.size >= 0 && i.shared_size >= 0).map(|i| i.size - i.shared_size).sum();
    let images = row(
        "Images",
        du.images.len(),
        du.images.iter().filter(|i| i.containers > 0).count(),
        human4(du.layers_size),
        reclaimable(du.layers_size - used, du.layers_size),
    );
    let c_size: i64 = du.containers.iter().map(|c| c.size_rw).sum();
    let c_recl: i64 = du.containers.iter().filter(|c| !c.active()).map(|c| c.size_rw).sum();
    let containers = row(
        "Containers",
        du.containers.len(),
        du.containers.iter().filter(|c| c.active()).count(),
        human4(c_size),
        reclaimable(c_recl, c_size),
    );
    let v_size: i64 = du.volumes.iter().map(|v| v.usage_data.size).filter(|s| *s != -1).sum();
    let v_recl: i64 = du.volumes.iter().filter(|v| v.usage_data.ref_count == 0 && v.usage_data.size != -1).map(|v| v.usage_data.size).sum();
    let volumes = row(
        "Local Volumes",
        du.volumes.len(),
        du.volumes.iter().filter(|v| v.usage_data.ref_count > 0).count(),
        human4(v_size),
        reclaimable(v_recl, v_size),
    );
    let build = row("Build Cache", 0, 0, human4(0), human4(0));
    vec![images, containers, volumes, build]
}

/// `ID` as docker's `stringid.TruncateID`: without the algorithm, 12 characters.
fn short_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    id.chars().take(12).collect()
}

/// The verbose rows, keyed (sorted) as docker's formatter contexts; `trunc` for tables.
fn image_rows(du: &DiskUsage, trunc: bool, now: i64) -> Vec<Value> {
    du.images
        .iter()
        .map(|i| {
            // Only the first tag, as docker shows.
            let (repo, tag) = i
                .repo_tags
                .first()
                .and_then(|t| strata_image::Reference::parse(t).ok())
                .and_then(|r| r.tag().map(|tag| (r.familiar_name(), tag.to_string())))
                .unwrap_or_else(|| ("<none>".into(), "<none>".into()));
            let zero = i.created == strata_engine::usage::ZERO_TIME_UNIX;
            json!({
                "Containers": i.containers.to_string(),
                "CreatedAt": units::go_time(i.created, 0),
                "CreatedSince": if zero { String::new() } else { units::ago(i.created, now) },
                "Digest": "",
                "ID": if trunc { short_id(&i.id) } else { i.id.clone() },
                "Repository": repo,
                "SharedSize": if i.shared_size == -1 { "N/A".into() } else { human4(i.shared_size) },
                "Size": units::human_size(i.size as f64),
                "Tag": tag,
                "UniqueSize": if i.size == -1 || i.shared_size == -1 { "N/A".into() } else { human4(i.size - i.shared_size) },
                "VirtualSize": human4(i.size),
            })
        })
        .collect()
}

fn container_rows(du: &DiskUsage, trunc: bool, now: i64) -> Vec<Value> {
    du.containers
        .iter()
        .map(|c| {
            let command = if trunc { format::ellipsis(&c.command, 20) } else { c.command.clone() };
            let image = if c.image.is_empty() {
                "<no image>".to_string()
            } else if trunc && c.image == c.image_id {
                short_id(&c.image)
            } else {
                c.image.clone()
            };
            let mounts: Vec<String> = c
                .mounts
                .iter()
                .map(|m| {
                    let name = m["Name"].as_str().filter(|n| !n.is_empty()).or_else(|| m["Source"].as_str()).unwrap_or("");
                    if trunc { format::ellipsis(name, 15) } else { name.to_string() }
                })
                .collect();
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            json!({
                "Command": format::gofmt::go_quote(&command),
                "CreatedAt": units::go_time(c.created, 0),
                "ID": if trunc { short_id(&c.id) } else { c.id.clone() },
                "Image": image,
                "Labels": labels.join(","),
                "LocalVolumes": c.local_volumes().to_string(),
                "Mounts": mounts.join(","),
                "Names": c.names.iter().map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
                "Networks": "bridge",
                "Platform": null,
                "Ports": "",
                "RunningFor": units::ago(c.created, now),
                "Size": units::human_size(c.size_rw as f64),
                "State": c.state,
                "Status": super::container::status_text(&c.container, now),
            })
        })
        .collect()
}

/// `UsedBy` is strata's: the names of the containers (running or stopped) holding the
/// volume, comma-separated; not in the default table, so docker's columns stay as they are.
fn volume_rows(engine: &Engine, du: &DiskUsage) -> Vec<Value> {
    let names: std::collections::HashMap<&str, &str> =
        du.containers.iter().map(|c| (c.id.as_str(), c.container.name.as_str())).collect();
    du.volumes
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.volume.labels.iter().map(|(k, val)| format!("{k}={val}")).collect();
            let mut used_by: Vec<String> = v
                .used_by
                .iter()
                .map(|id| match names.get(id.as_str()) {
                    Some(n) => n.to_string(),
                    None => engine.container(id).map(|c| c.name).unwrap_or_else(|_| id.clone()),
                })
                .collect();
            used_by.sort();
            json!({
                "Availability": "N/A",
                "Driver": v.volume.driver,
                "Group": "N/A",
                "Labels": labels.join(","),
                "Links": v.usage_data.ref_count.to_string(),
                "Mountpoint": v.volume.mountpoint,
                "Name": v.volume.name,
                "Scope": v.volume.scope,
                "Size": human4(v.usage_data.size),
                "Status": "N/A",
                "UsedBy": used_by.join(","),
            })
        })
        .collect()
}

fn fmt_err(e: format::FormatError) -> CliError {
    CliError::usage(e.to_string())
}

pub fn df(engine: &Engine, verbose: bool, fmt: Option<&str>) -> Result<u8, CliError> {
    let du = engine.disk_usage(UsageOptions::default())?;
    let now = now_unix();
    let fmt = fmt.filter(|f| !f.is_empty()).unwrap_or("table");
    if !verbose {
        let rows = summary_rows(&du);
        let fmt = match fmt {
            "raw" => SUMMARY_RAW,
            f => f,
        };
        let spec = ListFormat { default_table: SUMMARY_TABLE, headers: SUMMARY_HEADERS };
        print!("{}", format::render_list(Some(fmt), &spec, &rows).map_err(fmt_err)?);
        return Ok(0);
    }
    if fmt == "table" {
        let mut out = String::from("Images space usage:\n\n");
        let section = |default_table, headers, rows: &[Value]| format::render_list(None, &ListFormat { default_table, headers }, rows);
        out.push_str(&section(IMAGE_TABLE, IMAGE_HEADERS, &image_rows(&du, true, now)).map_err(fmt_err)?);
        out.push_str("\nContainers space usage:\n\n");
        out.push_str(&section(CONTAINER_TABLE, CONTAINER_HEADERS, &container_rows(&du, true, now)).map_err(fmt_err)?);
        out.push_str("\nLocal Volumes space usage:\n\n");
        out.push_str(&section(VOLUME_TABLE, VOLUME_HEADERS, &volume_rows(engine, &du)).map_err(fmt_err)?);
        out.push_str(&format!("\nBuild cache usage: {}\n\n", human4(0)));
        out.push_str(&section(BUILD_CACHE_TABLE, BUILD_CACHE_HEADERS, &[]).map_err(fmt_err)?);
        print!("{out}");
        return Ok(0);
    }
    let fmt = if fmt == "raw" { VERBOSE_RAW } else { fmt };
    // Any other format runs once over the whole usage, as docker's does.
    let data = json!({
        "Images": image_rows(&du, false, now),
        "Containers": container_rows(&du, false, now),
        "Volumes": volume_rows(engine, &du),
        "BuildCache": [],
    });
    // docker's preFormat: `table` dropped, spaces trimmed, `\t` and `\n` made real.
    let tmpl = if fmt == "json" { "{{json .}}" } else { fmt.strip_prefix("table").unwrap_or(fmt) };
    let tmpl = tmpl.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
    let out = if matches!(tmpl.as_str(), "{{json .}}" | "{{ json . }}") {
        // docker marshals each row through a Go map: keys sorted, `<`, `>`, `&` escaped.
        let mut s = String::new();
        format::gofmt::json_encode(&mut s, &data, true, None, 0).map_err(|e| CliError::usage(format!("{e:?}")))?;
        s
    } else {
        format::render(&tmpl, &data).map_err(fmt_err)?
    };
    // docker adds no newline here.
    print!("{out}");
    Ok(0)
}
