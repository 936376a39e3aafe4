//! Ports as the docker CLI prints them: `ps`'s PORTS column (DisplayablePorts, which
//! groups consecutive ports) and the natural sort order of `docker port`.

use std::cmp::Ordering;

use strata_engine::containers::network::ApiPort;

/// `host:port` with IPv6 in brackets (Go's net.JoinHostPort).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn form_group(key: &str, first: u16, last: u16) -> String {
    // `tcp`, or `IP/tcp` for ports published on the same host port.
    let (ip, typ) = key.split_once('/').unwrap_or(("", key));
    let mut group = first.to_string();
    if first != last {
        group = format!("{group}-{last}");
    }
    if !ip.is_empty() {
        group = format!("{}->{group}", join_host_port(ip, &group));
    }
    format!("{group}/{typ}")
}

/// The PORTS column: `0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp`.
pub fn display_ports(ports: &[ApiPort]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_by(|a, b| a.private_port.cmp(&b.private_port).then_with(|| a.ip.cmp(&b.ip)).then_with(|| a.public_port.cmp(&b.public_port)).then_with(|| a.proto.cmp(&b.proto)));
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in &ports {
        let current = p.private_port;
        let mut key = p.proto.clone();
        if !p.ip.is_empty() {
            if p.public_port != current {
                host_mappings.push(format!("{}->{}/{}", join_host_port(&p.ip, &p.public_port.to_string()), p.private_port, p.proto));
                continue;
            }
            key = format!("{}/{}", p.ip, p.proto);
        }
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            None => groups.push((key, current, current)),
            Some(g) if current == g.2 + 1 => g.2 = current,
            Some(g) => {
                result.push(form_group(&g.0, g.1, g.2));
                g.1 = current;
                g.2 = current;
            }
        }
    }
    for (k, first, last) in &groups {
        result.push(form_group(k, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// Natural order (runs of digits compare as numbers), as `docker port` sorts its lines.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
            let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
            let (dx, dy) = (std::str::from_utf8(&x[..nx]).unwrap_or("0"), std::str::from_utf8(&y[..ny]).unwrap_or("0"));
            let (tx, ty) = (dx.trim_start_matches('0'), dy.trim_start_matches('0'));
            let o = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
            if o != Ordering::Equal {
                return o;
            }
            x = &x[nx..];
            y = &y[ny..];
        } else {
            if x[0] != y[0] {
                return x[0].cmp(&y[0]);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ip: &str, private: u16, public: u16, proto: &str) -> ApiPort {
        ApiPort { ip: ip.into(), private_port: private, public_port: public, proto: proto.into() }
    }

    #[test]
    fn as_the_docker_cli_prints_them() {
        let ports = [p("0.0.0.0", 80, 18080, "tcp"), p("::", 80, 18080, "tcp"), p("127.0.0.1", 81, 18081, "udp")];
        assert_eq!(display_ports(&ports), "0.0.0.0:18080->80/tcp, [::]:18080->80/tcp, 127.0.0.1:18081->81/udp");
        assert_eq!(display_ports(&[p("", 443, 0, "tcp"), p("", 80, 0, "tcp")]), "80/tcp, 443/tcp");
        let range = [p("0.0.0.0", 8000, 8000, "tcp"), p("0.0.0.0", 8001, 8001, "tcp"), p("0.0.0.0", 8002, 8002, "tcp")];
        assert_eq!(display_ports(&range), "0.0.0.0:8000-8002->8000-8002/tcp");
        assert_eq!(display_ports(&[p("", 53, 0, "udp"), p("", 54, 0, "udp"), p("", 60, 0, "udp")]), "53-54/udp, 60/udp");
        assert_eq!(display_ports(&[]), "");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["80/tcp -> 0.0.0.0:9", "8080/tcp -> 0.0.0.0:1", "443/tcp -> 0.0.0.0:10", "80/tcp -> 0.0.0.0:10"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["80/tcp -> 0.0.0.0:9", "80/tcp -> 0.0.0.0:10", "443/tcp -> 0.0.0.0:10", "8080/tcp -> 0.0.0.0:1"]);
    }
}
