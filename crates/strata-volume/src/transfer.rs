//! Volume data as a first-class object: `export` writes a volume's content as a tar,
//! `import` fills an empty volume from one, `clone` copies a volume into a new one.
//!
//! - The tar format is the layer code's (`strata_snapshot::layer`), in its plain-tree
//!   form: entries as `docker export` names them (no `./` prefix) after one `./` entry
//!   for the volume's own top directory; owners numeric, modes, whole-second mtimes,
//!   `user.*` and `security.capability` xattrs, symlinks, hardlinks, device nodes and
//!   fifos. `.wh.` names are ordinary files here, never whiteouts.
//! - An import is extracted by the same hardened applier as image layers (every path
//!   resolved under the root fd, `..` and absolute names refused), stricter still: an
//!   entry whose parent or hardlink target passes through a symlink is refused, since a
//!   self-contained tree never needs one. It lands in a `.seed-<random>` staging
//!   directory beside `_data` and is renamed onto the empty `_data` only when complete,
//!   so a hostile tar, a full disk or a crash leaves the volume empty, never half.
//! - A volume whose `_data` is a mount (local volumes with driver options) is mounted
//!   for the operation and, like seeding, filled in place; a failed import empties it.
//! - A clone copies with seeding's copier (`copy_file_range`, owners, modes, times,
//!   xattrs, links) into a staged directory of the new volume. Whether the source may be
//!   read consistently is the caller's rule (the engine knows containers): `clone_volume`
//!   takes a check that runs once the copy is complete and before it is published.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Gid, Mode, Uid, CWD};
use strata_snapshot::layer::{self, ApplyOptions, LayerError, WhiteoutMode, WriteOptions};
use strata_store::{fsutil, Classify, ErrorKind};

use crate::driver::is_mount_point;
use crate::seed::{self, copy_tree, fill_staged, open_dir, SeedError, Staged};
use crate::service::{Volume, VolumeError, VolumeService, ANONYMOUS_LABEL};

