//! Runs one container from a `ContainerSpec` JSON with one executor, single-threaded, as
//! the supervisor will: write the bundle, become a child subreaper, start, optionally
//! signal / pause it, collect its output, reap the init, delete. Prints one JSON object
//! with what happened (used by the integration tests; also handy by hand).
//!
//! ```text
//! run_container --runtime builtin|runc|/path --state DIR --bundle DIR --rootfs DIR
//!               --spec SPEC.json [--tty] [--action ACTION@MS]...
//! ACTION: kill:SIG | killall:SIG | pause | resume | alive | start-again
//! ```
//! The rootfs is a plain directory (the runtimes bind it onto itself before pivot_root).

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use serde_json::json;
use strata_runtime::spec::{write_bundle, ContainerSpec};
use strata_runtime::{executor_for, Io};

struct Args {
    runtime: String,
    state: PathBuf,
    bundle: PathBuf,
    rootfs: PathBuf,
    spec: PathBuf,
    tty: bool,
    actions: Vec<(String, u64)>,
}

fn parse() -> Args {
    let mut a = Args {
        runtime: "builtin".into(),
        state: PathBuf::new(),
        bundle: PathBuf::new(),
        rootfs: PathBuf::new(),
        spec: PathBuf::new(),
        tty: false,
        actions: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--runtime" => a.runtime = val(),
            "--state" => a.state = val().into(),
            "--bundle" => a.bundle = val().into(),
            "--rootfs" => a.rootfs = val().into(),
            "--spec" => a.spec = val().into(),
            "--tty" => a.tty = true,
            "--action" => {
                let v = val();
                let (act, ms) = v.split_once('@').unwrap_or_else(|| die("--action ACTION@MS"));
                a.actions.push((act.to_string(), ms.parse().unwrap_or_else(|_| die("bad ms"))));
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("run_container: {msg}");
    std::process::exit(2)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap_or_else(|e| die(&format!("pipe: {e}")))
}

/// Reads every fd until EOF (or EIO: a pty whose slave side is gone), or the deadline.
fn drain(fds: Vec<OwnedFd>, deadline: Instant) -> (Vec<Vec<u8>>, bool) {
    let mut open: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let mut out = vec![Vec::new(); open.len()];
    let mut buf = [0u8; 8192];
    while open.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, true);
        }
        let idx: Vec<usize> = (0..open.len()).filter(|&i| open[i].is_some()).collect();
        let ready: Vec<usize> = {
            let mut pfds: Vec<PollFd<'_>> =
                idx.iter().map(|&i| PollFd::new(open[i].as_ref().unwrap(), PollFlags::IN)).collect();
            let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: 0 };
            match poll(&mut pfds, Some(&ts)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => die(&format!("poll: {e}")),
            }
            idx.iter().zip(pfds.iter()).filter(|(_, p)| !p.revents().is_empty()).map(|(&i, _)| i).collect()
        };
        for i in ready {
            match rustix::io::read(open[i].as_ref().unwrap(), &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => open[i] = None,
                Ok(n) => out[i].extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => die(&format!("read: {e}")),
            }
        }
    }
    (out, false)
}

/// Whether `pid` is running (not a zombie, not gone), without reaping it.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

