//! `stats`: resource usage read from the container's cgroups (v1 or v2) and its network
//! namespace, as docker's stats computes it.

use std::path::PathBuf;

use super::{alive, Container};
use crate::Engine;

/// One reading of a running container's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    /// CPU time used by the container's cgroup, in ns.
    pub cpu_ns: u64,
    /// CPU time of the whole host (all CPUs), in ns, read at the same moment.
    pub system_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, page cache that can be dropped excluded (docker's rule).
    pub mem_usage: u64,
    pub mem_limit: u64,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

impl StatsSample {
    /// docker's CPU %: the container's share of the host's CPU time since `prev`, times
    /// the number of CPUs.
    pub fn cpu_percent(&self, prev: &StatsSample) -> f64 {
        let cpu = self.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
        let sys = self.system_ns.saturating_sub(prev.system_ns) as f64;
        if cpu > 0.0 && sys > 0.0 {
            cpu / sys * self.online_cpus as f64 * 100.0
        } else {
            0.0
        }
    }
}

impl Engine {
    /// A reading of `c`'s counters; `None` when it is not running.
    pub fn container_stats(&self, c: &Container) -> Option<StatsSample> {
        if !matches!(c.status.as_str(), "running" | "paused") || !alive(c.pid, c.pid_start) {
            return None;
        }
        let cg = Cgroups::of(c.pid);
        let host_mem = meminfo_total();
        let mut s = StatsSample { online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32), ..Default::default() };
        s.system_ns = system_ns();
        if let Some(v2) = &cg.unified {
            s.cpu_ns = kv(&read(v2.join("cpu.stat")), "usage_usec") * 1000;
            let inactive = kv(&read(v2.join("memory.stat")), "inactive_file");
            s.mem_usage = num(&read(v2.join("memory.current"))).saturating_sub(inactive);
            s.mem_limit = num(&read(v2.join("memory.max"))).min(host_mem);
            s.pids = num(&read(v2.join("pids.current")));
            for line in read(v2.join("io.stat")).lines() {
                s.blk_read += kv_eq(line, "rbytes");
                s.blk_write += kv_eq(line, "wbytes");
            }
        } else {
            s.cpu_ns = num(&read(cg.v1("cpuacct", "cpuacct.usage")));
            let inactive = kv(&read(cg.v1("memory", "memory.stat")), "total_inactive_file");
            s.mem_usage = num(&read(cg.v1("memory", "memory.usage_in_bytes"))).saturating_sub(inactive);
            let limit = num(&read(cg.v1("memory", "memory.limit_in_bytes")));
            s.mem_limit = if limit == 0 { host_mem } else { limit.min(host_mem) };
            s.pids = num(&read(cg.v1("pids", "pids.current")));
            for line in read(cg.v1("blkio", "blkio.throttle.io_service_bytes")).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    [_, "Read", n] => s.blk_read += n.parse::<u64>().unwrap_or(0),
                    [_, "Write", n] => s.blk_write += n.parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
        // The container's interfaces, loopback excluded (docker counts its endpoints).
        for line in read(PathBuf::from(format!("/proc/{}/net/dev", c.pid))).lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else { continue };
            if name.trim() == "lo" {
                continue;
            }
            let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if f.len() >= 9 {
                s.net_rx += f[0];
                s.net_tx += f[8];
            }
        }
        Some(s)
    }
}

/// Where a process's cgroups are: the v2 directory, or the v1 hierarchies by controller.
pub(crate) struct Cgroups {
    pub(crate) unified: Option<PathBuf>,
    v1: Vec<(String, PathBuf)>,
}

impl Cgroups {
    pub(crate) fn of(pid: i32) -> Cgroups {
        let mut cg = Cgroups { unified: None, v1: Vec::new() };
        let text = read(PathBuf::from(format!("/proc/{pid}/cgroup")));
        let v2_only = !text.lines().any(|l| l.split(':').nth(1).is_some_and(|c| !c.is_empty()));
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
            let path = path.trim_start_matches('/');
            if ctrl.is_empty() {
                if v2_only {
                    cg.unified = Some(PathBuf::from("/sys/fs/cgroup").join(path));
                }
            } else {
                for c in ctrl.split(',') {
                    cg.v1.push((c.to_string(), PathBuf::from("/sys/fs/cgroup").join(c).join(path)));
                }
            }
        }
        cg
    }

    pub(crate) fn v1(&self, controller: &str, file: &str) -> PathBuf {
        self.v1.iter().find(|(c, _)| c == controller).map(|(_, p)| p.join(file)).unwrap_or_default()
    }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A single-number cgroup file; `max` (no limit) is the largest number.
fn num(s: &str) -> u64 {
    match s.trim() {
        "max" => u64::MAX,
        t => t.parse().unwrap_or(0),
    }
}

