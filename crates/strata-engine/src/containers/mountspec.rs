//! Mount specifications as docker parses them: `-v` (client and daemon halves),
//! `--mount` and `--tmpfs`, with docker's error texts. Pure parsing: nothing here
//! touches the filesystem; planning and seeding use the results.

use std::path::{Component, Path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// One parsed mount, whatever flag it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountSpec {
    pub typ: Option<MountType>,
    /// Host path for a bind, volume name for a volume (empty: anonymous).
    pub source: String,
    /// Cleaned absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    /// The `-v` mode string as given (docker keeps it for inspect's `Mode`).
    pub mode: String,
    pub propagation: String,
    pub nocopy: bool,
    pub volume_labels: Vec<(String, String)>,
    pub volume_driver: String,
    pub volume_options: Vec<(String, String)>,
    pub volume_subpath: String,
    pub tmpfs_size: Option<i64>,
    pub tmpfs_mode: Option<u32>,
}

/// What `-v` becomes on the client: an anonymous volume (`Config.Volumes`) or a
/// `HostConfig.Binds` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeFlag {
    Anonymous(String),
    Bind(String),
}

/// Client half of `-v` (docker's volumespec): shape errors, `./` sources made absolute.
pub fn parse_volume_flag(raw: &str, cwd: &Path) -> Result<VolumeFlag, String> {
    if raw.is_empty() {
        return Err("invalid empty volume spec".into());
    }
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("invalid spec: {raw}: empty section between colons"));
    }
    match parts.len() {
        1 => Ok(VolumeFlag::Anonymous(raw.to_string())),
        2 | 3 => {
            if parts.len() == 2 && valid_mode(parts[1]) {
                // `/foo:rw` goes to the daemon as a bind entry, and the daemon rejects it.
                return Ok(VolumeFlag::Bind(raw.to_string()));
            }
            let src = parts[0];
            if src.starts_with('.') {
                let abs = clean(&cwd.join(src));
                let mut s = abs;
                for p in &parts[1..] {
                    s.push(':');
                    s.push_str(p);
                }
                return Ok(VolumeFlag::Bind(s));
            }
            Ok(VolumeFlag::Bind(raw.to_string()))
        }
        _ => Err(format!("invalid spec: {raw}: too many colons")),
    }
}

/// Daemon half of `-v` (`ParseMountRaw`): a `HostConfig.Binds` entry.
pub fn parse_bind(raw: &str) -> Result<MountSpec, String> {
    let bad = || format!("invalid volume specification: '{raw}'");
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts.is_empty() || parts[0].is_empty() {
        return Err(bad());
    }
    let (src, dst, mode) = match parts.len() {
        1 => ("", parts[0], ""),
        2 if valid_mode(parts[1]) => return Err(bad()),
        2 => (parts[0], parts[1], ""),
        3 => (parts[0], parts[1], parts[2]),
        _ => return Err(bad()),
    };
    if !mode.is_empty() && !valid_mode(mode) {
        return Err(format!("invalid mode: {mode}"));
    }
    let typ = if src.starts_with('/') { MountType::Bind } else { MountType::Volume };
    let modes: Vec<&str> = if mode.is_empty() { vec![] } else { mode.split(',').collect() };
    let detail = |reason: String| format!("{}: invalid mount config for type \"{}\": {reason}", bad(), typ.as_str());
    let destination = check_target(dst).map_err(detail)?;
    let propagation = modes.iter().find(|m| is_propagation(m)).map(|m| m.to_string()).unwrap_or_default();
    let nocopy = modes.contains(&"nocopy");
    if typ == MountType::Volume && !propagation.is_empty() {
        return Err(detail("field BindOptions must not be specified".into()));
    }
    if typ == MountType::Bind && nocopy {
        return Err(detail("field VolumeOptions must not be specified".into()));
    }
    Ok(MountSpec {
        typ: Some(typ),
        source: if typ == MountType::Bind { clean(Path::new(src)) } else { src.to_string() },
        destination,
        read_only: modes.contains(&"ro"),
        mode: mode.to_string(),
        propagation: if typ == MountType::Bind && propagation.is_empty() { "rprivate".into() } else { propagation },
        nocopy,
        ..Default::default()
    })
}

