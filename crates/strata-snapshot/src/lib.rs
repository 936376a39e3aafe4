//! Snapshots of layer chains, and the code that turns layer tars into directories and back.

mod error;
pub mod layer;
pub mod mount;
mod snapshotter;

pub use error::SnapshotError;
pub use mount::{mount_all, LinuxSyscall, Mount, Syscall};
pub use layer::{Change, ChangeKind};
pub use snapshotter::{dir_size, Driver, Info, Kind, Snapshotter};

/// Whether this kernel can mount overlayfs (the module may load on demand).
pub fn overlay_supported() -> bool {
    std::fs::read_to_string("/proc/filesystems").map(|s| s.contains("\toverlay\n")).unwrap_or(false)
        || std::path::Path::new("/sys/module/overlay").exists()
}
