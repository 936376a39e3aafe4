//! COPY and ADD: finding the sources (in the context or in another image), hashing
//! them for the cache, and copying them into a mounted rootfs with docker's placement
//! and ownership rules.
//!
//! Every path on either side is resolved with `openat2(RESOLVE_IN_ROOT)` under the
//! directory fd of its root, so `../x`, absolute symlinks and symlinks that climb out
//! resolve inside the context or the image and never reach the host. Inside a copied
//! tree nothing is followed: entries are created with `*at` calls relative to their
//! parent's fd, never through a final symlink.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::Digest as _;

use crate::ignore::{clean, has_wildcards, Glob, Ignore};

/// A source after resolution: its path relative to its root, as docker names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Relative to the root, cleaned (`.` for the root itself).
    pub rel: String,
    /// The name it is copied as when it lands in a directory (the name as written,
    /// even when it is a symlink to something else).
    pub name: String,
    pub is_dir: bool,
}

fn errno_text(e: Errno) -> String {
    strata_store::os_text(&std::io::Error::from(e))
}

pub fn open_root(path: &Path) -> Result<OwnedFd, String> {
    rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| format!("open {}: {}", path.display(), errno_text(e)))
}

/// `rel` resolved inside `root`; `O_PATH` unless `flags` say otherwise.
pub fn open_in(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = match rel.trim_start_matches('/') {
        "" => ".",
        r => r,
    };
    let mut tries = 0;
    loop {
        match rfs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

/// Resolves the source patterns of one COPY/ADD. `context` marks the build context
/// (docker's messages differ, and `.dockerignore` applies).
pub fn resolve_sources(root: BorrowedFd<'_>, patterns: &[String], ignore: &Ignore, context: bool) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for orig in patterns {
        let cleaned = clean(orig.trim_start_matches('/'));
        if context && (cleaned == ".." || cleaned.starts_with("../")) {
            return Err(format!("forbidden path outside the build context: {orig} ()"));
        }
        let rel = cleaned.trim_start_matches("../").to_string();
        if has_wildcards(&rel) {
            let glob = Glob::new(&rel, false).map_err(|e| e.to_string())?;
            let mut matched = Vec::new();
            walk_names(root, "", ignore, &mut |r, is_dir| {
                if glob.matches(r) {
                    matched.push(Source { rel: r.to_string(), name: r.rsplit('/').next().unwrap_or(r).to_string(), is_dir });
                }
            })?;
            out.extend(matched);
            continue;
        }
        if context && rel != "." && ignore.excluded(&rel) {
            return Err(format!("file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"));
        }
        let fd = open_in(root, &rel, OFlags::PATH).map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR if context => format!("file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"),
            Errno::NOENT | Errno::NOTDIR => format!("stat {rel}: file does not exist"),
            e => format!("stat {rel}: {}", errno_text(e)),
        })?;
        let st = rfs::fstat(&fd).map_err(|e| format!("stat {rel}: {}", errno_text(e)))?;
        let name = if rel == "." { String::new() } else { rel.rsplit('/').next().unwrap_or(&rel).to_string() };
        out.push(Source { rel, name, is_dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory });
    }
    if out.is_empty() {
        return Err("no source files were specified".into());
    }
    Ok(out)
}

/// Every path under `dir` (relative to the root), parents before children, skipping
/// what `.dockerignore` excludes.
fn walk_names(root: BorrowedFd<'_>, dir: &str, ignore: &Ignore, f: &mut dyn FnMut(&str, bool)) -> Result<(), String> {
    let fd = open_in(root, if dir.is_empty() { "." } else { dir }, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
        .map_err(|e| format!("open {dir}: {}", errno_text(e)))?;
    let mut names: Vec<(CString, bool)> = Vec::new();
    for ent in rfs::Dir::read_from(&fd).map_err(|e| format!("read {dir}: {}", errno_text(e)))? {
        let ent = ent.map_err(|e| format!("read {dir}: {}", errno_text(e)))?;
        let n = ent.file_name();
        if matches!(n.to_bytes(), b"." | b"..") {
            continue;
        }
        let is_dir = match ent.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rfs::statat(&fd, n, AtFlags::SYMLINK_NOFOLLOW).map(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory).unwrap_or(false),
            _ => false,
        };
        names.push((n.to_owned(), is_dir));
    }
    names.sort();
    for (n, is_dir) in names {
        let name = String::from_utf8_lossy(n.to_bytes()).into_owned();
        let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let excluded = ignore.excluded(&rel);
        if !excluded {
            f(&rel, is_dir);
        }
        if is_dir && (!excluded || ignore.has_exceptions()) {
            walk_names(root, &rel, ignore, f)?;
        }
    }
    Ok(())
}

