//! The built-in executor: youki's libcontainer, in the calling process.

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor as Workload, ExecutorError, ExecutorValidationError};

use super::console::ConsoleSocket;
use super::{chain, create_state_root, dev_null, reap, ExecSpec, Executor, Io, Started};
use crate::RuntimeError;

/// libcontainer (youki) linked in; state under `state_root/<id>` (youki's layout).
///
/// Only for a single-threaded caller: `start` clones the container's processes from the
/// calling process and changes process-wide state while it runs (the working directory,
/// the dumpable flag).
#[derive(Debug, Clone)]
pub struct Builtin {
    state_root: PathBuf,
}

impl Builtin {
    pub fn new(state_root: impl Into<PathBuf>) -> Builtin {
        Builtin { state_root: state_root.into() }
    }

    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// exec with a pty: the init's own process spec (capabilities, rlimits, no new
    /// privileges) with this command, environment, directory and user, and
    /// `terminal: true`, handed over as a process file; the pty master comes back
    /// through a console socket as for a `-t` start.
    fn exec_terminal(&self, id: &str, process: &ExecSpec, builder: ContainerBuilder) -> Result<Started, RuntimeError> {
        use libcontainer::oci_spec::runtime::{Capability, LinuxCapabilities, Process, UserBuilder};
        let container = self.load(id, "exec")?;
        let spec = Spec::load(container.bundle().join("config.json")).map_err(|e| RuntimeError::runtime(id, "exec", e.to_string()))?;
        let mut p: Process = spec.process().clone().unwrap_or_default();
        let user = UserBuilder::default()
            .uid(process.uid)
            .gid(process.gid)
            .additional_gids(process.additional_gids.clone())
            .build()
            .map_err(|e| RuntimeError::runtime(id, "exec", e.to_string()))?;
        p.set_args(Some(process.args.clone()))
            .set_env(Some(process.env.clone()))
            .set_cwd(PathBuf::from(&process.cwd))
            .set_user(user)
            .set_terminal(Some(true));
        if process.privileged {
            let all: std::collections::HashSet<Capability> = super::privileged_caps().iter().filter_map(|c| c.trim_start_matches("CAP_").parse().ok()).collect();
            let mut caps = LinuxCapabilities::default();
            caps.set_bounding(Some(all.clone())).set_effective(Some(all.clone())).set_permitted(Some(all.clone())).set_inheritable(None).set_ambient(None);
            p.set_capabilities(Some(caps));
        }
        let file = self.state_root.join(id).join(format!("exec-{}.json", strata_store::random_hex(6)));
        let json = serde_json::to_vec(&p).map_err(|e| RuntimeError::runtime(id, "exec", e.to_string()))?;
        std::fs::write(&file, json).map_err(RuntimeError::io("write", &file))?;
        let console = ConsoleSocket::bind(&self.state_root)?;
        let built = builder
            .with_console_socket(Some(console.path().to_path_buf()))
            .as_tenant()
            .with_process(Some(&file))
            .with_detach(true)
            .build();
        let _ = std::fs::remove_file(&file);
        let pid = built.map_err(|e| lc_err(id, "exec", e))?.as_raw();
        match console.receive(id) {
            Ok(fd) => Ok(Started { pid, console: Some(fd) }),
            Err(e) => {
                // SAFETY: signalling the process we just started and have not reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                Err(e)
            }
        }
    }

    fn load(&self, id: &str, op: &'static str) -> Result<Container, RuntimeError> {
        Container::load(self.state_root.join(id)).map_err(|e| lc_err(id, op, e))
    }
}

fn lc_err(id: &str, op: &'static str, e: LibcontainerError) -> RuntimeError {
    RuntimeError::runtime(id, op, chain(&e))
}

/// The workload step (in the container's init, just before execve): libcontainer's
/// default executor, after resetting what the caller's signal state would otherwise
/// leak into the container. Ignored signals and the signal mask survive execve, and a
/// Rust caller ignores SIGPIPE (std) and typically blocks SIGCHLD (signalfd); runc starts
/// containers with neither.
#[derive(Clone)]
struct CleanExec;

