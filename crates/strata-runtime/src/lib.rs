//! Containers as processes: the OCI bundle (`spec`), the executors that start it
//! (`executor`: built-in libcontainer or an external OCI runtime), and the per-container
//! supervisor (`supervisor`).

pub mod executor;
pub mod spec;
