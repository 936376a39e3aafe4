//! A container's networking, engine side: the mode chosen at create, the sandbox its
//! supervisor builds at the first start (own namespace, endpoints, published ports and
//! their proxy) and takes down at the last stop, and what inspect, ps and port report.
//!
//! Lifecycle of a sandbox (one per supervisor, kept across restart-policy restarts):
//! - `bridge` or a user network: a new namespace; every attachment made live in it
//!   (`Networking::join_all`); the published ports bound in the host's namespace (a
//!   port in use fails the start, as docker's); one proxy process relaying them into
//!   the container's namespace.
//! - `none`: a new namespace with loopback only. `host`: no namespace of its own.
//!   `container:NAME`: that running container's namespace.
//! - Teardown: the proxy is killed, the namespace fd dropped (the kernel removes the
//!   veths with the namespace), the endpoints released and the peers' hosts files
//!   updated. A supervisor that died is covered by `reconcile`, which releases the
//!   endpoints of a container found dead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use serde_json::{json, Map, Value};
use strata_network::ports::{self, PortBinding, PortMap, Proto, Published};
use strata_network::{HostMounts, Members, Network, NetworkError};
use strata_runtime::supervisor::MountNamespaces;

use super::{Container, CreateOptions};
use crate::{Engine, EngineError, Result};

/// The network a container is created with.
#[derive(Debug, Clone)]
pub(crate) enum NetKind {
    /// A bridge-driver network (the default `bridge` or a user network).
    Bridge(Box<Network>),
    Host,
    None,
    /// Sharing the namespace of another container (its hostname).
    Container { hostname: String },
}

#[derive(Debug, Clone)]
pub(crate) struct NetPlan {
    /// `HostConfig.NetworkMode` as recorded.
    pub mode: String,
    pub kind: NetKind,
}

impl NetPlan {
    /// The hostname the mode implies when none is given.
    pub fn hostname(&self) -> Option<String> {
        match &self.kind {
            NetKind::Host => rustix::system::uname().nodename().to_str().ok().map(str::to_string),
            NetKind::Container { hostname, .. } => Some(hostname.clone()),
            _ => None,
        }
    }

    pub fn host_network(&self) -> bool {
        matches!(self.kind, NetKind::Host)
    }
}

/// The parsed `NetworkMode` of a recorded container.
fn mode_of(c: &Container) -> String {
    c.host_config().get("NetworkMode").and_then(Value::as_str).filter(|m| !m.is_empty() && *m != "default").unwrap_or("bridge").to_string()
}

/// How the container's runtime should get its network namespace.
pub(crate) enum NetNs {
    /// Join this namespace file.
    Path(String),
    /// The host's namespace.
    Host,
}

/// The network side of one supervisor.
pub(crate) struct Sandbox {
    /// The container's own namespace (none for host and container modes).
    ns: Option<OwnedFd>,
    proxy: Option<std::process::Child>,
    joined: bool,
    pub netns: NetNs,
}

/// A supervisor's way to the host's mount namespace, where the bridge namespace's pin
/// lives.
pub(crate) struct SupervisorMounts<'a>(pub &'a MountNamespaces);

impl HostMounts for SupervisorMounts<'_> {
    fn run(&self, f: &mut dyn FnMut()) -> std::io::Result<()> {
        self.0.in_host(f)
    }
}

impl Members for Engine {
    fn hosts_file(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("hosts")
    }

    fn names(&self, id: &str) -> Option<(String, String)> {
        let c = self.find_container(id).ok().flatten()?;
        let hostname = c.config.get("Hostname").and_then(Value::as_str).unwrap_or(&c.id[..12]).to_string();
        Some((c.name, hostname))
    }
}

