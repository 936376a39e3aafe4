//! Copy-up ("volume seeding"): docker fills an empty volume with what the image has at
//! the mount point, when a container is created.
//!
//! Lifecycle of one seeding:
//! - Skipped if the volume's data directory has any entry at all (dot-files and
//!   `lost+found` included): this is a state check, so an emptied volume is seeded again.
//! - Skipped if the path does not exist in the image; an error if it is not a directory.
//! - The image directory is resolved with `openat2(RESOLVE_IN_ROOT)` under the rootfs'
//!   fd, so an absolute or `..` symlink in the image resolves inside the image and
//!   never reaches the host. Inside the tree, symlinks are copied, never followed.
//! - The tree is copied into `.seed-<random>` beside `_data`, with owners, modes, times,
//!   xattrs, symlinks, device nodes and hard links; the mount point's own owner, mode and
//!   times are copied too, even when it is empty. One `syncfs` makes the copy durable,
//!   then it is renamed onto the empty `_data`: a crash or a full disk leaves the volume
//!   empty, never half-seeded, and rename's "target must be empty" rule makes the
//!   emptiness check and the publication one atomic step.
//! - A volume whose `_data` is itself a mount (local volumes with options) cannot be
//!   renamed onto; it is filled in place, as docker does.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::{self, File};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;
use strata_store::{fsutil, Classify, ErrorKind, StoreError};

use crate::driver::is_mount_point;

/// Errors of seeding a volume.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed volume: {0} is not a directory in the image")]
    NotADirectory(String),
    #[error("seed volume: {op} {entry}: {}", strata_store::os_text(.source))]
    Copy { op: &'static str, entry: String, source: std::io::Error },
    #[error("volume subpath {subpath}: {}", strata_store::os_text(.source))]
    Subpath { subpath: String, source: std::io::Error },
    #[error("{op} {path}: {}", strata_store::os_text(.source))]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for SeedError {
    fn kind(&self) -> ErrorKind {
        match self {
            SeedError::NotADirectory(_) | SeedError::Subpath { .. } => ErrorKind::Invalid,
            SeedError::Store(e) => e.kind(),
            SeedError::Copy { .. } | SeedError::Io { .. } => ErrorKind::Internal,
        }
    }
}

type Result<T, E = SeedError> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SeedError + 'a {
    move |e| SeedError::Io { op, path: path.to_path_buf(), source: e.into() }
}

/// What `seed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// The image's directory was copied into the volume.
    Copied,
    /// The volume already had content; nothing was touched.
    NotEmpty,
    /// The path does not exist in the image; nothing was touched.
    NoSource,
}

/// Copies `path_in_image` (resolved inside `rootfs`) into the volume whose data
/// directory is `volume_data`, if the volume is empty.
pub fn seed(volume_data: &Path, rootfs: &Path, path_in_image: &Path) -> Result<Seeded> {
    if !is_empty(volume_data)? {
        return Ok(Seeded::NotEmpty);
    }
    let root = rfs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io("open", rootfs))?;
    let Some(src) = open_source(&root, path_in_image)? else { return Ok(Seeded::NoSource) };
    let entry = path_in_image.display().to_string();

    if is_mount_point(volume_data) {
        let dst = open_dir(CWD, volume_data.as_os_str().as_bytes()).map_err(io("open", volume_data))?;
        copy_tree(&src, &dst, &entry)?;
        return Ok(Seeded::Copied);
    }

    match fill_staged(volume_data, |_, dst| copy_tree(&src, dst, &entry))? {
        Staged::Published => Ok(Seeded::Copied),
        Staged::NotEmpty => Ok(Seeded::NotEmpty),
    }
}