/// Content hashes of context files, remembered by (device, inode, size, mtime, ctime):
/// a rebuild over an unchanged context stats files and reads none.
pub trait HashCache {
    fn get(&mut self, st: &Stat) -> Option<String>;
    fn put(&mut self, st: &Stat, hash: &str);
}

/// A hash of what a COPY would put in the image from one source: every entry's
/// relative path, type, permission bits, size, link target and content — not times
/// or owners (docker's COPY sets the owner itself).
pub fn hash_source(root: BorrowedFd<'_>, src: &Source, ignore: &Ignore, cache: &mut dyn HashCache) -> Result<String, String> {
    let mut h = sha2::Sha256::new();
    let fd = open_in(root, &src.rel, OFlags::PATH).map_err(|e| format!("stat {}: {}", src.rel, errno_text(e)))?;
    if !src.is_dir {
        let st = rfs::fstat(&fd).map_err(|e| format!("stat {}: {}", src.rel, errno_text(e)))?;
        let c = file_hash(|| open_in(root, &src.rel, OFlags::RDONLY), &st, cache).map_err(|e| format!("read {}: {e}", src.rel))?;
        h.update(format!("file {:o} {} {c}\n", st.st_mode & 0o7777, st.st_size).as_bytes());
        return Ok(format!("file:{}", hex::encode(h.finalize())));
    }
    let base = if src.rel == "." { String::new() } else { src.rel.clone() };
    let dirfd = open_in(root, &base, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| format!("open {}: {}", src.rel, errno_text(e)))?;
    let st = rfs::fstat(&dirfd).map_err(|e| format!("stat {}: {}", src.rel, errno_text(e)))?;
    h.update(format!(". dir {:o}\n", st.st_mode & 0o7777).as_bytes());
    hash_dir(&dirfd, &base, "", ignore, cache, &mut h)?;
    Ok(format!("dir:{}", hex::encode(h.finalize())))
}

fn hash_dir(dir: &OwnedFd, base: &str, rel: &str, ignore: &Ignore, cache: &mut dyn HashCache, h: &mut sha2::Sha256) -> Result<(), String> {
    let mut names: Vec<CString> = Vec::new();
    for ent in rfs::Dir::read_from(dir).map_err(|e| format!("read {rel}: {}", errno_text(e)))? {
        let ent = ent.map_err(|e| format!("read {rel}: {}", errno_text(e)))?;
        if !matches!(ent.file_name().to_bytes(), b"." | b"..") {
            names.push(ent.file_name().to_owned());
        }
    }
    names.sort();
    for n in names {
        let name = String::from_utf8_lossy(n.to_bytes()).into_owned();
        let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let full = if base.is_empty() { child.clone() } else { format!("{base}/{child}") };
        let excluded = ignore.excluded(&full);
        let st = rfs::statat(dir, &n, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("stat {full}: {}", errno_text(e)))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Directory {
            if !excluded {
                h.update(format!("{child} dir {:o}\n", st.st_mode & 0o7777).as_bytes());
            }
            if !excluded || ignore.has_exceptions() {
                let sub = rfs::openat(dir, &n, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| format!("open {full}: {}", errno_text(e)))?;
                hash_dir(&sub, base, &child, ignore, cache, h)?;
            }
            continue;
        }
        if excluded {
            continue;
        }
        match ft {
            FileType::RegularFile => {
                let open = || rfs::openat(dir, &n, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty());
                let c = file_hash(open, &st, cache).map_err(|e| format!("read {full}: {e}"))?;
                h.update(format!("{child} file {:o} {} {c}\n", st.st_mode & 0o7777, st.st_size).as_bytes());
            }
            FileType::Symlink => {
                let t = rfs::readlinkat(dir, &n, Vec::new()).map_err(|e| format!("readlink {full}: {}", errno_text(e)))?;
                h.update(format!("{child} link {}\n", String::from_utf8_lossy(t.to_bytes())).as_bytes());
            }
            other => h.update(format!("{child} {other:?} {:o} {}\n", st.st_mode & 0o7777, st.st_rdev).as_bytes()),
        }
    }
    Ok(())
}