impl Engine {
    /// The network mode of a new container, checked as docker's create checks it.
    pub(crate) fn plan_network(&self, o: &CreateOptions) -> Result<NetPlan> {
        let mode = o.network.as_deref().filter(|m| !m.is_empty() && *m != "default").unwrap_or("bridge").to_string();
        let publishes = !o.port_bindings.is_empty() || o.publish_all;
        let kind = if let Some(other) = mode.strip_prefix("container:") {
            let other = self.container(other)?;
            if o.hostname.is_some() {
                return Err(EngineError::Invalid("conflicting options: hostname and the network mode".into()));
            }
            if publishes {
                return Err(EngineError::Invalid("conflicting options: port publishing and the container type network mode".into()));
            }
            if !o.expose.is_empty() {
                return Err(EngineError::Invalid("conflicting options: port exposing and the container type network mode".into()));
            }
            let hostname = other.config.get("Hostname").and_then(Value::as_str).unwrap_or(&other.id[..12]).to_string();
            NetKind::Container { hostname }
        } else {
            let n = self.networks.store().get(&mode)?;
            match n.driver.as_str() {
                "host" => NetKind::Host,
                "null" => NetKind::None,
                _ => NetKind::Bridge(Box::new(n)),
            }
        };
        let user_net = matches!(&kind, NetKind::Bridge(n) if !n.predefined());
        if !o.network_aliases.is_empty() && !user_net {
            return Err(EngineError::Invalid("network-scoped alias is supported only for containers in user defined networks".into()));
        }
        if o.ipv4.as_deref().is_some_and(|ip| !ip.is_empty()) && !user_net {
            return Err(EngineError::Invalid("user specified IP address is supported on user defined networks only".into()));
        }
        Ok(NetPlan { mode, kind })
    }