/// A `volume-subpath` resolved inside the volume's data directory
/// (`openat2(RESOLVE_IN_ROOT)`: a symlink a container left in the volume resolves
/// inside the volume, never on the host). An `O_PATH` fd, so the caller can mount
/// exactly this object (through `/proc/self/fd`) with no second lookup to race.
pub fn open_subpath(volume_data: &Path, subpath: &str) -> Result<OwnedFd> {
    let bad = |e: Errno| SeedError::Subpath { subpath: subpath.to_string(), source: e.into() };
    let root = rfs::open(volume_data, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io("open", volume_data))?;
    let mut tries = 0;
    loop {
        match rfs::openat2(&root, subpath, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS) {
            // RESOLVE_IN_ROOT gives up with EAGAIN when a rename races the walk.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(bad),
        }
    }
}

/// Seeds a volume's subpath directory (an fd from `open_subpath`) in place, if empty:
/// it lives inside a volume other containers may be using, so there is no private
/// place beside it to stage a copy.
pub fn seed_subpath(dir: &OwnedFd, subpath: &str, rootfs: &Path, path_in_image: &Path) -> Result<Seeded> {
    let bad = |e: Errno| SeedError::Subpath { subpath: subpath.to_string(), source: e.into() };
    let dst = open_dir(dir, b".").map_err(bad)?;
    if rfs::Dir::read_from(&dst).map_err(bad)?.filter_map(|e| e.ok()).any(|e| !matches!(e.file_name().to_bytes(), b"." | b"..")) {
        return Ok(Seeded::NotEmpty);
    }
    let root = rfs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io("open", rootfs))?;
    let Some(src) = open_source(&root, path_in_image)? else { return Ok(Seeded::NoSource) };
    copy_tree(&src, &dst, &path_in_image.display().to_string())?;
    Ok(Seeded::Copied)
}

/// How `fill_staged` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staged {
    Published,
    /// The volume had gained an entry by the time the copy was ready; the copy is gone.
    NotEmpty,
}

/// Fills an empty, unmounted volume all at once: `fill` writes into a fresh `.seed-<random>`
/// directory (given by path and fd) beside `volume_data`, which is then made durable with
/// one `syncfs` and renamed onto the empty `_data`. On any error, or `Staged::NotEmpty`,
/// the staging directory is deleted and the volume is as it was. Seeding, `volume
/// import` and `volume clone` all publish through here.
pub(crate) fn fill_staged<E: From<SeedError>>(
    volume_data: &Path,
    fill: impl FnOnce(&Path, &OwnedFd) -> Result<(), E>,
) -> Result<Staged, E> {
    let parent = volume_data.parent().unwrap_or(Path::new("/"));
    let staging = parent.join(format!(".seed-{}", strata_store::random_hex(8)));
    let res = (|| {
        rfs::mkdir(&staging, Mode::from_raw_mode(0o700)).map_err(io("create", &staging))?;
        let dst = open_dir(CWD, staging.as_os_str().as_bytes()).map_err(io("open", &staging))?;
        // Held until this process ends: the crash sweep deletes only unlocked staging
        // directories, never one a live process is filling.
        rfs::flock(&dst, rfs::FlockOperation::LockExclusive).map_err(io("lock", &staging))?;
        fill(&staging, &dst)?;
        // One flush for the whole copy (not one per file): the rename must not reach the
        // disk before the data it publishes.
        rfs::syncfs(&dst).map_err(io("sync", &staging))?;
        match fs::rename(&staging, volume_data) {
            Ok(()) => Ok(Staged::Published),
            // Something was written into the volume meanwhile: it is no longer ours to fill.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => Ok(Staged::NotEmpty),
            Err(e) => Err(SeedError::Io { op: "rename", path: staging.clone(), source: e }.into()),
        }
    })();
    if !matches!(res, Ok(Staged::Published)) {
        if let Err(e) = fsutil::remove_all(&staging) {
            tracing::warn!(path = %staging.display(), error = %e, "cannot delete a volume's staging directory");
        }
    }
    if res.is_ok() {
        if let Err(e) = fsutil::sync_dir(parent) {
            tracing::warn!(path = %parent.display(), error = %e, "cannot sync a filled volume's directory");
        }
    }
    res
}