impl Workload for CleanExec {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Default dispositions for every signal, empty signal mask.
fn reset_signals() {
    // SAFETY: plain signal-state syscalls in the (single-threaded) container init;
    // invalid numbers (SIGKILL, SIGSTOP, libc-reserved) fail harmlessly.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

impl Executor for Builtin {
    fn start(&self, id: &str, bundle: &Path, io: Io) -> Result<Started, RuntimeError> {
        create_state_root(&self.state_root)?;
        let bundle = std::fs::canonicalize(bundle).map_err(RuntimeError::io("open bundle", bundle))?;
        let container_dir = self.state_root.join(id);
        let existed = container_dir.exists();

        let console = match io {
            Io::Terminal => Some(ConsoleSocket::bind(&self.state_root)?),
            Io::Pipes { .. } => None,
        };
        let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(CleanExec)
            .with_root_path(&self.state_root)
            .map_err(|e| lc_err(id, "create", e))?
            .with_console_socket(console.as_ref().map(|c| c.path().to_path_buf()));
        if let Io::Pipes { stdin, stdout, stderr } = io {
            let stdin = match stdin {
                Some(fd) => fd,
                None => dev_null()?,
            };
            builder = builder.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr);
        }
        let built = builder
            .validate_id()
            .map_err(|e| RuntimeError::InvalidSpec { id: id.to_string(), reason: chain(&e) })?
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build();
        let mut container = match built {
            Ok(c) => c,
            Err(e) => {
                // libcontainer removes what it made when the create itself fails; a
                // failure before that (spec, console socket) leaves the state directory.
                if !existed && container_dir.exists() {
                    let _ = std::fs::remove_dir_all(&container_dir);
                }
                return Err(lc_err(id, "create", e));
            }
        };
        let pid = container.pid().map(|p| p.as_raw()).ok_or_else(|| RuntimeError::runtime(id, "create", "no init pid"))?;

        let console = match &console {
            Some(sock) => match sock.receive(id) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let _ = container.delete(true);
                    reap(pid);
                    return Err(e);
                }
            },
            None => None,
        };
        if let Err(e) = container.start() {
            let _ = container.delete(true);
            reap(pid);
            return Err(lc_err(id, "start", e));
        }
        Ok(Started { pid, console })
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let sig = Signal::try_from(signal)
            .map_err(|_| RuntimeError::InvalidSpec { id: id.to_string(), reason: format!("invalid signal {signal}") })?;
        let mut c = self.load(id, "kill")?;
        c.kill(sig, all).map_err(|e| lc_err(id, "kill", e))
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if !self.state_root.join(id).join("state.json").exists() {
            // Never created, or already deleted; a partial directory is ours to drop.
            let dir = self.state_root.join(id);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(RuntimeError::io("remove", &dir))?;
            }
            return Ok(());
        }
        let mut c = self.load(id, "delete")?;
        c.delete(force).map_err(|e| lc_err(id, "delete", e))
    }

    fn exec(&self, id: &str, process: &ExecSpec, io: Io) -> Result<Started, RuntimeError> {
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(CleanExec)
            .with_root_path(&self.state_root)
            .map_err(|e| lc_err(id, "exec", e))?;
        let Io::Pipes { stdin, stdout, stderr } = io else {
            return self.exec_terminal(id, process, builder);
        };
        let stdin = match stdin {
            Some(fd) => fd,
            None => dev_null()?,
        };
        let env = process.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let pid = builder
            .with_stdin(stdin)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .as_tenant()
            .with_container_args(process.args.clone())
            .with_env(env)
            .with_cwd(Some(PathBuf::from(&process.cwd)))
            .with_user(Some(process.uid))
            .with_group(Some(process.gid))
            .with_additional_gids(process.additional_gids.clone())
            .with_capabilities(if process.privileged { super::privileged_caps().iter().map(|c| c.to_string()).collect() } else { Vec::new() })
            .with_detach(true)
            .build()
            .map_err(|e| lc_err(id, "exec", e))?;
        Ok(Started { pid: pid.as_raw(), console: None })
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "pause")?.pause().map_err(|e| lc_err(id, "pause", e))
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "resume")?.resume().map_err(|e| lc_err(id, "resume", e))
    }
}
