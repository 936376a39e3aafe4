//! What a container is made of, as the runtime needs it. Written by the engine to
//! `containers/<id>/spec.json`; read by the supervisor. (Being written.)

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The process to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    pub no_new_privileges: bool,
}

/// Limits (docker's --memory, --cpus, --pids-limit, --shm-size).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    pub memory: Option<i64>,
    /// CPU quota in microseconds per 100ms period (--cpus 1.5 → 150000).
    pub cpu_quota: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Size of /dev/shm in bytes (docker's default 64 MiB).
    pub shm_size: i64,
}

/// A bind mount into the container (init files, later volumes and binds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Everything needed to create the container's init process from an already-mounted
/// root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerSpec {
    pub id: String,
    pub hostname: String,
    pub process: ProcessSpec,
    pub readonly_rootfs: bool,
    pub binds: Vec<BindMount>,
    pub resources: Resources,
    /// cgroup path relative to each controller's root, e.g. `/strata/<id>`.
    pub cgroup_path: String,
    /// Run `strata` itself as a minimal init (docker's --init) in front of the process.
    pub init: Option<PathBuf>,
}
