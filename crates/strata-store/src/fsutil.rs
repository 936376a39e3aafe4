//! Small atomic-write helpers shared by every module that keeps files.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::{Result, StoreError};

/// Opens `rel` inside `root` with the kernel resolving every component — symlinks and
/// `..` included — inside `root` (`openat2` RESOLVE_IN_ROOT), never on the host.
pub fn open_in_root(root: &Path, rel: &str, flags: rustix::fs::OFlags) -> std::io::Result<File> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = File::open(root)?;
    let fd = openat2(&dir, rel.trim_start_matches('/'), flags | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS)?;
    Ok(File::from(fd))
}

/// Fsyncs a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(StoreError::io("sync", dir))
}

/// Writes `data` to `path` atomically: a temp file beside it, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        crate::random_hex(6)
    ));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        f.write_all(data).map_err(StoreError::io("write", &tmp))?;
        f.sync_all().map_err(StoreError::io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(StoreError::io("rename", path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Removes a file or directory tree if present. Never follows symlinks and never crosses
/// into another filesystem, so a mount point left inside (a bind, a volume) is refused
/// with EBUSY instead of having its contents deleted.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("stat", path)(e)),
        Ok(md) if md.is_dir() => remove_tree(path, std::os::unix::fs::MetadataExt::dev(&md)),
        Ok(_) => fs::remove_file(path).map_err(StoreError::io("remove", path)),
    }
}

fn remove_tree(dir: &Path, dev: u64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let rd = fs::read_dir(dir).map_err(StoreError::io("read dir", dir))?;
    for ent in rd {
        let ent = ent.map_err(StoreError::io("read dir", dir))?;
        let p = ent.path();
        let md = fs::symlink_metadata(&p).map_err(StoreError::io("stat", &p))?;
        if md.is_dir() {
            if md.dev() != dev {
                return Err(StoreError::io("remove", &p)(std::io::Error::from_raw_os_error(libc::EBUSY)));
            }
            remove_tree(&p, dev)?;
        } else {
            fs::remove_file(&p).map_err(StoreError::io("remove", &p))?;
        }
    }
    fs::remove_dir(dir).map_err(StoreError::io("remove", dir))
}
