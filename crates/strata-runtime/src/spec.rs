//! What a container is made of, as the runtime needs it. Written by the engine to
//! `containers/<id>/spec.json`; read by the supervisor, which turns it into the OCI
//! bundle's `config.json` ([`to_oci`], [`write_bundle`]) — docker's default spec.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, PosixRlimitBuilder,
    PosixRlimitType, Process, Root, Spec, User,
};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

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

/// A tmpfs mounted into the container (`--tmpfs`, `--mount type=tmpfs`). Docker's
/// `noexec,nosuid,nodev` come first; the user's options follow and win.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TmpfsMount {
    pub destination: String,
    pub options: Vec<String>,
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
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    pub resources: Resources,
    /// cgroup path relative to each controller's root, e.g. `/strata/<id>`.
    pub cgroup_path: String,
    /// Run `strata` itself as a minimal init (docker's --init) in front of the process.
    pub init: Option<PathBuf>,
    #[serde(default)]
    pub network: NetworkNamespace,
    /// docker's `--privileged`: every capability the host can grant, every host device,
    /// /sys and cgroups writable, nothing masked.
    #[serde(default)]
    pub privileged: bool,
    /// `--pid`: a new PID namespace (None), the host's (`Host`) or another's (`Join`).
    #[serde(default)]
    pub pid: NetworkNamespace,
}

/// Where a container's network (or PID) namespace comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum NetworkNamespace {
    /// A fresh one made by the runtime (loopback only, down).
    #[default]
    New,
    /// One prepared by the caller (a namespace file: `/proc/PID/fd/N`, `/proc/PID/ns/net`).
    Join(PathBuf),
    /// The host's.
    Host,
}

/// docker's default `--shm-size` (64 MiB), used when the spec says 0.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// Where docker puts its `--init` binary inside the container (moby's
/// `inContainerInitPath`); `init` is bind-mounted there read-only and becomes argv[0]:
/// `/sbin/docker-init -- <args…>`.
pub const CONTAINER_INIT_PATH: &str = "/sbin/docker-init";

/// The OCI runtime-spec version we write.
const OCI_VERSION: &str = "1.0.2";

/// CPU period for `--cpus`, as docker (100ms).
const CPU_PERIOD: u64 = 100_000;

/// The RLIMIT_NOFILE docker's containers get (containerd's and dockerd's defaults).
const DEFAULT_NOFILE: u64 = 1_048_576;

/// docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// docker's masked paths (moby `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// docker's read-only paths (moby `oci/defaults.go`).
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn opts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn mount(destination: &str, typ: &str, source: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options));
    m
}

/// docker's default mounts, in docker's order (moby `oci/defaults.go`; `/dev/shm` sized
/// as `daemon/oci_linux.go` does for a private IPC namespace).
fn default_mounts(shm_size: i64, privileged: bool) -> Vec<Mount> {
    // A privileged container gets /sys and the cgroups writable (moby WithMounts).
    let ro = if privileged { "rw" } else { "ro" };
    let shm_size = if shm_size > 0 { shm_size } else { DEFAULT_SHM_SIZE };
    let mut shm = opts(&["nosuid", "noexec", "nodev", "mode=1777"]);
    shm.push(format!("size={shm_size}"));
    vec![
        mount("/proc", "proc", "proc", opts(&["nosuid", "noexec", "nodev"])),
        mount("/dev", "tmpfs", "tmpfs", opts(&["nosuid", "strictatime", "mode=755", "size=65536k"])),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            opts(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        ),
        mount("/sys", "sysfs", "sysfs", opts(&["nosuid", "noexec", "nodev", ro])),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", opts(&[ro, "nosuid", "noexec", "nodev"])),
        mount("/dev/mqueue", "mqueue", "mqueue", opts(&["nosuid", "noexec", "nodev"])),
        mount("/dev/shm", "tmpfs", "shm", shm),
    ]
}

fn bind_mount(source: &Path, destination: &str, readonly: bool) -> Mount {
    let mut options = vec!["rbind".to_string()];
    if readonly {
        // `rro` (mount_setattr over the whole tree) as Docker 25+: a plain `ro` on an
        // rbind leaves the mounts below the source writable.
        options.push("ro".to_string());
        options.push("rro".to_string());
    }
    options.push("rprivate".to_string());
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some("bind".to_string()))
        .set_source(Some(source.to_path_buf()))
        .set_options(Some(options));
    m
}

