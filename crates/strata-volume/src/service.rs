//! The volume service: docker's rules over the drivers.
//!
//! Lifecycle of a volume:
//! - `create` makes it through its driver, then records it (driver, labels). A second
//!   `create` of the name returns the existing volume and ignores the new labels and
//!   options, as docker does. No name makes an *anonymous* volume: a random 64-hex name
//!   and the label `com.docker.volume.anonymous=""`.
//! - Containers take references with `add_ref` and drop them with `remove_ref`; they are
//!   rows, so every process sees them and `inspect` can name the holders. A referenced
//!   volume cannot be removed, stopped containers included.
//! - `mount`/`unmount` pass to the driver, which counts active mounts.
//! - `remove` forgets the record first (so no new reference can be taken), then has the
//!   driver delete the data; if the driver refuses, the record is put back.
//! - `prune` removes unreferenced local volumes without driver options, only anonymous
//!   ones unless `all`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use serde::{Serialize, Serializer};
use strata_store::{Classify, DataRoot, ErrorKind, StoreError};

use crate::driver::{DriverError, DriverVolume, LocalDriver, VolumeDriver};

/// The label docker puts on anonymous volumes; prune removes only these by default.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of the volume service, worded as docker's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("create {name}: {source}")]
    Create { name: String, source: DriverError },
    #[error("create {name}: driver '{driver}' already has volume '{name}': volume name must be unique")]
    NameConflict { name: String, driver: String },
    #[error("error looking up volume plugin {0}: plugin {0:?} not found")]
    UnknownDriver(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", refs.join(", "))]
    InUse { name: String, refs: Vec<String> },
    #[error("{op} {name}: {source}")]
    Driver { op: &'static str, name: String, source: DriverError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for VolumeError {
    fn from(e: rusqlite::Error) -> Self {
        VolumeError::Store(StoreError::Db(e))
    }
}

impl Classify for VolumeError {
    fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::Create { source, .. } | VolumeError::Driver { source, .. } => source.kind(),
            VolumeError::NameConflict { .. } | VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::UnknownDriver(_) | VolumeError::NotFound(_) => ErrorKind::NotFound,
            VolumeError::Store(e) => e.kind(),
        }
    }
}

type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// A volume as `docker volume inspect` prints it; fields in docker's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Labels", serialize_with = "null_if_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Options", serialize_with = "null_if_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Scope")]
    pub scope: &'static str,
}

// Docker's maps are nil unless something was given, and print as `null`.
fn null_if_empty<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> std::result::Result<S::Ok, S::Error> {
    if m.is_empty() {
        s.serialize_none()
    } else {
        m.serialize(s)
    }
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// `label=<k>`, `label=<k>=<v>`; `negate` for prune's `label!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
    pub negate: bool,
}

impl LabelFilter {
    /// Parses a filter value as docker does: split at the first `=`.
    pub fn parse(s: &str) -> LabelFilter {
        match s.split_once('=') {
            Some((k, v)) => LabelFilter { key: k.to_string(), value: Some(v.to_string()), negate: false },
            None => LabelFilter { key: s.to_string(), value: None, negate: false },
        }
    }

    pub fn negated(mut self) -> LabelFilter {
        self.negate = true;
        self
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
        }
    }
}

/// Docker's filter semantics: every positive label filter must match; if there are
/// negated ones, a volume matching all of them is excluded.
fn labels_match(filters: &[LabelFilter], labels: &BTreeMap<String, String>) -> bool {
    let (neg, pos): (Vec<_>, Vec<_>) = filters.iter().partition(|f| f.negate);
    pos.iter().all(|f| f.matches(labels)) && (neg.is_empty() || !neg.iter().all(|f| f.matches(labels)))
}

/// `docker volume ls` filters. Several `driver` or `name` values match if any does.
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    /// `true`: no container references the volume.
    pub dangling: Option<bool>,
    pub driver: Vec<String>,
    pub label: Vec<LabelFilter>,
    /// Exact name or substring (docker's unanchored regexp, without regexp syntax).
    pub name: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    #[serde(rename = "VolumesDeleted")]
    pub volumes_deleted: Vec<String>,
    #[serde(rename = "SpaceReclaimed")]
    pub space_reclaimed: u64,
}

