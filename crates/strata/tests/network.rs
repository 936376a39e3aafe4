//! Container networking for real: namespaces, bridges, veths, published ports through
//! the proxy, user networks with names, and docker's errors. Needs root. Only
//! addresses inside namespaces strata makes (and this machine's own) are contacted.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use common::{stderr, stdout, Strata};
use serde_json::Value;

fn setup() -> Strata {
    let s = Strata::new();
    s.import_busybox("busybox:latest");
    s
}

/// A port nothing listens on now (the kernel's pick, released again).
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

fn inspect(s: &Strata, name: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

/// Connects, sends `msg`, half-closes, reads everything back.
fn exchange(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Written from a thread: an echo must be read while it is still being sent.
    let mut w = c.try_clone()?;
    let data = msg.to_vec();
    let writer = std::thread::spawn(move || w.write_all(&data).and_then(|()| w.shutdown(Shutdown::Write)));
    let mut out = Vec::new();
    c.read_to_end(&mut out)?;
    writer.join().expect("writer")?;
    Ok(out)
}

/// Retries while the server in the container is still coming up.
fn exchange_retry(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    for _ in 0..50 {
        if let Ok(v) = exchange(addr, msg) {
            if !v.is_empty() {
                return v;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no answer from {addr}");
}

/// This machine's own IPv4 addresses other than loopback.
fn host_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).and_then(|a| a.split('/').next()).map(str::to_string))
        .filter(|a| !a.starts_with("127."))
        .collect()
}

#[test]
fn default_bridge_none_host_and_container_modes() {
    let s = setup();
    let out = s.ok(&["run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0; ip route"]);
    assert!(out.contains("inet 172.17.0.2/16"), "{out}");
    assert!(out.contains("default via 172.17.0.1 dev eth0"), "{out}");
    let links = s.ok(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo: <LOOPBACK,UP"), "{links}");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert_eq!(s.ok(&["run", "--rm", "--network", "host", "busybox", "hostname"]).trim(), host_name);
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    let seen = s.ok(&["run", "--rm", "--net=host", "busybox", "ip", "-o", "link"]);
    assert_eq!(seen.lines().count(), host_links, "{seen}");

    // container:NAME shares the namespace (and hostname) of a running container.
    s.ok(&["run", "-d", "--name", "aa", "busybox", "sleep", "60"]);
    let ip = inspect(&s, "aa")["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    assert_eq!(ip, "172.17.0.2");
    let out = s.ok(&["run", "--rm", "--network", "container:aa", "busybox", "sh", "-c", "ip -4 addr show eth0; hostname"]);
    assert!(out.contains(&format!("inet {ip}/16")), "{out}");
    assert!(out.contains(&inspect(&s, "aa")["Config"]["Hostname"].as_str().unwrap().to_string()), "{out}");
    // Addresses are freed when containers stop: the next one gets .3, and .2 again later.
    assert!(s.ok(&["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"]).contains("172.17.0.3/16"));
    s.ok(&["rm", "-f", "aa"]);
    assert!(s.ok(&["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"]).contains("172.17.0.2/16"));
}

#[test]
fn published_ports_reach_the_container() {
    let s = setup();
    let port = free_port();
    let spec = format!("{port}:80");
    s.ok(&["run", "-d", "--name", "web", "-p", &spec, "busybox", "nc", "-ll", "-p", "80", "-e", "cat"]);
    // Loopback and every address of this machine; half-close passes through (cat
    // answers only after our write side closed).
    let back = exchange_retry(format!("127.0.0.1:{port}").parse().unwrap(), b"over the proxy");
    assert_eq!(back, b"over the proxy");
    for a in host_addresses() {
        let back = exchange_retry(format!("{a}:{port}").parse().unwrap(), b"via host address");
        assert_eq!(back, b"via host address", "through {a}");
    }
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(exchange_retry(format!("127.0.0.1:{port}").parse().unwrap(), &big), big);

    let j = inspect(&s, "web");
    assert_eq!(j["HostConfig"]["PortBindings"], serde_json::json!({"80/tcp": [{"HostIp": "", "HostPort": port.to_string()}]}));
    assert_eq!(j["Config"]["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
    let bindings = j["NetworkSettings"]["Ports"]["80/tcp"].as_array().unwrap().clone();
    assert_eq!(bindings[0], serde_json::json!({"HostIp": "0.0.0.0", "HostPort": port.to_string()}));
    let p = s.ok(&["port", "web"]);
    assert!(p.starts_with(&format!("80/tcp -> 0.0.0.0:{port}\n")), "{p}");
    assert_eq!(s.ok(&["port", "web", "80"]).lines().next().unwrap(), format!("0.0.0.0:{port}"));
    let ps = s.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.starts_with(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    let none = s.run(&["port", "web", "81"]);
    assert_eq!(stderr(&none).trim(), "no public port '81' published for web");
    assert_eq!(none.status.code(), Some(1));

    // Stopped: no ports; started again: bound again.
    s.ok(&["stop", "-t", "0", "web"]);
    assert!(TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_millis(300)).is_err());
    assert_eq!(inspect(&s, "web")["NetworkSettings"]["Ports"], serde_json::json!({}));
    assert_eq!(s.ok(&["port", "web"]), "");
    s.ok(&["start", "web"]);
    assert_eq!(exchange_retry(format!("127.0.0.1:{port}").parse().unwrap(), b"again"), b"again");
    s.ok(&["rm", "-f", "web"]);
    assert!(TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_millis(300)).is_err());
}

#[test]
fn publish_all_and_udp() {
    let s = setup();
    s.ok(&["run", "-d", "--name", "all", "--expose", "80", "--expose", "7000-7001/udp", "-P", "busybox", "nc", "-ll", "-p", "80", "-e", "cat"]);
    let ports = inspect(&s, "all")["NetworkSettings"]["Ports"].clone();
    let keys: Vec<&String> = ports.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["7000/udp", "7001/udp", "80/tcp"]);
    let hp: u16 = ports["80/tcp"][0]["HostPort"].as_str().unwrap().parse().unwrap();
    assert!(hp >= 1024, "{hp}");
    assert_eq!(exchange_retry(format!("127.0.0.1:{hp}").parse().unwrap(), b"random port"), b"random port");

    // UDP: an echo server bound inside the container's namespace answers through the
    // published port.
    let udp_port = free_port();
    let spec = format!("127.0.0.1:{udp_port}:53/udp");
    s.ok(&["run", "-d", "--name", "uu", "-p", &spec, "busybox", "sleep", "60"]);
    let pid = inspect(&s, "uu")["State"]["Pid"].as_i64().unwrap();
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let server = strata_network::sandbox::in_netns(ns.as_fd(), || UdpSocket::bind("0.0.0.0:53")).unwrap().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&reply, from);
        }
    });
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..3 {
        let msg = format!("datagram {i}");
        c.send_to(msg.as_bytes(), ("127.0.0.1", udp_port)).unwrap();
        let mut buf = [0u8; 100];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
    }
    assert_eq!(s.ok(&["port", "uu", "53/udp"]).trim(), format!("127.0.0.1:{udp_port}"));
}

