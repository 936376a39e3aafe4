//! Image commands: import, load, save, images, tag, rmi, history, inspect, prune.

use std::fs::File;
use std::io::{self, Read, Write};

use clap::Args;
use serde_json::{json, Value};
use strata_engine::{Engine, RemoveItem};
use strata_image::{Image, ImportOptions, Reference};

use super::CliError;
use crate::format::{self, units, ListFormat};

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    pub file: String,
    pub reference: Option<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub reference: Option<String>,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values
    #[arg(long = "filter")]
    pub filters: Vec<String>,
}

fn open_input(path: Option<&str>) -> Result<Box<dyn Read>, CliError> {
    match path {
        None | Some("-") => Ok(Box::new(io::stdin().lock())),
        Some(p) => Ok(Box::new(File::open(p).map_err(|e| CliError::usage(format!("open {p}: {}", os_msg(&e))))?)),
    }
}

/// Go's error text for an OS error (`no such file or directory`).
pub(crate) fn os_msg(e: &io::Error) -> String {
    strata_store::os_text(e)
}

pub fn import(engine: &Engine, a: ImportArgs) -> Result<u8, CliError> {
    let tag = a.reference.as_deref().map(parse_tag).transpose()?;
    let input = open_input(Some(&a.file))?;
    let lease = engine.store().lease()?;
    let id = engine.images().import(
        &lease,
        input,
        &ImportOptions { changes: a.changes, message: a.message, tag, source: "-".into() },
    )?;
    println!("{id}");
    Ok(0)
}

/// A tag given on the command line: defaults to `:latest`, must not carry a digest.
pub(crate) fn parse_tag(s: &str) -> Result<Reference, CliError> {
    let r = Reference::parse(s).map_err(|e| CliError::usage(e.to_string()))?;
    if r.digest().is_some() {
        return Err(CliError::usage(format!("refusing to create a tag with a digest reference: {s}")));
    }
    Ok(r.with_default_tag())
}

pub fn load(engine: &Engine, a: LoadArgs) -> Result<u8, CliError> {
    let input = open_input(a.input.as_deref())?;
    let lease = engine.store().lease()?;
    let loaded = engine.images().load(&lease, input)?;
    if !a.quiet {
        for l in &loaded {
            for (t, old) in &l.replaced {
                println!("The image {} already exists, renaming the old one with ID {old} to empty string", t.familiar());
            }
            if l.tags.is_empty() {
                println!("Loaded image ID: {}", l.id);
            }
            for t in &l.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(0)
}

pub fn save(engine: &Engine, a: SaveArgs) -> Result<u8, CliError> {
    let mut sel: Vec<(Image, Vec<Reference>)> = Vec::new();
    for name in &a.images {
        let img = engine.images().resolve(name)?;
        let mut names = Vec::new();
        if let Ok(r) = Reference::parse(name) {
            if r.tag().is_none() && r.digest().is_none() {
                // A bare repository name saves every tag of that repository.
                names.extend(img.tags.iter().filter(|t| t.name() == r.name()).cloned());
                for other in engine.images().list()? {
                    if other.id != img.id {
                        let tags: Vec<Reference> = other.tags.iter().filter(|t| t.name() == r.name()).cloned().collect();
                        if !tags.is_empty() {
                            push_sel(&mut sel, other, tags);
                        }
                    }
                }
            } else if img.tags.contains(&r.clone().with_default_tag()) {
                names.push(r.with_default_tag());
            }
        }
        push_sel(&mut sel, img, names);
    }
    if a.output.is_none() && unsafe_stdout_is_tty() {
        return Err(CliError::usage("cowardly refusing to save to a terminal. Use the -o flag or redirect"));
    }
    let lease = engine.store().lease()?;
    match &a.output {
        Some(p) => {
            // Write beside the target and rename, so a failed save never leaves a torn file.
            let tmp = format!("{p}.strata-tmp");
            let mut f = io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| CliError::usage(format!("failed to save image: open {tmp}: {}", os_msg(&e))))?);
            let res = engine.images().save(&lease, &sel, &mut f).map_err(CliError::from).and_then(|_| {
                let f = f.into_inner().map_err(|e| CliError::usage(e.to_string()))?;
                f.sync_all().map_err(|e| CliError::usage(e.to_string()))?;
                std::fs::rename(&tmp, p).map_err(|e| CliError::usage(format!("failed to save image: {}", os_msg(&e))))
            });
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res?;
        }
        None => {
            let mut out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            engine.images().save(&lease, &sel, &mut out)?;
            out.flush().map_err(|e| CliError::usage(e.to_string()))?;
        }
    }
    Ok(0)
}

fn push_sel(sel: &mut Vec<(Image, Vec<Reference>)>, img: Image, names: Vec<Reference>) {
    match sel.iter_mut().find(|(i, _)| i.id == img.id) {
        Some((_, n)) => {
            for x in names {
                if !n.contains(&x) {
                    n.push(x);
                }
            }
        }
        None => sel.push((img, names)),
    }
}

pub(crate) fn unsafe_stdout_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(1) == 1 }
}