/// The content hash of a file: from the cache when its stat matches, else read (only
/// then is it opened).
fn file_hash(open: impl FnOnce() -> Result<OwnedFd, Errno>, st: &Stat, cache: &mut dyn HashCache) -> Result<String, String> {
    if let Some(h) = cache.get(st) {
        return Ok(h);
    }
    let mut file = std::fs::File::from(open().map_err(errno_text)?);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| strata_store::os_text(&e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex = hex::encode(h.finalize());
    cache.put(st, &hex);
    Ok(hex)
}

/// Who owns what a COPY creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// `--chown=user[:group]`, resolved in the destination image's own /etc/passwd and
/// /etc/group (numbers are taken as they are; a user alone also names the group).
pub fn resolve_chown(rootfs: BorrowedFd<'_>, spec: &str) -> Result<Owner, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (user, group) = match parts.as_slice() {
        [u] => (*u, *u),
        [u, g] => (*u, *g),
        _ => return Err(format!("invalid chown string format: {spec}")),
    };
    let read = |path: &str| -> Result<String, String> {
        let fd = open_in(rootfs, path, OFlags::RDONLY).map_err(|e| format!("open {path}: {}", errno_text(e)))?;
        let mut s = String::new();
        std::fs::File::from(fd).take(16 << 20).read_to_string(&mut s).map_err(|e| format!("read {path}: {e}"))?;
        Ok(s)
    };
    let lookup = |name: &str, path: &str, what: &str| -> Result<u32, String> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        let text = read(path).map_err(|e| format!("can't find {what} for {} {name}: {e}", if what == "uid" { "user" } else { "group" }))?;
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && f[0] == name)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                if what == "uid" {
                    format!("can't find uid for user {name}: no such user: {name}")
                } else {
                    format!("can't find gid for group {name}: no such group: {name}")
                }
            })
    };
    Ok(Owner { uid: lookup(user, "/etc/passwd", "uid")?, gid: lookup(group, "/etc/group", "gid")? })
}

/// What one COPY/ADD does in the rootfs.
pub struct CopyJob<'a> {
    pub rootfs: BorrowedFd<'a>,
    /// Absolute in the image, WORKDIR applied; a trailing `/` kept.
    pub dest: String,
    pub owner: Owner,
    pub chmod: Option<u32>,
    /// ADD: local archives are extracted.
    pub extract: bool,
}