#[test]
fn user_networks_resolve_names_and_isolate() {
    let s = setup();
    let id = s.ok(&["network", "create", "--label", "team=a", "front"]).trim().to_string();
    assert_eq!(id.len(), 64);
    s.ok(&["network", "create", "--subnet", "10.123.0.0/24", "back"]);
    let ls = s.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"]);
    assert_eq!(ls, "back bridge local\nbridge bridge local\nfront bridge local\nhost host local\nnone null local\n");
    assert_eq!(s.ok(&["network", "ls", "-q", "--filter", "label=team=a"]).trim(), &id[..12]);

    s.ok(&["run", "-d", "--name", "srv", "--network", "front", "--network-alias", "web", "busybox", "nc", "-ll", "-p", "80", "-e", "echo", "hi"]);
    std::thread::sleep(Duration::from_millis(200));
    let out = s.ok(&["run", "--rm", "--network", "front", "busybox", "sh", "-c", "nc srv 80; nc web 80"]);
    assert_eq!(out, "hi\nhi\n");
    let srv = inspect(&s, "srv");
    let net = &srv["NetworkSettings"]["Networks"]["front"];
    assert_eq!(net["Aliases"], serde_json::json!(["web"]));
    assert_eq!(net["NetworkID"], id.as_str());
    assert_eq!(net["IPAddress"], "172.18.0.2");
    assert_eq!(net["DNSNames"][0], "srv");
    assert_eq!(srv["NetworkSettings"]["IPAddress"], "", "only the default bridge fills the top-level fields");
    let ni: Value = serde_json::from_str(&s.ok(&["network", "inspect", "front"])).unwrap();
    assert_eq!(ni[0]["Containers"][srv["Id"].as_str().unwrap()]["IPv4Address"], "172.18.0.2/16");
    assert_eq!(ni[0]["Labels"], serde_json::json!({"team": "a"}));
    assert_eq!(s.ok(&["ps", "--filter", "network=front", "--format", "{{.Names}} {{.Networks}}"]), "srv front\n");

    // Another network cannot reach srv, by name or address.
    let out = s.run(&["run", "--rm", "--network", "back", "busybox", "sh", "-c", "nc -w 2 172.18.0.2 80 && echo reached"]);
    assert!(!stdout(&out).contains("hi"), "{}", stdout(&out));
    let out = s.run(&["run", "--rm", "--network", "back", "busybox", "nc", "-w", "2", "srv", "80"]);
    assert!(!out.status.success());

    // Connected to back too, srv is found there by name from a back-only container.
    s.ok(&["network", "connect", "--alias", "api", "back", "srv"]);
    let eps = inspect(&s, "srv")["NetworkSettings"]["Networks"].clone();
    assert_eq!(eps["back"]["IPAddress"], "10.123.0.2");
    assert_eq!(s.ok(&["run", "--rm", "--network", "back", "busybox", "sh", "-c", "nc api 80"]), "hi\n");
    assert!(s.ok(&["exec", "srv", "ip", "-o", "-4", "addr"]).contains("eth1"));
    s.ok(&["network", "disconnect", "back", "srv"]);
    assert!(!s.ok(&["exec", "srv", "ip", "-o", "-4", "addr"]).contains("eth1"));
    let again = s.run(&["network", "disconnect", "back", "srv"]);
    assert_eq!(stderr(&again).trim(), format!("Error response from daemon: container {} is not connected to network back", srv["Id"].as_str().unwrap()));

    // A running peer's /etc/hosts follows a rename in place.
    s.ok(&["run", "-d", "--name", "peer", "--network", "front", "busybox", "sleep", "60"]);
    assert_eq!(s.ok(&["exec", "peer", "nc", "srv", "80"]), "hi\n");
    s.ok(&["rename", "srv", "srv2"]);
    assert_eq!(s.ok(&["exec", "peer", "nc", "srv2", "80"]), "hi\n");
    assert!(!s.ok(&["exec", "peer", "cat", "/etc/hosts"]).contains("\tsrv "));
    s.ok(&["rename", "srv2", "srv"]);
    s.ok(&["rm", "-f", "peer"]);

    // In use: refused; once the container is gone, removed and pruned.
    let rm = s.run(&["network", "rm", "front"]);
    assert_eq!(stderr(&rm).trim(), format!("Error response from daemon: error while removing network: network front id {id} has active endpoints"));
    assert_eq!(rm.status.code(), Some(1));
    let links = || {
        let o = std::process::Command::new("nsenter").arg(format!("--net={}", s.run_dir().join("netns").display())).args(["ip", "-o", "link"]).output().unwrap();
        stdout(&o)
    };
    let bridge = format!("br-{}", &id[..12]);
    assert!(links().contains(&bridge), "{}", links());
    s.ok(&["rm", "-f", "srv"]);
    assert_eq!(s.ok(&["network", "rm", "front"]), "front\n");
    // Its bridge went with it.
    assert!(!links().contains(&bridge), "{}", links());
    assert_eq!(s.ok(&["network", "prune", "-f"]), "Deleted Networks:\nback\n\n");

}

