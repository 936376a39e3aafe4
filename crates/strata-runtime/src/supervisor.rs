//! The per-container supervisor: one small single-threaded process per running
//! container, re-executed from the `strata` binary, detached from the command that
//! started it.
//!
//! It owns, for the container's whole life: a private mount namespace holding the root
//! filesystem mount (so a crash leaks no mount), the executor call that creates the init
//! process (libcontainer must run single-threaded), the init's stdio (pipes or a pty),
//! the json-file log, the exit status (reaped as child subreaper and handed to the
//! `Host`, which records it durably), restart policies, and `--rm` removal. Everything
//! else talks to it through the control socket (`protocol`).
//!
//! The loop is epoll over: a signalfd (SIGCHLD), the output fds, the control listener,
//! the clients, and a timerfd (stop timeout, restart delay). No async runtime.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use rustix::event::epoll;
use strata_snapshot::{mount_all, LinuxSyscall, Mount, Syscall};

use crate::executor::{ExecSpec, Executor, Io};
use crate::protocol::{self, Event, ExecProcess, FrameBuf, Request};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("container {id}: {op}: {source}")]
    Io { id: String, op: &'static str, source: io::Error },
    #[error("container {id}: {message}")]
    Start { id: String, message: String },
}

/// What the supervisor needs to run one container.
pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub mounts: Vec<Mount>,
    pub log_path: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub socket: String,
}

/// The engine's side: durable state transitions and policy decisions.
pub trait Host {
    /// Before each start (also restarts): a chance to refuse, e.g. a missing command.
    fn prepare(&mut self, rootfs: &std::path::Path) -> Result<(), String>;
    /// The init is running with `pid`.
    fn started(&mut self, pid: i32);
    /// The init exited. Returns the delay before a restart, or None to stop for good.
    fn exited(&mut self, code: i32, manual_stop: bool) -> Option<Duration>;
    /// The container stopped for good and its mounts are gone. Returns whether it was
    /// removed (`--rm`).
    fn finished(&mut self) -> bool;
    /// An `exec` request made concrete against the container's root (its user database,
    /// its environment); an error is docker's exit code and message.
    fn exec_spec(&mut self, rootfs: &std::path::Path, process: &ExecProcess) -> Result<ExecSpec, (i32, String)>;
}

enum ClientMode {
    New,
    Attach { stdin: bool },
    Wait,
    /// The client of exec number `n`: its stdin goes to that process.
    Exec(u64),
}

/// A process started by `exec`; `client` 0 for a detached one.
struct ExecRun {
    pid: i32,
    /// `out` is the pty master (resized by this exec's client).
    tty: bool,
    client: u64,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    exit: Option<i32>,
}

struct Client {
    stream: UnixStream,
    buf: FrameBuf,
    mode: ClientMode,
    wants_out: bool,
    wants_err: bool,
}

const TOK_SIGNAL: u64 = 1;
const TOK_LISTEN: u64 = 2;
const TOK_OUT: u64 = 3;
const TOK_ERR: u64 = 4;
const TOK_TIMER: u64 = 5;
const TOK_CLIENT: u64 = 100;
/// Exec n's stdout is `TOK_EXEC + 2n`, its stderr the next token.
const TOK_EXEC: u64 = 1 << 40;

/// Line-splitting writer of docker's json-file log.
struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    fn write(&mut self, stream: usize, data: &[u8]) {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        let buf = &mut self.partial[stream];
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            push_record(&mut out, &line, name);
        }
        // docker splits lines longer than 16 KiB into partial records.
        if buf.len() >= 16 * 1024 {
            let line: Vec<u8> = std::mem::take(buf);
            push_record(&mut out, &line, name);
        }
        if !out.is_empty() {
            let _ = self.file.write_all(&out);
        }
    }

    fn flush(&mut self) {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let line = std::mem::take(&mut self.partial[s]);
                let mut out = Vec::new();
                push_record(&mut out, &line, if s == 0 { "stdout" } else { "stderr" });
                let _ = self.file.write_all(&out);
            }
        }
    }
}

