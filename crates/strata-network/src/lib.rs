//! Container networking: networks as first-class objects (`store`), their bridges in a
//! network namespace strata owns (`sandbox`), published ports and their proxy
//! (`ports`, `proxy`), and name resolution through each container's /etc/hosts
//! (`hosts`). `Networking` is the service the engine calls: it joins a container's
//! namespace to every network it is attached to and takes it out again.

mod error;
pub mod hosts;
pub mod netlink;
pub mod ports;
pub mod proxy;
pub mod sandbox;
pub mod store;

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{NetworkError, Result};
pub use sandbox::{HostMounts, SameMounts};
pub use store::{CreateNetwork, Endpoint, Network, NetworkStore, Subnet};

use netlink::Links;
use sandbox::BridgeNs;

/// What a container asks of one network: aliases and an address (empty: any).
pub struct EndpointConfig<'a> {
    pub aliases: &'a [String],
    pub ipv4: &'a str,
}

/// The engine's view of containers, for the /etc/hosts of a network's members.
pub trait Members {
    /// The host path of the container's hosts file.
    fn hosts_file(&self, id: &str) -> PathBuf;
    /// The container's name (without `/`) and hostname, while it exists.
    fn names(&self, id: &str) -> Option<(String, String)>;
}

pub struct Networking {
    store: NetworkStore,
    bridge_ns: BridgeNs,
}

impl Networking {
    /// `run_dir` is the data root's runtime directory (`/run/strata/<root-tag>`).
    pub fn open(root: Arc<strata_store::DataRoot>, run_dir: PathBuf) -> Result<Networking> {
        Ok(Networking { store: NetworkStore::open(root)?, bridge_ns: BridgeNs::new(run_dir) })
    }

    pub fn store(&self) -> &NetworkStore {
        &self.store
    }

