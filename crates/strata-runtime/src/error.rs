//! The runtime's errors: bundle generation and executor calls.

use std::io;
use std::path::PathBuf;

use strata_store::{Classify, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--runtime` names nothing we can run (docker's wording).
    #[error("unknown or invalid runtime name: {0}")]
    UnknownRuntime(String),

    /// The container spec cannot be turned into an OCI bundle.
    #[error("invalid spec for container {id}: {reason}")]
    InvalidSpec { id: String, reason: String },

    /// A file-system or system call failed on a path we own.
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },

    /// The runtime refused or failed an operation on a container.
    #[error("container {id}: {op} failed: {message}")]
    Runtime { id: String, op: &'static str, message: String },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> RuntimeError {
        let path = path.into();
        move |source| RuntimeError::Io { op, path, source }
    }

    pub(crate) fn runtime(id: &str, op: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Runtime { id: id.to_string(), op, message: message.into() }
    }
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::UnknownRuntime(_) | RuntimeError::InvalidSpec { .. } => ErrorKind::Invalid,
            RuntimeError::Io { .. } | RuntimeError::Runtime { .. } => ErrorKind::Internal,
        }
    }
}
