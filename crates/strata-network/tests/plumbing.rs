//! The real kernel: a bridge namespace, container namespaces joined to networks by veth
//! pairs, TCP between them, isolation between networks, teardown. Needs root.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_network::sandbox::{in_netns, new_netns};
use strata_network::netlink::Links;
use strata_network::{CreateNetwork, Members, Networking, SameMounts};

struct Dir(PathBuf);

impl Members for Dir {
    fn hosts_file(&self, id: &str) -> PathBuf {
        self.0.join(format!("{id}.hosts"))
    }
    fn names(&self, id: &str) -> Option<(String, String)> {
        Some((format!("name-{id}"), format!("host-{id}")))
    }
}

fn setup() -> (tempfile::TempDir, Networking, Dir, RunDir) {
    let d = tempfile::tempdir().unwrap();
    let (root, sweep) = strata_store::DataRoot::open(&d.path().join("root")).unwrap();
    root.finish_sweep(sweep).unwrap();
    let run = PathBuf::from("/run/strata-test").join(strata_store::random_hex(6));
    let net = Networking::open(Arc::new(root), run.clone()).unwrap();
    let members = Dir(d.path().to_path_buf());
    (d, net, members, RunDir(run))
}

/// A test's runtime directory: the bridge namespace it made is unpinned at the end,
/// also when the test fails.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let b = strata_network::sandbox::BridgeNs::new(&self.0);
        if let Ok(lock) = b.lock() {
            let _ = b.remove(&SameMounts, &lock);
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let _ = std::fs::remove_dir_all(&self.0);
        if !std::thread::panicking() {
            assert!(!mounts.contains(self.0.to_str().unwrap()), "pin left mounted");
        }
    }
}

fn connect_from(ns: std::os::fd::BorrowedFd<'_>, addr: &str) -> std::io::Result<TcpStream> {
    in_netns(ns, || TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500))).unwrap()
}

/// For connections that must work: a link just set up may drop the first SYN, whose
/// retransmission comes only after a second.
fn connect_ok(ns: std::os::fd::BorrowedFd<'_>, addr: &str) -> TcpStream {
    let mut last = None;
    for _ in 0..10 {
        match in_netns(ns, || TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))).unwrap() {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
    }
    panic!("{addr} unreachable: {last:?}");
}

