//! Lookups inside a container's root: users and groups (its own /etc/passwd and
//! /etc/group) and the command (its PATH). Every path is resolved by the kernel inside
//! the root (`openat2` with RESOLVE_IN_ROOT), never on the host.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::OFlags;
use strata_store::fsutil::open_in_root as open_in;

fn read_in(root: &Path, rel: &str) -> String {
    let mut s = String::new();
    if let Ok(mut f) = open_in(root, rel, OFlags::RDONLY) {
        let _ = f.by_ref().take(16 << 20).read_to_string(&mut s);
    }
    s
}

/// `user[:group]` (names or numbers) → uid, gid, supplementary gids, home.
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>, String), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in(root, "/etc/passwd");
    let entries: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 7).collect();
    let (uid, mut gid, home, uname) = if user.is_empty() {
        let e = entries.iter().find(|f| f[2] == "0");
        (0, 0, e.map(|f| f[5].to_string()).unwrap_or_else(|| "/root".into()), e.map(|f| f[0].to_string()).unwrap_or_else(|| "root".into()))
    } else if let Ok(n) = user.parse::<u32>() {
        match entries.iter().find(|f| f[2] == user) {
            Some(f) => (n, f[3].parse().unwrap_or(0), f[5].to_string(), f[0].to_string()),
            None => (n, 0, "/".into(), String::new()),
        }
    } else {
        let f = entries.iter().find(|f| f[0] == user).ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?;
        (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0), f[5].to_string(), f[0].to_string())
    };
    let groups = read_in(root, "/etc/group");
    let gentries: Vec<Vec<&str>> = groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 4).collect();
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gentries
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        };
    }
    // As docker: the primary group is always among the supplementary ones.
    let mut extra: Vec<u32> = gentries
        .iter()
        .filter(|f| !uname.is_empty() && f[3].split(',').any(|m| m == uname))
        .filter_map(|f| f[2].parse().ok())
        .filter(|g| *g != gid)
        .collect();
    extra.sort_unstable();
    extra.dedup();
    extra.insert(0, gid);
    Ok((uid, gid, extra, home))
}

/// Finds the command as the container's exec would: a path with a slash is used as
/// given (relative to the working directory), a bare name is searched in PATH. Errors
/// carry docker's exit code: 127 not found, 126 cannot be run.
pub fn lookup_command(root: &Path, argv0: &str, path: &str, cwd: &str) -> Result<String, (i32, String)> {
    let check = |p: &str| -> Result<(), (i32, String)> {
        let f = open_in(root, p, OFlags::PATH).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ENOTDIR) {
                (127, format!("stat {p}: no such file or directory"))
            } else {
                (126, e.to_string())
            }
        })?;
        let md = f.metadata().map_err(|e| (126, e.to_string()))?;
        if md.is_dir() {
            return Err((126, "is a directory".into()));
        }
        if md.permissions().mode() & 0o111 == 0 {
            return Err((126, "permission denied".into()));
        }
        Ok(())
    };
    if argv0.contains('/') {
        let p = if argv0.starts_with('/') { argv0.to_string() } else { format!("{}/{argv0}", cwd.trim_end_matches('/')) };
        check(&p)?;
        return Ok(p);
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = format!("{}/{argv0}", dir.trim_end_matches('/'));
        if check(&p).is_ok() {
            return Ok(p);
        }
    }
    Err((127, "executable file not found in $PATH".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_commands_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\napp:x:1001:\nextra:x:2000:app\n").unwrap();
        std::fs::write(r.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(r.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(r.join("bin/data"), "x").unwrap();
        // A symlink to a host executable resolves inside the root, where it is missing.
        std::os::unix::fs::symlink("/usr/bin/env", r.join("bin/evil")).unwrap();

        assert_eq!(resolve_user(r, "").unwrap(), (0, 0, vec![0], "/root".into()));
        assert_eq!(resolve_user(r, "app").unwrap(), (1000, 1001, vec![1001, 2000], "/home/app".into()));
        assert_eq!(resolve_user(r, "app:root").unwrap().1, 0);
        assert_eq!(resolve_user(r, "4242:4343").unwrap(), (4242, 4343, vec![4343], "/".into()));
        assert!(resolve_user(r, "nobody").unwrap_err().contains("unable to find user nobody"));

        assert_eq!(lookup_command(r, "tool", "/usr/bin:/bin", "/").unwrap(), "/bin/tool");
        assert_eq!(lookup_command(r, "nope", "/bin", "/").unwrap_err().0, 127);
        assert_eq!(lookup_command(r, "/bin", "/bin", "/").unwrap_err(), (126, "is a directory".into()));
        assert_eq!(lookup_command(r, "/bin/data", "/bin", "/").unwrap_err(), (126, "permission denied".into()));
        assert_eq!(lookup_command(r, "/bin/evil", "/bin", "/").unwrap_err().0, 127);
        assert_eq!(lookup_command(r, "evil", "/bin", "/").unwrap_err().0, 127);
        assert_eq!(lookup_command(r, "/missing", "/bin", "/").unwrap_err().0, 127);
    }
}