fn device_rule(allow: bool, major: Option<i64>, minor: Option<i64>) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow).set_access(Some("rwm".to_string()));
    if major.is_some() {
        d.set_typ(Some(LinuxDeviceType::C)).set_major(major).set_minor(minor);
    }
    d
}

/// docker's device cgroup rules: deny everything, then allow the default devices
/// (moby `oci/defaults.go`). Both runtimes append runc's `AllowedDevices` (mknod of
/// anything, /dev/console, /dev/pts/*, /dev/ptmx, tun) after these, as under docker.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    vec![
        device_rule(false, None, None),
        device_rule(true, Some(1), Some(5)),  // /dev/zero
        device_rule(true, Some(1), Some(3)),  // /dev/null
        device_rule(true, Some(1), Some(9)),  // /dev/urandom
        device_rule(true, Some(1), Some(8)),  // /dev/random
        device_rule(true, Some(5), Some(0)),  // /dev/tty
        device_rule(true, Some(5), Some(1)),  // /dev/console
        device_rule(false, Some(10), Some(229)), // /dev/fuse
    ]
}

/// Every character and block device under the host's /dev (a privileged container's,
/// as moby's `WithDevices` lists them), skipping the trees the container mounts itself.
fn host_devices() -> Vec<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else { continue };
            let ft = md.file_type();
            if ft.is_dir() {
                if !matches!(p.to_str(), Some("/dev/pts" | "/dev/shm" | "/dev/mqueue" | "/dev/fd")) {
                    stack.push(p);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            // Made by the runtime anyway, or the container's own console.
            if matches!(p.to_str(), Some("/dev/console" | "/dev/ptmx" | "/dev/tty")) {
                continue;
            }
            let rdev = md.rdev();
            let mut d = oci_spec::runtime::LinuxDevice::default();
            d.set_path(p)
                .set_typ(typ)
                .set_major(libc::major(rdev) as i64)
                .set_minor(libc::minor(rdev) as i64)
                .set_file_mode(Some(md.mode() & 0o7777))
                .set_uid(Some(md.uid()))
                .set_gid(Some(md.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The calling process's hard limit for `resource`, or None when unlimited/unknown.
fn inherited_hard_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut rl) } != 0 || rl.rlim_max == libc::RLIM_INFINITY {
        return None;
    }
    Some(rl.rlim_max)
}

fn invalid(spec: &ContainerSpec, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidSpec { id: spec.id.clone(), reason: reason.into() }
}

fn process(spec: &ContainerSpec) -> Result<Process, RuntimeError> {
    let p = &spec.process;
    if p.args.is_empty() || p.args[0].is_empty() {
        return Err(invalid(spec, "no command specified"));
    }
    let mut args = p.args.clone();
    if spec.init.is_some() {
        args.splice(0..0, [CONTAINER_INIT_PATH.to_string(), "--".to_string()]);
    }
    let cwd = if p.cwd.is_empty() { "/".to_string() } else { p.cwd.clone() };
    if !cwd.starts_with('/') {
        return Err(invalid(spec, format!("the working directory '{cwd}' is invalid, it needs to be an absolute path")));
    }

    let mut user = User::default();
    user.set_uid(p.uid).set_gid(p.gid);
    if !p.additional_gids.is_empty() {
        user.set_additional_gids(Some(p.additional_gids.clone()));
    }

    let caps: Capabilities = if spec.privileged {
        crate::executor::privileged_caps().iter().filter_map(|c| c.trim_start_matches("CAP_").parse().ok()).collect()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);

    // Never above what we inherited: an unprivileged caller (or a container runtime above
    // us) may have a lower hard limit, and raising it would fail the start.
    let nofile = inherited_hard_limit(libc::RLIMIT_NOFILE).map_or(DEFAULT_NOFILE, |h| h.min(DEFAULT_NOFILE));
    let rlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(nofile)
        .soft(nofile)
        .build()
        .map_err(|e| invalid(spec, e.to_string()))?;

    let mut process = Process::default();
    process
        .set_terminal(Some(p.terminal))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(p.env.clone()))
        .set_cwd(PathBuf::from(cwd))
        .set_capabilities(Some(capabilities))
        .set_rlimits(Some(vec![rlimit]))
        .set_no_new_privileges(p.no_new_privileges.then_some(true))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    Ok(process)
}

