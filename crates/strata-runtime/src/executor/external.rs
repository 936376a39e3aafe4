//! An external OCI runtime CLI (runc, crun, youki): `--root <state_root> create --bundle B
//! --pid-file F [--console-socket S] ID`, then `start ID`; `kill`, `delete`, `pause`,
//! `resume` likewise. Errors come from the runtime's JSON log (`--log`, `--log-format
//! json`), as containerd's go-runc reads them.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::console::ConsoleSocket;
use super::{create_state_root, dev_null, reap, ExecSpec, Executor, Io, Started};
use crate::RuntimeError;

#[derive(Debug, Clone)]
pub struct External {
    binary: PathBuf,
    state_root: PathBuf,
}

impl External {
    pub fn new(binary: impl Into<PathBuf>, state_root: impl Into<PathBuf>) -> External {
        External { binary: binary.into(), state_root: state_root.into() }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn command(&self, log: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_root).arg("--log").arg(log).arg("--log-format").arg("json");
        cmd
    }

    /// The process's stdio: a console socket for a terminal (the runtime sends the pty
    /// master there), else the runtime's own stdio, which it hands to the process.
    fn wire_io(&self, cmd: &mut Command, io: Io, log: &LogFile) -> Result<Option<ConsoleSocket>, RuntimeError> {
        Ok(match io {
            Io::Terminal => {
                let sock = ConsoleSocket::bind(&self.state_root)?;
                cmd.arg("--console-socket").arg(sock.path());
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.stderr_file()?);
                Some(sock)
            }
            Io::Pipes { stdin, stdout, stderr } => {
                let stdin: OwnedFd = match stdin {
                    Some(fd) => fd,
                    None => dev_null()?,
                };
                cmd.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
                None
            }
        })
    }

    /// Runs one runtime command with no stdio of interest; its error is the runtime's
    /// message.
    fn run(&self, id: &str, op: &'static str, args: &[&str]) -> Result<(), RuntimeError> {
        create_state_root(&self.state_root)?;
        let log = LogFile::new(&self.state_root, id);
        let mut cmd = self.command(&log.path);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log.stderr_file()?);
        let status = cmd.status().map_err(RuntimeError::io("run", &self.binary))?;
        if status.success() {
            return Ok(());
        }
        Err(RuntimeError::runtime(id, op, log.error(status)))
    }

    /// Whether the runtime has state for `id` (runc, crun and youki keep `<root>/<id>/`).
    fn knows(&self, id: &str) -> bool {
        self.state_root.join(id).exists()
    }
}

/// A runtime command's JSON log (`--log`) and stderr, as files next to the state (never
/// pipes: the container's processes may inherit what runc inherits); removed when dropped.
struct LogFile {
    path: PathBuf,
    stderr: PathBuf,
}

impl LogFile {
    fn new(state_root: &Path, id: &str) -> LogFile {
        let stem = format!(".{id}-{}", strata_store::random_hex(4));
        LogFile { path: state_root.join(format!("{stem}.log")), stderr: state_root.join(format!("{stem}.err")) }
    }

    fn stderr_file(&self) -> Result<Stdio, RuntimeError> {
        fs::File::create(&self.stderr).map(Stdio::from).map_err(RuntimeError::io("create", &self.stderr))
    }

    /// The runtime's error: the last `error`/`fatal` entry of its log, or its stderr.
    fn error(&self, status: std::process::ExitStatus) -> String {
        let mut errors = Vec::new();
        if let Ok(text) = fs::read_to_string(&self.path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                if matches!(v["level"].as_str(), Some("error" | "fatal")) {
                    if let Some(m) = v["msg"].as_str() {
                        errors.push(m.trim().to_string());
                    }
                }
            }
        }
        if let Some(last) = errors.pop() {
            return last;
        }
        let s = fs::read_to_string(&self.stderr).unwrap_or_default().trim().to_string();
        if !s.is_empty() {
            return s;
        }
        format!("runtime exited with {status}")
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.stderr);
    }
}