fn created_unix(img: &Image) -> i64 {
    parse_rfc3339(img.config.created()).unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 UTC time (what configs carry).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

struct Filters {
    dangling: Option<bool>,
    labels: Vec<(String, Option<String>)>,
    before: Option<i64>,
    since: Option<i64>,
    references: Vec<String>,
}

fn parse_filters(engine: &Engine, raw: &[String]) -> Result<Filters, CliError> {
    let mut f = Filters { dangling: None, labels: vec![], before: None, since: None, references: vec![] };
    for r in raw {
        let (k, v) = r.split_once('=').ok_or_else(|| CliError::usage("bad format of filter (expected name=value)"))?;
        match k {
            "dangling" => {
                f.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(CliError { message: format!("Invalid filter 'dangling={v}'"), ..CliError::usage("") }.engine()),
                })
            }
            "label" => f.labels.push(match v.split_once('=') {
                Some((a, b)) => (a.into(), Some(b.into())),
                None => (v.into(), None),
            }),
            "before" => f.before = Some(created_unix(&engine.images().resolve(v)?)),
            "since" => f.since = Some(created_unix(&engine.images().resolve(v)?)),
            "reference" => f.references.push(v.into()),
            _ => return Err(CliError { message: format!("invalid filter '{k}'"), ..CliError::usage("") }.engine()),
        }
    }
    Ok(f)
}


fn labels_of(img: &Image) -> serde_json::Map<String, Value> {
    img.config.container_config().get("Labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Whether `familiar` (`busybox:latest`) matches a reference filter pattern as docker's
/// `reference=` does (path.Match on the name, with or without the tag).
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    let Ok(p) = glob::Pattern::new(pattern) else { return false };
    let opts = glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };
    p.matches_with(&r.familiar(), opts) || p.matches_with(&r.familiar_name(), opts)
}

