//! Executors: the one trait behind which a container's init process is created,
//! started, signalled and deleted, with two backends:
//!
//! * [`Builtin`]: youki's libcontainer, linked in. Its `build()` clones the container's
//!   processes from the calling process, so it must be called from a single-threaded
//!   process (the per-container supervisor), never from the daemon.
//! * [`External`]: any runc-compatible CLI (runc, crun, youki), driven as containerd's
//!   shim drives runc: `create` then `start`, with `--root` for its state.
//!
//! Both leave the container's init as a child of the caller or reparented to it (the
//! caller is a child subreaper), so the caller reaps it with `waitpid` and owns the exit
//! status. The runtime's state lives under `state_root/<id>`; `delete` removes it and the
//! container's cgroups once the init has exited.

mod builtin;
mod console;
mod external;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use builtin::Builtin;
pub use external::External;

use crate::RuntimeError;

/// The init's stdio.
pub enum Io {
    /// These fds become the init's 0, 1 and 2 (no stdin: /dev/null).
    Pipes { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
    /// The runtime allocates a pty inside the container; its master comes back in
    /// [`Started::console`].
    Terminal,
}

/// A started container.
#[derive(Debug)]
pub struct Started {
    /// The init's pid (in the caller's pid namespace).
    pub pid: i32,
    /// The pty master when started with [`Io::Terminal`].
    pub console: Option<OwnedFd>,
}

pub trait Executor {
    /// Creates and starts the container's init from `bundle` (config.json with root.path).
    /// Blocking; call only from a single-threaded process (the supervisor). When it returns,
    /// the init process is a child of the caller or reparented to it (the caller sets
    /// PR_SET_CHILD_SUBREAPER before calling), so the caller reaps it with waitpid.
    fn start(&self, id: &str, bundle: &Path, io: Io) -> Result<Started, RuntimeError>;
    /// Signals the init (all=true: every process of the container).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError>;
    /// Removes the runtime's state and the container's cgroups after the init exited (force: kill first).
    /// A container the runtime does not know (already deleted) is not an error.
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Freezes every process of the container.
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Thaws a paused container.
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Starts another process in the running container `id`, with the init's namespaces,
    /// cgroups, capabilities and limits. Like `start`, the process ends up a child of the
    /// (subreaper) caller, which reaps it; with `Io::Terminal` it gets a pty of its own,
    /// whose master comes back in [`Started::console`].
    fn exec(&self, id: &str, process: &ExecSpec, io: Io) -> Result<Started, RuntimeError>;
}

/// A process for [`Executor::exec`], with its user already numeric.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Every capability, as `exec --privileged`.
    pub privileged: bool,
}

/// Every capability this crate knows (CAP_CHOWN .. CAP_CHECKPOINT_RESTORE), the set a
/// privileged process gets.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

/// What a privileged process gets: every capability of [`ALL_CAPS`] that this process
/// still holds in its bounding set. Docker asks for all of them and fails to start on a
/// host whose own bounding set lacks one (`unable to apply caps: operation not
/// permitted`, as on the VMs here, without CAP_SYS_RESOURCE); granting what can be
/// granted is the same set wherever docker's works.
pub fn privileged_caps() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX))))
        .unwrap_or(u64::MAX);
    ALL_CAPS.iter().enumerate().filter(|(bit, _)| bounding & (1u64 << bit) != 0).map(|(_, c)| *c).collect()
}

/// The names `--runtime` accepts for the built-in executor.
pub const BUILTIN_NAMES: [&str; 2] = ["strata", "builtin"];

/// External runtimes looked up in `PATH` by name.
pub const EXTERNAL_NAMES: [&str; 3] = ["runc", "crun", "youki"];

/// The executor for docker's `--runtime` value: None, `strata` or `builtin` → the built-in
/// libcontainer; `runc`, `crun`, `youki` → that binary from `PATH`; an absolute path → that
/// binary (runc-compatible CLI). Anything else: `unknown or invalid runtime name: X`.
pub fn executor_for(runtime: Option<&str>, state_root: &Path) -> Result<Box<dyn Executor>, RuntimeError> {
    let name = match runtime {
        None => return Ok(Box::new(Builtin::new(state_root))),
        Some(n) if BUILTIN_NAMES.contains(&n) => return Ok(Box::new(Builtin::new(state_root))),
        Some(n) => n,
    };
    let unknown = || RuntimeError::UnknownRuntime(name.to_string());
    let binary = if EXTERNAL_NAMES.contains(&name) {
        find_in_path(name).ok_or_else(unknown)?
    } else if Path::new(name).is_absolute() {
        let p = PathBuf::from(name);
        if !is_executable(&p) {
            return Err(unknown());
        }
        p
    } else {
        return Err(unknown());
    };
    Ok(Box::new(External::new(binary, state_root)))
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `name` in `$PATH` (docker's default PATH when unset), as `exec.LookPath`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_absolute() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Opens /dev/null (the stdin of an init without one).
fn dev_null() -> Result<OwnedFd, RuntimeError> {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(RuntimeError::io("open", "/dev/null"))
}

/// The full chain of an error's messages, `a: b: c`, skipping repeats.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Reaps a killed init after a failed start (it is our child, or reparented to us as a
/// subreaper; otherwise there is nothing to wait for).
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on one specific pid.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {}
}

fn create_state_root(state_root: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_root)
        .map_err(RuntimeError::io("create", state_root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::{Classify, ErrorKind};

    #[test]
    fn runtime_names() {
        let root = Path::new("/run/strata-test-none");
        assert!(executor_for(None, root).is_ok());
        assert!(executor_for(Some("strata"), root).is_ok());
        assert!(executor_for(Some("builtin"), root).is_ok());
        for bad in ["nope", "relative/runc", "/nonexistent/runc", ""] {
            let err = executor_for(Some(bad), root).err().expect("an error");
            assert_eq!(err.to_string(), format!("unknown or invalid runtime name: {bad}"));
            assert_eq!(err.kind(), ErrorKind::Invalid);
        }
        if find_in_path("runc").is_some() {
            assert!(executor_for(Some("runc"), root).is_ok());
            assert!(executor_for(Some("/usr/sbin/runc"), root).is_ok() || !Path::new("/usr/sbin/runc").exists());
        }
    }

    #[test]
    fn error_chain() {
        let inner = std::io::Error::other("inner");
        let outer = RuntimeError::Io { op: "open", path: "/x".into(), source: inner };
        assert_eq!(chain(&outer), "open /x: inner");
    }
}
