//! Leases: how in-flight work (an import, a load, a pull, a build) claims the temporary
//! things it creates, so that a crash never leaves them behind for good.
//!
//! A lease is a file `leases/<id>` held with `flock` for as long as the work runs. The
//! kernel drops the lock when the holder dies, however it dies, so "lock can be taken"
//! means "holder is gone" — no pid-reuse guessing. Resources created under a lease are
//! named after it (`ingest/<id>.<n>`, `tmp/<id>.<n>`, snapshot rows with `lease=<id>`).
//!
//! Sweep (on open of the data root): one `readdir` of `leases/`. Only when a lease file
//! is lockable (its holder died) — the dirty flag — or the boot id changed, does any
//! cleanup run. A clean exit removes its lease file, so the common case costs one readdir.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{flock, FlockOperation};

use crate::{random_hex, Result, StoreError};

pub struct Lease {
    id: String,
    path: PathBuf,
    tmp_root: PathBuf,
    next: AtomicU32,
    _file: File,
}

impl Lease {
    pub(crate) fn acquire(leases_dir: &Path, tmp_root: PathBuf) -> Result<Lease> {
        let id = random_hex(8);
        // Lock under a temporary name, then rename: a sweeper never sees an unlocked lease.
        let tmp = leases_dir.join(format!(".new-{id}"));
        let file = OpenOptions::new().create_new(true).write(true).open(&tmp).map_err(StoreError::io("create", &tmp))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| StoreError::io("lock", &tmp)(e.into()))?;
        let path = leases_dir.join(&id);
        fs::rename(&tmp, &path).map_err(StoreError::io("rename", &path))?;
        Ok(Lease { id, path, tmp_root, next: AtomicU32::new(0), _file: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh name owned by this lease: `<lease id>.<n>`.
    pub fn resource_name(&self) -> String {
        format!("{}.{}", self.id, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates a new empty directory under the data root's `tmp/`, owned by this lease.
    /// Same filesystem as the stores, so its contents can be renamed into place.
    pub fn tmp_dir(&self) -> Result<PathBuf> {
        let p = self.tmp_root.join(self.resource_name());
        fs::create_dir(&p).map_err(StoreError::io("create", &p))?;
        Ok(p)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The result of a start-up sweep: leases whose holders died. While a `Sweep` is alive
/// this process holds their locks, so no other process sweeps the same lease.
pub struct Sweep {
    pub dead: Vec<String>,
    /// The machine rebooted since the last command: nothing from before is running.
    pub rebooted: bool,
    files: Vec<(PathBuf, File)>,
}

impl Sweep {
    pub fn is_empty(&self) -> bool {
        self.dead.is_empty() && !self.rebooted
    }

    /// Whether a resource name (`<id>.<n>`) belongs to a dead lease, or — after a reboot —
    /// to any lease not currently live.
    pub fn owns(&self, resource: &str, live: &[String]) -> bool {
        let id = resource.split('.').next().unwrap_or("");
        if self.dead.iter().any(|d| d == id) {
            return true;
        }
        self.rebooted && !live.iter().any(|l| l == id)
    }

    pub(crate) fn release(self) {
        for (p, _f) in self.files {
            let _ = fs::remove_file(p);
        }
    }
}

/// Finds dead leases; returns them locked, and the ids of live ones.
pub(crate) fn scan(leases_dir: &Path, rebooted: bool) -> Result<(Sweep, Vec<String>)> {
    let mut sweep = Sweep { dead: Vec::new(), rebooted, files: Vec::new() };
    let mut live = Vec::new();
    for ent in fs::read_dir(leases_dir).map_err(StoreError::io("read dir", leases_dir))? {
        let ent = ent.map_err(StoreError::io("read dir", leases_dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let path = ent.path();
        // A `.new-` file may be between its creation and its lock in a live process, so
        // a lock taken on it proves nothing. Nothing is ever named after a lease before
        // its rename, so a crashed one owns nothing: only a reboot clears them.
        if name.starts_with(".new-") {
            if rebooted {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                sweep.dead.push(name);
                sweep.files.push((path, file));
            }
            Err(_) => live.push(name),
        }
    }
    Ok((sweep, live))
}
