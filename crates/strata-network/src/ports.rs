//! Port specs as the docker CLI parses them (`-p`, `--expose`; go-connections' `nat`),
//! and the bindings they become: `HostConfig.PortBindings` keyed `"80/tcp"`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One host side of a published port, as docker records it (`HostIp` empty for every
/// address, `HostPort` empty for "any free port", or a range `8000-8010` to pick from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    #[serde(rename = "HostIp", default)]
    pub host_ip: String,
    #[serde(rename = "HostPort", default)]
    pub host_port: String,
}

/// `HostConfig.PortBindings`: container port (`"80/tcp"`) → host bindings. Sorted as
/// Go sorts map keys when it prints JSON.
pub type PortMap = BTreeMap<String, Vec<PortBinding>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// `"80/tcp"` → (80, tcp); a missing protocol is tcp.
pub fn parse_port_key(key: &str) -> Option<(u16, Proto)> {
    let (num, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto {
        "tcp" | "" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return None,
    };
    Some((num.parse().ok()?, proto))
}

/// A port range `a` or `a-b` (u16 each, b ≥ a).
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    if s.is_empty() {
        return Err("empty string specified for ports".into());
    }
    let Some((a, b)) = s.split_once('-') else {
        let p = s.parse::<u16>().map_err(|e| e.to_string())?;
        return Ok((p, p));
    };
    let a = a.parse::<u16>().map_err(|e| e.to_string())?;
    let b = b.parse::<u16>().map_err(|e| e.to_string())?;
    if b < a {
        return Err(format!("invalid range specified for port: {s}"));
    }
    Ok((a, b))
}

/// go-connections' SplitProtoPort: `80/udp` → ("udp", "80"); no protocol is tcp.
fn split_proto(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return (String::new(), String::new());
    }
    if parts.len() == 1 || parts[1].is_empty() {
        return ("tcp".into(), parts[0].into());
    }
    (parts[1].into(), parts[0].into())
}

fn check_proto(p: &str) -> Result<(), String> {
    match p {
        "tcp" | "udp" | "sctp" => Ok(()),
        _ => Err(format!("invalid proto: {p}")),
    }
}

/// The docker CLI's long form `published=8080,target=80[,protocol=udp][,mode=host]`
/// in the short notation.
fn long_form(raw: &str) -> Result<String, String> {
    let (mut published, mut target, mut proto, mut ip) = (String::new(), String::new(), "tcp".to_string(), String::new());
    for field in raw.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| format!("invalid field {field}"))?;
        match k.to_ascii_lowercase().as_str() {
            "published" => published = v.to_string(),
            "target" => target = v.to_string(),
            "protocol" => proto = v.to_ascii_lowercase(),
            "mode" => {
                if v != "host" && v != "ingress" {
                    return Err(format!("invalid publish mode value ({v}); must be either \"ingress\" or \"host\""));
                }
            }
            "host_ip" => ip = v.to_string(),
            _ => return Err(format!("invalid field key {k}")),
        }
    }
    if target.is_empty() {
        return Err("missing mandatory field \"target\"".into());
    }
    let ip = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:"),
        _ if ip.is_empty() => String::new(),
        _ => format!("{ip}:"),
    };
    Ok(format!("{ip}{published}:{target}/{proto}"))
}

