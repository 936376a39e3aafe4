//! The snapshotter: directories for layer chains and container writable layers.
//!
//! Lifecycle (containerd's model):
//! - `prepare(key, parent)` creates an *active* snapshot: a writable directory on top of
//!   the committed `parent` chain. `view` creates a read-only one.
//! - Writers fill an active snapshot through `upper_dir` (layer unpack writes there
//!   directly, with whiteouts in overlay form) or through its mounts (a container).
//! - `commit(name, key)` turns an active snapshot into the immutable, shareable
//!   *committed* snapshot `name`; image layers are committed under their chain id, so
//!   every image and container with that chain shares one directory.
//! - `remove(key)` deletes a snapshot that nothing builds on.
//! - `mounts(key)` returns `Mount` values; the snapshotter itself never mounts.
//!
//! Crash safety: the row is inserted (with the creator's lease for in-flight work)
//! before the directory is made, and deleted before the directory is removed. The sweep
//! removes rows of dead leases and, after a reboot, directories without a row.
//!
//! Directories are `snapshots/<n>/{fs,work}` with a small integer `n`, which keeps the
//! legacy overlay option string short.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use strata_store::{fsutil, DataRoot, Lease, Sweep};

use crate::error::SnapshotError;
use crate::layer::{self, Change, WhiteoutMode};
use crate::mount::Mount;

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

