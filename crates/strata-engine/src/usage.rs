//! Disk usage (`system df`): the data of the Engine API's `GET /system/df`, with docker's
//! rules for which objects are listed and how their sizes are counted.
//!
//! - `LayersSize`: every layer of every image, each counted once (unpacked size);
//! - `Images[]`: the images `docker images` lists (intermediate images hidden), with
//!   `Size` (all layers), `SharedSize` (layers also used by another listed image) and
//!   `Containers` (containers created from the image, in any state);
//! - `Containers[]`: every container with `SizeRw` (its writable layer) and `SizeRootFs`;
//! - `Volumes[]`: local volumes without driver options (an option-backed volume may be a
//!   remote or tmpfs mount: docker leaves it out), with `UsageData{Size, RefCount}`; `Size`
//!   is the apparent size of the files under `_data` (directories not counted, a hardlinked
//!   inode once, mount points below not crossed), `-1` if it cannot be read. strata adds
//!   `UsedBy`: the ids of the containers (running or stopped) holding the volume;
//! - `BuildCache[]`: empty (no builder yet).
//!
//! Directory walks run in parallel (a few threads over all volumes and containers).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::containers::{Container, ZERO_TIME};
use crate::{Engine, EngineError, Result};

/// `Created` of an image without a creation time: Go's zero `time.Time` in Unix seconds.
pub const ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// The response of `GET /system/df`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    pub layers_size: i64,
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
    pub build_cache: Vec<Value>,
}

/// An image summary (`image.Summary`) as `system df` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageUsage {
    #[serde(rename = "Containers")]
    pub containers: i64,
    /// Unix seconds; [`ZERO_TIME_UNIX`] when the config has no creation time.
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Labels")]
    pub labels: Map<String, Value>,
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    /// Familiar forms (`busybox@sha256:…`).
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    /// Familiar forms (`busybox:latest`), sorted by their full names as docker's reference
    /// store returns them (the CLI shows only the first).
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "SharedSize")]
    pub shared_size: i64,
    #[serde(rename = "Size")]
    pub size: i64,
}

