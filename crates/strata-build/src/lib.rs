//! Building images from Dockerfiles with docker's classic-builder semantics.
//!
//! `parser` reads a Dockerfile into nodes (with line numbers), `instructions` checks and
//! types them, `shell` expands variables as docker's lexer does, `context` and `ignore`
//! give the files COPY may see, `copy` places them, `cache` remembers steps and file
//! hashes, and `builder` runs the steps through the engine. Output is a stream of
//! `Event`s (docker's JSON stream messages) that the CLI prints and the Engine API
//! will send as they are.

pub mod builder;
pub mod cache;
pub mod context;
pub mod copy;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use builder::{BuildOptions, Builder, Built, Event};
pub use context::Context;

use strata_store::{Classify, ErrorKind};

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse (reported before any step runs).
    #[error(transparent)]
    Parse(#[from] parser::ParseError),
    /// The context cannot be read.
    #[error("{0}")]
    Context(String),
    /// A step failed.
    #[error("{0}")]
    Build(String),
    /// A RUN exited non-zero; `code` is its exit code.
    #[error("{message}")]
    Run { code: i32, message: String },
    #[error("Build cancelled")]
    Cancelled,
    #[error(transparent)]
    Engine(#[from] strata_engine::EngineError),
    #[error(transparent)]
    Image(#[from] strata_image::ImageError),
    #[error(transparent)]
    Snapshot(#[from] strata_snapshot::SnapshotError),
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
}

impl BuildError {
    /// An error of a step with the Dockerfile line it comes from.
    pub(crate) fn at(line: usize, msg: impl Into<String>) -> BuildError {
        if line == 0 {
            BuildError::Build(msg.into())
        } else {
            BuildError::Build(format!("dockerfile parse error on line {line}: {}", msg.into()))
        }
    }

    /// Whether docker reports it as the answer to the build request (before any output
    /// was streamed) rather than in the stream.
    pub fn before_output(&self) -> bool {
        matches!(self, BuildError::Parse(_) | BuildError::Context(_))
    }

    /// The exit code docker's CLI ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Run { code, .. } => *code,
            _ => 1,
        }
    }
}

impl Classify for BuildError {
    fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Parse(_) | BuildError::Context(_) | BuildError::Build(_) => ErrorKind::Invalid,
            BuildError::Run { .. } | BuildError::Cancelled => ErrorKind::Internal,
            BuildError::Engine(e) => e.kind(),
            BuildError::Image(e) => e.kind(),
            BuildError::Snapshot(e) => e.kind(),
            BuildError::Store(e) => e.kind(),
        }
    }
}
