//! Real containers, as root, with both executors: a busybox root filesystem in a plain
//! directory, driven by the single-threaded `run_container` example (libcontainer must
//! not run in this multi-threaded test harness). Each test cleans up in a Drop guard
//! (processes in its cgroup, the cgroups, the runtime state, the files), even on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_runtime::spec::{BindMount, ContainerSpec, ProcessSpec, Resources};

/// One container at a time: tests share the `/strata-test` cgroup parent, which a
/// finishing test removes, and start timings stay meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

const CGROUP_PARENT: &str = "/strata-test";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn executors() -> Vec<&'static str> {
    let mut v = vec!["builtin"];
    if strata_runtime::executor::find_in_path("runc").is_some() {
        v.push("runc");
    } else {
        eprintln!("runc not in PATH: testing the built-in executor only");
    }
    v
}

fn helper() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/examples/run_container
    let p = exe.parent().and_then(Path::parent).expect("target dir").join("examples").join("run_container");
    assert!(p.exists(), "{} missing: `cargo test -p strata-runtime` builds it (or `cargo build --example run_container`)", p.display());
    // `cargo test --test containers` does not rebuild examples: refuse a stale helper.
    let built = fs::metadata(&p).and_then(|m| m.modified()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = Vec::new();
    let mut dirs = vec![root.join("src"), root.join("examples")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") && e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t > built) {
                newest.push(path);
            }
        }
    }
    assert!(newest.is_empty(), "{} is older than {newest:?}: run `cargo build -p strata-runtime --example run_container`", p.display());
    p
}

fn random_hex() -> String {
    strata_store::random_hex(6)
}

/// A busybox root filesystem, bundle and state directories, and a cgroup path, all
/// removed on drop (with any container processes still in the cgroup).
struct Fixture {
    dir: PathBuf,
    rootfs: PathBuf,
    name: String,
    runtime: &'static str,
}

impl Fixture {
    fn new(runtime: &'static str, test: &str) -> Fixture {
        let name = format!("{test}-{}", random_hex());
        let dir = PathBuf::from(format!("/var/tmp/strata-runtime-test-{name}"));
        fs::create_dir_all(&dir).unwrap();
        let f = Fixture { rootfs: dir.join("rootfs"), dir, name, runtime };
        let tar = f.dir.join("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let st = Command::new("sh").arg(&script).arg(&tar).status().expect("run busybox-image.sh");
        assert!(st.success(), "busybox-image.sh failed");
        fs::create_dir_all(&f.rootfs).unwrap();
        let st = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&f.rootfs).status().unwrap();
        assert!(st.success(), "tar -xf failed");
        fs::remove_file(&tar).unwrap();
        f
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cgroup(&self) -> String {
        format!("{CGROUP_PARENT}/{}", self.name)
    }

    fn spec(&self, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: self.name.clone(),
            hostname: "strata-test".into(),
            process: ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec![PATH_ENV.into()],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                terminal: false,
                no_new_privileges: false,
            },
            readonly_rootfs: false,
            binds: vec![],
            tmpfs: vec![],
            resources: Resources { shm_size: 64 << 20, ..Default::default() },
            cgroup_path: self.cgroup(),
            init: None,
            network: Default::default(),
            privileged: false,
            pid: Default::default(),
        }
    }

    /// Cgroup directories of this container that exist.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for c in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = c.path().join(self.cgroup().trim_start_matches('/'));
            if p.exists() {
                v.push(p);
            }
        }
        v
    }

    /// Runs the container to completion through the helper; returns its report.
    fn run(&self, spec: &ContainerSpec, extra: &[&str]) -> Value {
        let spec_path = self.dir.join("spec.json");
        fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
        let mut cmd = Command::new(helper());
        cmd.arg("--runtime")
            .arg(self.runtime)
            .arg("--state")
            .arg(self.state())
            .arg("--bundle")
            .arg(self.dir.join("bundle"))
            .arg("--rootfs")
            .arg(&self.rootfs)
            .arg("--spec")
            .arg(&spec_path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn run_container");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("run_container timed out");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut out = String::new();
        use std::io::Read;
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad report {out:?}: {e}"));
        eprintln!("[{}] {report}", self.runtime);
        report
    }

    /// What every run must leave: nothing of the container in cgroups or runtime state.
    fn assert_gone(&self, report: &Value) {
        assert_eq!(report["delete_error"], Value::Null, "{report}");
        assert_eq!(report["state_dir_left"], Value::Bool(false), "{report}");
        assert!(self.cgroup_dirs().is_empty(), "cgroups left: {:?}", self.cgroup_dirs());
        let leftovers: Vec<_> = fs::read_dir(self.state()).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(leftovers.is_empty(), "state root not empty: {leftovers:?}");
    }

    fn run_ok(&self, spec: &ContainerSpec, extra: &[&str]) -> Value {
        let r = self.run(spec, extra);
        assert_eq!(r["start_error"], Value::Null, "{r}");
        assert_eq!(r["timed_out"], Value::Bool(false), "{r}");
        assert_eq!(r["is_child"], Value::Bool(true), "init not our child: {r}");
        self.assert_gone(&r);
        r
    }
}