    /// Makes every bridge attachment of container `id` live inside its namespace `ns`,
    /// in attachment order (the first gives the default route), and writes the hosts
    /// files of the container and of its peers on user networks. On an error nothing
    /// stays live.
    pub fn join_all(&self, id: &str, ns: BorrowedFd<'_>, host: &dyn HostMounts, members: &dyn Members) -> Result<Vec<(Endpoint, Network)>> {
        let lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        let attached: Vec<(Endpoint, Network)> = self.store.endpoints_of(id)?.into_iter().filter(|(_, n)| n.is_bridge()).collect();
        let mut live = Vec::new();
        let r = (|| -> Result<()> {
            if attached.is_empty() {
                return Ok(());
            }
            let bridge = self.bridge_ns.open_or_create(host, &lock).map_err(NetworkError::os("create", "bridge network namespace"))?;
            let mut br = sandbox::socket_in(std::os::fd::AsFd::as_fd(&bridge)).map_err(NetworkError::os("open netlink in", "bridge network namespace"))?;
            let mut ctr = sandbox::socket_in(ns).map_err(NetworkError::os("open netlink in", format!("network namespace of {id}")))?;
            for (i, (_, n)) in attached.iter().enumerate() {
                let ep = self.store.allocate(id, n)?;
                live.push((ep.clone(), n.clone()));
                self.plumb(&mut br, &mut ctr, ns, &ep, n, i == 0)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            for (_, n) in &live {
                let _ = self.store.release(id, &n.id);
            }
            return Err(e);
        }
        self.write_hosts_on_join(id, &live, true, members);
        Ok(live)
    }

    fn plumb(&self, br: &mut dyn Links, ctr: &mut dyn Links, ns: BorrowedFd<'_>, ep: &Endpoint, n: &Network, default_route: bool) -> Result<()> {
        let subnet = n.subnet.ok_or_else(|| NetworkError::Invalid(format!("network {} has no subnet", n.name)))?;
        let ip: Ipv4Addr = ep.ip.parse().map_err(|_| NetworkError::Invalid(format!("bad address {}", ep.ip)))?;
        let j = sandbox::Join {
            bridge: &n.bridge,
            gateway: n.gateway.unwrap_or_else(|| subnet.first_host()),
            prefix: subnet.prefix,
            ip,
            mac: store::mac_for(ip),
            ifname: &ep.ifname,
            default_route,
        };
        sandbox::join(br, ctr, ns, &j).map_err(NetworkError::os("connect container to", format!("network {}", n.name)))?;
        Ok(())
    }

    /// Own lines (and, on user networks, the peers') into the container's file; its
    /// line into every live peer's file. `reset` rewrites the container's file (start).
    fn write_hosts_on_join(&self, id: &str, live: &[(Endpoint, Network)], reset: bool, members: &dyn Members) {
        let Some((_, hostname)) = members.names(id) else { return };
        let mut own: Vec<String> = live.iter().map(|(ep, _)| hosts::entry(&ep.ip, std::slice::from_ref(&hostname))).collect();
        for (ep, n) in live.iter().filter(|(_, n)| resolves_names(n)) {
            let mine = vec![self.peer_line(id, ep, members)];
            for peer in self.store.endpoints_on(&n.id).unwrap_or_default().iter().filter(|p| p.live() && p.container_id != id) {
                own.push(self.peer_line(&peer.container_id, peer, members));
                let _ = hosts::add(&members.hosts_file(&peer.container_id), &mine);
            }
        }
        let path = members.hosts_file(id);
        let _ = if reset { hosts::reset(&path, &own) } else { hosts::add(&path, &own) };
    }

    fn peer_line(&self, id: &str, ep: &Endpoint, members: &dyn Members) -> String {
        let name = members.names(id).map(|(n, _)| n).unwrap_or_default();
        let mut names = vec![name];
        names.extend(ep.aliases.iter().cloned());
        names.push(id.chars().take(12).collect());
        hosts::entry(&ep.ip, &names)
    }

    /// Ends every live attachment of `id` (its namespace is gone or going: the veths go
    /// with it) and takes its lines out of its peers' hosts files.
    pub fn leave_all(&self, id: &str, members: &dyn Members) -> Result<()> {
        let _lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        for (ep, n) in self.store.endpoints_of(id)?.into_iter().filter(|(ep, _)| ep.live()) {
            self.unlist(id, &ep, &n, members);
            self.store.release(id, &n.id)?;
        }
        self.store.set_published(id, &[])?;
        Ok(())
    }

    /// Runs `rename` of container `id` with its lines taken out of its peers' hosts
    /// files first (under the old name) and put back after (under the new one).
    pub fn renaming<T>(&self, id: &str, members: &dyn Members, rename: impl FnOnce() -> T) -> Result<T> {
        let _lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        let live: Vec<(Endpoint, Network)> = self.store.endpoints_of(id)?.into_iter().filter(|(ep, _)| ep.live()).collect();
        for (ep, n) in &live {
            self.unlist(id, ep, n, members);
        }
        let r = rename();
        self.write_hosts_on_join(id, &live, false, members);
        Ok(r)
    }

    fn unlist(&self, id: &str, ep: &Endpoint, n: &Network, members: &dyn Members) {
        if !resolves_names(n) {
            return;
        }
        let line = vec![self.peer_line(id, ep, members)];
        for peer in self.store.endpoints_on(&n.id).unwrap_or_default().iter().filter(|p| p.live() && p.container_id != id) {
            let _ = hosts::remove(&members.hosts_file(&peer.container_id), &line);
            let theirs = vec![self.peer_line(&peer.container_id, peer, members)];
            let _ = hosts::remove(&members.hosts_file(id), &theirs);
        }
    }

    /// Removes a network (refused while a container runs on it) and its bridge.
    pub fn remove_network(&self, n: &Network, host: &dyn HostMounts) -> Result<()> {
        let lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        self.store.remove(n)?;
        if let Ok(Some(bridge)) = self.bridge_ns.open(host, &lock) {
            if let Ok(mut br) = sandbox::socket_in(std::os::fd::AsFd::as_fd(&bridge)) {
                let _ = sandbox::leave(&mut br, &n.bridge);
            }
        }
        Ok(())
    }

    /// `network connect`: records the attachment; a running container (its namespace
    /// `ns`) is joined at once, without a default route.
    pub fn connect(&self, id: &str, n: &Network, cfg: &EndpointConfig<'_>, ns: Option<BorrowedFd<'_>>, host: &dyn HostMounts, members: &dyn Members) -> Result<()> {
        if !n.is_bridge() {
            return Err(NetworkError::Invalid(format!("container cannot be disconnected from host network or connected to {} network", n.name)));
        }
        self.store.attach(id, n, cfg.aliases, cfg.ipv4)?;
        let Some(ns) = ns else { return Ok(()) };
        let lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        let r = (|| -> Result<Endpoint> {
            let bridge = self.bridge_ns.open_or_create(host, &lock).map_err(NetworkError::os("create", "bridge network namespace"))?;
            let mut br = sandbox::socket_in(std::os::fd::AsFd::as_fd(&bridge)).map_err(NetworkError::os("open netlink in", "bridge network namespace"))?;
            let mut ctr = sandbox::socket_in(ns).map_err(NetworkError::os("open netlink in", format!("network namespace of {id}")))?;
            let ep = self.store.allocate(id, n)?;
            if let Err(e) = self.plumb(&mut br, &mut ctr, ns, &ep, n, false) {
                let _ = self.store.release(id, &n.id);
                return Err(e);
            }
            Ok(ep)
        })();
        match r {
            Ok(ep) => {
                self.write_hosts_on_join(id, &[(ep, n.clone())], false, members);
                Ok(())
            }
            Err(e) => {
                let _ = self.store.detach(id, &n.id);
                Err(e)
            }
        }
    }

    /// `network disconnect`: a running container's interface is removed first.
    pub fn disconnect(&self, id: &str, n: &Network, ns: Option<BorrowedFd<'_>>, members: &dyn Members) -> Result<()> {
        let ep = self.store.endpoints_of(id)?.into_iter().find(|(_, x)| x.id == n.id).map(|(e, _)| e);
        let Some(ep) = ep else {
            return Err(NetworkError::Invalid(format!("container {id} is not connected to network {}", n.name)));
        };
        if !n.is_bridge() {
            return Err(NetworkError::Invalid(format!("container cannot be disconnected from host network or connected to {} network", n.name)));
        }
        let _lock = self.bridge_ns.lock().map_err(NetworkError::os("lock", "network namespace"))?;
        if ep.live() {
            if let Some(ns) = ns {
                let mut ctr = sandbox::socket_in(ns).map_err(NetworkError::os("open netlink in", format!("network namespace of {id}")))?;
                sandbox::leave(&mut ctr, &ep.ifname).map_err(NetworkError::os("disconnect container from", format!("network {}", n.name)))?;
            }
            self.unlist(id, &ep, n, members);
            let own = hosts::entry(&ep.ip, &[members.names(id).map(|(_, h)| h).unwrap_or_default()]);
            let _ = hosts::remove(&members.hosts_file(id), &[own]);
            self.store.release(id, &n.id)?;
        }
        self.store.detach(id, &n.id)?;
        Ok(())
    }
}

/// Containers find each other by name on user networks, not on the default bridge
/// (docker resolves there only through `--link`).
fn resolves_names(n: &Network) -> bool {
    n.is_bridge() && n.name != "bridge"
}
