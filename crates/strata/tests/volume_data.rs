//! `volume export`, `volume import`, `volume clone` (issue 4, beyond docker): round
//! trips, hostile tars, and the consistency rule against running writers.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn data(s: &Strata, name: &str) -> PathBuf {
    s.root.join("volumes").join(name).join("_data")
}

/// What is beside `_data` in the volume's directory: staging leftovers.
fn leftovers(s: &Strata, name: &str) -> Vec<String> {
    let mut v = s.entries(&format!("volumes/{name}"));
    v.retain(|n| n != "_data");
    v
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    let (p, n) = (CString::new(p.to_str().unwrap()).unwrap(), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) == 0 }
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (CString::new(p.to_str().unwrap()).unwrap(), CString::new(name).unwrap());
    let mut buf = vec![0u8; 256];
    // SAFETY: as above; the kernel writes at most buf.len() bytes.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn entry_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

/// A tar with hand-written headers (`tar::Builder` refuses hostile names).
fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let raw: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = entries
        .iter()
        .map(|(n, k, l)| (*n, *k, if *k == tar::EntryType::Regular { &b"pwned"[..] } else { &b""[..] }, Some(*l).filter(|l| !l.is_empty())))
        .collect();
    raw_tar(&raw)
}

#[test]
fn export_import_round_trip_preserves_owners_modes_xattrs_and_links() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "src"]);
    // Written by a container, as a user's data would be.
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "src:/d",
        "busybox",
        "sh",
        "-c",
        "mkdir /d/sub && echo hello > /d/sub/f && chown 1001:1002 /d/sub/f && chmod 4750 /d/sub/f \
         && ln /d/sub/f /d/hard && ln -s /etc/passwd /d/abs && ln -s sub/f /d/rel \
         && mknod /d/null c 1 3 && mkfifo /d/fifo && echo plain > /d/.wh.plain \
         && touch -d '2001-02-03 04:05:06' /d/sub/f && chown 70:70 /d && chmod 711 /d",
    ]);
    let xattrs = set_xattr(&data(&s, "src").join("sub/f"), "user.origin", b"strata");
    if !xattrs {
        eprintln!("user.* xattrs unsupported under {}; xattr round trip not checked", s.root.display());
    }

    let file = s.root.join("src.tar");
    assert_eq!(s.ok(&["volume", "export", "-o", file.to_str().unwrap(), "src"]), "");
    let tar_bytes = fs::read(&file).unwrap();
    let piped = s.run(&["volume", "export", "src"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(piped.stdout, tar_bytes, "stdout and -o write the same bytes");
    let names = entry_names(&tar_bytes);
    assert_eq!(names[0], "./", "the volume's own directory first");
    assert!(names[1..].iter().all(|n| !n.starts_with("./") && !n.starts_with('/')), "docker export's names: {names:?}");
    assert!(names.contains(&".wh.plain".to_string()));

    assert_eq!(s.ok(&["volume", "import", "fromfile", file.to_str().unwrap()]), "fromfile\n");
    assert_eq!(s.run_stdin(&["volume", "import", "fromstdin", "-"], &tar_bytes).status.code(), Some(0));
    for v in ["fromfile", "fromstdin"] {
        let d = data(&s, v);
        let f = fs::symlink_metadata(d.join("sub/f")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1001, 1002, 0o4750), "{v}");
        assert_eq!(f.mtime(), fs::symlink_metadata(data(&s, "src").join("sub/f")).unwrap().mtime(), "{v}");
        assert_eq!(fs::symlink_metadata(d.join("hard")).unwrap().ino(), f.ino(), "{v}: hardlink");
        assert_eq!(fs::read_link(d.join("abs")).unwrap(), Path::new("/etc/passwd"), "{v}");
        assert_eq!(fs::read_link(d.join("rel")).unwrap(), Path::new("sub/f"), "{v}");
        let null = fs::symlink_metadata(d.join("null")).unwrap();
        assert_eq!((null.mode() & 0o170000, null.rdev()), (0o020000, libc::makedev(1, 3)), "{v}: device node");
        assert_eq!(fs::symlink_metadata(d.join("fifo")).unwrap().mode() & 0o170000, 0o010000, "{v}: fifo");
        assert_eq!(fs::read(d.join(".wh.plain")).unwrap(), b"plain\n", "{v}: not a whiteout");
        let top = fs::metadata(&d).unwrap();
        assert_eq!((top.uid(), top.gid(), top.mode() & 0o7777), (70, 70, 0o711), "{v}: top directory");
        if xattrs {
            assert_eq!(get_xattr(&d.join("sub/f"), "user.origin").as_deref(), Some(&b"strata"[..]), "{v}");
        }
        assert!(leftovers(&s, v).is_empty(), "{v}: {:?}", leftovers(&s, v));
    }
    // A container sees it as the original.
    let seen = s.ok(&[
        "run",
        "--rm",
        "-v",
        "fromstdin:/d:ro",
        "busybox",
        "sh",
        "-c",
        "stat -c '%u:%g %a' /d/sub/f; cat /d/hard",
    ]);
    assert_eq!(seen, "1001:1002 4750\nhello\n");
    // And it exports to the very same bytes.
    assert_eq!(s.run(&["volume", "export", "fromfile"]).stdout, tar_bytes);
}