fn kill_cgroup(dir: &Path) {
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        for p in pids {
            // SAFETY: signalling a leftover container process.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The runtime's own cleanup first, then by hand whatever survived it.
        if self.state().join(&self.name).exists() {
            if self.runtime == "runc" {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(self.state())
                    .args(["delete", "--force", &self.name])
                    .stderr(Stdio::null())
                    .status();
            } else if let Ok(e) = strata_runtime::executor_for(None, &self.state()) {
                let _ = e.delete(&self.name, true);
            }
        }
        for d in self.cgroup_dirs() {
            kill_cgroup(&d);
            for _ in 0..50 {
                if fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for c in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            // Only when empty; the next test recreates it.
            let _ = fs::remove_dir(c.path().join(CGROUP_PARENT.trim_start_matches('/')));
        }
        // No mount is ever made on the host, but never delete through one.
        let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounted.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(self.dir.to_str().unwrap()) {
                    let _ = rustix::mount::unmount(mp, rustix::mount::UnmountFlags::DETACH);
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn echo_hello_through_a_pipe() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "echo");
        let r = f.run_ok(&f.spec(&["echo", "hello"]), &[]);
        assert_eq!(r["stdout"], "hello\n", "{rt}");
        assert_eq!(r["stderr"], "", "{rt}");
        assert_eq!(r["exit_code"], 0, "{rt}");
    }
}

#[test]
fn exit_code() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "exit");
        let r = f.run_ok(&f.spec(&["sh", "-c", "exit 3"]), &[]);
        assert_eq!(r["exit_code"], 3, "{rt}");
    }
}

#[test]
fn stdin_is_dev_null() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "stdin");
        let r = f.run_ok(&f.spec(&["sh", "-c", "cat; readlink /proc/self/fd/0; echo done"]), &[]);
        assert_eq!(r["stdout"], "/dev/null\ndone\n", "{rt}");
    }
}

/// The caller's blocked SIGCHLD and ignored SIGPIPE do not leak into the container.
#[test]
fn clean_signal_state() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "signals");
        let r = f.run_ok(&f.spec(&["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"]), &[]);
        let out = r["stdout"].as_str().unwrap();
        let mask = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{rt}: {out}"));
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "{rt}: {out}");
        assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{rt}: SIGPIPE ignored: {out}");
    }
}

/// SIGTERM to a PID 1 without a handler is ignored (as under docker, where `stop`
/// escalates to SIGKILL); SIGKILL ends it, and the init is reaped as signalled.
#[test]
fn sigterm_ignored_by_pid1_then_sigkill() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "kill");
        let r = f.run_ok(
            &f.spec(&["sleep", "100"]),
            &["--action", "kill:15@300", "--action", "alive@800", "--action", "kill:9@850"],
        );
        let acts = r["actions"].as_array().unwrap();
        assert!(acts.iter().all(|a| a["ok"] == true), "{rt}: {r}");
        assert_eq!(acts[1]["result"], "true", "{rt}: PID 1 died of SIGTERM: {r}");
        assert_eq!(r["signal"], 9, "{rt}: {r}");
        assert_eq!(r["exit_code"], Value::Null, "{rt}");
    }
}

