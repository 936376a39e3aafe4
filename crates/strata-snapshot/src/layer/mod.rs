//! Layer tars: applying them safely into a directory, writing them deterministically,
//! and listing the changes of an overlay upper dir.
//!
//! The three halves share one idea of what a layer is: the OCI/docker layer format
//! with `.wh.` whiteouts, which on disk become overlayfs whiteouts (char device 0/0)
//! and opaque directories (`trusted.overlay.opaque=y`). Volumes reuse the same code
//! for plain trees (`write_tree_tar`, `WhiteoutMode::Plain`), where `.wh.` means nothing.

mod apply;
mod changes;
mod error;
mod guard;
mod sys;
mod write;

#[cfg(test)]
mod testutil;

pub use apply::{apply_tar, ApplyOptions, ApplyStats, WhiteoutMode};
pub use changes::{changes, Change, ChangeKind};
pub use error::LayerError;
pub use write::{write_tar, write_tree_tar, WriteOptions};

/// Prefix of a whiteout entry: `dir/.wh.name` deletes `dir/name`.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// `dir/.wh..wh..opq` hides everything lower layers have under `dir`.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// AUFS bookkeeping names (`.wh..wh.plnk`, ...); never real content.
pub(crate) const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Xattrs a layer may set when applied. `trusted.*` is out above all because a
/// tar that could write `trusted.overlay.*` could forge whiteouts, opaque dirs or
/// redirects in the overlay mount; `user.overlay.*` is out for the same reason
/// when overlay runs with `userxattr`.
pub(crate) fn xattr_applies(name: &[u8]) -> bool {
    if name.starts_with(b"user.overlay.") {
        return false;
    }
    name.starts_with(b"user.")
        || name == b"security.capability"
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// Xattrs recorded in layers we write. Narrower than what we apply: SELinux labels
/// and overlay metadata belong to this host, not to the image.
pub(crate) fn xattr_exported(name: &[u8]) -> bool {
    (name.starts_with(b"user.") && !name.starts_with(b"user.overlay.")) || name == b"security.capability"
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_allowlists() {
        for ok in ["user.foo", "security.capability", "system.posix_acl_access", "system.posix_acl_default"] {
            assert!(xattr_applies(ok.as_bytes()), "{ok}");
        }
        for bad in
            ["trusted.overlay.opaque", "trusted.foo", "security.selinux", "user.overlay.opaque", "system.nfs4_acl"]
        {
            assert!(!xattr_applies(bad.as_bytes()), "{bad}");
        }
        assert!(xattr_exported(b"user.foo"));
        assert!(xattr_exported(b"security.capability"));
        for bad in ["trusted.overlay.opaque", "security.selinux", "system.posix_acl_access", "user.overlay.origin"] {
            assert!(!xattr_exported(bad.as_bytes()), "{bad}");
        }
    }
}