pub(crate) fn is_empty(dir: &Path) -> Result<bool> {
    let mut rd = fs::read_dir(dir).map_err(|e| SeedError::Io { op: "read dir", path: dir.to_path_buf(), source: e })?;
    Ok(rd.next().is_none())
}

pub(crate) fn open_dir(dir: impl AsFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// Resolves the image path inside the rootfs; `None` if it does not exist.
fn open_source(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>> {
    let rel = path.as_os_str().as_bytes();
    let rel = match rel.iter().position(|&b| b != b'/') {
        Some(i) => &rel[i..],
        None => &b"."[..],
    };
    let entry = || path.display().to_string();
    let mut tries = 0;
    let fd = loop {
        match rfs::openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // RESOLVE_IN_ROOT gives up with EAGAIN when a rename races the walk.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(SeedError::Copy { op: "resolve", entry: entry(), source: e.into() }),
            Ok(fd) => break fd,
        }
    };
    let st = rfs::fstat(&fd).map_err(|e| SeedError::Copy { op: "stat", entry: entry(), source: e.into() })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(SeedError::NotADirectory(entry()));
    }
    // Reopen the resolved directory itself for reading; "." cannot be a symlink.
    let dir = open_dir(&fd, b".").map_err(|e| SeedError::Copy { op: "open", entry: entry(), source: e.into() })?;
    Ok(Some(dir))
}

