//! Container JSON in docker's shapes: `HostConfig` at create, `inspect`, and `ps` rows.

use serde_json::{json, Map, Value};

use super::mountspec::{MountSpec, MountType};
use super::{Container, CreateOptions, RestartPolicy, ZERO_TIME};
use crate::Engine;

/// docker's HostConfig for what strata implements, in docker's field order.
pub(crate) fn host_config(o: &CreateOptions, restart: &RestartPolicy, network_mode: &str) -> Map<String, Value> {
    let v = json!({
        "Binds": null,
        "ContainerIDFile": "",
        "LogConfig": { "Type": "json-file", "Config": {} },
        "NetworkMode": network_mode,
        "PortBindings": o.port_bindings,
        "RestartPolicy": { "Name": restart.name, "MaximumRetryCount": restart.max_retry },
        "AutoRemove": o.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": if o.volumes_from.is_empty() { Value::Null } else { json!(o.volumes_from) },
        "ConsoleSize": [0, 0],
        "CapAdd": null,
        "CapDrop": null,
        "CgroupnsMode": "private",
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": null,
        "GroupAdd": null,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": null,
        "OomScoreAdj": 0,
        "PidMode": o.pid_mode.clone().unwrap_or_default(),
        "Privileged": o.privileged,
        "PublishAllPorts": o.publish_all,
        "ReadonlyRootfs": o.read_only,
        "SecurityOpt": if o.no_new_privileges { json!(["no-new-privileges"]) } else { Value::Null },
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": o.shm_size.unwrap_or(64 * 1024 * 1024),
        "Runtime": o.runtime.clone().unwrap_or_else(|| "strata".into()),
        "Isolation": "",
        "CpuShares": 0,
        "Memory": o.memory.unwrap_or(0),
        "NanoCpus": o.nano_cpus.unwrap_or(0),
        "CgroupParent": o.cgroup_parent.clone().unwrap_or_default(),
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "Devices": [],
        "DeviceCgroupRules": null,
        "DeviceRequests": null,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": null,
        "OomKillDisable": null,
        "PidsLimit": o.pids_limit,
        "Ulimits": [],
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "Init": if o.init { json!(true) } else { Value::Null },
        "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
        "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    let Value::Object(mut m) = v else { unreachable!() };
    if !o.binds.is_empty() {
        m.insert("Binds".into(), json!(o.binds));
    }
    if !o.mounts.is_empty() {
        let api: Vec<Value> = o.mounts.iter().map(mount_api).collect();
        m.insert("Mounts".into(), json!(api));
    }
    if !o.tmpfs.is_empty() {
        let t: serde_json::Map<String, Value> = o.tmpfs.iter().map(|(d, opts)| (d.clone(), json!(opts))).collect();
        m.insert("Tmpfs".into(), Value::Object(t));
    }
    if !o.init {
        m.remove("Init");
    }
    m
}

/// A `--mount` in the Engine API's `HostConfig.Mounts` shape.
fn mount_api(m: &MountSpec) -> Value {
    let mut v = json!({ "Type": m.typ.map(|t| t.as_str()).unwrap_or("volume"), "Source": m.source, "Target": m.destination });
    if m.read_only {
        v["ReadOnly"] = json!(true);
    }
    match m.typ {
        Some(MountType::Bind) if m.propagation != "rprivate" => v["BindOptions"] = json!({ "Propagation": m.propagation }),
        Some(MountType::Tmpfs) if m.tmpfs_size.is_some() || m.tmpfs_mode.is_some() => {
            let mut t = serde_json::Map::new();
            if let Some(s) = m.tmpfs_size {
                t.insert("SizeBytes".into(), json!(s));
            }
            if let Some(md) = m.tmpfs_mode {
                t.insert("Mode".into(), json!(md));
            }
            v["TmpfsOptions"] = Value::Object(t);
        }
        _ => {}
    }
    v
}

/// Back from the API shape (what `start` reads from the record).
pub(crate) fn mount_from_api(v: &Value) -> MountSpec {
    let typ = match v["Type"].as_str() {
        Some("bind") => MountType::Bind,
        Some("tmpfs") => MountType::Tmpfs,
        _ => MountType::Volume,
    };
    MountSpec {
        typ: Some(typ),
        source: v["Source"].as_str().unwrap_or("").into(),
        destination: v["Target"].as_str().unwrap_or("").into(),
        read_only: v["ReadOnly"].as_bool().unwrap_or(false),
        propagation: v["BindOptions"]["Propagation"].as_str().unwrap_or(if typ == MountType::Bind { "rprivate" } else { "" }).into(),
        tmpfs_size: v["TmpfsOptions"]["SizeBytes"].as_i64(),
        tmpfs_mode: v["TmpfsOptions"]["Mode"].as_u64().map(|m| m as u32),
        ..Default::default()
    }
}

/// Every mount of a container, parsed from its record: `-v` binds, then `--mount`s.
pub(crate) fn recorded_mounts(c: &Container) -> Vec<(MountSpec, bool)> {
    let hc = c.host_config();
    let mut out: Vec<(MountSpec, bool)> = hc
        .get("Binds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str().and_then(|s| super::mountspec::parse_bind(s).ok()))
        .map(|m| (m, true))
        .collect();
    out.extend(hc.get("Mounts").and_then(Value::as_array).into_iter().flatten().map(|v| (mount_from_api(v), false)));
    out
}

/// inspect's `Mounts` entry (`--tmpfs` is not listed, as in docker).
fn mount_point(m: &MountSpec) -> Value {
    json!({
        "Type": m.typ.map(|t| t.as_str()).unwrap_or("volume"),
        "Source": m.source,
        "Destination": m.destination,
        "Mode": m.mode,
        "RW": !m.read_only,
        "Propagation": m.propagation,
    })
}

impl Engine {
    /// `inspect` of a container (Engine API 1.51 shape).
    /// `diff`: the writable layer against the init layer and the image (so the init
    /// layer's files never show, nor what is mounted over the rootfs), parents first.
    pub fn container_changes(&self, c: &Container) -> crate::Result<Vec<strata_snapshot::Change>> {
        Ok(self.snapshotter().changes(&c.id)?)
    }

    /// `top`: the host's `ps` with the given options (docker's default `-ef`), keeping the
    /// rows of the container's processes — every pid in its cgroup, so exec'd processes
    /// count too. Returns the titles and the rows, as the Engine API's ContainerTop.
    pub fn container_top(&self, c: &Container, ps_args: &[String]) -> crate::Result<(Vec<String>, Vec<Vec<String>>)> {
        if !matches!(c.status.as_str(), "running" | "paused") {
            return Err(crate::EngineError::Conflict(format!("Container {} is not running", c.id)));
        }
        let pids = cgroup_pids(c.pid);
        let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| crate::EngineError::Invalid(format!("Error running ps: {}", strata_store::os_text(&e))))?;
        if !out.status.success() {
            return Err(crate::EngineError::Invalid(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }

    pub fn container_inspect(&self, c: &Container, size: bool) -> Value {
        let dir = self.container_dir(&c.id);
        let status = if c.status == "exited" && c.finished_at == ZERO_TIME { "created" } else { c.status.as_str() };
        let mut m = Map::new();
        m.insert("Id".into(), json!(c.id));
        m.insert("Created".into(), json!(c.created));
        m.insert("Path".into(), json!(c.path));
        m.insert("Args".into(), json!(c.args));
        m.insert(
            "State".into(),
            json!({
                "Status": status,
                "Running": matches!(c.status.as_str(), "running" | "paused"),
                "Paused": c.status == "paused",
                "Restarting": c.status == "restarting",
                "OOMKilled": false,
                "Dead": c.status == "dead",
                "Pid": if c.running() { c.pid } else { 0 },
                "ExitCode": c.exit_code,
                "Error": c.error,
                "StartedAt": c.started_at,
                "FinishedAt": c.finished_at,
            }),
        );
        m.insert("Image".into(), json!(c.image_id));
        m.insert("ResolvConfPath".into(), json!(dir.join("resolv.conf")));
        m.insert("HostnamePath".into(), json!(dir.join("hostname")));
        m.insert("HostsPath".into(), json!(dir.join("hosts")));
        m.insert("LogPath".into(), json!(dir.join(format!("{}-json.log", c.id))));
        m.insert("Name".into(), json!(format!("/{}", c.name)));
        m.insert("RestartCount".into(), json!(c.restart_count));
        m.insert("Driver".into(), json!(self.snapshotter().driver().name()));
        m.insert("Platform".into(), json!("linux"));
        m.insert("MountLabel".into(), json!(""));
        m.insert("ProcessLabel".into(), json!(""));
        m.insert("AppArmorProfile".into(), json!(""));
        m.insert("ExecIDs".into(), Value::Null);
        m.insert("HostConfig".into(), Value::Object(c.host_config().clone()));
        let graph = self.snapshotter().mounts(&c.id).ok().and_then(|ms| ms.into_iter().next()).map(|mnt| match mnt {
            strata_snapshot::Mount::Overlay { lowers, upper, work, .. } => json!({
                "Data": {
                    "LowerDir": lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                    "MergedDir": dir.join("rootfs"),
                    "UpperDir": upper,
                    "WorkDir": work,
                },
                "Name": "overlay2",
            }),
            strata_snapshot::Mount::Bind { source, .. } => json!({ "Data": { "MergedDir": source }, "Name": "vfs" }),
        });
        m.insert("GraphDriver".into(), graph.unwrap_or(json!({ "Data": null, "Name": self.snapshotter().driver().name() })));
        if size {
            m.insert("SizeRw".into(), json!(self.container_size_rw(c)));
            let img = c.image_id.parse().ok().and_then(|d| self.images.get(&d).ok()).map(|i| i.size).unwrap_or(0);
            m.insert("SizeRootFs".into(), json!(img + self.container_size_rw(c)));
        }
        let mut mounts: Vec<Value> = recorded_mounts(c).iter().filter(|(mp, _)| mp.typ != Some(MountType::Volume)).map(|(mp, _)| mount_point(mp)).collect();
        for v in &c.volume_mounts {
            let source = self.volumes().get(&v.name).map(|x| x.mountpoint.display().to_string()).unwrap_or_default();
            mounts.push(json!({
                "Type": "volume", "Name": v.name, "Source": source, "Destination": v.destination,
                "Driver": "local", "Mode": v.mode, "RW": !v.read_only, "Propagation": "",
            }));
        }
        m.insert("Mounts".into(), json!(mounts));
        m.insert("Config".into(), Value::Object(c.config.clone()));
        m.insert("NetworkSettings".into(), self.network_settings(c));
        Value::Object(m)
    }
}

/// Every pid in the cgroup of `pid` (v2, or the v1 `pids`/`memory`/`freezer` hierarchy).
fn cgroup_pids(pid: i32) -> std::collections::HashSet<i32> {
    let mut out = std::collections::HashSet::from([pid]);
    let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return out };
    let mut dirs = Vec::new();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        let path = path.trim_start_matches('/');
        if ctrl.is_empty() {
            dirs.push(std::path::Path::new("/sys/fs/cgroup").join(path));
        } else if let Some(c) = ["pids", "memory", "freezer"].iter().find(|c| ctrl.split(',').any(|x| x == **c)) {
            dirs.push(std::path::Path::new("/sys/fs/cgroup").join(c).join(path));
        }
    }
    for d in dirs {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            break;
        }
    }
    out
}

/// moby's parsePSOutput: titles from the header, the last column takes the rest of
/// each line; rows whose PID is not one of `pids` are dropped.
fn parse_ps(text: &str, pids: &std::collections::HashSet<i32>) -> crate::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let Some(pid_col) = titles.iter().position(|t| t == "PID") else {
        return Err(crate::EngineError::Invalid("Couldn't find PID field in ps output".into()));
    };
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(p) = fields[pid_col].parse::<i32>() else { continue };
        if !pids.contains(&p) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
        row.push(fields[titles.len() - 1..].join(" "));
        rows.push(row);
    }
    Ok((titles, rows))
}

#[cfg(test)]
mod top_tests {
    #[test]
    fn ps_rows_of_the_container_only_with_the_command_whole() {
        let ps = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init splash\nroot 42 1 0 10:01 ? 00:00:00 sleep 100 now\n";
        let pids = std::collections::HashSet::from([42]);
        let (t, rows) = super::parse_ps(ps, &pids).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(rows, vec![vec!["root", "42", "1", "0", "10:01", "?", "00:00:00", "sleep 100 now"]]);
        assert!(super::parse_ps("USER COMMAND\n", &pids).is_err());
    }
}