pub struct VolumeService {
    root: Arc<DataRoot>,
    drivers: BTreeMap<String, Arc<dyn VolumeDriver>>,
    local: Arc<crate::driver::LocalDriver>,
}

impl VolumeService {
    /// Opens the service with the `local` driver registered.
    pub fn new(root: Arc<DataRoot>) -> Result<VolumeService> {
        root.db().migrate(&root.db_path(), "volumes", crate::MIGRATIONS)?;
        let local = LocalDriver::open(root.clone()).map_err(|source| VolumeError::Driver {
            op: "open",
            name: "local".into(),
            source,
        })?;
        let local = Arc::new(local);
        let mut drivers: BTreeMap<String, Arc<dyn VolumeDriver>> = BTreeMap::new();
        drivers.insert("local".into(), local.clone());
        Ok(VolumeService { root, drivers, local })
    }

    /// Crash recovery for the local driver (see `LocalDriver::sweep`).
    pub fn sweep(&self) {
        self.local.sweep();
    }

    /// Adds (or replaces) a driver under its own name.
    pub fn register_driver(&mut self, driver: Arc<dyn VolumeDriver>) {
        self.drivers.insert(driver.name().to_string(), driver);
    }

    fn driver(&self, name: &str) -> Result<&Arc<dyn VolumeDriver>> {
        self.drivers.get(name).ok_or_else(|| VolumeError::UnknownDriver(name.to_string()))
    }

