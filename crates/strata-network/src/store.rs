//! Networks and endpoints as recorded: the database is the truth about which networks
//! exist, which containers are attached to which (configuration, kept while a container
//! is stopped) and which of those attachments are live (an address, a MAC and an
//! endpoint id, held only while the container runs).
//!
//! Lifecycle:
//! - The predefined networks `bridge`, `host` and `none` are made by the first
//!   migration, with random ids as docker's; they cannot be created or removed.
//! - `create` picks a subnet (the one given, or the first free one of docker's default
//!   pools) that overlaps no other network's, and records it; nothing touches the kernel
//!   until a container joins.
//! - `attach` records that a container belongs to a network (create, `network connect`
//!   of a stopped container); `detach` forgets it; `forget_container` drops every row of
//!   a removed container.
//! - `allocate` makes an attachment live: a free address of the subnet (the lowest, or
//!   the one asked for), in one transaction with its uniqueness enforced by an index, so
//!   two processes starting containers at once never share an address. `release` ends
//!   it. A live endpoint is what `network rm` refuses to remove.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Row};
use serde_json::{json, Value};
use strata_store::DataRoot;

use crate::{NetworkError, Result};

const MIGRATIONS: &[&str] = &["CREATE TABLE networks(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        subnet TEXT NOT NULL DEFAULT '',
        gateway TEXT NOT NULL DEFAULT '',
        ip_range TEXT NOT NULL DEFAULT '',
        ipam_config TEXT NOT NULL DEFAULT '[]',
        ipam_options TEXT NOT NULL DEFAULT 'null',
        internal INTEGER NOT NULL DEFAULT 0,
        attachable INTEGER NOT NULL DEFAULT 0,
        ipv6 INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}',
        labels TEXT NOT NULL DEFAULT '{}',
        bridge TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE endpoints(
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',
        ipv4_requested TEXT NOT NULL DEFAULT '',
        endpoint_id TEXT NOT NULL DEFAULT '',
        ip TEXT NOT NULL DEFAULT '',
        mac TEXT NOT NULL DEFAULT '',
        ifname TEXT NOT NULL DEFAULT '',
        PRIMARY KEY(container_id, network_id)
    );
    CREATE INDEX endpoints_network ON endpoints(network_id);
    CREATE UNIQUE INDEX endpoints_address ON endpoints(network_id, ip) WHERE ip != '';
    CREATE TABLE published_ports(
        container_id TEXT PRIMARY KEY,
        ports TEXT NOT NULL
    );
    INSERT INTO networks(id, name, driver, created, subnet, gateway, ipam_config, options, bridge)
        VALUES(lower(hex(randomblob(32))), 'bridge', 'bridge', strftime('%Y-%m-%dT%H:%M:%fZ','now'),
               '172.17.0.0/16', '172.17.0.1', '[{\"Subnet\":\"172.17.0.0/16\",\"Gateway\":\"172.17.0.1\"}]',
               '{\"com.docker.network.bridge.default_bridge\":\"true\",\"com.docker.network.bridge.enable_icc\":\"true\",\"com.docker.network.bridge.enable_ip_masquerade\":\"true\",\"com.docker.network.bridge.host_binding_ipv4\":\"0.0.0.0\",\"com.docker.network.bridge.name\":\"docker0\",\"com.docker.network.driver.mtu\":\"1500\"}',
               'docker0');
    INSERT INTO networks(id, name, driver, created, ipam_config) VALUES(lower(hex(randomblob(32))), 'host', 'host', strftime('%Y-%m-%dT%H:%M:%fZ','now'), '[]');
    INSERT INTO networks(id, name, driver, created, ipam_config) VALUES(lower(hex(randomblob(32))), 'none', 'null', strftime('%Y-%m-%dT%H:%M:%fZ','now'), '[]');"];

