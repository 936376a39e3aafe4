//! The supervisor's process: `strata __supervise <id>` lands here. It becomes the
//! supervisor, starts the container, and records every state change in the database.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::params;
use serde_json::Value;
use strata_runtime::executor::{executor_for, ExecSpec, Executor};
use strata_runtime::protocol::{ExecProcess, Request};
use strata_runtime::spec::{BindMount, ContainerSpec, ProcessSpec, Resources, TmpfsMount};
use strata_runtime::supervisor::{self, Config, Host, MountNamespaces, Supervisor};
use strata_snapshot::Syscall;

use super::lifecycle::{AttachSpec, ATTACH_FD, READY_FD};
use super::{process_start, Container};
use crate::{Engine, EngineError, Result};


/// Files and directories every container root has, created in the `-init` layer so they
/// never appear in diff, commit or export (docker's initlayer).
pub(crate) fn populate_init_layer(upper: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mk = |rel: &str, dir: bool| -> Result<()> {
        let p = upper.join(rel);
        // Files 0755 as docker's initlayer makes them (export shows them so).
        let file = || std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o755).open(&p).map(|_| ());
        let r = if dir { std::fs::create_dir_all(&p) } else { std::fs::create_dir_all(p.parent().expect("has parent")).and_then(|_| file()) };
        r.map_err(|e| EngineError::io("create", &p, e))
    };
    for d in ["dev/pts", "dev/shm", "proc", "sys", "etc"] {
        mk(d, true)?;
    }
    for f in [".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console"] {
        mk(f, false)?;
    }
    let mtab = upper.join("etc/mtab");
    if std::fs::symlink_metadata(&mtab).is_err() {
        std::os::unix::fs::symlink("/proc/mounts", &mtab).map_err(|e| EngineError::io("create", &mtab, e))?;
    }
    Ok(())
}

/// The host's resolv.conf without loopback name servers (unreachable from a container's
/// network namespace); docker's public fallbacks if none remain.
pub(crate) fn resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// Entry point of `strata __supervise`. Never returns to the caller's logic: the
/// process ends when the container stops for good.
pub fn supervise(engine: &Engine, id: &str, attach: Option<AttachSpec>) -> i32 {
    // SAFETY: the fds were placed by `start_container` before exec.
    let mut ready = unsafe { File::from_raw_fd(READY_FD) };
    let first = attach.map(|a| (unsafe { UnixStream::from_raw_fd(ATTACH_FD) }, a));
    let fail = |ready: &mut File, code: i32, msg: &str| {
        let _ = writeln!(ready, "err {code} {msg}");
        1
    };
    let c = match engine.container(id) {
        Ok(c) => c,
        Err(e) => return fail(&mut ready, 125, &e.to_string()),
    };
    let ns = match supervisor::enter() {
        Ok(ns) => ns,
        Err(e) => return fail(&mut ready, 125, &format!("supervisor: {e}")),
    };
    let state_root = engine.runtime_state_root();
    let runtime = c.host_config().get("Runtime").and_then(Value::as_str).filter(|r| *r != "strata");
    let exec: Box<dyn Executor> = match executor_for(runtime, &state_root) {
        Ok(e) => e,
        Err(e) => return fail(&mut ready, 125, &e.to_string()),
    };
    let mounts = match engine.snapshotter().mounts(&c.id) {
        Ok(m) => m,
        Err(e) => return fail(&mut ready, 125, &e.to_string()),
    };
    let dir = engine.container_dir(&c.id);
    let cfg = Config {
        id: c.id.clone(),
        bundle: dir.join("bundle"),
        rootfs: dir.join("rootfs"),
        mounts,
        log_path: dir.join(format!("{}-json.log", c.id)),
        tty: c.tty(),
        open_stdin: c.config.get("OpenStdin").and_then(Value::as_bool).unwrap_or(false),
        stdin_once: c.config.get("StdinOnce").and_then(Value::as_bool).unwrap_or(false),
        socket: engine.socket_of(&c.id),
    };
    let mut sup = match Supervisor::new(cfg, exec.as_ref()) {
        Ok(s) => s,
        Err(e) => return fail(&mut ready, 125, &e.to_string()),
    };
    if let Some((stream, a)) = first {
        sup.add_client(stream, Request::Attach { stdin: a.stdin, stdout: a.stdout, stderr: a.stderr });
    }
    let mut host = EngineHost { engine, ns, c: c.clone(), dir, start_error: None, sandbox: None };
    match sup.start(&mut host) {
        Ok(pid) => {
            let _ = writeln!(ready, "ok {pid}");
        }
        Err(e) => {
            let (code, msg) = host.start_error.take().unwrap_or((125, e.to_string()));
            host.record_start_failure(code, &msg);
            if let Some(sb) = host.sandbox.take() {
                engine.teardown_sandbox(&c, sb);
            }
            let _ = strata_snapshot::LinuxSyscall.unmount(&engine.container_dir(&c.id).join("rootfs"), true);
            if c.auto_remove() {
                let _ = engine.destroy_container(&c, true);
            }
            return fail(&mut ready, code, &msg);
        }
    }
    drop(ready);
    sup.serve(&mut host)
}

