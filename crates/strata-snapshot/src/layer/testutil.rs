//! Hand-built tars for tests. Names are copied into the header bytes directly, so
//! hostile names that `tar::Builder` would refuse can be expressed.

use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::write::pax_record;

pub(crate) const MTIME: u64 = 1_600_000_000;

pub(crate) struct TarBuf {
    bytes: Vec<u8>,
}

impl TarBuf {
    pub(crate) fn new() -> TarBuf {
        TarBuf { bytes: Vec::new() }
    }

    /// A ustar header with `name` copied in as is (up to 100 bytes).
    pub(crate) fn header(name: &[u8], kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_ustar();
        let field = &mut h.as_old_mut().name;
        assert!(name.len() <= field.len(), "use pax() for long names in tests");
        field[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    /// Appends `header` and `data` padded to a block; the header's size field is not
    /// checked against `data`, so lying headers can be written.
    pub(crate) fn push(&mut self, mut header: Header, data: &[u8]) {
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub(crate) fn raw_member(&mut self, name: &[u8], kind: EntryType, size: u64, data: &[u8]) {
        self.push(Self::header(name, kind, size), data);
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8], mode: u32) {
        let mut h = Self::header(name.as_bytes(), EntryType::Regular, data.len() as u64);
        h.set_mode(mode);
        self.push(h, data);
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) {
        let mut h = Self::header(name.as_bytes(), EntryType::Directory, 0);
        h.set_mode(mode);
        self.push(h, b"");
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(name.as_bytes(), EntryType::Symlink, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_mode(0o777);
        self.push(h, b"");
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(name.as_bytes(), EntryType::Link, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, b"");
    }

    pub(crate) fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) {
        let mut h = Self::header(name.as_bytes(), kind, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, b"");
    }

    /// A local PAX header applying to the next member.
    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend(pax_record(k.as_bytes(), v));
        }
        self.push(Self::header(b"PaxHeaders.0/x", EntryType::XHeader, data.len() as u64), &data);
    }

    /// The stream without the end-of-archive blocks.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

/// A scratch directory on the root filesystem (ext4 here), which takes `trusted.*`
/// xattrs and device nodes.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("strata-layer-test").tempdir_in("/var/tmp").unwrap()
}

pub(crate) fn mkdir(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub(crate) fn mknod_whiteout(path: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
        .unwrap();
}

pub(crate) fn set_opaque(path: &Path) {
    rustix::fs::lsetxattr(path, "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
}

pub(crate) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("getxattr {name} on {}: {e}", path.display()),
    }
}

pub(crate) fn lstat(path: &Path) -> rustix::fs::Stat {
    rustix::fs::lstat(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

pub(crate) use strata_store::testutil::in_private_mount_ns;

/// Runs `f` where `/etc` is an empty decoy directory (passed to `f`), so a test of an
/// `-> /etc` symlink cannot reach the host's `/etc` even if the code under test is
/// broken.
pub(crate) fn with_decoy_etc<T: Send>(f: impl FnOnce(&Path) -> T + Send) -> Option<T> {
    let decoy = scratch();
    let decoy = decoy.path();
    in_private_mount_ns(|| {
        rustix::mount::mount_bind(decoy, "/etc").ok()?;
        Some(f(decoy))
    })
    .flatten()
}
