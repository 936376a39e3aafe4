//! Container commands: create, run, start, stop, kill, wait, restart, rm, ps, logs,
//! container prune, and the hidden `__supervise`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;

use clap::Args;
use serde_json::{json, Value};
use strata_engine::containers::mountspec;
use strata_engine::{send_stdin, AttachSpec, Container, CreateOptions, Engine, EngineError};
use strata_runtime::protocol::{self, Event};

use super::CliError;
use crate::format::{self, units, ListFormat};

#[derive(Args, Clone, Default)]
pub struct CreateArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub labels: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Size of /dev/shm
    #[arg(long)]
    pub shm_size: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Optional parent cgroup for the container
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Security Options (no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long = "attach")]
    pub attach: Vec<String>,
    /// Proxy received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    /// Connect a container to a network
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// docker's RAMInBytes, with its flag error.
fn ram_in_bytes(s: &str, flag: &str) -> Result<i64, CliError> {
    mountspec::ram_in_bytes(s).ok_or_else(|| CliError::usage(format!("invalid argument \"{s}\" for \"{flag}\" flag: invalid size: '{s}'")))
}

fn parse_env_files(files: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| CliError::usage(format!("open {f}: {}", super::image::os_msg(&e))))?;
        for line in io::BufReader::new(file).lines() {
            let line = line.map_err(|e| CliError::usage(e.to_string()))?;
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.contains('=') {
                out.push(t.to_string());
            } else if let Ok(v) = std::env::var(t) {
                out.push(format!("{t}={v}"));
            }
        }
    }
    Ok(out)
}

/// `--security-opt`: only `no-new-privileges[:true|false]` is implemented.
fn parse_security_opts(opts: &[String]) -> Result<bool, CliError> {
    let mut nnp = false;
    for o in opts {
        let (k, v) = o.split_once([':', '=']).unwrap_or((o, "true"));
        match (k, v) {
            ("no-new-privileges", "true") => nnp = true,
            ("no-new-privileges", "false") => nnp = false,
            ("no-new-privileges", _) => return Err(CliError::usage(format!("invalid --security-opt 2: {o:?}"))),
            _ => return Err(CliError::usage(format!("invalid --security-opt 1: {o:?}"))),
        }
    }
    Ok(nnp)
}

