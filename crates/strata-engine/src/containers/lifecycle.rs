//! Start, stop, kill, wait: the engine side of talking to supervisors.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_runtime::protocol::{self, Event, ExecProcess, Request};
use strata_runtime::supervisor::connect;

use super::{alive, Container};
use crate::{Engine, EngineError, Result};

/// Fds the supervisor inherits: 3 = ready pipe, 4 = the first attached client.
pub const READY_FD: i32 = 3;
pub const ATTACH_FD: i32 = 4;

/// How a start request wants to be attached.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachSpec {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Engine {
    /// Starts a created or stopped container: spawns its supervisor and waits until the
    /// init runs (or failed to). With `attach`, returns the attached stream, connected
    /// before the first byte of output.
    pub fn start_container(&self, c: &Container, attach: Option<AttachSpec>) -> Result<Option<UnixStream>> {
        if c.status == "paused" {
            return Err(EngineError::Conflict("cannot start a paused container, try unpause instead".into()));
        }
        if c.running() {
            return Err(EngineError::NotModified(format!("container {} is already running", c.id)));
        }
        let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| EngineError::io("pipe", "", e.into()))?;
        let (ours, theirs) = match attach {
            Some(_) => {
                let (a, b) = UnixStream::pair().map_err(|e| EngineError::io("socketpair", "", e))?;
                (Some(a), Some(OwnedFd::from(b)))
            }
            None => (None, None),
        };
        let exe = std::env::current_exe().map_err(|e| EngineError::io("locate", "/proc/self/exe", e))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--data-root").arg(self.root.path()).arg("__supervise").arg(&c.id);
        if let Some(a) = attach {
            cmd.arg("--attach").arg(format!("{}{}{}", a.stdin as u8, a.stdout as u8, a.stderr as u8));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let ready_raw = ready_w.as_raw_fd();
        let attach_raw = theirs.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: between fork and exec only async-signal-safe calls: setsid and dup2.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if libc::dup2(ready_raw, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(a) = attach_raw {
                    if libc::dup2(a, ATTACH_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| EngineError::io("spawn supervisor", "", e))?;
        drop(ready_w);
        drop(theirs);
        let mut msg = String::new();
        std::fs::File::from(ready_r).read_to_string(&mut msg).map_err(|e| EngineError::io("read", "supervisor", e))?;
        // The supervisor detaches itself by double fork; reap the intermediate now.
        let _ = child.wait();
        let msg = msg.trim();
        if let Some(rest) = msg.strip_prefix("err ") {
            let (code, text) = rest.split_once(' ').unwrap_or(("125", rest));
            return Err(EngineError::Start { code: code.parse().unwrap_or(125), message: text.to_string() });
        }
        if !msg.starts_with("ok") {
            return Err(EngineError::Start { code: 125, message: format!("supervisor for {} exited before starting it", c.id) });
        }
        Ok(ours)
    }

    /// Starts a created container with its stdout and stderr attached and runs it to the
    /// end: `sink` gets each chunk of output (`protocol::STDOUT` or `STDERR`, in order);
    /// returns the exit code. When `cancelled` turns true the container is killed (and
    /// the output until its exit still delivered).
    pub fn run_to_exit(&self, c: &Container, sink: &mut dyn FnMut(u8, &[u8]), cancelled: &dyn Fn() -> bool) -> Result<i32> {
        let spec = AttachSpec { stdin: false, stdout: true, stderr: true };
        let mut s = self.start_container(c, Some(spec))?.ok_or_else(|| EngineError::Conflict(format!("container {} started without a stream", c.id)))?;
        let mut killed = false;
        loop {
            if !killed && cancelled() {
                killed = true;
                if let Ok(now) = self.container(&c.id) {
                    let _ = self.kill_container(&now, libc::SIGKILL, true);
                }
            }
            let mut pfd = [rustix::event::PollFd::new(&s, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 200_000_000 };
            match rustix::event::poll(&mut pfd, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(EngineError::io("poll", "supervisor", e.into())),
            }
            match protocol::read_frame(&mut s) {
                Ok(Some((kind @ (protocol::STDOUT | protocol::STDERR), d))) => sink(kind, &d),
                Ok(Some((protocol::CONTROL, d))) => {
                    if let Ok(Event::Exit { code }) = serde_json::from_slice::<Event>(&d) {
                        return Ok(code);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // The stream ended without an exit event: the record knows.
        Ok(self.container(&c.id).map(|c| c.exit_code).unwrap_or(125))
    }

    fn request(&self, c: &Container, req: &Request) -> Result<Option<UnixStream>> {
        if !alive(c.sup_pid, c.sup_start) {
            return Ok(None);
        }
        let mut s = match connect(&self.socket_of(&c.id)) {
            Ok(s) => s,
            Err(_) => return Ok(None),
        };
        // A wedged supervisor must not hang the caller: answers to plain requests come
        // at once; waits and attaches clear the timeout themselves.
        let streams = matches!(req, Request::Attach { .. } | Request::Wait | Request::Stop { .. });
        let _ = s.set_read_timeout(if streams { None } else { Some(Duration::from_secs(10)) });
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
        protocol::write_json(&mut s, req).map_err(|e| EngineError::io("send", "supervisor", e))?;
        Ok(Some(s))
    }

    /// `exec`: asks the container's supervisor to start `process`. Without `detach`,
    /// returns the stream that carries its stdio and ends with its `Exit`.
    pub fn exec_container(&self, c: &Container, process: ExecProcess, stdin: bool, detach: bool, tty: bool) -> Result<Option<UnixStream>> {
        if c.status == "paused" {
            return Err(EngineError::Conflict(format!("Container {} is paused, unpause the container before exec", c.id)));
        }
        let not_running = || EngineError::Conflict(format!("Container {} is not running", c.id));
        if c.status != "running" {
            return Err(not_running());
        }
        let mut s = self.request(c, &Request::Exec { process, stdin, detach, tty })?.ok_or_else(not_running)?;
        // The start is answered at once; the stream itself is as long as the process.
        match read_event(&mut s)? {
            Some(Event::Ok) => {
                let _ = s.set_read_timeout(None);
                Ok(if detach { None } else { Some(s) })
            }
            Some(Event::ExecFailed { code, message }) => Err(EngineError::Start { code, message }),
            Some(Event::Error { message }) => Err(EngineError::Conflict(message)),
            _ => Err(not_running()),
        }
    }

    /// Opens an attach stream to a running container.
    pub fn attach_container(&self, c: &Container, spec: AttachSpec) -> Result<UnixStream> {
        let req = Request::Attach { stdin: spec.stdin, stdout: spec.stdout, stderr: spec.stderr };
        self.request(c, &req)?.ok_or_else(|| EngineError::Conflict("You cannot attach to a stopped container, start it first".into()))
    }

    pub fn kill_container(&self, c: &Container, signal: i32, quiet_if_stopped: bool) -> Result<()> {
        if !c.running() {
            if quiet_if_stopped {
                return Ok(());
            }
            return Err(EngineError::Conflict(format!("cannot kill container: {}: container {} is not running", c.name, c.id)));
        }
        let sent = self.request(c, &Request::Kill { signal })?;
        // A frozen process takes its signal only once thawed, as docker's kill does.
        self.thaw_if_paused(c)?;
        match sent {
            Some(mut s) => match read_event(&mut s)? {
                Some(Event::Error { message }) => Err(EngineError::Conflict(format!("cannot kill container: {}: {message}", c.name))),
                _ => Ok(()),
            },
            // No supervisor: the init is controlled by pid.
            None if alive(c.pid, c.pid_start) => {
                // SAFETY: the pid's start time matched: it is still the container's init.
                unsafe { libc::kill(c.pid, signal) };
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// `stop`: the stop signal, SIGKILL after `timeout` seconds; waits for the exit.
    pub fn stop_container(&self, c: &Container, timeout: Option<i64>, signal: Option<i32>) -> Result<()> {
        if !c.running() {
            return Err(EngineError::NotModified(format!("container {} is already stopped", c.id)));
        }
        let timeout = timeout.unwrap_or_else(|| c.stop_timeout());
        let signal = signal.unwrap_or_else(|| c.stop_signal());
        let sent = self.request(c, &Request::Stop { signal, timeout })?;
        self.thaw_if_paused(c)?;
        match sent {
            Some(mut s) => {
                while let Some(ev) = read_event(&mut s)? {
                    if matches!(ev, Event::Exit { .. }) {
                        break;
                    }
                }
                // The supervisor records the exit before it answers.
                Ok(())
            }
            None => {
                self.root.db().write(|tx| tx.execute("UPDATE containers SET manual_stop=1 WHERE id=?1", [&c.id]))?;
                // SAFETY: signalling the verified init pid.
                unsafe { libc::kill(c.pid, signal) };
                if !self.wait_pid_gone(c, Duration::from_secs(timeout.max(0) as u64)) {
                    // SAFETY: as above.
                    unsafe { libc::kill(c.pid, libc::SIGKILL) };
                    self.wait_pid_gone(c, Duration::from_secs(10));
                }
                self.container(&c.id).map(|_| ())
            }
        }
    }

    /// `pause`: freezes every process of the container (the cgroup freezer, through the
    /// container's runtime, so any strata process can do it).
    pub fn pause_container(&self, c: &Container) -> Result<()> {
        if c.status == "paused" {
            return Err(EngineError::Conflict(format!("Container {} is already paused", c.id)));
        }
        if c.status != "running" {
            return Err(EngineError::Conflict(format!("Container {} is not running", c.id)));
        }
        self.runtime_of(c)?.pause(&c.id).map_err(|e| EngineError::Conflict(e.to_string()))?;
        self.root.db().write(|tx| tx.execute("UPDATE containers SET status='paused' WHERE id=?1 AND status='running'", [&c.id]))?;
        Ok(())
    }

    /// `unpause`: thaws a paused container.
    pub fn unpause_container(&self, c: &Container) -> Result<()> {
        if c.status != "paused" {
            return Err(EngineError::Conflict(format!("Container {} is not paused", c.id)));
        }
        self.runtime_of(c)?.resume(&c.id).map_err(|e| EngineError::Conflict(e.to_string()))?;
        self.root.db().write(|tx| tx.execute("UPDATE containers SET status='running' WHERE id=?1 AND status='paused'", [&c.id]))?;
        Ok(())
    }

    fn thaw_if_paused(&self, c: &Container) -> Result<()> {
        if c.status == "paused" {
            self.unpause_container(c)?;
        }
        Ok(())
    }

    /// The runtime the container was started with (`--runtime`), for operations on it
    /// by id.
    pub(crate) fn runtime_of(&self, c: &Container) -> Result<Box<dyn strata_runtime::executor::Executor>> {
        let runtime = c.host_config().get("Runtime").and_then(serde_json::Value::as_str).filter(|r| *r != "strata");
        strata_runtime::executor::executor_for(runtime, &self.runtime_state_root()).map_err(|e| EngineError::Invalid(e.to_string()))
    }

    fn wait_pid_gone(&self, c: &Container, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while alive(c.pid, c.pid_start) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// `wait`: blocks until the container is not running; returns its exit code.
    pub fn wait_container(&self, c: &Container) -> Result<i32> {
        self.wait_stopped(c, None)
    }

    pub(crate) fn wait_stopped(&self, c: &Container, limit: Option<Duration>) -> Result<i32> {
        if !c.running() {
            return Ok(c.exit_code);
        }
        if let Some(mut s) = self.request(c, &Request::Wait)? {
            if let Some(l) = limit {
                let _ = s.set_read_timeout(Some(l));
            }
            while let Some(ev) = read_event(&mut s)? {
                if let Event::Exit { code } = ev {
                    return Ok(code);
                }
            }
        }
        // Supervisor gone (or went away while we waited): poll the process.
        let deadline = limit.map(|l| Instant::now() + l);
        loop {
            let cur = match self.container(&c.id) {
                Ok(cur) => cur,
                Err(EngineError::NoSuchContainer(_)) => return Ok(c.exit_code),
                Err(e) => return Err(e),
            };
            if !cur.running() {
                return Ok(cur.exit_code);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn resize_container(&self, c: &Container, height: u16, width: u16) -> Result<()> {
        if let Some(mut s) = self.request(c, &Request::Resize { height, width })? {
            let _ = read_event(&mut s);
        }
        Ok(())
    }
}

/// Reads control events, skipping data frames. None at end of stream.
pub fn read_event(s: &mut UnixStream) -> Result<Option<Event>> {
    loop {
        match protocol::read_frame(s) {
            Ok(Some((protocol::CONTROL, data))) => {
                return serde_json::from_slice(&data).map(Some).map_err(|e| EngineError::io("decode", "supervisor", std::io::Error::other(e)));
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(None),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof || e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(EngineError::io("read", "supervisor", e)),
        }
    }
}

/// Sends a frame on an attach stream (stdin data; empty = close stdin).
pub fn send_stdin(s: &mut UnixStream, data: &[u8]) -> std::io::Result<()> {
    protocol::write_frame(s, protocol::STDIN, data)?;
    s.flush()
}