    fn record(&self, name: &str) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let row = self.root.db().read(|c| {
            c.query_row("SELECT driver, labels FROM volumes WHERE name=?1", [name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
        })?;
        Ok(row.map(|(d, l)| (d, serde_json::from_str(&l).unwrap_or_default())))
    }

    fn assemble(driver: &str, labels: BTreeMap<String, String>, dv: DriverVolume) -> Volume {
        Volume {
            created_at: dv.created_at,
            driver: driver.to_string(),
            labels,
            mountpoint: dv.mountpoint,
            name: dv.name,
            options: dv.options,
            scope: "local",
        }
    }

    /// Creates a volume, or returns the existing one of that name. `name` `None` (or
    /// empty) makes an anonymous volume; `driver` `None` means `local`.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        mut labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                strata_store::random_hex(32)
            }
        };
        if let Some((existing, _)) = self.record(&name)? {
            if driver.is_some_and(|d| d != existing) {
                return Err(VolumeError::NameConflict { name, driver: existing });
            }
            return self.get(&name);
        }
        let driver_name = driver.filter(|d| !d.is_empty()).unwrap_or("local");
        let drv = self.driver(driver_name)?;
        drv.create(&name, &options).map_err(|source| VolumeError::Create { name: name.clone(), source })?;
        let labels_json = serde_json::to_string(&labels).expect("a string map serialises");
        // A concurrent create of the same name may have recorded it first; theirs stands.
        self.root.db().write(|tx| {
            tx.execute(
                "INSERT INTO volumes(name, driver, labels) VALUES(?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                params![name, driver_name, labels_json],
            )
        })?;
        self.get(&name)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        let Some((driver, labels)) = self.record(name)? else { return Err(VolumeError::NotFound(name.to_string())) };
        let dv = match self.driver(&driver)?.get(name) {
            Ok(dv) => dv,
            Err(DriverError::NotFound) => return Err(VolumeError::NotFound(name.to_string())),
            Err(source) => return Err(VolumeError::Driver { op: "get", name: name.to_string(), source }),
        };
        Ok(Self::assemble(&driver, labels, dv))
    }

    /// Every volume matching `filters`, by name.
    pub fn list(&self, filters: &ListFilters) -> Result<Vec<Volume>> {
        let names: Vec<String> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT name FROM volumes ORDER BY name")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        let referenced: HashSet<String> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT DISTINCT volume FROM volume_refs")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        let mut out = Vec::new();
        for name in names {
            let v = match self.get(&name) {
                Ok(v) => v,
                // Removed since we listed: not an error for a listing.
                Err(VolumeError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if filters.dangling.is_some_and(|d| d == referenced.contains(&v.name)) {
                continue;
            }
            if !filters.driver.is_empty() && !filters.driver.contains(&v.driver) {
                continue;
            }
            if !labels_match(&filters.label, &v.labels) {
                continue;
            }
            if !filters.name.is_empty() && !filters.name.iter().any(|n| v.name.contains(n.as_str())) {
                continue;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Removes a volume no container references. `force` makes a missing volume a
    /// success; it never overrides "in use".
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let removed = self.root.db().write(|tx| {
            let Some((driver, labels)) = tx
                .query_row("SELECT driver, labels FROM volumes WHERE name=?1", [name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let refs = refs_of(tx, name)?;
            if !refs.is_empty() {
                return Err(VolumeError::InUse { name: name.to_string(), refs });
            }
            tx.execute("DELETE FROM volumes WHERE name=?1", [name])?;
            Ok(Some((driver, labels)))
        })?;
        let Some((driver, labels)) = removed else {
            return if force { Ok(()) } else { Err(VolumeError::NotFound(name.to_string())) };
        };
        match self.driver(&driver).map(|d| d.remove(name)) {
            Ok(Ok(())) | Ok(Err(DriverError::NotFound)) => Ok(()),
            other => {
                // The driver kept the volume (active mounts, I/O): so must we.
                self.root.db().write(|tx| {
                    tx.execute(
                        "INSERT INTO volumes(name, driver, labels) VALUES(?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                        params![name, driver, labels],
                    )
                })?;
                match other {
                    Err(e) => Err(e),
                    Ok(Err(source)) => Err(VolumeError::Driver { op: "remove", name: name.to_string(), source }),
                    Ok(Ok(())) => unreachable!("handled above"),
                }
            }
        }
    }

    /// Docker's `volume prune`: local volumes without options and without references;
    /// only anonymous ones unless `all`; narrowed by `labels` (`label` and `label!`).
    pub fn prune(&self, all: bool, labels: &[LabelFilter]) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        for v in self.list(&ListFilters { dangling: Some(true), ..Default::default() })? {
            if v.driver != "local" || !v.options.is_empty() || (!all && !v.is_anonymous()) {
                continue;
            }
            if !labels_match(labels, &v.labels) {
                continue;
            }
            let size = dir_size(&v.mountpoint);
            match self.remove(&v.name, false) {
                Ok(()) => {
                    report.volumes_deleted.push(v.name);
                    report.space_reclaimed += size;
                }
                // A container took it since we listed, or it went away: not ours to report.
                Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(volume = %v.name, error = %e, "cannot prune volume"),
            }
        }
        Ok(report)
    }

    /// Records that `container_id` uses `volume` (idempotent).
    pub fn add_ref(&self, volume: &str, container_id: &str) -> Result<()> {
        self.root.db().write(|tx| {
            let exists = tx.query_row("SELECT 1 FROM volumes WHERE name=?1", [volume], |_| Ok(())).optional()?;
            if exists.is_none() {
                return Err(VolumeError::NotFound(volume.to_string()));
            }
            tx.execute(
                "INSERT INTO volume_refs(volume, container) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
                params![volume, container_id],
            )?;
            Ok(())
        })
    }

    /// Drops `container_id`'s reference; dropping one that is not there is not an error.
    pub fn remove_ref(&self, volume: &str, container_id: &str) -> Result<()> {
        self.root.db().write(|tx| {
            tx.execute("DELETE FROM volume_refs WHERE volume=?1 AND container=?2", params![volume, container_id])
        })?;
        Ok(())
    }

    /// The containers holding `volume`, sorted.
    pub fn refs(&self, volume: &str) -> Result<Vec<String>> {
        Ok(self.root.db().read(|c| refs_of(c, volume))?)
    }

    /// Mounts the volume through its driver; returns where its data is.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        let v = self.get(name)?;
        self.driver(&v.driver)?.mount(name).map_err(|source| VolumeError::Driver {
            op: "mount",
            name: name.to_string(),
            source,
        })
    }

    pub fn unmount(&self, name: &str) -> Result<()> {
        let v = self.get(name)?;
        self.driver(&v.driver)?.unmount(name).map_err(|source| VolumeError::Driver {
            op: "unmount",
            name: name.to_string(),
            source,
        })
    }
}

fn refs_of(c: &rusqlite::Connection, volume: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare("SELECT container FROM volume_refs WHERE volume=?1 ORDER BY container")?;
    let rows = st.query_map([volume], |r| r.get(0))?;
    rows.collect()
}

/// Apparent size of a tree, hard links counted once, never leaving its filesystem (as
/// docker's `directory.Size`).
fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(rd) = fs::read_dir(dir) else { return 0 };
        let mut total = 0;
        for ent in rd.flatten() {
            let Ok(md) = fs::symlink_metadata(ent.path()) else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                total += walk(&ent.path(), dev, seen);
            } else if md.nlink() < 2 || seen.insert((md.dev(), md.ino())) {
                total += md.size();
            }
        }
        total
    }
    match fs::symlink_metadata(dir) {
        Ok(md) => walk(dir, md.dev(), &mut HashSet::new()),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::root;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn service(dir: &Path) -> VolumeService {
        VolumeService::new(root(dir)).unwrap()
    }

    #[test]
    fn create_validates_names_with_dockers_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let e = s.create(Some("x"), None, map(&[]), map(&[])).unwrap_err();
        assert_eq!(e.to_string(), "create x: volume name is too short, names should be at least two alphanumeric characters");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let e = s.create(Some("x/y"), None, map(&[]), map(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "create x/y: \"x/y\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        let e = s.create(Some("ok1"), Some("nope"), map(&[]), map(&[])).unwrap_err();
        assert_eq!(e.to_string(), "error looking up volume plugin nope: plugin \"nope\" not found");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(s.list(&ListFilters::default()).unwrap().is_empty());
    }

    #[test]
    fn create_is_idempotent_for_an_existing_name() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let a = s.create(Some("data"), None, map(&[("a", "1")]), map(&[])).unwrap();
        std::fs::write(a.mountpoint.join("keep"), b"x").unwrap();
        let b = s.create(Some("data"), Some("local"), map(&[("b", "2")]), map(&[])).unwrap();
        assert_eq!(a, b, "new labels are ignored");
        assert_eq!(b.labels, map(&[("a", "1")]));
        assert!(b.mountpoint.join("keep").exists());
        let e = s.create(Some("data"), Some("other"), map(&[]), map(&[])).unwrap_err();
        assert_eq!(e.to_string(), "create data: driver 'local' already has volume 'data': volume name must be unique");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        // A new service (another process) sees the same volume.
        assert_eq!(service(tmp.path()).get("data").unwrap(), a);
    }

    #[test]
    fn anonymous_volumes_get_a_random_name_and_the_label() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let v = s.create(None, None, map(&[("x", "y")]), map(&[])).unwrap();
        assert_eq!(v.name.len(), 64);
        assert!(v.name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(v.labels, map(&[(ANONYMOUS_LABEL, ""), ("x", "y")]));
        assert!(v.is_anonymous());
        let w = s.create(Some(""), None, map(&[]), map(&[])).unwrap();
        assert_ne!(v.name, w.name);
        assert!(w.is_anonymous());
        assert_eq!(v.mountpoint, tmp.path().join("volumes").join(&v.name).join("_data"));
    }

    #[test]
    fn inspect_json_has_dockers_keys_order_and_nulls() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let v = s.create(Some("named"), None, map(&[]), map(&[])).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        let created = v.created_at.clone().unwrap();
        assert!(created.ends_with('Z') && !created.contains('.'), "{created}");
        assert_eq!(
            json,
            format!(
                r#"{{"CreatedAt":"{created}","Driver":"local","Labels":null,"Mountpoint":"{}","Name":"named","Options":null,"Scope":"local"}}"#,
                v.mountpoint.display()
            )
        );
        let a = s.create(None, None, map(&[]), map(&[("type", "tmpfs"), ("device", "tmpfs")])).unwrap();
        let json: serde_json::Value = serde_json::to_value(&a).unwrap();
        assert_eq!(json["Labels"], serde_json::json!({ANONYMOUS_LABEL: ""}));
        assert_eq!(json["Options"], serde_json::json!({"device": "tmpfs", "type": "tmpfs"}));
    }

    #[test]
    fn remove_refuses_a_volume_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let v = s.create(Some("shared"), None, map(&[]), map(&[])).unwrap();
        let (c1, c2) = ("a".repeat(64), "b".repeat(64));
        s.add_ref("shared", &c2).unwrap();
        s.add_ref("shared", &c1).unwrap();
        s.add_ref("shared", &c1).unwrap();
        assert_eq!(s.refs("shared").unwrap(), vec![c1.clone(), c2.clone()]);
        for force in [false, true] {
            let e = s.remove("shared", force).unwrap_err();
            assert_eq!(e.to_string(), format!("remove shared: volume is in use - [{c1}, {c2}]"));
            assert_eq!(e.kind(), ErrorKind::Conflict);
        }
        assert!(v.mountpoint.exists());
        assert_eq!(s.list(&ListFilters { dangling: Some(false), ..Default::default() }).unwrap().len(), 1);
        s.remove_ref("shared", &c1).unwrap();
        s.remove_ref("shared", &c2).unwrap();
        s.remove_ref("shared", &c2).unwrap();
        s.remove("shared", false).unwrap();
        assert!(!v.mountpoint.exists());
        let e = s.get("shared").unwrap_err();
        assert_eq!(e.to_string(), "get shared: no such volume");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(s.remove("shared", false).unwrap_err().to_string(), "get shared: no such volume");
        s.remove("shared", true).unwrap();
        assert!(matches!(s.add_ref("shared", &c1), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn prune_removes_anonymous_by_default_and_all_unused_with_all() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let anon = s.create(None, None, map(&[]), map(&[])).unwrap();
        std::fs::write(anon.mountpoint.join("f"), vec![0u8; 1000]).unwrap();
        let anon_used = s.create(None, None, map(&[]), map(&[])).unwrap();
        s.add_ref(&anon_used.name, "c1").unwrap();
        let anon_opts = s.create(None, None, map(&[]), map(&[("type", "tmpfs"), ("device", "tmpfs")])).unwrap();
        s.create(Some("named"), None, map(&[("keep", "no")]), map(&[])).unwrap();
        s.create(Some("named2"), None, map(&[("keep", "yes")]), map(&[])).unwrap();

        let r = s.prune(false, &[]).unwrap();
        assert_eq!(r.volumes_deleted, vec![anon.name.clone()]);
        assert_eq!(r.space_reclaimed, 1000);
        assert!(!anon.mountpoint.exists());

        let r = s.prune(true, &[LabelFilter::parse("keep=yes").negated()]).unwrap();
        assert_eq!(r.volumes_deleted, vec!["named".to_string()]);
        let r = s.prune(true, &[LabelFilter::parse("keep")]).unwrap();
        assert_eq!(r.volumes_deleted, vec!["named2".to_string()]);

        let mut left: Vec<String> = s.list(&ListFilters::default()).unwrap().into_iter().map(|v| v.name).collect();
        left.sort();
        let mut want = vec![anon_used.name.clone(), anon_opts.name.clone()];
        want.sort();
        assert_eq!(left, want, "referenced and option-backed volumes are never pruned");
        assert!(s.prune(true, &[]).unwrap().volumes_deleted.is_empty());
    }

    #[test]
    fn list_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        s.create(Some("xfooy"), None, map(&[("env", "prod")]), map(&[])).unwrap();
        s.create(Some("bar"), None, map(&[("env", "dev")]), map(&[])).unwrap();
        s.add_ref("bar", "c1").unwrap();
        let names = |f: ListFilters| -> Vec<String> { s.list(&f).unwrap().into_iter().map(|v| v.name).collect() };
        assert_eq!(names(ListFilters::default()), vec!["bar", "xfooy"]);
        assert_eq!(names(ListFilters { dangling: Some(true), ..Default::default() }), vec!["xfooy"]);
        assert_eq!(names(ListFilters { dangling: Some(false), ..Default::default() }), vec!["bar"]);
        assert_eq!(names(ListFilters { name: vec!["foo".into()], ..Default::default() }), vec!["xfooy"]);
        assert_eq!(names(ListFilters { name: vec!["foo".into(), "ba".into()], ..Default::default() }), vec!["bar", "xfooy"]);
        assert_eq!(names(ListFilters { label: vec![LabelFilter::parse("env=dev")], ..Default::default() }), vec!["bar"]);
        assert_eq!(names(ListFilters { label: vec![LabelFilter::parse("env")], ..Default::default() }).len(), 2);
        assert!(names(ListFilters { label: vec![LabelFilter::parse("env"), LabelFilter::parse("env=x")], ..Default::default() }).is_empty());
        assert_eq!(names(ListFilters { driver: vec!["local".into()], ..Default::default() }).len(), 2);
        assert!(names(ListFilters { driver: vec!["nfs".into()], ..Default::default() }).is_empty());
    }
}
