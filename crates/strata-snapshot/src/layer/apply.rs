//! Applying an untrusted layer tar onto a directory, as root.
//!
//! This is the security boundary of image pulls. Every filesystem operation goes
//! through a directory fd that was resolved with `openat2(RESOLVE_IN_ROOT)` below the
//! root fd (or walked component by component with `O_NOFOLLOW`), and then acts on a
//! single final name with an `*at` call that does not follow it. Host paths are never
//! built, so no symlink in the layer, however it points, can redirect a write outside
//! the root.

use std::collections::{HashSet, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use super::guard::{Guard, HugeHeader, MAX_EXTENSION_BYTES};
use super::sys::is_mount_root;
use super::{lossy, xattr_applies, LayerError, AUFS_META_PREFIX, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

/// What `.wh.` entries turn into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Into overlayfs whiteouts (char device 0/0) and opaque xattrs, for a layer
    /// applied into an empty upper dir.
    #[default]
    Overlay,
    /// Into deletions, for a layer applied onto a full copy of its parent.
    Delete,
    /// Into nothing: the tar is a self-contained tree (a volume's content), not a layer,
    /// and a `.wh.` name is an ordinary file. Such a tree has no lower layer whose
    /// symlinks an entry could legitimately reach through (usr-merge's `lib -> usr/lib`),
    /// and `write_tree_tar` never emits such an entry, so an entry whose parent path or
    /// hardlink target passes through a symlink is refused rather than resolved.
    Plain,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Bytes of regular file data written (a hardlinked file counts once).
    pub size: u64,
    /// Tar entries applied, whiteouts included.
    pub entries: u64,
}

/// Applies an uncompressed layer tar onto `root` (a directory that exists).
///
/// On error the root is left half-applied; callers discard it. The reader is read to
/// its end even after the end-of-archive marker, so a digest computed over it covers
/// every byte.
pub fn apply_tar<R: Read>(reader: R, root: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let root_fd = rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::io("open layer root", root)(e.into()))?;
    let st = rfs::statx(&root_fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
        .map_err(|e| LayerError::io("stat layer root", root)(e.into()))?;
    let mut applier = Applier {
        root: root_fd,
        root_dev: (st.stx_dev_major, st.stx_dev_minor),
        mode: opts.whiteouts,
        parent: None,
        created: (opts.whiteouts == WhiteoutMode::Delete).then(HashSet::new),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        buf: vec![0u8; COPY_BUFFER],
    };

    let mut archive = tar::Archive::new(Guard::new(reader));
    let mut last = String::new();
    for entry in archive.entries().map_err(|e| stream_error(e, &last))? {
        let mut entry = entry.map_err(|e| stream_error(e, &last))?;
        last = lossy(&entry.path_bytes());
        applier.entry(&mut entry, &last)?;
    }
    applier.set_dir_times()?;

    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_error(e, &last))?;
    Ok(applier.stats)
}

const COPY_BUFFER: usize = 1 << 20;
/// Symlinks followed while creating one entry's missing parents, as the kernel's
/// own limit for a path walk.
const MAX_SYMLINKS: u32 = 40;

fn stream_error(e: io::Error, entry: &str) -> LayerError {
    if let Some(huge) = e.get_ref().and_then(|inner| inner.downcast_ref::<HugeHeader>()) {
        return LayerError::HugeHeader { entry: huge.entry.clone(), size: huge.size, limit: MAX_EXTENSION_BYTES };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return LayerError::Truncated { entry: entry.to_string() };
    }
    LayerError::Malformed { entry: entry.to_string(), source: e }
}

/// Splits an entry path into components, dropping `.` and empty ones (so `./a//b/`
/// is `a/b`). An empty result is the root itself.
fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    if raw[0] == b'/' {
        return Err("absolute path");
    }
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path escapes the root"),
            c if c.len() > 255 => return Err("path component longer than 255 bytes"),
            c => comps.push(c),
        }
    }
    Ok(comps)
}

fn join<C: AsRef<[u8]>>(comps: &[C]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_ref());
    }
    out
}

