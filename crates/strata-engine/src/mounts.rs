//! `image mount` / `image unmount` (podman's commands): a read-only view of an image at
//! `<data-root>/mounts/<image id>`, for inspection and for the mount benchmark.

use std::path::PathBuf;

use strata_image::Image;
use strata_snapshot::{mount_all, LinuxSyscall, SnapshotError, Syscall};

use crate::{Engine, EngineError, Result};

impl Engine {
    fn mount_dir(&self, img: &Image) -> PathBuf {
        self.root.path().join("mounts").join(img.id.hex())
    }

    /// Mounts a read-only view of `img` and returns where. Mounting twice is a no-op.
    pub fn mount_image(&self, img: &Image) -> Result<PathBuf> {
        let top = img.top_layer.as_ref().ok_or_else(|| EngineError::Invalid(format!("image {} has no layers to mount", img.id)))?;
        let key = format!("mount-{}", img.id.hex());
        let target = self.mount_dir(img);
        let mounts = match self.snapshotter().view(&key, &top.to_string(), None) {
            Ok(m) => m,
            Err(SnapshotError::AlreadyExists(_)) => return Ok(target),
            Err(e) => return Err(e.into()),
        };
        let res = std::fs::create_dir_all(&target)
            .and_then(|_| mount_all(&LinuxSyscall, &mounts, &target))
            .map_err(|e| EngineError::Invalid(format!("mount {}: {e}", target.display())));
        if let Err(e) = res {
            let _ = self.snapshotter().remove(&key);
            return Err(e);
        }
        Ok(target)
    }

    pub fn unmount_image(&self, img: &Image) -> Result<()> {
        let key = format!("mount-{}", img.id.hex());
        let target = self.mount_dir(img);
        self.snapshotter().stat(&key)?;
        match LinuxSyscall.unmount(&target, false) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // not mounted any more
            Err(e) => return Err(EngineError::Invalid(format!("unmount {}: {e}", target.display()))),
        }
        let _ = std::fs::remove_dir(&target);
        self.snapshotter().remove(&key)?;
        Ok(())
    }
}