/// `kill --all` reaches the other processes: the sleep dies of SIGTERM, the shell (PID 1,
/// which ignores it) sees `wait` return 128+15.
#[test]
fn kill_all_signals_every_process() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "killall");
        let r = f.run_ok(&f.spec(&["sh", "-c", "sleep 100 & wait $!"]), &["--action", "killall:15@400"]);
        assert_eq!(r["actions"][0]["ok"], true, "{rt}: {r}");
        assert_eq!(r["exit_code"], 143, "{rt}: {r}");
    }
}

#[test]
fn hostname() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "hostname");
        let mut s = f.spec(&["hostname"]);
        s.hostname = "box-42".into();
        let r = f.run_ok(&s, &[]);
        assert_eq!(r["stdout"], "box-42\n", "{rt}");
    }
}

#[test]
fn user_and_groups() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "user");
        let mut s = f.spec(&["sh", "-c", "id -u; id -g; id -G"]);
        s.process.uid = 65534;
        s.process.gid = 65534;
        s.process.additional_gids = vec![1234];
        let r = f.run_ok(&s, &[]);
        assert_eq!(r["stdout"], "65534\n65534\n65534 1234\n", "{rt}: {r}");
    }
}

#[test]
fn process_is_pid_1() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "pid1");
        let r = f.run_ok(&f.spec(&["cat", "/proc/1/cmdline"]), &[]);
        assert_eq!(r["stdout"], "cat\u{0}/proc/1/cmdline\u{0}", "{rt}");
    }
}

#[test]
fn default_devices_and_dev_mounts() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "dev");
        let r = f.run_ok(&f.spec(&["sh", "-c", "ls /dev; echo ---; cat /proc/mounts; echo x > /dev/null && head -c 4 /dev/zero | wc -c"]), &[]);
        let out = r["stdout"].as_str().unwrap();
        let (ls, rest) = out.split_once("---\n").unwrap();
        let entries: Vec<&str> = ls.split_whitespace().collect();
        for d in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx"] {
            assert!(entries.contains(&d), "{rt}: /dev/{d} missing: {entries:?}");
        }
        assert!(!entries.contains(&"console"), "{rt}: /dev/console without a terminal");
        let shm = rest.lines().find(|l| l.starts_with("shm /dev/shm tmpfs ")).unwrap_or_else(|| panic!("{rt}: no /dev/shm: {rest}"));
        assert!(shm.contains("nosuid,nodev,noexec") && shm.contains("size=65536k"), "{rt}: {shm}");
        assert!(rest.contains("/dev/mqueue mqueue"), "{rt}: {rest}");
        assert!(rest.contains("/sys sysfs ro,"), "{rt}: {rest}");
        assert!(rest.trim_end().ends_with('4'), "{rt}: {rest}");
    }
}

#[test]
fn terminal() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "tty");
        let mut s = f.spec(&["sh", "-c", "tty; ls /dev/console && echo hello"]);
        s.process.terminal = true;
        let r = f.run_ok(&s, &["--tty"]);
        assert_eq!(r["tty"], "/dev/pts/0\r\n/dev/console\r\nhello\r\n", "{rt}: {r}");
        assert_eq!(r["exit_code"], 0, "{rt}");
    }
}

#[test]
fn proc_sys_is_read_only_and_masked_paths_are_empty() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "procsys");
        let r = f.run_ok(
            // Masked: files read empty (/dev/null over them), directories list empty (a
            // read-only tmpfs); paths the host lacks are skipped by the runtimes.
            &f.spec(&["sh", "-c", "cat /proc/keys /proc/timer_list /proc/interrupts | wc -c; find /sys/firmware /proc/acpi -mindepth 1 | wc -l; echo 1 > /proc/sys/vm/drop_caches"]),
            &[],
        );
        assert_ne!(r["exit_code"], 0, "{rt}: {r}");
        assert_eq!(r["stdout"], "0\n0\n", "{rt}: {r}");
        assert!(r["stderr"].as_str().unwrap().contains("Read-only file system"), "{rt}: {r}");
    }
}