impl CopyJob<'_> {
    /// Makes `path` (absolute in the rootfs) a directory, creating missing parents
    /// (mode 0755, owned by `owner` when given, else root); returns its fd.
    fn mkdir_all(&self, path: &str, owner: Option<Owner>) -> Result<(OwnedFd, bool), String> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let mut cur = open_in(self.rootfs, ".", OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| format!("open /: {}", errno_text(e)))?;
        let mut so_far = String::new();
        let mut created_last = false;
        for c in comps {
            so_far.push('/');
            so_far.push_str(c);
            // Resolved from the root each time, so a symlink component (`/var/run`) is
            // followed inside the image.
            match open_in(self.rootfs, &so_far, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(fd) => {
                    cur = fd;
                    created_last = false;
                }
                Err(Errno::NOENT) => {
                    let name = CString::new(c).map_err(|e| e.to_string())?;
                    match rfs::mkdirat(&cur, &name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(format!("mkdir {so_far}: {}", errno_text(e))),
                    }
                    let fd = rfs::openat(&cur, &name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| format!("open {so_far}: {}", errno_text(e)))?;
                    let o = owner.unwrap_or(Owner { uid: 0, gid: 0 });
                    rfs::fchown(&fd, Some(rfs::Uid::from_raw(o.uid)), Some(rfs::Gid::from_raw(o.gid))).map_err(|e| format!("chown {so_far}: {}", errno_text(e)))?;
                    rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| format!("chmod {so_far}: {}", errno_text(e)))?;
                    cur = fd;
                    created_last = true;
                }
                Err(Errno::NOTDIR) => return Err(format!("mkdir {so_far}: not a directory")),
                Err(e) => return Err(format!("open {so_far}: {}", errno_text(e))),
            }
        }
        Ok((cur, created_last))
    }

    /// `path` and its missing parents as directories (root-owned, 0755).
    pub fn mkdir_parents(&self, path: &str) -> Result<(), String> {
        self.mkdir_all(path, None).map(|_| ())
    }

    /// Copies one source (from `src_root`) by docker's rules.
    pub fn copy(&self, src_root: BorrowedFd<'_>, src: &Source, ignore: &Ignore, ctx_base: &str) -> Result<(), String> {
        let dest_is_dir_name = self.dest.ends_with('/');
        if src.is_dir {
            // The directory's contents go into dest.
            let existed = open_in(self.rootfs, &self.dest, OFlags::PATH).ok().and_then(|fd| rfs::fstat(&fd).ok());
            if let Some(st) = &existed {
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(format!("cannot copy to non-directory: {}", self.dest.trim_end_matches('/')));
                }
            }
            let (dfd, _) = self.mkdir_all(&self.dest, None)?;
            let sfd = open_in(src_root, &src.rel, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| format!("open {}: {}", src.rel, errno_text(e)))?;
            let base = if src.rel == "." { String::new() } else { src.rel.clone() };
            let _ = ctx_base;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
            let failed = std::sync::Mutex::new(None::<String>);
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2 * threads);
            let rx = std::sync::Mutex::new(rx);
            let (owner, chmod) = (self.owner, self.chmod);
            let mut dirs = std::thread::scope(|scope| -> Result<Vec<(OwnedFd, Stat)>, String> {
                for _ in 0..threads {
                    let (rx, failed) = (&rx, &failed);
                    scope.spawn(move || loop {
                        let Ok(batch) = rx.lock().unwrap_or_else(|p| p.into_inner()).recv() else { return };
                        if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                            continue;
                        }
                        if let Err(e) = batch.run(owner, chmod) {
                            failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    });
                }
                let mut tree = Tree { job: self, ignore, pool: Some(tx), links: HashMap::new(), dirs: Vec::new() };
                let r = tree.copy_dir(&sfd, &dfd, &base);
                tree.pool = None; // the copiers drain the channel and end with the scope
                r.map(|()| std::mem::take(&mut tree.dirs))
            })?;
            if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
            // The destination directory itself: new ones take the source's mode and
            // times and the owner; one that existed keeps its own.
            let sst = rfs::fstat(&sfd).map_err(|e| e.to_string())?;
            let mut tree = Tree { job: self, ignore, pool: None, links: HashMap::new(), dirs: std::mem::take(&mut dirs) };
            if existed.is_none() {
                tree.meta_dir(&dfd, &sst)?;
                // Its times go last, after everything inside it.
                let last = tree.dirs.pop();
                tree.dirs.insert(0, last.expect("just pushed"));
            }
            tree.finish_dirs()?;
            return Ok(());
        }
        let sfd = open_in(src_root, &src.rel, OFlags::RDONLY).map_err(|e| format!("open {}: {}", src.rel, errno_text(e)))?;
        if self.extract {
            if let Some(kind) = archive_kind(&sfd) {
                let (dfd, _) = self.mkdir_all(&self.dest, None)?;
                return extract(sfd, kind, &dfd, self.owner, &self.dest);
            }
        }
        let existing_dir = open_in(self.rootfs, &self.dest, OFlags::RDONLY | OFlags::DIRECTORY).ok();
        let (parent, name) = if dest_is_dir_name || existing_dir.is_some() {
            let (d, _) = match existing_dir {
                Some(fd) => (fd, false),
                None => self.mkdir_all(&self.dest, Some(self.owner))?,
            };
            (d, src.name.clone())
        } else {
            let d = self.dest.trim_end_matches('/');
            let (dir, base) = match d.rsplit_once('/') {
                Some((a, b)) => (if a.is_empty() { "/" } else { a }, b),
                None => ("/", d),
            };
            (self.mkdir_all(dir, Some(self.owner))?.0, base.to_string())
        };
        let st = rfs::fstat(&sfd).map_err(|e| e.to_string())?;
        let mut tree = Tree { job: self, ignore, pool: None, links: HashMap::new(), dirs: Vec::new() };
        let cname = CString::new(name.clone()).map_err(|e| e.to_string())?;
        tree.place_file(&sfd, &st, &parent, &cname, &name)
    }

    /// An inline file (COPY <<EOF).
    pub fn write_inline(&self, name: &str, content: &[u8]) -> Result<(), String> {
        let existing_dir = open_in(self.rootfs, &self.dest, OFlags::RDONLY | OFlags::DIRECTORY).ok();
        let (parent, fname) = if self.dest.ends_with('/') || existing_dir.is_some() {
            (match existing_dir { Some(d) => d, None => self.mkdir_all(&self.dest, Some(self.owner))?.0 }, name.to_string())
        } else {
            let d = self.dest.trim_end_matches('/');
            let (dir, base) = d.rsplit_once('/').map(|(a, b)| (if a.is_empty() { "/" } else { a }, b)).unwrap_or(("/", d));
            (self.mkdir_all(dir, Some(self.owner))?.0, base.to_string())
        };
        let c = CString::new(fname.clone()).map_err(|e| e.to_string())?;
        remove_existing(&parent, &c, false)?;
        let fd = rfs::openat(&parent, &c, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))
            .map_err(|e| format!("create {fname}: {}", errno_text(e)))?;
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, content).map_err(|e| format!("write {fname}: {e}"))?;
        rfs::fchown(&f, Some(rfs::Uid::from_raw(self.owner.uid)), Some(rfs::Gid::from_raw(self.owner.gid))).map_err(errno_text)?;
        rfs::fchmod(&f, Mode::from_raw_mode(self.chmod.unwrap_or(0o644))).map_err(errno_text)?;
        Ok(())
    }
}