/// Copies the contents of `src` into `dst`, then `src`'s own metadata onto `dst`.
/// `entry` names `src` in errors. Used by seeding and by `volume clone`.
///
/// This thread walks the tree and makes directories, symlinks, nodes and hard links;
/// the regular files of each directory go as one batch to a pool of copier threads
/// (per directory, so two threads rarely contend for one directory's lock). Directory
/// modes and times are applied last, deepest first, once nothing is created in them any
/// more. Hard-linked files are copied by the walker itself, so the map of first copies
/// has one owner and a link never races its target.
pub(crate) fn copy_tree(src: &OwnedFd, dst: &OwnedFd, entry: &str) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let failed = std::sync::Mutex::new(None::<SeedError>);
    // Bounded, so the open directory fds that batches carry stay few.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2 * threads);
    let rx = std::sync::Mutex::new(rx);
    let walked = std::thread::scope(|scope| {
        for _ in 0..threads {
            let (rx, failed) = (&rx, &failed);
            scope.spawn(move || loop {
                let Ok(batch) = rx.lock().unwrap_or_else(|p| p.into_inner()).recv() else { return };
                if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    continue;
                }
                if let Err(e) = batch.copy() {
                    failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                }
            });
        }
        let mut walker = Walker { dst_root: dst.as_fd(), links: HashMap::new(), dirs: Vec::new(), tx, failed: &failed };
        let dup = |fd: &OwnedFd| fd.try_clone().map(Arc::new).map_err(|e| SeedError::Copy { op: "dup", entry: entry.to_string(), source: e });
        let res = dup(src).and_then(|s| Ok((s, dup(dst)?))).and_then(|(s, d)| walker.copy_dir(s, d, Path::new(""), entry));
        let dirs = std::mem::take(&mut walker.dirs);
        drop(walker); // closes the channel: the pool drains and ends with the scope
        res.map(|()| dirs)
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let dirs = walked?;
    for (rel, st, e) in dirs.iter().rev() {
        let d = rfs::openat(dst, rel.as_path(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(fail("open", e))?;
        set_mode_and_times(d.as_fd(), st, e)?;
    }
    let st = rfs::fstat(src).map_err(fail("stat", entry))?;
    apply_meta(src.as_fd(), dst.as_fd(), &st, entry)
}

fn fail<'a>(op: &'static str, entry: &'a str) -> impl FnOnce(Errno) -> SeedError + 'a {
    move |e| SeedError::Copy { op, entry: entry.to_string(), source: e.into() }
}

/// The regular files of one directory, for a copier thread.
struct Batch {
    src: Arc<OwnedFd>,
    dst: Arc<OwnedFd>,
    files: Vec<(std::ffi::CString, Stat, String)>,
}

impl Batch {
    fn copy(&self) -> Result<()> {
        for (name, st, entry) in &self.files {
            copy_file(self.src.as_fd(), self.dst.as_fd(), name, st, entry)?;
        }
        Ok(())
    }
}

struct Walker<'a> {
    dst_root: BorrowedFd<'a>,
    /// Source (dev, ino) of hard-linked files copied so far → their path under dst_root.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories made, in creation order, for their modes and times at the end.
    dirs: Vec<(PathBuf, Stat, String)>,
    tx: std::sync::mpsc::SyncSender<Batch>,
    failed: &'a std::sync::Mutex<Option<SeedError>>,
}

impl Walker<'_> {
    fn copy_dir(&mut self, src: Arc<OwnedFd>, dst: Arc<OwnedFd>, rel: &Path, entry: &str) -> Result<()> {
        let dir = rfs::Dir::read_from(&*src).map_err(fail("read dir", entry))?;
        let mut batch = Vec::new();
        for ent in dir {
            let ent = ent.map_err(fail("read dir", entry))?;
            let name: &CStr = ent.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let child_rel = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let child_entry = format!("{entry}/{}", child_rel.display());
            let st = rfs::statat(&*src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail("stat", &child_entry))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_nlink == 1 {
                batch.push((name.to_owned(), st, child_entry));
            } else {
                self.copy_entry(&src, &dst, name, &st, &child_rel, &child_entry)?;
            }
            if self.failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            // A send fails only if every copier has ended, which they do only when the
            // channel closes: not while we hold it.
            let _ = self.tx.send(Batch { src, dst, files: batch });
        }
        Ok(())
    }

    fn copy_entry(&mut self, src: &Arc<OwnedFd>, dst: &Arc<OwnedFd>, name: &CStr, st: &Stat, rel: &Path, entry: &str) -> Result<()> {
        let (src_fd, dst_fd) = (src.as_fd(), dst.as_fd());
        let ft = FileType::from_raw_mode(st.st_mode);
        let key = (st.st_dev, st.st_ino);
        if ft != FileType::Directory && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                return rfs::linkat(self.dst_root, first.as_path(), dst_fd, name, AtFlags::empty()).map_err(fail("link", entry));
            }
        }
        match ft {
            FileType::Directory => {
                rfs::mkdirat(dst_fd, name, Mode::from_raw_mode(0o700)).map_err(fail("create directory", entry))?;
                let s = open_dir(src_fd, name.to_bytes()).map_err(fail("open", entry))?;
                let d = open_dir(dst_fd, name.to_bytes()).map_err(fail("open", entry))?;
                // Owner and xattrs now (they leave mtime alone); mode and times once the
                // children are all in.
                rfs::fchown(&d, Some(uid(st)), Some(gid(st))).map_err(fail("chown", entry))?;
                copy_xattrs(s.as_fd(), d.as_fd(), entry)?;
                self.dirs.push((rel.to_path_buf(), *st, entry.to_string()));
                self.copy_dir(Arc::new(s), Arc::new(d), rel, entry)?;
            }
            FileType::RegularFile => copy_file(src_fd, dst_fd, name, st, entry)?,
            FileType::Symlink => {
                let target = rfs::readlinkat(src_fd, name, Vec::new()).map_err(fail("read link", entry))?;
                rfs::symlinkat(target.as_c_str(), dst_fd, name).map_err(fail("create symlink", entry))?;
                rfs::chownat(dst_fd, name, Some(uid(st)), Some(gid(st)), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fail("chown", entry))?;
                rfs::utimensat(dst_fd, name, &times(st), AtFlags::SYMLINK_NOFOLLOW).map_err(fail("set times", entry))?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket => {
                rfs::mknodat(dst_fd, name, ft, Mode::from_raw_mode(0o600), st.st_rdev).map_err(fail("create node", entry))?;
                rfs::chownat(dst_fd, name, Some(uid(st)), Some(gid(st)), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fail("chown", entry))?;
                // We made this node a moment ago in a directory only we write to, so it is
                // not a symlink and chmodat may follow it. No xattrs: reading them needs an
                // open, which on a device could have side effects.
                rfs::chmodat(dst_fd, name, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())
                    .map_err(fail("chmod", entry))?;
                rfs::utimensat(dst_fd, name, &times(st), AtFlags::SYMLINK_NOFOLLOW).map_err(fail("set times", entry))?;
            }
            FileType::Unknown => tracing::warn!(entry, "unknown file type in image; not copied"),
        }
        if ft != FileType::Directory && st.st_nlink > 1 {
            self.links.insert(key, rel.to_path_buf());
        }
        Ok(())
    }
}

