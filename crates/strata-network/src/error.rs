use strata_store::{Classify, ErrorKind, StoreError};

/// Errors of networks, endpoints and their plumbing, worded as docker's where a user
/// sees them.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("plugin \"{0}\" not found")]
    PluginNotFound(String),
    #[error("network with name {0} already exists")]
    NameExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Pool overlaps with other one on this address space")]
    PoolOverlap,
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoPool,
    #[error("no available IPv4 addresses on this network's address pools: {network} ({id})")]
    NoAddress { network: String, id: String },
    #[error("Address already in use")]
    AddressInUse,
    /// A kernel call failed: what was being done, and to what.
    #[error("{op} {what}: {source}")]
    Os { op: &'static str, what: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NetworkError {
    pub fn os(op: &'static str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Os { op, what, source }
    }
}

impl From<rusqlite::Error> for NetworkError {
    fn from(e: rusqlite::Error) -> Self {
        NetworkError::Store(StoreError::Db(e))
    }
}

impl From<rustix::io::Errno> for NetworkError {
    fn from(e: rustix::io::Errno) -> Self {
        NetworkError::Os { op: "syscall", what: String::new(), source: e.into() }
    }
}

impl Classify for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) | NetworkError::PluginNotFound(_) => ErrorKind::NotFound,
            NetworkError::NameExists(_) | NetworkError::Conflict(_) | NetworkError::AddressInUse => ErrorKind::Conflict,
            NetworkError::Invalid(_) | NetworkError::PoolOverlap => ErrorKind::Invalid,
            NetworkError::NoPool | NetworkError::NoAddress { .. } | NetworkError::Os { .. } => ErrorKind::Internal,
            NetworkError::Store(e) => e.kind(),
        }
    }
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
