#![recursion_limit = "256"]
//! The engine: the one facade both front ends (the CLI and, later, the Engine API) call.
//! It opens the data root, sweeps what crashed processes left, and carries out
//! user-level operations with docker's semantics on top of the stores.

mod check;
pub mod containers;
mod error;
mod images;
mod mounts;
mod networks;
pub mod usage;
mod userdb;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::OptionalExtension;
use strata_image::ImageStore;
use strata_snapshot::{Driver, Snapshotter};
use strata_store::DataRoot;

pub use check::{CheckReport, Problem};
pub use error::{EngineError, Result};
pub use containers::lifecycle::{read_event, send_stdin, AttachSpec};
pub use containers::{Container, CreateOptions};
pub use images::{HistoryRow, PruneReport, RemoveItem};
pub use volumes::VolumeDataError;
pub use usage::{ContainerUsage, DiskUsage, ImageUsage, UsageOptions, VolumeUsage};

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/strata";

const MIGRATIONS: &[&str] = &["CREATE TABLE engine_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE containers(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        created TEXT NOT NULL,
        running INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX containers_image ON containers(image_id);", containers::MIGRATION, containers::MIGRATION_VOLUMES, containers::MIGRATION_LEASE];

pub struct EngineOptions {
    pub data_root: PathBuf,
    /// `overlay2` or `vfs`; only honoured when the data root is new.
    pub storage_driver: Option<String>,
}

pub struct Engine {
    root: Arc<DataRoot>,
    images: ImageStore,
    volumes: strata_volume::VolumeService,
    networks: strata_network::Networking,
}

impl Engine {
    pub fn open(opts: &EngineOptions) -> Result<Engine> {
        let (root, sweep) = DataRoot::open(&opts.data_root)?;
        let root = Arc::new(root);
        root.db().migrate(&root.db_path(), "engine", MIGRATIONS)?;
        let driver = choose_driver(&root, opts.storage_driver.as_deref())?;
        let snaps = Arc::new(Snapshotter::open(root.clone(), driver)?);
        let crashed = !sweep.is_empty();
        let images = ImageStore::open(root.clone(), snaps.clone())?;
        let volumes = strata_volume::VolumeService::new(root.clone()).map_err(|e| EngineError::DataRoot {
            path: root.path().display().to_string(),
            msg: e.to_string(),
        })?;
        let run_dir = PathBuf::from("/run/strata").join(root_tag(root.path()));
        let networks = strata_network::Networking::open(root.clone(), run_dir)?;
        let engine = Engine { root, images, volumes, networks };
        if crashed {
            // Containers first: removing one releases the snapshots and volumes it held.
            engine.sweep_containers(&sweep)?;
            snaps.sweep(&sweep)?;
        }
        engine.root.finish_sweep(sweep)?;
        if crashed {
            engine.volumes.sweep();
        }
        Ok(engine)
    }

    pub fn data_root(&self) -> &Path {
        self.root.path()
    }

    pub fn store(&self) -> &DataRoot {
        &self.root
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn volumes(&self) -> &strata_volume::VolumeService {
        &self.volumes
    }

    pub fn networks(&self) -> &strata_network::Networking {
        &self.networks
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        self.images.snapshotter()
    }
}

/// A short hash naming a data root in runtime paths and supervisor socket names.
fn root_tag(path: &Path) -> String {
    strata_store::Digest::sha256_of(path.to_string_lossy().as_bytes()).hex()[..12].to_string()
}

/// The driver is fixed when a data root is created: layers written by one cannot be read
/// by the other.
fn choose_driver(root: &DataRoot, wanted: Option<&str>) -> Result<Driver> {
    let stored: Option<String> = root.db().read(|c| {
        c.query_row("SELECT value FROM engine_meta WHERE key='storage_driver'", [], |r| r.get(0)).optional()
    })?;
    let parse = |s: &str| match s {
        "overlay2" | "overlay" => Ok(Driver::Overlay),
        "vfs" => Ok(Driver::Copy),
        other => Err(EngineError::Invalid(format!("unknown storage driver {other:?} (overlay2 or vfs)"))),
    };
    if let Some(s) = stored {
        let d = parse(&s)?;
        if let Some(w) = wanted {
            if parse(w)? != d {
                return Err(EngineError::DataRoot {
                    path: root.path().display().to_string(),
                    msg: format!("was created with the {s} storage driver, not {w}"),
                });
            }
        }
        return Ok(d);
    }
    let d = match wanted {
        Some(w) => parse(w)?,
        None if strata_snapshot::overlay_supported() => Driver::Overlay,
        None => Driver::Copy,
    };
    root.db().write(|tx| {
        tx.execute("INSERT OR IGNORE INTO engine_meta(key, value) VALUES('storage_driver', ?1)", [d.name()])
    })?;
    // Another process may have won the race: read back what is recorded.
    let s: String = root.db().read(|c| c.query_row("SELECT value FROM engine_meta WHERE key='storage_driver'", [], |r| r.get(0)))?;
    parse(&s)
}