fn copy_file(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, name: &CStr, st: &Stat, entry: &str) -> Result<()> {
    let s = rfs::openat(src, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(fail("open", entry))?;
    let d = rfs::openat(
        dst,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(fail("create", entry))?;
    if st.st_size > 0 {
        copy_data(&s, &d).map_err(|e| SeedError::Copy { op: "copy", entry: entry.to_string(), source: e })?;
    }
    apply_meta(s.as_fd(), d.as_fd(), st, entry)
}

fn uid(st: &Stat) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(st.st_uid)
}
fn gid(st: &Stat) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(st.st_gid)
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    }
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs, then times.
fn apply_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &Stat, entry: &str) -> Result<()> {
    rfs::fchown(dst, Some(uid(st)), Some(gid(st))).map_err(fail("chown", entry))?;
    copy_xattrs(src, dst, entry)?;
    set_mode_and_times(dst, st, entry)
}

fn set_mode_and_times(dst: BorrowedFd<'_>, st: &Stat, entry: &str) -> Result<()> {
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(fail("chmod", entry))?;
    rfs::futimens(dst, &times(st)).map_err(fail("set times", entry))
}

fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, entry: &str) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let len = loop {
        match rfs::flistxattr(src, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(fail("list xattrs", entry)(e)),
        }
    };
    let mut value = vec![0u8; 4096];
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let vlen = loop {
            match rfs::fgetxattr(src, name, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) => value.resize(value.len() * 4, 0),
                // Removed since listed.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(fail("get xattr", entry)(e)),
            }
        };
        let Some(vlen) = vlen else { continue };
        match rfs::fsetxattr(dst, name, &value[..vlen], XattrFlags::empty()) {
            // As docker's copy: a namespace the volume's filesystem does not take is dropped.
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(fail("set xattr", entry)(e)),
        }
    }
    Ok(())
}

