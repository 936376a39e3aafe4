//! Container JSON in docker's shapes: `HostConfig` at create, `inspect`, and `ps` rows.

use serde_json::{json, Map, Value};

use super::{Container, CreateOptions, RestartPolicy, ZERO_TIME};
use crate::Engine;

/// docker's HostConfig for what strata implements, in docker's field order.
pub(crate) fn host_config(o: &CreateOptions, restart: &RestartPolicy) -> Map<String, Value> {
    let v = json!({
        "Binds": null,
        "ContainerIDFile": "",
        "LogConfig": { "Type": "json-file", "Config": {} },
        "NetworkMode": "bridge",
        "PortBindings": {},
        "RestartPolicy": { "Name": restart.name, "MaximumRetryCount": restart.max_retry },
        "AutoRemove": o.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": null,
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
        "PidMode": "",
        "Privileged": false,
        "PublishAllPorts": false,
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
    if !o.init {
        m.remove("Init");
    }
    m
}

impl Engine {
    /// `inspect` of a container (Engine API 1.51 shape).
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
        m.insert("Mounts".into(), json!([]));
        m.insert("Config".into(), Value::Object(c.config.clone()));
        m.insert(
            "NetworkSettings".into(),
            json!({
                "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": false,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
                "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
                "IPv6Gateway": "", "MacAddress": "", "Networks": {}
            }),
        );
        Value::Object(m)
    }
}