/// An IPv4 subnet: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `10.1.0.0/16`; docker's message for anything else.
    pub fn parse(s: &str) -> Result<Subnet> {
        let bad = || NetworkError::Invalid(format!("Invalid subnet {s} : invalid CIDR address: {s}"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        Ok(Subnet { addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)), prefix })
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    pub fn mask(&self) -> u32 {
        Self::mask_of(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        let m = self.mask() & o.mask();
        u32::from(self.addr) & m == u32::from(o.addr) & m
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The first host address (docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// docker's default local address pools: 172.17–31.0.0/16, then 192.168.0.0/16 in /20s.
fn default_pools() -> impl Iterator<Item = Subnet> {
    (17..=31u8)
        .map(|b| Subnet { addr: Ipv4Addr::new(172, b, 0, 0), prefix: 16 })
        .chain((0..16u8).map(|i| Subnet { addr: Ipv4Addr::new(192, 168, i * 16, 0), prefix: 20 }))
}

/// A network as recorded.
#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Subnet>,
    /// `IPAM.Config` as inspect prints it (only what was given, or what was chosen).
    pub ipam_config: Value,
    pub ipam_options: Value,
    pub internal: bool,
    pub attachable: bool,
    pub ipv6: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The bridge's name inside strata's network namespace.
    pub bridge: String,
}

impl Network {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Network> {
        let s = |k: &str| -> rusqlite::Result<String> { r.get(k) };
        let json_of = |k: &str| -> rusqlite::Result<Value> { Ok(serde_json::from_str(&s(k)?).unwrap_or(Value::Null)) };
        let map_of = |k: &str| -> rusqlite::Result<BTreeMap<String, String>> { Ok(serde_json::from_str(&s(k)?).unwrap_or_default()) };
        Ok(Network {
            id: s("id")?,
            name: s("name")?,
            driver: s("driver")?,
            created: s("created")?,
            subnet: Subnet::parse(&s("subnet")?).ok(),
            gateway: s("gateway")?.parse().ok(),
            ip_range: Subnet::parse(&s("ip_range")?).ok(),
            ipam_config: json_of("ipam_config")?,
            ipam_options: json_of("ipam_options")?,
            internal: r.get::<_, i64>("internal")? != 0,
            attachable: r.get::<_, i64>("attachable")? != 0,
            ipv6: r.get::<_, i64>("ipv6")? != 0,
            options: map_of("options")?,
            labels: map_of("labels")?,
            bridge: s("bridge")?,
        })
    }

    /// `bridge`, `host` and `none`: made by strata, never removed.
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// Whether containers on it get an interface of their own (bridge driver).
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A container's membership of a network; live when `ip` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub container_id: String,
    pub network_id: String,
    /// Attachment order: the first network gives the default route and the ports.
    pub seq: i64,
    pub aliases: Vec<String>,
    pub ipv4_requested: String,
    pub endpoint_id: String,
    pub ip: String,
    pub mac: String,
    /// The interface in the container (`eth0`, ...), while live.
    pub ifname: String,
}

impl Endpoint {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
        Ok(Endpoint {
            container_id: r.get("container_id")?,
            network_id: r.get("network_id")?,
            seq: r.get("seq")?,
            aliases: serde_json::from_str(&r.get::<_, String>("aliases")?).unwrap_or_default(),
            ipv4_requested: r.get("ipv4_requested")?,
            endpoint_id: r.get("endpoint_id")?,
            ip: r.get("ip")?,
            mac: r.get("mac")?,
            ifname: r.get("ifname")?,
        })
    }

    pub fn live(&self) -> bool {
        !self.ip.is_empty()
    }
}

/// docker 20.10's MAC for an address: 02:42 and the four bytes of the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub struct NetworkStore {
    root: Arc<DataRoot>,
}

const SELECT: &str = "SELECT * FROM networks";

impl NetworkStore {
    pub fn open(root: Arc<DataRoot>) -> Result<NetworkStore> {
        root.db().migrate(&root.db_path(), "networks", MIGRATIONS)?;
        Ok(NetworkStore { root })
    }

    /// By full id, exact name, then unique id prefix (docker's order).
    pub fn get(&self, name: &str) -> Result<Network> {
        self.find(name)?.ok_or_else(|| NetworkError::NotFound(name.to_string()))
    }

    pub fn find(&self, name: &str) -> Result<Option<Network>> {
        Ok(self.root.db().read(|c| strata_store::find_by_id_or_name(c, SELECT, name, Network::from_row))?)
    }

    /// Every network, in creation order.
    pub fn list(&self) -> Result<Vec<Network>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare(&format!("{SELECT} ORDER BY created, rowid"))?;
            let r = st.query_map([], Network::from_row)?.collect();
            r
        })?)
    }

    pub fn create(&self, o: &CreateNetwork) -> Result<Network> {
        let driver = o.driver.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "bridge".into());
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => return Err(NetworkError::Invalid(format!("only one instance of \"{driver}\" network is allowed"))),
            "overlay" => return Err(NetworkError::Invalid("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into())),
            d => return Err(NetworkError::PluginNotFound(d.to_string())),
        }
        if matches!(o.name.as_str(), "bridge" | "host" | "none") {
            return Err(NetworkError::Invalid(format!("operation is not permitted on predefined {} network", o.name)));
        }
        if o.name.is_empty() {
            return Err(NetworkError::Invalid("network name must not be empty".into()));
        }
        let given = o.subnet.as_deref().map(Subnet::parse).transpose()?;
        let ip_range = o.ip_range.as_deref().map(Subnet::parse).transpose()?;
        let gateway = match &o.gateway {
            Some(g) => Some(g.parse::<Ipv4Addr>().map_err(|_| NetworkError::Invalid(format!("invalid gateway address {g}")))?),
            None => None,
        };
        if let (Some(r), Some(s)) = (ip_range, given) {
            if !s.contains(r.addr) || r.prefix < s.prefix {
                return Err(NetworkError::Invalid(format!("Invalid range {r} : no matching subnet for range {r}")));
            }
        }
        let id = strata_store::random_hex(32);
        let bridge = format!("br-{}", &id[..12]);
        let options = o.options.clone();
        if let Some(b) = options.get("com.docker.network.bridge.name") {
            if b.is_empty() || b.len() > 15 || b.contains(['/', ' ']) {
                return Err(NetworkError::Invalid(format!("invalid bridge name {b:?}")));
            }
        }
        let bridge = options.get("com.docker.network.bridge.name").cloned().unwrap_or(bridge);
        let now = strata_store::now_rfc3339();
        self.root.db().write(|tx| -> Result<Network> {
            if tx.query_row("SELECT 1 FROM networks WHERE name=?1", [&o.name], |_| Ok(())).optional()?.is_some() {
                return Err(NetworkError::NameExists(o.name.clone()));
            }
            let mut st = tx.prepare("SELECT subnet FROM networks WHERE subnet != ''")?;
            let taken: Vec<Subnet> = st.query_map([], |r| r.get::<_, String>(0))?.filter_map(|s| s.ok().and_then(|s| Subnet::parse(&s).ok())).collect();
            drop(st);
            let subnet = match given {
                Some(s) => {
                    if taken.iter().any(|t| t.overlaps(&s)) {
                        return Err(NetworkError::PoolOverlap);
                    }
                    s
                }
                None => default_pools().find(|p| !taken.iter().any(|t| t.overlaps(p))).ok_or(NetworkError::NoPool)?,
            };
            let gw = gateway.unwrap_or_else(|| subnet.first_host());
            if !subnet.contains(gw) {
                return Err(NetworkError::Invalid(format!("no matching subnet for gateway {gw}")));
            }
            // inspect shows what was asked for; a chosen pool shows subnet and gateway.
            let mut cfg = serde_json::Map::new();
            cfg.insert("Subnet".into(), json!(subnet.to_string()));
            if let Some(r) = ip_range {
                cfg.insert("IPRange".into(), json!(r.to_string()));
            }
            if given.is_none() || gateway.is_some() {
                cfg.insert("Gateway".into(), json!(gw.to_string()));
            }
            tx.execute(
                "INSERT INTO networks(id, name, driver, created, subnet, gateway, ip_range, ipam_config, ipam_options, internal, attachable, ipv6, options, labels, bridge)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '{}', ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    id,
                    o.name,
                    driver,
                    now,
                    subnet.to_string(),
                    gw.to_string(),
                    ip_range.map(|r| r.to_string()).unwrap_or_default(),
                    Value::Array(vec![Value::Object(cfg)]).to_string(),
                    o.internal as i64,
                    o.attachable as i64,
                    o.ipv6 as i64,
                    serde_json::to_string(&options).expect("json"),
                    serde_json::to_string(&o.labels).expect("json"),
                    bridge,
                ],
            )?;
            Ok(tx.query_row(&format!("{SELECT} WHERE id=?1"), [&id], Network::from_row)?)
        })
    }

    /// Removes a user network that no running container is on; the attachments of
    /// stopped containers go with it (they fail to start, as docker's).
    pub fn remove(&self, n: &Network) -> Result<()> {
        if n.predefined() {
            return Err(NetworkError::Conflict(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        self.root.db().write(|tx| -> Result<()> {
            let live: i64 = tx.query_row("SELECT count(*) FROM endpoints WHERE network_id=?1 AND ip != ''", [&n.id], |r| r.get(0))?;
            if live > 0 {
                return Err(NetworkError::Conflict(format!("error while removing network: network {} id {} has active endpoints", n.name, n.id)));
            }
            tx.execute("DELETE FROM endpoints WHERE network_id=?1", [&n.id])?;
            tx.execute("DELETE FROM networks WHERE id=?1", [&n.id])?;
            Ok(())
        })
    }

    /// Whether any container (running or not) is attached.
    pub fn in_use(&self, network_id: &str) -> Result<bool> {
        Ok(self.root.db().read(|c| c.query_row("SELECT count(*) FROM endpoints WHERE network_id=?1", [network_id], |r| r.get::<_, i64>(0)))? > 0)
    }

    /// Records that `container` belongs to `network` (not live yet). Docker's error if
    /// it already does.
    pub fn attach(&self, container: &str, n: &Network, aliases: &[String], ipv4: &str) -> Result<()> {
        if let Some(ip) = Some(ipv4).filter(|s| !s.is_empty()) {
            let addr: Ipv4Addr = ip.parse().map_err(|_| NetworkError::Invalid(format!("invalid IPv4 address: {ip}")))?;
            if n.predefined() {
                return Err(NetworkError::Invalid("user specified IP address is supported on user defined networks only".into()));
            }
            if !n.subnet.is_some_and(|s| s.contains(addr)) {
                return Err(NetworkError::Invalid(format!("no configured subnet or ip-range contain the IP address {ip}")));
            }
        }
        if !aliases.is_empty() && n.name == "bridge" {
            return Err(NetworkError::Invalid("network-scoped alias is supported only for containers in user defined networks".into()));
        }
        self.root.db().write(|tx| -> Result<()> {
            if tx.query_row("SELECT 1 FROM endpoints WHERE container_id=?1 AND network_id=?2", [container, &n.id], |_| Ok(())).optional()?.is_some() {
                return Err(NetworkError::Conflict(format!("endpoint with name {} already exists in network {}", container, n.name)));
            }
            let seq: i64 = tx.query_row("SELECT coalesce(max(seq), 0) + 1 FROM endpoints WHERE container_id=?1", [container], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO endpoints(container_id, network_id, seq, aliases, ipv4_requested) VALUES(?1, ?2, ?3, ?4, ?5)",
                params![container, n.id, seq, serde_json::to_string(aliases).expect("json"), ipv4],
            )?;
            Ok(())
        })
    }

    pub fn detach(&self, container: &str, network_id: &str) -> Result<()> {
        self.root.db().write(|tx| tx.execute("DELETE FROM endpoints WHERE container_id=?1 AND network_id=?2", [container, network_id]).map(|_| ()))?;
        Ok(())
    }

    /// A removed container's rows.
    pub fn forget_container(&self, container: &str) -> Result<()> {
        self.root.db().write(|tx| -> rusqlite::Result<()> {
            tx.execute("DELETE FROM endpoints WHERE container_id=?1", [container])?;
            tx.execute("DELETE FROM published_ports WHERE container_id=?1", [container])?;
            Ok(())
        })?;
        Ok(())
    }

    /// A container's attachments with their networks, in attachment order. Rows of a
    /// network removed meanwhile are skipped.
    pub fn endpoints_of(&self, container: &str) -> Result<Vec<(Endpoint, Network)>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare("SELECT e.*, n.* FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE e.container_id=?1 ORDER BY e.seq")?;
            let r = st.query_map([container], |r| Ok((Endpoint::from_row(r)?, Network::from_row(r)?)))?.collect();
            r
        })?)
    }

    /// Every attachment to a network.
    pub fn endpoints_on(&self, network_id: &str) -> Result<Vec<Endpoint>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare("SELECT * FROM endpoints WHERE network_id=?1 ORDER BY container_id")?;
            let r = st.query_map([network_id], Endpoint::from_row)?.collect();
            r
        })?)
    }

    /// How many attachments are live, across all networks.
    pub fn live_count(&self) -> Result<i64> {
        Ok(self.root.db().read(|c| c.query_row("SELECT count(*) FROM endpoints WHERE ip != ''", [], |r| r.get(0)))?)
    }

    /// Makes an attachment live: an address (the one asked for, or the lowest free one
    /// of the subnet, or of `--ip-range`), its MAC and a new endpoint id.
    pub fn allocate(&self, container: &str, n: &Network) -> Result<Endpoint> {
        let subnet = n.subnet.ok_or_else(|| NetworkError::Invalid(format!("network {} has no subnet", n.name)))?;
        let gw = n.gateway.unwrap_or_else(|| subnet.first_host());
        self.root.db().write(|tx| -> Result<Endpoint> {
            let ep = tx
                .query_row("SELECT * FROM endpoints WHERE container_id=?1 AND network_id=?2", [container, &n.id], Endpoint::from_row)
                .optional()?
                .ok_or_else(|| NetworkError::NotFound(format!("{} (container {container} is not attached)", n.name)))?;
            if ep.live() {
                return Ok(ep);
            }
            let mut st = tx.prepare("SELECT ip FROM endpoints WHERE network_id=?1 AND ip != ''")?;
            let used: std::collections::HashSet<u32> = st
                .query_map([&n.id], |r| r.get::<_, String>(0))?
                .filter_map(|s| s.ok().and_then(|s| s.parse::<Ipv4Addr>().ok()).map(u32::from))
                .collect();
            drop(st);
            let ip = if !ep.ipv4_requested.is_empty() {
                let want: Ipv4Addr = ep.ipv4_requested.parse().map_err(|_| NetworkError::Invalid(format!("invalid IPv4 address: {}", ep.ipv4_requested)))?;
                if used.contains(&u32::from(want)) || want == gw {
                    return Err(NetworkError::AddressInUse);
                }
                want
            } else {
                let range = n.ip_range.unwrap_or(subnet);
                let (lo, hi) = (u32::from(range.addr), u32::from(range.broadcast()));
                (lo..=hi)
                    .map(Ipv4Addr::from)
                    .find(|a| {
                        let x = u32::from(*a);
                        x != u32::from(subnet.addr) && *a != subnet.broadcast() && *a != gw && !used.contains(&x)
                    })
                    .ok_or_else(|| NetworkError::NoAddress { network: n.name.clone(), id: n.id.clone() })?
            };
            let mac = mac_text(mac_for(ip));
            let endpoint_id = strata_store::random_hex(32);
            // eth0, eth1, ...: the lowest name the container's live interfaces leave.
            let mut st = tx.prepare("SELECT ifname FROM endpoints WHERE container_id=?1 AND ip != ''")?;
            let names: Vec<String> = st.query_map([container], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            drop(st);
            let ifname = (0..).map(|i| format!("eth{i}")).find(|n| !names.contains(n)).expect("a free name");
            tx.execute(
                "UPDATE endpoints SET ip=?3, mac=?4, endpoint_id=?5, ifname=?6 WHERE container_id=?1 AND network_id=?2",
                params![container, n.id, ip.to_string(), mac, endpoint_id, ifname],
            )?;
            Ok(Endpoint { ip: ip.to_string(), mac, endpoint_id, ifname, ..ep })
        })
    }

    /// Ends a live attachment (the address is free again).
    pub fn release(&self, container: &str, network_id: &str) -> Result<()> {
        self.root.db().write(|tx| {
            tx.execute("UPDATE endpoints SET ip='', mac='', endpoint_id='', ifname='' WHERE container_id=?1 AND network_id=?2", [container, network_id]).map(|_| ())
        })?;
        Ok(())
    }

    /// The ports a running container listens on, as bound (`-P` and ranges resolved).
    pub fn set_published(&self, container: &str, ports: &[crate::ports::Published]) -> Result<()> {
        let v: Vec<Value> = ports
            .iter()
            .map(|p| json!({"proto": p.proto.as_str(), "container_port": p.container_port, "host_ip": p.host_ip.to_string(), "host_port": p.host_port}))
            .collect();
        self.root.db().write(|tx| {
            if v.is_empty() {
                tx.execute("DELETE FROM published_ports WHERE container_id=?1", [container]).map(|_| ())
            } else {
                tx.execute(
                    "INSERT INTO published_ports(container_id, ports) VALUES(?1, ?2) ON CONFLICT(container_id) DO UPDATE SET ports=excluded.ports",
                    params![container, Value::Array(v).to_string()],
                )
                .map(|_| ())
            }
        })?;
        Ok(())
    }

    pub fn published(&self, container: &str) -> Result<Vec<crate::ports::Published>> {
        let raw: Option<String> = self.root.db().read(|c| c.query_row("SELECT ports FROM published_ports WHERE container_id=?1", [container], |r| r.get(0)).optional())?;
        Ok(parse_published(raw.as_deref()))
    }

    /// Every running container's published ports (to tell "allocated by strata" from
    /// "in use by another program").
    pub fn all_published(&self) -> Result<Vec<(String, Vec<crate::ports::Published>)>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare("SELECT container_id, ports FROM published_ports")?;
            let r = st.query_map([], |r| Ok((r.get::<_, String>(0)?, parse_published(Some(&r.get::<_, String>(1)?)))))?.collect();
            r
        })?)
    }
}