#[test]
fn hostile_tars_are_refused_and_leave_the_volume_empty() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let s = Strata::new();
    let outside = s.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let out_abs = format!("{}/escape", outside.display());
    type Case<'a> = (&'a str, Vec<(&'a str, tar::EntryType, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("dotdot", vec![("ok", Regular, ""), ("../../../outside/escape", Regular, "")], "path escapes the root"),
        ("absolute", vec![(out_abs.as_str(), Regular, "")], "absolute path"),
        (
            "symlink-abs",
            vec![("evil", Symlink, outside.to_str().unwrap()), ("evil/escape", Regular, "")],
            "goes through a symlink",
        ),
        (
            "symlink-up",
            vec![("d/", Directory, ""), ("d/up", Symlink, "../../../outside"), ("d/up/escape", Regular, "")],
            "goes through a symlink",
        ),
        ("hardlink-up", vec![("l", Link, "../../../outside/escape")], "path escapes the root"),
        ("hardlink-abs", vec![("l", Link, "/etc/passwd")], "absolute path"),
        ("hardlink-via-link", vec![("e", Symlink, "/etc"), ("l", Link, "e/passwd")], "goes through a symlink"),
    ];
    for (name, entries, reason) in &cases {
        s.ok(&["volume", "create", name]);
        let tar_path = s.root.join(format!("{name}.tar"));
        fs::write(&tar_path, hostile_tar(entries)).unwrap();
        let out = s.run(&["volume", "import", name, tar_path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("Error response from daemon: import {name}: invalid tar entry")),
            "{name}: {err}"
        );
        assert!(err.contains(reason), "{name}: {err}");
        assert_eq!(fs::read_dir(data(&s, name)).unwrap().count(), 0, "{name}: volume left empty");
        assert!(leftovers(&s, name).is_empty(), "{name}: staging left: {:?}", leftovers(&s, name));
    }
    assert!(!outside.join("escape").exists());
    assert_eq!(s.entries("outside"), Vec::<String>::new());
    // From stdin, into a volume the import would create: refused, and no volume is left.
    let out = s.run_stdin(&["volume", "import", "newvol", "-"], &hostile_tar(&cases[0].1));
    assert_eq!(out.status.code(), Some(1));
    assert!(s.run(&["volume", "inspect", "newvol"]).status.code() == Some(1), "no half-made volume");
    assert!(!s.root.join("volumes/newvol").exists());
}