/// Removes what is at `name` unless it is a directory and a directory is wanted.
fn remove_existing(dir: &OwnedFd, name: &CStr, want_dir: bool) -> Result<bool, String> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(errno_text(e)),
        Ok(st) => {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if is_dir && want_dir {
                return Ok(true);
            }
            if is_dir {
                remove_tree_at(dir, name)?;
            } else {
                rfs::unlinkat(dir, name, AtFlags::empty()).map_err(errno_text)?;
            }
            Ok(false)
        }
    }
}

fn remove_tree_at(dir: &OwnedFd, name: &CStr) -> Result<(), String> {
    let sub = rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(errno_text)?;
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(&sub).map_err(errno_text)? {
        let ent = ent.map_err(errno_text)?;
        if !matches!(ent.file_name().to_bytes(), b"." | b"..") {
            names.push((ent.file_name().to_owned(), ent.file_type()));
        }
    }
    for (n, t) in names {
        if t == FileType::Directory {
            remove_tree_at(&sub, &n)?;
        } else {
            rfs::unlinkat(&sub, &n, AtFlags::empty()).map_err(errno_text)?;
        }
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno_text)
}

struct Tree<'a, 'j> {
    job: &'a CopyJob<'j>,
    ignore: &'a Ignore,
    /// Regular files go to copier threads, one batch per directory.
    pool: Option<std::sync::mpsc::SyncSender<Batch>>,
    /// Source (dev, ino) of hard-linked files → (dest dir fd, name) of the first copy.
    links: HashMap<(u64, u64), (std::sync::Arc<OwnedFd>, CString)>,
    /// Directories whose mode and times are set once their contents are in.
    dirs: Vec<(OwnedFd, Stat)>,
}

impl Tree<'_, '_> {
    fn owner(&self) -> (Option<rfs::Uid>, Option<rfs::Gid>) {
        (Some(rfs::Uid::from_raw(self.job.owner.uid)), Some(rfs::Gid::from_raw(self.job.owner.gid)))
    }

    fn mode_of(&self, st: &Stat) -> u32 {
        self.job.chmod.unwrap_or(st.st_mode & 0o7777)
    }