#[test]
fn containers_on_a_network_talk_and_other_networks_are_isolated() {
    let (_d, net, members, run) = setup();
    let a = net.store().create(&CreateNetwork { name: "a".into(), subnet: Some("10.201.0.0/24".into()), ..Default::default() }).unwrap();
    let b = net.store().create(&CreateNetwork { name: "b".into(), subnet: Some("10.202.0.0/24".into()), ..Default::default() }).unwrap();
    for c in ["c1", "c2", "c3"] {
        std::fs::write(members.hosts_file(c), strata_network::hosts::BASE).unwrap();
    }
    net.store().attach("c1", &a, &["web".into()], "").unwrap();
    net.store().attach("c2", &a, &[], "").unwrap();
    net.store().attach("c3", &b, &[], "").unwrap();
    let (n1, n2, n3) = (new_netns().unwrap(), new_netns().unwrap(), new_netns().unwrap());
    let e1 = net.join_all("c1", n1.as_fd(), &SameMounts, &members).unwrap();
    let e2 = net.join_all("c2", n2.as_fd(), &SameMounts, &members).unwrap();
    let e3 = net.join_all("c3", n3.as_fd(), &SameMounts, &members).unwrap();
    assert_eq!(e1[0].0.ip, "10.201.0.2");
    assert_eq!(e2[0].0.ip, "10.201.0.3");
    assert_eq!(e3[0].0.ip, "10.202.0.2");
    assert_eq!(e1[0].0.ifname, "eth0");

    // c1 serves; c2 (same network) reaches it, c3 (another network) does not.
    let l = in_netns(n1.as_fd(), || TcpListener::bind("0.0.0.0:8080")).unwrap().unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello").unwrap();
    });
    let mut c = connect_ok(n2.as_fd(), "10.201.0.2:8080");
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello");
    srv.join().unwrap();
    assert!(connect_from(n3.as_fd(), "10.201.0.2:8080").is_err(), "another network must not reach c1");

    // Names: each sees the other on the shared network, not c3.
    let h1 = std::fs::read_to_string(members.hosts_file("c1")).unwrap();
    let h2 = std::fs::read_to_string(members.hosts_file("c2")).unwrap();
    assert!(h1.contains("10.201.0.2\thost-c1\n"), "{h1}");
    assert!(h1.contains("10.201.0.3\tname-c2 c2\n"), "{h1}");
    assert!(h2.contains("10.201.0.2\tname-c1 web c1\n"), "{h2}");
    assert!(!h1.contains("10.202.0.2"), "{h1}");

    // c2 leaves: its line goes from c1's file, its address is free again.
    drop(n2);
    net.leave_all("c2", &members).unwrap();
    let h1 = std::fs::read_to_string(members.hosts_file("c1")).unwrap();
    assert!(!h1.contains("name-c2"), "{h1}");
    net.leave_all("c1", &members).unwrap();
    net.leave_all("c3", &members).unwrap();
    assert_eq!(net.store().live_count().unwrap(), 0);
    // The bridge namespace stays (as docker0 does); a removed network's bridge goes.
    assert!(run.0.join("netns").exists());
    let has_bridge = |name: &str| {
        let ns = std::fs::File::open(run.0.join("netns")).unwrap();
        strata_network::sandbox::socket_in(ns.as_fd()).unwrap().index(name).unwrap().is_some()
    };
    assert!(has_bridge(&a.bridge));
    net.remove_network(&a, &SameMounts).unwrap();
    assert!(!has_bridge(&a.bridge));
    assert!(has_bridge(&b.bridge));
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let (_d, net, members, _run) = setup();
    let a = net.store().create(&CreateNetwork { name: "a".into(), subnet: Some("10.203.0.0/24".into()), ..Default::default() }).unwrap();
    let b = net.store().create(&CreateNetwork { name: "b".into(), subnet: Some("10.204.0.0/24".into()), ..Default::default() }).unwrap();
    for c in ["x", "y"] {
        std::fs::write(members.hosts_file(c), strata_network::hosts::BASE).unwrap();
    }
    net.store().attach("x", &a, &[], "").unwrap();
    net.store().attach("y", &b, &[], "").unwrap();
    let (nx, ny) = (new_netns().unwrap(), new_netns().unwrap());
    net.join_all("x", nx.as_fd(), &SameMounts, &members).unwrap();
    net.join_all("y", ny.as_fd(), &SameMounts, &members).unwrap();
    let l = in_netns(ny.as_fd(), || TcpListener::bind("0.0.0.0:9000")).unwrap().unwrap();
    assert!(connect_from(nx.as_fd(), "10.204.0.2:9000").is_err());
    net.connect("x", &b, &strata_network::EndpointConfig { aliases: &[], ipv4: "" }, Some(nx.as_fd()), &SameMounts, &members).unwrap();
    let eps = net.store().endpoints_of("x").unwrap();
    assert_eq!(eps[1].0.ifname, "eth1");
    assert_eq!(eps[1].0.ip, "10.204.0.3");
    let acc = std::thread::spawn(move || l.accept().map(|_| ()));
    connect_ok(nx.as_fd(), "10.204.0.2:9000");
    acc.join().unwrap().unwrap();
    net.disconnect("x", &b, Some(nx.as_fd()), &members).unwrap();
    assert!(connect_from(nx.as_fd(), "10.204.0.2:9000").is_err());
    assert_eq!(net.store().endpoints_of("x").unwrap().len(), 1);
    let e = net.disconnect("x", &b, Some(nx.as_fd()), &members).unwrap_err();
    assert_eq!(e.to_string(), "container x is not connected to network b");
    net.leave_all("x", &members).unwrap();
    net.leave_all("y", &members).unwrap();
}