/// A container summary as `system df` returns it (the fields the listing needs; `Status`
/// is the front end's to phrase, from [`ContainerUsage::container`]).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerUsage {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names")]
    pub names: Vec<String>,
    /// The image as the user named it, or its id when that name now means another image.
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// The daemon's form: the path and the arguments, those with spaces in single quotes.
    #[serde(rename = "Command")]
    pub command: String,
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "SizeRw")]
    pub size_rw: i64,
    #[serde(rename = "SizeRootFs")]
    pub size_root_fs: i64,
    #[serde(rename = "Labels")]
    pub labels: Map<String, Value>,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`.
    #[serde(rename = "State")]
    pub state: String,
    /// inspect's `Mounts` entries.
    #[serde(rename = "Mounts")]
    pub mounts: Vec<Value>,
    #[serde(skip)]
    pub container: Container,
}

impl ContainerUsage {
    /// docker's `LocalVolumes`: mounts of volumes of the local driver.
    pub fn local_volumes(&self) -> usize {
        self.mounts.iter().filter(|m| m["Driver"] == "local").count()
    }

    /// Running, paused or restarting: its writable layer cannot be reclaimed.
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "restarting")
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageData {
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "RefCount")]
    pub ref_count: i64,
}

/// A volume (`volume inspect`'s object) with `UsageData`, and the containers holding it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeUsage {
    #[serde(flatten)]
    pub volume: strata_volume::Volume,
    #[serde(rename = "UsageData")]
    pub usage_data: UsageData,
    /// Ids of the containers (in any state) that reference the volume, sorted.
    #[serde(rename = "UsedBy")]
    pub used_by: Vec<String>,
}

/// Which parts to compute (`GET /system/df?type=…`); all by default.
#[derive(Debug, Clone, Copy)]
pub struct UsageOptions {
    pub images: bool,
    pub containers: bool,
    pub volumes: bool,
}

impl Default for UsageOptions {
    fn default() -> Self {
        UsageOptions { images: true, containers: true, volumes: true }
    }
}

fn volume_error(e: strata_volume::VolumeError) -> EngineError {
    match e {
        strata_volume::VolumeError::Store(s) => EngineError::Store(s),
        other => EngineError::Invalid(other.to_string()),
    }
}

impl Engine {
    /// `system df`: what images, containers and volumes take on disk.
    pub fn disk_usage(&self, opts: UsageOptions) -> Result<DiskUsage> {
        let containers = self.containers()?;
        let mut du = DiskUsage { layers_size: 0, images: vec![], containers: vec![], volumes: vec![], build_cache: vec![] };
        if opts.images {
            self.image_usage(&containers, &mut du)?;
        }
        if opts.containers {
            du.containers = self.container_usage(containers)?;
        }
        if opts.volumes {
            du.volumes = self.volume_usage()?;
        }
        Ok(du)
    }

    fn image_usage(&self, containers: &[Container], du: &mut DiskUsage) -> Result<()> {
        let images = self.images.list()?;
        let mut per_image: HashMap<&str, i64> = HashMap::new();
        for c in containers {
            *per_image.entry(c.image_id.as_str()).or_default() += 1;
        }
        let mut all_layers: HashMap<String, u64> = HashMap::new();
        let mut listed = Vec::new();
        for img in &images {
            let layers = self.images.layers_of(img)?;
            let chains: Vec<(String, u64)> = layers.iter().map(|l| (l.chain_id.to_string(), l.size)).collect();
            for (c, s) in &chains {
                all_layers.insert(c.clone(), *s);
            }
            // As `docker images` without -a: untagged parents of other images are hidden.
            let dangling = img.tags.is_empty() && img.repo_digests.is_empty();
            if dangling && !self.images.children(&img.id)?.is_empty() {
                continue;
            }
            listed.push((img, chains));
        }
        du.layers_size = all_layers.values().sum::<u64>() as i64;
        let mut refs: HashMap<&str, u32> = HashMap::new();
        for (_, chains) in &listed {
            for (c, _) in chains {
                *refs.entry(c.as_str()).or_default() += 1;
            }
        }
        for (img, chains) in &listed {
            let shared: u64 = chains.iter().filter(|(c, _)| refs[c.as_str()] > 1).map(|(_, s)| s).sum();
            let mut tags: Vec<_> = img.tags.iter().collect();
            tags.sort_by_key(|t| t.to_string());
            let id = img.id.to_string();
            du.images.push(ImageUsage {
                containers: per_image.get(id.as_str()).copied().unwrap_or(0),
                created: parse_rfc3339(img.config.created()).unwrap_or(ZERO_TIME_UNIX),
                labels: img.config.container_config().get("Labels").and_then(Value::as_object).cloned().unwrap_or_default(),
                parent_id: img.parent.clone().unwrap_or_default(),
                repo_digests: img
                    .repo_digests
                    .iter()
                    .map(|d| strata_image::Reference::parse(d).map(|r| r.familiar()).unwrap_or_else(|_| d.clone()))
                    .collect(),
                repo_tags: tags.iter().map(|t| t.familiar()).collect(),
                shared_size: shared as i64,
                size: img.size as i64,
                id,
            });
        }
        // Newest first, as the daemon sorts its image list.
        du.images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(())
    }

    fn container_usage(&self, containers: Vec<Container>) -> Result<Vec<ContainerUsage>> {
        // Paths first (the database is read on this thread), then the walks in parallel.
        let uppers: Vec<Option<std::path::PathBuf>> = containers.iter().map(|c| self.snapshotter().upper_dir(&c.id).ok()).collect();
        let sizes = parallel_map(&uppers, |p| p.as_deref().and_then(|p| tree_size(p).ok()).unwrap_or(0));
        let mut image_sizes: HashMap<String, Option<u64>> = HashMap::new();
        let mut resolved: HashMap<String, Option<String>> = HashMap::new();
        let mut out = Vec::with_capacity(containers.len());
        for (c, size_rw) in containers.into_iter().zip(sizes) {
            let image_size = *image_sizes
                .entry(c.image_id.clone())
                .or_insert_with(|| c.image_id.parse().ok().and_then(|d| self.images.get(&d).ok()).map(|i| i.size));
            // The daemon shows the id when the name the container was created from is gone
            // or now names another image.
            let name = c.image_name();
            let current = resolved
                .entry(name.to_string())
                .or_insert_with(|| if name.is_empty() { None } else { self.images.resolve(name).ok().map(|i| i.id.to_string()) });
            let image = if current.as_deref() == Some(c.image_id.as_str()) { name.to_string() } else { c.image_id.clone() };
            let command = std::iter::once(c.path.clone())
                .chain(c.args.iter().map(|x| if x.contains(' ') { format!("'{x}'") } else { x.clone() }))
                .collect::<Vec<_>>()
                .join(" ");
            let state = if c.status == "exited" && c.finished_at == ZERO_TIME { "created".to_string() } else { c.status.clone() };
            let mounts = match self.container_inspect(&c, false).get_mut("Mounts").map(Value::take) {
                Some(Value::Array(a)) => a,
                _ => vec![],
            };
            out.push(ContainerUsage {
                id: c.id.clone(),
                names: vec![format!("/{}", c.name)],
                image,
                image_id: c.image_id.clone(),
                command,
                created: parse_rfc3339(&c.created).unwrap_or(0),
                size_rw: size_rw as i64,
                size_root_fs: (size_rw + image_size.unwrap_or(0)) as i64,
                labels: c.config.get("Labels").and_then(Value::as_object).cloned().unwrap_or_default(),
                state,
                mounts,
                container: c,
            });
        }
        Ok(out)
    }

    fn volume_usage(&self) -> Result<Vec<VolumeUsage>> {
        let vols: Vec<strata_volume::Volume> = self
            .volumes
            .list(&strata_volume::ListFilters::default())
            .map_err(volume_error)?
            .into_iter()
            .filter(|v| v.driver == "local" && v.options.is_empty())
            .collect();
        let sizes = parallel_map(&vols, |v| tree_size(&v.mountpoint).map(|s| s as i64).unwrap_or(-1));
        let mut out = Vec::with_capacity(vols.len());
        for (v, size) in vols.into_iter().zip(sizes) {
            let used_by = self.volumes.refs(&v.name).map_err(volume_error)?;
            out.push(VolumeUsage { usage_data: UsageData { size, ref_count: used_by.len() as i64 }, used_by, volume: v });
        }
        Ok(out)
    }
}

/// `f` over `items` on a few threads; results in the order of `items`.
fn parallel_map<T: Sync, R: Send + Default + Clone>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8).min(items.len());
    if workers <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = Mutex::new(0usize);
    let results = Mutex::new(vec![R::default(); items.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = r;
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// docker's `directory.Size`: the apparent size of every non-directory under `dir`, each
/// inode once (hardlinks), symlinks not followed; mount points below `dir` are not
/// entered (another file system's data is not this volume's).
pub fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let root = fs::symlink_metadata(dir)?;
    let dev = root.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for ent in rd.flatten() {
            // DirEntry::metadata does not follow symlinks.
            let Ok(md) = ent.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                stack.push(ent.path());
                continue;
            }
            if md.size() == 0 {
                continue;
            }
            if md.nlink() > 1 && !seen.insert(md.ino()) {
                continue;
            }
            total += md.size();
        }
    }
    Ok(total)
}

pub use strata_store::parse_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56.789123Z"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("2024-02-29T14:34:56+02:00"), Some(1_709_210_096));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(ZERO_TIME_UNIX));
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn tree_size_counts_files_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/f"), vec![0u8; 1000]).unwrap();
        fs::write(d.join("a/b/g"), vec![0u8; 24]).unwrap();
        fs::hard_link(d.join("a/f"), d.join("link")).unwrap();
        std::os::unix::fs::symlink("a/f", d.join("sym")).unwrap();
        fs::write(d.join("empty"), b"").unwrap();
        assert_eq!(tree_size(d).unwrap(), 1000 + 24 + 3);
        assert!(tree_size(&d.join("missing")).is_err());
    }

    #[test]
    fn parallel_map_keeps_order() {
        let v: Vec<u32> = (0..100).collect();
        assert_eq!(parallel_map(&v, |x| x * 2), (0..100).map(|x| x * 2).collect::<Vec<_>>());
    }
}
