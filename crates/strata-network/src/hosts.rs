//! A container's /etc/hosts: docker's base lines, the container's own addresses, and —
//! on user networks, where docker would answer from its embedded DNS — one line per
//! other container of the network (name, aliases, short id).
//!
//! The file is bind-mounted into the container, so it is changed in place (same inode),
//! under an flock on the file, rewriting the whole content at once; only lines strata
//! wrote are removed, whatever the container appended stays.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

pub const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// `ip\tname1 name2`.
pub fn entry(ip: &str, names: &[String]) -> String {
    format!("{ip}\t{}", names.join(" "))
}

/// Applies `f` to the file's lines in place.
fn edit(path: &Path, f: impl FnOnce(&mut Vec<String>)) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    flock(&file, FlockOperation::LockExclusive)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let before = lines.clone();
    f(&mut lines);
    if lines == before {
        return Ok(());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    file.seek(io::SeekFrom::Start(0))?;
    file.write_all(out.as_bytes())?;
    file.set_len(out.len() as u64)?;
    Ok(())
}

/// Appends the lines not already there.
pub fn add(path: &Path, entries: &[String]) -> io::Result<()> {
    edit(path, |lines| {
        for e in entries {
            if !lines.contains(e) {
                lines.push(e.clone());
            }
        }
    })
}

/// Removes exactly these lines.
pub fn remove(path: &Path, entries: &[String]) -> io::Result<()> {
    edit(path, |lines| lines.retain(|l| !entries.contains(l)))
}

/// Replaces the whole content (at start: the base, own and peer lines).
pub fn reset(path: &Path, entries: &[String]) -> io::Result<()> {
    edit(path, |lines| {
        *lines = BASE.lines().map(str::to_string).collect();
        lines.extend(entries.iter().cloned());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn edits_in_place_and_keeps_foreign_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        std::fs::write(&p, BASE).unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        let own = entry("10.1.0.2", &["abc".into()]);
        let peer = entry("10.1.0.3", &["db".into(), "database".into(), "0123456789ab".into()]);
        reset(&p, std::slice::from_ref(&own)).unwrap();
        add(&p, std::slice::from_ref(&peer)).unwrap();
        add(&p, std::slice::from_ref(&peer)).unwrap();
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"1.2.3.4\tmine\n").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{BASE}{own}\n{peer}\n1.2.3.4\tmine\n"));
        remove(&p, &[peer]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{BASE}{own}\n1.2.3.4\tmine\n"));
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
    }
}