/// Whether the host's memory cgroup limits swap (docker's `SwapLimit`): cgroup v1 with
/// swap accounting (`memory.memsw.*`), or cgroup v2 with the memory controller.
fn swap_limit_supported() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        return v1.join("memory.memsw.limit_in_bytes").exists();
    }
    fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .map(|c| c.split_whitespace().any(|c| c == "memory"))
        .unwrap_or(false)
}

fn resources(spec: &ContainerSpec) -> Result<LinuxResources, RuntimeError> {
    let r = &spec.resources;
    let mut res = LinuxResources::default();
    res.set_devices(Some(if spec.privileged { vec![device_rule(true, None, None)] } else { default_device_rules() }));
    if let Some(limit) = r.memory {
        if limit <= 0 {
            return Err(invalid(spec, format!("invalid memory limit {limit}")));
        }
        let mut m = LinuxMemory::default();
        m.set_limit(Some(limit));
        // docker: without --memory-swap, as much swap as memory (the OCI value is memory
        // plus swap), where the kernel accounts swap.
        if swap_limit_supported() {
            m.set_swap(Some(limit.saturating_mul(2)));
        }
        res.set_memory(Some(m));
    }
    if let Some(quota) = r.cpu_quota {
        if quota <= 0 {
            return Err(invalid(spec, format!("invalid cpu quota {quota}")));
        }
        let mut c = LinuxCpu::default();
        c.set_quota(Some(quota)).set_period(Some(CPU_PERIOD));
        res.set_cpu(Some(c));
    }
    if let Some(limit) = r.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    Ok(res)
}

fn linux(spec: &ContainerSpec) -> Result<Linux, RuntimeError> {
    // docker's namespaces and a private cgroup namespace; the network namespace is the
    // one prepared for the container, or the host's.
    let namespaces = [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .filter(|t| match t {
        LinuxNamespaceType::Network => spec.network != NetworkNamespace::Host,
        LinuxNamespaceType::Pid => spec.pid != NetworkNamespace::Host,
        _ => true,
    })
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        let path = match (typ, &spec.network, &spec.pid) {
            (LinuxNamespaceType::Network, NetworkNamespace::Join(p), _) | (LinuxNamespaceType::Pid, _, NetworkNamespace::Join(p)) => Some(p.clone()),
            _ => None,
        };
        ns.set_typ(typ).set_path(path);
        ns
    })
    .collect();

    // docker's defaults for a container with its own network namespace
    // (daemon_unix.go): ping without CAP_NET_RAW, low ports without
    // CAP_NET_BIND_SERVICE. Never on the host's network: they would change the host.
    let own_net = spec.network != NetworkNamespace::Host;
    let sysctl: HashMap<String, String> = [
        ("net.ipv4.ip_unprivileged_port_start", "0"),
        ("net.ipv4.ping_group_range", "0 2147483647"),
    ]
    .into_iter()
    .filter(|_| own_net)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let mut linux = Linux::default();
    linux
        .set_namespaces(Some(namespaces))
        .set_resources(Some(resources(spec)?))
        .set_cgroups_path((!spec.cgroup_path.is_empty()).then(|| PathBuf::from(&spec.cgroup_path)))
        // Devices: none beyond the runtime's defaults (null, zero, full, random, urandom,
        // tty; console with a terminal; ptmx → pts/ptmx), as docker.
        .set_devices(Some(if spec.privileged { host_devices() } else { Vec::new() }))
        .set_masked_paths(Some(if spec.privileged { Vec::new() } else { MASKED_PATHS.iter().map(|s| s.to_string()).collect() }))
        .set_readonly_paths(Some(if spec.privileged { Vec::new() } else { READONLY_PATHS.iter().map(|s| s.to_string()).collect() }))
        .set_sysctl(Some(sysctl))
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_rootfs_propagation(None)
        .set_mount_label(None)
        // Seccomp: docker applies its default profile (moby profiles/seccomp/default.json:
        // defaultAction SCMP_ACT_ERRNO with errnoRet 1 (EPERM), an allowlist of syscalls,
        // arch-specific and capability-gated rules). libcontainer is built without its
        // `libseccomp` feature here (libseccomp-dev is not installed) and would ignore a
        // filter, so none is written yet. When libseccomp-dev is available: enable
        // libcontainer's `libseccomp` feature and set the profile here, converted to
        // `LinuxSeccomp` (runc applies it already).
        .set_seccomp(None);
    Ok(linux)
}

