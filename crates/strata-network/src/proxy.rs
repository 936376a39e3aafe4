//! Published ports: host sockets bound at start, and the forwarding proxy that relays
//! their traffic to the container.
//!
//! Lifecycle: the supervisor binds every published address in the host's network
//! namespace before the container starts (so a port in use is a start error, as
//! docker's), then hands the sockets to one `strata __proxy` process per container. The
//! proxy moves its main thread into the container's network namespace once, before any
//! other thread exists; every thread it starts inherits that namespace, so each
//! outgoing connection is made inside the container, to its own address, over its
//! loopback (no veth or bridge hop per packet, and no route from the host needed),
//! while the inherited listeners stay in the host's namespace. The container sees the
//! connection come from its own address (docker-proxy's come from the gateway). The
//! proxy dies with the supervisor (PDEATHSIG) or when the supervisor stops it at the
//! container's exit.
//!
//! TCP: an epoll loop per core, data moved by `splice` through a pipe per direction
//! (never copied to user space); an EOF in one direction becomes a write shutdown of
//! the other (half close). UDP: a session per client address, with its own socket connected to the
//! container, forgotten after 90 s without traffic (docker-proxy's timeout).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::{sockopt, AddressFamily, SocketType};

use crate::ports::Proto;

const UDP_TIMEOUT: Duration = Duration::from_secs(90);
const PIPE_SIZE: usize = 1 << 20;
const STACK: usize = 128 * 1024;

/// Whether this host has IPv6 (docker then also listens on `::`).
pub fn ipv6_available() -> bool {
    std::fs::metadata("/proc/net/if_inet6").is_ok() && std::net::UdpSocket::bind("[::1]:0").is_ok()
}

/// A bound host socket: TCP listening, or UDP.
pub fn bind(proto: Proto, ip: IpAddr, port: u16) -> io::Result<OwnedFd> {
    let family = if ip.is_ipv6() { AddressFamily::INET6 } else { AddressFamily::INET };
    let ty = if proto == Proto::Udp { SocketType::DGRAM } else { SocketType::STREAM };
    let fd = rustix::net::socket_with(family, ty, rustix::net::SocketFlags::CLOEXEC, None)?;
    if ip.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    if proto == Proto::Tcp {
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &SocketAddr::new(ip, port))?;
    if proto == Proto::Tcp {
        rustix::net::listen(&fd, 4096)?;
    }
    Ok(fd)
}

/// The port a bound socket got (for port 0).
pub fn local_port(fd: &OwnedFd) -> io::Result<u16> {
    let addr = rustix::net::getsockname(fd)?;
    let sa: SocketAddr = addr.try_into().map_err(|_| io::Error::other("not an inet socket"))?;
    Ok(sa.port())
}

/// What one proxied socket forwards to.
pub struct Forward {
    pub proto: Proto,
    pub listener: OwnedFd,
    pub to: SocketAddr,
}

/// Argument form of a forward for `strata __proxy`: `tcp:FD:IP:PORT`.
pub fn forward_arg(proto: Proto, fd: RawFd, to: SocketAddr) -> String {
    format!("{}:{fd}:{to}", proto.as_str())
}

