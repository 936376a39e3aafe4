//! Volumes: data that lives outside any container's layers.
//!
//! - `driver`: the `VolumeDriver` trait (the lifecycle every driver follows) and the
//!   `local` driver, which keeps volumes under `<data-root>/volumes/<name>/_data`.
//! - `service`: `VolumeService`, docker's volume service over the drivers: names,
//!   anonymous volumes, labels, container references, list filters, rm and prune rules.
//! - `seed`: docker's copy-up of an image directory into an empty volume.
//! - `transfer`: `export`, `import` and `clone` of a volume's data (strata's own).
//!
//! All tables belong to the `volumes` schema component; both the driver and the service
//! migrate it, whichever opens first.

mod driver;
mod seed;
mod service;
mod transfer;

pub use driver::{validate_name, DriverError, DriverVolume, LocalDriver, VolumeDriver};
pub use seed::{open_subpath, seed, seed_subpath, SeedError, Seeded};
pub use service::{LabelFilter, ListFilters, PruneReport, Volume, VolumeError, VolumeService, ANONYMOUS_LABEL};
pub use transfer::TransferError;

/// The `volumes` component's schema steps.
///
/// - `volumes`: the service's record of every volume (driver, labels).
/// - `volume_refs`: which containers use a volume; a row per (volume, container).
/// - `local_volumes`: the local driver's options and its active-mount count, kept here
///   (not in memory as docker does) so a mount made by one strata process is released
///   by whichever process drops the last use.
pub(crate) const MIGRATIONS: &[&str] = &["CREATE TABLE volumes(
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        labels TEXT NOT NULL
    );
    CREATE TABLE volume_refs(
        volume TEXT NOT NULL,
        container TEXT NOT NULL,
        PRIMARY KEY(volume, container)
    );
    CREATE TABLE local_volumes(
        name TEXT PRIMARY KEY,
        options TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0
    );"];

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;
    use std::sync::Arc;

    use strata_store::DataRoot;

    pub fn root(dir: &Path) -> Arc<DataRoot> {
        let (root, sweep) = DataRoot::open(dir).expect("open data root");
        root.finish_sweep(sweep).expect("finish sweep");
        Arc::new(root)
    }

    pub use strata_store::testutil::in_private_mount_ns;

    /// Detaches whatever is mounted at the path when dropped, test failure or not.
    pub struct UnmountGuard(pub std::path::PathBuf);

    impl Drop for UnmountGuard {
        fn drop(&mut self) {
            while crate::driver::is_mount_point(&self.0) {
                if rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH).is_err() {
                    break;
                }
            }
        }
    }
}
