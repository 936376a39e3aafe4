//! Network namespaces and the plumbing between them.
//!
//! Every bridge lives in one network namespace that strata owns per data root (the
//! "bridge namespace", pinned by a bind mount at `/run/strata/<root-tag>/netns`), never in
//! the host's: the host's routes, firewall and forwarding policy are not ours to touch,
//! and nothing a container sends can leave that namespace except through a published
//! port's proxy. IPv4 forwarding is switched off there (a new namespace inherits the
//! host's setting), so containers on different bridges cannot reach each other.
//!
//! A container's own namespace is made by `new_netns` and held by an fd (its
//! supervisor's); a veth pair joins it to its network's bridge. Namespace switches are
//! per thread and always undone before returning: a netlink socket keeps the namespace
//! it was created in, so the thread creates the socket inside and comes straight back.
//!
//! All changes to the bridge namespace (creating it, bridges, joins, leaves) happen
//! under one flock (`net.lock`), which also serialises the /etc/hosts updates between
//! containers of a network. The namespace stays pinned once made (as docker0 stays):
//! tearing down a bridge device waits for RCU grace periods under the kernel's rtnl
//! lock, which made the next container's start wait ~15 ms here each time.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::netlink::{Links, Rtnl};

const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The calling thread's network namespace.
pub fn current_netns() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open("/proc/thread-self/ns/net", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?)
}

/// Runs `f` with the calling thread in the network namespace `ns`, then moves it back.
pub fn in_netns<T>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T) -> io::Result<T> {
    let back = current_netns()?;
    move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))?;
    let out = f();
    // Staying in the wrong namespace would silently misroute everything after.
    move_into_link_name_space(back.as_fd(), Some(LinkNameSpaceType::Network)).expect("return to the original network namespace");
    Ok(out)
}

/// An rtnetlink socket that talks to the namespace `ns`.
pub fn socket_in(ns: BorrowedFd<'_>) -> io::Result<Rtnl> {
    in_netns(ns, Rtnl::new)?
}

/// A new network namespace with its loopback up and IPv6 off (as docker leaves a
/// container's when its networks have no IPv6), held by the returned fd.
pub fn new_netns() -> io::Result<OwnedFd> {
    let back = current_netns()?;
    // SAFETY: unsharing only the network namespace touches no state Rust relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
    let made = current_netns();
    // /proc/sys/net shows the namespace of the thread that opens it.
    for k in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1");
    }
    let lo = Rtnl::new().and_then(|mut l| match l.index("lo")? {
        Some(i) => l.set_up(i),
        None => Ok(()),
    });
    move_into_link_name_space(back.as_fd(), Some(LinkNameSpaceType::Network)).expect("return to the original network namespace");
    lo?;
    made
}

/// Runs work in the mount namespace where the bridge namespace's pin must live (the
/// host's): a supervisor sits in a private one and switches for the call.
pub trait HostMounts {
    fn run(&self, f: &mut dyn FnMut()) -> io::Result<()>;
}

/// For processes already in the host's mount namespace.
pub struct SameMounts;

impl HostMounts for SameMounts {
    fn run(&self, f: &mut dyn FnMut()) -> io::Result<()> {
        f();
        Ok(())
    }
}

/// The bridge namespace of one data root and its lock.
pub struct BridgeNs {
    dir: PathBuf,
}

/// Held while the bridge namespace changes; released on drop.
pub struct NetLock {
    _file: File,
}

impl BridgeNs {
    /// `dir` is the data root's runtime directory (`/run/strata/<root-tag>`).
    pub fn new(dir: impl Into<PathBuf>) -> BridgeNs {
        BridgeNs { dir: dir.into() }
    }

    pub fn pin_path(&self) -> PathBuf {
        self.dir.join("netns")
    }

    pub fn lock(&self) -> io::Result<NetLock> {
        std::fs::create_dir_all(&self.dir)?;
        let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(self.dir.join("net.lock"))?;
        flock(&f, FlockOperation::LockExclusive)?;
        Ok(NetLock { _file: f })
    }

    /// The bridge namespace if it exists.
    pub fn open(&self, host: &dyn HostMounts, _lock: &NetLock) -> io::Result<Option<OwnedFd>> {
        let pin = self.pin_path();
        let mut out = Ok(None);
        host.run(&mut || out = open_pinned(&pin))?;
        out
    }

    /// The bridge namespace, made (and pinned) if it does not exist yet.
    pub fn open_or_create(&self, host: &dyn HostMounts, lock: &NetLock) -> io::Result<OwnedFd> {
        if let Some(fd) = self.open(host, lock)? {
            return Ok(fd);
        }
        let ns = new_netns()?;
        // A new namespace inherits the host's IPv4 forwarding setting: off, so no
        // packet crosses from one bridge to another.
        in_netns(ns.as_fd(), || std::fs::write("/proc/sys/net/ipv4/ip_forward", "0"))??;
        let pin = self.pin_path();
        let mut r = Ok(());
        host.run(&mut || {
            r = (|| -> io::Result<()> {
                OpenOptions::new().create(true).truncate(false).write(true).open(&pin)?;
                let src = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ns));
                rustix::mount::mount_bind(src.as_str(), &pin)?;
                Ok(())
            })()
        })?;
        r?;
        Ok(ns)
    }

    /// Unpins the bridge namespace (its bridges go with it once nothing holds it).
    pub fn remove(&self, host: &dyn HostMounts, _lock: &NetLock) -> io::Result<()> {
        let pin = self.pin_path();
        let mut r = Ok(());
        host.run(&mut || {
            while rustix::mount::unmount(&pin, rustix::mount::UnmountFlags::DETACH).is_ok() {}
            r = match std::fs::remove_file(&pin) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        })?;
        r
    }
}

