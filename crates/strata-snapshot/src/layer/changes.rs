//! `docker diff`: what an overlay upper dir changes relative to its lower dirs.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::sys::{file_type, is_opaque, is_whiteout, lstatx, read_dir_sorted};
use super::LayerError;

/// docker diff's `A` / `C` / `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute inside the container: `/etc/passwd`.
    pub path: String,
}

/// Changes of an overlay upper dir against its lower dirs (topmost first), sorted
/// by path.
///
/// A path counts as existing below when the first lower that has it (or a whiteout
/// for it) has it as something other than a whiteout, where a whiteout, a
/// non-directory or an opaque directory on the way down hides the lowers beneath,
/// as overlayfs resolves it.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, LayerError> {
    let mut out = Vec::new();
    let mut stack =
        vec![Frame { host: upper.to_path_buf(), rel: Vec::new(), names: children(upper)?, all_added: false }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.pop() else {
            stack.pop();
            continue;
        };
        let host = top.host.join(&name);
        let all_added = top.all_added;
        let mut rel = top.rel.clone();
        rel.push(name);
        let st = match lstatx(&host) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LayerError::io("stat", &host)(e)),
        };
        let path = container_path(&rel);
        if is_whiteout(&st) {
            // Inside a new or opaque directory there is nothing below to delete.
            if !all_added {
                out.push(Change { kind: ChangeKind::Deleted, path });
            }
            continue;
        }
        if file_type(&st) == FileType::Directory {
            let (kind, children_added) = if all_added {
                (ChangeKind::Added, true)
            } else {
                let opaque = is_opaque(&host).map_err(LayerError::io("read xattrs of", &host))?;
                match (lookup_below(lowers, &rel)?, opaque) {
                    (None, _) => (ChangeKind::Added, true),
                    (Some(_), true) => (ChangeKind::Modified, true),
                    (Some(FileType::Directory), false) => (ChangeKind::Modified, false),
                    // A directory over a lower file: nothing of it existed below.
                    (Some(_), false) => (ChangeKind::Modified, true),
                }
            };
            out.push(Change { kind, path });
            let names = children(&host)?;
            stack.push(Frame { host, rel, names, all_added: children_added });
        } else {
            let kind = if !all_added && lookup_below(lowers, &rel)?.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            out.push(Change { kind, path });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

struct Frame {
    host: PathBuf,
    rel: Vec<OsString>,
    /// Sorted descending, so popping yields them in order.
    names: Vec<OsString>,
    /// Set below a directory that is new or opaque: nothing under it exists below.
    all_added: bool,
}

fn children(dir: &Path) -> Result<Vec<OsString>, LayerError> {
    let mut names = read_dir_sorted(dir).map_err(LayerError::io("read directory", dir))?;
    names.reverse();
    Ok(names)
}

fn container_path(rel: &[OsString]) -> String {
    let mut path = String::new();
    for c in rel {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(c.as_bytes()));
    }
    path
}