#[test]
fn read_only_rootfs() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "rootro");
        let mut s = f.spec(&["touch", "/x"]);
        s.readonly_rootfs = true;
        let r = f.run_ok(&s, &[]);
        assert_eq!(r["exit_code"], 1, "{rt}: {r}");
        assert!(r["stderr"].as_str().unwrap().contains("Read-only file system"), "{rt}: {r}");
        assert!(!f.rootfs.join("x").exists());
        // Without --read-only the same write works.
        let r = f.run_ok(&f.spec(&["touch", "/x"]), &[]);
        assert_eq!(r["exit_code"], 0, "{rt}: {r}");
        assert!(f.rootfs.join("x").exists());
    }
}

#[test]
fn bind_mounts() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "binds");
        let ro = f.dir.join("ro");
        let rw = f.dir.join("rw");
        fs::create_dir_all(&ro).unwrap();
        fs::create_dir_all(&rw).unwrap();
        fs::write(ro.join("file"), "from host\n").unwrap();
        let mut s = f.spec(&["sh", "-c", "cat /data/ro/file; echo written > /data/rw/out; touch /data/ro/nope"]);
        s.binds = vec![
            BindMount { source: rw.clone(), destination: "/data/rw".into(), readonly: false },
            BindMount { source: ro.clone(), destination: "/data/ro".into(), readonly: true },
        ];
        let r = f.run_ok(&s, &[]);
        assert_eq!(r["stdout"], "from host\n", "{rt}: {r}");
        assert!(r["stderr"].as_str().unwrap().contains("Read-only file system"), "{rt}: {r}");
        assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "written\n");
    }
}

#[test]
fn resources_reach_the_cgroups() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "res");
        let mut s = f.spec(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
             /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max; grep :memory: /proc/self/cgroup | cut -d: -f3; \
             cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo no-swap-accounting",
        ]);
        s.resources.memory = Some(64 << 20);
        s.resources.cpu_quota = Some(50_000);
        s.resources.pids_limit = Some(100);
        let r = f.run_ok(&s, &[]);
        // The cgroup namespace makes the container's cgroups its root.
        // docker's default swap: as much as memory (memory+swap = 2 × memory).
        let swap = if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() { "134217728" } else { "no-swap-accounting" };
        assert_eq!(r["stdout"], format!("67108864\n50000\n100000\n100\n/\n{swap}\n"), "{rt}: {r}");
    }
}

#[test]
fn network_namespace_and_sysctls() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "net");
        let r = f.run_ok(
            &f.spec(&["sh", "-c", "ls /sys/class/net; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range"]),
            &[],
        );
        assert_eq!(r["stdout"], "lo\n0\n0\t2147483647\n", "{rt}: {r}");
    }
}

#[test]
fn pause_and_resume() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "pause");
        let r = f.run_ok(&f.spec(&["sleep", "100"]), &["--action", "pause@200", "--action", "resume@400", "--action", "kill:9@500"]);
        let acts = r["actions"].as_array().unwrap();
        assert_eq!(acts[0]["result"], "FROZEN", "{rt}: {r}");
        assert_eq!(acts[1]["result"], "THAWED", "{rt}: {r}");
        assert_eq!(r["signal"], 9, "{rt}: {r}");
    }
}

#[test]
fn missing_command_fails_start_and_leaves_nothing() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "nocmd");
        let r = f.run(&f.spec(&["no-such-command"]), &[]);
        let err = r["start_error"].as_str().unwrap_or_else(|| panic!("{rt}: started: {r}"));
        assert!(err.contains("no-such-command") && err.contains("not found"), "{rt}: {err}");
        assert!(err.starts_with(&format!("container {}: create failed", f.name)), "{rt}: {err}");
        f.assert_gone(&r);
    }
}