pub fn list(engine: &Engine, a: ListArgs) -> Result<u8, CliError> {
    let mut filters = parse_filters(engine, &a.filters)?;
    if let Some(r) = &a.reference {
        filters.references.push(r.clone());
    }
    let mut images = engine.images().list()?;
    images.sort_by_key(|i| std::cmp::Reverse(created_unix(i)));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut rows = Vec::new();
    for img in &images {
        let dangling = img.tags.is_empty() && img.repo_digests.is_empty();
        if let Some(d) = filters.dangling {
            if d != dangling {
                continue;
            }
        }
        // Untagged parents of other images are intermediate layers: shown only with -a.
        if dangling && !a.all && filters.dangling.is_none() && !engine.images().children(&img.id)?.is_empty() {
            continue;
        }
        let labels = labels_of(img);
        if !filters.labels.iter().all(|(k, v)| match v {
            Some(v) => labels.get(k).and_then(Value::as_str) == Some(v.as_str()),
            None => labels.contains_key(k),
        }) {
            continue;
        }
        let created = created_unix(img);
        if filters.before.is_some_and(|b| created >= b) || filters.since.is_some_and(|s| created <= s) {
            continue;
        }
        let tags: Vec<&Reference> =
            img.tags.iter().filter(|t| filters.references.is_empty() || filters.references.iter().any(|p| reference_matches(p, t))).collect();
        if !filters.references.is_empty() && tags.is_empty() {
            continue;
        }
        let id = if a.no_trunc { img.id.to_string() } else { img.id.short().to_string() };
        let digest_of = |name: &str| -> String {
            img.repo_digests
                .iter()
                .filter_map(|d| Reference::parse(d).ok())
                .find(|d| d.familiar_name() == name)
                .and_then(|d| d.digest().map(|x| x.to_string()))
                .unwrap_or_else(|| "<none>".into())
        };
        let row = |repo: String, tag: String, digest: String| {
            json!({
                "Containers": "N/A",
                "CreatedAt": units::go_time(created, 0),
                "CreatedSince": units::ago(created, now),
                "Digest": digest,
                "ID": id,
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": units::human_size(img.size as f64),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": units::human_size(img.size as f64),
            })
        };
        if tags.is_empty() {
            let repo = img.repo_digests.first().and_then(|d| Reference::parse(d).ok()).map(|r| r.familiar_name()).unwrap_or_else(|| "<none>".into());
            let digest = if repo == "<none>" { "<none>".to_string() } else { digest_of(&repo) };
            rows.push(row(repo, "<none>".into(), digest));
        }
        for t in tags {
            rows.push(row(t.familiar_name(), t.tag().unwrap_or("<none>").to_string(), digest_of(&t.familiar_name())));
        }
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let spec = ListFormat {
        default_table: default,
        headers: IMAGE_HEADERS,
    };
    super::print_list(a.quiet, a.format.as_deref(), &spec, &rows)
}

pub fn tag(engine: &Engine, a: TagArgs) -> Result<u8, CliError> {
    let target = parse_tag(&a.target)?;
    let img = engine.images().resolve(&a.source)?;
    engine.images().tag(&img.id, &target)?;
    Ok(0)
}

pub fn rmi(engine: &Engine, a: RmiArgs) -> Result<u8, CliError> {
    let mut code = 0;
    for name in &a.images {
        match engine.remove_image_opts(name, a.force, a.no_prune) {
            Ok(items) => print_removed(&items, false),
            Err(e) => {
                CliError::from(e).print();
                code = 1;
            }
        }
    }
    Ok(code)
}

fn print_removed(items: &[RemoveItem], lower: bool) {
    for it in items {
        match (it, lower) {
            (RemoveItem::Untagged(t), false) => println!("Untagged: {t}"),
            (RemoveItem::Deleted(d), false) => println!("Deleted: {d}"),
            (RemoveItem::Untagged(t), true) => println!("untagged: {t}"),
            (RemoveItem::Deleted(d), true) => println!("deleted: {d}"),
        }
    }
}

pub fn prune(engine: &Engine, a: PruneArgs) -> Result<u8, CliError> {
    if !a.filters.is_empty() {
        return Err(CliError::usage("image prune --filter is not supported yet"));
    }
    if !a.force && stdin_is_tty() {
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush().ok();
        let mut line = String::new();
        io::stdin().read_line(&mut line).ok();
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let r = engine.prune_images(a.all)?;
    if !r.items.is_empty() {
        println!("Deleted Images:");
        print_removed(&r.items, true);
        println!();
    }
    println!("Total reclaimed space: {}", units::human_size(r.reclaimed as f64));
    Ok(0)
}

pub(crate) fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

pub fn history(engine: &Engine, a: HistoryArgs) -> Result<u8, CliError> {
    let img = engine.images().resolve(&a.image)?;
    let rows = engine.image_history(&img)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let values: Vec<Value> = rows
        .iter()
        .map(|r| {
            let id = if r.id == "<missing>" || a.no_trunc { r.id.clone() } else { r.id.trim_start_matches("sha256:")[..12].to_string() };
            let created = parse_rfc3339(&r.created).unwrap_or(0);
            let created_by = r.created_by.replace('\t', " ");
            let created_by = if a.no_trunc { created_by } else { format::ellipsis(&created_by, 45) };
            json!({
                "ID": id,
                "CreatedSince": if a.human { units::ago(created, now) } else { r.created.clone() },
                "CreatedAt": r.created.clone(),
                "CreatedBy": created_by,
                "Size": if a.human { units::human_size(r.size as f64) } else { r.size.to_string() },
                "Comment": r.comment,
            })
        })
        .collect();
    let spec = ListFormat {
        default_table: "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        headers: &[("ID", "IMAGE"), ("CreatedSince", "CREATED"), ("CreatedAt", "CREATED AT"), ("CreatedBy", "CREATED BY"), ("Size", "SIZE"), ("Comment", "COMMENT")],
    };
    super::print_list(a.quiet, a.format.as_deref(), &spec, &values)
}

pub fn image_inspect(engine: &Engine, a: ImageInspectArgs) -> Result<u8, CliError> {
    inspect_objects(engine, &a.images, a.format.as_deref(), Kind::Image, false)
}

pub fn inspect(engine: &Engine, a: InspectArgs) -> Result<u8, CliError> {
    let kind = match a.kind.as_deref() {
        None => Kind::Any,
        Some("image") => Kind::Image,
        Some("container") => Kind::Container,
        Some(t) => return Err(CliError::usage(format!("\"{t}\" is not a valid value for --type"))),
    };
    inspect_objects(engine, &a.names, a.format.as_deref(), kind, a.size)
}

pub fn inspect_containers(engine: &Engine, a: InspectArgs) -> Result<u8, CliError> {
    inspect_objects(engine, &a.names, a.format.as_deref(), Kind::Container, a.size)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Any,
    Image,
    Container,
}

/// Prints what was found (even when some names were not), then the errors; exit 1 if any.
/// Untyped, a name is tried as a container first, then as an image, as docker does.
fn inspect_objects(engine: &Engine, names: &[String], fmt: Option<&str>, kind: Kind, size: bool) -> Result<u8, CliError> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        if kind != Kind::Image {
            if let Ok(c) = engine.container(n) {
                found.push(engine.container_inspect(&c, size));
                continue;
            }
        }
        match (kind, engine.images().resolve(n)) {
            (Kind::Any | Kind::Image, Ok(img)) => found.push(engine.image_inspect(&img)?),

            (Kind::Image, Err(_)) => errors.push(format!("Error: No such image: {n}")),
            (Kind::Container, _) => errors.push(format!("Error: No such container: {n}")),
            (Kind::Any, Err(_)) => match engine.volumes().get(n) {
                Ok(v) => found.push(super::volume::volume_json(engine, &v)),
                Err(_) => errors.push(format!("Error: No such object: {n}")),
            },
        }
    }
    let out = format::render_inspect(fmt, &found).map_err(|e| CliError::usage(e.to_string()))?;
    print!("{out}");
    for e in &errors {
        eprintln!("{e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// `images --format` fields and their table headers (also `system df -v`).
pub(super) const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];
