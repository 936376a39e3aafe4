//! Containers as processes: the OCI bundle (`spec`), the executors that start it
//! (`executor`: built-in libcontainer or an external OCI runtime), and the per-container
//! supervisor (`supervisor`).

mod error;
pub mod executor;
pub mod protocol;
pub mod spec;
pub mod supervisor;

pub use error::RuntimeError;
pub use executor::{executor_for, Builtin, Executor, External, Io, Started};
pub use spec::{to_oci, write_bundle, ContainerSpec};