fn open_pinned(pin: &Path) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::statfs(pin) {
        // f_type's width differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) if st.f_type as i64 == NSFS_MAGIC => {
            Ok(Some(rustix::fs::open(pin, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?))
        }
        Ok(_) => Ok(None),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A bridge made on first use: `name` with `gateway/prefix`, up.
pub fn ensure_bridge(links: &mut dyn Links, name: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<u32> {
    if let Some(i) = links.index(name)? {
        return Ok(i);
    }
    ignore_exists(links.add_bridge(name, 1500))?;
    let i = links.index(name)?.ok_or_else(|| io::Error::other(format!("bridge {name} vanished after creation")))?;
    ignore_exists(links.add_addr(i, gateway, prefix))?;
    links.set_up(i)?;
    Ok(i)
}

fn ignore_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// One container interface to plumb.
pub struct Join<'a> {
    pub bridge: &'a str,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// The interface's name in the container (`eth0`, `eth1`, ...).
    pub ifname: &'a str,
    /// Whether this network gives the container its default route.
    pub default_route: bool,
}

/// Joins the container namespace `ctr_ns` (talked to through `ctr`) to a bridge of
/// the bridge namespace (talked to through `br`): a veth pair whose container end is
/// created inside the container's namespace, then addressed and routed there. Returns
/// the name of the bridge-side end.
pub fn join(br: &mut dyn Links, ctr: &mut dyn Links, ctr_ns: BorrowedFd<'_>, j: &Join<'_>) -> io::Result<String> {
    let bridge = ensure_bridge(br, j.bridge, j.gateway, j.prefix)?;
    let host_end = format!("veth{}", &strata_store::random_hex(4)[..7]);
    br.add_veth(&host_end, bridge, j.ifname, j.mac, ctr_ns)?;
    let hi = br.index(&host_end)?.ok_or_else(|| io::Error::other(format!("veth {host_end} vanished after creation")))?;
    br.set_up(hi)?;
    let ci = ctr.index(j.ifname)?.ok_or_else(|| io::Error::other(format!("interface {} missing in the container", j.ifname)))?;
    ctr.add_addr(ci, j.ip, j.prefix)?;
    ctr.set_up(ci)?;
    if j.default_route {
        ctr.add_default_route(ci, j.gateway)?;
    }
    Ok(host_end)
}

/// Removes a container interface (both ends of its veth pair go).
pub fn leave(ctr: &mut dyn Links, ifname: &str) -> io::Result<()> {
    match ctr.index(ifname)? {
        Some(i) => ctr.delete(i),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records calls; links get indexes in creation order.
    #[derive(Default)]
    struct Fake {
        links: Vec<String>,
        calls: Vec<String>,
    }

    impl Links for Fake {
        fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
            Ok(self.links.iter().position(|l| l == name).map(|i| i as u32 + 1))
        }
        fn add_bridge(&mut self, name: &str, mtu: u32) -> io::Result<()> {
            self.links.push(name.into());
            self.calls.push(format!("bridge {name} {mtu}"));
            Ok(())
        }
        fn add_veth(&mut self, name: &str, master: u32, peer: &str, mac: [u8; 6], _ns: BorrowedFd<'_>) -> io::Result<()> {
            self.links.push(name.into());
            self.calls.push(format!("veth master={master} peer={peer} mac={}", crate::store::mac_text(mac)));
            Ok(())
        }
        fn set_up(&mut self, index: u32) -> io::Result<()> {
            self.calls.push(format!("up {index}"));
            Ok(())
        }
        fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
            self.calls.push(format!("addr {index} {addr}/{prefix}"));
            Ok(())
        }
        fn add_default_route(&mut self, index: u32, gw: Ipv4Addr) -> io::Result<()> {
            self.calls.push(format!("route default via {gw} dev {index}"));
            Ok(())
        }
        fn delete(&mut self, index: u32) -> io::Result<()> {
            self.calls.push(format!("delete {index}"));
            Ok(())
        }
    }

    #[test]
    fn join_makes_the_bridge_once_and_routes_only_the_primary() {
        let mut br = Fake::default();
        let mut ctr = Fake { links: vec!["lo".into(), "eth0".into(), "eth1".into()], ..Default::default() };
        let devnull = File::open("/dev/null").unwrap();
        let j = |ifname: &'static str, ip: &str, default_route| Join {
            bridge: "br-x",
            gateway: "10.1.0.1".parse().unwrap(),
            prefix: 24,
            ip: ip.parse().unwrap(),
            mac: crate::store::mac_for(ip.parse().unwrap()),
            ifname,
            default_route,
        };
        let a = join(&mut br, &mut ctr, devnull.as_fd(), &j("eth0", "10.1.0.2", true)).unwrap();
        join(&mut br, &mut ctr, devnull.as_fd(), &j("eth1", "10.1.0.3", false)).unwrap();
        assert!(a.starts_with("veth") && a.len() == 11, "{a}");
        assert_eq!(br.calls[..5], ["bridge br-x 1500", "addr 1 10.1.0.1/24", "up 1", "veth master=1 peer=eth0 mac=02:42:0a:01:00:02", "up 2"]);
        assert_eq!(br.calls.iter().filter(|c| c.starts_with("bridge")).count(), 1);
        assert_eq!(ctr.calls, ["addr 2 10.1.0.2/24", "up 2", "route default via 10.1.0.1 dev 2", "addr 3 10.1.0.3/24", "up 3"]);
        leave(&mut ctr, "eth1").unwrap();
        leave(&mut ctr, "eth9").unwrap();
        assert_eq!(ctr.calls.last().unwrap(), "delete 3");
    }
}