fn push_record(out: &mut Vec<u8>, line: &[u8], stream: &str) {
    let rec = serde_json::json!({
        "log": String::from_utf8_lossy(line),
        "stream": stream,
        "time": strata_store::now_rfc3339(),
    });
    serde_json::to_writer(&mut *out, &rec).expect("json");
    out.push(b'\n');
}

struct Running {
    pid: i32,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    exit: Option<i32>,
}

pub struct Supervisor<'a> {
    cfg: Config,
    exec: &'a dyn Executor,
    epoll: OwnedFd,
    signalfd: OwnedFd,
    timer: OwnedFd,
    listener: UnixListener,
    clients: HashMap<u64, Client>,
    next_client: u64,
    log: LogWriter,
    run: Option<Running>,
    manual_stop: bool,
    restart_pending: bool,
    last_exit: Option<i32>,
    execs: HashMap<u64, ExecRun>,
    next_exec: u64,
}

fn io_err<'a>(id: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> SupervisorError + 'a {
    move |source| SupervisorError::Io { id: id.to_string(), op, source }
}

/// Makes this process the container's supervisor: subreaper, private mount namespace,
/// signalfd. Call first, before any thread exists. Returns the way back to the mount
/// namespace it was called in, for mounts that must be shared with other processes.
pub fn enter() -> io::Result<MountNamespaces> {
    let host = open_ns()?;
    // SAFETY: plain syscalls on this process's own attributes.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    rustix::mount::mount_change("/", rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE)?;
    Ok(MountNamespaces { host, own: open_ns()? })
}

fn open_ns() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open("/proc/self/ns/mnt", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?)
}

/// The supervisor's private mount namespace and the one it came from.
pub struct MountNamespaces {
    host: OwnedFd,
    own: OwnedFd,
}

impl MountNamespaces {
    /// Runs `f` in the namespace the supervisor came from, where a mount is seen by
    /// every other process (a volume with driver options, which several containers
    /// share), then comes back. The kernel allows this only while the process has a
    /// single thread; a thread just joined may still count for a moment, hence the
    /// retries.
    pub fn in_host<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        self.switch(&self.host)?;
        let out = f();
        self.switch(&self.own)?;
        Ok(out)
    }

    /// Clones the mount tree at `path` in the host namespace and attaches it at `at`
    /// in the private one: a bind across namespaces, which plain `mount --bind`
    /// refuses (its source must be in the caller's namespace).
    pub fn bind_from_host(&self, path: &std::path::Path, at: &std::path::Path) -> io::Result<()> {
        use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
        let tree = self.in_host(|| open_tree(rustix::fs::CWD, path, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE))??;
        move_mount(&tree, "", rustix::fs::CWD, at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
        Ok(())
    }

    fn switch(&self, ns: &OwnedFd) -> io::Result<()> {
        let mut tries = 0;
        loop {
            match rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Mount)) {
                Err(rustix::io::Errno::INVAL) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => return Ok(r?),
            }
        }
    }
}