struct EngineHost<'a> {
    engine: &'a Engine,
    ns: MountNamespaces,
    c: Container,
    dir: PathBuf,
    start_error: Option<(i32, String)>,
    /// Made at the first start, kept across restarts, taken down at the last stop.
    sandbox: Option<super::network::Sandbox>,
}

impl EngineHost<'_> {
    fn record_start_failure(&self, code: i32, msg: &str) {
        let now = strata_store::now_rfc3339();
        let _ = self.engine.root.db().write(|tx| {
            tx.execute(
                "UPDATE containers SET status=CASE WHEN status='created' THEN 'created' ELSE 'exited' END, exit_code=?2, error=?3, finished_at=?4, pid=0 WHERE id=?1",
                params![self.c.id, code, msg, now],
            )
        });
    }
}

impl Host for EngineHost<'_> {
    fn prepare(&mut self, rootfs: &Path) -> std::result::Result<(), String> {
        if self.sandbox.is_none() {
            match self.engine.setup_sandbox(&self.c, &self.ns) {
                Ok(sb) => self.sandbox = Some(sb),
                Err((code, msg)) => {
                    self.start_error = Some((code, msg.clone()));
                    return Err(msg);
                }
            }
        }
        let netns = self.sandbox.as_ref().map(|s| &s.netns);
        let spec = match build_spec(self.engine, &self.ns, &self.c, rootfs, netns) {
            Ok(s) => s,
            Err((code, msg)) => {
                self.start_error = Some((code, msg.clone()));
                return Err(msg);
            }
        };
        strata_runtime::spec::write_bundle(&spec, &self.dir.join("bundle"), rootfs).map_err(|e| e.to_string())
    }

    fn started(&mut self, pid: i32) {
        let now = strata_store::now_rfc3339();
        let me = std::process::id() as i32;
        let _ = self.engine.root.db().write(|tx| {
            tx.execute(
                "UPDATE containers SET status='running', pid=?2, pid_start=?3, sup_pid=?4, sup_start=?5, started_at=?6, error='', manual_stop=0 WHERE id=?1",
                params![self.c.id, pid, process_start(pid).unwrap_or(0) as i64, me, process_start(me).unwrap_or(0) as i64, now],
            )
        });
    }

    fn exited(&mut self, code: i32, manual_stop: bool) -> Option<Duration> {
        // The references taken at start; a shared volume's last one unmounts it where
        // it was mounted.
        if !self.c.volume_mounts.is_empty() {
            let release = || {
                for v in &self.c.volume_mounts {
                    let _ = self.engine.volumes().unmount(&v.name);
                }
            };
            if let Err(e) = self.ns.in_host(release) {
                tracing::warn!(id = %self.c.id, error = %e, "cannot release the container's volumes");
            }
            // The pins go too: removing the container's directory never crosses a mount.
            for (i, _) in self.c.volume_mounts.iter().enumerate() {
                for pin in [format!("volume-{i}"), format!("subpath-{i}")] {
                    let p = self.dir.join(pin);
                    while rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH).is_ok() {}
                }
            }
        }
        let now = strata_store::now_rfc3339();
        let policy = self.c.host_config().get("RestartPolicy").cloned().unwrap_or(Value::Null);
        let name = policy.get("Name").and_then(Value::as_str).unwrap_or("no").to_string();
        let max = policy.get("MaximumRetryCount").and_then(Value::as_i64).unwrap_or(0);
        let count = self.engine.container(&self.c.id).map(|c| c.restart_count).unwrap_or(0);
        let restart = !manual_stop
            && match name.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => code != 0 && (max == 0 || count < max),
                _ => false,
            };
        let status = if restart { "restarting" } else { "exited" };
        let record = |tx: &rusqlite::Transaction<'_>| {
            tx.execute(
                "UPDATE containers SET status=?2, exit_code=?3, finished_at=?4, pid=0, manual_stop=?5,
                 restart_count=restart_count + ?6 WHERE id=?1",
                params![self.c.id, status, code, now, manual_stop as i64, restart as i64],
            )
        };
        // An exit is flushed to disk — unless the container is removed right after it.
        let db = self.engine.root.db();
        let _ = if self.c.auto_remove() { db.write(record) } else { db.write_durable(record) };
        // Stopping for good: ports and addresses are free before anyone hears of the exit.
        if !restart {
            if let Some(sb) = self.sandbox.take() {
                self.engine.teardown_sandbox(&self.c, sb);
            }
        }
        // docker's back-off: 100 ms doubling per consecutive restart, at most a minute.
        restart.then(|| Duration::from_millis((100u64 << count.clamp(0, 10) as u64).min(60_000)))
    }

    fn finished(&mut self) -> bool {
        if let Some(sb) = self.sandbox.take() {
            self.engine.teardown_sandbox(&self.c, sb);
        }
        if self.c.auto_remove() {
            return self.engine.destroy_container(&self.c, true).is_ok();
        }
        false
    }

    fn exec_spec(&mut self, rootfs: &Path, process: &ExecProcess) -> std::result::Result<ExecSpec, (i32, String)> {
        exec_spec(&self.c, rootfs, process)
    }
}