/// `--mount type=…,source=…,target=…` (docker's CSV syntax). Errors are the text after
/// `invalid argument "<v>" for "--mount" flag: `.
pub fn parse_mount_flag(value: &str, cwd: &Path) -> Result<MountSpec, String> {
    let mut m = MountSpec::default();
    let mut typ: Option<String> = None;
    let mut volume_opts = false;
    let mut bind_opts = false;
    let mut tmpfs_opts = false;
    let mut bind_readonly_recursive = false;
    for field in value.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let flag = |v: Option<&str>| -> Result<bool, String> {
            match v {
                None => Ok(true),
                Some("true" | "1") => Ok(true),
                Some("false" | "0") => Ok(false),
                Some(x) => Err(format!("invalid value for {k}: {x}")),
            }
        };
        let need = |v: Option<&str>| v.map(str::to_string).ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match k.as_str() {
            "readonly" | "ro" => m.read_only = flag(v)?,
            "volume-nocopy" => {
                m.nocopy = flag(v)?;
                volume_opts = true;
            }
            "bind-nonrecursive" => bind_opts = true,
            "type" => typ = Some(need(v)?),
            "source" | "src" => {
                let s = need(v)?;
                m.source = if s.starts_with('.') { clean(&cwd.join(&s)) } else { s };
            }
            "target" | "dst" | "destination" => m.destination = need(v)?,
            "consistency" => {
                need(v)?;
            }
            "bind-propagation" => {
                m.propagation = need(v)?;
                bind_opts = true;
            }
            "bind-recursive" => {
                let r = need(v)?;
                if !matches!(r.as_str(), "enabled" | "disabled" | "writable" | "readonly") {
                    return Err(format!("invalid value for {k}: {r}"));
                }
                bind_readonly_recursive = r == "readonly";
                bind_opts = true;
            }
            "volume-label" => {
                let kv = need(v)?;
                let (a, b) = kv.split_once('=').unwrap_or((&kv, ""));
                m.volume_labels.push((a.to_string(), b.to_string()));
                volume_opts = true;
            }
            "volume-driver" => {
                m.volume_driver = need(v)?;
                volume_opts = true;
            }
            "volume-opt" => {
                let kv = need(v)?;
                let (a, b) = kv.split_once('=').ok_or_else(|| format!("invalid value for {k}: {kv}"))?;
                m.volume_options.push((a.to_string(), b.to_string()));
                volume_opts = true;
            }
            "volume-subpath" => {
                m.volume_subpath = need(v)?;
                volume_opts = true;
            }
            "tmpfs-size" => {
                let s = need(v)?;
                m.tmpfs_size = Some(ram_in_bytes(&s).ok_or_else(|| format!("invalid value for {k}: {s}"))?);
                tmpfs_opts = true;
            }
            "tmpfs-mode" => {
                let s = need(v)?;
                m.tmpfs_mode = Some(u32::from_str_radix(&s, 8).map_err(|_| format!("invalid value for {k}: {s}"))?);
                tmpfs_opts = true;
            }
            _ => return Err(format!("unexpected key '{k}' in '{field}'")),
        }
    }
    let typ = match typ.as_deref().unwrap_or("volume") {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        "" => return Err("type is required".into()),
        other => return Err(format!("invalid mount config for type \"{other}\": mount type unknown")),
    };
    if m.destination.is_empty() {
        return Err("target is required".into());
    }
    for (set, prefix) in [(volume_opts, "volume"), (bind_opts, "bind"), (tmpfs_opts, "tmpfs")] {
        if set && prefix != typ.as_str() {
            return Err(format!("cannot mix '{prefix}-*' options with mount type '{}'", typ.as_str()));
        }
    }
    if bind_readonly_recursive && !m.read_only {
        return Err("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction".into());
    }
    m.typ = Some(typ);
    validate_mount(&mut m)?;
    Ok(m)
}