/// Parses `forward_arg`, taking ownership of the fd it names.
///
/// # Safety
/// The fd must be open, inherited for this purpose, and owned by nobody else.
pub unsafe fn parse_forward(arg: &str) -> Option<Forward> {
    let mut it = arg.splitn(3, ':');
    let proto = match it.next()? {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let fd: RawFd = it.next()?.parse().ok()?;
    let to: SocketAddr = it.next()?.parse().ok()?;
    // SAFETY: the caller guarantees the fd is ours.
    let listener = unsafe { OwnedFd::from_raw_fd(fd) };
    Some(Forward { proto, listener, to })
}

/// Runs the proxy until the process is killed. `netns` is the namespace outgoing
/// connections are made in (the container's). Call before any other thread exists.
pub fn serve(netns: OwnedFd, forwards: Vec<Forward>) -> io::Result<()> {
    // SAFETY: a plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    rustix::thread::move_into_link_name_space(netns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))?;
    drop(netns);
    let mut threads = Vec::new();
    let mut tcp = Vec::new();
    for f in forwards {
        let to = f.to;
        match f.proto {
            Proto::Udp => {
                let sock = UdpSocket::from(f.listener);
                threads.push(std::thread::Builder::new().stack_size(STACK).spawn(move || udp_loop(sock, to))?);
            }
            _ => tcp.push((f.listener, to)),
        }
    }
    if !tcp.is_empty() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
        threads.extend(tcp_workers(tcp, n)?);
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// TCP forwarding: one epoll loop per worker thread over every listener (shared with
/// EPOLLEXCLUSIVE, so the kernel spreads accepts) and every connection pair of that
/// worker. Each direction of a pair moves bytes by non-blocking `splice` through its
/// own pipe; an EOF, once the pipe is drained, becomes a write shutdown of the other
/// side. Sockets are registered edge-triggered once; any readiness change pumps both
/// directions until the kernel says EAGAIN.
mod tcp {
    use super::*;
    use rustix::event::epoll;
    use rustix::io::Errno;
    use rustix::pipe::SpliceFlags;

    const LISTENER: u64 = 1 << 63;

    struct Dir {
        pipe: (OwnedFd, OwnedFd),
        pending: usize,
        eof: bool,
        shut: bool,
    }

    /// While the outgoing connection is being made, splicing into it says EAGAIN and
    /// its completion (EPOLLOUT) pumps again; a failed connect errors the first
    /// splice, which ends the pair.
    struct Pair {
        client: OwnedFd,
        server: OwnedFd,
        /// client → server, server → client.
        dirs: [Dir; 2],
    }

    pub(super) fn worker(listeners: Vec<(OwnedFd, SocketAddr)>) -> io::Result<()> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for (i, (l, _)) in listeners.iter().enumerate() {
            rustix::io::ioctl_fionbio(l, true)?;
            epoll::add(&ep, l, epoll::EventData::new_u64(LISTENER | i as u64), epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE)?;
        }
        let mut pairs: Vec<Option<Pair>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut pipes: Vec<(OwnedFd, OwnedFd)> = Vec::new();
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            events.clear();
            match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let t = ev.data.u64();
                if t & LISTENER != 0 {
                    let (l, to) = &listeners[(t & !LISTENER) as usize];
                    accept_all(&ep, l, *to, &mut pairs, &mut free, &mut pipes);
                    continue;
                }
                let i = (t >> 1) as usize;
                let done = match pairs.get_mut(i).and_then(Option::as_mut) {
                    Some(p) => pump(p),
                    None => false,
                };
                if done {
                    // Closing the sockets takes them out of the epoll set.
                    if let Some(p) = pairs[i].take() {
                        // Drained pipes are reused; a pipe with bytes left goes.
                        for d in p.dirs {
                            if d.pending == 0 && pipes.len() < 64 {
                                pipes.push(d.pipe);
                            }
                        }
                    }
                    free.push(i);
                }
            }
        }
    }

    fn new_pipe(pool: &mut Vec<(OwnedFd, OwnedFd)>) -> io::Result<(OwnedFd, OwnedFd)> {
        if let Some(p) = pool.pop() {
            return Ok(p);
        }
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)?;
        let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE);
        Ok((r, w))
    }

    fn accept_all(ep: &OwnedFd, l: &OwnedFd, to: SocketAddr, pairs: &mut Vec<Option<Pair>>, free: &mut Vec<usize>, pool: &mut Vec<(OwnedFd, OwnedFd)>) {
        loop {
            let client = match rustix::net::accept_with(l, rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC) {
                Ok(c) => c,
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                // Out of fds or memory: leave the rest queued for the next round.
                Err(_) => return,
            };
            let fam = if to.is_ipv6() { AddressFamily::INET6 } else { AddressFamily::INET };
            let Ok(server) = rustix::net::socket_with(fam, SocketType::STREAM, rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC, None) else { continue };
            // Go's net package (and so docker-proxy) disables Nagle on every connection.
            let _ = sockopt::set_tcp_nodelay(&client, true);
            let _ = sockopt::set_tcp_nodelay(&server, true);
            match rustix::net::connect(&server, &to) {
                Ok(()) | Err(Errno::INPROGRESS) => {}
                Err(_) => continue,
            }
            let (Ok(a), Ok(b)) = (new_pipe(pool), new_pipe(pool)) else { continue };
            let dir = |pipe| Dir { pipe, pending: 0, eof: false, shut: false };
            let pair = Pair { client, server, dirs: [dir(a), dir(b)] };
            let i = match free.pop() {
                Some(i) => i,
                None => {
                    pairs.push(None);
                    pairs.len() - 1
                }
            };
            let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
            let ok = epoll::add(ep, &pair.client, epoll::EventData::new_u64((i as u64) << 1), flags).is_ok()
                && epoll::add(ep, &pair.server, epoll::EventData::new_u64(((i as u64) << 1) | 1), flags).is_ok();
            if !ok {
                let _ = epoll::delete(ep, &pair.client);
                free.push(i);
                continue;
            }
            pairs[i] = Some(pair);
        }
    }

    /// Moves what can be moved now. Returns whether the pair is finished.
    fn pump(p: &mut Pair) -> bool {
        let (c, s) = (&p.client, &p.server);
        let [up, down] = &mut p.dirs;
        if move_dir(c, s, up).is_err() || move_dir(s, c, down).is_err() {
            return true;
        }
        up.shut && down.shut
    }

    fn move_dir(from: &OwnedFd, to: &OwnedFd, d: &mut Dir) -> Result<(), Errno> {
        let fl = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        loop {
            if d.pending > 0 {
                match rustix::pipe::splice(&d.pipe.0, None, to, None, d.pending, fl) {
                    Ok(0) => return Err(Errno::PIPE),
                    Ok(n) => {
                        d.pending -= n;
                        continue;
                    }
                    Err(Errno::AGAIN) => return Ok(()),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e),
                }
            }
            if d.eof {
                if !d.shut {
                    let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
                    d.shut = true;
                }
                return Ok(());
            }
            match rustix::pipe::splice(from, None, &d.pipe.1, None, PIPE_SIZE, fl) {
                Ok(0) => d.eof = true,
                Ok(n) => d.pending += n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs the TCP forwards on `workers` threads (each serving every listener).
fn tcp_workers(forwards: Vec<(OwnedFd, SocketAddr)>, workers: usize) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut out = Vec::new();
    for _ in 0..workers {
        let mine: Vec<(OwnedFd, SocketAddr)> = forwards.iter().map(|(fd, to)| fd.try_clone().map(|f| (f, *to))).collect::<io::Result<_>>()?;
        out.push(std::thread::Builder::new().stack_size(STACK).spawn(move || {
            let _ = tcp::worker(mine);
        })?);
    }
    Ok(out)
}

struct UdpSession {
    sock: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
}

fn udp_loop(listener: UdpSocket, to: SocketAddr) {
    let listener = Arc::new(listener);
    let start = Instant::now();
    let sessions: Arc<Mutex<HashMap<SocketAddr, UdpSession>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = listener.recv_from(&mut buf) else { continue };
        let now = start.elapsed().as_millis() as u64;
        let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(from) {
            let local: SocketAddr = if to.is_ipv6() { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
            let Ok(sock) = UdpSocket::bind(local).and_then(|s| s.connect(to).map(|()| s)) else { continue };
            let sock = Arc::new(sock);
            let last = Arc::new(AtomicU64::new(now));
            let (s2, l2, back, all) = (sock.clone(), last.clone(), listener.clone(), sessions.clone());
            let spawned = std::thread::Builder::new().stack_size(STACK).spawn(move || {
                let _ = s2.set_read_timeout(Some(Duration::from_secs(1)));
                let mut b = vec![0u8; 65536];
                loop {
                    match s2.recv(&mut b) {
                        Ok(m) => {
                            l2.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                            let _ = back.send_to(&b[..m], from);
                        }
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                            let idle = start.elapsed().as_millis() as u64 - l2.load(Ordering::Relaxed);
                            if idle > UDP_TIMEOUT.as_millis() as u64 {
                                all.lock().unwrap_or_else(|e| e.into_inner()).remove(&from);
                                return;
                            }
                        }
                        // ICMP port unreachable and the like: the session stays.
                        Err(_) => {}
                    }
                }
            });
            if spawned.is_err() {
                continue;
            }
            slot.insert(UdpSession { sock, last });
        }
        if let Some(s) = map.get(&from) {
            s.last.store(now, Ordering::Relaxed);
            let _ = s.sock.send(&buf[..n]);
        }
    }
}