/// The type `rel` has in the merged view of `lowers`, if it exists there.
fn lookup_below(lowers: &[PathBuf], rel: &[OsString]) -> Result<Option<FileType>, LayerError> {
    'layers: for lower in lowers {
        let mut path = lower.clone();
        let mut opaque_above = false;
        for (i, c) in rel.iter().enumerate() {
            path.push(c);
            let st = match lstatx(&path) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                    if opaque_above {
                        return Ok(None);
                    }
                    continue 'layers;
                }
                Err(e) => return Err(LayerError::io("stat", &path)(e)),
            };
            if is_whiteout(&st) {
                return Ok(None);
            }
            if i + 1 == rel.len() {
                return Ok(Some(file_type(&st)));
            }
            if file_type(&st) != FileType::Directory {
                return Ok(None);
            }
            if is_opaque(&path).map_err(LayerError::io("read xattrs of", &path))? {
                opaque_above = true;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::testutil::{mkdir, mknod_whiteout, scratch, set_opaque};
    use std::fs;

    fn render(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Added => 'A',
                    ChangeKind::Modified => 'C',
                    ChangeKind::Deleted => 'D',
                };
                format!("{k} {}", c.path)
            })
            .collect()
    }

    #[test]
    fn docker_diff_of_a_single_lower() {
        let tmp = scratch();
        let lower = mkdir(tmp.path(), "lower");
        let upper = mkdir(tmp.path(), "upper");
        mkdir(&lower, "etc");
        fs::write(lower.join("etc/passwd"), b"root").unwrap();
        fs::write(lower.join("etc/group"), b"root").unwrap();
        mkdir(&lower, "bin");
        fs::write(lower.join("bin/sh"), b"sh").unwrap();
        mkdir(&lower, "var/lib/x");
        fs::write(lower.join("var/lib/x/old"), b"").unwrap();
        mkdir(&lower, "opt/tree");
        fs::write(lower.join("file-then-dir"), b"").unwrap();

        mkdir(&upper, "etc");
        fs::write(upper.join("etc/passwd"), b"root\nme").unwrap();
        fs::write(upper.join("etc/new"), b"").unwrap();
        mkdir(&upper, "bin");
        mknod_whiteout(&upper.join("bin/sh"));
        mkdir(&upper, "var/lib/x");
        set_opaque(&upper.join("var/lib/x"));
        fs::write(upper.join("var/lib/x/z"), b"").unwrap();
        mkdir(&upper, "newdir/sub");
        fs::write(upper.join("newdir/sub/f"), b"").unwrap();
        mknod_whiteout(&upper.join("opt"));
        mkdir(&upper, "file-then-dir");
        fs::write(upper.join("file-then-dir/inner"), b"").unwrap();

        let got = render(&changes(&upper, std::slice::from_ref(&lower)).unwrap());
        assert_eq!(
            got,
            [
                "C /bin",
                "D /bin/sh",
                "C /etc",
                "A /etc/new",
                "C /etc/passwd",
                "C /file-then-dir",
                "A /file-then-dir/inner",
                "A /newdir",
                "A /newdir/sub",
                "A /newdir/sub/f",
                "D /opt",
                "C /var",
                "C /var/lib",
                "C /var/lib/x",
                "A /var/lib/x/z",
            ]
        );
    }

    #[test]
    fn whiteouts_and_opaque_dirs_in_lowers_hide_what_is_beneath() {
        let tmp = scratch();
        let top = mkdir(tmp.path(), "l1");
        let bottom = mkdir(tmp.path(), "l2");
        let upper = mkdir(tmp.path(), "upper");

        mkdir(&bottom, "usr");
        fs::write(bottom.join("usr/gone"), b"").unwrap();
        fs::write(bottom.join("usr/kept"), b"").unwrap();
        mkdir(&bottom, "srv");
        fs::write(bottom.join("srv/old"), b"").unwrap();
        mkdir(&bottom, "deep/a");
        fs::write(bottom.join("deep/a/f"), b"").unwrap();

        mkdir(&top, "usr");
        mknod_whiteout(&top.join("usr/gone"));
        mkdir(&top, "srv");
        set_opaque(&top.join("srv"));
        mknod_whiteout(&top.join("deep"));

        mkdir(&upper, "usr");
        fs::write(upper.join("usr/gone"), b"back").unwrap();
        fs::write(upper.join("usr/kept"), b"changed").unwrap();
        mkdir(&upper, "srv");
        fs::write(upper.join("srv/old"), b"").unwrap();
        mkdir(&upper, "deep/a");
        fs::write(upper.join("deep/a/f"), b"").unwrap();

        let got = render(&changes(&upper, &[top, bottom]).unwrap());
        assert_eq!(
            got,
            [
                // deep is whited out in l1, so everything of it is new again.
                "A /deep",
                "A /deep/a",
                "A /deep/a/f",
                "C /srv",
                "A /srv/old",
                "C /usr",
                "A /usr/gone",
                "C /usr/kept",
            ]
        );
    }

    #[test]
    fn output_is_sorted_by_full_path() {
        let tmp = scratch();
        let upper = mkdir(tmp.path(), "upper");
        mkdir(&upper, "a/b");
        fs::write(upper.join("a-c"), b"").unwrap();
        let got = render(&changes(&upper, &[]).unwrap());
        assert_eq!(got, ["A /a", "A /a-c", "A /a/b"]);
    }
}