    fn meta_dir(&mut self, fd: &OwnedFd, st: &Stat) -> Result<(), String> {
        let (u, g) = self.owner();
        rfs::fchown(fd, u, g).map_err(errno_text)?;
        self.dirs.push((fd.try_clone().map_err(|e| e.to_string())?, *st));
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), String> {
        for (fd, st) in self.dirs.drain(..).rev() {
            let mode = self.job.chmod.unwrap_or(st.st_mode & 0o7777);
            rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno_text)?;
            rfs::futimens(&fd, &times(&st)).map_err(errno_text)?;
        }
        Ok(())
    }

    /// Copies the entries of `src` into `dst`; `rel` is `src`'s path below the source
    /// root (the context's, for `.dockerignore`).
    fn copy_dir(&mut self, src: &OwnedFd, dst: &OwnedFd, rel: &str) -> Result<(), String> {
        let mut names: Vec<CString> = Vec::new();
        for ent in rfs::Dir::read_from(src).map_err(|e| format!("read {rel}: {}", errno_text(e)))? {
            let ent = ent.map_err(|e| format!("read {rel}: {}", errno_text(e)))?;
            if !matches!(ent.file_name().to_bytes(), b"." | b"..") {
                names.push(ent.file_name().to_owned());
            }
        }
        names.sort();
        let dst_shared = std::sync::Arc::new(dst.try_clone().map_err(|e| e.to_string())?);
        let src_shared = std::sync::Arc::new(src.try_clone().map_err(|e| e.to_string())?);
        let mut batch: Vec<(CString, Stat, String)> = Vec::new();
        for n in names {
            let name = String::from_utf8_lossy(n.to_bytes()).into_owned();
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let excluded = !self.ignore.is_empty() && self.ignore.excluded(&child);
            let st = rfs::statat(src, &n, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("stat {child}: {}", errno_text(e)))?;
            let ft = FileType::from_raw_mode(st.st_mode);
            if excluded && !(ft == FileType::Directory && self.ignore.has_exceptions()) {
                continue;
            }
            match ft {
                FileType::Directory => {
                    let existed = remove_existing(dst, &n, true)?;
                    if !existed {
                        rfs::mkdirat(dst, &n, Mode::from_raw_mode(0o700)).map_err(|e| format!("mkdir {child}: {}", errno_text(e)))?;
                    }
                    let d = rfs::openat(dst, &n, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| format!("open {child}: {}", errno_text(e)))?;
                    let s = rfs::openat(src, &n, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| format!("open {child}: {}", errno_text(e)))?;
                    copy_xattrs(s.as_fd(), d.as_fd());
                    if !excluded {
                        self.meta_dir(&d, &st)?;
                    }
                    self.copy_dir(&s, &d, &child)?;
                }
                FileType::RegularFile if st.st_nlink == 1 && self.pool.is_some() => batch.push((n, st, child)),
                FileType::RegularFile => {
                    if st.st_nlink > 1 {
                        if let Some((ldir, lname)) = self.links.get(&(st.st_dev, st.st_ino)) {
                            remove_existing(dst, &n, false)?;
                            rfs::linkat(&**ldir, lname.as_c_str(), dst, &n, AtFlags::empty()).map_err(|e| format!("link {child}: {}", errno_text(e)))?;
                            continue;
                        }
                    }
                    let s = rfs::openat(src, &n, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(|e| format!("open {child}: {}", errno_text(e)))?;
                    self.place_file(&s, &st, dst, &n, &child)?;
                    if st.st_nlink > 1 {
                        self.links.insert((st.st_dev, st.st_ino), (dst_shared.clone(), n.clone()));
                    }
                }
                FileType::Symlink => {
                    let t = rfs::readlinkat(src, &n, Vec::new()).map_err(|e| format!("readlink {child}: {}", errno_text(e)))?;
                    remove_existing(dst, &n, false)?;
                    rfs::symlinkat(t.as_c_str(), dst, &n).map_err(|e| format!("symlink {child}: {}", errno_text(e)))?;
                    let (u, g) = self.owner();
                    rfs::chownat(dst, &n, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("chown {child}: {}", errno_text(e)))?;
                    rfs::utimensat(dst, &n, &times(&st), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("times {child}: {}", errno_text(e)))?;
                }
                FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                    remove_existing(dst, &n, false)?;
                    rfs::mknodat(dst, &n, ft, Mode::from_raw_mode(0o600), st.st_rdev).map_err(|e| format!("mknod {child}: {}", errno_text(e)))?;
                    let (u, g) = self.owner();
                    rfs::chownat(dst, &n, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("chown {child}: {}", errno_text(e)))?;
                    // Just made in a directory only this copy writes: not a symlink.
                    rfs::chmodat(dst, &n, Mode::from_raw_mode(self.mode_of(&st)), AtFlags::empty()).map_err(|e| format!("chmod {child}: {}", errno_text(e)))?;
                    rfs::utimensat(dst, &n, &times(&st), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("times {child}: {}", errno_text(e)))?;
                }
                _ => {}
            }
        }
        if !batch.is_empty() {
            if let Some(tx) = &self.pool {
                // Fails only when every copier has ended, which happens only after the
                // channel closes: not while we hold it.
                let _ = tx.send(Batch { src: src_shared, dst: dst_shared, files: batch });
            }
        }
        Ok(())
    }

    /// Creates `name` in `dir` with the content and metadata of the open file `src`.
    fn place_file(&mut self, src: &OwnedFd, st: &Stat, dir: &OwnedFd, name: &CStr, what: &str) -> Result<(), String> {
        place_file(src, st, dir, name, what, self.job.owner, self.job.chmod)
    }
}