/// Starts `exe __proxy` with the container's namespace and the bound sockets. The
/// child gets the fds at 3, 4, ... and nothing else.
pub fn spawn(exe: &std::path::Path, netns: &OwnedFd, forwards: &[(Proto, &OwnedFd, SocketAddr)]) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut fds: Vec<RawFd> = vec![netns.as_raw_fd()];
    fds.extend(forwards.iter().map(|(_, fd, _)| fd.as_raw_fd()));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0("strata").arg("__proxy");
    for (i, (proto, _, to)) in forwards.iter().enumerate() {
        cmd.arg(forward_arg(*proto, 4 + i as RawFd, *to));
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // Duplicate everything above the target range first, so placing one fd never
    // overwrites a source that is still to be placed.
    let base = 1000;
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, base + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for i in 0..fds.len() {
                if libc::dup2(base + i as RawFd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(base + i as RawFd);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    cmd.spawn()
}

/// Entry point of `strata __proxy ARGS...` (fd 3 is the container's namespace).
pub fn main(args: &[String]) -> i32 {
    // SAFETY: fd 3 and the forward fds were placed by `spawn` for this process.
    let ns = unsafe { OwnedFd::from_raw_fd(3) };
    let mut forwards = Vec::new();
    for a in args {
        // SAFETY: as above.
        match unsafe { parse_forward(a) } {
            Some(f) => forwards.push(f),
            None => return 2,
        }
    }
    match serve(ns, forwards) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Relays on an already bound listener from this process's namespace (tests).
pub fn relay_in_thread(listener: TcpListener, to: SocketAddr) -> io::Result<std::thread::JoinHandle<()>> {
    Ok(tcp_workers(vec![(OwnedFd::from(listener), to)], 1)?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::os::fd::IntoRawFd;

    #[test]
    fn tcp_relay_passes_data_and_half_close() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_addr = front.local_addr().unwrap();
        relay_in_thread(front, to).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            // The client's write-close arrived as EOF; the other direction still works.
            s.write_all(&got).unwrap();
            s.write_all(b"|done").unwrap();
        });
        let mut c = TcpStream::connect(front_addr).unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&payload).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        echo.join().unwrap();
        assert_eq!(back.len(), payload.len() + 5);
        assert_eq!(&back[..payload.len()], &payload[..]);
        assert_eq!(&back[payload.len()..], b"|done");
    }

    #[test]
    fn forward_args_round_trip() {
        let a = forward_arg(Proto::Udp, 7, "10.0.0.2:53".parse().unwrap());
        assert_eq!(a, "udp:7:10.0.0.2:53");
        let fd = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        // SAFETY: a fresh fd owned by nobody else.
        let f = unsafe { parse_forward(&forward_arg(Proto::Tcp, fd, "10.0.0.2:80".parse().unwrap())) }.unwrap();
        assert_eq!(f.to, "10.0.0.2:80".parse::<SocketAddr>().unwrap());
        assert_eq!(f.listener.as_raw_fd(), fd);
    }
}