const MIGRATIONS: &[&str] = &["CREATE TABLE snapshots(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        parent TEXT REFERENCES snapshots(key),
        kind TEXT NOT NULL CHECK(kind IN ('active','view','committed')),
        lease TEXT,
        created TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX snapshots_parent ON snapshots(parent);
    CREATE INDEX snapshots_lease ON snapshots(lease) WHERE lease IS NOT NULL;"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Layers are overlay lower dirs; nothing is copied.
    Overlay,
    /// Each snapshot is a full copy of its parent; for filesystems overlay cannot sit on.
    Copy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay2",
            Driver::Copy => "vfs",
        }
    }
    /// How whiteouts in a layer tar must be written into this driver's directories.
    pub fn whiteouts(self) -> WhiteoutMode {
        match self {
            Driver::Overlay => WhiteoutMode::Overlay,
            Driver::Copy => WhiteoutMode::Delete,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Active,
    View,
    Committed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
    fn parse(s: &str) -> Kind {
        match s {
            "active" => Kind::Active,
            "view" => Kind::View,
            _ => Kind::Committed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Info {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub id: i64,
    pub size: u64,
}

pub struct Snapshotter {
    root: Arc<DataRoot>,
    dir: PathBuf,
    driver: Driver,
}

impl Snapshotter {
    pub fn open(root: Arc<DataRoot>, driver: Driver) -> Result<Snapshotter> {
        root.db().migrate(&root.db_path(), "snapshots", MIGRATIONS)?;
        let dir = root.path().join("snapshots");
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(SnapshotError::io("create", &dir))?;
            strata_store::fsutil::spread_children(&dir);
        }
        Ok(Snapshotter { root, dir, driver })
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    fn snap_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        self.try_stat(key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    pub fn try_stat(&self, key: &str) -> Result<Option<Info>> {
        Ok(self.root.db().read(|c| {
            c.query_row("SELECT key, parent, kind, id, size FROM snapshots WHERE key=?1", [key], |r| {
                Ok(Info {
                    key: r.get(0)?,
                    parent: r.get(1)?,
                    kind: Kind::parse(&r.get::<_, String>(2)?),
                    id: r.get(3)?,
                    size: r.get::<_, i64>(4)? as u64,
                })
            })
            .optional()
        })?)
    }

    /// The chain of committed snapshots under `parent`, topmost first.
    fn chain(&self, parent: Option<&str>) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        let mut cur = parent.map(str::to_string);
        while let Some(k) = cur {
            let info = self.stat(&k)?;
            if info.kind != Kind::Committed {
                return Err(SnapshotError::WrongKind { key: k, kind: info.kind.as_str().into(), want: "committed" });
            }
            cur = info.parent.clone();
            out.push(info);
        }
        Ok(out)
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind, lease: Option<&Lease>) -> Result<Info> {
        let chain = self.chain(parent)?;
        let id = self.root.db().write(|tx| -> Result<i64> {
            let res = tx.execute(
                "INSERT INTO snapshots(key, parent, kind, lease, created) VALUES(?1, ?2, ?3, ?4, ?5)",
                params![key, parent, kind.as_str(), lease.map(|l| l.id()), strata_store::now_rfc3339()],
            );
            match res {
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Err(SnapshotError::AlreadyExists(key.to_string()))
                }
                r => {
                    r?;
                    Ok(tx.last_insert_rowid())
                }
            }
        })?;
        let dir = self.snap_dir(id);
        let made = (|| -> Result<()> {
            if kind == Kind::View {
                return Ok(());
            }
            fs::create_dir_all(dir.join("fs")).map_err(SnapshotError::io("create", dir.join("fs")))?;
            match self.driver {
                Driver::Overlay => {
                    fs::create_dir_all(dir.join("work")).map_err(SnapshotError::io("create", dir.join("work")))?
                }
                Driver::Copy => {
                    if let Some(p) = chain.first() {
                        copy_tree(&self.snap_dir(p.id).join("fs"), &dir.join("fs"))?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = self.remove(key);
            return Err(e);
        }
        Ok(Info { key: key.to_string(), parent: parent.map(str::to_string), kind, id, size: 0 })
    }

    /// Creates an active (writable) snapshot on top of `parent`. `lease` marks it as
    /// in-flight work to be swept if the process dies; a container's snapshot has none.
    pub fn prepare(&self, key: &str, parent: Option<&str>, lease: Option<&Lease>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active, lease)?;
        self.mounts(key)
    }

    /// Creates a read-only view of the committed `parent`.
    pub fn view(&self, key: &str, parent: &str, lease: Option<&Lease>) -> Result<Vec<Mount>> {
        self.create(key, Some(parent), Kind::View, lease)?;
        self.mounts(key)
    }

    /// The directory an unpacker writes a layer into for an active snapshot.
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(SnapshotError::WrongKind { key: key.into(), kind: info.kind.as_str().into(), want: "active" });
        }
        Ok(self.snap_dir(info.id).join("fs"))
    }

    /// The directories of a committed chain, topmost first (for `changes`, `export`).
    pub fn lower_dirs(&self, parent: Option<&str>) -> Result<Vec<PathBuf>> {
        Ok(self.chain(parent)?.iter().map(|i| self.snap_dir(i.id).join("fs")).collect())
    }

    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.stat(key)?;
        let chain = self.chain(info.parent.as_deref())?;
        let own = self.snap_dir(info.id);
        let lowers: Vec<PathBuf> = chain.iter().map(|i| self.snap_dir(i.id).join("fs")).collect();
        Ok(match (self.driver, info.kind) {
            (Driver::Copy, Kind::View) => vec![Mount::Bind { source: lowers.first().cloned().unwrap_or(own.join("fs")), readonly: true }],
            (Driver::Copy, k) => vec![Mount::Bind { source: own.join("fs"), readonly: k == Kind::Committed }],
            (Driver::Overlay, Kind::Active) if lowers.is_empty() => {
                vec![Mount::Bind { source: own.join("fs"), readonly: false }]
            }
            (Driver::Overlay, Kind::Active) => vec![Mount::Overlay {
                lowers,
                upper: Some(own.join("fs")),
                work: Some(own.join("work")),
                volatile: true,
            }],
            (Driver::Overlay, Kind::Committed) => {
                let mut l = vec![own.join("fs")];
                l.extend(lowers);
                ro_mount(l)
            }
            (Driver::Overlay, Kind::View) => ro_mount(lowers),
        })
    }

    /// A read-only view of snapshot `key` as it is now, for reading it whole (`export`)
    /// while it may also be mounted writable: an active snapshot's upper dir becomes the
    /// topmost lower of a read-only overlay, which needs no work dir and takes no lock.
    pub fn read_only_mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return self.mounts(key);
        }
        let own = self.snap_dir(info.id).join("fs");
        let lowers = self.lower_dirs(info.parent.as_deref())?;
        Ok(match self.driver {
            Driver::Overlay if !lowers.is_empty() => {
                let mut l = vec![own];
                l.extend(lowers);
                ro_mount(l)
            }
            _ => vec![Mount::Bind { source: own, readonly: true }],
        })
    }

    /// Turns the active snapshot `key` into the committed snapshot `name`. If `name`
    /// already exists (another process committed the same chain first), the active
    /// snapshot is removed and `AlreadyExists` returned: the caller uses the existing one.
    pub fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.commit_with(name, key, true)
    }

    /// `commit`, optionally without flushing the files first — for layers that can be
    /// recreated at will (a container's init layer), where a sync per container would
    /// cost more than it protects.
    pub fn commit_with(&self, name: &str, key: &str, durable: bool) -> Result<()> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(SnapshotError::WrongKind { key: key.into(), kind: info.kind.as_str().into(), want: "active" });
        }
        let dir = self.snap_dir(info.id);
        let size = dir_size(&dir.join("fs"));
        // The layer's files must be on disk before the database says the layer exists.
        if durable {
            sync_fs(&dir.join("fs"))?;
        }
        if self.driver == Driver::Overlay {
            // A committed layer is only ever a lower dir: its work dir is dead weight.
            let _ = fsutil::remove_all(&dir.join("work"));
        }
        let res = self.root.db().write(|tx| -> Result<()> {
            if name != key && tx.query_row("SELECT 1 FROM snapshots WHERE key=?1", [name], |_| Ok(())).optional()?.is_some() {
                return Err(SnapshotError::AlreadyExists(name.to_string()));
            }
            tx.execute(
                "UPDATE snapshots SET key=?1, kind='committed', lease=NULL, size=?2 WHERE key=?3",
                params![name, size as i64, key],
            )?;
            Ok(())
        });
        if let Err(SnapshotError::AlreadyExists(_)) = &res {
            self.remove(key)?;
        }
        res
    }

    /// Removes a snapshot that has no children. The directory goes after the row, so a
    /// crash in between leaves an orphan directory for the sweep, never a row without data.
    pub fn remove(&self, key: &str) -> Result<()> {
        let id = self.root.db().write(|tx| -> Result<i64> {
            let id: i64 = tx
                .query_row("SELECT id FROM snapshots WHERE key=?1", [key], |r| r.get(0))
                .optional()?
                .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            if tx.query_row("SELECT 1 FROM snapshots WHERE parent=?1 LIMIT 1", [key], |_| Ok(())).optional()?.is_some() {
                return Err(SnapshotError::HasChildren(key.to_string()));
            }
            tx.execute("DELETE FROM snapshots WHERE id=?1", [id])?;
            Ok(id)
        })?;
        fsutil::remove_all(&self.snap_dir(id))?;
        Ok(())
    }

    /// Disk usage of a snapshot's own directory (committed: recorded at commit).
    pub fn usage(&self, key: &str) -> Result<u64> {
        let info = self.stat(key)?;
        Ok(match info.kind {
            Kind::Committed => info.size,
            _ => dir_size(&self.snap_dir(info.id).join("fs")),
        })
    }

    /// What an active snapshot changed against its parent chain (docker diff).
    pub fn changes(&self, key: &str) -> Result<Vec<Change>> {
        if self.driver != Driver::Overlay {
            return Err(SnapshotError::Unsupported("changes", "vfs"));
        }
        let info = self.stat(key)?;
        let lowers = self.lower_dirs(info.parent.as_deref())?;
        Ok(layer::changes(&self.snap_dir(info.id).join("fs"), &lowers)?)
    }

    /// Every snapshot, for `system check`.
    pub fn list(&self) -> Result<Vec<Info>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare("SELECT key, parent, kind, id, size FROM snapshots ORDER BY id")?;
            let rows = st.query_map([], |r| {
                Ok(Info {
                    key: r.get(0)?,
                    parent: r.get(1)?,
                    kind: Kind::parse(&r.get::<_, String>(2)?),
                    id: r.get(3)?,
                    size: r.get::<_, i64>(4)? as u64,
                })
            })?;
            rows.collect()
        })?)
    }

    /// Whether the directory of a snapshot is present (for `system check`).
    pub fn dir_exists(&self, info: &Info) -> bool {
        info.kind == Kind::View || self.snap_dir(info.id).join("fs").is_dir()
    }

    /// Removes what dead leases left: their active snapshots, and after a reboot any
    /// directory that has no row.
    pub fn sweep(&self, sweep: &Sweep) -> Result<()> {
        // Data roots made before the hint existed get it here.
        strata_store::fsutil::spread_children(&self.dir);
        for lease in &sweep.dead {
            let keys: Vec<String> = self.root.db().read(|c| {
                let mut st = c.prepare("SELECT key FROM snapshots WHERE lease=?1 ORDER BY id DESC")?;
                let r = st.query_map([lease], |r| r.get(0))?.collect();
                r
            })?;
            for k in keys {
                self.remove(&k)?;
            }
        }
        if sweep.rebooted {
            let ids: Vec<i64> = self.list()?.iter().map(|i| i.id).collect();
            for ent in fs::read_dir(&self.dir).map_err(SnapshotError::io("read dir", &self.dir))?.flatten() {
                let keep = ent.file_name().to_str().and_then(|s| s.parse::<i64>().ok()).is_some_and(|id| ids.contains(&id));
                if !keep {
                    fsutil::remove_all(&ent.path())?;
                }
            }
        }
        Ok(())
    }
}