/// `key value` lines (memory.stat, cpu.stat).
fn kv(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// `key=value` fields (io.stat).
fn kv_eq(line: &str, key: &str) -> u64 {
    line.split_whitespace().find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix('=')).and_then(|v| v.parse().ok())).unwrap_or(0)
}

fn meminfo_total() -> u64 {
    let text = read(PathBuf::from("/proc/meminfo"));
    let kib = text.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<u64>().ok());
    kib.unwrap_or(0).saturating_mul(1024)
}

/// The host's CPU time (all CPUs, `/proc/stat`'s first line) in ns, as docker reads it.
fn system_ns() -> u64 {
    let text = read(PathBuf::from("/proc/stat"));
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let ticks: u64 = line.split_whitespace().skip(1).take(7).filter_map(|x| x.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

/// `update`: new limits and restart policy.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<String>,
}

impl Engine {
    /// Applies new limits to a running container's cgroups first (so a limit the kernel
    /// refuses changes nothing), then records them for later starts.
    pub fn update_container(&self, c: &Container, o: &UpdateOptions) -> crate::Result<()> {
        let restart = o.restart.as_deref().map(super::RestartPolicy::parse).transpose()?;
        if o.memory.is_some_and(|m| m > 0 && m < 6 * 1024 * 1024) {
            return Err(crate::EngineError::Invalid("Minimum memory limit allowed is 6MB".into()));
        }
        if restart.as_ref().is_some_and(|r| r.name != "no") && c.auto_remove() {
            return Err(crate::EngineError::Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container".into()));
        }
        if matches!(c.status.as_str(), "running" | "paused") && alive(c.pid, c.pid_start) {
            let cg = Cgroups::of(c.pid);
            let write = |p: PathBuf, v: String| -> crate::Result<()> {
                std::fs::write(&p, v.as_bytes()).map_err(|e| crate::EngineError::Conflict(format!("Cannot update container {}: {}: {}", c.id, p.display(), strata_store::os_text(&e))))
            };
            let limit = |v: i64| if v > 0 { v.to_string() } else { "max".into() };
            if let Some(v2) = &cg.unified {
                if let Some(m) = o.memory {
                    write(v2.join("memory.max"), limit(m))?;
                }
                if let Some(n) = o.nano_cpus {
                    write(v2.join("cpu.max"), format!("{} 100000", if n > 0 { (n / 10_000).to_string() } else { "max".into() }))?;
                }
                if let Some(p) = o.pids_limit {
                    write(v2.join("pids.max"), limit(p))?;
                }
            } else {
                if let Some(m) = o.memory {
                    write(cg.v1("memory", "memory.limit_in_bytes"), if m > 0 { m.to_string() } else { "-1".into() })?;
                }
                if let Some(n) = o.nano_cpus {
                    write(cg.v1("cpu", "cpu.cfs_period_us"), "100000".into())?;
                    write(cg.v1("cpu", "cpu.cfs_quota_us"), if n > 0 { (n / 10_000).to_string() } else { "-1".into() })?;
                }
                if let Some(p) = o.pids_limit {
                    write(cg.v1("pids", "pids.max"), limit(p))?;
                }
            }
        }
        let mut hc = c.host_config().clone();
        if let Some(m) = o.memory {
            hc.insert("Memory".into(), serde_json::json!(m));
        }
        if let Some(n) = o.nano_cpus {
            hc.insert("NanoCpus".into(), serde_json::json!(n));
        }
        if let Some(p) = o.pids_limit {
            hc.insert("PidsLimit".into(), serde_json::json!(p));
        }
        if let Some(r) = restart {
            hc.insert("RestartPolicy".into(), serde_json::json!({ "Name": r.name, "MaximumRetryCount": r.max_retry }));
        }
        let text = serde_json::Value::Object(hc).to_string();
        self.root.db().write(|tx| tx.execute("UPDATE containers SET host_config=?2 WHERE id=?1", rusqlite::params![c.id, text]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_the_share_of_host_time_times_cpus() {
        let a = StatsSample { cpu_ns: 1_000, system_ns: 10_000, online_cpus: 2, ..Default::default() };
        let b = StatsSample { cpu_ns: 2_000, system_ns: 20_000, online_cpus: 2, ..Default::default() };
        assert!((b.cpu_percent(&a) - 20.0).abs() < 1e-9);
        assert_eq!(a.cpu_percent(&a), 0.0);
        assert_eq!(kv("total_inactive_file 4096\ncache 1\n", "total_inactive_file"), 4096);
        assert_eq!(kv_eq("8:0 rbytes=10 wbytes=20 rios=1", "wbytes"), 20);
    }
}