fn mounts(spec: &ContainerSpec) -> Result<Vec<Mount>, RuntimeError> {
    let mut binds: Vec<&BindMount> = spec.binds.iter().collect();
    for b in &binds {
        if !b.destination.starts_with('/') {
            return Err(invalid(spec, format!("invalid mount destination {:?}: not an absolute path", b.destination)));
        }
        if !b.source.is_absolute() {
            return Err(invalid(spec, format!("invalid mount source {}: not an absolute path", b.source.display())));
        }
    }
    // A user mount replaces the default at the same place; one on /dev replaces all
    // of /dev's (moby daemon/oci_linux.go WithMounts).
    let clean = |d: &str| d.trim_end_matches('/').to_string();
    for t in &spec.tmpfs {
        if !t.destination.starts_with('/') {
            return Err(invalid(spec, format!("invalid mount destination {:?}: not an absolute path", t.destination)));
        }
    }
    let user: Vec<String> = binds.iter().map(|b| clean(&b.destination)).chain(spec.tmpfs.iter().map(|t| clean(&t.destination))).collect();
    let over_dev = user.iter().any(|d| d == "/dev");
    let mut out: Vec<Mount> = default_mounts(spec.resources.shm_size, spec.privileged)
        .into_iter()
        .filter(|m| {
            let d = m.destination().to_string_lossy().to_string();
            let replaced = user.contains(&d) || (over_dev && d.starts_with("/dev/"));
            !replaced
        })
        .collect();
    // Parents before children (docker sorts user mounts by path depth).
    binds.sort_by_key(|b| Path::new(&b.destination).components().count());
    let mut user_mounts: Vec<(usize, Mount)> = binds
        .iter()
        .map(|b| (Path::new(&b.destination).components().count(), bind_mount(&b.source, &b.destination, b.readonly)))
        .collect();
    for t in &spec.tmpfs {
        let mut o: Vec<String> = ["noexec", "nosuid", "nodev"].iter().map(|x| x.to_string()).collect();
        o.extend(t.options.iter().cloned());
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&t.destination))
            .set_typ(Some("tmpfs".to_string()))
            .set_source(Some(PathBuf::from("tmpfs")))
            .set_options(Some(o));
        user_mounts.push((Path::new(&t.destination).components().count(), m));
    }
    user_mounts.sort_by_key(|(depth, _)| *depth);
    out.extend(user_mounts.into_iter().map(|(_, m)| m));
    if let Some(init) = &spec.init {
        // moby: {Destination: /sbin/docker-init, Type: bind, Options: [bind, ro]}
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(CONTAINER_INIT_PATH))
            .set_typ(Some("bind".to_string()))
            .set_source(Some(init.clone()))
            .set_options(Some(opts(&["bind", "ro"])));
        out.push(m);
    }
    Ok(out)
}

/// docker's default OCI spec for `spec`, whose root filesystem the caller has already
/// mounted at `rootfs` (an absolute path).
pub fn to_oci(spec: &ContainerSpec, rootfs: &Path) -> Result<Spec, RuntimeError> {
    if spec.id.is_empty() {
        return Err(invalid(spec, "empty container id"));
    }
    if !rootfs.is_absolute() {
        return Err(invalid(spec, format!("rootfs {} is not an absolute path", rootfs.display())));
    }
    if !spec.cgroup_path.is_empty() && !spec.cgroup_path.starts_with('/') {
        return Err(invalid(spec, format!("cgroup path {:?} is not absolute", spec.cgroup_path)));
    }
    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf()).set_readonly(Some(spec.readonly_rootfs));

    let mut oci = Spec::default();
    oci.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(mounts(spec)?))
        .set_process(Some(process(spec)?))
        .set_hostname((!spec.hostname.is_empty()).then(|| spec.hostname.clone()))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(None)
        .set_linux(Some(linux(spec)?));
    Ok(oci)
}