#[test]
fn duplicate_id_is_refused_and_harmless() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "dup");
        let r = f.run_ok(&f.spec(&["sleep", "100"]), &["--action", "start-again@200", "--action", "alive@300", "--action", "kill:9@350"]);
        let acts = r["actions"].as_array().unwrap();
        assert_eq!(acts[0]["ok"], false, "{rt}: {r}");
        assert!(acts[0]["error"].as_str().unwrap().starts_with(&format!("container {}: create failed: ", f.name)), "{rt}: {r}");
        assert_eq!(acts[1]["result"], "true", "{rt}: first container harmed: {r}");
        assert_eq!(r["signal"], 9, "{rt}: {r}");
    }
}

/// The guard itself: a helper killed mid-run abandons a running container; dropping the
/// fixture removes its processes, cgroups and state.
#[test]
fn guard_cleans_up_an_abandoned_container() {
    let _l = serial();
    for rt in executors() {
        let f = Fixture::new(rt, "abandon");
        let spec_path = f.dir.join("spec.json");
        fs::write(&spec_path, serde_json::to_vec(&f.spec(&["sleep", "100"])).unwrap()).unwrap();
        let mut child = Command::new(helper())
            .args(["--runtime", rt, "--state"])
            .arg(f.state())
            .arg("--bundle")
            .arg(f.dir.join("bundle"))
            .arg("--rootfs")
            .arg(&f.rootfs)
            .arg("--spec")
            .arg(&spec_path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.cgroup_dirs().iter().all(|d| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().is_empty()) {
            assert!(Instant::now() < deadline, "{rt}: container never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let dirs = f.cgroup_dirs();
        let pids: Vec<i32> = dirs
            .iter()
            .flat_map(|d| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect::<Vec<_>>())
            .collect();
        assert!(!pids.is_empty() && f.state().join(&f.name).exists(), "{rt}");
        drop(f);
        assert!(dirs.iter().all(|d| !d.exists()), "{rt}: cgroups left");
        let running = |p: &i32| {
            fs::read_to_string(format!("/proc/{p}/stat")).map(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z')).unwrap_or(false)
        };
        assert!(!pids.iter().any(running), "{rt}: processes left: {pids:?}");
    }
}

/// Not a test: how long `start` takes (create → init running) with each executor, and
/// `runc run` of the same bundle end to end. `cargo test -p strata-runtime --test
/// containers -- --ignored --nocapture start_timing`
#[test]
#[ignore]
fn start_timing() {
    let _l = serial();
    const N: usize = 15;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let mut lines = Vec::new();
    for rt in executors() {
        let f = Fixture::new(rt, "timing");
        let (mut start, mut total) = (Vec::new(), Vec::new());
        for _ in 0..N {
            let t = Instant::now();
            let r = f.run_ok(&f.spec(&["true"]), &[]);
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            start.push(r["start_ms"].as_f64().unwrap());
        }
        let (m, lo, hi) = median(start);
        lines.push(format!("{rt:8} start (create→running): median {m:.1} ms  [min {lo:.1}, max {hi:.1}]"));
        let (m, lo, hi) = median(total);
        lines.push(format!("{rt:8} helper end to end (bundle+start+wait+delete, process spawn): median {m:.1} ms  [min {lo:.1}, max {hi:.1}]"));
    }
    if executors().contains(&"runc") {
        let f = Fixture::new("runc", "runcrun");
        let bundle = f.dir.join("bundle");
        strata_runtime::spec::write_bundle(&f.spec(&["true"]), &bundle, &f.rootfs).unwrap();
        let mut total = Vec::new();
        for i in 0..N {
            let t = Instant::now();
            let st = Command::new("runc")
                .arg("--root")
                .arg(f.state())
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("{}-{i}", f.name))
                .stdin(Stdio::null())
                .status()
                .unwrap();
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(st.success());
        }
        let (m, lo, hi) = median(total);
        lines.push(format!("runc run (create+start+wait+delete of `true`): median {m:.1} ms  [min {lo:.1}, max {hi:.1}]"));
    }
    for l in &lines {
        eprintln!("{l}");
    }
}