fn make_signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new fd we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl<'a> Supervisor<'a> {
    pub fn new(cfg: Config, exec: &'a dyn Executor) -> Result<Supervisor<'a>, SupervisorError> {
        let id = cfg.id.clone();
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| io_err(&id, "epoll")(e.into()))?;
        let signalfd = make_signalfd().map_err(io_err(&id, "signalfd"))?;
        let timer = rustix::time::timerfd_create(
            rustix::time::TimerfdClockId::Monotonic,
            rustix::time::TimerfdFlags::CLOEXEC | rustix::time::TimerfdFlags::NONBLOCK,
        )
        .map_err(|e| io_err(&id, "timerfd")(e.into()))?;
        let addr = SocketAddr::from_abstract_name(cfg.socket.as_bytes()).map_err(io_err(&id, "socket name"))?;
        let listener = UnixListener::bind_addr(&addr).map_err(io_err(&id, "listen"))?;
        listener.set_nonblocking(true).map_err(io_err(&id, "listen"))?;
        let file = OpenOptions::new().create(true).append(true).open(&cfg.log_path).map_err(io_err(&id, "open log"))?;
        let s = Supervisor {
            cfg,
            exec,
            epoll,
            signalfd,
            timer,
            listener,
            clients: HashMap::new(),
            next_client: TOK_CLIENT,
            log: LogWriter { file, partial: [Vec::new(), Vec::new()] },
            run: None,
            manual_stop: false,
            restart_pending: false,
            last_exit: None,
            execs: HashMap::new(),
            next_exec: 0,
        };
        s.watch(s.signalfd.as_raw_fd(), TOK_SIGNAL).map_err(io_err(&id, "epoll"))?;
        s.watch(s.listener.as_raw_fd(), TOK_LISTEN).map_err(io_err(&id, "epoll"))?;
        s.watch(s.timer.as_raw_fd(), TOK_TIMER).map_err(io_err(&id, "epoll"))?;
        Ok(s)
    }

    fn watch(&self, fd: RawFd, token: u64) -> io::Result<()> {
        // SAFETY: the fd stays open while registered; it is removed before closing.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        epoll::add(&self.epoll, bfd, epoll::EventData::new_u64(token), epoll::EventFlags::IN | epoll::EventFlags::RDHUP)?;
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: as in watch.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = epoll::delete(&self.epoll, bfd);
    }

    /// Adds the client that started the container (a foreground `run` or `start -a`).
    pub fn add_client(&mut self, stream: UnixStream, req: Request) {
        let token = self.next_client;
        self.next_client += 1;
        let mut c = Client { stream, buf: FrameBuf::default(), mode: ClientMode::New, wants_out: false, wants_err: false };
        let _ = c.stream.set_write_timeout(Some(Duration::from_secs(10)));
        apply_request_mode(&mut c, &req);
        if self.watch(c.stream.as_raw_fd(), token).is_ok() {
            self.clients.insert(token, c);
        }
    }

    /// Mounts the root filesystem and starts the init. Errors are the start failure a
    /// user sees.
    pub fn start(&mut self, host: &mut dyn Host) -> Result<i32, SupervisorError> {
        let id = self.cfg.id.clone();
        if std::fs::read_dir(&self.cfg.rootfs).map(|mut d| d.next().is_none()).unwrap_or(true) {
            std::fs::create_dir_all(&self.cfg.rootfs).map_err(io_err(&id, "create rootfs"))?;
            mount_all(&LinuxSyscall, &self.cfg.mounts, &self.cfg.rootfs).map_err(io_err(&id, "mount rootfs"))?;
        }
        host.prepare(&self.cfg.rootfs).map_err(|message| SupervisorError::Start { id: id.clone(), message })?;
        let (io, ours) = if self.cfg.tty {
            (Io::Terminal, None)
        } else {
            let (or, ow) = pipe().map_err(io_err(&id, "pipe"))?;
            let (er, ew) = pipe().map_err(io_err(&id, "pipe"))?;
            let (stdin_child, stdin_ours) = if self.cfg.open_stdin {
                let (r, w) = pipe().map_err(io_err(&id, "pipe"))?;
                (Some(r), Some(w))
            } else {
                (File::open("/dev/null").ok().map(OwnedFd::from), None)
            };
            (Io::Pipes { stdin: stdin_child, stdout: ow, stderr: ew }, Some((or, er, stdin_ours)))
        };
        let started = self.exec.start(&id, &self.cfg.bundle, io).map_err(|e| SupervisorError::Start { id: id.clone(), message: e.to_string() })?;
        let run = match ours {
            Some((or, er, stdin)) => Running { pid: started.pid, out: Some(or), err: Some(er), stdin, exit: None },
            None => {
                // One pty: output and input go through the master.
                let master = started.console.ok_or_else(|| SupervisorError::Start { id: id.clone(), message: "runtime returned no console".into() })?;
                let dup = master.try_clone().map_err(io_err(&id, "dup console"))?;
                Running { pid: started.pid, out: Some(master), err: None, stdin: if self.cfg.open_stdin { Some(dup) } else { None }, exit: None }
            }
        };
        for (fd, tok) in [(run.out.as_ref(), TOK_OUT), (run.err.as_ref(), TOK_ERR)] {
            if let Some(fd) = fd {
                set_nonblocking(fd.as_raw_fd());
                self.watch(fd.as_raw_fd(), tok).map_err(io_err(&id, "epoll"))?;
            }
        }
        let pid = run.pid;
        self.run = Some(run);
        host.started(pid);
        Ok(pid)
    }

    /// Runs until the container stops for good. Returns the last exit code.
    pub fn serve(&mut self, host: &mut dyn Host) -> i32 {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(16);
        loop {
            events.clear();
            if epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), None).is_err() {
                continue;
            }
            let tokens: Vec<u64> = events.iter().map(|e| e.data.u64()).collect();
            for t in tokens {
                match t {
                    TOK_SIGNAL => self.on_signal(),
                    TOK_LISTEN => self.on_accept(),
                    TOK_OUT => self.on_output(0),
                    TOK_ERR => self.on_output(1),
                    TOK_TIMER => self.on_timer(host),
                    e if e >= TOK_EXEC => self.on_exec_output((e - TOK_EXEC) / 2, ((e - TOK_EXEC) % 2) as usize),
                    c => self.on_client(c, host),
                }
            }
            self.finish_execs();
            if let Some(done) = self.check_exit(host) {
                return done;
            }
        }
    }

    fn on_signal(&mut self) {
        let mut buf = [0u8; 128 * 8];
        let _ = rustix::io::read(&self.signalfd, &mut buf);
        loop {
            let mut status = 0;
            // SAFETY: waitpid on any child; we are the subreaper for the container.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                255
            };
            if let Some(x) = self.execs.values_mut().find(|x| x.pid == pid) {
                x.exit = Some(code);
            }
            if let Some(r) = self.run.as_mut() {
                if r.pid == pid {
                    r.exit = Some(if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        255
                    });
                }
            }
        }
    }

    fn on_output(&mut self, stream: usize) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Some(r) = self.run.as_mut() else { return };
            let fd = if stream == 0 { r.out.as_ref() } else { r.err.as_ref() };
            let Some(fd) = fd else { return };
            match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => {
                    // EOF (EIO on a pty whose other side closed).
                    let raw = fd.as_raw_fd();
                    if stream == 0 { r.out = None } else { r.err = None }
                    self.unwatch(raw);
                    return;
                }
                Ok(n) => {
                    self.log.write(stream, &buf[..n]);
                    let kind = if stream == 0 { protocol::STDOUT } else { protocol::STDERR };
                    let mut dead = Vec::new();
                    for (t, c) in self.clients.iter_mut() {
                        let wants = if stream == 0 { c.wants_out } else { c.wants_err };
                        if wants && protocol::write_frame(&mut c.stream, kind, &buf[..n]).is_err() {
                            dead.push(*t);
                        }
                    }
                    for t in dead {
                        self.drop_client(t);
                    }
                    if n < buf.len() {
                        return;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => return,
            }
        }
    }

    fn on_accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // Only root may drive a container.
            let ok = rustix::net::sockopt::socket_peercred(&stream).map(|c| c.uid.is_root()).unwrap_or(false);
            if !ok {
                continue;
            }
            let token = self.next_client;
            self.next_client += 1;
            // A client that stops reading must not stall the container's output forever.
            let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
            if self.watch(stream.as_raw_fd(), token).is_ok() {
                self.clients.insert(token, Client { stream, buf: FrameBuf::default(), mode: ClientMode::New, wants_out: false, wants_err: false });
            }
        }
    }

    fn drop_client(&mut self, t: u64) {
        if let Some(c) = self.clients.remove(&t) {
            self.unwatch(c.stream.as_raw_fd());
        }
    }

    fn on_client(&mut self, t: u64, host: &mut dyn Host) {
        let mut buf = [0u8; 32 * 1024];
        let mut closed = false;
        {
            // One read per readiness event: epoll is level-triggered, so what is left is
            // reported again, and client sockets can stay blocking for writes.
            let Some(c) = self.clients.get_mut(&t) else { return };
            match c.stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => c.buf.push(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(_) => closed = true,
            }
        }
        loop {
            let frame = match self.clients.get_mut(&t).map(|c| c.buf.next_frame()) {
                Some(Ok(Some(f))) => f,
                Some(Ok(None)) | None => break,
                Some(Err(_)) => {
                    closed = true;
                    break;
                }
            };
            self.on_frame(t, frame, host);
        }
        if closed {
            // A client that goes away ends its stdin, as a docker client's write-close does.
            match self.clients.get(&t).map(|c| &c.mode) {
                Some(ClientMode::Attach { stdin: true }) => self.close_stdin(),
                Some(ClientMode::Exec(n)) => {
                    let n = *n;
                    if let Some(x) = self.execs.get_mut(&n) {
                        x.stdin = None;
                        x.client = 0;
                    }
                }
                _ => {}
            }
            self.drop_client(t);
        }
    }

    /// docker's rule: the container's stdin closes with its attached client's only when
    /// the container was created with StdinOnce (`run -i` attached); otherwise it stays
    /// open for the next client.
    fn close_stdin(&mut self) {
        if self.cfg.stdin_once {
            if let Some(r) = self.run.as_mut() {
                r.stdin = None;
            }
        }
    }

    fn reply(&mut self, t: u64, ev: &Event) {
        let failed = match self.clients.get_mut(&t) {
            Some(c) => protocol::write_json(&mut c.stream, ev).is_err(),
            None => false,
        };
        if failed {
            self.drop_client(t);
        }
    }

    fn on_frame(&mut self, t: u64, (kind, data): (u8, Vec<u8>), host: &mut dyn Host) {
        if kind == protocol::STDIN {
            if let Some(ClientMode::Exec(n)) = self.clients.get(&t).map(|c| &c.mode) {
                let n = *n;
                if let Some(x) = self.execs.get_mut(&n) {
                    if data.is_empty() {
                        x.stdin = None;
                    } else if let Some(fd) = x.stdin.as_ref() {
                        let _ = write_all_fd(fd, &data);
                    }
                }
                return;
            }
            let allowed = matches!(self.clients.get(&t).map(|c| &c.mode), Some(ClientMode::Attach { stdin: true }));
            if !allowed {
                return;
            }
            if data.is_empty() {
                self.close_stdin();
            } else if let Some(fd) = self.run.as_ref().and_then(|r| r.stdin.as_ref()) {
                let _ = write_all_fd(fd, &data);
            }
            return;
        }
        if kind != protocol::CONTROL {
            return;
        }
        let req: Request = match serde_json::from_slice(&data) {
            Ok(r) => r,
            Err(e) => return self.reply(t, &Event::Error { message: format!("bad request: {e}") }),
        };
        let pid = self.run.as_ref().filter(|r| r.exit.is_none()).map(|r| r.pid);
        match req {
            Request::Attach { .. } | Request::Wait => {
                if let Some(c) = self.clients.get_mut(&t) {
                    apply_request_mode(c, &req);
                }
                if pid.is_none() && !self.restart_pending {
                    let code = self.last_exit.unwrap_or(0);
                    self.reply(t, &Event::Exit { code });
                }
            }
            Request::Kill { signal } => match pid {
                Some(p) => {
                    // SAFETY: signalling our own child, which we have not reaped yet.
                    let r = unsafe { libc::kill(p, signal) };
                    let ev = if r == 0 { Event::Ok } else { Event::Error { message: io::Error::last_os_error().to_string() } };
                    self.reply(t, &ev);
                }
                None => self.reply(t, &Event::Error { message: format!("container {} is not running", self.cfg.id) }),
            },
            Request::Stop { signal, timeout } => {
                self.manual_stop = true;
                match pid {
                    Some(p) => {
                        // SAFETY: as for kill.
                        unsafe { libc::kill(p, signal) };
                        self.arm_timer(Duration::from_secs(timeout.max(0) as u64));
                        if let Some(c) = self.clients.get_mut(&t) {
                            c.mode = ClientMode::Wait;
                        }
                    }
                    None => {
                        self.restart_pending = false;
                        let code = self.last_exit.unwrap_or(0);
                        self.reply(t, &Event::Exit { code });
                    }
                }
            }
            Request::Resize { height, width } => {
                let exec_pty = match self.clients.get(&t).map(|c| &c.mode) {
                    Some(ClientMode::Exec(n)) => self.execs.get(n).filter(|x| x.tty).and_then(|x| x.out.as_ref()).map(|fd| fd.as_raw_fd()),
                    _ => None,
                };
                if let Some(fd) = exec_pty {
                    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: TIOCSWINSZ with a valid winsize on the exec's pty master.
                    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
                } else if self.cfg.tty {
                    if let Some(fd) = self.run.as_ref().and_then(|r| r.out.as_ref()) {
                        let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
                        // SAFETY: TIOCSWINSZ with a valid winsize on the pty master.
                        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    }
                }
                self.reply(t, &Event::Ok);
            }
            Request::State => {
                let ev = Event::State { running: pid.is_some(), pid: pid.unwrap_or(0) };
                self.reply(t, &ev);
            }
            Request::Exec { process, stdin, detach, tty } => {
                if pid.is_none() {
                    let message = format!("container {} is not running", self.cfg.id);
                    return self.reply(t, &Event::ExecFailed { code: 126, message });
                }
                match self.start_exec(t, &process, stdin, detach, tty && !detach, host) {
                    Ok(()) => self.reply(t, &Event::Ok),
                    Err((code, message)) => self.reply(t, &Event::ExecFailed { code, message }),
                }
            }
        }
    }

    /// Starts an exec'd process with pipes for its stdio, watched like the init's.
    fn start_exec(&mut self, t: u64, process: &ExecProcess, stdin: bool, detach: bool, tty: bool, host: &mut dyn Host) -> Result<(), (i32, String)> {
        let spec = host.exec_spec(&self.cfg.rootfs, process)?;
        let ioerr = |e: io::Error| (126, format!("exec: {e}"));
        let n = self.next_exec;
        self.next_exec += 1;
        let (io, ours) = if tty {
            (Io::Terminal, None)
        } else if detach {
            let null = || File::options().read(true).write(true).open("/dev/null").map(OwnedFd::from).map_err(ioerr);
            (Io::Pipes { stdin: None, stdout: null()?, stderr: null()? }, None)
        } else {
            let (or, ow) = pipe().map_err(ioerr)?;
            let (er, ew) = pipe().map_err(ioerr)?;
            let (si, so) = if stdin {
                let (r, w) = pipe().map_err(ioerr)?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            (Io::Pipes { stdin: si, stdout: ow, stderr: ew }, Some((or, er, so)))
        };
        let started = self.exec.exec(&self.cfg.id, &spec, io).map_err(|e| (126, e.to_string()))?;
        let mut run = ExecRun { pid: started.pid, tty, client: if detach { 0 } else { t }, out: None, err: None, stdin: None, exit: None };
        let ours = match (ours, started.console) {
            // One pty: output and input both go through the master.
            (None, Some(master)) => {
                let input = if stdin { Some(master.try_clone().map_err(ioerr)?) } else { None };
                set_nonblocking(master.as_raw_fd());
                self.watch(master.as_raw_fd(), TOK_EXEC + 2 * n).map_err(ioerr)?;
                run.out = Some(master);
                run.stdin = input;
                if let Some(c) = self.clients.get_mut(&t) {
                    c.mode = ClientMode::Exec(n);
                }
                None
            }
            (o, _) => o,
        };
        if let Some((or, er, so)) = ours {
            for (fd, k) in [(&or, 0u64), (&er, 1)] {
                set_nonblocking(fd.as_raw_fd());
                self.watch(fd.as_raw_fd(), TOK_EXEC + 2 * n + k).map_err(ioerr)?;
            }
            run.out = Some(or);
            run.err = Some(er);
            run.stdin = so;
            if let Some(c) = self.clients.get_mut(&t) {
                c.mode = ClientMode::Exec(n);
            }
        }
        self.execs.insert(n, run);
        Ok(())
    }

    fn on_exec_output(&mut self, n: u64, stream: usize) {
        let mut buf = vec![0u8; 64 * 1024];
        let Some(x) = self.execs.get_mut(&n) else { return };
        let slot = if stream == 0 { &mut x.out } else { &mut x.err };
        let Some(fd) = slot.as_ref() else { return };
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                let raw = fd.as_raw_fd();
                *slot = None;
                self.unwatch(raw);
            }
            Ok(k) => {
                let client = x.client;
                let kind = if stream == 0 { protocol::STDOUT } else { protocol::STDERR };
                let failed = match self.clients.get_mut(&client) {
                    Some(c) => protocol::write_frame(&mut c.stream, kind, &buf[..k]).is_err(),
                    None => false,
                };
                if failed {
                    self.drop_client(client);
                }
            }
            Err(_) => {}
        }
    }

    /// Exec'd processes that exited and whose output is drained: their client gets
    /// the exit code, last.
    fn finish_execs(&mut self) {
        let done: Vec<u64> = self.execs.iter().filter(|(_, x)| x.exit.is_some() && x.out.is_none() && x.err.is_none()).map(|(n, _)| *n).collect();
        for n in done {
            let Some(x) = self.execs.remove(&n) else { continue };
            if x.client != 0 {
                self.reply(x.client, &Event::Exit { code: x.exit.unwrap_or(255) });
            }
        }
    }

    fn arm_timer(&self, after: Duration) {
        let after = after.max(Duration::from_millis(1));
        let spec = rustix::time::Itimerspec {
            it_interval: rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: rustix::time::Timespec { tv_sec: after.as_secs() as i64, tv_nsec: after.subsec_nanos() as i64 },
        };
        let _ = rustix::time::timerfd_settime(&self.timer, rustix::time::TimerfdTimerFlags::empty(), &spec);
    }

    fn on_timer(&mut self, host: &mut dyn Host) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.timer, &mut buf);
        if self.restart_pending {
            self.restart_pending = false;
            if self.manual_stop {
                return;
            }
            if let Err(e) = self.start(host) {
                let msg = e.to_string();
                self.log.write(1, format!("{msg}\n").as_bytes());
                self.last_exit = Some(255);
            }
            return;
        }
        // The stop timeout passed: kill.
        if let Some(r) = self.run.as_ref().filter(|r| r.exit.is_none()) {
            // SAFETY: signalling our unreaped child.
            unsafe { libc::kill(r.pid, libc::SIGKILL) };
        }
    }

    /// After the init exited and its output is drained: record, then restart or finish.
    fn check_exit(&mut self, host: &mut dyn Host) -> Option<i32> {
        let r = self.run.as_ref()?;
        let code = r.exit?;
        if r.out.is_some() || r.err.is_some() {
            return None;
        }
        self.run = None;
        self.log.flush();
        let _ = self.exec.delete(&self.cfg.id, true);
        self.last_exit = Some(code);
        // Disarm a pending stop timer.
        self.arm_timer_off();
        let restart = host.exited(code, self.manual_stop);
        self.broadcast_exit(code, restart.is_some());
        if let Some(delay) = restart {
            self.restart_pending = true;
            self.arm_timer(delay);
            return None;
        }
        let _ = LinuxSyscall.unmount(&self.cfg.rootfs, true);
        let removed = host.finished();
        if removed {
            let tokens: Vec<u64> = self.clients.keys().copied().collect();
            for t in tokens {
                self.reply(t, &Event::Removed);
            }
        }
        Some(code)
    }

    fn arm_timer_off(&self) {
        let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        let spec = rustix::time::Itimerspec { it_interval: zero, it_value: zero };
        let _ = rustix::time::timerfd_settime(&self.timer, rustix::time::TimerfdTimerFlags::empty(), &spec);
    }

    fn broadcast_exit(&mut self, code: i32, restarting: bool) {
        let tokens: Vec<u64> = self.clients.keys().copied().collect();
        for t in tokens {
            let is_waiter = matches!(self.clients.get(&t).map(|c| &c.mode), Some(ClientMode::Wait | ClientMode::Attach { .. }));
            if is_waiter {
                self.reply(t, &Event::Exit { code });
                // Attached clients of a restarting container stay; waiters got their exit.
                if restarting && matches!(self.clients.get(&t).map(|c| &c.mode), Some(ClientMode::Wait)) {
                    self.drop_client(t);
                }
            }
        }
    }
}

fn apply_request_mode(c: &mut Client, req: &Request) {
    match req {
        Request::Attach { stdin, stdout, stderr } => {
            c.mode = ClientMode::Attach { stdin: *stdin };
            c.wants_out = *stdout;
            c.wants_err = *stderr;
        }
        Request::Wait => c.mode = ClientMode::Wait,
        _ => {}
    }
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Connects to a container's supervisor.
pub fn connect(socket: &str) -> io::Result<UnixStream> {
    let addr = SocketAddr::from_abstract_name(socket.as_bytes())?;
    UnixStream::connect_addr(&addr)
}
