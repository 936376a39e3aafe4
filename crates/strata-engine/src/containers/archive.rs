//! `cp`: tar streams out of and into a container's filesystem as its processes see it.
//!
//! Every path on the container's side is resolved by a forked child whose `/` *is* that
//! filesystem: for a running container the child joins its mount namespace (so volumes,
//! binds and tmpfs are where the container has them); otherwise the child assembles the
//! same view in a private namespace (the writable rootfs, then each volume and bind,
//! cloned with `open_tree` before `chroot` and attached inside it). A symlink in the
//! container can then only ever resolve inside the container: the host is not in the
//! child's view at all (the docker cp symlink CVEs). The host side reads and writes the
//! stream; extraction on the host goes through the tar crate's `unpack_in`, which
//! refuses `..`, absolute names and writes through symlinks out of the destination.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{alive, private_mount_ns, Container};
use crate::{Engine, EngineError, Result};

impl Engine {
    /// `cp CONTAINER:SRC ...`: `sink` gets a tar of `src` (its last component as the
    /// top entry, or the directory's contents for a path ending in `/.`), following
    /// `src` itself when it is a symlink and `follow` is set.
    pub fn copy_from_container<T>(&self, c: &Container, src: &str, follow: bool, sink: impl FnOnce(File) -> T) -> Result<T> {
        let (rd, wr) = big_pipe()?;
        let name = c.name.clone();
        let src = src.to_string();
        let (out, res) = self.in_container_fs(
            c,
            move || {
                let w = File::from(wr);
                write_path_tar(&src, follow, w).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => format!("Could not find the file {src} in container {name}"),
                    _ => format!("cp {src}: {}", strata_store::os_text(&e)),
                })
            },
            move || sink(File::from(rd)),
        );
        res.map_err(EngineError::Conflict)?;
        Ok(out)
    }

    /// `cp CONTAINER:SRC HOSTPATH` with a fast path: when `src` is a regular file its
    /// bytes go straight into `file` (opened by the caller on the host, so nothing on
    /// the host is looked up from the container's view), copied in the kernel, with its
    /// mode and times; the result is then `None`. Anything else comes as a tar stream to
    /// `sink`, as in `copy_from_container`.
    pub fn copy_from_container_into<T>(&self, c: &Container, src: &str, follow: bool, file: &File, sink: impl FnOnce(Box<dyn Read>) -> T) -> Result<Option<T>> {
        use std::os::fd::AsFd;
        let (rd, wr) = big_pipe()?;
        let name = c.name.clone();
        let src = src.to_string();
        let out_fd = file.as_fd();
        let (out, res) = self.in_container_fs(
            c,
            move || {
                let mut w = File::from(wr);
                let fail = |e: std::io::Error| match e.kind() {
                    std::io::ErrorKind::NotFound => format!("Could not find the file {src} in container {name}"),
                    _ => format!("cp {src}: {}", strata_store::os_text(&e)),
                };
                let mut p = PathBuf::from(&src);
                let md = std::fs::symlink_metadata(&p).map_err(fail)?;
                if follow && md.file_type().is_symlink() {
                    p = std::fs::canonicalize(&p).map_err(fail)?;
                }
                let md = std::fs::symlink_metadata(&p).map_err(fail)?;
                if md.is_file() && !src.ends_with("/.") {
                    copy_file_into(&p, out_fd).map_err(fail)?;
                    return w.write_all(b"F").map_err(fail);
                }
                w.write_all(b"T").map_err(fail)?;
                write_path_tar(&src, follow, w).map_err(fail)
            },
            move || {
                let mut r = File::from(rd);
                let mut kind = [0u8; 1];
                match r.read_exact(&mut kind) {
                    Ok(()) if kind[0] == b'T' => Some(sink(Box::new(r))),
                    _ => None,
                }
            },
        );
        res.map_err(EngineError::Conflict)?;
        Ok(out)
    }

    /// `cp HOSTFILE CONTAINER:DEST` for a regular file: the caller opened it on the host;
    /// the child, inside the container's view, places it by docker's rules (into `dest`
    /// when that is a directory, else as `dest`), staged beside and renamed, the data
    /// copied in the kernel. Owners: the file's own with `archive`, else root.
    pub fn copy_file_to_container(&self, c: &Container, dest: &str, archive: bool, file: &File, name: &str) -> Result<()> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        if let Some(why) = self.read_only_at(c, dest) {
            return Err(EngineError::Invalid(why.into()));
        }
        let md = file.metadata().map_err(|e| EngineError::io("stat", name, e))?;
        let owner = if archive { (md.uid(), md.gid()) } else { (0, 0) };
        let src_fd = file.as_fd();
        let (dest_s, cname, name) = (dest.to_string(), c.name.clone(), name.to_string());
        let ((), res) = self.in_container_fs(
            c,
            move || {
                let fail = |e: std::io::Error| format!("cp {dest_s}: {}", strata_store::os_text(&e));
                let d = Path::new(&dest_s);
                let target = if d.is_dir() { d.join(&name) } else { d.to_path_buf() };
                let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !dir.is_dir() {
                    return Err(format!("Could not find the file {} in container {cname}", dir.display()));
                }
                let staged = dir.join(format!(".strata-cp-{}", strata_store::random_hex(6)));
                let res = (|| -> std::io::Result<()> {
                    let out = File::options().write(true).create_new(true).open(&staged)?;
                    copy_fd_into(src_fd, out.as_fd())?;
                    rustix::fs::fchown(&out, Some(rustix::fs::Uid::from_raw(owner.0)), Some(rustix::fs::Gid::from_raw(owner.1)))?;
                    copy_meta(src_fd, out.as_fd())?;
                    std::fs::rename(&staged, &target)
                })();
                if res.is_err() {
                    let _ = std::fs::remove_file(&staged);
                }
                res.map_err(fail)
            },
            || (),
        );
        res.map_err(EngineError::Conflict)
    }

    /// `cp ... CONTAINER:DEST`: `source` writes a tar into the given pipe; it is
    /// extracted at `dest` (into it when it is a directory, else as it, with the tar's
    /// top entry renamed). `dir_only`: `dest` must be an existing directory (a tar from
    /// stdin). `archive` keeps the tar's owners, else the files are root's.
    pub fn copy_to_container<T>(&self, c: &Container, dest: &str, dir_only: bool, archive: bool, source: impl FnOnce(File) -> T) -> Result<T> {
        if let Some(why) = self.read_only_at(c, dest) {
            return Err(EngineError::Invalid(why.into()));
        }
        let (rd, wr) = big_pipe()?;
        let (dest_s, name) = (dest.to_string(), c.name.clone());
        let (out, res) = self.in_container_fs(
            c,
            move || {
                let r = File::from(rd);
                extract_at(r, Path::new(&dest_s), dir_only, archive).map_err(|e| match e {
                    Extract::NotADirectory => format!("destination \"{name}:{dest_s}\" must be a directory"),
                    Extract::NoParent(p) => format!("Could not find the file {} in container {name}", p.display()),
                    Extract::Io(e) => format!("cp {dest_s}: {}", strata_store::os_text(&e)),
                })
            },
            move || source(File::from(wr)),
        );
        res.map_err(EngineError::Conflict)?;
        Ok(out)
    }

    /// Why `path` cannot be written, if it lives on a read-only mount of the container
    /// (the mount with the longest destination containing it decides, as docker's) or on
    /// a read-only rootfs outside any mount.
    fn read_only_at(&self, c: &Container, path: &str) -> Option<&'static str> {
        let path = super::mountspec::clean(Path::new(path));
        let within = |dest: &str| path == dest || dest == "/" || path.starts_with(&format!("{dest}/"));
        let mut best: Option<(usize, bool)> = None;
        let mut consider = |dest: &str, ro: bool| {
            if within(dest) && best.is_none_or(|(len, _)| dest.len() > len) {
                best = Some((dest.len(), ro));
            }
        };
        for v in &c.volume_mounts {
            consider(&v.destination, v.read_only);
        }
        for (m, _) in super::inspect::recorded_mounts(c) {
            consider(&m.destination, m.read_only);
        }
        match best {
            Some((_, true)) => Some("mounted volume is marked read-only"),
            Some((_, false)) => None,
            None => c.host_config().get("ReadonlyRootfs").and_then(serde_json::Value::as_bool).unwrap_or(false).then_some("container rootfs is marked read-only"),
        }
    }

    /// Forks a child whose `/` is the container's filesystem, runs `child` there, and
    /// `parent` here meanwhile.
    fn in_container_fs<T>(
        &self,
        c: &Container,
        child: impl FnOnce() -> std::result::Result<(), String>,
        parent: impl FnOnce() -> T,
    ) -> (T, std::result::Result<(), String>) {
        let running = matches!(c.status.as_str(), "running" | "paused") && alive(c.pid, c.pid_start);
        let view = self.container_dir(&c.id).join("cp-view");
        let mounts = if running { None } else { self.snapshotter().mounts(&c.id).ok() };
        // What to attach inside the view for a stopped container: (destination, source).
        let mut attach: Vec<(String, PathBuf)> = Vec::new();
        if !running {
            for v in &c.volume_mounts {
                if let Ok(vol) = self.volumes().get(&v.name) {
                    let mut src = vol.mountpoint.clone();
                    if !v.subpath.is_empty() {
                        src = src.join(&v.subpath);
                    }
                    attach.push((v.destination.clone(), src));
                }
            }
            for (m, _) in super::inspect::recorded_mounts(c) {
                if m.typ == Some(super::mountspec::MountType::Bind) {
                    attach.push((m.destination.clone(), PathBuf::from(&m.source)));
                }
            }
            attach.sort_by_key(|(d, _)| d.matches('/').count());
            let _ = std::fs::create_dir_all(&view);
        }
        let pid = c.pid;
        let out = self.in_child(
            &c.id,
            || {
                if running {
                    let ns = rustix::fs::open(format!("/proc/{pid}/ns/mnt"), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                        .map_err(|e| format!("container {}: {}", c.id, strata_store::os_text(&e.into())))?;
                    rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&ns), Some(rustix::thread::LinkNameSpaceType::Mount))
                        .map_err(|e| format!("join container {}: {}", c.id, strata_store::os_text(&e.into())))?;
                } else {
                    private_mount_ns()?;
                    let mounts = mounts.ok_or_else(|| format!("container {}: no filesystem", c.id))?;
                    strata_snapshot::mount_all(&strata_snapshot::LinuxSyscall, &mounts, &view)
                        .map_err(|e| format!("mount the container's filesystem: {}", strata_store::os_text(&e)))?;
                    let mut trees = Vec::new();
                    for (dest, src) in &attach {
                        use rustix::mount::{open_tree, OpenTreeFlags};
                        let is_dir = src.is_dir();
                        match open_tree(rustix::fs::CWD, src, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE) {
                            Ok(t) => trees.push((dest.clone(), t, is_dir)),
                            // A bind source gone since: the container would not start either.
                            Err(_) => continue,
                        }
                    }
                    rustix::process::chroot(&view).map_err(|e| format!("chroot: {}", strata_store::os_text(&e.into())))?;
                    for (dest, tree, is_dir) in trees {
                        attach_inside(&dest, &tree, is_dir).map_err(|e| format!("mount {dest}: {}", strata_store::os_text(&e)))?;
                    }
                }
                std::env::set_current_dir("/").map_err(|e| format!("chdir: {}", strata_store::os_text(&e)))?;
                child()
            },
            parent,
        );
        if !running {
            let _ = std::fs::remove_dir(&view);
        }
        out
    }
}