/// Writes `bundle/config.json` for `spec` (temp file + rename).
pub fn write_bundle(spec: &ContainerSpec, bundle: &Path, rootfs: &Path) -> Result<(), RuntimeError> {
    let oci = to_oci(spec, rootfs)?;
    let json = serde_json::to_vec_pretty(&oci).map_err(|e| invalid(spec, format!("serializing config.json: {e}")))?;
    fs::create_dir_all(bundle).map_err(RuntimeError::io("create bundle", bundle))?;
    let tmp = bundle.join(format!(".config.json.{}", strata_store::random_hex(6)));
    let path = bundle.join("config.json");
    // Temp file + rename keeps a reader from seeing half a file; no fsync: the bundle
    // is derived data, written again before every start.
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&json)?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::Io { op: "write", path: path.clone(), source: e }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::{Classify, ErrorKind};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            hostname: "host1".into(),
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), "true".into()],
                env: vec!["PATH=/bin".into(), "A=b".into()],
                cwd: "/work".into(),
                uid: 1000,
                gid: 1001,
                additional_gids: vec![10, 20],
                terminal: false,
                no_new_privileges: true,
            },
            readonly_rootfs: true,
            binds: vec![],
            tmpfs: vec![],
            resources: Resources::default(),
            cgroup_path: "/strata/c1".into(),
            init: None,
            network: Default::default(),
            privileged: false,
            pid: Default::default(),
        }
    }

    fn json(s: &ContainerSpec) -> serde_json::Value {
        serde_json::to_value(to_oci(s, Path::new("/var/lib/strata/rootfs")).unwrap()).unwrap()
    }

    fn strs(v: &serde_json::Value) -> Vec<String> {
        v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn docker_default_mounts_in_order() {
        let j = json(&spec());
        let m = j["mounts"].as_array().unwrap();
        let dests: Vec<&str> = m.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]);
        assert_eq!(strs(&m[1]["options"]), ["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(strs(&m[2]["options"]), ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]);
        assert_eq!(strs(&m[3]["options"]), ["nosuid", "noexec", "nodev", "ro"]);
        assert_eq!(strs(&m[4]["options"]), ["ro", "nosuid", "noexec", "nodev"]);
        assert_eq!(m[6]["source"], "shm");
        assert_eq!(strs(&m[6]["options"]), ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]);
    }

    #[test]
    fn process_root_and_linux() {
        let j = json(&spec());
        assert_eq!(j["ociVersion"], "1.0.2");
        assert_eq!(j["root"], serde_json::json!({"path": "/var/lib/strata/rootfs", "readonly": true}));
        assert_eq!(j["hostname"], "host1");
        assert!(j.get("annotations").is_none() && j.get("hooks").is_none());
        let p = &j["process"];
        assert_eq!(strs(&p["args"]), ["sh", "-c", "true"]);
        assert_eq!(strs(&p["env"]), ["PATH=/bin", "A=b"]);
        assert_eq!(p["cwd"], "/work");
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["user"], serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}));
        let mut caps = strs(&p["capabilities"]["bounding"]);
        caps.sort();
        let mut want: Vec<String> = [
            "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
            "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
            "CAP_SYS_CHROOT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        want.sort();
        assert_eq!(caps, want);
        for set in ["effective", "permitted"] {
            let mut c = strs(&p["capabilities"][set]);
            c.sort();
            assert_eq!(c, want, "{set}");
        }
        assert!(p["capabilities"].get("inheritable").is_none() && p["capabilities"].get("ambient").is_none());
        let rl = &p["rlimits"][0];
        assert_eq!(rl["type"], "RLIMIT_NOFILE");
        let hard = rl["hard"].as_u64().unwrap();
        assert!(hard <= DEFAULT_NOFILE && hard == rl["soft"].as_u64().unwrap());
        if let Some(inherited) = inherited_hard_limit(libc::RLIMIT_NOFILE) {
            assert!(hard <= inherited);
        }

        let l = &j["linux"];
        let ns: Vec<&str> = l["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["mount", "network", "uts", "pid", "ipc", "cgroup"]);
        assert_eq!(strs(&l["maskedPaths"]), MASKED_PATHS);
        assert_eq!(strs(&l["readonlyPaths"]), READONLY_PATHS);
        assert_eq!(l["cgroupsPath"], "/strata/c1");
        assert!(l.get("seccomp").is_none());
        let dev = l["resources"]["devices"].as_array().unwrap();
        assert_eq!(dev[0], serde_json::json!({"allow": false, "access": "rwm"}));
        assert_eq!(dev[1], serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}));
        assert_eq!(dev.len(), 8);
        let r = &l["resources"];
        assert!(r.get("memory").is_none() && r.get("cpu").is_none() && r.get("pids").is_none());
        assert_eq!(l["sysctl"]["net.ipv4.ping_group_range"], "0 2147483647");
    }

    #[test]
    fn resources_when_set() {
        let mut s = spec();
        s.resources = Resources { memory: Some(1 << 30), cpu_quota: Some(150_000), pids_limit: Some(64), shm_size: 1 << 20 };
        let j = json(&s);
        let r = &j["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 1073741824);
        if swap_limit_supported() {
            assert_eq!(r["memory"]["swap"], 2147483648_i64);
        }
        assert_eq!(r["cpu"], serde_json::json!({"quota": 150000, "period": 100000}));
        assert_eq!(r["pids"], serde_json::json!({"limit": 64}));
        assert_eq!(strs(&j["mounts"][6]["options"]).last().unwrap(), "size=1048576");
    }

    #[test]
    fn binds_after_defaults_parents_first_and_overriding() {
        let mut s = spec();
        s.binds = vec![
            BindMount { source: "/h/a/b".into(), destination: "/data/b".into(), readonly: true },
            BindMount { source: "/h/a".into(), destination: "/data".into(), readonly: false },
            BindMount { source: "/h/shm".into(), destination: "/dev/shm".into(), readonly: false },
        ];
        let j = json(&s);
        let m = j["mounts"].as_array().unwrap();
        let dests: Vec<&str> = m.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/data", "/data/b", "/dev/shm"]);
        assert_eq!(m[6], serde_json::json!({"destination": "/data", "type": "bind", "source": "/h/a", "options": ["rbind", "rprivate"]}));
        assert_eq!(strs(&m[7]["options"]), ["rbind", "ro", "rro", "rprivate"]);

        s.binds = vec![BindMount { source: "/h/dev".into(), destination: "/dev".into(), readonly: false }];
        let j = json(&s);
        let dests: Vec<String> = j["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap().into()).collect();
        assert_eq!(dests, ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    }

    #[test]
    fn init_goes_first() {
        let mut s = spec();
        s.init = Some("/usr/bin/strata".into());
        let j = json(&s);
        assert_eq!(strs(&j["process"]["args"]), ["/sbin/docker-init", "--", "sh", "-c", "true"]);
        let last = j["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last,
            serde_json::json!({"destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/strata", "options": ["bind", "ro"]})
        );
    }

    #[test]
    fn defaults_for_empty_fields() {
        let mut s = spec();
        s.process.cwd = String::new();
        s.process.no_new_privileges = false;
        s.process.additional_gids.clear();
        s.cgroup_path = String::new();
        s.readonly_rootfs = false;
        let j = json(&s);
        assert_eq!(j["process"]["cwd"], "/");
        assert!(j["process"].get("noNewPrivileges").is_none());
        assert!(j["process"]["user"].get("additionalGids").is_none());
        assert!(j["linux"].get("cgroupsPath").is_none());
        assert_eq!(j["root"]["readonly"], false);
    }

    #[test]
    fn invalid_specs() {
        let root = Path::new("/r");
        let mut s = spec();
        s.process.args.clear();
        let e = to_oci(&s, root).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.to_string(), "invalid spec for container c1: no command specified");

        let mut s = spec();
        s.process.cwd = "rel".into();
        assert_eq!(to_oci(&s, root).unwrap_err().kind(), ErrorKind::Invalid);

        let mut s = spec();
        s.binds = vec![BindMount { source: "/a".into(), destination: "rel".into(), readonly: false }];
        assert_eq!(to_oci(&s, root).unwrap_err().kind(), ErrorKind::Invalid);

        assert_eq!(to_oci(&spec(), Path::new("rel")).unwrap_err().kind(), ErrorKind::Invalid);
        let mut s = spec();
        s.resources.memory = Some(-1);
        assert_eq!(to_oci(&s, root).unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn write_bundle_is_atomic_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        write_bundle(&spec(), &bundle, Path::new("/r")).unwrap();
        let names: Vec<_> = fs::read_dir(&bundle).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["config.json"]);
        let back = Spec::load(bundle.join("config.json")).unwrap();
        assert_eq!(back, to_oci(&spec(), Path::new("/r")).unwrap());
        // Overwrites in place.
        let mut s = spec();
        s.hostname = "other".into();
        write_bundle(&s, &bundle, Path::new("/r")).unwrap();
        assert_eq!(Spec::load(bundle.join("config.json")).unwrap().hostname().as_deref(), Some("other"));
    }
}
