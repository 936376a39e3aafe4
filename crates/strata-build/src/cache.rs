//! The build cache, in the data root's database (tables owned here):
//! - `build_cache`: step key → the image that step produced. The key hashes the parent
//!   image, the instruction as recorded in history (which carries a content hash for
//!   COPY/ADD), the resulting config (build args included) and anything else that
//!   changes the result. A row goes with its image (`ON DELETE CASCADE`).
//! - `build_file_hashes`: content hashes of context files by (device, inode), valid
//!   while size, mtime and ctime are unchanged, so a rebuild over an unchanged context
//!   reads no file.

use rusqlite::{params, OptionalExtension};
use rustix::fs::Stat;
use strata_store::{DataRoot, Digest};

use crate::copy::HashCache;

const MIGRATIONS: &[&str] = &["CREATE TABLE build_cache(
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created TEXT NOT NULL
    );
    CREATE INDEX build_cache_image ON build_cache(image_id);
    CREATE TABLE build_file_hashes(
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        ctime INTEGER NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY(dev, ino)
    );"];

pub fn migrate(root: &DataRoot) -> strata_store::Result<()> {
    root.db().migrate(&root.db_path(), "build", MIGRATIONS)
}

pub fn lookup(root: &DataRoot, key: &str) -> strata_store::Result<Option<Digest>> {
    let id: Option<String> = root.db().read(|c| c.query_row("SELECT image_id FROM build_cache WHERE key=?1", [key], |r| r.get(0)).optional())?;
    Ok(id.and_then(|s| s.parse().ok()))
}

pub fn store(root: &DataRoot, key: &str, image: &Digest) -> strata_store::Result<()> {
    root.db().write(|tx| {
        tx.execute(
            "INSERT INTO build_cache(key, image_id, created) VALUES(?1, ?2, ?3) ON CONFLICT(key) DO UPDATE SET image_id=excluded.image_id",
            params![key, image.to_string(), strata_store::now_rfc3339()],
        )
    })?;
    Ok(())
}

/// File hashes: all known rows are read once per build; new ones are written in one
/// transaction at the end.
pub struct FileHashes<'r> {
    root: &'r DataRoot,
    known: std::collections::HashMap<(u64, u64), (i64, i64, i64, String)>,
    fresh: Vec<(u64, u64, i64, i64, i64, String)>,
}

fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl<'r> FileHashes<'r> {
    pub fn load(root: &'r DataRoot) -> strata_store::Result<FileHashes<'r>> {
        let known = root.db().read(|c| {
            let mut st = c.prepare("SELECT dev, ino, size, mtime, ctime, hash FROM build_file_hashes")?;
            let rows = st.query_map([], |r| {
                Ok(((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64), (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            })?;
            rows.collect::<rusqlite::Result<std::collections::HashMap<_, _>>>()
        })?;
        Ok(FileHashes { root, known, fresh: Vec::new() })
    }

    pub fn save(&mut self) -> strata_store::Result<()> {
        if self.fresh.is_empty() {
            return Ok(());
        }
        let fresh = std::mem::take(&mut self.fresh);
        self.root.db().write(|tx| -> rusqlite::Result<()> {
            let mut st = tx.prepare("INSERT OR REPLACE INTO build_file_hashes(dev, ino, size, mtime, ctime, hash) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")?;
            for (dev, ino, size, m, c, h) in &fresh {
                st.execute(params![*dev as i64, *ino as i64, size, m, c, h])?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

impl HashCache for FileHashes<'_> {
    fn get(&mut self, st: &Stat) -> Option<String> {
        let (size, m, c, h) = self.known.get(&(st.st_dev, st.st_ino))?;
        (*size == st.st_size && *m == nanos(st.st_mtime, st.st_mtime_nsec as i64) && *c == nanos(st.st_ctime, st.st_ctime_nsec as i64)).then(|| h.clone())
    }

    fn put(&mut self, st: &Stat, hash: &str) {
        let m = nanos(st.st_mtime, st.st_mtime_nsec as i64);
        let c = nanos(st.st_ctime, st.st_ctime_nsec as i64);
        self.known.insert((st.st_dev, st.st_ino), (st.st_size, m, c, hash.to_string()));
        self.fresh.push((st.st_dev, st.st_ino, st.st_size, m, c, hash.to_string()));
    }
}