/// Copies a regular file's data into `out` in the kernel, then its mode and times.
fn copy_file_into(src: &Path, out: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let f = rustix::fs::open(src, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    copy_fd_into(std::os::fd::AsFd::as_fd(&f), out)?;
    copy_meta(std::os::fd::AsFd::as_fd(&f), out)
}

/// The data of `src` (from its start) into `out`: `copy_file_range`, or `sendfile`
/// across filesystems that refuse it; never through user space.
fn copy_fd_into(src: std::os::fd::BorrowedFd<'_>, out: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let mut left = rustix::fs::fstat(src)?.st_size as u64;
    let mut off: u64 = 0;
    let mut cfr = true;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        let n = if cfr {
            let mut o = off;
            match rustix::fs::copy_file_range(src, Some(&mut o), out, None, chunk) {
                Ok(n) => n,
                Err(rustix::io::Errno::XDEV | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
                    cfr = false;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut o = off;
            rustix::fs::sendfile(out, src, Some(&mut o), chunk)?
        };
        if n == 0 {
            break;
        }
        off += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Mode (after any chown, which clears setuid) and times of `src` onto `out`.
fn copy_meta(src: std::os::fd::BorrowedFd<'_>, out: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use rustix::fs::{Mode, Timespec, Timestamps};
    let st = rustix::fs::fstat(src)?;
    rustix::fs::fchmod(out, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let times = Timestamps {
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
    };
    rustix::fs::futimens(out, &times)?;
    Ok(())
}

/// A pipe for a tar stream, 1 MiB deep (the default 64 KiB makes both sides wait on
/// each other every few reads).
fn big_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| EngineError::io("pipe", "cp", e.into()))?;
    let _ = rustix::pipe::fcntl_setpipe_size(&wr, 1 << 20);
    Ok((rd, wr))
}

/// Attaches a cloned mount tree at `dest`, a path inside the (chrooted) view: created
/// like the runtime creates mount points, resolved inside the view because `/` is it.
fn attach_inside(dest: &str, tree: &OwnedFd, is_dir: bool) -> std::io::Result<()> {
    use rustix::mount::{move_mount, MoveMountFlags};
    let p = Path::new(dest);
    if is_dir {
        std::fs::create_dir_all(p)?;
    } else {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if !p.exists() {
            File::create(p)?;
        }
    }
    move_mount(tree, "", rustix::fs::CWD, p, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    Ok(())
}

/// Writes `path` as a tar: the top entry named after its last component, or, for a
/// path ending in `/.`, the directory's entries themselves. Symlinks inside are
/// archived as links; `path` itself is followed only with `follow`.
pub fn write_path_tar(path: &str, follow: bool, out: impl Write) -> std::io::Result<()> {
    let contents_only = path.ends_with("/.") || path == ".";
    let mut p = PathBuf::from(path);
    let md = std::fs::symlink_metadata(&p)?;
    if follow && md.file_type().is_symlink() {
        p = std::fs::canonicalize(&p)?;
    }
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, out));
    b.follow_symlinks(false);
    let name = p.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| ".".into());
    let md = std::fs::symlink_metadata(&p)?;
    if md.is_dir() {
        if contents_only {
            for ent in std::fs::read_dir(&p)? {
                let ent = ent?;
                append(&mut b, &ent.path(), Path::new(&ent.file_name()))?;
            }
        } else {
            append(&mut b, &p, Path::new(&name))?;
        }
    } else {
        append(&mut b, &p, Path::new(&name))?;
    }
    b.into_inner()?.flush()
}

fn append<W: Write>(b: &mut tar::Builder<W>, path: &Path, name: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        b.append_dir_all(name, path)
    } else {
        b.append_path_with_name(path, name)
    }
}