/// Errors of moving data into, out of and between volumes.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{op} {name}: volume is not empty")]
    NotEmpty { op: &'static str, name: String },
    #[error("clone {src} to {dst}: volume {dst} already exists")]
    Exists { src: String, dst: String },
    #[error("import {name}: {source}")]
    Import { name: String, source: LayerError },
    #[error("export {name}: {source}")]
    Export { name: String, source: LayerError },
    #[error("clone {src} to {dst}: {source}")]
    Copy { src: String, dst: String, source: SeedError },
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl Classify for TransferError {
    fn kind(&self) -> ErrorKind {
        match self {
            TransferError::NotEmpty { .. } | TransferError::Exists { .. } => ErrorKind::Conflict,
            TransferError::Import { source, .. } | TransferError::Export { source, .. } => source.kind(),
            TransferError::Copy { source, .. } | TransferError::Seed(source) => source.kind(),
            TransferError::Volume(e) => e.kind(),
        }
    }
}

/// A volume's data directory, mounted through its driver for as long as this lives
/// (a no-op for volumes without driver options).
struct Mounted<'a> {
    svc: &'a VolumeService,
    name: String,
    path: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(svc: &'a VolumeService, name: &str) -> Result<Mounted<'a>, VolumeError> {
        let path = svc.mount(name)?;
        Ok(Mounted { svc, name: name.to_string(), path })
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.svc.unmount(&self.name) {
            tracing::warn!(volume = %self.name, error = %e, "cannot release a volume mounted for a data transfer");
        }
    }
}

/// Either the transfer failed or the caller's consistency check did.
enum Fail<E> {
    Transfer(TransferError),
    Check(E),
}

impl<E> From<SeedError> for Fail<E> {
    fn from(e: SeedError) -> Self {
        Fail::Transfer(e.into())
    }
}

impl<E> From<TransferError> for Fail<E> {
    fn from(e: TransferError) -> Self {
        Fail::Transfer(e)
    }
}

impl VolumeService {
    /// Writes the volume's content to `out` as a tar (see the module comment).
    pub fn export(&self, name: &str, out: impl Write) -> Result<(), TransferError> {
        let m = Mounted::new(self, name)?;
        layer::write_tree_tar(&m.path, out, &WriteOptions::default())
            .map_err(|source| TransferError::Export { name: name.to_string(), source })
    }

    /// Fills the empty volume `name` from a tar, creating it (local driver, no options)
    /// if it does not exist. On any error the volume is left empty, and one this call
    /// created is removed again.
    pub fn import(&self, name: &str, input: impl Read) -> Result<Volume, TransferError> {
        let created = match self.get(name) {
            Ok(_) => false,
            Err(VolumeError::NotFound(_)) => {
                self.create(Some(name), None, BTreeMap::new(), BTreeMap::new())?;
                true
            }
            Err(e) => return Err(e.into()),
        };
        let res = self.import_into(name, input);
        if let Err(e) = &res {
            if created {
                self.discard(name, e);
            }
        }
        res?;
        Ok(self.get(name)?)
    }

    fn import_into(&self, name: &str, input: impl Read) -> Result<(), TransferError> {
        let m = Mounted::new(self, name)?;
        let data = m.path.as_path();
        let not_empty = || TransferError::NotEmpty { op: "import", name: name.to_string() };
        // Checked before reading any input: a refusal must not consume a piped stream.
        if !seed::is_empty(data)? {
            return Err(not_empty());
        }
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Plain };
        let tar_err = |source| TransferError::Import { name: name.to_string(), source };
        if is_mount_point(data) {
            // A mounted filesystem cannot be renamed onto: filled in place, as seeding does.
            let res = layer::apply_tar(input, data, &opts).map(drop).map_err(tar_err);
            if res.is_err() {
                empty_dir(data);
            }
            return res;
        }
        // The staging directory starts as the empty volume is (0755 root for a new one),
        // so a tar without a `./` entry gives the volume's top directory no other owner.
        let md = fs::metadata(data).map_err(|e| SeedError::Io { op: "stat", path: data.to_path_buf(), source: e })?;
        let staged = fill_staged(data, |staging, fd| {
            rfs::fchown(fd, Some(Uid::from_raw(md.uid())), Some(Gid::from_raw(md.gid())))
                .and_then(|()| rfs::fchmod(fd, Mode::from_raw_mode(md.mode() & 0o7777)))
                .map_err(|e| SeedError::Io { op: "set owner of", path: staging.to_path_buf(), source: e.into() })?;
            layer::apply_tar(input, staging, &opts).map(drop).map_err(tar_err)
        })?;
        match staged {
            Staged::Published => Ok(()),
            Staged::NotEmpty => Err(not_empty()),
        }
    }

    /// Copies `src` into a new local volume `dst` with `src`'s labels (but never the
    /// anonymous-volume label: the copy is something a user asked for by name).
    /// `check` runs after the copy is complete and before it is published; its error
    /// discards the copy and `dst`.
    pub fn clone_volume<E: From<TransferError>>(
        &self,
        src: &str,
        dst: &str,
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<Volume, E> {
        let s = self.get(src).map_err(TransferError::from)?;
        match self.get(dst) {
            Ok(_) => return Err(TransferError::Exists { src: src.to_string(), dst: dst.to_string() }.into()),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(TransferError::from(e).into()),
        }
        let mut labels = s.labels.clone();
        labels.remove(ANONYMOUS_LABEL);
        self.create(Some(dst), Some("local"), labels, BTreeMap::new()).map_err(TransferError::from)?;
        match self.copy_into(src, dst, check) {
            Ok(()) => Ok(self.get(dst).map_err(TransferError::from)?),
            Err(fail) => {
                self.discard(dst, &"clone failed");
                Err(match fail {
                    Fail::Transfer(e) => e.into(),
                    Fail::Check(e) => e,
                })
            }
        }
    }

    fn copy_into<E>(&self, src: &str, dst: &str, check: impl FnOnce() -> Result<(), E>) -> Result<(), Fail<E>> {
        let sm = Mounted::new(self, src).map_err(TransferError::from)?;
        let from = open_dir(CWD, sm.path.as_os_str().as_bytes()).map_err(|e| SeedError::Io {
            op: "open",
            path: sm.path.clone(),
            source: e.into(),
        })?;
        let dm = Mounted::new(self, dst).map_err(TransferError::from)?;
        let copy_err = |source| TransferError::Copy { src: src.to_string(), dst: dst.to_string(), source };
        let staged = fill_staged(&dm.path, |_, to| {
            copy_tree(&from, to, src).map_err(copy_err)?;
            check().map_err(Fail::Check)
        })?;
        match staged {
            Staged::Published => Ok(()),
            Staged::NotEmpty => Err(TransferError::NotEmpty { op: "clone", name: dst.to_string() }.into()),
        }
    }

    /// Removes a volume this module created for an operation that failed. A container
    /// may have taken it meanwhile; then it stays (empty) and is theirs.
    fn discard(&self, name: &str, why: &dyn std::fmt::Display) {
        if let Err(e) = self.remove(name, true) {
            tracing::warn!(volume = name, error = %e, cause = %why, "cannot remove a volume created by a failed transfer");
        }
    }
}

/// Deletes everything inside `dir` (never crossing into another mount), after a failed
/// in-place import.
fn empty_dir(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for ent in rd.flatten() {
        if let Err(e) = fsutil::remove_all(&ent.path()) {
            tracing::warn!(path = %ent.path().display(), error = %e, "cannot empty a volume after a failed import");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::root;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn service(dir: &Path) -> VolumeService {
        VolumeService::new(root(dir)).unwrap()
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn data(s: &VolumeService, name: &str) -> PathBuf {
        s.get(name).unwrap().mountpoint
    }

    /// Entries of the volume's directory other than `_data` (staging leftovers).
    fn leftovers(s: &VolumeService, name: &str) -> Vec<String> {
        let d = data(s, name);
        fs::read_dir(d.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "_data")
            .collect()
    }

    fn fill(d: &Path) -> bool {
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/file"), b"hello").unwrap();
        std::os::unix::fs::lchown(d.join("sub/file"), Some(1001), Some(1002)).unwrap();
        fs::set_permissions(d.join("sub/file"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::hard_link(d.join("sub/file"), d.join("link")).unwrap();
        symlink("/etc/passwd", d.join("abs")).unwrap();
        symlink("sub/file", d.join("rel")).unwrap();
        fs::write(d.join(".wh.not-a-whiteout"), b"plain").unwrap();
        rfs::mknodat(CWD, d.join("fifo"), rfs::FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
        std::os::unix::fs::lchown(d, Some(70), Some(70)).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o711)).unwrap();
        rfs::setxattr(d.join("sub/file"), "user.k", b"v", rfs::XattrFlags::empty()).is_ok()
    }

    fn check_filled(d: &Path, xattrs: bool) {
        let f = fs::symlink_metadata(d.join("sub/file")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1001, 1002, 0o4750));
        assert_eq!(fs::read(d.join("sub/file")).unwrap(), b"hello");
        assert_eq!(fs::symlink_metadata(d.join("link")).unwrap().ino(), f.ino(), "hardlink kept");
        assert_eq!(fs::read_link(d.join("abs")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(fs::read_link(d.join("rel")).unwrap(), Path::new("sub/file"));
        assert_eq!(fs::read(d.join(".wh.not-a-whiteout")).unwrap(), b"plain");
        assert!(fs::symlink_metadata(d.join("fifo")).unwrap().mode() & 0o170000 == 0o010000);
        let top = fs::metadata(d).unwrap();
        assert_eq!((top.uid(), top.gid(), top.mode() & 0o7777), (70, 70, 0o711), "the top directory's metadata");
        if xattrs {
            let mut buf = [0u8; 16];
            let n = rfs::getxattr(d.join("sub/file"), "user.k", &mut buf[..]).unwrap();
            assert_eq!(&buf[..n], b"v");
        }
    }

    #[test]
    fn export_then_import_round_trips_and_creates_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        s.create(Some("src"), None, map(&[]), map(&[])).unwrap();
        let xattrs = fill(&data(&s, "src"));
        let mut tar = Vec::new();
        s.export("src", &mut tar).unwrap();

        let v = s.import("fresh", &tar[..]).unwrap();
        assert_eq!((v.name.as_str(), v.driver.as_str()), ("fresh", "local"));
        check_filled(&data(&s, "fresh"), xattrs);
        assert!(leftovers(&s, "fresh").is_empty());

        let e = s.import("fresh", &tar[..]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.to_string(), "import fresh: volume is not empty");
    }

    /// A tar whose headers are written by hand: `tar::Builder` refuses hostile names.
    fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            let body: &[u8] = if *kind == tar::EntryType::Regular { b"pwned" } else { b"" };
            h.set_size(body.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn hostile_tars_leave_the_volume_empty() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a str)];
        let cases: &[(&str, Entries, &str)] = &[
            ("dotdot", &[("ok", Regular, ""), ("../../escape", Regular, "")], "path escapes the root"),
            ("absolute", &[("/tmp/escape", Regular, "")], "absolute path"),
            ("through-symlink", &[("evil", Symlink, "/tmp"), ("evil/escape", Regular, "")], "goes through a symlink"),
            (
                "up-symlink",
                &[("d/", Directory, ""), ("d/up", Symlink, "../.."), ("d/up/x", Regular, "")],
                "goes through a symlink",
            ),
            ("hardlink-out", &[("l", Link, "../../../etc/passwd")], "path escapes the root"),
            ("hardlink-abs", &[("l", Link, "/etc/passwd")], "absolute path"),
            ("hardlink-via-symlink", &[("e", Symlink, "/etc"), ("l", Link, "e/passwd")], "goes through a symlink"),
        ];
        for (name, entries, reason) in cases {
            s.create(Some(name), None, map(&[]), map(&[])).unwrap();
            let e = s.import(name, &raw_tar(entries)[..]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{name}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("import {name}: ")) && msg.contains(reason), "{name}: {msg}");
            assert_eq!(fs::read_dir(data(&s, name)).unwrap().count(), 0, "{name}: volume left empty");
            assert!(leftovers(&s, name).is_empty(), "{name}: {:?}", leftovers(&s, name));
        }
        assert!(!Path::new("/tmp/escape").exists());
        // A volume the failed import would have created is not left behind.
        let e = s.import("never", &raw_tar(cases[0].1)[..]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(matches!(s.get("never"), Err(VolumeError::NotFound(_))));
        // Garbage is refused the same way.
        s.create(Some("garbage"), None, map(&[]), map(&[])).unwrap();
        let e = s.import("garbage", &b"not a tar at all, not even close"[..]).unwrap_err();
        assert_eq!(fs::read_dir(data(&s, "garbage")).unwrap().count(), 0, "{e}");
    }

    #[test]
    fn clone_copies_content_and_labels_and_honours_the_check() {
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        s.create(Some("src"), None, map(&[("team", "db"), (ANONYMOUS_LABEL, "")]), map(&[])).unwrap();
        let xattrs = fill(&data(&s, "src"));

        let v = s.clone_volume::<TransferError>("src", "copy", || Ok(())).unwrap();
        assert_eq!(v.labels, map(&[("team", "db")]), "labels copied, the anonymous one not");
        check_filled(&data(&s, "copy"), xattrs);
        assert!(leftovers(&s, "copy").is_empty());

        let e = s.clone_volume::<TransferError>("src", "copy", || Ok(())).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::Conflict, "clone src to copy: volume copy already exists")
        );
        let e = s.clone_volume::<TransferError>("nosuch", "other", || Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);

        // A failing check discards the copy and the new volume.
        #[derive(Debug)]
        struct Busy;
        impl From<TransferError> for Busy {
            fn from(e: TransferError) -> Busy {
                panic!("unexpected {e}")
            }
        }
        assert!(matches!(s.clone_volume("src", "late", || Err(Busy)), Err(Busy)));
        assert!(matches!(s.get("late"), Err(VolumeError::NotFound(_))));
        assert!(!tmp.path().join("volumes/late").exists());
    }

    #[test]
    fn a_mounted_volume_is_filled_in_place_and_emptied_on_failure() {
        use crate::testutil::{in_private_mount_ns, UnmountGuard};
        let tmp = tempfile::tempdir().unwrap();
        let s = service(tmp.path());
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), b"x").unwrap();
        let mut tar = Vec::new();
        layer::write_tree_tar(&src, &mut tar, &WriteOptions::default()).unwrap();
        s.create(Some("tmpvol"), None, map(&[]), map(&[("type", "tmpfs"), ("device", "tmpfs")])).unwrap();
        let ran = in_private_mount_ns(|| {
            // Held by a "container", so the data outlives the import's own mount.
            let d = s.mount("tmpvol").unwrap();
            let _guard = UnmountGuard(d.clone());
            let bad = raw_tar(&[("a", tar::EntryType::Regular, ""), ("../b", tar::EntryType::Regular, "")]);
            s.import("tmpvol", &bad[..]).unwrap_err();
            assert!(is_mount_point(&d));
            assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "emptied again");
            s.import("tmpvol", &tar[..]).unwrap();
            assert_eq!(fs::read(d.join("f")).unwrap(), b"x");
            let mut out = Vec::new();
            s.export("tmpvol", &mut out).unwrap();
            assert_eq!(out, tar);
        });
        assert!(ran.is_some());
    }
}
