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
    #[error(transparent)]
    Network(#[from] strata_network::NetworkError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("data root {path}: {msg}")]
    DataRoot { path: String, msg: String },
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// The request changed nothing (docker's 304: already started, already stopped).
    #[error("{0}")]
    NotModified(String),
    /// The container could not be started; `code` is docker's exit code for it.
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: std::io::Error },
}

impl EngineError {
    pub fn io(op: &'static str, path: impl AsRef<std::path::Path>, source: std::io::Error) -> EngineError {
        EngineError::Io { op, path: path.as_ref().display().to_string(), source }
    }
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
            EngineError::Network(e) => e.kind(),
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Invalid(_) => ErrorKind::Invalid,
            EngineError::DataRoot { .. } | EngineError::Io { .. } => ErrorKind::Internal,
            EngineError::NoSuchContainer(_) => ErrorKind::NotFound,
            EngineError::NotModified(_) => ErrorKind::Conflict,
            EngineError::Start { code: 127, .. } => ErrorKind::CommandNotFound,
            EngineError::Start { code: 126, .. } => ErrorKind::CannotInvoke,
            EngineError::Start { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