fn freezer_state(cgroup: &str) -> String {
    fs::read_to_string(format!("/sys/fs/cgroup/freezer{cgroup}/freezer.state"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

fn main() {
    let a = parse();
    let spec: ContainerSpec = serde_json::from_slice(&fs::read(&a.spec).unwrap_or_else(|e| die(&format!("read spec: {e}"))))
        .unwrap_or_else(|e| die(&format!("parse spec: {e}")));
    let id = spec.id.clone();
    let mut report = serde_json::Map::new();

    if let Err(e) = write_bundle(&spec, &a.bundle, &a.rootfs) {
        report.insert("start_error".into(), json!(e.to_string()));
        println!("{}", serde_json::Value::Object(report));
        return;
    }
    // SAFETY: a plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        die("PR_SET_CHILD_SUBREAPER failed");
    }
    // As the supervisor: SIGCHLD blocked (it reads a signalfd), SIGPIPE ignored (Rust's
    // default). Neither may leak into the container.
    // SAFETY: signal mask of this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let runtime = if a.runtime == "builtin" { None } else { Some(a.runtime.as_str()) };
    let exec = executor_for(runtime, &a.state).unwrap_or_else(|e| die(&e.to_string()));

    let (io, readers) = if a.tty {
        (Io::Terminal, Vec::new())
    } else {
        let (or, ow) = pipe();
        let (er, ew) = pipe();
        (Io::Pipes { stdin: None, stdout: ow, stderr: ew }, vec![or, er])
    };
    let t0 = Instant::now();
    let started = exec.start(&id, &a.bundle, io);
    let start_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            report.insert("start_error".into(), json!(e.to_string()));
            report.insert("state_dir_left".into(), json!(a.state.join(&id).exists()));
            println!("{}", serde_json::Value::Object(report));
            return;
        }
    };
    report.insert("start_ms".into(), json!(start_ms));
    report.insert("pid".into(), json!(started.pid));
    report.insert("is_child".into(), json!(fs::read_to_string(format!("/proc/{}/status", started.pid))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("PPid:")).map(|l| l[5..].trim().to_string()))
        == Some(std::process::id().to_string())));

    let mut action_log = Vec::new();
    for (act, ms) in &a.actions {
        let at = t0 + Duration::from_millis(*ms);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let res = match act.split_once(':') {
            Some(("kill", sig)) => exec.kill(&id, sig.parse().unwrap_or(15), false).map(|_| String::new()),
            Some(("killall", sig)) => exec.kill(&id, sig.parse().unwrap_or(15), true).map(|_| String::new()),
            _ if act == "pause" => exec.pause(&id).map(|_| freezer_state(&spec.cgroup_path)),
            _ if act == "resume" => exec.resume(&id).map(|_| freezer_state(&spec.cgroup_path)),
            _ if act == "alive" => Ok(alive(started.pid).to_string()),
            // A second start with the same id must fail and leave the first alone.
            _ if act == "start-again" => {
                let null = || OwnedFd::from(fs::File::options().write(true).open("/dev/null").unwrap());
                match exec.start(&id, &a.bundle, Io::Pipes { stdin: None, stdout: null(), stderr: null() }) {
                    Ok(s) => Ok(format!("started again: pid {}", s.pid)),
                    Err(e) => Err(e),
                }
            }
            _ => die(&format!("unknown action {act}")),
        };
        action_log.push(match res {
            Ok(s) => json!({"action": act, "ok": true, "result": s}),
            Err(e) => json!({"action": act, "ok": false, "error": e.to_string()}),
        });
    }
    report.insert("actions".into(), json!(action_log));

    let fds = match started.console {
        Some(master) => vec![master],
        None => readers,
    };
    let (out, timed_out) = drain(fds, Instant::now() + Duration::from_secs(30));
    if timed_out {
        let _ = exec.kill(&id, libc::SIGKILL, true);
    }
    let text = |b: &Vec<u8>| String::from_utf8_lossy(b).to_string();
    if a.tty {
        report.insert("tty".into(), json!(text(&out[0])));
    } else {
        report.insert("stdout".into(), json!(text(&out[0])));
        report.insert("stderr".into(), json!(text(&out[1])));
    }
    report.insert("timed_out".into(), json!(timed_out));

    let mut status = 0;
    // SAFETY: waitpid on the init, our (reparented) child.
    let r = unsafe { libc::waitpid(started.pid, &mut status, 0) };
    if r != started.pid {
        report.insert("wait_error".into(), json!(std::io::Error::last_os_error().to_string()));
    } else if libc::WIFEXITED(status) {
        report.insert("exit_code".into(), json!(libc::WEXITSTATUS(status)));
    } else if libc::WIFSIGNALED(status) {
        report.insert("signal".into(), json!(libc::WTERMSIG(status)));
    }
    // Reap anything else reparented to us (nothing, normally).
    // SAFETY: non-blocking waitpid on our children.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}

    if let Err(e) = exec.delete(&id, false) {
        report.insert("delete_error".into(), json!(e.to_string()));
        let _ = exec.delete(&id, true);
    }
    report.insert("state_dir_left".into(), json!(a.state.join(&id).exists()));
    let line = serde_json::Value::Object(report).to_string();
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}