/// The single-link regular files of one directory, for a copier thread.
struct Batch {
    src: std::sync::Arc<OwnedFd>,
    dst: std::sync::Arc<OwnedFd>,
    files: Vec<(CString, Stat, String)>,
}

impl Batch {
    fn run(&self, owner: Owner, chmod: Option<u32>) -> Result<(), String> {
        for (n, st, what) in &self.files {
            let s = rfs::openat(&*self.src, n, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(|e| format!("open {what}: {}", errno_text(e)))?;
            place_file(&s, st, &self.dst, n, what, owner, chmod)?;
        }
        Ok(())
    }
}

/// Creates `name` in `dir` with the content of the open file `src`, owned by `owner`,
/// with `src`'s mode (or `chmod`), xattrs and times.
fn place_file(src: &OwnedFd, st: &Stat, dir: &OwnedFd, name: &CStr, what: &str, owner: Owner, chmod: Option<u32>) -> Result<(), String> {
    remove_existing(dir, name, false)?;
    {
        let d = rfs::openat(dir, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))
            .map_err(|e| format!("create {what}: {}", errno_text(e)))?;
        if st.st_size > 0 {
            copy_data(src, &d).map_err(|e| format!("copy {what}: {e}"))?;
        }
        rfs::fchown(&d, Some(rfs::Uid::from_raw(owner.uid)), Some(rfs::Gid::from_raw(owner.gid))).map_err(|e| format!("chown {what}: {}", errno_text(e)))?;
        copy_xattrs(src.as_fd(), d.as_fd());
        rfs::fchmod(&d, Mode::from_raw_mode(chmod.unwrap_or(st.st_mode & 0o7777))).map_err(|e| format!("chmod {what}: {}", errno_text(e)))?;
        rfs::futimens(&d, &times(st)).map_err(|e| format!("times {what}: {}", errno_text(e)))?;
        Ok(())
    }
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    }
}

/// `user.*` and file capabilities, as docker's tar-based copy carries them.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    let mut names = vec![0u8; 4096];
    let Ok(len) = rfs::flistxattr(src, &mut names[..]) else { return };
    let mut value = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        value.resize(65536, 0);
        if let Ok(n) = rfs::fgetxattr(src, name, &mut value[..]) {
            let _ = rfs::fsetxattr(dst, name, &value[..n], XattrFlags::empty());
        }
    }
}

