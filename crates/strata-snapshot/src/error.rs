use std::path::PathBuf;

use strata_store::{Classify, ErrorKind, StoreError};

use crate::layer::LayerError;

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {0} not found")]
    NotFound(String),
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    #[error("snapshot {key} is {kind}, not {want}")]
    WrongKind { key: String, kind: String, want: &'static str },
    #[error("snapshot {0} has dependent snapshots")]
    HasChildren(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("{0} is not supported by the {1} snapshotter")]
    Unsupported(&'static str, &'static str),
}

impl From<rusqlite::Error> for SnapshotError {
    fn from(e: rusqlite::Error) -> Self {
        SnapshotError::Store(StoreError::Db(e))
    }
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SnapshotError {
        let path = path.into();
        move |source| SnapshotError::Io { op, path, source }
    }
}

impl Classify for SnapshotError {
    fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::NotFound(_) => ErrorKind::NotFound,
            SnapshotError::AlreadyExists(_) | SnapshotError::HasChildren(_) => ErrorKind::Conflict,
            SnapshotError::WrongKind { .. } | SnapshotError::Unsupported(..) => ErrorKind::Invalid,
            SnapshotError::Store(e) => e.kind(),
            SnapshotError::Layer(e) => e.kind(),
            SnapshotError::Io { .. } => ErrorKind::Internal,
        }
    }
}