#[test]
fn import_refuses_a_non_empty_volume() {
    let s = Strata::new();
    s.ok(&["volume", "create", "full"]);
    fs::write(data(&s, "full").join(".keep"), b"mine").unwrap();
    let tar_path = s.root.join("t.tar");
    fs::write(&tar_path, tar_of(&[("f", b"new")])).unwrap();
    let out = s.run(&["volume", "import", "full", tar_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error response from daemon: import full: volume is not empty\n");
    assert_eq!(s.entries("volumes/full/_data"), [".keep"]);
    assert_eq!(fs::read(data(&s, "full").join(".keep")).unwrap(), b"mine");
}

#[test]
fn clone_copies_content_and_labels() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "--label", "team=db", "--label", "tier=gold", "src"]);
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "src:/d",
        "busybox",
        "sh",
        "-c",
        "mkdir /d/x && echo one > /d/x/f && ln -s x/f /d/l && chown -R 5:6 /d/x",
    ]);
    fs::set_permissions(data(&s, "src"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(s.ok(&["volume", "clone", "src", "copy"]), "copy\n");
    let v: Value = serde_json::from_str(&s.ok(&["volume", "inspect", "copy"])).unwrap();
    assert_eq!(v[0]["Labels"], serde_json::json!({"team": "db", "tier": "gold"}));
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(
        s.ok(&["run", "--rm", "-v", "copy:/d", "busybox", "sh", "-c", "cat /d/l; stat -c '%u:%g' /d/x/f"]),
        "one\n5:6\n"
    );
    assert_eq!(fs::metadata(data(&s, "copy")).unwrap().mode() & 0o7777, 0o750);
    assert!(leftovers(&s, "copy").is_empty());
    // Independent copies.
    fs::write(data(&s, "copy").join("x/f"), b"changed").unwrap();
    assert_eq!(fs::read(data(&s, "src").join("x/f")).unwrap(), b"one\n");

    let out = s.run(&["volume", "clone", "src", "copy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error response from daemon: clone src to copy: volume copy already exists\n");
    let out = s.run(&["volume", "clone", "nosuch", "other"]);
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
    assert!(s.run(&["volume", "inspect", "other"]).status.code() == Some(1));

    // An anonymous volume's clone is a named volume: the anonymous label is not copied.
    let id = s.ok(&["create", "-v", "/cache", "busybox", "true"]).trim().to_string();
    let anon = s.ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &id]).trim().to_string();
    assert_eq!(anon.len(), 64);
    s.ok(&["volume", "clone", &anon, "kept"]);
    let v: Value = serde_json::from_str(&s.ok(&["volume", "inspect", "kept"])).unwrap();
    assert_eq!(v[0]["Labels"], Value::Null);
}

#[test]
fn clone_and_export_are_refused_while_a_running_container_writes() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "src"]);
    fs::write(data(&s, "src").join("f"), b"data").unwrap();
    s.ok(&["run", "-d", "--name", "writer", "-v", "src:/d", "busybox", "sleep", "30"]);
    let tar_path = s.root.join("out.tar");
    for args in
        [vec!["volume", "clone", "src", "copy"], vec!["volume", "export", "-o", tar_path.to_str().unwrap(), "src"]]
    {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("src: volume is in use read-write by running container(s) writer"), "{args:?}: {err}");
    }
    assert!(s.run(&["volume", "inspect", "copy"]).status.code() == Some(1), "no copy made");
    assert!(!tar_path.exists() && !s.root.join("out.tar.strata-tmp").exists());
    // An import is refused while any running container has the volume mounted.
    s.ok(&["volume", "create", "empty"]);
    s.ok(&["run", "-d", "--name", "reader", "-v", "empty:/e:ro", "busybox", "sleep", "30"]);
    let t = s.root.join("t.tar");
    fs::write(&t, tar_of(&[("f", b"x")])).unwrap();
    let out = s.run(&["volume", "import", "empty", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("import empty: volume is mounted by running container(s) reader"),
        "{}",
        stderr(&out)
    );

    // Stopped writers and read-only users are fine.
    s.ok(&["rm", "-f", "writer", "reader"]);
    s.ok(&["create", "--name", "idle", "-v", "src:/d", "busybox", "true"]);
    s.ok(&["run", "-d", "--name", "ro", "-v", "src:/d:ro", "busybox", "sleep", "30"]);
    assert_eq!(s.ok(&["volume", "clone", "src", "copy"]), "copy\n");
    assert_eq!(fs::read(data(&s, "copy").join("f")).unwrap(), b"data");
    s.ok(&["volume", "export", "-o", tar_path.to_str().unwrap(), "src"]);
    assert!(entry_names(&fs::read(&tar_path).unwrap()).contains(&"f".to_string()));
    s.ok(&["rm", "-f", "ro"]);
}
