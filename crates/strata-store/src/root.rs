//! The data root directory and what every command opens first.

use std::fs;
use std::path::{Path, PathBuf};

use crate::content::ContentStore;
use crate::db::Db;
use crate::lease::{self, Lease, Sweep};
use crate::{fsutil, Result, StoreError};

pub struct DataRoot {
    path: PathBuf,
    db: Db,
    content: ContentStore,
}

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

impl DataRoot {
    /// Opens (creating if needed) the data root at `path`. Returns the sweep of dead
    /// leases found on the way; the caller lets each module clean what it owns under
    /// them, then calls `finish_sweep`.
    pub fn open(path: &Path) -> Result<(DataRoot, Sweep)> {
        for d in ["", "tmp", "leases", "content"] {
            let p = path.join(d);
            fs::create_dir_all(&p).map_err(StoreError::io("create", &p))?;
        }
        let db = Db::open(&path.join("strata.db"))?;
        let content = ContentStore::open(path.join("content"))?;
        let root = DataRoot { path: path.to_path_buf(), db, content };
        let rebooted = root.boot_changed()?;
        let (sweep, live) = lease::scan(&root.path.join("leases"), rebooted)?;
        if !sweep.is_empty() {
            for dir in [root.path.join("tmp"), root.content.ingest_dir()] {
                for ent in fs::read_dir(&dir).map_err(StoreError::io("read dir", &dir))?.flatten() {
                    if sweep.owns(&ent.file_name().to_string_lossy(), &live) {
                        fsutil::remove_all(&ent.path())?;
                    }
                }
            }
        }
        Ok((root, sweep))
    }

    /// Ends a sweep: removes the dead lease files and records the boot id.
    pub fn finish_sweep(&self, sweep: Sweep) -> Result<()> {
        if sweep.rebooted {
            let id = fs::read_to_string(BOOT_ID).unwrap_or_default();
            fsutil::write_atomic(&self.path.join("boot_id"), id.trim().as_bytes())?;
        }
        sweep.release();
        Ok(())
    }

    fn boot_changed(&self) -> Result<bool> {
        let now = fs::read_to_string(BOOT_ID).unwrap_or_default();
        let seen = fs::read_to_string(self.path.join("boot_id")).unwrap_or_default();
        Ok(now.trim() != seen.trim())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn db(&self) -> &Db {
        &self.db
    }
    pub fn db_path(&self) -> PathBuf {
        self.path.join("strata.db")
    }
    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn lease(&self) -> Result<Lease> {
        Lease::acquire(&self.path.join("leases"), self.path.join("tmp"))
    }
}