    /// Records the attachment a new container's mode implies.
    pub(crate) fn attach_network(&self, id: &str, plan: &NetPlan, o: &CreateOptions) -> Result<()> {
        if let NetKind::Bridge(n) = &plan.kind {
            self.networks.store().attach(id, n, &o.network_aliases, o.ipv4.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }

    /// Builds the sandbox of a starting container (in its supervisor). Errors are
    /// docker's exit code and message.
    pub(crate) fn setup_sandbox(&self, c: &Container, mounts: &MountNamespaces) -> std::result::Result<Sandbox, (i32, String)> {
        let err = |e: &dyn std::fmt::Display| (125, e.to_string());
        let mode = mode_of(c);
        let own = |ns: &OwnedFd| NetNs::Path(format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd()));
        if let Some(other) = mode.strip_prefix("container:") {
            let o = self.container(other).map_err(|e| err(&e))?;
            if !o.running() || o.pid <= 0 {
                return Err((125, format!("cannot join network namespace of a non running container: {}", o.id)));
            }
            return Ok(Sandbox { ns: None, proxy: None, joined: false, netns: NetNs::Path(format!("/proc/{}/ns/net", o.pid)) });
        }
        let n = self.networks.store().get(&mode).map_err(|e| err(&e))?;
        match n.driver.as_str() {
            "host" => return Ok(Sandbox { ns: None, proxy: None, joined: false, netns: NetNs::Host }),
            "null" => {
                let ns = strata_network::sandbox::new_netns().map_err(|e| err(&format!("create network namespace: {e}")))?;
                let netns = own(&ns);
                return Ok(Sandbox { ns: Some(ns), proxy: None, joined: false, netns });
            }
            _ => {}
        }
        let ns = strata_network::sandbox::new_netns().map_err(|e| err(&format!("create network namespace: {e}")))?;
        let host = SupervisorMounts(mounts);
        let joined = self.networks.join_all(&c.id, ns.as_fd(), &host, self).map_err(|e| err(&e))?;
        let netns = own(&ns);
        let mut sb = Sandbox { ns: Some(ns), proxy: None, joined: true, netns };
        if let Err(e) = self.publish(c, &joined, &mut sb) {
            self.teardown_sandbox(c, sb);
            return Err(e);
        }
        Ok(sb)
    }

    /// Binds the container's published ports and starts their proxy.
    fn publish(&self, c: &Container, joined: &[(strata_network::Endpoint, Network)], sb: &mut Sandbox) -> std::result::Result<(), (i32, String)> {
        let wanted = wanted_ports(c);
        let Some((primary, _)) = joined.first() else { return Ok(()) };
        if wanted.is_empty() {
            return Ok(());
        }
        let target: Ipv4Addr = primary.ip.parse().map_err(|_| (125, format!("bad container address {}", primary.ip)))?;
        let fail = |why: String| (125, format!("driver failed programming external connectivity on endpoint {} ({}): {why}", c.name, primary.endpoint_id));
        let mut bound: Vec<(Published, OwnedFd)> = Vec::new();
        let v6 = strata_network::proxy::ipv6_available();
        for (key, b) in &wanted {
            let (cport, proto) = ports::parse_port_key(key).ok_or_else(|| fail(format!("invalid port {key}")))?;
            if proto == Proto::Sctp {
                return Err(fail(format!("sctp port {key}: not supported")));
            }
            let ips: Vec<IpAddr> = if b.host_ip.is_empty() {
                if v6 { vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()] } else { vec![Ipv4Addr::UNSPECIFIED.into()] }
            } else {
                vec![b.host_ip.parse().map_err(|_| fail(format!("invalid host address {}", b.host_ip)))?]
            };
            let (lo, hi) = match b.host_port.split_once('-') {
                Some((a, z)) => (a.parse().unwrap_or(0), z.parse().unwrap_or(0)),
                None => {
                    let p = if b.host_port.is_empty() { 0 } else { b.host_port.parse().map_err(|_| fail(format!("invalid host port {}", b.host_port)))? };
                    (p, p)
                }
            };
            let mut last_err = None;
            let mut done = false;
            for candidate in lo..=hi {
                match self.bind_all(proto, &ips, candidate, cport) {
                    Ok(mut socks) => {
                        bound.append(&mut socks);
                        done = true;
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if !done {
                let (ip, port, e) = last_err.expect("at least one attempt");
                let msg = if e.raw_os_error() == Some(libc::EADDRINUSE) && self.allocated_by_strata(proto, &ip, port, &c.id) {
                    format!("Bind for {} failed: port is already allocated", ports::host_addr(&ip, port))
                } else {
                    let fam = if ip.is_ipv6() { "6" } else { "4" };
                    format!("Error starting userland proxy: listen {}{fam} {}: bind: {}", proto.as_str(), ports::host_addr(&ip, port), strata_store::os_text(&e))
                };
                return Err(fail(msg));
            }
        }
        let ns = sb.ns.as_ref().ok_or((125, "the container has no network namespace".to_string()))?;
        let forwards: Vec<(Proto, &OwnedFd, SocketAddr)> = bound.iter().map(|(p, fd)| (p.proto, fd, SocketAddr::new(target.into(), p.container_port))).collect();
        let child = strata_network::proxy::spawn(std::path::Path::new("/proc/self/exe"), ns, &forwards).map_err(|e| (125, format!("start the port proxy: {e}")))?;
        sb.proxy = Some(child);
        let published: Vec<Published> = bound.into_iter().map(|(p, _)| p).collect();
        self.networks.store().set_published(&c.id, &published).map_err(|e| (125, e.to_string()))?;
        Ok(())
    }

    /// One port on every address of `ips` (port 0: one free port for all of them).
    fn bind_all(&self, proto: Proto, ips: &[IpAddr], port: u16, cport: u16) -> std::result::Result<Vec<(Published, OwnedFd)>, (IpAddr, u16, std::io::Error)> {
        let mut out = Vec::new();
        let mut port = port;
        for ip in ips {
            let fd = strata_network::proxy::bind(proto, *ip, port).map_err(|e| (*ip, port, e))?;
            if port == 0 {
                port = strata_network::proxy::local_port(&fd).map_err(|e| (*ip, port, e))?;
            }
            out.push((Published { proto, container_port: cport, host_ip: *ip, host_port: port }, fd));
        }
        Ok(out)
    }

    /// Whether another running container of this data root holds the port.
    fn allocated_by_strata(&self, proto: Proto, ip: &IpAddr, port: u16, me: &str) -> bool {
        self.networks.store().all_published().unwrap_or_default().iter().any(|(id, ps)| {
            id != me && ps.iter().any(|p| p.proto == proto && p.host_port == port && (p.host_ip == *ip || p.host_ip.is_unspecified() || ip.is_unspecified()))
        })
    }

    /// Takes a sandbox down (the container's last stop, or a failed start).
    pub(crate) fn teardown_sandbox(&self, c: &Container, mut sb: Sandbox) {
        if let Some(mut p) = sb.proxy.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        drop(sb.ns.take());
        if sb.joined {
            if let Err(e) = self.networks.leave_all(&c.id, self) {
                tracing::warn!(id = %c.id, error = %e, "cannot release the container's network endpoints");
            }
        }
    }

    /// Releases what a container that died unsupervised still holds.
    pub(crate) fn release_network(&self, c: &Container) {
        let _ = self.networks.leave_all(&c.id, self);
    }

    /// `NetworkSettings.Ports`: every exposed port, with its host bindings while
    /// running (null for an unpublished one); empty when stopped.
    pub fn container_ports(&self, c: &Container) -> Map<String, Value> {
        let mut out = Map::new();
        if !matches!(c.status.as_str(), "running" | "paused" | "restarting") {
            return out;
        }
        let host_mode = mode_of(c) == "host";
        if let Some(exposed) = c.config.get("ExposedPorts").and_then(Value::as_object) {
            for k in exposed.keys() {
                out.insert(k.clone(), Value::Null);
            }
        }
        if host_mode {
            return Map::new();
        }
        for p in self.networks.store().published(&c.id).unwrap_or_default() {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let entry = out.entry(key).or_insert(Value::Null);
            if !entry.is_array() {
                *entry = json!([]);
            }
            entry.as_array_mut().expect("array").push(json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
        }
        out.sort_keys();
        out
    }

    /// Names of the networks a container is on (ps's NETWORKS).
    pub fn container_network_names(&self, c: &Container) -> Vec<String> {
        match mode_of(c).as_str() {
            m if m.starts_with("container:") => Vec::new(),
            _ => self.networks.store().endpoints_of(&c.id).unwrap_or_default().into_iter().map(|(_, n)| n.name).chain(self.mode_network(c).map(|n| n.name)).collect(),
        }
    }

    /// The host or none network of a container in those modes.
    fn mode_network(&self, c: &Container) -> Option<Network> {
        let n = self.networks.store().get(&mode_of(c)).ok()?;
        (!n.is_bridge()).then_some(n)
    }

    /// `NetworkSettings` as docker 28's inspect shows it.
    pub(crate) fn network_settings(&self, c: &Container) -> Value {
        let running = matches!(c.status.as_str(), "running" | "paused" | "restarting");
        let mut networks = Map::new();
        let mut primary: Option<Value> = None;
        let eps = self.networks.store().endpoints_of(&c.id).unwrap_or_default();
        for (ep, n) in &eps {
            let live = running && ep.live();
            let subnet = n.subnet;
            let dns: Value = if live && !n.predefined() {
                let mut names = vec![c.name.clone()];
                names.extend(ep.aliases.iter().cloned());
                names.push(c.id[..12].to_string());
                json!(names)
            } else {
                Value::Null
            };
            let v = json!({
                "IPAMConfig": if ep.ipv4_requested.is_empty() { Value::Null } else { json!({"IPv4Address": ep.ipv4_requested}) },
                "Links": null,
                "Aliases": if ep.aliases.is_empty() { Value::Null } else { json!(ep.aliases) },
                "MacAddress": if live { ep.mac.clone() } else { String::new() },
                "DriverOpts": null,
                "GwPriority": 0,
                "NetworkID": n.id,
                "EndpointID": if live { ep.endpoint_id.clone() } else { String::new() },
                "Gateway": if live { n.gateway.map(|g| g.to_string()).unwrap_or_default() } else { String::new() },
                "IPAddress": if live { ep.ip.clone() } else { String::new() },
                "IPPrefixLen": if live { subnet.map(|s| s.prefix).unwrap_or(0) } else { 0 },
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": dns,
            });
            if n.name == "bridge" {
                primary = Some(v.clone());
            }
            networks.insert(n.name.clone(), v);
        }
        if let Some(n) = self.mode_network(c) {
            networks.insert(
                n.name.clone(),
                json!({
                    "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null, "GwPriority": 0,
                    "NetworkID": n.id, "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                    "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
                }),
            );
        }
        let p = |k: &str| primary.as_ref().and_then(|v| v.get(k)).cloned();
        let (sandbox_id, sandbox_key) = if running && c.pid > 0 {
            (strata_store::Digest::sha256_of(format!("{}/{}", c.id, c.pid_start).as_bytes()).hex().to_string(), format!("/proc/{}/ns/net", c.pid))
        } else {
            (String::new(), String::new())
        };
        json!({
            "Bridge": "",
            "SandboxID": sandbox_id,
            "SandboxKey": sandbox_key,
            "Ports": self.container_ports(c),
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": p("EndpointID").unwrap_or(json!("")),
            "Gateway": p("Gateway").unwrap_or(json!("")),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": p("IPAddress").unwrap_or(json!("")),
            "IPPrefixLen": p("IPPrefixLen").unwrap_or(json!(0)),
            "IPv6Gateway": "",
            "MacAddress": p("MacAddress").unwrap_or(json!("")),
            "Networks": networks,
        })
    }

    /// The Engine API's `Ports` list of a container (`docker ps`): one entry per host
    /// binding, and one without a public side per exposed, unpublished port.
    pub fn api_ports(&self, c: &Container) -> Vec<ApiPort> {
        let mut out = Vec::new();
        for (k, v) in self.container_ports(c) {
            let Some((port, proto)) = ports::parse_port_key(&k) else { continue };
            match v.as_array() {
                Some(bs) if !bs.is_empty() => {
                    for b in bs {
                        out.push(ApiPort {
                            ip: b["HostIp"].as_str().unwrap_or("").to_string(),
                            private_port: port,
                            public_port: b["HostPort"].as_str().and_then(|p| p.parse().ok()).unwrap_or(0),
                            proto: proto.as_str().to_string(),
                        });
                    }
                }
                _ => out.push(ApiPort { ip: String::new(), private_port: port, public_port: 0, proto: proto.as_str().to_string() }),
            }
        }
        out
    }

    /// `network connect`.
    pub fn connect_network(&self, network: &str, container: &str, aliases: &[String], ip: Option<&str>) -> Result<()> {
        let n = self.networks.store().get(network)?;
        let c = self.container(container)?;
        let mode = mode_of(&c);
        if mode == "host" || mode.starts_with("container:") || mode == "none" {
            return Err(EngineError::Invalid("container cannot be disconnected from host network or connected to host network".into()));
        }
        if !n.is_bridge() {
            return Err(EngineError::Invalid(format!("container cannot be disconnected from host network or connected to {} network", n.name)));
        }
        if n.predefined() && !aliases.is_empty() {
            return Err(EngineError::Invalid("network-scoped alias is supported only for containers in user defined networks".into()));
        }
        let ns = self.running_netns(&c)?;
        let cfg = strata_network::EndpointConfig { aliases, ipv4: ip.unwrap_or("") };
        self.networks.connect(&c.id, &n, &cfg, ns.as_ref().map(|f| f.as_fd()), &strata_network::SameMounts, self)?;
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let n = self.networks.store().get(network)?;
        let c = self.container(container)?;
        let ns = self.running_netns(&c)?;
        self.networks.disconnect(&c.id, &n, ns.as_ref().map(|f| f.as_fd()), self).map_err(|e| match e {
            NetworkError::Invalid(m) if m.starts_with("container ") => EngineError::Invalid(format!("container {} is not connected to network {}", c.id, n.name)),
            e => e.into(),
        })
    }

    /// The namespace of a running container's init (verified by its start time).
    fn running_netns(&self, c: &Container) -> Result<Option<OwnedFd>> {
        if !c.running() || !super::alive(c.pid, c.pid_start) {
            return Ok(None);
        }
        let p = format!("/proc/{}/ns/net", c.pid);
        let fd = rustix::fs::open(p.as_str(), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()).map_err(|e| EngineError::io("open", &p, e.into()))?;
        Ok(Some(fd))
    }
}

/// One entry of the Engine API's container `Ports` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPort {
    pub ip: String,
    pub private_port: u16,
    pub public_port: u16,
    pub proto: String,
}

/// The ports to bind at start: `PortBindings`, and with `-P` every other exposed port.
fn wanted_ports(c: &Container) -> Vec<(String, PortBinding)> {
    let hc = c.host_config();
    let map: PortMap = hc.get("PortBindings").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let mut out: Vec<(String, PortBinding)> = map.iter().flat_map(|(k, bs)| bs.iter().map(move |b| (k.clone(), b.clone()))).collect();
    if hc.get("PublishAllPorts").and_then(Value::as_bool).unwrap_or(false) {
        for k in c.config.get("ExposedPorts").and_then(Value::as_object).into_iter().flat_map(|m| m.keys()) {
            if !map.contains_key(k) {
                out.push((k.clone(), PortBinding { host_ip: String::new(), host_port: String::new() }));
            }
        }
    }
    out
}
