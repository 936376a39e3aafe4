use std::path::PathBuf;

use crate::{Classify, Digest, ErrorKind};

/// Errors of the data root, the database and the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("data root {path} was written by a newer strata (schema {component} v{found}, this build knows v{known})")]
    SchemaTooNew { path: PathBuf, component: String, found: i64, known: i64 },
}

impl StoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::BlobNotFound(_) => ErrorKind::NotFound,
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => ErrorKind::Invalid,
            _ => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