#[derive(Debug)]
pub enum Extract {
    NotADirectory,
    NoParent(PathBuf),
    Io(std::io::Error),
}

impl From<std::io::Error> for Extract {
    fn from(e: std::io::Error) -> Self {
        Extract::Io(e)
    }
}

/// docker's placement rules: into `dest` when it is a directory; otherwise `dest`
/// names the copy (the tar's top entry renamed), its parent must exist, and the copy
/// is staged beside it and renamed into place whole.
pub fn extract_at(input: impl Read, dest: &Path, dir_only: bool, keep_owners: bool) -> std::result::Result<(), Extract> {
    let unpack = |input: Box<dyn Read + '_>, into: &Path| -> std::io::Result<()> {
        let mut a = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, input));
        a.set_preserve_permissions(true);
        a.set_preserve_mtime(true);
        a.set_preserve_ownerships(keep_owners);
        a.set_overwrite(true);
        a.set_unpack_xattrs(false);
        for e in a.entries()? {
            e?.unpack_in(into)?;
        }
        Ok(())
    };
    if dest.is_dir() {
        return Ok(unpack(Box::new(input), dest)?);
    }
    if dir_only {
        return Err(Extract::NotADirectory);
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Extract::NoParent(parent.to_path_buf()));
    }
    let staging = parent.join(format!(".strata-cp-{}", strata_store::random_hex(6)));
    std::fs::create_dir(&staging)?;
    let res = (|| -> std::io::Result<()> {
        unpack(Box::new(input), &staging)?;
        let mut top = std::fs::read_dir(&staging)?;
        let first = top.next().ok_or_else(|| std::io::Error::other("empty archive"))??;
        if top.next().is_some() {
            return Err(std::io::Error::other("the archive has more than one top-level entry"));
        }
        std::fs::rename(first.path(), dest)
    })();
    let _ = strata_store::fsutil::remove_all(&staging);
    Ok(res?)
}
