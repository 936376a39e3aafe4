//! Containers: records, names, creation, listing, removal — and, in the submodules, the
//! lifecycle (`lifecycle`), the supervisor's host side (`host`) and inspect JSON
//! (`inspect`).
//!
//! A container is a row in `containers` (its docker `Config` and `HostConfig` as JSON,
//! its state in columns), a directory `containers/<id>/` (spec, bundle, init files, log)
//! and two snapshots: `<id>-init` (mount points for /etc/hosts and friends, committed, so
//! they never show in diff, commit or export) and `<id>` (the writable layer).
//!
//! Liveness: a running container has a supervisor, identified by (pid, start time).
//! `reconcile` checks it whenever containers are read; a container whose supervisor and
//! init are both gone is recorded as exited with code 255 (the real code is unknowable),
//! and an `--rm` one is removed.

pub mod archive;
pub mod commit;
pub mod host;
pub mod inspect;
pub mod lifecycle;
pub mod mountspec;
pub mod names;
pub mod network;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::{params, Row};
use serde_json::{json, Map, Value};
use strata_image::Reference;
use strata_snapshot::SnapshotError;

use crate::{Engine, EngineError, Result};

pub(crate) const MIGRATION: &str = "DROP TABLE containers;
    CREATE TABLE containers(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        host_config TEXT NOT NULL,
        path TEXT NOT NULL,
        args TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'created',
        pid INTEGER NOT NULL DEFAULT 0,
        pid_start INTEGER NOT NULL DEFAULT 0,
        sup_pid INTEGER NOT NULL DEFAULT 0,
        sup_start INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        finished_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        restart_count INTEGER NOT NULL DEFAULT 0,
        manual_stop INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX containers_image ON containers(image_id);";

/// Volumes a container mounts, resolved at create (docker's MountPoints).
pub(crate) const MIGRATION_VOLUMES: &str = "ALTER TABLE containers ADD COLUMN volume_mounts TEXT NOT NULL DEFAULT '[]';";

/// Temporary containers (a build's RUN steps) belong to the lease of the process that
/// made them: when that process dies, the next command removes them.
pub(crate) const MIGRATION_LEASE: &str = "ALTER TABLE containers ADD COLUMN lease TEXT;
    CREATE INDEX containers_lease ON containers(lease) WHERE lease IS NOT NULL;";

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeMount {
    pub name: String,
    pub destination: String,
    pub read_only: bool,
    /// inspect's `Mode` (`z` for named local volumes, as docker sets it).
    pub mode: String,
    pub anonymous: bool,
    /// Copy the image's content in on first start (false for `nocopy`, and after it ran).
    pub seed: bool,
    /// `volume-subpath`: the directory (or file) inside the volume that is mounted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// docker's `--restart` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub name: String,
    pub max_retry: i64,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let max_retry = match (name, count) {
            ("on-failure", Some(c)) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| EngineError::Invalid("invalid restart policy format: maximum retry count must be a positive integer".into()))?,
            (_, Some(_)) => return Err(EngineError::Invalid(format!("invalid restart policy format: maximum retry count cannot be used with restart policy '{name}'"))),
            _ => 0,
        };
        match name {
            "" | "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy { name: if name.is_empty() { "no".into() } else { name.into() }, max_retry }),
            _ => Err(EngineError::Invalid(format!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"))),
        }
    }
}

/// What `create`/`run` take, already parsed by a front end.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    pub cmd: Vec<String>,
    /// `Some("")` resets the image's entrypoint.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub shm_size: Option<i64>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub runtime: Option<String>,
    /// Parent cgroup (default `/strata`).
    pub cgroup_parent: Option<String>,
    pub no_new_privileges: bool,
    /// `-v` entries that name a source (`HostConfig.Binds`), as given.
    pub binds: Vec<String>,
    /// `-v /path` entries (`Config.Volumes`).
    pub volumes: Vec<String>,
    /// `--mount` entries, parsed.
    pub mounts: Vec<mountspec::MountSpec>,
    /// `--tmpfs` entries: destination and options.
    pub tmpfs: Vec<(String, String)>,
    /// `--volumes-from CONTAINER[:ro|:rw]`.
    pub volumes_from: Vec<String>,
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub read_only: bool,
    /// `--network`: `bridge` (the default), `host`, `none`, `container:NAME` or the name
    /// or id of a network.
    pub network: Option<String>,
    pub network_aliases: Vec<String>,
    /// `--ip`: the address on the (user) network.
    pub ipv4: Option<String>,
    /// `-p`, parsed (`HostConfig.PortBindings`).
    pub port_bindings: strata_network::ports::PortMap,
    /// `--expose` as port keys (`80/tcp`).
    pub expose: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--pid`: `host` or `container:NAME` (None: a namespace of its own).
    pub pid_mode: Option<String>,
    /// The lease of the process this container is temporary work of (a build step):
    /// if that process dies, the next command kills and removes the container.
    pub lease: Option<String>,
}

/// A container as recorded.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub created: String,
    pub config: Map<String, Value>,
    /// Parsed on first use: listing a thousand containers needs none of it.
    host_config_raw: String,
    host_config: std::cell::OnceCell<Map<String, Value>>,
    pub path: String,
    pub args: Vec<String>,
    pub status: String,
    pub pid: i32,
    pub pid_start: u64,
    pub sup_pid: i32,
    pub sup_start: u64,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: i64,
    pub manual_stop: bool,
    pub volume_mounts: Vec<VolumeMount>,
}

impl Container {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Container> {
        let cfg: String = r.get("config")?;
        let hc: String = r.get("host_config")?;
        let args: String = r.get("args")?;
        Ok(Container {
            id: r.get("id")?,
            name: r.get("name")?,
            image_id: r.get("image_id")?,
            created: r.get("created")?,
            config: serde_json::from_str(&cfg).unwrap_or_default(),
            host_config_raw: hc,
            host_config: std::cell::OnceCell::new(),
            path: r.get("path")?,
            args: serde_json::from_str(&args).unwrap_or_default(),
            status: r.get("status")?,
            pid: r.get("pid")?,
            pid_start: r.get::<_, i64>("pid_start")? as u64,
            sup_pid: r.get("sup_pid")?,
            sup_start: r.get::<_, i64>("sup_start")? as u64,
            exit_code: r.get("exit_code")?,
            error: r.get("error")?,
            started_at: r.get("started_at")?,
            finished_at: r.get("finished_at")?,
            restart_count: r.get("restart_count")?,
            manual_stop: r.get::<_, i64>("manual_stop")? != 0,
            volume_mounts: serde_json::from_str(&r.get::<_, String>("volume_mounts")?).unwrap_or_default(),
        })
    }

    /// docker's `HostConfig` of this container.
    pub fn host_config(&self) -> &Map<String, Value> {
        self.host_config.get_or_init(|| serde_json::from_str(&self.host_config_raw).unwrap_or_default())
    }

    pub fn running(&self) -> bool {
        matches!(self.status.as_str(), "running" | "paused" | "restarting")
    }

    pub fn auto_remove(&self) -> bool {
        self.host_config().get("AutoRemove").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn tty(&self) -> bool {
        self.config.get("Tty").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn image_name(&self) -> &str {
        self.config.get("Image").and_then(Value::as_str).unwrap_or("")
    }

    pub fn stop_signal(&self) -> i32 {
        self.config.get("StopSignal").and_then(Value::as_str).and_then(signal_number).unwrap_or(libc::SIGTERM)
    }

    pub fn stop_timeout(&self) -> i64 {
        self.config.get("StopTimeout").and_then(Value::as_i64).unwrap_or(10)
    }
}

/// Checks the mounts a container asks for, as docker's create does: bind specs parse,
/// a `--mount` bind source exists, no destination is used twice. Volumes (named and
/// anonymous) arrive with the volume service.
pub fn plan_mounts(o: &CreateOptions) -> Result<Vec<mountspec::MountSpec>> {
    use mountspec::MountType;
    let mut all = Vec::new();
    for b in &o.binds {
        let m = mountspec::parse_bind(b).map_err(EngineError::Invalid)?;
        if m.typ == Some(MountType::Volume) {
            strata_volume::validate_name(&m.source).map_err(|e| EngineError::Invalid(format!("create {}: {e}", m.source)))?;
        }
        all.push(m);
    }
    for m in &o.mounts {
        if m.typ == Some(MountType::Bind) && !std::path::Path::new(&m.source).exists() {
            return Err(EngineError::Invalid(format!("invalid mount config for type \"bind\": bind source path does not exist: {}", m.source)));
        }
        all.push(m.clone());
    }
    let tmpfs: Vec<String> = o.tmpfs.iter().map(|(d, _)| d.clone()).collect();
    mountspec::check_duplicates(all.iter().map(|m| m.destination.as_str()).chain(tmpfs.iter().map(String::as_str))).map_err(EngineError::Invalid)?;
    Ok(all)
}

/// `SIGTERM`, `TERM`, `15` → 15.
pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

/// Start time of a process (clock ticks since boot, field 22 of /proc/PID/stat): with
/// the pid it identifies a process even after pid reuse.
pub fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && start > 0 && process_start(pid) == Some(start) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

const SELECT: &str = "SELECT * FROM containers";

impl Engine {
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.root.path().join("containers").join(id)
    }

    /// A short hash naming this data root in supervisor socket names.
    pub(crate) fn root_tag(&self) -> String {
        crate::root_tag(self.root.path())
    }

    pub fn socket_of(&self, id: &str) -> String {
        strata_runtime::protocol::socket_name(&self.root_tag(), id)
    }

    /// Finds a container by full id, name (with or without `/`) or unique id prefix.
    pub fn container(&self, name: &str) -> Result<Container> {
        let c = self.find_container(name)?.ok_or_else(|| EngineError::NoSuchContainer(name.to_string()))?;
        self.reconcile(c)
    }

    pub(crate) fn find_container(&self, name: &str) -> Result<Option<Container>> {
        let n = name.strip_prefix('/').unwrap_or(name);
        Ok(self.root.db().read(|c| strata_store::find_by_id_or_name(c, SELECT, n, Container::from_row))?)
    }

    /// Every container (reconciled), newest first.
    pub fn containers(&self) -> Result<Vec<Container>> {
        let all: Vec<Container> = self.root.db().read(|c| {
            let mut st = c.prepare(&format!("{SELECT} ORDER BY created DESC"))?;
            let r = st.query_map([], Container::from_row)?.collect();
            r
        })?;
        let mut out = Vec::with_capacity(all.len());
        for c in all {
            if let Ok(c) = self.reconcile(c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Brings a recorded running state in line with the processes that exist.
    fn reconcile(&self, c: Container) -> Result<Container> {
        if !c.running() || alive(c.sup_pid, c.sup_start) {
            return Ok(c);
        }
        if alive(c.pid, c.pid_start) {
            // The supervisor died; the container still runs and is controlled by pid.
            return Ok(c);
        }
        // Both gone: the exit code cannot be known. Release what the runtime kept for it
        // (cgroups, state); its mounts died with the supervisor's mount namespace.
        if let Ok(exec) = self.runtime_of(&c) {
            let _ = exec.delete(&c.id, true);
        }
        // The volume references its supervisor took (a shared volume with driver options
        // is unmounted after its last one).
        for v in &c.volume_mounts {
            let _ = self.volumes.unmount(&v.name);
        }
        self.release_network(&c);
        let now = strata_store::now_rfc3339();
        self.root.db().write(|tx| {
            tx.execute(
                "UPDATE containers SET status='exited', exit_code=255, pid=0, finished_at=?2 WHERE id=?1 AND status IN ('running','paused','restarting')",
                params![c.id, now],
            )
        })?;
        if c.auto_remove() {
            self.destroy_container(&c, true)?;
            return Err(EngineError::NoSuchContainer(c.name));
        }
        self.find_container(&c.id)?.ok_or_else(|| EngineError::NoSuchContainer(c.id.clone()))
    }

    /// `rename`: a new name for a container, running or not (its hostname stays).
    pub fn rename_container(&self, c: &Container, new: &str) -> Result<()> {
        let new = new.trim_start_matches('/');
        if new.is_empty() {
            return Err(EngineError::Invalid("Neither old nor new names may be empty".into()));
        }
        if !names::valid(new) {
            return Err(EngineError::Invalid(format!(
                "Error when allocating new name: Invalid container name (/{new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if new == c.name {
            return Err(EngineError::Invalid("Renaming a container with the same name as its current name".into()));
        }
        // Peers on user networks find the container under its new name.
        self.networks.renaming(&c.id, self, || self.rename_record(c, new))?
    }

    fn rename_record(&self, c: &Container, new: &str) -> Result<()> {
        self.root.db().write(|tx| match tx.execute("UPDATE containers SET name=?2 WHERE id=?1", params![c.id, new]) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                let other: String = tx.query_row("SELECT id FROM containers WHERE name=?1", [new], |r| r.get(0))?;
                Err(EngineError::Conflict(format!(
                    "Error when allocating new name: Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )))
            }
            r => {
                r?;
                Ok(())
            }
        })
    }

    /// `create`: records the container and prepares its layers. Nothing runs yet.
    pub fn create_container(&self, o: &CreateOptions) -> Result<Container> {
        // A generated name can collide with an existing one: draw again, as docker does
        // (appending a digit after the first retry).
        for attempt in 0..10 {
            let mut opts = o.clone();
            if o.name.is_none() {
                let mut n = names::random_name();
                if attempt > 0 {
                    n.push_str(&(attempt % 10).to_string());
                }
                opts.name = Some(n);
            }
            match self.create_named(&opts) {
                Err(EngineError::Conflict(_)) if o.name.is_none() => continue,
                r => return r,
            }
        }
        Err(EngineError::Conflict("could not find a free container name".into()))
    }

    fn create_named(&self, o: &CreateOptions) -> Result<Container> {
        let img = self.images.resolve(&o.image)?;
        let img_cfg = img.config.container_config();
        let n = o.name.as_deref().unwrap_or_default();
        if !names::valid(n) {
            return Err(EngineError::Invalid(format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
        }
        let name = n.trim_start_matches('/').to_string();
        let restart = RestartPolicy::parse(o.restart.as_deref().unwrap_or("no"))?;
        let planned = plan_mounts(o)?;
        let net = self.plan_network(o)?;
        match o.pid_mode.as_deref().unwrap_or("") {
            "" | "host" => {}
            m if m.starts_with("container:") => {
                self.container(&m["container:".len()..])?;
            }
            m => return Err(EngineError::Invalid(format!("invalid PID mode: {m}"))),
        }
        if o.auto_remove && restart.name != "no" {
            return Err(EngineError::Invalid("conflicting options: cannot specify both --restart and --rm".into()));
        }
        if let Some(s) = &o.stop_signal {
            if signal_number(s).is_none() {
                return Err(EngineError::Invalid(format!("Invalid signal: {s}")));
            }
        }
        if let Some(m) = o.memory {
            if m != 0 && m < 6 * 1024 * 1024 {
                return Err(EngineError::Invalid("Minimum memory limit allowed is 6MB".into()));
            }
        }
        if let Some(c) = o.nano_cpus {
            let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
            if c < 0 || c > ncpu * 1_000_000_000 {
                return Err(EngineError::Invalid(format!(
                    "range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
                )));
            }
        }
        if let Some(rt) = &o.runtime {
            // Whatever the runtime crate cannot run is refused now, not at start.
            strata_runtime::executor::executor_for(Some(rt), &self.runtime_state_root()).map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        if let Some(p) = &o.cgroup_parent {
            if p.split('/').any(|c| c == "..") {
                return Err(EngineError::Invalid(format!("invalid cgroup parent {p:?}")));
            }
        }
        // Entrypoint and command, docker's rules: a new entrypoint drops the image's Cmd.
        let str_list = |v: Option<&Value>| -> Option<Vec<String>> {
            v.and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        };
        let entrypoint: Option<Vec<String>> = match &o.entrypoint {
            Some(e) if e.is_empty() => None,
            Some(e) => Some(vec![e.clone()]),
            None => str_list(img_cfg.get("Entrypoint")),
        };
        let cmd: Option<Vec<String>> = if !o.cmd.is_empty() {
            Some(o.cmd.clone())
        } else if o.entrypoint.is_some() {
            None
        } else {
            str_list(img_cfg.get("Cmd"))
        };
        let mut argv: Vec<String> = entrypoint.clone().unwrap_or_default();
        argv.extend(cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(EngineError::Invalid("No command specified".into()));
        }
        let id = strata_store::random_hex(32);
        let hostname = o.hostname.clone().or_else(|| net.hostname()).unwrap_or_else(|| id[..12].to_string());
        let mut env: Vec<String> = str_list(img_cfg.get("Env")).unwrap_or_default();
        for e in &o.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        let mut labels: BTreeMap<String, String> = img_cfg
            .get("Labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
            .unwrap_or_default();
        labels.extend(o.labels.clone());
        let image_name = Reference::parse(&o.image).map(|r| if o.image.contains(['@', ':']) || o.image.starts_with("sha256:") { o.image.clone() } else { r.familiar_name() }).unwrap_or_else(|_| o.image.clone());
        let mut config = Map::new();
        config.insert("Hostname".into(), json!(hostname));
        config.insert("Domainname".into(), json!(""));
        config.insert("User".into(), json!(o.user.clone().unwrap_or_else(|| img_cfg.get("User").and_then(Value::as_str).unwrap_or("").to_string())));
        config.insert("AttachStdin".into(), json!(o.attach_stdin));
        config.insert("AttachStdout".into(), json!(o.attach_stdout));
        config.insert("AttachStderr".into(), json!(o.attach_stderr));
        // The image's, `--expose`'s and every published port (docker merges them).
        let mut exposed: Map<String, Value> = img_cfg.get("ExposedPorts").and_then(Value::as_object).cloned().unwrap_or_default();
        for k in o.expose.iter().chain(o.port_bindings.keys()) {
            exposed.insert(k.clone(), json!({}));
        }
        if !exposed.is_empty() {
            exposed.sort_keys();
            config.insert("ExposedPorts".into(), Value::Object(exposed));
        }
        config.insert("Tty".into(), json!(o.tty));
        config.insert("OpenStdin".into(), json!(o.open_stdin));
        config.insert("StdinOnce".into(), json!(o.open_stdin && o.attach_stdin));
        // docker keeps Env null when neither the image nor the user set any; PATH and the
        // other defaults are added when the process starts.
        config.insert("Env".into(), if env.is_empty() { Value::Null } else { json!(env) });
        config.insert("Cmd".into(), json!(cmd));
        config.insert("Image".into(), json!(image_name));
        // `-v /path` joins the image's VOLUMEs in Config.Volumes, as docker merges them.
        let mut vols: Map<String, Value> = img_cfg.get("Volumes").and_then(Value::as_object).cloned().unwrap_or_default();
        for v in &o.volumes {
            vols.insert(mountspec::clean(std::path::Path::new(v)), json!({}));
        }
        vols.sort_keys(); // a Go map: docker prints it sorted
        config.insert("Volumes".into(), if vols.is_empty() { Value::Null } else { Value::Object(vols.clone()) });
        config.insert("WorkingDir".into(), json!(o.workdir.clone().unwrap_or_else(|| img_cfg.get("WorkingDir").and_then(Value::as_str).unwrap_or("").to_string())));
        config.insert("Entrypoint".into(), json!(entrypoint));
        config.insert("OnBuild".into(), Value::Null);
        config.insert("Labels".into(), json!(labels));
        if let Some(s) = o.stop_signal.clone().or_else(|| img_cfg.get("StopSignal").and_then(Value::as_str).map(str::to_string)) {
            config.insert("StopSignal".into(), json!(s));
        }
        if let Some(t) = o.stop_timeout {
            config.insert("StopTimeout".into(), json!(t));
        }
        let host_config = inspect::host_config(o, &restart, &net.mode);
        let created = strata_store::now_rfc3339();

        let dir = self.container_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        let res = (|| -> Result<()> {
            self.write_init_files(&id, &hostname, net.host_network())?;
            let top = img.top_layer.as_ref().map(|t| t.to_string());
            let snaps = self.snapshotter();
            let init_key = format!("{id}-init");
            snaps.prepare(&init_key, top.as_deref(), None)?;
            host::populate_init_layer(&snaps.upper_dir(&init_key)?)?;
            snaps.commit_with(&init_key, &init_key, false)?;
            snaps.prepare(&id, Some(&init_key), None)?;
            self.root.db().write(|tx| -> Result<()> {
                let r = tx.execute(
                    "INSERT INTO containers(id, name, image_id, created, config, host_config, path, args, lease) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        id,
                        name,
                        img.id.to_string(),
                        created,
                        Value::Object(config.clone()).to_string(),
                        Value::Object(host_config.clone()).to_string(),
                        argv[0],
                        serde_json::to_string(&argv[1..]).expect("json"),
                        o.lease,
                    ],
                );
                match r {
                    Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                        let other: String = tx.query_row("SELECT id FROM containers WHERE name=?1", [&name], |r| r.get(0))?;
                        Err(EngineError::Conflict(format!(
                            "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )))
                    }
                    r => {
                        r?;
                        Ok(())
                    }
                }
            })
        })();
        if let Err(e) = res {
            let _ = self.snapshotter().remove(&id);
            let _ = self.snapshotter().remove(&format!("{id}-init"));
            let _ = strata_store::fsutil::remove_all(&dir);
            return Err(e);
        }
        let tmpfs: Vec<String> = o.tmpfs.iter().map(|(d, _)| d.clone()).collect();
        let attached = self
            .attach_network(&id, &net, o)
            .and_then(|_| self.attach_volumes(&id, &planned, vols.keys().cloned().collect(), &tmpfs, &o.volumes_from))
            .and_then(|_| self.seed_at_create(&id));
        if let Err(e) = attached {
            // Created volumes and references go with the half-made container.
            if let Some(c) = self.find_container(&id)? {
                let _ = self.destroy_container(&c, true);
            }
            return Err(e);
        }
        self.find_container(&id)?.ok_or(EngineError::NoSuchContainer(id))
    }

    fn write_init_files(&self, id: &str, hostname: &str, host_network: bool) -> Result<()> {
        let dir = self.container_dir(id);
        let w = |name: &str, data: &str| -> Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, data).map_err(|e| EngineError::io("write", &p, e))
        };
        w("hostname", &format!("{hostname}\n"))?;
        // The host's own file on the host's network, as docker copies it.
        let hosts = if host_network { std::fs::read_to_string("/etc/hosts").unwrap_or_default() } else { strata_network::hosts::BASE.to_string() };
        w("hosts", &hosts)?;
        w("resolv.conf", &host::resolv_conf())?;
        let log = dir.join(format!("{id}-json.log"));
        std::fs::File::create(&log).map_err(|e| EngineError::io("create", &log, e))?;
        Ok(())
    }

    /// Removes a stopped container's layers, files and record. `rm -f` stops first.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.container(name)?;
        if c.running() {
            if !force {
                let what = if c.status == "paused" { "container is paused and must be unpaused first" } else { "container is running: stop the container before removing or force remove" };
                return Err(EngineError::Conflict(format!("cannot remove container \"/{}\": {what}", c.name)));
            }
            self.kill_container(&c, libc::SIGKILL, true)?;
            self.wait_stopped(&c, Some(std::time::Duration::from_secs(10)))?;
            // --rm containers remove themselves once stopped.
            if c.auto_remove() {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if self.find_container(&c.id)?.is_none() {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        match self.find_container(&c.id)? {
            Some(c) => self.destroy_container(&c, volumes),
            None => Ok(()),
        }
    }

    /// Creates (or reuses) the container's volumes, takes references on them and records
    /// the mount points: named and `--mount` volumes first, then an anonymous volume for
    /// every `Config.Volumes` path no other mount or tmpfs covers.
    fn attach_volumes(&self, id: &str, planned: &[mountspec::MountSpec], anon_paths: Vec<String>, tmpfs: &[String], from: &[String]) -> Result<()> {
        use mountspec::MountType;
        let vs = &self.volumes;
        let verr = |e: strata_volume::VolumeError| EngineError::Invalid(e.to_string());
        let mut out: Vec<VolumeMount> = Vec::new();
        // --volumes-from: every volume of the source, never seeded again, `:ro` forcing
        // read-only; an explicit mount on the same destination replaces the inherited one.
        for spec in from {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                Some(_) => return Err(EngineError::Invalid(format!("invalid mode for volumes-from: {spec}"))),
                None => (spec.as_str(), None),
            };
            let src = self.container(name)?;
            for v in &src.volume_mounts {
                if planned.iter().any(|m| m.destination == v.destination) || out.iter().any(|o| o.destination == v.destination) {
                    continue;
                }
                vs.add_ref(&v.name, id).map_err(verr)?;
                let read_only = match mode { Some("ro") => true, Some(_) => false, None => v.read_only };
                // Inherited volumes belong to their source: `rm -v` here keeps them.
                out.push(VolumeMount {
                    name: v.name.clone(),
                    destination: v.destination.clone(),
                    read_only,
                    mode: String::new(),
                    anonymous: false,
                    seed: false,
                    subpath: v.subpath.clone(),
                });
            }
        }
        for m in planned.iter().filter(|m| m.typ == Some(MountType::Volume)) {
            let labels = m.volume_labels.iter().cloned().collect();
            let opts = m.volume_options.iter().cloned().collect();
            let driver = Some(m.volume_driver.as_str()).filter(|d| !d.is_empty());
            let v = vs.create(Some(m.source.as_str()).filter(|s| !s.is_empty()), driver, labels, opts).map_err(verr)?;
            vs.add_ref(&v.name, id).map_err(verr)?;
            let anonymous = m.source.is_empty();
            out.push(VolumeMount {
                name: v.name,
                destination: m.destination.clone(),
                read_only: m.read_only,
                // setBindModeIfNull: local volumes from Binds or Mounts (anonymous
                // `--mount` ones too; `-v /p` is not planned here) show Mode "z".
                mode: if m.mode.is_empty() && v.driver == "local" { "z".into() } else { m.mode.clone() },
                anonymous,
                seed: !m.nocopy,
                subpath: m.volume_subpath.clone(),
            });
        }
        for p in anon_paths {
            let covered = planned.iter().any(|m| m.destination == p) || tmpfs.contains(&p);
            if covered {
                continue;
            }
            let v = vs.create(None, None, Default::default(), Default::default()).map_err(verr)?;
            vs.add_ref(&v.name, id).map_err(verr)?;
            out.push(VolumeMount { name: v.name, destination: p, read_only: false, mode: String::new(), anonymous: true, seed: true, subpath: String::new() });
        }
        self.set_volume_mounts(id, &out)
    }

    pub(crate) fn set_volume_mounts(&self, id: &str, mounts: &[VolumeMount]) -> Result<()> {
        let json = serde_json::to_string(mounts).expect("json");
        self.root.db().write(|tx| tx.execute("UPDATE containers SET volume_mounts=?2 WHERE id=?1", params![id, json]))?;
        Ok(())
    }

    /// docker's copy-up happens at create: volumes still marked for seeding get the
    /// image's content now, from a read-only view of the container's lower layers mounted
    /// in a short-lived child with its own mount namespace (nothing is mounted on the
    /// host, and nothing leaks if it dies). Volumes with driver options are mounted by
    /// their driver only when the container starts, and are seeded then.
    fn seed_at_create(&self, id: &str) -> Result<()> {
        let Some(c) = self.find_container(id)? else { return Ok(()) };
        let plain: Vec<(usize, std::path::PathBuf)> = c
            .volume_mounts
            .iter()
            .enumerate()
            // A subpath may not exist yet: it is resolved, and seeded, when the container starts.
            .filter(|(_, v)| v.seed && v.subpath.is_empty())
            .filter_map(|(i, v)| self.volumes.get(&v.name).ok().filter(|x| x.options.is_empty()).map(|x| (i, x.mountpoint)))
            .collect();
        if plain.is_empty() {
            return Ok(());
        }
        let mounts = self.snapshotter().mounts(&format!("{id}-init"))?;
        let jobs: Vec<(std::path::PathBuf, String, String)> =
            plain.iter().map(|(i, p)| (p.clone(), c.volume_mounts[*i].destination.clone(), c.volume_mounts[*i].name.clone())).collect();
        self.in_private_view(id, &mounts, "seed-view", |view| {
            for (data, dest, name) in &jobs {
                strata_volume::seed(data, view, std::path::Path::new(dest)).map_err(|e| format!("volume {name}: {e}"))?;
            }
            Ok(())
        })
        .map_err(|msg| EngineError::Invalid(format!("failed to copy files: {msg}")))?;
        let mut vm = c.volume_mounts.clone();
        for (i, _) in &plain {
            vm[*i].seed = false;
        }
        self.set_volume_mounts(id, &vm)
    }

    /// Runs `f` on `mounts` mounted at `<container>/<name>` in a short-lived child with
    /// its own mount namespace: nothing is mounted on the host, and nothing leaks if it
    /// dies.
    pub(crate) fn in_private_view(
        &self,
        id: &str,
        mounts: &[strata_snapshot::Mount],
        name: &str,
        f: impl FnOnce(&std::path::Path) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let target = self.container_dir(id).join(name);
        std::fs::create_dir_all(&target).map_err(|e| format!("create {}: {}", target.display(), strata_store::os_text(&e)))?;
        let (_, res) = self.in_child(
            id,
            || {
                private_mount_ns()?;
                strata_snapshot::mount_all(&strata_snapshot::LinuxSyscall, mounts, &target)
                    .map_err(|e| format!("mount the container's filesystem: {}", strata_store::os_text(&e)))?;
                f(&target)
            },
            || (),
        );
        let _ = std::fs::remove_dir(&target);
        res
    }

    /// Runs `child` in a forked child while this process runs `parent` (which may feed
    /// or drain a pipe the child uses); then waits. The child's error text comes back
    /// through a pipe. Only for single-threaded callers (the CLI): the child of a fork
    /// has one thread and copies of the others' locks.
    pub(crate) fn in_child<T>(
        &self,
        id: &str,
        child: impl FnOnce() -> std::result::Result<(), String>,
        parent: impl FnOnce() -> T,
    ) -> (T, std::result::Result<(), String>) {
        let (rd, wr) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
            Ok(p) => p,
            Err(e) => return (parent(), Err(format!("pipe: {}", strata_store::os_text(&e.into())))),
        };
        // SAFETY: see above; the child runs `child` and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(rd);
            // Each side drops what the other side's closure holds (a pipe end kept open
            // here would hide the other's EOF).
            drop(parent);
            // A reader that goes away (`export | head`) ends the child as it would any
            // writer; the parent passes that on.
            // SAFETY: resetting a signal disposition in this single-threaded child.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let res = child();
            if let Err(msg) = &res {
                let _ = rustix::io::write(&wr, msg.as_bytes());
            }
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(if res.is_ok() { 0 } else { 1 }) };
        }
        drop(wr);
        drop(child);
        let out = parent();
        let mut msg = String::new();
        let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut msg);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if pid > 0 && libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGPIPE {
            // SAFETY: restoring the default action and raising it on ourselves, as the
            // shell expects of a writer whose reader left.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return (out, Err(if msg.is_empty() { format!("container {id}: the helper process died") } else { msg }));
        }
        (out, Ok(()))
    }

    /// `export`: the container's filesystem as one tar (what the process sees at `/`,
    /// without volumes, binds or tmpfs, as docker's), written to `out`.
    pub fn export_container(&self, c: &Container, out: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        let mounts = self.snapshotter().read_only_mounts(&c.id)?;
        let out = out.try_clone_to_owned().map_err(|e| EngineError::io("dup", self.container_dir(&c.id), e))?;
        self.in_private_view(&c.id, &mounts, "export-view", move |view| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(out));
            strata_snapshot::layer::write_tar(view, &mut w, &Default::default()).map_err(|e| format!("export {}: {e}", c.id))?;
            std::io::Write::flush(&mut w).map_err(|e| format!("export {}: {}", c.id, strata_store::os_text(&e)))
        })
        .map_err(EngineError::Invalid)
    }

    /// Deletes layers, files and the row. The row goes last, so a crash leaves a
    /// container that `rm` can finish removing.
    pub(crate) fn destroy_container(&self, c: &Container, remove_anonymous: bool) -> Result<()> {
        self.networks.store().forget_container(&c.id)?;
        for v in &c.volume_mounts {
            let _ = self.volumes.remove_ref(&v.name, &c.id);
            // docker removes anonymous volumes with `rm -v`/`--rm`, silently keeping any
            // another container still uses.
            if remove_anonymous && v.anonymous {
                let _ = self.volumes.remove(&v.name, false);
            }
        }
        let snaps = self.snapshotter();
        for key in [c.id.clone(), format!("{}-init", c.id)] {
            match snaps.remove(&key) {
                Ok(()) | Err(SnapshotError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        strata_store::fsutil::remove_all(&self.container_dir(&c.id))?;
        self.root.db().write(|tx| tx.execute("DELETE FROM containers WHERE id=?1", [&c.id]))?;
        Ok(())
    }

    /// Kills and removes the temporary containers of processes that died (`sweep.dead`
    /// leases, or leases whose file is gone): a build killed in the middle of a RUN
    /// leaves nothing running once the next command has opened the engine.
    pub(crate) fn sweep_containers(&self, sweep: &strata_store::Sweep) -> Result<()> {
        let owned: Vec<(String, String)> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT id, lease FROM containers WHERE lease IS NOT NULL")?;
            let r = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            r
        })?;
        for (id, lease) in owned {
            let gone = sweep.dead.contains(&lease) || !self.root.path().join("leases").join(&lease).exists();
            if gone {
                if let Err(e) = self.remove_container(&id, true, true) {
                    tracing::warn!(container = %id, error = %e, "cannot remove the container of a dead build");
                }
            }
        }
        Ok(())
    }

    /// Makes a lease-owned container an ordinary one (a failed build step's container,
    /// which docker keeps for inspection).
    pub fn release_container_lease(&self, id: &str) -> Result<()> {
        self.root.db().write(|tx| tx.execute("UPDATE containers SET lease=NULL WHERE id=?1", [id]))?;
        Ok(())
    }

    /// Runs `f` with each snapshot `(key, target)` mounted at its target (an empty
    /// directory), in a forked child with a private mount namespace that dies with this
    /// process (`PR_SET_PDEATHSIG`): nothing is mounted on the host, and nothing stays
    /// mounted if either side is killed. Active snapshots mount writable, committed ones
    /// read-only. The child's error text comes back as the error.
    pub fn with_snapshots_mounted(
        &self,
        snapshots: &[(String, std::path::PathBuf)],
        f: impl FnOnce() -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let mut all = Vec::new();
        for (key, target) in snapshots {
            all.push((self.snapshotter().mounts(key).map_err(|e| e.to_string())?, target.clone(), key.clone()));
        }
        let name = snapshots.first().map(|s| s.0.clone()).unwrap_or_default();
        let (_, res) = self.in_child(
            &name,
            || {
                // SAFETY: prctl on this (child) process only.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
                private_mount_ns()?;
                for (mounts, target, key) in &all {
                    strata_snapshot::mount_all(&strata_snapshot::LinuxSyscall, mounts, target)
                        .map_err(|e| format!("mount {key}: {}", strata_store::os_text(&e)))?;
                }
                f()
            },
            || (),
        );
        res
    }

    /// `container prune`: every stopped container. Returns the removed ids.
    pub fn prune_containers(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for c in self.containers()? {
            if !c.running() {
                self.destroy_container(&c, false)?;
                out.push(c.id);
            }
        }
        Ok(out)
    }

    /// Size of the container's writable layer (`ps -s`, `inspect -s`).
    pub fn container_size_rw(&self, c: &Container) -> u64 {
        self.snapshotter().usage(&c.id).unwrap_or(0)
    }
}

/// This (child) process gets a private mount namespace of its own.
pub(crate) fn private_mount_ns() -> std::result::Result<(), String> {
    // SAFETY: unshare on this (child) process only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!("unshare: {}", strata_store::os_text(&std::io::Error::last_os_error())));
    }
    let private = rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE;
    rustix::mount::mount_change("/", private).map_err(|e| format!("mount: {}", strata_store::os_text(&e.into())))
}