fn ro_mount(lowers: Vec<PathBuf>) -> Vec<Mount> {
    if lowers.len() == 1 {
        vec![Mount::Bind { source: lowers.into_iter().next().expect("one lower"), readonly: true }]
    } else {
        vec![Mount::Overlay { lowers, upper: None, work: None, volatile: false }]
    }
}

/// Sum of the sizes of regular files and symlinks under `dir`, as docker reports layer
/// sizes. Hardlinked files count once.
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.is_file() || md.file_type().is_symlink() {
                if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
                    continue;
                }
                total += md.size();
            }
        }
    }
    total
}

/// One `syncfs` for the filesystem holding `dir`: cheaper than an fsync per file and
/// covers every file the unpack wrote.
fn sync_fs(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(SnapshotError::io("open", dir))?;
    rustix::fs::syncfs(&f).map_err(|e| SnapshotError::io("sync", dir)(e.into()))
}

/// Copies a tree with everything a layer carries (owners, modes, xattrs, links), by
/// streaming it through the layer writer into the layer applier.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let (r, w) = std::io::pipe().map_err(SnapshotError::io("pipe", from))?;
    let src = from.to_path_buf();
    let writer = std::thread::spawn(move || layer::write_tar(&src, w, &layer::WriteOptions { exclude: vec![] }));
    let applied = layer::apply_tar(r, to, &layer::ApplyOptions { whiteouts: WhiteoutMode::Delete });
    let written = writer.join().map_err(|_| SnapshotError::io("copy", from)(std::io::Error::other("writer panicked")))?;
    written?;
    applied?;
    Ok(())
}