fn join_child(parent: &[&[u8]], name: &[u8]) -> Vec<u8> {
    let mut out = join(parent);
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// What the header says about ownership, permissions and time, read before the data.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> Timestamps {
        Timestamps { last_access: self.mtime, last_modification: self.mtime }
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, LayerError> {
    let header = entry.header();
    let id = |v: io::Result<u64>, what: &str| -> Result<u32, LayerError> {
        // u32::MAX is chown's "leave unchanged", never a real owner.
        v.ok()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| LayerError::invalid(name, format!("bad {what} field")))
    };
    let uid = id(header.uid(), "uid")?;
    let gid = id(header.gid(), "gid")?;
    let mode = header.mode().map_err(|_| LayerError::invalid(name, "bad mode field"))? & 0o7777;
    let header_mtime = header.mtime().map_err(|_| LayerError::invalid(name, "bad mtime field"))?;
    let mut mtime = Timespec { tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    let mut xattrs = Vec::new();
    if let Some(records) = entry.pax_extensions().map_err(|e| stream_error(e, name))? {
        for record in records {
            let record = record.map_err(|_| LayerError::invalid(name, "malformed pax record"))?;
            let key = record.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(record.value_bytes())
                    .ok_or_else(|| LayerError::invalid(name, "malformed pax mtime"))?;
            } else if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                if xattr_applies(xattr) {
                    if let Ok(xattr) = CString::new(xattr) {
                        xattrs.push((xattr, record.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Ok(Meta { uid, gid, mode, mtime, xattrs })
}

/// A PAX time, `[-]seconds[.fraction]`.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, _) => Timespec { tv_sec: secs, tv_nsec: nanos as _ },
        (true, 0) => Timespec { tv_sec: -secs, tv_nsec: 0 },
        (true, _) => Timespec { tv_sec: -secs - 1, tv_nsec: (1_000_000_000 - nanos) as _ },
    })
}

fn file_type(mode: impl Into<u32>) -> FileType {
    FileType::from_raw_mode(mode.into() as _)
}

fn open_in_root(root: &OwnedFd, path: &[u8], mode: WhiteoutMode) -> Result<OwnedFd, Errno> {
    let path = if path.is_empty() { &b"."[..] } else { path };
    let resolve = match mode {
        // ELOOP on any symlink: a plain tree's entries never go through one.
        WhiteoutMode::Plain => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        WhiteoutMode::Overlay | WhiteoutMode::Delete => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    };
    let mut tries = 0;
    loop {
        match rfs::openat2(root, path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // RESOLVE_IN_ROOT gives up with EAGAIN when a rename races the walk.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

struct Frame {
    fd: OwnedFd,
    name: CString,
    children: Vec<CString>,
}

struct Applier {
    root: OwnedFd,
    root_dev: (u32, u32),
    mode: WhiteoutMode,
    /// The last entry's parent: layers list siblings together, so most entries skip
    /// the resolution. Keyed by the normalized parent path; an entry can never replace
    /// its own parent, so the fd stays right while the key matches.
    parent: Option<(Vec<u8>, OwnedFd)>,
    /// Paths this apply created, for opaque markers in `Delete` mode.
    created: Option<HashSet<Vec<u8>>>,
    dir_times: Vec<(Vec<u8>, Timespec)>,
    stats: ApplyStats,
    buf: Vec<u8>,
}

impl Applier {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let comps = normalize(&raw).map_err(|reason| LayerError::invalid(name, reason))?;
        let layer = self.mode != WhiteoutMode::Plain;
        if layer && comps.iter().any(|c| c.starts_with(AUFS_META_PREFIX) && *c != OPAQUE_MARKER) {
            return Ok(());
        }
        // v7 tars mark directories with a plain-file type and a trailing slash.
        let is_dir = kind == EntryType::Directory || (entry.header().as_bytes()[156] == 0 && raw.ends_with(b"/"));

        let Some((&base, parent)) = comps.split_last() else {
            if !is_dir {
                return Err(LayerError::invalid(name, "entry would replace the root directory"));
            }
            let meta = read_meta(entry, name)?;
            self.set_owner_mode_xattrs(self.root.as_fd(), &meta, name)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            self.stats.entries += 1;
            return Ok(());
        };

        if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX).filter(|_| layer) {
            self.stats.entries += 1;
            if base == OPAQUE_MARKER {
                return self.opaque(parent, name);
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(LayerError::invalid(name, "whiteout of an invalid name"));
            }
            return self.whiteout(parent, target, name);
        }

        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let meta = read_meta(entry, name)?;
        let rel = join_child(parent, base);
        match kind {
            _ if is_dir => self.with_parent(parent, name, |me, dir| me.dir(dir, base, &rel, &meta, name))?,
            EntryType::Regular | EntryType::Continuous => {
                self.with_parent(parent, name, |me, dir| me.file(entry, dir, base, &meta, name))?
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| LayerError::invalid(name, "symlink without a target"))?;
                self.with_parent(parent, name, |me, dir| me.symlink(dir, base, &target, &meta, name))?
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| LayerError::invalid(name, "hardlink without a target"))?;
                self.hardlink(parent, base, &target, &meta, name)?
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let number = |v: io::Result<Option<u32>>| {
                    v.map(Option::unwrap_or_default).map_err(|_| LayerError::invalid(name, "bad device number field"))
                };
                let dev = rfs::makedev(number(header.device_major())?, number(header.device_minor())?);
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.with_parent(parent, name, |me, dir| me.special(dir, base, ft, dev, &meta, name))?
            }
            EntryType::GNUSparse => {
                return Err(LayerError::UnsupportedType { entry: name.to_string(), kind: "'S' (gnu sparse)".into() })
            }
            other => {
                let byte = other.as_byte();
                let shown =
                    if byte.is_ascii_graphic() { format!("'{}'", byte as char) } else { format!("{byte:#04x}") };
                return Err(LayerError::UnsupportedType { entry: name.to_string(), kind: shown });
            }
        }
        if let Some(created) = self.created.as_mut() {
            created.insert(rel);
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Runs `f` with the entry's parent directory, created if missing.
    fn with_parent<T>(
        &mut self,
        parent: &[&[u8]],
        entry: &str,
        f: impl FnOnce(&mut Self, BorrowedFd<'_>) -> Result<T, LayerError>,
    ) -> Result<T, LayerError> {
        let key = join(parent);
        let fd = match self.parent.take() {
            Some((k, fd)) if k == key => fd,
            _ => self.resolve_dir(parent, true, entry)?.expect("resolve_dir creates when asked to"),
        };
        let result = f(self, fd.as_fd());
        self.parent = Some((key, fd));
        result
    }

    /// An `O_PATH` fd of the directory at `comps` inside the root, with symlinks
    /// resolved as if the root were `/`. Missing directories are created when `create`
    /// is set, otherwise `None` is returned.
    fn resolve_dir(&mut self, comps: &[&[u8]], create: bool, entry: &str) -> Result<Option<OwnedFd>, LayerError> {
        let path = join(comps);
        match open_in_root(&self.root, &path, self.mode) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) if create => self.create_dirs(comps, entry).map(Some),
            Err(Errno::NOENT | Errno::NOTDIR) if !create => Ok(None),
            Err(Errno::NOTDIR) => {
                Err(LayerError::invalid(entry, format!("parent {:?} is not a directory", lossy(&path))))
            }
            Err(Errno::LOOP) if self.mode == WhiteoutMode::Plain => {
                Err(LayerError::invalid(entry, format!("path {:?} goes through a symlink", lossy(&path))))
            }
            Err(Errno::LOOP) => Err(LayerError::invalid(entry, "too many levels of symbolic links in the parent path")),
            Err(e) => Err(LayerError::apply(entry, "open parent directory")(e.into())),
        }
    }

    /// Walks `comps` from the root one component at a time, creating missing
    /// directories. Symlinks met on the way are expanded textually with `..` clamped
    /// at the root, which is what `RESOLVE_IN_ROOT` does, so `evil -> /etc` followed
    /// by `evil/passwd` creates `<root>/etc` rather than failing on the dangling link.
    fn create_dirs(&mut self, comps: &[&[u8]], entry: &str) -> Result<OwnedFd, LayerError> {
        let open_err = |e: Errno| LayerError::apply(entry, "open parent directory")(e.into());
        let mut todo: VecDeque<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        // Only real directories, so `..` can be taken textually.
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut cur = open_in_root(&self.root, b"", self.mode).map_err(open_err)?;
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                done.pop();
                cur = open_in_root(&self.root, &join(&done), self.mode).map_err(open_err)?;
                continue;
            }
            match rfs::statat(&cur, c.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match file_type(st.st_mode) {
                    FileType::Directory => {}
                    FileType::Symlink if self.mode == WhiteoutMode::Plain => {
                        let mut shown = done.clone();
                        shown.push(c);
                        return Err(LayerError::invalid(
                            entry,
                            format!("path {:?} goes through a symlink", lossy(&join(&shown))),
                        ));
                    }
                    FileType::Symlink => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(LayerError::invalid(
                                entry,
                                "too many levels of symbolic links in the parent path",
                            ));
                        }
                        let target = rfs::readlinkat(&cur, c.as_slice(), Vec::new())
                            .map_err(|e| LayerError::apply(entry, "read symlink in parent path")(e.into()))?
                            .into_bytes();
                        if target.starts_with(b"/") {
                            done.clear();
                            cur = open_in_root(&self.root, b"", self.mode).map_err(open_err)?;
                        }
                        for part in target.split(|b| *b == b'/').rev() {
                            todo.push_front(part.to_vec());
                        }
                        continue;
                    }
                    _ => {
                        let mut shown = done.clone();
                        shown.push(c);
                        return Err(LayerError::invalid(
                            entry,
                            format!("parent {:?} is not a directory", lossy(&join(&shown))),
                        ));
                    }
                },
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(LayerError::apply(entry, "create parent directory")(e.into())),
                    }
                    if let Some(created) = self.created.as_mut() {
                        let mut path = done.clone();
                        path.push(c.clone());
                        created.insert(join(&path));
                    }
                }
                Err(e) => return Err(LayerError::apply(entry, "stat parent directory")(e.into())),
            }
            cur = rfs::openat(
                &cur,
                c.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(open_err)?;
            done.push(c);
        }
        Ok(cur)
    }

    /// Makes room for a non-directory at `name`: whatever is there goes, a directory
    /// with all its contents.
    fn clear(&self, dir: BorrowedFd<'_>, name: &[u8], entry: &str) -> Result<(), LayerError> {
        match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => self.remove_tree(dir, name, entry),
            Err(e) => Err(LayerError::apply(entry, "remove existing file")(e.into())),
        }
    }

    /// Removes the directory `name` and everything below it, depth first with an
    /// explicit stack (a layer can nest deeper than our stack could recurse).
    fn remove_tree(&self, dir: BorrowedFd<'_>, name: &[u8], entry: &str) -> Result<(), LayerError> {
        let err = |op| LayerError::apply(entry, op);
        let name = CString::new(name).map_err(|e| err("remove existing directory")(io::Error::other(e)))?;
        let mut stack = vec![self.open_for_removal(dir, name, entry)?];
        while let Some(top) = stack.last_mut() {
            if let Some(child) = top.children.pop() {
                match rfs::unlinkat(&top.fd, child.as_c_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(Errno::ISDIR) => {
                        let frame = self.open_for_removal(top.fd.as_fd(), child, entry)?;
                        stack.push(frame);
                    }
                    Err(e) => return Err(err("remove existing directory")(e.into())),
                }
            } else {
                let done = stack.pop().expect("stack is not empty");
                let parent = stack.last().map_or(dir, |f| f.fd.as_fd());
                rfs::unlinkat(parent, done.name.as_c_str(), AtFlags::REMOVEDIR)
                    .map_err(|e| err("remove existing directory")(e.into()))?;
            }
        }
        Ok(())
    }

    fn open_for_removal(&self, dir: BorrowedFd<'_>, name: CString, entry: &str) -> Result<Frame, LayerError> {
        let err = LayerError::apply(entry, "remove existing directory");
        let fd = rfs::openat(
            dir,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let st = rfs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
            .map_err(|e| LayerError::apply(entry, "remove existing directory")(e.into()))?;
        if (st.stx_dev_major, st.stx_dev_minor) != self.root_dev || is_mount_root(&st) {
            return Err(LayerError::apply(entry, "remove existing directory")(io::Error::other(format!(
                "{:?} is a mount point; refusing to remove across it",
                name
            ))));
        }
        let children = list_dir(&fd).map_err(LayerError::apply(entry, "remove existing directory"))?;
        Ok(Frame { fd, name, children })
    }

    fn dir(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        rel: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), LayerError> {
        match rfs::mkdirat(dir, base, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| LayerError::apply(entry, "stat existing entry")(e.into()))?;
                if file_type(st.st_mode) != FileType::Directory {
                    rfs::unlinkat(dir, base, AtFlags::empty())
                        .map_err(|e| LayerError::apply(entry, "remove existing file")(e.into()))?;
                    rfs::mkdirat(dir, base, Mode::from_raw_mode(0o755))
                        .map_err(|e| LayerError::apply(entry, "create directory")(e.into()))?;
                }
            }
            Err(e) => return Err(LayerError::apply(entry, "create directory")(e.into())),
        }
        let fd = rfs::openat(
            dir,
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::apply(entry, "open directory")(e.into()))?;
        self.set_owner_mode_xattrs(fd.as_fd(), meta, entry)?;
        // Children written later would move the time; it is set once all are in.
        self.dir_times.push((rel.to_vec(), meta.mtime));
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        data: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        base: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), LayerError> {
        self.clear(dir, base, entry)?;
        let fd = rfs::openat(
            dir,
            base,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| LayerError::apply(entry, "create file")(e.into()))?;
        let mut file = File::from(fd);
        let size = data.size();
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => return Err(LayerError::Truncated { entry: entry.to_string() }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(e, entry)),
            };
            file.write_all(&self.buf[..n]).map_err(LayerError::apply(entry, "write file"))?;
            left -= n as u64;
        }
        self.set_owner_mode_xattrs(file.as_fd(), meta, entry)?;
        rfs::futimens(&file, &meta.times()).map_err(|e| LayerError::apply(entry, "set times")(e.into()))?;
        self.stats.size += size;
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        target: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), LayerError> {
        if target.is_empty() {
            return Err(LayerError::invalid(entry, "empty symlink target"));
        }
        if target.contains(&0) {
            return Err(LayerError::invalid(entry, "symlink target contains a NUL byte"));
        }
        self.clear(dir, base, entry)?;
        rfs::symlinkat(target, dir, base).map_err(|e| LayerError::apply(entry, "create symlink")(e.into()))?;
        self.chown_at(dir, base, meta, entry)?;
        // No chmod: symlink permissions mean nothing on Linux. No xattrs: the kernel
        // refuses user.* on symlinks and the others do not apply to them.
        self.times_at(dir, base, meta, entry)
    }

    fn hardlink(
        &mut self,
        parent: &[&[u8]],
        base: &[u8],
        target: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), LayerError> {
        let shown = lossy(target);
        let tcomps =
            normalize(target).map_err(|r| LayerError::invalid(entry, format!("hardlink target {shown:?}: {r}")))?;
        let Some((&tbase, tparent)) = tcomps.split_last() else {
            return Err(LayerError::invalid(entry, "hardlink to the root directory"));
        };
        let missing = || LayerError::invalid(entry, format!("hardlink target {shown:?} does not exist"));
        let tdir = self.resolve_dir(tparent, false, entry)?.ok_or_else(missing)?;
        let tst = match rfs::statat(&tdir, tbase, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(LayerError::apply(entry, "stat hardlink target")(e.into())),
        };
        let ttype = file_type(tst.st_mode);
        if ttype == FileType::Directory {
            return Err(LayerError::invalid(entry, format!("hardlink target {shown:?} is a directory")));
        }
        self.with_parent(parent, entry, |me, dir| {
            let same = matches!(rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW),
                Ok(st) if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino);
            if !same {
                me.clear(dir, base, entry)?;
                rfs::linkat(&tdir, tbase, dir, base, AtFlags::empty())
                    .map_err(|e| LayerError::apply(entry, "create hardlink")(e.into()))?;
            }
            // The inode is shared with the target, so only touch what differs: a chown,
            // even to the same owner, would strip the target's file capabilities.
            let chowned = tst.st_uid != meta.uid || tst.st_gid != meta.gid;
            if chowned {
                me.chown_at(dir, base, meta, entry)?;
            }
            if ttype != FileType::Symlink && (chowned || tst.st_mode & 0o7777 != meta.mode) {
                rfs::chmodat(dir, base, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                    .map_err(|e| LayerError::apply(entry, "chmod")(e.into()))?;
            }
            me.times_at(dir, base, meta, entry)
        })
    }

    fn special(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        ft: FileType,
        dev: rfs::Dev,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), LayerError> {
        self.clear(dir, base, entry)?;
        rfs::mknodat(dir, base, ft, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| LayerError::apply(entry, "create device node")(e.into()))?;
        self.chown_at(dir, base, meta, entry)?;
        // We made this node a moment ago in a directory only we write to, so it is
        // not a symlink and fchmodat may follow it.
        rfs::chmodat(dir, base, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| LayerError::apply(entry, "chmod")(e.into()))?;
        if !meta.xattrs.is_empty() {
            // fsetxattr needs a real open, which on a device could have side effects;
            // an O_PATH fd through its /proc link reaches the inode without opening it.
            let fd = rfs::openat(dir, base, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| LayerError::apply(entry, "open device node")(e.into()))?;
            let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            for (name, value) in meta.xattrs.iter().filter(|(n, _)| !n.as_bytes().starts_with(b"user.")) {
                let r = rfs::setxattr(proc.as_str(), name.as_c_str(), value, XattrFlags::empty());
                xattr_result(r, name, entry)?;
            }
        }
        self.times_at(dir, base, meta, entry)
    }

    fn whiteout(&mut self, parent: &[&[u8]], target: &[u8], entry: &str) -> Result<(), LayerError> {
        // Deleting may take the cached parent's directory with it.
        self.parent = None;
        match self.mode {
            WhiteoutMode::Overlay => self.with_parent(parent, entry, |me, dir| {
                me.clear(dir, target, entry)?;
                rfs::mknodat(dir, target, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| LayerError::apply(entry, "create whiteout")(e.into()))
            }),
            WhiteoutMode::Delete => match self.resolve_dir(parent, false, entry)? {
                Some(dir) => self.clear(dir.as_fd(), target, entry),
                None => Ok(()),
            },
            WhiteoutMode::Plain => unreachable!("plain trees have no whiteouts"),
        }
    }

    fn opaque(&mut self, parent: &[&[u8]], entry: &str) -> Result<(), LayerError> {
        self.parent = None;
        let create = self.mode == WhiteoutMode::Overlay;
        let Some(dir) = self.resolve_dir(parent, create, entry)? else {
            return Ok(());
        };
        let dir = rfs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| LayerError::apply(entry, "open opaque directory")(e.into()))?;
        match self.mode {
            WhiteoutMode::Overlay => rfs::fsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| LayerError::apply(entry, "mark directory opaque")(e.into())),
            WhiteoutMode::Plain => unreachable!("plain trees have no opaque markers"),
            WhiteoutMode::Delete => {
                let children = list_dir(&dir).map_err(LayerError::apply(entry, "list opaque directory"))?;
                for child in children {
                    let rel = join_child(parent, child.as_bytes());
                    if !self.created.as_ref().is_some_and(|c| c.contains(&rel)) {
                        self.clear(dir.as_fd(), child.as_bytes(), entry)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// chown before chmod, because chown clears setuid/setgid; xattrs after chown,
    /// because chown clears security.capability.
    fn set_owner_mode_xattrs(&self, fd: BorrowedFd<'_>, meta: &Meta, entry: &str) -> Result<(), LayerError> {
        rfs::fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
            .map_err(|e| LayerError::apply(entry, "chown")(e.into()))?;
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| LayerError::apply(entry, "chmod")(e.into()))?;
        for (name, value) in &meta.xattrs {
            xattr_result(rfs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty()), name, entry)?;
        }
        Ok(())
    }

    fn chown_at(&self, dir: BorrowedFd<'_>, base: &[u8], meta: &Meta, entry: &str) -> Result<(), LayerError> {
        rfs::chownat(dir, base, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::apply(entry, "chown")(e.into()))
    }

    fn times_at(&self, dir: BorrowedFd<'_>, base: &[u8], meta: &Meta, entry: &str) -> Result<(), LayerError> {
        rfs::utimensat(dir, base, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::apply(entry, "set times")(e.into()))
    }

    fn set_dir_times(&mut self) -> Result<(), LayerError> {
        for (rel, mtime) in std::mem::take(&mut self.dir_times) {
            let entry = lossy(&rel);
            let times = Timestamps { last_access: mtime, last_modification: mtime };
            let comps: Vec<&[u8]> = if rel.is_empty() { Vec::new() } else { rel.split(|b| *b == b'/').collect() };
            let Some((&base, parent)) = comps.split_last() else {
                rfs::futimens(&self.root, &times).map_err(|e| LayerError::apply(&entry, "set times")(e.into()))?;
                continue;
            };
            // A later entry may have deleted the directory or put something else there.
            let Some(dir) = self.resolve_dir(parent, false, &entry)? else { continue };
            match rfs::statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(st.st_mode) == FileType::Directory => {
                    rfs::utimensat(&dir, base, &times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| LayerError::apply(&entry, "set times")(e.into()))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn xattr_result(r: Result<(), Errno>, name: &CString, entry: &str) -> Result<(), LayerError> {
    match r {
        Ok(()) => Ok(()),
        // Some filesystems (or kernels) take no xattrs of a namespace at all; docker
        // and containerd drop the attribute then rather than fail the pull.
        Err(Errno::NOTSUP) => {
            tracing::warn!(entry, xattr = %name.to_string_lossy(), "filesystem does not support this xattr; dropped");
            Ok(())
        }
        // The kernel checks capability and ACL values; a rejected one is bad input.
        Err(Errno::INVAL | Errno::RANGE | Errno::TOOBIG) => Err(LayerError::invalid(
            entry,
            format!("the kernel rejects the value of xattr {:?}", name.to_string_lossy()),
        )),
        Err(e) => Err(LayerError::apply(entry, "set xattr")(e.into())),
    }
}

fn list_dir(fd: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for e in rfs::Dir::read_from(fd)? {
        let e = e?;
        let name = e.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Cursor;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::layer::testutil::{
        get_xattr, in_private_mount_ns, lstat, mkdir, scratch, with_decoy_etc, TarBuf, MTIME,
    };
    use strata_store::{Classify, ErrorKind};

    fn run(bytes: &[u8], root: &Path, whiteouts: WhiteoutMode) -> Result<ApplyStats, LayerError> {
        apply_tar(bytes, root, &ApplyOptions { whiteouts })
    }

    fn overlay(bytes: &[u8], root: &Path) -> Result<ApplyStats, LayerError> {
        run(bytes, root, WhiteoutMode::Overlay)
    }

    /// A root inside a scratch dir, so writes that escape would land in the scratch dir.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = scratch();
        let root = mkdir(tmp.path(), "root");
        (tmp, root)
    }

    use std::path::PathBuf;

    fn expect_invalid(result: Result<ApplyStats, LayerError>, entry: &str, reason: &str) -> LayerError {
        let err = result.expect_err("apply must fail");
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{msg}");
        assert!(msg.contains(&format!("{entry:?}")), "error names the entry: {msg}");
        assert!(msg.contains(reason), "error says {reason:?}: {msg}");
        err
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    fn rdev(path: &Path) -> (u32, u32) {
        let st = lstat(path);
        (rfs::major(st.st_rdev), rfs::minor(st.st_rdev))
    }

    #[test]
    fn normalize_rules() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(normalize(b"./").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(normalize(b"").unwrap_err(), "empty path");
        assert_eq!(normalize(b"/etc").unwrap_err(), "absolute path");
        assert_eq!(normalize(b"a/../b").unwrap_err(), "path escapes the root");
        assert_eq!(normalize(b"a\0b").unwrap_err(), "path contains a NUL byte");
        assert!(normalize(&[b'x'; 256]).is_err());
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1234"), Some((1234, 0)));
        assert_eq!(t("1234.5"), Some((1234, 500_000_000)));
        assert_eq!(t("1.0000000019"), Some((1, 1)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("1.2.3"), None);
    }

    #[test]
    fn dotdot_escape_is_rejected() {
        for name in ["../evil", "a/../../evil", "./../evil", "a/.."] {
            let (tmp, root) = setup();
            let mut t = TarBuf::new();
            t.file(name, b"pwned", 0o644);
            expect_invalid(overlay(&t.finish(), &root), name, "path escapes the root");
            assert!(!tmp.path().join("evil").exists());
            assert!(names(&root).is_empty(), "{name}: nothing applied");
        }
    }

    #[test]
    fn absolute_path_is_rejected() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("abs-evil");
        let mut t = TarBuf::new();
        t.file(outside.to_str().unwrap(), b"pwned", 0o644);
        expect_invalid(overlay(&t.finish(), &root), outside.to_str().unwrap(), "absolute path");
        assert!(!outside.exists());
    }

    #[test]
    fn empty_name_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.file("", b"x", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "", "empty path");
    }

    #[test]
    fn nul_in_name_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.pax(&[("path", b"etc/pass\0wd")]);
        t.file("placeholder", b"x", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "etc/pass\0wd", "NUL byte");

        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.raw_member(b"././@LongLink", EntryType::GNULongName, 6, b"a\0b/c\0");
        t.file("placeholder", b"x", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "a\0b/c", "NUL byte");
    }

    #[test]
    fn escaping_hardlinks_are_rejected() {
        let (tmp, root) = setup();
        fs::write(tmp.path().join("outside"), b"host secret").unwrap();
        for target in ["../outside", "/etc/passwd", "a/../../outside"] {
            let mut t = TarBuf::new();
            t.hardlink("link", target);
            expect_invalid(overlay(&t.finish(), &root), "link", "hardlink target");
            assert!(!root.join("link").exists());
        }
        assert_eq!(fs::metadata(tmp.path().join("outside")).unwrap().nlink(), 1);
    }

    #[test]
    fn hardlink_through_a_symlink_resolves_inside_the_root() {
        // `hostdir -> /abs/outside` must not make `hostdir/secret` the host's file.
        let (tmp, root) = setup();
        let outside = mkdir(tmp.path(), "outside");
        fs::write(outside.join("secret"), b"host secret").unwrap();
        let mut t = TarBuf::new();
        t.symlink("hostdir", outside.to_str().unwrap());
        t.hardlink("stolen", "hostdir/secret");
        expect_invalid(overlay(&t.finish(), &root), "stolen", "does not exist");
        assert!(fs::symlink_metadata(root.join("stolen")).is_err());
        assert_eq!(fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
    }

    #[test]
    fn hardlink_to_a_directory_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("d/", 0o755);
        t.hardlink("link", "d");
        expect_invalid(overlay(&t.finish(), &root), "link", "is a directory");
    }

    #[test]
    fn hardlink_to_a_missing_target_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.hardlink("link", "nope/nothing");
        expect_invalid(overlay(&t.finish(), &root), "link", "does not exist");
    }

    #[test]
    fn symlink_then_write_lands_inside_the_root() {
        // Links point at a scratch dir rather than anywhere on the host, so that a
        // broken guard fails the test instead of damaging the machine.
        let (tmp, root) = setup();
        let outside = mkdir(tmp.path(), "outside");
        let outside_rel = outside.strip_prefix("/").unwrap().to_str().unwrap().to_string();
        let mut t = TarBuf::new();
        t.symlink("evil", outside.to_str().unwrap());
        t.file("evil/pwned", b"x", 0o644);
        // Relative, climbing past the root.
        t.symlink("up", &format!("{}{outside_rel}", "../".repeat(12)));
        t.file("up/climbed", b"y", 0o644);
        t.symlink("rel", "../outside");
        t.file("rel/pwned-too", b"z", 0o644);
        overlay(&t.finish(), &root).unwrap();

        assert!(names(&outside).is_empty(), "nothing written outside the root");
        let inside = root.join(&outside_rel);
        assert_eq!(fs::read(inside.join("pwned")).unwrap(), b"x");
        assert_eq!(fs::read(inside.join("climbed")).unwrap(), b"y");
        assert_eq!(fs::read(root.join("outside/pwned-too")).unwrap(), b"z");
        assert_eq!(fs::read_link(root.join("evil")).unwrap(), outside);
    }

    #[test]
    fn symlink_to_etc_then_passwd_lands_inside_the_root() {
        // The literal attack, run where /etc is a decoy: were the guard broken, the
        // write would hit the decoy, not the host's /etc/passwd.
        let (_tmp, root) = setup();
        let ran = with_decoy_etc(|decoy| {
            let mut t = TarBuf::new();
            t.symlink("evil", "/etc");
            t.file("evil/passwd", b"root::0:0::/:/bin/sh\n", 0o644);
            overlay(&t.finish(), &root).unwrap();
            assert!(names(decoy).is_empty(), "nothing written to /etc");
            assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"root::0:0::/:/bin/sh\n");
            assert_eq!(fs::read_link(root.join("evil")).unwrap(), Path::new("/etc"));
        });
        if ran.is_none() {
            eprintln!("skipping: no private mount namespace here");
        }
    }

    #[test]
    fn symlink_into_existing_dir_is_followed_inside_the_root() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("usr/lib/", 0o755);
        t.symlink("lib", "usr/lib");
        t.file("lib/libc.so", b"elf", 0o755);
        overlay(&t.finish(), &root).unwrap();
        assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"elf");
        assert!(fs::symlink_metadata(root.join("lib")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn symlink_loop_in_parent_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.symlink("a", "b");
        t.symlink("b", "a");
        t.file("a/x", b"", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "a/x", "symbolic links");
    }

    #[test]
    fn existing_symlink_is_replaced_not_followed() {
        let (tmp, root) = setup();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"original").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("s")).unwrap();
        let mut t = TarBuf::new();
        t.file("s", b"new", 0o644);
        overlay(&t.finish(), &root).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        assert!(fs::symlink_metadata(root.join("s")).unwrap().is_file());
        assert_eq!(fs::read(root.join("s")).unwrap(), b"new");
    }

    #[test]
    fn file_under_a_file_is_rejected() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.file("f", b"", 0o644);
        t.file("f/x", b"", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "f/x", "not a directory");
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut t = TarBuf::new();
        t.dir("d/", 0o755);
        t.file("d/big", &[5u8; 10_000], 0o644);
        let bytes = t.finish();
        for cut in [512 + 512 + 4000, 512 + 100, 512 + 512 + 10_000 + 200] {
            let (_tmp, root) = setup();
            let err = overlay(&bytes[..cut], &root).unwrap_err();
            assert!(matches!(err, LayerError::Truncated { .. }), "cut at {cut}: {err}");
            assert_eq!(err.kind(), ErrorKind::Invalid);
        }
        // Cut exactly between members is a tar without its trailer, which go accepts.
        let (_tmp, root) = setup();
        overlay(&bytes[..512], &root).unwrap();
    }

    #[test]
    fn huge_pax_header_is_refused() {
        let (_tmp, root) = setup();
        let big = vec![b'v'; 2 << 20];
        let mut t = TarBuf::new();
        t.pax(&[("SCHILY.xattr.user.big", &big)]);
        t.file("f", b"", 0o644);
        let err = overlay(&t.finish(), &root).unwrap_err();
        assert!(matches!(err, LayerError::HugeHeader { .. }), "{err}");
        assert!(err.to_string().contains("huge header"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(!root.join("f").exists());

        // A header that only claims to be huge is refused before anything is read.
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.raw_member(b"PaxHeaders.0/f", EntryType::XHeader, 1 << 40, b"");
        let err = overlay(&t.into_bytes(), &root).unwrap_err();
        assert!(matches!(err, LayerError::HugeHeader { .. }), "{err}");
    }

    #[test]
    fn huge_gnu_long_name_is_refused() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        let name = vec![b'n'; (1 << 20) + 1];
        t.raw_member(b"././@LongLink", EntryType::GNULongName, name.len() as u64, &name);
        t.file("f", b"", 0o644);
        let err = overlay(&t.finish(), &root).unwrap_err();
        assert!(matches!(err, LayerError::HugeHeader { .. }), "{err}");
    }

    #[test]
    fn trusted_and_other_xattrs_in_the_tar_are_dropped() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.trusted.other", b"1"),
            ("SCHILY.xattr.security.selinux", b"system_u:object_r:etc_t:s0"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.keep", b"kept"),
        ]);
        t.dir("d/", 0o755);
        t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y"), ("SCHILY.xattr.user.f", b"1")]);
        t.file("d/f", b"", 0o644);
        overlay(&t.finish(), &root).unwrap();
        let d = root.join("d");
        for name in ["trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.other", "user.overlay.opaque"] {
            assert_eq!(get_xattr(&d, name), None, "{name}");
        }
        assert_eq!(get_xattr(&d, "user.keep").as_deref(), Some(&b"kept"[..]));
        assert_ne!(get_xattr(&d, "security.selinux").as_deref(), Some(&b"system_u:object_r:etc_t:s0"[..]));
        assert_eq!(get_xattr(&d.join("f"), "trusted.overlay.opaque"), None);
        assert_eq!(get_xattr(&d.join("f"), "user.f").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn device_nodes_get_their_numbers() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("dev/", 0o755);
        t.device("dev/null", EntryType::Char, 1, 3);
        t.device("dev/loop0", EntryType::Block, 7, 0);
        t.device("dev/big", EntryType::Char, 259, 1_048_575);
        t.device("dev/fifo", EntryType::Fifo, 0, 0);
        overlay(&t.finish(), &root).unwrap();
        let ft = |p: &str| FileType::from_raw_mode(lstat(&root.join(p)).st_mode);
        assert_eq!(ft("dev/null"), FileType::CharacterDevice);
        assert_eq!(rdev(&root.join("dev/null")), (1, 3));
        assert_eq!(ft("dev/loop0"), FileType::BlockDevice);
        assert_eq!(rdev(&root.join("dev/loop0")), (7, 0));
        assert_eq!(rdev(&root.join("dev/big")), (259, 1_048_575));
        assert_eq!(ft("dev/fifo"), FileType::Fifo);
        assert_eq!(lstat(&root.join("dev/null")).st_mode & 0o7777, 0o644);
    }

    #[test]
    fn special_bits_and_ownership_are_preserved() {
        let (_tmp, root) = setup();
        // v2 file capability: cap_net_bind_service permitted+effective.
        let mut cap = Vec::new();
        for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
            cap.extend_from_slice(&word.to_le_bytes());
        }
        let mut t = TarBuf::new();
        let mut h = TarBuf::header(b"suid", EntryType::Regular, 2);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(2000);
        t.push(h, b"#!");
        let mut h = TarBuf::header(b"sgid/", EntryType::Directory, 0);
        h.set_mode(0o2775);
        h.set_gid(50);
        t.push(h, b"");
        let mut h = TarBuf::header(b"tmp/", EntryType::Directory, 0);
        h.set_mode(0o1777);
        t.push(h, b"");
        let mut h = TarBuf::header(b"link", EntryType::Symlink, 0);
        h.as_old_mut().linkname[..4].copy_from_slice(b"suid");
        h.set_uid(5);
        h.set_gid(6);
        t.push(h, b"");
        t.pax(&[("SCHILY.xattr.security.capability", &cap)]);
        let mut h = TarBuf::header(b"ping", EntryType::Regular, 0);
        h.set_mode(0o755);
        h.set_uid(1000);
        t.push(h, b"");
        overlay(&t.finish(), &root).unwrap();

        let st = lstat(&root.join("suid"));
        assert_eq!(st.st_mode & 0o7777, 0o4755);
        assert_eq!((st.st_uid, st.st_gid), (1000, 2000));
        let st = lstat(&root.join("sgid"));
        assert_eq!(st.st_mode & 0o7777, 0o2775);
        assert_eq!(st.st_gid, 50);
        assert_eq!(lstat(&root.join("tmp")).st_mode & 0o7777, 0o1777);
        let st = lstat(&root.join("link"));
        assert_eq!((st.st_uid, st.st_gid), (5, 6), "symlink itself is chowned");
        assert_eq!(lstat(&root.join("suid")).st_uid, 1000, "symlink target untouched");
        let st = lstat(&root.join("ping"));
        assert_eq!(st.st_uid, 1000);
        assert_eq!(get_xattr(&root.join("ping"), "security.capability"), Some(cap), "capability set after chown");
    }

    #[test]
    fn malformed_capability_is_invalid_input() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.pax(&[("SCHILY.xattr.security.capability", b"garbage")]);
        t.file("f", b"", 0o755);
        expect_invalid(overlay(&t.finish(), &root), "f", "security.capability");
    }

    #[test]
    fn directory_mtime_is_kept_after_children_are_written() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        let mut h = TarBuf::header(b"d/", EntryType::Directory, 0);
        h.set_mtime(1000);
        t.push(h, b"");
        let mut h = TarBuf::header(b"d/sub/", EntryType::Directory, 0);
        h.set_mtime(1500);
        t.push(h, b"");
        let mut h = TarBuf::header(b"d/sub/f", EntryType::Regular, 1);
        h.set_mtime(2000);
        t.push(h, b"x");
        let mut h = TarBuf::header(b"d/l", EntryType::Symlink, 0);
        h.as_old_mut().linkname[..3].copy_from_slice(b"sub");
        h.set_mtime(3000);
        t.push(h, b"");
        t.pax(&[("mtime", b"4000.25")]);
        t.file("d/precise", b"", 0o644);
        overlay(&t.finish(), &root).unwrap();

        let mtime = |p: &str| {
            let st = lstat(&root.join(p));
            (st.st_mtime, st.st_mtime_nsec)
        };
        assert_eq!(mtime("d"), (1000, 0));
        assert_eq!(mtime("d/sub"), (1500, 0));
        assert_eq!(mtime("d/sub/f"), (2000, 0));
        assert_eq!(mtime("d/l"), (3000, 0), "symlink's own time");
        assert_eq!(mtime("d/precise"), (4000, 250_000_000));
        assert_eq!(lstat(&root.join("d/sub/f")).st_atime, 2000, "atime = mtime");
    }

    #[test]
    fn whiteouts_in_overlay_mode_become_char_devices() {
        let (_tmp, root) = setup();
        fs::write(root.join("gone"), b"x").unwrap();
        mkdir(&root, "gonedir/sub");
        fs::write(root.join("gonedir/sub/f"), b"x").unwrap();
        let mut t = TarBuf::new();
        t.file(".wh.gone", b"", 0o644);
        t.file(".wh.gonedir", b"", 0o644);
        t.file("deep/er/.wh.x", b"", 0o644);
        let stats = overlay(&t.finish(), &root).unwrap();
        assert_eq!(stats.entries, 3);
        for p in ["gone", "gonedir", "deep/er/x"] {
            let st = lstat(&root.join(p));
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::CharacterDevice, "{p}");
            assert_eq!(rdev(&root.join(p)), (0, 0), "{p}");
        }
        assert!(!root.join(".wh.gone").exists());
    }

    #[test]
    fn whiteouts_in_delete_mode_remove() {
        let (_tmp, root) = setup();
        fs::write(root.join("gone"), b"x").unwrap();
        mkdir(&root, "gonedir/sub/subsub");
        fs::write(root.join("gonedir/sub/subsub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/", root.join("gonedir/sub/rootlink")).unwrap();
        fs::write(root.join("kept"), b"x").unwrap();
        let mut t = TarBuf::new();
        t.file(".wh.gone", b"", 0o644);
        t.file(".wh.gonedir", b"", 0o644);
        t.file(".wh.missing", b"", 0o644);
        t.file("nodir/.wh.x", b"", 0o644);
        let stats = run(&t.finish(), &root, WhiteoutMode::Delete).unwrap();
        assert_eq!(stats.entries, 4);
        assert_eq!(names(&root), ["kept"]);
    }

    #[test]
    fn plain_mode_keeps_whiteout_names_as_files() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.file(".wh.gone", b"data", 0o644);
        t.file("d/.wh..wh..opq", b"", 0o600);
        t.file("d/.wh..wh.plnk", b"x", 0o644);
        let stats = run(&t.finish(), &root, WhiteoutMode::Plain).unwrap();
        assert_eq!(stats.entries, 3);
        assert_eq!(fs::read(root.join(".wh.gone")).unwrap(), b"data");
        assert_eq!(names(&root.join("d")), [".wh..wh..opq", ".wh..wh.plnk"]);
        assert_eq!(get_xattr(&root.join("d"), "trusted.overlay.opaque"), None);
    }

    #[test]
    fn plain_mode_refuses_entries_through_symlinks() {
        type Build<'a> = &'a dyn Fn(&mut TarBuf);
        let cases: &[(&str, Build)] = &[
            ("evil/passwd", &|t| {
                t.symlink("evil", "/etc");
                t.file("evil/passwd", b"pwned", 0o644);
            }),
            ("up/x", &|t| {
                t.symlink("up", "../../..");
                t.file("up/x", b"pwned", 0o644);
            }),
            ("in/deeper/x", &|t| {
                t.dir("real/", 0o755);
                t.symlink("in", "real");
                t.file("in/deeper/x", b"x", 0o644);
            }),
            ("l", &|t| {
                t.file("real", b"x", 0o644);
                t.symlink("dir", ".");
                t.hardlink("l", "dir/real");
            }),
        ];
        for (entry, build) in cases {
            let (tmp, root) = setup();
            let mut t = TarBuf::new();
            build(&mut t);
            expect_invalid(run(&t.finish(), &root, WhiteoutMode::Plain), entry, "goes through a symlink");
            assert!(!tmp.path().join("x").exists() && !tmp.path().join("passwd").exists());
        }
        // Symlinks themselves are content, whatever they point at.
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.symlink("abs", "/etc/passwd");
        t.symlink("rel", "../../x");
        run(&t.finish(), &root, WhiteoutMode::Plain).unwrap();
        assert_eq!(fs::read_link(root.join("abs")).unwrap(), Path::new("/etc/passwd"));
    }

    #[test]
    fn opaque_in_overlay_mode_sets_the_xattr() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("d/", 0o755);
        t.file("d/.wh..wh..opq", b"", 0o644);
        t.file("d/new", b"", 0o644);
        t.file("implicit/.wh..wh..opq", b"", 0o644);
        overlay(&t.finish(), &root).unwrap();
        assert_eq!(get_xattr(&root.join("d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
        assert_eq!(get_xattr(&root.join("implicit"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
        assert_eq!(names(&root.join("d")), ["new"]);
    }

    #[test]
    fn opaque_in_delete_mode_removes_what_this_layer_did_not_create() {
        let (_tmp, root) = setup();
        mkdir(&root, "d/olddir/x");
        fs::write(root.join("d/old"), b"").unwrap();
        fs::write(root.join("d/keep"), b"old content").unwrap();
        let mut t = TarBuf::new();
        t.dir("d/", 0o755);
        t.file("d/keep", b"from this layer", 0o644);
        t.file("d/.wh..wh..opq", b"", 0o644);
        t.file("d/new", b"", 0o644);
        run(&t.finish(), &root, WhiteoutMode::Delete).unwrap();
        assert_eq!(names(&root.join("d")), ["keep", "new"]);
        assert_eq!(fs::read(root.join("d/keep")).unwrap(), b"from this layer");
        assert_eq!(get_xattr(&root.join("d"), "trusted.overlay.opaque"), None);
    }

    #[test]
    fn delete_mode_whiteout_does_not_leave_a_stale_parent() {
        // d/f1 caches d; deleting d and writing d/f2 must create a fresh d.
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.file("d/f1", b"", 0o644);
        t.file(".wh.d", b"", 0o644);
        t.file("d/f2", b"", 0o644);
        run(&t.finish(), &root, WhiteoutMode::Delete).unwrap();
        assert_eq!(names(&root.join("d")), ["f2"]);
    }

    #[test]
    fn existing_entries_are_replaced_or_kept() {
        let (_tmp, root) = setup();
        fs::write(root.join("file-to-dir"), b"x").unwrap();
        mkdir(&root, "dir-to-file/sub");
        fs::write(root.join("dir-to-file/sub/f"), b"x").unwrap();
        mkdir(&root, "kept");
        fs::write(root.join("kept/child"), b"x").unwrap();
        fs::set_permissions(root.join("kept"), fs::Permissions::from_mode(0o700)).unwrap();
        let mut t = TarBuf::new();
        t.dir("file-to-dir/", 0o755);
        t.file("dir-to-file", b"now a file", 0o600);
        t.dir("kept/", 0o751);
        overlay(&t.finish(), &root).unwrap();
        assert!(fs::symlink_metadata(root.join("file-to-dir")).unwrap().is_dir());
        assert_eq!(fs::read(root.join("dir-to-file")).unwrap(), b"now a file");
        assert_eq!(names(&root.join("kept")), ["child"]);
        assert_eq!(lstat(&root.join("kept")).st_mode & 0o7777, 0o751);
    }

    #[test]
    fn parent_cache_follows_replaced_parents() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("a/", 0o755);
        t.file("a/f1", b"", 0o644);
        t.dir("b/", 0o755);
        t.symlink("a", "b");
        t.file("a/f2", b"", 0o644);
        overlay(&t.finish(), &root).unwrap();
        assert_eq!(names(&root.join("b")), ["f2"]);
    }

    #[test]
    fn stats_count_data_and_entries() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.dir("d/", 0o755);
        t.file("d/a", &[1u8; 10], 0o644);
        t.file("d/b", &[2u8; 20], 0o644);
        t.hardlink("d/c", "d/b");
        t.symlink("d/s", "a");
        t.file("d/.wh.x", b"", 0o644);
        let mut t2 = t.finish();
        t2.extend_from_slice(b"trailing bytes after the archive");
        let mut cursor = Cursor::new(&t2[..]);
        let stats = apply_tar(&mut cursor, &root, &ApplyOptions::default()).unwrap();
        assert_eq!(stats, ApplyStats { size: 30, entries: 6 });
        assert_eq!(cursor.position() as usize, t2.len(), "the reader is drained");
        assert_eq!(fs::metadata(root.join("d/c")).unwrap().ino(), fs::metadata(root.join("d/b")).unwrap().ino());
    }

    #[test]
    fn long_names_and_link_names() {
        let (_tmp, root) = setup();
        let long_dir = format!("{}/{}", "a".repeat(150), "b".repeat(150));
        let long_file = format!("{long_dir}/{}", "c".repeat(200));
        let long_target = "t".repeat(250);
        let mut t = TarBuf::new();
        t.pax(&[("path", format!("{long_dir}/").as_bytes())]);
        t.dir("placeholder/", 0o755);
        t.pax(&[("path", long_file.as_bytes())]);
        t.file("placeholder", b"data", 0o644);
        t.raw_member(b"././@LongLink", EntryType::GNULongName, 9, b"gnu-long\0");
        t.raw_member(b"././@LongLink", EntryType::GNULongLink, long_file.len() as u64, long_file.as_bytes());
        t.hardlink("placeholder", "x");
        t.pax(&[("linkpath", long_target.as_bytes())]);
        t.symlink("sym", "x");
        overlay(&t.finish(), &root).unwrap();
        assert_eq!(fs::read(root.join(&long_file)).unwrap(), b"data");
        assert_eq!(
            fs::metadata(root.join("gnu-long")).unwrap().ino(),
            fs::metadata(root.join(&long_file)).unwrap().ino()
        );
        assert_eq!(fs::read_link(root.join("sym")).unwrap(), Path::new(&long_target));
        assert!(!root.join("placeholder").exists());
    }

    #[test]
    fn unsupported_types_are_rejected() {
        for flag in [b'Z', b'V'] {
            let (_tmp, root) = setup();
            let mut t = TarBuf::new();
            t.raw_member(b"odd", EntryType::new(flag), 0, b"");
            let err = overlay(&t.finish(), &root).unwrap_err();
            assert!(matches!(err, LayerError::UnsupportedType { .. }), "{err}");
            assert!(err.to_string().contains(&format!("'{}'", flag as char)), "{err}");
        }
    }

    #[test]
    fn root_entry_sets_root_metadata() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        let mut h = TarBuf::header(b"./", EntryType::Directory, 0);
        h.set_mode(0o750);
        h.set_mtime(5000);
        t.push(h, b"");
        t.file("./f", b"", 0o644);
        overlay(&t.finish(), &root).unwrap();
        let st = lstat(&root);
        assert_eq!(st.st_mode & 0o7777, 0o750);
        assert_eq!(st.st_mtime, 5000);

        let mut t = TarBuf::new();
        t.file("./", b"", 0o644);
        expect_invalid(overlay(&t.finish(), &root), "./", "root directory");
    }

    #[test]
    fn v7_directories_and_global_headers() {
        let (_tmp, root) = setup();
        let mut t = TarBuf::new();
        t.raw_member(b"pax_global_header", EntryType::XGlobalHeader, 0, b"");
        let mut h = TarBuf::header(b"olddir/", EntryType::Regular, 0);
        h.as_old_mut().linkflag[0] = 0;
        t.push(h, b"");
        t.file(".wh..wh.plnk/123", b"aufs", 0o644);
        let stats = overlay(&t.finish(), &root).unwrap();
        assert!(root.join("olddir").is_dir());
        assert_eq!(names(&root), ["olddir"], "aufs metadata skipped");
        assert_eq!(stats.entries, 1);
        assert_eq!(lstat(&root.join("olddir")).st_mtime, MTIME as i64);
    }

    #[test]
    fn removal_does_not_cross_mount_points() {
        let (_tmp, root) = setup();
        let mnt = mkdir(&root, "d/mnt");
        let ran = in_private_mount_ns(|| {
            rustix::mount::mount("tmpfs", &mnt, "tmpfs", rustix::mount::MountFlags::empty(), None).unwrap();
            fs::write(mnt.join("precious"), b"x").unwrap();
            let mut t = TarBuf::new();
            t.file("d", b"", 0o644);
            let err = overlay(&t.finish(), &root).unwrap_err();
            assert!(err.to_string().contains("mount point"), "{err}");
            assert_eq!(fs::read(mnt.join("precious")).unwrap(), b"x");

            let mut t = TarBuf::new();
            t.file(".wh.d", b"", 0o644);
            assert!(run(&t.finish(), &root, WhiteoutMode::Delete).is_err());
            assert_eq!(fs::read(mnt.join("precious")).unwrap(), b"x");
        });
        if ran.is_none() {
            eprintln!("skipping: no private mount namespace here");
        }
    }

    /// `cargo test --release -p strata-snapshot -- --ignored --nocapture large_layer`
    #[test]
    #[ignore = "benchmark: writes and applies a 335 MB layer"]
    fn large_layer_applies_at_disk_speed() {
        use std::time::Instant;
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        let block = vec![0x5au8; 4096];
        for d in 0..200 {
            let dir = mkdir(&src, &format!("d{d:03}"));
            for f in 0..100 {
                fs::write(dir.join(format!("f{f:03}")), &block).unwrap();
            }
        }
        let big: Vec<u8> = (0..256u32 << 20).map(|i| (i % 253) as u8).collect();
        fs::write(src.join("big"), &big).unwrap();
        drop(big);
        let tar_path = tmp.path().join("layer.tar");
        let start = Instant::now();
        let out = io::BufWriter::new(File::create(&tar_path).unwrap());
        crate::layer::write_tar(&src, out, &crate::layer::WriteOptions::default()).unwrap();
        let len = fs::metadata(&tar_path).unwrap().len();
        println!("write_tar: {len} bytes in {:?}", start.elapsed());

        let dst = mkdir(tmp.path(), "dst");
        let start = Instant::now();
        let stats = overlay_reader(File::open(&tar_path).unwrap(), &dst);
        rfs::syncfs(File::open(&dst).unwrap()).unwrap();
        let took = start.elapsed();
        println!("apply_tar: {stats:?} in {took:?} ({:.0} MB/s)", len as f64 / took.as_secs_f64() / 1e6);
        assert_eq!(stats.entries, 200 * 101 + 1);
    }

    fn overlay_reader(r: impl Read, root: &Path) -> ApplyStats {
        apply_tar(r, root, &ApplyOptions::default()).unwrap()
    }
}
