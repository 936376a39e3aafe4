//! The one classification every strata error maps to. Front ends turn a kind into an
//! exit code (CLI) or an HTTP status (API) here and nowhere else.

/// What kind of failure an error is, independent of which module raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (image, container, volume, blob).
    NotFound,
    /// The operation collides with the current state (in use, name taken).
    Conflict,
    /// The request itself is malformed (bad reference, bad digest, bad tar).
    Invalid,
    /// A command inside a container could not be invoked (permission, not executable).
    CannotInvoke,
    /// A command inside a container was not found.
    CommandNotFound,
    /// The request was fine but the engine failed (I/O, database, kernel).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the Engine API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Invalid => 400,
            ErrorKind::CannotInvoke | ErrorKind::CommandNotFound | ErrorKind::Internal => 500,
        }
    }

    /// The exit code of `strata run`/`create`, as docker's (125 engine error, 126 cannot
    /// invoke, 127 not found). Other commands exit 1 on any error, as the docker CLI does.
    pub fn run_exit_code(self) -> i32 {
        match self {
            ErrorKind::CannotInvoke => 126,
            ErrorKind::CommandNotFound => 127,
            _ => 125,
        }
    }
}

/// Implemented by every module's error enum.
pub trait Classify {
    fn kind(&self) -> ErrorKind;
}