/// Runtime environment: PATH, HOSTNAME, TERM (with a tty), HOME, then `env` in order,
/// each replacing an earlier value of its name.
fn runtime_env(c: &Container, path_var: &str, home: &str, tty: bool, env: &[String]) -> Vec<String> {
    let hostname = c.config.get("Hostname").and_then(Value::as_str).unwrap_or(&c.id[..12]).to_string();
    let mut full: Vec<String> = vec![format!("PATH={path_var}"), format!("HOSTNAME={hostname}")];
    if tty {
        full.push("TERM=xterm".into());
    }
    full.push(format!("HOME={home}"));
    for e in env {
        let k = e.split('=').next().unwrap_or("");
        full.retain(|x| x.split('=').next() != Some(k));
        full.push(e.clone());
    }
    full
}

/// An exec request made concrete: docker's defaults (the container's user, working
/// directory and environment), the user resolved in the container's own files, and the
/// command looked up inside its root (126, with runc's wording, when it cannot run).
fn exec_spec(c: &Container, rootfs: &Path, p: &ExecProcess) -> std::result::Result<ExecSpec, (i32, String)> {
    let mut env: Vec<String> = c.config.get("Env").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
    env.extend(p.env.iter().cloned());
    let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").to_string();
    let user = if p.user.is_empty() { c.config.get("User").and_then(Value::as_str).unwrap_or("").to_string() } else { p.user.clone() };
    let (uid, gid, additional_gids, home) = crate::userdb::resolve_user(rootfs, &user).map_err(|m| (126, m))?;
    let cwd = if p.cwd.is_empty() {
        c.config.get("WorkingDir").and_then(Value::as_str).filter(|w| !w.is_empty()).unwrap_or("/").to_string()
    } else {
        p.cwd.clone()
    };
    let argv0 = p.args.first().ok_or((126, "No exec command specified".to_string()))?;
    let oci = |why: String| (126, format!("OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown"));
    if let Err(e) = strata_store::fsutil::open_in_root(rootfs, &cwd, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY) {
        return Err(oci(format!("chdir to cwd ({cwd:?}) set in config.json failed: {}", strata_store::os_text(&e))));
    }
    crate::userdb::lookup_command(rootfs, argv0, &path_var, &cwd).map_err(|(_, why)| {
        // runc's exec path does not stat first: execve's EACCES is what it reports.
        let why = if why == "is a directory" { "permission denied".to_string() } else { why };
        (126, format!("OCI runtime exec failed: exec failed: unable to start container process: exec: \"{argv0}\": {why}: unknown"))
    })?;
    Ok(ExecSpec { args: p.args.clone(), env: runtime_env(c, &path_var, &home, false, &env), cwd, uid, gid, additional_gids, privileged: p.privileged })
}

