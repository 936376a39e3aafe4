//! Path-based helpers for reading trees we own (upper dirs, lowers). The applier does
//! not use these: it only works through root-confined fds.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Statx, StatxFlags, CWD};
use rustix::io::Errno;

use super::OVERLAY_OPAQUE_XATTR;

pub(crate) fn lstatx(path: &Path) -> io::Result<Statx> {
    Ok(rustix::fs::statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)?)
}

pub(crate) fn file_type(st: &Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode as _)
}

/// overlayfs marks a deleted name with a char device 0/0.
pub(crate) fn is_whiteout(st: &Statx) -> bool {
    file_type(st) == FileType::CharacterDevice && st.stx_rdev_major == 0 && st.stx_rdev_minor == 0
}

pub(crate) fn is_mount_root(st: &Statx) -> bool {
    st.stx_attributes_mask.contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
        && st.stx_attributes.contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
}

pub(crate) fn is_opaque(path: &Path) -> io::Result<bool> {
    Ok(get_xattr(path, OVERLAY_OPAQUE_XATTR.as_bytes())?.as_deref() == Some(b"y"))
}

/// One xattr without following a final symlink; `None` when absent or when the
/// filesystem has no xattrs at all.
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(Errno::RANGE) => {
                let size = rustix::fs::lgetxattr_query(path, name)?;
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Xattr names without following a final symlink, sorted byte-wise.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(Errno::RANGE) => {
                let size = rustix::fs::llistxattr_query(path)?;
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut names: Vec<Vec<u8>> = buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()).map(<[u8]>::to_vec).collect();
    names.sort();
    Ok(names)
}

/// Directory entry names sorted byte-wise, which is the order layers are written in.
pub(crate) fn read_dir_sorted(path: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::testutil::{mknod_whiteout, scratch, set_opaque};

    #[test]
    fn recognises_whiteouts_and_opaque_dirs() {
        let tmp = scratch();
        let wh = tmp.path().join("wh");
        mknod_whiteout(&wh);
        assert!(is_whiteout(&lstatx(&wh).unwrap()));
        assert!(!is_whiteout(&lstatx(tmp.path()).unwrap()));

        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        assert!(!is_opaque(&d).unwrap());
        set_opaque(&d);
        assert!(is_opaque(&d).unwrap());
    }

    #[test]
    fn lists_xattrs_sorted_and_reads_large_values() {
        let tmp = scratch();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let big = vec![b'v'; 3000];
        rustix::fs::lsetxattr(&f, "user.b", &big, rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::lsetxattr(&f, "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        let names = list_xattrs(&f).unwrap();
        let user: Vec<_> = names.iter().filter(|n| n.starts_with(b"user.")).cloned().collect();
        assert_eq!(user, vec![b"user.a".to_vec(), b"user.b".to_vec()]);
        assert_eq!(get_xattr(&f, b"user.b").unwrap(), Some(big));
        assert_eq!(get_xattr(&f, b"user.none").unwrap(), None);
    }

    #[test]
    fn dir_listing_is_bytewise_sorted() {
        let tmp = scratch();
        for n in ["b", "a-c", "a", "B", "a.b"] {
            std::fs::write(tmp.path().join(n), b"").unwrap();
        }
        let names: Vec<_> =
            read_dir_sorted(tmp.path()).unwrap().into_iter().map(|n| n.into_string().unwrap()).collect();
        assert_eq!(names, ["B", "a", "a-c", "a.b", "b"]);
    }
}