/// The daemon's check of a `--mount` (docker's `validateMountConfigImpl`).
fn validate_mount(m: &mut MountSpec) -> Result<(), String> {
    let typ = m.typ.expect("typed");
    let err = |r: &str| format!("invalid mount config for type \"{}\": {r}", typ.as_str());
    m.destination = check_target(&m.destination).map_err(|r| err(&r))?;
    match typ {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(err("field Source must not be empty"));
            }
            if !m.propagation.is_empty() && !is_propagation(&m.propagation) {
                return Err(err(&format!("invalid propagation mode: {}", m.propagation)));
            }
            if m.propagation.is_empty() {
                m.propagation = "rprivate".into();
            }
        }
        MountType::Volume => {
            if m.source.is_empty() {
                if !m.volume_subpath.is_empty() {
                    return Err(err("must not set Subpath when using anonymous volumes"));
                }
                if m.read_only {
                    return Err(err("must not set ReadOnly mode when using anonymous volumes"));
                }
            }
            if !m.volume_subpath.is_empty() {
                let p = Path::new(&m.volume_subpath);
                if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(err("subpath must be a relative path within the volume"));
                }
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(err("field Source must not be specified"));
            }
        }
    }
    Ok(())
}

/// `--tmpfs /run[:opts]` → (destination, options).
pub fn parse_tmpfs(value: &str) -> Result<(String, String), String> {
    let (dst, opts) = value.split_once(':').unwrap_or((value, ""));
    let dst = check_target(dst).map_err(|r| format!("invalid mount config for type \"tmpfs\": {r}"))?;
    Ok((dst, opts.to_string()))
}

fn check_target(dst: &str) -> Result<String, String> {
    if dst.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if !dst.starts_with('/') {
        return Err(format!("invalid mount path: '{dst}' mount path must be absolute"));
    }
    let c = clean(Path::new(dst));
    if c == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    Ok(c)
}

/// `path.Clean` for absolute paths: `..` cannot climb above `/`.
pub fn clean(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    let joined = format!("/{}", out.join("/"));
    if p.is_absolute() {
        joined
    } else {
        joined[1..].to_string()
    }
}

fn is_propagation(m: &str) -> bool {
    matches!(m, "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave")
}

/// docker's `linuxValidMountMode`: a comma list with at most one of each class.
pub fn valid_mode(mode: &str) -> bool {
    let mut seen = [0u8; 5];
    for m in mode.split(',') {
        let class = match m {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        seen[class] += 1;
        if seen[class] > 1 {
            return false;
        }
    }
    true
}

/// docker's `units.RAMInBytes`: `512m`, `1g`, `6MB` (binary multiples).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as i64)
}

