//! The few rtnetlink requests container networking needs, behind a trait so the plumbing
//! (`sandbox`) is unit-tested without the kernel. `Rtnl` speaks to the kernel through a
//! NETLINK_ROUTE socket bound to one network namespace: the namespace a socket talks to
//! is fixed when it is created (see `sandbox::socket_in`), so no thread ever has to stay
//! switched into another namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Link operations in one network namespace. Indexes are that namespace's.
pub trait Links {
    /// The index of the link named `name`, or None.
    fn index(&mut self, name: &str) -> io::Result<Option<u32>>;
    /// Creates a bridge (EEXIST if a link of that name exists).
    fn add_bridge(&mut self, name: &str, mtu: u32) -> io::Result<()>;
    /// Creates a veth pair: `name` here, enslaved to `master`, and `peer` (with MAC
    /// `peer_mac`) created directly in the namespace `peer_ns`.
    fn add_veth(&mut self, name: &str, master: u32, peer: &str, peer_mac: [u8; 6], peer_ns: BorrowedFd<'_>) -> io::Result<()>;
    fn set_up(&mut self, index: u32) -> io::Result<()>;
    /// Adds `addr/prefix` to the link (EEXIST if present).
    fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()>;
    /// The default route through `gateway` on link `index`.
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()>;
    fn delete(&mut self, index: u32) -> io::Result<()>;
}

/// An rtnetlink socket in the namespace it was created in.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement (or the single reply of a
    /// GET), returning the reply.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Option<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut reply = None;
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut off = 0;
            while off < data.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(_) => Err(e.to_io()),
                                None => Ok(reply),
                            };
                        }
                        NetlinkPayload::InnerMessage(inner) => {
                            reply = Some(inner);
                            if flags & NLM_F_ACK == 0 {
                                return Ok(reply);
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(reply),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}

impl Links for Rtnl {
    fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(Some(RouteNetlinkMessage::NewLink(l))) => Ok(Some(l.header.index)),
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn add_bridge(&mut self, name: &str, mtu: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    fn add_veth(&mut self, name: &str, master: u32, peer: &str, peer_mac: [u8; 6], peer_ns: BorrowedFd<'_>) -> io::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        p.attributes.push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p)))]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK).map(|_| ())
    }

    fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        let bcast = Ipv4Addr::from(u32::from(addr) | (u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)));
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
        m.attributes.push(AddressAttribute::Broadcast(bcast));
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).map(|_| ())
    }

    fn delete(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), NLM_F_ACK).map(|_| ())
    }
}
