use strata_snapshot::{layer::LayerError, SnapshotError};
use strata_store::{Classify, ErrorKind, StoreError};

use crate::changes::ChangeError;
use crate::reference::ReferenceError;

/// Errors of the image store, import, load and save.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("invalid image archive: {0}")]
    Archive(String),
    #[error("invalid image config {digest}: {msg}")]
    Config { digest: String, msg: String },
    #[error("error processing tar file: {0}")]
    Layer(#[from] LayerError),
    #[error("layer {expected}: content has diff id {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: std::io::Error },
}

impl From<rusqlite::Error> for ImageError {
    fn from(e: rusqlite::Error) -> Self {
        ImageError::Store(StoreError::Db(e))
    }
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.to_string();
        move |source| ImageError::Io { op, path, source }
    }
}

impl Classify for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NoSuchImage(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::Reference(_)
            | ImageError::Change(_)
            | ImageError::Archive(_)
            | ImageError::Config { .. }
            | ImageError::DiffIdMismatch { .. } => ErrorKind::Invalid,
            ImageError::Layer(e) => e.kind(),
            ImageError::Snapshot(e) => e.kind(),
            ImageError::Store(e) => e.kind(),
            ImageError::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