#[test]
fn bad_network_input_is_refused_with_dockers_words() {
    let s = setup();
    let e = |args: &[&str]| {
        let o = s.run(args);
        (stderr(&o), o.status.code())
    };
    for (spec, msg) in [
        ("99999:80", "invalid hostPort: 99999"),
        ("abc", "invalid containerPort: abc"),
        ("1.2.3:80:80", "invalid IP address: 1.2.3"),
        ("80-82:80-81", "invalid ranges specified for container and host Ports: 80-81 and 80-82"),
        ("80/sctpx", "invalid proto: sctpx"),
    ] {
        let (err, code) = e(&["run", "--rm", "-p", spec, "busybox", "true"]);
        assert_eq!(err, format!("strata: {msg}\n\nRun 'strata run --help' for more information\n"), "-p {spec}");
        assert_eq!(code, Some(125));
    }
    assert!(s.ok(&["ps", "-aq"]).is_empty(), "a bad spec creates nothing");

    let (err, code) = e(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert_eq!(err, "strata: Error response from daemon: network nosuch not found\n\nRun 'strata run --help' for more information\n");
    assert_eq!(code, Some(125));
    let (err, code) = e(&["run", "--rm", "--network", "container:nosuch", "busybox", "true"]);
    assert!(err.starts_with("strata: Error response from daemon: No such container: nosuch\n"), "{err}");
    assert_eq!(code, Some(125));
    let (err, _) = e(&["run", "--rm", "--network-alias", "x", "busybox", "true"]);
    assert!(err.contains("network-scoped alias is supported only for containers in user defined networks"), "{err}");

    // Ports in use: by another container (docker's allocator message), by another
    // program (the bind error); the container stays created, as docker's.
    let port = free_port();
    let spec = format!("{port}:80");
    s.ok(&["run", "-d", "--name", "holder", "-p", &spec, "busybox", "sleep", "60"]);
    let out = s.run(&["run", "-d", "--name", "second", "-p", &spec, "busybox", "sleep", "60"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.starts_with("strata: Error response from daemon: driver failed programming external connectivity on endpoint second ("), "{err}");
    assert!(err.contains(&format!("): Bind for 0.0.0.0:{port} failed: port is already allocated\n")), "{err}");
    assert_eq!(inspect(&s, "second")["State"]["Status"], "created");
    let foreign = TcpListener::bind("0.0.0.0:0").unwrap();
    let fport = foreign.local_addr().unwrap().port();
    let spec = format!("{fport}:80");
    let out = s.run(&["run", "--rm", "-p", &spec, "busybox", "true"]);
    assert!(stderr(&out).contains(&format!("Error starting userland proxy: listen tcp4 0.0.0.0:{fport}: bind: address already in use\n")), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(125));
    drop(foreign);
    // A privileged port is root's to bind, as with docker.
    let low = (100..1000).find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok()).unwrap();
    let spec = format!("{low}:80");
    s.ok(&["run", "-d", "--name", "low", "-p", &spec, "busybox", "nc", "-ll", "-p", "80", "-e", "cat"]);
    assert_eq!(exchange_retry(format!("127.0.0.1:{low}").parse().unwrap(), b"low"), b"low");

    s.ok(&["network", "create", "--subnet", "10.124.0.0/16", "n1"]);
    let (err, code) = e(&["network", "create", "--subnet", "10.124.5.0/24", "n2"]);
    assert_eq!(err, "Error response from daemon: Pool overlaps with other one on this address space\n");
    assert_eq!(code, Some(1));
    let (err, _) = e(&["network", "create", "n1"]);
    assert_eq!(err, "Error response from daemon: network with name n1 already exists\n");
    let (err, _) = e(&["network", "create", "--subnet", "bogus", "n3"]);
    assert_eq!(err, "Error response from daemon: Invalid subnet bogus : invalid CIDR address: bogus\n");
    let (err, _) = e(&["network", "create", "--subnet", "10.125.0.0/24", "--gateway", "10.126.0.1", "n3"]);
    assert_eq!(err, "no matching subnet for gateway 10.126.0.1\n");
    let (err, _) = e(&["network", "create", "-d", "nosuch", "n3"]);
    assert_eq!(err, "Error response from daemon: plugin \"nosuch\" not found\n");
    let (err, _) = e(&["network", "rm", "bridge"]);
    assert_eq!(err, "Error response from daemon: bridge is a pre-defined network and cannot be removed\n");
    let (err, _) = e(&["network", "create", "bridge"]);
    assert_eq!(err, "Error response from daemon: operation is not permitted on predefined bridge network\n");
    let (err, code) = e(&["network", "inspect", "nosuch"]);
    assert_eq!(err, "Error response from daemon: network nosuch not found\n");
    assert_eq!(code, Some(1));
    let (err, _) = e(&["network", "connect", "nosuch", "holder"]);
    assert_eq!(err, "Error response from daemon: network nosuch not found\n");
    let (err, _) = e(&["network", "rm", "nosuch"]);
    assert_eq!(err, "Error response from daemon: network nosuch not found\n");
    assert!(s.run(&["network", "rm", "-f", "nosuch"]).status.success());
}

/// The same commands against the reference docker: error texts and the JSON shapes.
#[test]
fn network_behaviour_matches_docker() {
    if !common::reference_docker() {
        eprintln!("skipped: reference docker not available (../shared/peers/setup.sh)");
        return;
    }
    let s = setup();
    let tail = |o: &std::process::Output| stderr(o).lines().next().unwrap_or("").replace("docker:", "").replace("strata:", "").trim().to_string();
    let _ = common::docker(&["network", "rm", "strata-difftest"]);
    for args in [
        vec!["network", "create", "--subnet", "10.131.0.0/24", "strata-difftest"],
        vec!["network", "create", "--subnet", "10.131.0.0/25", "strata-difftest2"],
        vec!["network", "rm", "bridge"],
        vec!["network", "create", "host"],
        vec!["network", "inspect", "strata-nosuch"],
    ] {
        let d = common::docker(&args);
        let o = s.run(&args);
        assert_eq!(o.status.code(), d.status.code(), "{args:?}");
        if !d.status.success() {
            assert_eq!(tail(&o), tail(&d), "{args:?}");
        }
    }
    for spec in ["99999:80", "abc", "1.2.3:80:80", "80-82:80-81"] {
        let d = common::docker(&["run", "--rm", "-p", spec, "busybox", "true"]);
        let o = s.run(&["run", "--rm", "-p", spec, "busybox", "true"]);
        assert_eq!(o.status.code(), d.status.code(), "-p {spec}");
        assert_eq!(tail(&o), tail(&d), "-p {spec}");
    }
    let keys = |v: &Value| {
        let mut k = v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        k.sort();
        k
    };
    let d: Value = serde_json::from_str(&common::docker_ok(&["network", "inspect", "strata-difftest"])).unwrap();
    let o: Value = serde_json::from_str(&s.ok(&["network", "inspect", "strata-difftest"])).unwrap();
    // docker 28 adds EnableIPv4 (API 1.47); the reference is 20.10.
    let mut ok = keys(&o[0]);
    ok.retain(|k| k != "EnableIPv4");
    assert_eq!(ok, keys(&d[0]));
    assert_eq!(o[0]["IPAM"], d[0]["IPAM"]);
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80/udp");
    let dc = common::docker_ok(&["run", "-d", "-p", &spec, "-p", "80", "--network", "strata-difftest", "busybox", "sleep", "30"]).trim().to_string();
    let dports = common::docker_ok(&["port", &dc]);
    let dj: Value = serde_json::from_str::<Value>(&common::docker_ok(&["inspect", &dc])).unwrap()[0].clone();
    common::docker(&["rm", "-f", &dc]);
    let oc = s.ok(&["run", "-d", "-p", &spec, "-p", "80", "--network", "strata-difftest", "busybox", "sleep", "30"]).trim().to_string();
    let oports = s.ok(&["port", &oc]);
    let oj = inspect(&s, &oc);
    let anon = |p: &str| p.lines().map(|l| l.rsplit_once(':').map(|(a, _)| a.to_string()).unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(anon(&oports), anon(&dports));
    let ns_keys = |v: &Value| keys(&v["NetworkSettings"]);
    assert_eq!(ns_keys(&oj), ns_keys(&dj));
    assert_eq!(oj["HostConfig"]["PortBindings"], dj["HostConfig"]["PortBindings"]);
    assert_eq!(oj["Config"]["ExposedPorts"], dj["Config"]["ExposedPorts"]);
    let net = |v: &Value| v["NetworkSettings"]["Networks"]["strata-difftest"].clone();
    assert_eq!(net(&oj)["IPAddress"], net(&dj)["IPAddress"]);
    assert_eq!(net(&oj)["Gateway"], net(&dj)["Gateway"]);
    assert_eq!(net(&oj)["MacAddress"], net(&dj)["MacAddress"]);
    s.ok(&["rm", "-f", &oc]);
    common::docker(&["network", "rm", "strata-difftest"]);
}