/// File data by `copy_file_range` (reflinks or in-kernel copies where the filesystem
/// can), falling back to a read/write copy across filesystems that refuse it.
fn copy_data(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    let mut copied = 0u64;
    loop {
        match rfs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if copied == 0 => {
                let mut s = File::from(src.try_clone()?);
                let mut d = File::from(dst.try_clone()?);
                std::io::copy(&mut s, &mut d)?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn lchown(p: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }
    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        rfs::lgetxattr(p, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
    }
    /// A volume as the local driver lays it out: `<vol>/_data`, empty.
    fn volume(dir: &Path) -> PathBuf {
        let data = dir.join("vol/_data");
        fs::create_dir_all(&data).unwrap();
        data
    }
    fn leftovers(data: &Path) -> Vec<String> {
        fs::read_dir(data.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "_data")
            .collect()
    }

    #[test]
    fn seeding_copies_owner_mode_times_symlinks_hardlinks_and_xattrs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let src = rootfs.join("srv/data");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("file"), b"hello").unwrap();
        lchown(&src.join("file"), 1001, 1002);
        chmod(&src.join("file"), 0o4750);
        fs::write(src.join(".hidden"), b"dot").unwrap();
        fs::hard_link(src.join("file"), src.join("sub/link")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
        symlink("../file", src.join("sub/rel")).unwrap();
        lchown(&src.join("abs"), 7, 8);
        rustix::fs::mknodat(CWD, src.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
        let xattrs = rfs::setxattr(src.join("file"), "user.test", b"value", XattrFlags::empty()).is_ok();
        chmod(&src.join("sub"), 0o711);
        lchown(&src.join("sub"), 5, 6);
        let past = Timestamps {
            last_access: Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 },
            last_modification: Timespec { tv_sec: 1_100_000_000, tv_nsec: 123 },
        };
        rfs::utimensat(CWD, src.join("sub"), &past, AtFlags::empty()).unwrap();
        rfs::utimensat(CWD, src.join("file"), &past, AtFlags::empty()).unwrap();
        chmod(&src, 0o750);
        lchown(&src, 1001, 1001);
        rfs::utimensat(CWD, &src, &past, AtFlags::empty()).unwrap();

        let data = volume(tmp.path());
        assert_eq!(seed(&data, &rootfs, Path::new("/srv/data")).unwrap(), Seeded::Copied);

        let md = fs::symlink_metadata(&data).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1001, 1001, 0o750), "the mount point's own metadata");
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_100_000_000, 123));
        let f = fs::symlink_metadata(data.join("file")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1001, 1002, 0o4750), "setuid survives the chown");
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_100_000_000, 123));
        assert_eq!(fs::read(data.join("file")).unwrap(), b"hello");
        assert_eq!(fs::read(data.join(".hidden")).unwrap(), b"dot");
        let l = fs::symlink_metadata(data.join("sub/link")).unwrap();
        assert_eq!(l.ino(), f.ino(), "hard link preserved");
        assert_eq!(f.nlink(), 2);
        assert_eq!(fs::read_link(data.join("abs")).unwrap(), Path::new("/etc/passwd"), "symlink copied, not followed");
        assert!(fs::symlink_metadata(data.join("abs")).unwrap().file_type().is_symlink());
        assert_eq!(fs::symlink_metadata(data.join("abs")).unwrap().uid(), 7);
        assert_eq!(fs::read_link(data.join("sub/rel")).unwrap(), Path::new("../file"));
        let fifo = fs::symlink_metadata(data.join("fifo")).unwrap();
        assert_eq!(FileType::from_raw_mode(fifo.mode()), FileType::Fifo);
        assert_eq!(fifo.mode() & 0o7777, 0o640);
        let sub = fs::symlink_metadata(data.join("sub")).unwrap();
        assert_eq!((sub.uid(), sub.gid(), sub.mode() & 0o7777, sub.mtime()), (5, 6, 0o711, 1_100_000_000));
        if xattrs {
            assert_eq!(get_xattr(&data.join("file"), "user.test").as_deref(), Some(&b"value"[..]));
        } else {
            eprintln!("user.* xattrs unsupported on this filesystem; xattr copy not checked");
        }
        assert!(leftovers(&data).is_empty(), "no staging directory left: {:?}", leftovers(&data));
    }

    #[test]
    fn an_empty_image_directory_still_gives_its_owner_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("data")).unwrap();
        lchown(&rootfs.join("data"), 1001, 1001);
        chmod(&rootfs.join("data"), 0o700);
        let data = volume(tmp.path());
        assert_eq!(seed(&data, &rootfs, Path::new("data")).unwrap(), Seeded::Copied);
        let md = fs::metadata(&data).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1001, 1001, 0o700));
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
    }

    #[test]
    fn a_volume_with_any_entry_is_not_seeded() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("data")).unwrap();
        fs::write(rootfs.join("data/img"), b"image").unwrap();
        lchown(&rootfs.join("data"), 1001, 1001);
        let data = volume(tmp.path());
        fs::write(data.join(".keep"), b"").unwrap();
        assert_eq!(seed(&data, &rootfs, Path::new("/data")).unwrap(), Seeded::NotEmpty);
        assert!(!data.join("img").exists());
        assert_eq!(fs::metadata(&data).unwrap().uid(), 0, "not even the owner is copied");
        // Emptied again: seeded again (a state check, not a "new volume" check).
        fs::remove_file(data.join(".keep")).unwrap();
        assert_eq!(seed(&data, &rootfs, Path::new("/data")).unwrap(), Seeded::Copied);
        assert_eq!(fs::read(data.join("img")).unwrap(), b"image");
    }

    #[test]
    fn missing_or_non_directory_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        fs::write(rootfs.join("file"), b"x").unwrap();
        let data = volume(tmp.path());
        assert_eq!(seed(&data, &rootfs, Path::new("/nope")).unwrap(), Seeded::NoSource);
        assert_eq!(seed(&data, &rootfs, Path::new("/file/below")).unwrap(), Seeded::NoSource);
        let e = seed(&data, &rootfs, Path::new("/file")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
        assert!(leftovers(&data).is_empty());
    }

    #[test]
    fn seeding_never_follows_a_symlink_out_of_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-secret");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), b"host data").unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("inside")).unwrap();
        fs::write(rootfs.join("inside/ok"), b"image data").unwrap();
        // Absolute and relative escapes, directly and through an intermediate component.
        symlink(&host, rootfs.join("abs")).unwrap();
        symlink("../../../../../../..".to_string() + host.to_str().unwrap(), rootfs.join("rel")).unwrap();
        symlink("/", rootfs.join("slash")).unwrap();
        for p in ["/abs", "rel", "/slash/abs", "/slash/../../host-secret", "/../host-secret"] {
            let data = volume(&tmp.path().join(p.replace('/', "_")));
            let got = seed(&data, &rootfs, Path::new(p)).unwrap();
            assert_eq!(got, Seeded::NoSource, "{p}");
            assert_eq!(fs::read_dir(&data).unwrap().count(), 0, "{p}");
        }
        // A symlink that stays inside the image is followed within it, as docker's
        // scoped resolution does.
        symlink("/inside", rootfs.join("in")).unwrap();
        let data = volume(&tmp.path().join("in"));
        assert_eq!(seed(&data, &rootfs, Path::new("/in")).unwrap(), Seeded::Copied);
        assert_eq!(fs::read(data.join("ok")).unwrap(), b"image data");
        // `/slash` resolves to the image root, never the host's.
        let data = volume(&tmp.path().join("slash"));
        assert_eq!(seed(&data, &rootfs, Path::new("/slash")).unwrap(), Seeded::Copied);
        assert!(data.join("inside/ok").exists());
        assert!(fs::symlink_metadata(data.join("abs")).unwrap().file_type().is_symlink());
        assert!(!data.join("secret").exists());
    }

    #[test]
    fn a_mounted_volume_is_seeded_in_place() {
        use crate::testutil::{in_private_mount_ns, UnmountGuard};
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("data")).unwrap();
        fs::write(rootfs.join("data/f"), b"x").unwrap();
        lchown(&rootfs.join("data"), 1001, 1001);
        let data = volume(tmp.path());
        let ran = in_private_mount_ns(|| {
            rustix::mount::mount("tmpfs", &data, "tmpfs", rustix::mount::MountFlags::empty(), None).unwrap();
            let _guard = UnmountGuard(data.clone());
            assert_eq!(seed(&data, &rootfs, Path::new("/data")).unwrap(), Seeded::Copied);
            assert_eq!(fs::read(data.join("f")).unwrap(), b"x");
            assert_eq!(fs::metadata(&data).unwrap().uid(), 1001);
            assert!(leftovers(&data).is_empty());
        });
        assert!(ran.is_some());
    }
}