/// One `-p` value → (container port key, binding) per port, as the docker CLI sends
/// them. Errors are the CLI's texts.
pub fn parse_publish(raw: &str) -> Result<Vec<(String, PortBinding)>, String> {
    let short;
    let raw = if raw.contains('=') {
        short = long_form(raw)?;
        short.as_str()
    } else {
        raw
    };
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (mut ip, host_port, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        3 => (parts[0].to_string(), parts[1], parts[2]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (proto, container) = split_proto(container);
    if let Some(inner) = ip.strip_prefix('[') {
        ip = inner.strip_suffix(']').ok_or_else(|| format!("invalid IP address {ip}: missing ']' in address"))?.to_string();
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) = parse_range(&container).map_err(|_| format!("invalid containerPort: {container}"))?;
    let (hstart, hend) = if host_port.is_empty() { (0, 0) } else { parse_range(host_port).map_err(|_| format!("invalid hostPort: {host_port}"))? };
    if !host_port.is_empty() && (end - start) != (hend - hstart) && end != start {
        return Err(format!("invalid ranges specified for container and host Ports: {container} and {host_port}"));
    }
    let proto = proto.to_ascii_lowercase();
    check_proto(&proto)?;
    let count = u32::from(end - start) + 1;
    Ok((0..count)
        .map(|i| {
            let key = format!("{}/{proto}", u32::from(start) + i);
            let mut hp = String::new();
            if !host_port.is_empty() {
                hp = (u32::from(hstart) + i).to_string();
                // A single container port and a host range: any free port of the range.
                if count == 1 && hstart != hend {
                    hp = format!("{hp}-{hend}");
                }
            }
            (key, PortBinding { host_ip: ip.clone(), host_port: hp })
        })
        .collect())
}

/// One `--expose` value → port keys.
pub fn parse_expose(raw: &str) -> Result<Vec<String>, String> {
    let (proto, port) = split_proto(raw);
    let (start, end) = parse_range(&port).map_err(|e| format!("invalid range format for --expose: {raw}, error: {e}"))?;
    check_proto(&proto)?;
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Every `-p` value into one map, as the CLI builds `PortBindings` (bindings of one
/// port accumulate in order).
pub fn parse_publish_all(specs: &[String]) -> Result<PortMap, String> {
    let mut map = PortMap::new();
    for s in specs {
        for (k, b) in parse_publish(s)? {
            map.entry(k).or_default().push(b);
        }
    }
    Ok(map)
}

/// A published port made concrete at start: one listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl Published {
    /// `0.0.0.0:8080->80/tcp`, or `[::]:8080->80/tcp`, as docker 28 lists it.
    pub fn display(&self) -> String {
        format!("{}->{}/{}", host_addr(&self.host_ip, self.host_port), self.container_port, self.proto.as_str())
    }
}

/// `0.0.0.0:8080`, `[::]:8080`.
pub fn host_addr(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Vec<(String, String, String)> {
        parse_publish(s).unwrap().into_iter().map(|(k, b)| (k, b.host_ip, b.host_port)).collect()
    }

    #[test]
    fn short_forms() {
        assert_eq!(one("80"), [("80/tcp".into(), "".into(), "".into())]);
        assert_eq!(one("8080:80"), [("80/tcp".into(), "".into(), "8080".into())]);
        assert_eq!(one("127.0.0.1:8080:80/udp"), [("80/udp".into(), "127.0.0.1".into(), "8080".into())]);
        assert_eq!(one("127.0.0.1::80"), [("80/tcp".into(), "127.0.0.1".into(), "".into())]);
        assert_eq!(one("[::1]:8080:80"), [("80/tcp".into(), "::1".into(), "8080".into())]);
        assert_eq!(one("::1:8080:80"), [("80/tcp".into(), "::1".into(), "8080".into())]);
        assert_eq!(one("8000-8001:80-81").len(), 2);
        assert_eq!(one("8000-8001:80-81")[1], ("81/tcp".into(), "".into(), "8001".into()));
        assert_eq!(one("8000-8010:80"), [("80/tcp".into(), "".into(), "8000-8010".into())]);
        assert_eq!(one("published=8080,target=80,protocol=udp"), [("80/udp".into(), "".into(), "8080".into())]);
        assert_eq!(one("80/TCP"), [("80/tcp".into(), "".into(), "".into())]);
    }

    #[test]
    fn errors_are_the_clis() {
        let e = |s: &str| parse_publish(s).unwrap_err();
        assert_eq!(e("99999:80"), "invalid hostPort: 99999");
        assert_eq!(e("abc"), "invalid containerPort: abc");
        assert_eq!(e("80:abc"), "invalid containerPort: abc");
        assert_eq!(e("1.2.3:80:80"), "invalid IP address: 1.2.3");
        assert_eq!(e("80-82:80-81"), "invalid ranges specified for container and host Ports: 80-81 and 80-82");
        assert_eq!(e("80/xyz"), "invalid proto: xyz");
        assert_eq!(e("8080:"), "no port specified: 8080:<empty>");
        assert_eq!(e("81-80"), "invalid containerPort: 81-80");
    }

    #[test]
    fn expose() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("7000-7001/udp").unwrap(), ["7000/udp", "7001/udp"]);
        assert!(parse_expose("x").unwrap_err().starts_with("invalid range format for --expose: x, error: "));
    }

    #[test]
    fn keys_sort_as_go_maps() {
        let m = parse_publish_all(&["80:80".into(), "1000:1000".into(), "81:80".into()]).unwrap();
        let keys: Vec<&String> = m.keys().collect();
        assert_eq!(keys, ["1000/tcp", "80/tcp"]);
        assert_eq!(m["80/tcp"].len(), 2);
        assert_eq!(parse_port_key("53/udp"), Some((53, Proto::Udp)));
    }
}