fn parse_published(raw: Option<&str>) -> Vec<crate::ports::Published> {
    let Some(raw) = raw else { return Vec::new() };
    let v: Vec<Value> = serde_json::from_str(raw).unwrap_or_default();
    v.iter()
        .filter_map(|p| {
            let proto = match p.get("proto")?.as_str()? {
                "udp" => crate::ports::Proto::Udp,
                "sctp" => crate::ports::Proto::Sctp,
                _ => crate::ports::Proto::Tcp,
            };
            Some(crate::ports::Published {
                proto,
                container_port: p.get("container_port")?.as_u64()? as u16,
                host_ip: p.get("host_ip")?.as_str()?.parse().ok()?,
                host_port: p.get("host_port")?.as_u64()? as u16,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, NetworkStore) {
        let d = tempfile::tempdir().unwrap();
        let (root, sweep) = DataRoot::open(d.path()).unwrap();
        root.finish_sweep(sweep).unwrap();
        let s = NetworkStore::open(Arc::new(root)).unwrap();
        (d, s)
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.1.2.3/16").unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/16");
        assert!(s.contains("10.1.255.1".parse().unwrap()));
        assert!(!s.contains("10.2.0.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.1.5.0/24").unwrap()));
        assert!(Subnet::parse("10.0.0.0/8").unwrap().overlaps(&s));
        assert!(!s.overlaps(&Subnet::parse("10.2.0.0/16").unwrap()));
        assert_eq!(s.broadcast().to_string(), "10.1.255.255");
        assert_eq!(Subnet::parse("bogus").unwrap_err().to_string(), "Invalid subnet bogus : invalid CIDR address: bogus");
    }

    #[test]
    fn predefined_networks_and_pools() {
        let (_d, s) = store();
        let names: Vec<String> = s.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        let a = s.create(&CreateNetwork { name: "a".into(), ..Default::default() }).unwrap();
        assert_eq!(a.subnet.unwrap().to_string(), "172.18.0.0/16");
        assert_eq!(a.ipam_config, json!([{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]));
        let b = s.create(&CreateNetwork { name: "b".into(), subnet: Some("10.9.0.0/24".into()), ..Default::default() }).unwrap();
        assert_eq!(b.ipam_config, json!([{"Subnet": "10.9.0.0/24"}]));
        assert_eq!(b.gateway.unwrap().to_string(), "10.9.0.1");
        let e = s.create(&CreateNetwork { name: "c".into(), subnet: Some("10.9.0.0/25".into()), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "Pool overlaps with other one on this address space");
        let e = s.create(&CreateNetwork { name: "a".into(), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "network with name a already exists");
        let e = s.create(&CreateNetwork { name: "bridge".into(), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "operation is not permitted on predefined bridge network");
        let e = s.create(&CreateNetwork { name: "g".into(), subnet: Some("10.8.0.0/24".into()), gateway: Some("10.7.0.1".into()), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "no matching subnet for gateway 10.7.0.1");
        assert_eq!(s.get(&a.id[..5]).unwrap().name, "a");
        assert!(matches!(s.get("zzz"), Err(NetworkError::NotFound(_))));
    }

    #[test]
    fn addresses_are_unique_and_released() {
        let (_d, s) = store();
        let n = s.create(&CreateNetwork { name: "n".into(), subnet: Some("10.5.0.0/29".into()), ..Default::default() }).unwrap();
        let mut ips = Vec::new();
        for c in ["c1", "c2", "c3", "c4", "c5"] {
            s.attach(c, &n, &[], "").unwrap();
            ips.push(s.allocate(c, &n).unwrap().ip);
        }
        // .0 network, .1 gateway, .7 broadcast: five hosts left.
        assert_eq!(ips, ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]);
        s.attach("c6", &n, &[], "").unwrap();
        assert!(matches!(s.allocate("c6", &n), Err(NetworkError::NoAddress { .. })));
        s.release("c2", &n.id).unwrap();
        assert_eq!(s.allocate("c6", &n).unwrap().ip, "10.5.0.3");
        assert_eq!(s.allocate("c6", &n).unwrap().mac, "02:42:0a:05:00:03");
        let e = s.remove(&n).unwrap_err();
        assert!(e.to_string().contains("has active endpoints"), "{e}");
        assert_eq!(s.live_count().unwrap(), 5);
        for c in ["c1", "c3", "c4", "c5", "c6"] {
            s.release(c, &n.id).unwrap();
        }
        s.remove(&n).unwrap();
        assert!(s.endpoints_on(&n.id).unwrap().is_empty());
    }

    #[test]
    fn requested_address() {
        let (_d, s) = store();
        let n = s.create(&CreateNetwork { name: "n".into(), subnet: Some("10.6.0.0/24".into()), ..Default::default() }).unwrap();
        s.attach("a", &n, &["web".into()], "10.6.0.9").unwrap();
        assert_eq!(s.allocate("a", &n).unwrap().ip, "10.6.0.9");
        s.attach("b", &n, &[], "10.6.0.9").unwrap();
        assert!(matches!(s.allocate("b", &n), Err(NetworkError::AddressInUse)));
        let bridge = s.get("bridge").unwrap();
        assert!(s.attach("c", &bridge, &[], "172.17.0.9").is_err());
        assert!(s.attach("c", &n, &[], "10.7.0.1").is_err());
        let eps = s.endpoints_of("a").unwrap();
        assert_eq!(eps[0].0.aliases, ["web"]);
    }
}