/// The runtime spec for one start: command resolved inside the container's root
/// (docker's 127 for a missing command, 126 for one that cannot be run) and the user
/// looked up in the container's own /etc/passwd and /etc/group.
fn build_spec(engine: &Engine, ns: &MountNamespaces, c: &Container, rootfs: &Path, netns: Option<&super::network::NetNs>) -> std::result::Result<ContainerSpec, (i32, String)> {
    let env: Vec<String> = c.config.get("Env").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
    let path_var = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").to_string();
    let user = c.config.get("User").and_then(Value::as_str).unwrap_or("").to_string();
    let (uid, gid, gids, home) = crate::userdb::resolve_user(rootfs, &user).map_err(|m| (125, m))?;
    let cwd = c.config.get("WorkingDir").and_then(Value::as_str).filter(|w| !w.is_empty()).unwrap_or("/").to_string();
    let argv0 = &c.path;
    crate::userdb::lookup_command(rootfs, argv0, &path_var, &cwd).map_err(|(code, why)| {
        (code, format!("failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{argv0}\": {why}: unknown"))
    })?;
    let tty = c.tty();
    let full = runtime_env(c, &path_var, &home, tty, &env);
    let hostname = c.config.get("Hostname").and_then(Value::as_str).unwrap_or(&c.id[..12]).to_string();
    let mut args = vec![c.path.clone()];
    args.extend(c.args.iter().cloned());
    let hc = c.host_config();
    let mut dir = engine.container_dir(&c.id);
    // Sharing another container's network means sharing its hosts, hostname and
    // resolv.conf, as docker's.
    if let Some(other) = hc.get("NetworkMode").and_then(Value::as_str).and_then(|m| m.strip_prefix("container:")) {
        if let Ok(o) = engine.container(other) {
            dir = engine.container_dir(&o.id);
        }
    }
    // User mounts: `-v` binds create a missing host directory at start (docker does;
    // `--mount` binds were checked at create). Sources are host paths chosen by root.
    // The network files are read-only with the rootfs, as docker's NetworkMounts.
    let ro = hc.get("ReadonlyRootfs").and_then(Value::as_bool).unwrap_or(false);
    let mut binds = vec![
        BindMount { source: dir.join("resolv.conf"), destination: "/etc/resolv.conf".into(), readonly: ro },
        BindMount { source: dir.join("hostname"), destination: "/etc/hostname".into(), readonly: ro },
        BindMount { source: dir.join("hosts"), destination: "/etc/hosts".into(), readonly: ro },
    ];
    let mut tmpfs = Vec::new();
    // Binds and tmpfs inherited through --volumes-from (volumes were taken at create);
    // the container's own mounts win on a shared destination.
    let mut mounts = super::inspect::recorded_mounts(c);
    for spec in hc.get("VolumesFrom").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
            _ => (spec, None),
        };
        let Ok(src) = engine.container(name) else { continue };
        for (mut m, from_v) in super::inspect::recorded_mounts(&src) {
            if mounts.iter().any(|(x, _)| x.destination == m.destination) || c.volume_mounts.iter().any(|v| v.destination == m.destination) {
                continue;
            }
            if let Some(md) = mode {
                m.read_only = md == "ro";
            }
            mounts.push((m, from_v));
        }
    }
    for (m, from_v) in mounts {
        match m.typ {
            Some(super::mountspec::MountType::Bind) => {
                if !Path::new(&m.source).exists() {
                    if !from_v {
                        // docker checks `--mount` binds again at start: the source may
                        // have gone since create.
                        return Err((125, format!("invalid mount config for type \"bind\": bind source path does not exist: {}", m.source)));
                    }
                    std::fs::create_dir_all(&m.source).map_err(|e| (125, format!("error while creating mount source path '{}': mkdir {}: {}", m.source, m.source, strata_store::os_text(&e))))?;
                }
                binds.push(BindMount { source: PathBuf::from(&m.source), destination: m.destination.clone(), readonly: m.read_only });
            }
            Some(super::mountspec::MountType::Tmpfs) => {
                let mut o = Vec::new();
                if m.read_only {
                    o.push("ro".to_string());
                }
                if let Some(md) = m.tmpfs_mode {
                    o.push(format!("mode={md:o}"));
                }
                if let Some(sz) = m.tmpfs_size {
                    o.push(format!("size={sz}"));
                }
                tmpfs.push(TmpfsMount { destination: m.destination.clone(), options: o });
            }
            _ => {}
        }
    }
    // Volumes: mounted by their driver (options volumes on first use), seeded from the
    // image on the first start unless `nocopy` — the rootfs is mounted here, in the
    // supervisor's namespace, so the image's content is read inside its own root.
    let mut seeded = false;
    for (i, v) in c.volume_mounts.iter().enumerate() {
        let shared = engine.volumes().get(&v.name).map(|x| !x.options.is_empty()).unwrap_or(false);
        let path = if shared {
            // A volume with driver options is one mount every container shares: made
            // (on first use) in the namespace strata was started from, then carried into
            // this private one.
            let host_path = ns.in_host(|| engine.volumes().mount(&v.name)).map_err(|e| (125, format!("volume {}: {e}", v.name)))?.map_err(|e| (125, e.to_string()))?;
            let pin = pin_point(&engine.container_dir(&c.id), &format!("volume-{i}"), true)
                .and_then(|pin| ns.bind_from_host(&host_path, &pin).map(|()| pin))
                .map_err(|e| (125, format!("volume {}: {e}", v.name)))?;
            pin
        } else {
            engine.volumes().mount(&v.name).map_err(|e| (125, e.to_string()))?
        };
        let verr = |e: strata_volume::SeedError| (125, format!("volume {}: {e}", v.name));
        let source = if v.subpath.is_empty() {
            if v.seed {
                strata_volume::seed(&path, rootfs, Path::new(&v.destination)).map_err(verr)?;
            }
            path
        } else {
            let fd = strata_volume::open_subpath(&path, &v.subpath).map_err(verr)?;
            if v.seed && rustix::fs::fstat(&fd).is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir()) {
                strata_volume::seed_subpath(&fd, &v.subpath, rootfs, Path::new(&v.destination)).map_err(verr)?;
            }
            pin_subpath(&engine.container_dir(&c.id), i, &fd).map_err(|e| (125, format!("volume {}: subpath {}: {e}", v.name, v.subpath)))?
        };
        seeded |= v.seed;
        binds.push(BindMount { source, destination: v.destination.clone(), readonly: v.read_only });
    }
    if seeded {
        let done: Vec<super::VolumeMount> = c.volume_mounts.iter().cloned().map(|mut v| {
            v.seed = false;
            v
        }).collect();
        engine.set_volume_mounts(&c.id, &done).map_err(|e| (125, e.to_string()))?;
    }
    for (d, opts) in hc.get("Tmpfs").and_then(Value::as_object).into_iter().flatten() {
        let o = opts.as_str().unwrap_or("").split(',').filter(|x| !x.is_empty()).map(str::to_string).collect();
        tmpfs.push(TmpfsMount { destination: d.clone(), options: o });
    }
    // Destinations through the image's symlinks resolve inside the root, as runc's
    // securejoin does (the executor refuses a path through a dangling one). One below
    // another mount is left to the runtime: the image is not what it will see there.
    let dests: Vec<String> = binds.iter().map(|b| b.destination.clone()).chain(tmpfs.iter().map(|t| t.destination.clone())).collect();
    let under_another = |d: &str| dests.iter().any(|o| o.as_str() != d && d.starts_with(&format!("{}/", o.trim_end_matches('/'))));
    for b in &mut binds {
        if !under_another(&b.destination) {
            b.destination = resolve_in_root(rootfs, &b.destination);
        }
    }
    for t in &mut tmpfs {
        if !under_another(&t.destination) {
            t.destination = resolve_in_root(rootfs, &t.destination);
        }
    }
    let int = |k: &str| hc.get(k).and_then(Value::as_i64).filter(|v| *v > 0);
    let init = hc.get("Init").and_then(Value::as_bool).unwrap_or(false);
    Ok(ContainerSpec {
        id: c.id.clone(),
        hostname,
        process: ProcessSpec {
            args,
            env: full,
            cwd,
            uid,
            gid,
            additional_gids: gids,
            terminal: tty,
            no_new_privileges: hc.get("SecurityOpt").and_then(Value::as_array).is_some_and(|o| o.iter().any(|x| x == "no-new-privileges")),
        },
        readonly_rootfs: hc.get("ReadonlyRootfs").and_then(Value::as_bool).unwrap_or(false),
        binds,
        tmpfs,
        resources: Resources {
            memory: int("Memory"),
            cpu_quota: int("NanoCpus").map(|n| n / 10_000),
            pids_limit: int("PidsLimit"),
            shm_size: int("ShmSize").unwrap_or(64 * 1024 * 1024),
        },
        cgroup_path: {
            let parent = hc.get("CgroupParent").and_then(Value::as_str).filter(|p| !p.is_empty()).unwrap_or("/strata");
            format!("/{}/{}", parent.trim_matches('/'), c.id)
        },
        init: if init { Some(init_binary().ok_or((125, "--init needs tini-static (apt-get install tini)".to_string()))?) } else { None },
        privileged: hc.get("Privileged").and_then(Value::as_bool).unwrap_or(false),
        pid: match hc.get("PidMode").and_then(Value::as_str).unwrap_or("") {
            "host" => strata_runtime::spec::NetworkNamespace::Host,
            m if m.starts_with("container:") => {
                let o = engine.container(&m["container:".len()..]).map_err(|e| (125, e.to_string()))?;
                if !o.running() || o.pid <= 0 {
                    return Err((125, format!("cannot join PID of a non running container: {}", o.id)));
                }
                strata_runtime::spec::NetworkNamespace::Join(format!("/proc/{}/ns/pid", o.pid).into())
            }
            _ => strata_runtime::spec::NetworkNamespace::New,
        },
        network: match netns {
            Some(super::network::NetNs::Path(p)) => strata_runtime::spec::NetworkNamespace::Join(p.into()),
            Some(super::network::NetNs::Host) => strata_runtime::spec::NetworkNamespace::Host,
            None => strata_runtime::spec::NetworkNamespace::New,
        },
    })
}