impl Executor for External {
    fn start(&self, id: &str, bundle: &Path, io: Io) -> Result<Started, RuntimeError> {
        create_state_root(&self.state_root)?;
        let bundle = fs::canonicalize(bundle).map_err(RuntimeError::io("open bundle", bundle))?;
        let pid_file = self.state_root.join(format!(".{id}-{}.pid", strata_store::random_hex(4)));
        let _pid_guard = RemoveOnDrop(pid_file.clone());
        let log = LogFile::new(&self.state_root, id);
        let existed = self.knows(id);

        let mut cmd = self.command(&log.path);
        cmd.arg("create").arg("--bundle").arg(&bundle).arg("--pid-file").arg(&pid_file);
        let console = self.wire_io(&mut cmd, io, &log)?;
        cmd.arg(id);
        let mut child = cmd.spawn().map_err(RuntimeError::io("run", &self.binary))?;
        // Drop our copies of the container's stdio (the Command holds them).
        drop(cmd);
        let status = child.wait().map_err(RuntimeError::io("wait for", &self.binary))?;
        if !status.success() {
            let msg = log.error(status);
            // runc removes what it made; a half-made container is removed here (never one
            // that was there before: "container with id exists").
            if !existed && self.knows(id) {
                let _ = self.run(id, "delete", &["delete", "--force", id]);
            }
            return Err(RuntimeError::runtime(id, "create", msg));
        }

        let pid = fs::read_to_string(&pid_file)
            .map_err(RuntimeError::io("read", &pid_file))
            .and_then(|s| {
                s.trim().parse::<i32>().map_err(|_| RuntimeError::runtime(id, "create", format!("bad pid file {s:?}")))
            })
            .inspect_err(|_| {
                let _ = self.run(id, "delete", &["delete", "--force", id]);
            })?;
        let cleanup = |e: RuntimeError| {
            let _ = self.run(id, "delete", &["delete", "--force", id]);
            reap(pid);
            e
        };
        let console = match &console {
            Some(sock) => Some(sock.receive(id).map_err(cleanup)?),
            None => None,
        };
        self.run(id, "start", &["start", id]).map_err(cleanup)?;
        Ok(Started { pid, console })
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(id, "kill", &args)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if !self.knows(id) {
            return Ok(());
        }
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(id, "delete", &args)
    }

    fn exec(&self, id: &str, process: &ExecSpec, io: Io) -> Result<Started, RuntimeError> {
        let pid_file = self.state_root.join(format!(".{id}-exec-{}.pid", strata_store::random_hex(4)));
        let _pid_guard = RemoveOnDrop(pid_file.clone());
        let log = LogFile::new(&self.state_root, id);
        let mut cmd = self.command(&log.path);
        cmd.arg("exec").arg("--detach").arg("--pid-file").arg(&pid_file).arg("--cwd").arg(&process.cwd);
        // runc takes additional groups with `--additional-gids`; crun and youki the same.
        cmd.arg("--user").arg(format!("{}:{}", process.uid, process.gid));
        for g in &process.additional_gids {
            cmd.arg("--additional-gids").arg(g.to_string());
        }
        for e in &process.env {
            cmd.arg("--env").arg(e);
        }
        if process.privileged {
            for c in super::privileged_caps() {
                cmd.arg("--cap").arg(c);
            }
        }
        if matches!(io, Io::Terminal) {
            cmd.arg("--tty");
        }
        let console = self.wire_io(&mut cmd, io, &log)?;
        cmd.arg(id).args(&process.args);
        let mut child = cmd.spawn().map_err(RuntimeError::io("run", &self.binary))?;
        drop(cmd);
        // runc sends the pty master before it exits; take it while it waits.
        let master = match &console {
            Some(sock) => match sock.receive(id) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            },
            None => None,
        };
        let status = child.wait().map_err(RuntimeError::io("wait for", &self.binary))?;
        if !status.success() {
            return Err(RuntimeError::runtime(id, "exec", log.error(status)));
        }
        let text = fs::read_to_string(&pid_file).map_err(RuntimeError::io("read", &pid_file))?;
        let pid = text.trim().parse::<i32>().map_err(|_| RuntimeError::runtime(id, "exec", format!("bad pid file: {text:?}")))?;
        Ok(Started { pid, console: master })
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(id, "pause", &["pause", id])
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(id, "resume", &["resume", id])
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