fn copy_data(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The context and an overlay are different filesystems: once copy_file_range said
    // so, go straight to sendfile (still an in-kernel copy).
    static CROSS: AtomicBool = AtomicBool::new(false);
    if CROSS.load(Ordering::Relaxed) {
        return sendfile_all(src, dst);
    }
    let mut copied = 0u64;
    loop {
        match rfs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if copied == 0 => {
                CROSS.store(true, Ordering::Relaxed);
                return sendfile_all(src, dst);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn sendfile_all(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    loop {
        match rustix::fs::sendfile(dst, src, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(_) => {
                let mut s = std::fs::File::from(src.try_clone()?);
                let mut d = std::fs::File::from(dst.try_clone()?);
                std::io::copy(&mut s, &mut d)?;
                return Ok(());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Tar,
    Gzip,
    Zstd,
}

/// ADD extracts a local file when it is a tar, plain or compressed (by its bytes,
/// not its name, as docker decides).
fn archive_kind(fd: &OwnedFd) -> Option<ArchiveKind> {
    let mut head = [0u8; 512];
    let n = rustix::io::pread(fd, &mut head[..], 0).ok()?;
    let kind = if n >= 2 && head[..2] == [0x1f, 0x8b] {
        ArchiveKind::Gzip
    } else if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        ArchiveKind::Zstd
    } else {
        ArchiveKind::Tar
    };
    let mut first = [0u8; 512];
    let got = match kind {
        ArchiveKind::Tar => {
            first.copy_from_slice(&head);
            n
        }
        ArchiveKind::Gzip => read_up_to(flate2::read::GzDecoder::new(std::fs::File::from(fd.try_clone().ok()?)), &mut first),
        ArchiveKind::Zstd => read_up_to(zstd::stream::read::Decoder::new(std::fs::File::from(fd.try_clone().ok()?)).ok()?, &mut first),
    };
    (got == 512 && tar_header_ok(&first)).then_some(kind)
}

fn read_up_to(mut r: impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// A tar header block: a checksum that matches (Go's reader accepts any such block).
fn tar_header_ok(b: &[u8; 512]) -> bool {
    if b.iter().all(|x| *x == 0) {
        return false;
    }
    let field = std::str::from_utf8(&b[148..156]).unwrap_or("");
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else { return false };
    let sum: u32 = b.iter().enumerate().map(|(i, x)| if (148..156).contains(&i) { 32 } else { *x as u32 }).sum();
    sum == want
}

fn extract(src: OwnedFd, kind: ArchiveKind, dest: &OwnedFd, _owner: Owner, what: &str) -> Result<(), String> {
    let f = std::fs::File::from(src);
    let reader: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| e.to_string())?),
    };
    // The applier opens its root by path; /proc/self/fd names exactly the directory
    // resolved above, with no second lookup.
    let root = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dest));
    strata_snapshot::layer::apply_tar(reader, Path::new(&root), &strata_snapshot::layer::ApplyOptions { whiteouts: strata_snapshot::layer::WhiteoutMode::Plain })
        .map_err(|e| format!("extract into {what}: {e}"))?;
    Ok(())
}

/// A path's final component as bytes.
pub fn base_name(p: &str) -> &OsStr {
    Path::new(p).file_name().unwrap_or_else(|| OsStr::from_bytes(b""))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoCache;
    impl HashCache for NoCache {
        fn get(&mut self, _: &Stat) -> Option<String> {
            None
        }
        fn put(&mut self, _: &Stat, _: &str) {}
    }

    #[test]
    fn sources_resolve_inside_the_context() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        std::fs::create_dir_all(c.join("d/sub")).unwrap();
        std::fs::write(c.join("a.txt"), "a").unwrap();
        std::fs::write(c.join("b.txt"), "b").unwrap();
        std::fs::write(c.join("d/sub/x"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", c.join("esc")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", c.join("up")).unwrap();
        std::os::unix::fs::symlink("a.txt", c.join("ok")).unwrap();
        let root = open_root(c).unwrap();
        let ig = Ignore::parse("b.txt\n").unwrap();
        let r = |p: &[&str]| resolve_sources(root.as_fd(), &p.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &ig, true);
        assert_eq!(r(&["*.txt"]).unwrap(), vec![Source { rel: "a.txt".into(), name: "a.txt".into(), is_dir: false }]);
        assert_eq!(r(&["../x"]).unwrap_err(), "forbidden path outside the build context: ../x ()");
        assert!(r(&["esc"]).unwrap_err().starts_with("file not found in build context"), "an absolute symlink resolves inside");
        assert!(r(&["up/passwd"]).unwrap_err().starts_with("file not found in build context"));
        assert!(r(&["b.txt"]).unwrap_err().contains("excluded by .dockerignore"));
        assert_eq!(r(&["ok"]).unwrap()[0].name, "ok");
        assert_eq!(r(&["nomatch*"]).unwrap_err(), "no source files were specified");
        assert!(r(&["d"]).unwrap()[0].is_dir);
        // Hashes: content, not times.
        let h1 = hash_source(root.as_fd(), &r(&["d"]).unwrap()[0], &ig, &mut NoCache).unwrap();
        std::fs::File::open(c.join("d/sub/x")).unwrap().set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let h2 = hash_source(root.as_fd(), &r(&["d"]).unwrap()[0], &ig, &mut NoCache).unwrap();
        assert_eq!(h1, h2);
        std::fs::write(c.join("d/sub/x"), "y").unwrap();
        let h3 = hash_source(root.as_fd(), &r(&["d"]).unwrap()[0], &ig, &mut NoCache).unwrap();
        assert_ne!(h1, h3);
        assert!(h1.starts_with("dir:"));
    }

    #[test]
    fn chown_resolves_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\napp:x:1001:\nstaff:x:50:\n").unwrap();
        let root = open_root(t.path()).unwrap();
        assert_eq!(resolve_chown(root.as_fd(), "app").unwrap(), Owner { uid: 1000, gid: 1001 });
        assert_eq!(resolve_chown(root.as_fd(), "app:staff").unwrap(), Owner { uid: 1000, gid: 50 });
        assert_eq!(resolve_chown(root.as_fd(), "7:8").unwrap(), Owner { uid: 7, gid: 8 });
        assert_eq!(resolve_chown(root.as_fd(), "nobody").unwrap_err(), "can't find uid for user nobody: no such user: nobody");
        assert!(resolve_chown(root.as_fd(), "a:b:c").is_err());
    }
}