fn create_options(a: &CreateArgs) -> Result<CreateOptions, CliError> {
    let mut env = parse_env_files(&a.env_file)?;
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let nano_cpus = a.limits.nano_cpus()?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let (mut binds, mut volumes) = (Vec::new(), Vec::new());
    for v in &a.volume {
        match mountspec::parse_volume_flag(v, &cwd).map_err(CliError::usage)? {
            mountspec::VolumeFlag::Anonymous(d) => volumes.push(d),
            // Identical duplicates are dropped, as docker's map of -v values does.
            mountspec::VolumeFlag::Bind(b) if !binds.contains(&b) => binds.push(b),
            mountspec::VolumeFlag::Bind(_) => {}
        }
    }
    let mounts = a
        .mount
        .iter()
        .map(|m| mountspec::parse_mount_flag(m, &cwd).map_err(|e| CliError::usage(format!("invalid argument \"{m}\" for \"--mount\" flag: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let tmpfs = a.tmpfs.iter().map(|t| mountspec::parse_tmpfs(t).map_err(CliError::usage)).collect::<Result<Vec<_>, _>>()?;
    let attach: Vec<String> = a.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    for s in &attach {
        if !matches!(s.as_str(), "stdin" | "stdout" | "stderr") {
            return Err(CliError::usage(format!("invalid argument \"{s}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR")));
        }
    }
    // `create` records the attach streams a foreground `run` would use, as docker does.
    let attached = !a.detach;
    let (ai, ao, ae) = if !attach.is_empty() {
        (attach.iter().any(|s| s == "stdin"), attach.iter().any(|s| s == "stdout"), attach.iter().any(|s| s == "stderr"))
    } else if attached {
        (a.interactive, true, true)
    } else {
        (false, false, false)
    };
    if a.detach && !a.attach.is_empty() {
        return Err(CliError::usage("Conflicting options: -a and -d"));
    }
    // docker 28's wording and form for port errors: `docker: ...`, a blank line, the hint.
    let port_error = |m: String| CliError { message: m, from_engine: false, code: Some(125), prefix: Some("strata: ".into()) };
    let mut port_bindings = strata_network::ports::parse_publish_all(&a.publish).map_err(port_error)?;
    let mut expose = Vec::new();
    for e in &a.expose {
        expose.extend(strata_network::ports::parse_expose(e).map_err(port_error)?);
    }
    if a.network.as_deref() == Some("host") && !port_bindings.is_empty() {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
        port_bindings.clear();
    }
    Ok(CreateOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        cmd: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        labels,
        tty: a.tty,
        open_stdin: a.interactive,
        attach_stdin: ai,
        attach_stdout: ao,
        attach_stderr: ae,
        init: a.init,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        shm_size: a.shm_size.as_deref().map(|s| ram_in_bytes(s, "--shm-size")).transpose()?,
        memory: a.limits.memory_bytes()?,
        nano_cpus,
        pids_limit: a.limits.pids_limit,
        runtime: a.runtime.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
        no_new_privileges: parse_security_opts(&a.security_opt)?,
        binds,
        volumes,
        mounts,
        tmpfs,
        volumes_from: a.volumes_from.clone(),
        restart: a.restart.clone(),
        auto_remove: a.rm,
        read_only: a.read_only,
        network: a.network.clone(),
        network_aliases: a.network_alias.clone(),
        ipv4: a.ip.clone(),
        port_bindings,
        expose,
        publish_all: a.publish_all,
        privileged: a.privileged,
        pid_mode: a.pid.clone(),
        lease: None,
    })
}

/// Errors of `run`/`create`/`start` print as docker's and exit 125/126/127.
fn run_error(e: EngineError) -> CliError {
    use strata_store::Classify;
    let code = match &e {
        EngineError::Start { code, .. } => *code as u8,
        other => other.kind().run_exit_code() as u8,
    };
    let mut ce = CliError::from(e);
    ce.prefix = Some("strata: ".into());
    ce.code = Some(code);
    ce
}

/// Flag values docker rejects exit 125, as its flag errors do.
fn flag_error(mut e: CliError) -> CliError {
    e.code = Some(125);
    e.message = format!("{}\nSee 'strata run --help'.", e.message);
    e
}

/// Flag errors keep their own form when they have one (docker 28's port errors).
fn options_error(e: CliError) -> CliError {
    if e.prefix.is_some() { e } else { flag_error(e) }
}

pub fn create(engine: &Engine, a: CreateArgs) -> Result<u8, CliError> {
    let o = create_options(&a).map_err(options_error)?;
    let c = engine.create_container(&o).map_err(|e| image_missing(&o, e)).map_err(run_error)?;
    println!("{}", c.id);
    Ok(0)
}

fn image_missing(o: &CreateOptions, e: EngineError) -> EngineError {
    if let EngineError::Image(strata_image::ImageError::NoSuchImage(name)) = &e {
        let _ = name;
        let shown = strata_image::Reference::parse(&o.image).map(|r| r.with_default_tag().familiar()).unwrap_or_else(|_| o.image.clone());
        eprintln!("Unable to find image '{shown}' locally");
    }
    e
}

pub fn run(engine: &Engine, a: CreateArgs) -> Result<u8, CliError> {
    let o = create_options(&a).map_err(options_error)?;
    let c = engine.create_container(&o).map_err(|e| image_missing(&o, e)).map_err(run_error)?;
    if a.detach {
        engine.start_container(&c, None).map_err(run_error)?;
        println!("{}", c.id);
        return Ok(0);
    }
    let spec = AttachSpec { stdin: o.attach_stdin, stdout: o.attach_stdout, stderr: o.attach_stderr };
    let stream = engine.start_container(&c, Some(spec)).map_err(run_error)?.expect("attached start returns a stream");
    let keys = parse_detach_keys(a.detach_keys.as_deref())?;
    let code = relay(engine, &c, stream, spec, a.tty, a.sig_proxy && !a.tty, c.auto_remove(), Some(keys), true)?;
    Ok(code as u8)
}

/// Copies the attach stream to our stdout/stderr (and our stdin to it) until the exit
/// event; returns the container's exit code.
/// Pumps a supervisor stream to the terminal until the process's `Exit` (and, with
/// `wait_removed`, the `--rm` removal after it).
#[allow(clippy::too_many_arguments)]
fn relay(
    engine: &Engine,
    c: &Container,
    stream: UnixStream,
    spec: AttachSpec,
    tty: bool,
    sig_proxy: bool,
    wait_removed: bool,
    detach_keys: Option<Vec<u8>>,
    resize_init: bool,
) -> Result<i32, CliError> {
    let _raw = if tty && spec.stdin { RawTerminal::enter() } else { None };
    if tty && resize_init {
        if let Some((h, w)) = terminal_size() {
            let _ = engine.resize_container(c, h, w);
        }
    }
    if tty {
        // Later size changes follow the terminal (SIGWINCH): the container's pty through
        // a control connection, an exec's through its own session.
        let target = if resize_init {
            ResizeTarget::Socket(engine.socket_of(&c.id))
        } else {
            ResizeTarget::Session(stream.try_clone().map_err(|e| CliError::usage(e.to_string()))?)
        };
        WindowWatcher::start(target);
    }
    if sig_proxy {
        SignalProxy::start(engine.socket_of(&c.id));
    }
    if spec.stdin {
        let mut w = stream.try_clone().map_err(|e| CliError::usage(e.to_string()))?;
        // With a terminal, the detach sequence (docker's ctrl-p,ctrl-q) ends the attach
        // and leaves the container running.
        let mut keys = if tty { detach_keys.map(DetachMatcher::new) } else { None };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin = io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = send_stdin(&mut w, &[]);
                        return;
                    }
                    Ok(n) => {
                        let (data, detach) = match keys.as_mut() {
                            Some(k) => k.feed(&buf[..n]),
                            None => (buf[..n].to_vec(), false),
                        };
                        if !data.is_empty() && send_stdin(&mut w, &data).is_err() {
                            return;
                        }
                        if detach {
                            let _ = w.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut r = stream;
    let mut out = io::stdout().lock();
    let mut err = io::stderr();
    let mut code = None;
    loop {
        match protocol::read_frame(&mut r) {
            Ok(Some((protocol::STDOUT, d))) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Ok(Some((protocol::STDERR, d))) => {
                let _ = err.write_all(&d);
            }
            Ok(Some((protocol::CONTROL, d))) => match serde_json::from_slice::<Event>(&d) {
                Ok(Event::Exit { code: x }) => {
                    code = Some(x);
                    if !wait_removed {
                        break;
                    }
                }
                Ok(Event::Removed) => break,
                _ => {}
            },
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    match code {
        Some(x) => Ok(x),
        // The stream ended without an exit event: ask the record.
        None => Ok(engine.container(&c.id).map(|c| c.exit_code).unwrap_or(125)),
    }
}

/// Forwards SIGINT, SIGTERM and friends to the container while attached (docker's
/// --sig-proxy). The signals are blocked in every thread and taken by sigwait.
struct SignalProxy;

impl SignalProxy {
    fn start(socket: String) {
        // SAFETY: signal mask manipulation on a local set; the thread only calls sigwait
        // and socket functions.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let set_copy = set;
            std::thread::spawn(move || loop {
                let mut sig = 0;
                if libc::sigwait(&set_copy, &mut sig) != 0 {
                    return;
                }
                if let Ok(mut s) = strata_runtime::supervisor::connect(&socket) {
                    let _ = protocol::write_json(&mut s, &protocol::Request::Kill { signal: sig });
                }
            });
        }
    }
}

enum ResizeTarget {
    Socket(String),
    Session(UnixStream),
}

/// Sends the terminal's new size on every SIGWINCH. The signal is blocked here (and so
/// in threads started later) and taken by sigwait in its own thread.
struct WindowWatcher;

impl WindowWatcher {
    fn start(mut target: ResizeTarget) {
        // SAFETY: signal mask manipulation on a local set; the thread only calls sigwait,
        // ioctl and socket functions.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGWINCH);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            std::thread::spawn(move || loop {
                let mut sig = 0;
                if libc::sigwait(&set, &mut sig) != 0 {
                    return;
                }
                let Some((height, width)) = terminal_size() else { continue };
                let req = protocol::Request::Resize { height, width };
                match &mut target {
                    ResizeTarget::Socket(sock) => {
                        if let Ok(mut s) = strata_runtime::supervisor::connect(sock) {
                            let _ = protocol::write_json(&mut s, &req);
                        }
                    }
                    ResizeTarget::Session(s) => {
                        if protocol::write_json(s, &req).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
}

struct RawTerminal(libc::termios);

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        // SAFETY: termios calls on fd 0 with a zero-initialised struct filled by tcgetattr.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(RawTerminal(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn start(engine: &Engine, a: StartArgs) -> Result<u8, CliError> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(CliError::usage("you cannot start and attach multiple containers at once"));
        }
        let c = engine.container(&a.containers[0])?;
        let spec = AttachSpec { stdin: a.interactive && c.config.get("OpenStdin").and_then(Value::as_bool).unwrap_or(false), stdout: true, stderr: true };
        let stream = match engine.start_container(&c, Some(spec)) {
            Ok(s) => s.expect("attached start returns a stream"),
            Err(EngineError::NotModified(_)) => engine.attach_container(&c, spec)?,
            // docker's `start -a` prints a failed start as any daemon error and exits 1,
            // never with `run`'s 125/126/127 and usage hint.
            Err(e) => return Err(CliError::from(e)),
        };
        let keys = parse_detach_keys(a.detach_keys.as_deref())?;
        let code = relay(engine, &c, stream, spec, c.tty(), !c.tty(), c.auto_remove(), Some(keys), true)?;
        return Ok(code as u8);
    }
    let mut failed = false;
    for name in &a.containers {
        let res = engine.container(name).and_then(|c| match engine.start_container(&c, None) {
            Ok(_) | Err(EngineError::NotModified(_)) => Ok(()),
            Err(e) => Err(e),
        });
        match res {
            Ok(()) => println!("{name}"),
            Err(e) => {
                failed = true;
                CliError::from(e).print();
            }
        }
    }
    if failed {
        eprintln!("Error: failed to start containers: {}", a.containers.join(", "));
        // docker's last line is the summary; exit 1.
    }
    Ok(failed as u8)
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, allow_hyphen_values = true)]
    pub time: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn each(names: &[String], mut f: impl FnMut(&str) -> Result<(), EngineError>) -> u8 {
    let mut code = 0;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                CliError::from(e).print();
                code = 1;
            }
        }
    }
    code
}

fn parse_signal(s: &str) -> Result<i32, CliError> {
    strata_engine::containers::signal_number(s).ok_or_else(|| CliError { message: format!("Invalid signal: {s}"), ..CliError::usage("") }.engine())
}

pub fn stop(engine: &Engine, a: StopArgs) -> Result<u8, CliError> {
    let sig = a.signal.as_deref().map(parse_signal).transpose()?;
    Ok(each(&a.containers, |n| {
        let c = engine.container(n)?;
        match engine.stop_container(&c, a.time, sig) {
            Ok(()) | Err(EngineError::NotModified(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }))
}

pub fn restart(engine: &Engine, a: StopArgs) -> Result<u8, CliError> {
    let sig = a.signal.as_deref().map(parse_signal).transpose()?;
    Ok(each(&a.containers, |n| {
        let c = engine.container(n)?;
        match engine.stop_container(&c, a.time, sig) {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        let c = engine.container(n)?;
        engine.start_container(&c, None).map(|_| ())
    }))
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn kill(engine: &Engine, a: KillArgs) -> Result<u8, CliError> {
    let sig = parse_signal(&a.signal)?;
    Ok(each(&a.containers, |n| {
        let c = engine.container(n)?;
        engine.kill_container(&c, sig, false)
    }))
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `exec`: the supervisor starts the process and reaps it; its exit code is ours. A
/// process that cannot be started exits 126 with the runtime's words, on stdout as
/// docker's.
pub fn exec(engine: &Engine, a: ExecArgs) -> Result<u8, CliError> {
    let c = engine.container(&a.container)?;
    // `-e NAME` takes NAME's value from here, or drops it, as docker's client does.
    let env = a
        .env
        .iter()
        .filter_map(|e| if e.contains('=') { Some(e.clone()) } else { std::env::var(e).ok().map(|v| format!("{e}={v}")) })
        .collect();
    let process = strata_runtime::protocol::ExecProcess {
        args: a.command.clone(),
        env,
        cwd: a.workdir.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        privileged: a.privileged,
    };
    let stream = match engine.exec_container(&c, process, a.interactive && !a.detach, a.detach, a.tty) {
        Ok(s) => s,
        Err(EngineError::Start { code, message }) => {
            // docker's API writes this into the already hijacked stream: stdout, "\r\n".
            print!("{message}\r\n");
            return Ok(code as u8);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(mut stream) = stream else { return Ok(0) };
    if a.tty {
        // The session's own pty takes the terminal's size, through its own stream.
        if let Some((height, width)) = terminal_size() {
            let _ = strata_runtime::protocol::write_json(&mut stream, &strata_runtime::protocol::Request::Resize { height, width });
        }
    }
    let spec = AttachSpec { stdin: a.interactive, stdout: true, stderr: true };
    let keys = if a.tty && a.interactive { Some(parse_detach_keys(None)?) } else { None };
    Ok(relay(engine, &c, stream, spec, a.tty, false, false, keys, false)? as u8)
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub pause: bool,
    pub container: String,
    pub repository: Option<String>,
}

/// `commit`: prints the new image's id, as docker does.
pub fn commit(engine: &Engine, a: CommitArgs) -> Result<u8, CliError> {
    let tag = a.repository.as_deref().map(super::image::parse_tag).transpose()?;
    let c = engine.container(&a.container)?;
    let o = strata_engine::containers::commit::CommitOptions {
        tag,
        author: a.author.unwrap_or_default(),
        message: a.message.unwrap_or_default(),
        changes: a.changes,
        pause: a.pause,
    };
    println!("{}", engine.commit_container(&c, &o)?);
    Ok(0)
}

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    pub src: String,
    pub dest: String,
}

/// `container:path` or a local path, as docker's splitCpArg: an absolute or `.`-led
/// argument is always local.
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

/// `cp`: one side in a container, the other local or a tar stream (`-`).
pub fn cp(engine: &Engine, a: CpArgs) -> Result<u8, CliError> {
    use strata_engine::containers::archive::{extract_at, write_path_tar, Extract};
    let (from, src) = split_cp_arg(&a.src);
    let (to, dest) = split_cp_arg(&a.dest);
    let io_err = |e: io::Error| CliError::usage(super::image::os_msg(&e));
    match (from, to) {
        (Some(_), Some(_)) => Err(CliError::usage("copying between containers is not supported")),
        (None, None) => Err(CliError::usage("must specify at least one container source")),
        (Some(name), None) => {
            let c = engine.container(name)?;
            if dest == "-" {
                let copied = engine.copy_from_container(&c, src, a.follow_link, |mut r| io::copy(&mut r, &mut io::stdout().lock()))?;
                copied.map_err(io_err)?;
                return Ok(0);
            }
            let d = std::path::Path::new(dest);
            if !d.is_dir() {
                let parent = d.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                if !parent.is_dir() {
                    return Err(CliError::usage(format!("invalid output path: directory {:?} does not exist", parent.display().to_string())));
                }
            }
            // A regular file comes straight into a staged file beside where it goes (see
            // copy_from_container_into); anything else as a tar.
            let base = std::path::Path::new(src.trim_end_matches('/')).file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let target = if d.is_dir() { d.join(&base) } else { d.to_path_buf() };
            let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let staged = dir.join(format!(".strata-cp-{}", strata_store::random_hex(6)));
            let file = std::fs::File::options().write(true).create_new(true).open(&staged).map_err(io_err)?;
            let res = engine.copy_from_container_into(&c, src, a.follow_link, &file, |r| extract_at(r, d, false, false));
            drop(file);
            let res = match res {
                Ok(None) => std::fs::rename(&staged, &target).map(|()| Ok(())).map_err(io_err),
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(e.into()),
            };
            let _ = std::fs::remove_file(&staged);
            match res? {
                Ok(()) => Ok(0),
                Err(Extract::Io(e)) => Err(io_err(e)),
                Err(e) => Err(CliError::usage(format!("{e:?}"))),
            }
        }
        (None, Some(name)) => {
            let c = engine.container(name)?;
            if src == "-" {
                let fed = engine.copy_to_container(&c, dest, true, a.archive, |mut w| io::copy(&mut io::stdin().lock(), &mut w))?;
                fed.map_err(io_err)?;
                return Ok(0);
            }
            let md = match std::fs::symlink_metadata(src) {
                Ok(md) => md,
                Err(e) => return Err(CliError::usage(format!("stat {src}: {}", super::image::os_msg(&e)))),
            };
            let is_file = md.is_file() || (a.follow_link && md.file_type().is_symlink() && std::path::Path::new(src).is_file());
            if is_file && !src.ends_with('/') {
                // A regular file goes in whole, copied in the kernel (no tar).
                let file = std::fs::File::open(src).map_err(io_err)?;
                let name = std::path::Path::new(src).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                engine.copy_file_to_container(&c, dest, a.archive, &file, &name)?;
                return Ok(0);
            }
            let src = src.to_string();
            let fed = engine.copy_to_container(&c, dest, false, a.archive, |w| write_path_tar(&src, a.follow_link, w))?;
            fed.map_err(io_err)?;
            Ok(0)
        }
    }
}

/// docker's `--detach-keys`: comma-separated `ctrl-<x>` or single characters.
fn parse_detach_keys(spec: Option<&str>) -> Result<Vec<u8>, CliError> {
    let spec = spec.unwrap_or("ctrl-p,ctrl-q");
    let bad = || CliError::usage(format!("Invalid detach keys ({spec}) provided"));
    let mut out = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        if let Some(x) = k.strip_prefix("ctrl-") {
            let b = match x.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Finds the detach sequence in a stdin stream, holding back a partial match so that
/// none of it reaches the container.
struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    fn new(keys: Vec<u8>) -> DetachMatcher {
        DetachMatcher { keys, matched: 0 }
    }

    /// What to send on, and whether the sequence completed.
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if !self.keys.is_empty() && b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if !self.keys.is_empty() && b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    pub container: String,
}

/// `attach`: the running container's stdio, until it exits or the detach keys.
pub fn attach(engine: &Engine, a: AttachArgs) -> Result<u8, CliError> {
    let keys = parse_detach_keys(a.detach_keys.as_deref())?;
    let c = engine.container(&a.container)?;
    if c.status == "paused" {
        return Err(CliError::from(EngineError::Conflict("You cannot attach to a paused container, unpause it first".into())));
    }
    let open_stdin = c.config.get("OpenStdin").and_then(Value::as_bool).unwrap_or(false);
    let spec = AttachSpec { stdin: !a.no_stdin && open_stdin, stdout: true, stderr: true };
    let stream = engine.attach_container(&c, spec)?;
    let code = relay(engine, &c, stream, spec, c.tty(), a.sig_proxy && !c.tty(), c.auto_remove(), Some(keys), true)?;
    Ok(code as u8)
}

#[cfg(test)]
mod detach_tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        assert_eq!(parse_detach_keys(None).unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys(Some("ctrl-a,x")).unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys(Some("ctrl-")).is_err());
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false), "a partial match is held back");
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false), "and released when it fails");
        assert_eq!(m.feed(b"\x10\x10\x11rest"), (b"\x10".to_vec(), true));
    }
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("BlockIO", "BLOCK I/O"),
    ("CPUPerc", "CPU %"),
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("MemPerc", "MEM %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("Name", "NAME"),
    ("NetIO", "NET I/O"),
    ("PIDs", "PIDS"),
];

/// `stats`: two readings a second apart (docker's CPU % needs a delta), then docker's
/// table; without `--no-stream`, again every second.
pub fn stats(engine: &Engine, a: StatsArgs) -> Result<u8, CliError> {
    use crate::format::units::{bytes_size, human_size};
    let named = !a.containers.is_empty();
    let pick = || -> Result<Vec<(String, Container)>, CliError> {
        if named {
            a.containers.iter().map(|n| Ok((n.clone(), engine.container(n)?))).collect()
        } else {
            Ok(engine.containers()?.into_iter().filter(|c| a.all || c.running()).map(|c| (c.id[..12].to_string(), c)).collect())
        }
    };
    let spec = ListFormat { default_table: "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}", headers: STATS_HEADERS };
    let mut prev: std::collections::HashMap<String, strata_engine::containers::stats::StatsSample> = pick()?
        .iter()
        .filter_map(|(_, c)| engine.container_stats(c).map(|s| (c.id.clone(), s)))
        .collect();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let mut rows = Vec::new();
        for (label, c) in pick()? {
            let now = engine.container_stats(&c);
            let (cpu, mem, memp, net, blk, pids) = match (&now, prev.get(&c.id)) {
                (Some(n), p) => {
                    let cpu = p.map_or(0.0, |p| n.cpu_percent(p));
                    let memp = if n.mem_limit > 0 { n.mem_usage as f64 / n.mem_limit as f64 * 100.0 } else { 0.0 };
                    (
                        cpu,
                        format!("{} / {}", bytes_size(n.mem_usage as f64), bytes_size(n.mem_limit as f64)),
                        memp,
                        format!("{} / {}", human_size(n.net_rx as f64), human_size(n.net_tx as f64)),
                        format!("{} / {}", human_size(n.blk_read as f64), human_size(n.blk_write as f64)),
                        n.pids,
                    )
                }
                (None, _) => (0.0, "0B / 0B".into(), 0.0, "0B / 0B".into(), "0B / 0B".into(), 0),
            };
            if let Some(n) = now {
                prev.insert(c.id.clone(), n);
            }
            let id = if a.no_trunc { c.id.clone() } else { c.id[..12].to_string() };
            rows.push(json!({
                "BlockIO": blk, "CPUPerc": format!("{cpu:.2}%"), "Container": label, "ID": id,
                "MemPerc": format!("{memp:.2}%"), "MemUsage": mem, "Name": c.name, "NetIO": net, "PIDs": pids.to_string(),
            }));
        }
        let out = format::render_list(a.format.as_deref(), &spec, &rows).map_err(|e| CliError::usage(e.to_string()))?;
        if a.no_stream {
            print!("{out}");
            return Ok(0);
        }
        print!("\x1b[2J\x1b[H{out}");
        let _ = io::stdout().flush();
    }
}

/// The resource limits `create`/`run` and `update` share.
#[derive(Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

impl LimitArgs {
    fn memory_bytes(&self) -> Result<Option<i64>, CliError> {
        self.memory.as_deref().map(|s| ram_in_bytes(s, "-m, --memory")).transpose()
    }

    fn nano_cpus(&self) -> Result<Option<i64>, CliError> {
        self.cpus
            .as_deref()
            .map(|c| c.parse::<f64>().map(|f| (f * 1e9) as i64).map_err(|_| CliError::usage(format!("invalid argument \"{c}\" for \"--cpus\" flag: failed to parse {c} as a rational number"))))
            .transpose()
    }
}

#[derive(Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `update`: prints each container updated, as docker's.
pub fn update(engine: &Engine, a: UpdateArgs) -> Result<u8, CliError> {
    let l = &a.limits;
    if l.memory.is_none() && l.cpus.is_none() && l.pids_limit.is_none() && a.restart.is_none() {
        return Err(CliError::usage("you must provide one or more flags when using this command"));
    }
    let o = strata_engine::containers::stats::UpdateOptions {
        memory: l.memory_bytes()?,
        nano_cpus: l.nano_cpus()?,
        pids_limit: l.pids_limit,
        restart: a.restart.clone(),
    };
    Ok(each(&a.containers, |n| engine.container(n).and_then(|c| engine.update_container(&c, &o))))
}

#[derive(Args)]
pub struct TopArgs {
    pub container: String,
    /// Options passed to ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `top`: docker's table (tabwriter minwidth 20, padding 3).
pub fn top(engine: &Engine, a: TopArgs) -> Result<u8, CliError> {
    let c = engine.container(&a.container)?;
    let (titles, rows) = engine.container_top(&c, &a.ps_args)?;
    let mut text = titles.join("\t") + "\n";
    for r in rows {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    print!("{}", crate::format::tabwriter::tabwrite(&text, 20, 3, ' '));
    Ok(0)
}

#[derive(Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn pause(engine: &Engine, a: PauseArgs) -> Result<u8, CliError> {
    Ok(each(&a.containers, |n| engine.container(n).and_then(|c| engine.pause_container(&c))))
}

pub fn unpause(engine: &Engine, a: PauseArgs) -> Result<u8, CliError> {
    Ok(each(&a.containers, |n| engine.container(n).and_then(|c| engine.unpause_container(&c))))
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn wait(engine: &Engine, a: WaitArgs) -> Result<u8, CliError> {
    let mut code = 0;
    for n in &a.containers {
        match engine.container(n).and_then(|c| engine.wait_container(&c)) {
            Ok(x) => println!("{x}"),
            Err(e) => {
                CliError::from(e).print();
                code = 1;
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn rm(engine: &Engine, a: RmArgs) -> Result<u8, CliError> {
    Ok(each(&a.containers, |n| engine.remove_container(n, a.force, a.volumes)))
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

/// `publish=`/`expose=` values: `80`, `80/udp`, `8000-8080/tcp`.
fn port_filter(v: &str) -> Option<(u16, u16, String)> {
    let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = ports.parse().ok()?;
            (p, p)
        }
    };
    Some((lo, hi, proto.to_string()))
}

pub fn ps(engine: &Engine, a: PsArgs) -> Result<u8, CliError> {
    let mut all = engine.containers()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filters {
        let (k, v) = f.split_once('=').ok_or_else(|| CliError::usage("bad format of filter (expected name=value)"))?;
        if !matches!(k, "status" | "name" | "id" | "label" | "ancestor" | "exited" | "before" | "since" | "network" | "publish" | "expose") {
            return Err(CliError { message: format!("invalid filter '{k}'"), ..CliError::usage("") }.engine());
        }
        if k == "status" && !matches!(v, "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead") {
            return Err(CliError { message: format!("invalid filter 'status={v}'"), ..CliError::usage("") }.engine());
        }
        filters.push((k.into(), v.into()));
    }
    let show_all = a.all || a.last > 0 || a.latest || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        all.truncate(limit as usize);
    }
    let ancestors: Vec<(String, Vec<String>)> = filters
        .iter()
        .filter(|(k, _)| k == "ancestor")
        .map(|(_, v)| {
            let ids: Vec<String> = engine.images().resolve(v).map(|i| vec![i.id.to_string()]).unwrap_or_default();
            (v.clone(), ids)
        })
        .collect();
    let mut rows = Vec::new();
    for c in &all {
        let state = display_state(c);
        if !show_all && !c.running() {
            continue;
        }
        let ok = filters.iter().all(|(k, v)| match k.as_str() {
            "status" => state == *v,
            "name" => c.name.contains(v.trim_start_matches('/')),
            "id" => c.id.starts_with(v.as_str()),
            "label" => {
                let labels = c.config.get("Labels").and_then(Value::as_object);
                match v.split_once('=') {
                    Some((lk, lv)) => labels.and_then(|l| l.get(lk)).and_then(Value::as_str) == Some(lv),
                    None => labels.is_some_and(|l| l.contains_key(v.as_str())),
                }
            }
            "exited" => state == "exited" && v.parse::<i32>().ok() == Some(c.exit_code),
            "ancestor" => ancestors.iter().any(|(name, ids)| ids.contains(&c.image_id) || c.image_name() == name),
            "before" => engine.container(v).map(|o| c.created < o.created).unwrap_or(false),
            "since" => engine.container(v).map(|o| c.created > o.created).unwrap_or(false),
            "network" => {
                let nets = engine.container_network_names(c);
                nets.iter().any(|n| n == v) || engine.networks().store().get(v).is_ok_and(|n| nets.contains(&n.name))
            }
            "publish" => port_filter(v).is_some_and(|(lo, hi, proto)| engine.api_ports(c).iter().any(|p| p.public_port != 0 && p.proto == proto && (lo..=hi).contains(&p.private_port))),
            "expose" => port_filter(v).is_some_and(|(lo, hi, proto)| {
                c.config.get("ExposedPorts").and_then(Value::as_object).is_some_and(|m| {
                    m.keys().filter_map(|k| strata_network::ports::parse_port_key(k)).any(|(p, pr)| pr.as_str() == proto && (lo..=hi).contains(&p))
                })
            }),
            _ => true,
        });
        if !ok {
            continue;
        }
        let created = super::image::parse_rfc3339(&c.created).unwrap_or(0);
        // The daemon quotes arguments with spaces; the CLI truncates and Go-quotes.
        let mut command = std::iter::once(c.path.clone())
            .chain(c.args.iter().map(|x| if x.contains(' ') { format!("'{x}'") } else { x.clone() }))
            .collect::<Vec<_>>()
            .join(" ");
        if !a.no_trunc {
            command = format::ellipsis(&command, 20);
        }
        let image = c.image_name().to_string();
        let labels: Vec<String> = c.config.get("Labels").and_then(Value::as_object).map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect()).unwrap_or_default();
        let size = if a.size {
            let rw = engine.container_size_rw(c);
            let img = c.image_id.parse().ok().and_then(|d| engine.images().get(&d).ok()).map(|i| i.size).unwrap_or(0);
            format!("{} (virtual {})", units::human_size(rw as f64), units::human_size((rw + img) as f64))
        } else {
            String::new()
        };
        rows.push(json!({
            "Command": format::gofmt::go_quote(&command),
            "CreatedAt": units::go_time(created, 0),
            "ID": if a.no_trunc { c.id.clone() } else { c.id[..12].to_string() },
            "Image": image,
            "Labels": labels.join(","),
            "LocalVolumes": "0",
            "Mounts": "",
            "Names": c.name,
            "Networks": engine.container_network_names(c).join(","),
            "Ports": format::ports::display_ports(&engine.api_ports(c)),
            "RunningFor": units::ago(created, now),
            "Size": size,
            "State": state,
            "Status": status_text(c, now),
        }));
    }
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let spec = ListFormat {
        default_table: default,
        headers: CONTAINER_HEADERS,
    };
    super::print_list(a.quiet, a.format.as_deref(), &spec, &rows)
}

fn display_state(c: &Container) -> String {
    if c.status == "exited" && c.finished_at == strata_engine::containers::ZERO_TIME {
        "created".into()
    } else {
        c.status.clone()
    }
}

/// docker's STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`.
pub fn status_text(c: &Container, now: i64) -> String {
    let since = |t: &str| super::image::parse_rfc3339(t).map(|s| units::human_duration(std::time::Duration::from_secs((now - s).max(0) as u64))).unwrap_or_default();
    match display_state(c).as_str() {
        "running" => format!("Up {}", since(&c.started_at)),
        "paused" => format!("Up {} (Paused)", since(&c.started_at)),
        "restarting" => format!("Restarting ({}) {} ago", c.exit_code, since(&c.finished_at)),
        "exited" => format!("Exited ({}) {} ago", c.exit_code, since(&c.finished_at)),
        "created" => "Created".into(),
        "dead" => "Dead".into(),
        other => other.to_string(),
    }
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    pub container: String,
}

fn since_cutoff(s: &str) -> Result<i64, CliError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if let Some(t) = super::image::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| CliError::usage(format!("invalid value for \"since\": failed to parse value as time or duration: \"{s}\"")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(CliError::usage(format!("invalid value for \"since\": failed to parse value as time or duration: \"{s}\""))),
    };
    Ok(now - secs)
}

#[derive(Args)]
pub struct DiffArgs {
    pub container: String,
}

/// `diff`: one `A`/`C`/`D` line per change of the writable layer, parents first.
pub fn diff(engine: &Engine, a: DiffArgs) -> Result<u8, CliError> {
    let c = engine.container(&a.container)?;
    let mut out = String::new();
    for ch in engine.container_changes(&c)? {
        let k = match ch.kind {
            strata_snapshot::ChangeKind::Added => 'A',
            strata_snapshot::ChangeKind::Modified => 'C',
            strata_snapshot::ChangeKind::Deleted => 'D',
        };
        out.push_str(&format!("{k} {}\n", ch.path));
    }
    print!("{out}");
    Ok(0)
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

/// `export`: the container's filesystem as a tar; to a file through a temporary name
/// and a rename, so a failed export leaves no torn archive.
pub fn export(engine: &Engine, a: ExportArgs) -> Result<u8, CliError> {
    use std::os::fd::AsFd;
    let c = engine.container(&a.container)?;
    let Some(path) = a.output else {
        if super::image::unsafe_stdout_is_tty() {
            return Err(CliError::usage("cowardly refusing to save to a terminal. Use the -o flag or redirect"));
        }
        engine.export_container(&c, std::io::stdout().as_fd())?;
        return Ok(0);
    };
    let tmp = format!("{path}.strata-tmp");
    let open_err = |e: std::io::Error| CliError::usage(format!("failed to export container: open {tmp}: {}", super::image::os_msg(&e)));
    let f = std::fs::File::create(&tmp).map_err(open_err)?;
    let res = engine.export_container(&c, f.as_fd()).map_err(CliError::from).and_then(|()| {
        f.sync_all().map_err(|e| CliError::usage(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| CliError::usage(format!("failed to export container: {}", super::image::os_msg(&e))))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|()| 0)
}

#[derive(Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

/// `rename`: docker prints the daemon's error, then its own line naming the container.
pub fn rename(engine: &Engine, a: RenameArgs) -> Result<u8, CliError> {
    let res = engine.container(&a.container).and_then(|c| engine.rename_container(&c, &a.new_name));
    if let Err(e) = res {
        CliError::from(e).print();
        return Err(CliError::usage(format!("Error: failed to rename container named {}", a.container)));
    }
    Ok(0)
}

pub fn logs(engine: &Engine, a: LogsArgs) -> Result<u8, CliError> {
    let c = engine.container(&a.container)?;
    let path = engine.data_root().join("containers").join(&c.id).join(format!("{}-json.log", c.id));
    let since = a.since.as_deref().map(since_cutoff).transpose()?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" => None,
        n => Some(n.parse::<i64>().map(|v| if v < 0 { usize::MAX } else { v as usize }).map_err(|_| CliError::usage(format!("invalid value for \"tail\": {n}")))?),
    };
    let mut f = std::fs::File::open(&path).map_err(|e| CliError::usage(format!("open {}: {}", path.display(), super::image::os_msg(&e))))?;
    let mut data = String::new();
    f.read_to_string(&mut data).map_err(|e| CliError::usage(e.to_string()))?;
    let lines: Vec<&str> = data.lines().collect();
    let start = match tail {
        Some(n) if n < lines.len() => lines.len() - n,
        _ => 0,
    };
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut emit = |line: &str| {
        let Ok(v) = serde_json::from_str::<Value>(line) else { return };
        let time = v["time"].as_str().unwrap_or("");
        if let Some(s) = since {
            if super::image::parse_rfc3339(time).is_some_and(|t| t < s) {
                return;
            }
        }
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { &mut err } else { &mut out };
        if a.timestamps {
            let _ = write!(w, "{} ", docker_log_time(time));
        }
        let _ = w.write_all(text.as_bytes());
    };
    for l in &lines[start..] {
        emit(l);
    }
    if a.follow {
        let mut pos = data.len() as u64;
        let mut pending = String::new();
        loop {
            let running = engine.container(&c.id).map(|c| c.running()).unwrap_or(false);
            let mut f = std::fs::File::open(&path).map_err(|e| CliError::usage(e.to_string()))?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(pos)).ok();
            let mut more = String::new();
            let n = f.read_to_string(&mut more).unwrap_or(0);
            pos += n as u64;
            pending.push_str(&more);
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let Ok(v) = serde_json::from_str::<Value>(line.trim_end()) else { continue };
                let text = v["log"].as_str().unwrap_or("");
                let w: &mut dyn Write = if v["stream"] == "stderr" { &mut err } else { &mut out };
                if a.timestamps {
                    let _ = write!(w, "{} ", docker_log_time(v["time"].as_str().unwrap_or("")));
                }
                let _ = w.write_all(text.as_bytes());
                let _ = w.flush();
            }
            if !running && n == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    Ok(0)
}

/// docker prints log times with a fixed 9-digit fraction.
fn docker_log_time(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
        Err(_) => t.to_string(),
    }
}

#[derive(Args)]
pub struct ContainerPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn prune(engine: &Engine, a: ContainerPruneArgs) -> Result<u8, CliError> {
    if !a.force && super::image::stdin_is_tty() {
        print!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush().ok();
        let mut line = String::new();
        io::stdin().read_line(&mut line).ok();
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let ids = engine.prune_containers()?;
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}

/// `strata __supervise ID [--attach 110]`: the supervisor process (see strata-runtime).
pub fn supervise(engine: &Engine, id: &str, attach: Option<&str>) -> u8 {
    let attach = attach.map(|s| {
        let b = s.as_bytes();
        AttachSpec { stdin: b.first() == Some(&b'1'), stdout: b.get(1) == Some(&b'1'), stderr: b.get(2) == Some(&b'1') }
    });
    strata_engine::containers::host::supervise(engine, id, attach) as u8
}

/// `ps --format` fields and their table headers (also `system df -v`).
pub(super) const CONTAINER_HEADERS: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];
