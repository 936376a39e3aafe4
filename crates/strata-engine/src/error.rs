use strata_image::ImageError;
use strata_snapshot::SnapshotError;
use strata_store::{Classify, ErrorKind, StoreError};

/// Errors of the engine facade. Wrapped module errors keep their kind.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("data root {path}: {msg}")]
    DataRoot { path: String, msg: String },
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Store(StoreError::Db(e))
    }
}

impl Classify for EngineError {
    fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Image(e) => e.kind(),
            EngineError::Snapshot(e) => e.kind(),
            EngineError::Store(e) => e.kind(),
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Invalid(_) => ErrorKind::Invalid,
            EngineError::DataRoot { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