/// A mount destination must be unique across binds, mounts and `--tmpfs`.
pub fn check_duplicates<'a>(dests: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for d in dests {
        if !seen.insert(d) {
            return Err(format!("Duplicate mount point: {d}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_client_half() {
        let cwd = Path::new("/work");
        assert_eq!(parse_volume_flag("/data", cwd), Ok(VolumeFlag::Anonymous("/data".into())));
        assert_eq!(parse_volume_flag("vol:/data:ro", cwd), Ok(VolumeFlag::Bind("vol:/data:ro".into())));
        assert_eq!(parse_volume_flag("./d:/x", cwd), Ok(VolumeFlag::Bind("/work/d:/x".into())));
        assert_eq!(parse_volume_flag("", cwd).unwrap_err(), "invalid empty volume spec");
        assert_eq!(parse_volume_flag(":/x", cwd).unwrap_err(), "invalid spec: :/x: empty section between colons");
        assert_eq!(parse_volume_flag("a:/b:ro:x", cwd).unwrap_err(), "invalid spec: a:/b:ro:x: too many colons");
    }

    #[test]
    fn binds_like_the_daemon() {
        let b = parse_bind("/host/dir/:/data/:ro").unwrap();
        assert_eq!((b.typ, b.source.as_str(), b.destination.as_str(), b.read_only, b.propagation.as_str()), (Some(MountType::Bind), "/host/dir", "/data", true, "rprivate"));
        let v = parse_bind("myvol:/data:nocopy").unwrap();
        assert_eq!((v.typ, v.source.as_str(), v.nocopy, v.propagation.as_str()), (Some(MountType::Volume), "myvol", true, ""));
        assert_eq!(parse_bind("/foo:rw").unwrap_err(), "invalid volume specification: '/foo:rw'");
        assert_eq!(parse_bind("a:/b:copy").unwrap_err(), "invalid mode: copy");
        assert_eq!(parse_bind("a:/b:ro,rw").unwrap_err(), "invalid mode: ro,rw");
        assert_eq!(
            parse_bind("v:rel").unwrap_err(),
            "invalid volume specification: 'v:rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            parse_bind("/h:/").unwrap_err(),
            "invalid volume specification: '/h:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert!(parse_bind("foo:/test:shared").unwrap_err().ends_with("field BindOptions must not be specified"));
        assert!(parse_bind("/h:/c:nocopy").unwrap_err().ends_with("field VolumeOptions must not be specified"));
        assert!(parse_bind("/:/host").is_ok());
        assert!(parse_bind("a:b:c:d").is_err());
    }

    #[test]
    fn mount_flag_like_docker() {
        let cwd = Path::new("/w");
        let m = parse_mount_flag("type=bind,source=./x,target=/y/,readonly,bind-propagation=rslave", cwd).unwrap();
        assert_eq!((m.source.as_str(), m.destination.as_str(), m.read_only, m.propagation.as_str()), ("/w/x", "/y", true, "rslave"));
        let m = parse_mount_flag("src=vol,dst=/d,volume-nocopy,volume-opt=type=tmpfs,volume-label=a=b", cwd).unwrap();
        assert_eq!(m.typ, Some(MountType::Volume));
        assert_eq!(m.volume_options, [("type".to_string(), "tmpfs".to_string())]);
        let t = parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770", cwd).unwrap();
        assert_eq!((t.tmpfs_size, t.tmpfs_mode), (Some(64 << 20), Some(0o1770)));
        for (v, e) in [
            ("type=bind,source=/x", "target is required"),
            ("type=bind,target=/x,volume-nocopy", "cannot mix 'volume-*' options with mount type 'bind'"),
            ("type=volume,target=/x,readonly", "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"),
            ("type=bind,target=/x", "invalid mount config for type \"bind\": field Source must not be empty"),
            ("type=tmpfs,source=a,target=/x", "invalid mount config for type \"tmpfs\": field Source must not be specified"),
            ("type=foo,target=/x", "invalid mount config for type \"foo\": mount type unknown"),
            ("type=bind,src=/a,target=rel", "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
            ("bogus=1,target=/x", "unexpected key 'bogus' in 'bogus=1'"),
            ("target", "invalid field 'target' must be a key=value pair"),
            ("type=bind,src=/a,target=/b,bind-recursive=readonly", "option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction"),
            ("src=v,target=/x,volume-subpath=../up", "invalid mount config for type \"volume\": subpath must be a relative path within the volume"),
            ("type=bind,src=/a,target=/b,bind-propagation=weird", "invalid mount config for type \"bind\": invalid propagation mode: weird"),
        ] {
            assert_eq!(parse_mount_flag(v, cwd).unwrap_err(), e, "{v}");
        }
    }

    #[test]
    fn tmpfs_and_duplicates() {
        assert_eq!(parse_tmpfs("/run:size=64m,exec").unwrap(), ("/run".into(), "size=64m,exec".into()));
        assert!(parse_tmpfs("run").is_err());
        assert_eq!(check_duplicates(["/a", "/b", "/a"]).unwrap_err(), "Duplicate mount point: /a");
        assert_eq!(clean(Path::new("/a/../../b/./c/")), "/b/c");
    }
}