/// The static init docker calls docker-init (tini), from the host.
fn init_binary() -> Option<PathBuf> {
    ["/usr/libexec/docker/docker-init", "/usr/bin/tini-static", "/usr/local/bin/tini-static"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Engine {
    /// Where executors keep their per-container state (tmpfs: gone after a reboot, as
    /// the processes are).
    pub fn runtime_state_root(&self) -> PathBuf {
        PathBuf::from("/run/strata").join(self.root_tag())
    }
}

/// Binds the resolved subpath (an `O_PATH` fd) onto `<container>/subpath-<i>` in the
/// supervisor's private mount namespace, and returns that path for the runtime to
/// bind: the runtime then mounts the very object that was resolved inside the volume,
/// even if a container sharing the volume swaps a path component for a symlink after
/// the check (the race behind CVE-2021-30465).
fn pin_subpath(container_dir: &Path, i: usize, fd: &std::os::fd::OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let is_dir = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode).is_dir();
    let pin = pin_point(container_dir, &format!("subpath-{i}"), is_dir)?;
    rustix::mount::mount_bind(format!("/proc/self/fd/{}", fd.as_raw_fd()), &pin)?;
    Ok(pin)
}

/// An empty directory (or file) under the container's directory to mount a pin on;
/// what a previous start of this supervisor pinned there is detached first.
fn pin_point(container_dir: &Path, name: &str, is_dir: bool) -> std::io::Result<PathBuf> {
    let pin = container_dir.join(name);
    match std::fs::symlink_metadata(&pin) {
        Ok(_) => {
            while rustix::mount::unmount(&pin, rustix::mount::UnmountFlags::DETACH).is_ok() {}
            let was_dir = std::fs::symlink_metadata(&pin)?.is_dir();
            if was_dir != is_dir {
                if was_dir { std::fs::remove_dir(&pin)? } else { std::fs::remove_file(&pin)? }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if !pin.exists() {
        if is_dir {
            std::fs::create_dir(&pin)?;
        } else {
            std::fs::File::create(&pin)?;
        }
    }
    Ok(pin)
}

/// `dest` (absolute, in the container) with every symlink in it resolved inside `rootfs`:
/// an absolute link target starts again at the root and `..` stops there, so the result
/// always names a path under the root (securejoin's rules). Missing components are kept
/// as they are. Unchanged when no symlink is met.
fn resolve_in_root(rootfs: &Path, dest: &str) -> String {
    use std::collections::VecDeque;
    let split = |p: &str| p.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect::<VecDeque<_>>();
    let mut pending = split(dest);
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let host = rootfs.join(cur.join("/")).join(&c);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                let Ok(target) = std::fs::read_link(&host) else { return dest.to_string() };
                if links > 255 {
                    return dest.to_string();
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    cur.clear();
                }
                let mut next = split(&target);
                next.extend(pending);
                pending = next;
            }
            _ => cur.push(c),
        }
    }
    if links == 0 {
        return dest.to_string();
    }
    format!("/{}", cur.join("/"))
}

#[cfg(test)]
mod tests {
    use super::resolve_in_root;

    #[test]
    fn destinations_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("../../../../../host/x", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/target/y", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("real", r.join("rel")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/real/dir"), "/real/dir");
        assert_eq!(resolve_in_root(r, "/missing/a"), "/missing/a");
        assert_eq!(resolve_in_root(r, "/up"), "/host/x");
        assert_eq!(resolve_in_root(r, "/up/sub"), "/host/x/sub");
        assert_eq!(resolve_in_root(r, "/abs/z"), "/target/y/z");
        assert_eq!(resolve_in_root(r, "/rel/dir"), "/real/dir");
        assert_eq!(resolve_in_root(r, "/loop/x"), "/loop/x");
    }
}
