//! Issue 4's robustness cases: shared volumes under concurrent writers, a full disk while
//! seeding, host directories that disappear or are symlinks, mount targets that try to
//! escape. Expected texts and exit codes are the reference docker's (20.10 daemon, 28 CLI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Runs a host command and asserts it succeeded; returns stdout.
fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// An image made of busybox plus `extra` entries, imported with `changes` (`-c`).
fn import_with(s: &Strata, tag: &str, changes: &[&str], extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    let mut bb = tar::Archive::new(std::fs::File::open(busybox_tar()).unwrap());
    for e in bb.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header().clone();
        b.append(&h, e).unwrap();
    }
    extra(&mut b);
    let data = b.into_inner().unwrap();
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["-c", c]);
    }
    args.extend(["-", tag]);
    let out = s.run_stdin(&args, &data);
    assert!(out.status.success(), "import {tag}: {}", stderr(&out));
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Every `.seed-*` staging directory under `dir`.
fn staging_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(".seed-") {
            out.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(staging_dirs(&p));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Shared volumes

#[test]
fn two_containers_on_one_volume_see_each_others_writes_at_once() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "shared"]);
    // The waiter runs until the other container's file appears, answers in another file
    // and exits; it gives up (exit 3) after ~60 s so a broken engine fails, not hangs.
    let wait_for = |f: &str| format!("i=0; while [ ! -f /d/{f} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 3; sleep 0.05; done");
    let script = format!("{}; read v < /d/ping; echo \"pong $v\" > /d/.pong && mv /d/.pong /d/pong", wait_for("ping"));
    s.ok(&["run", "-d", "--name", "waiter", "-v", "shared:/d", "busybox", "sh", "-c", &script]);
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Running}}", "waiter"]), "true\n", "the waiter must be running while the other writes");
    // A second container writes (atomically: a rename) while the first one runs...
    s.ok(&["run", "--rm", "-v", "shared:/d", "busybox", "sh", "-c", "echo 42 > /d/.ping && mv /d/.ping /d/ping"]);
    // ...and the first one's answer is visible to a third, without either stopping.
    let got = s.ok(&["run", "--rm", "-v", "shared:/d:ro", "busybox", "sh", "-c", &format!("{}; cat /d/pong", wait_for("pong"))]);
    assert_eq!(got, "pong 42\n");
    assert_eq!(s.ok(&["wait", "waiter"]), "0\n");
    // The host sees the same files in the volume's data directory.
    assert_eq!(std::fs::read_to_string(s.root.join("volumes/shared/_data/pong")).unwrap(), "pong 42\n");
    s.ok(&["rm", "waiter"]);
}

#[test]
fn ten_concurrent_appenders_lose_no_line() {
    const N: usize = 10;
    const LINES: usize = 200;
    let s = Strata::new();
    s.import_busybox("busybox");
    let script = format!("for i in $(seq {LINES}); do echo \"$ID $i\" >> /d/log; done");
    let outs: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..N)
            .map(|id| {
                let (s, script) = (&s, &script);
                sc.spawn(move || s.run(&["run", "--rm", "-e", &format!("ID={id}"), "-v", "vol:/d", "busybox", "sh", "-c", script]))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (id, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "container {id}: {:?} {}", o.status, stderr(o));
    }
    let log = std::fs::read_to_string(s.root.join("volumes/vol/_data/log")).unwrap();
    let mut seen = vec![vec![0u32; LINES + 1]; N];
    let mut count = 0;
    for line in log.lines() {
        let (id, i) = line.split_once(' ').unwrap_or_else(|| panic!("torn line {line:?}"));
        let (id, i): (usize, usize) = (id.parse().unwrap_or_else(|_| panic!("torn line {line:?}")), i.parse().unwrap_or_else(|_| panic!("torn line {line:?}")));
        assert!(id < N && (1..=LINES).contains(&i), "bad line {line:?}");
        seen[id][i] += 1;
        count += 1;
    }
    assert_eq!(count, N * LINES, "lines in the shared log");
    for (id, per) in seen.iter().enumerate() {
        for (i, n) in per.iter().enumerate().skip(1) {
            assert_eq!(*n, 1, "line ({id}, {i}) seen {n} times");
        }
    }
    // Every --rm container is gone; the named volume is kept.
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "vol\n");
}

// ---------------------------------------------------------------------------------------
// A full disk during seeding

/// A small ext4 filesystem on a loop device, mounted for one test; unmounted, detached
/// and deleted on drop, whatever happened.
struct SmallDisk {
    dir: PathBuf,
    mnt: PathBuf,
    dev: Option<String>,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let base = Path::new("/var/tmp/strata-tests");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::Builder::new().prefix("disk-").tempdir_in(base).unwrap().keep();
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut d = SmallDisk { dir: dir.clone(), mnt, dev: None };
        let img = dir.join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        sh("mkfs.ext4", &["-q", "-F", "-m", "0", img.to_str().unwrap()]);
        // `losetup -f` can race with another process taking the same free device.
        for _ in 0..10 {
            let out = Command::new("losetup").args(["-f", "--show", img.to_str().unwrap()]).output().unwrap();
            if out.status.success() {
                d.dev = Some(stdout(&out).trim().to_string());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let dev = d.dev.clone().expect("no free loop device");
        sh("mount", &[&dev, d.mnt.to_str().unwrap()]);
        d
    }

    fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and a zeroed out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let m = self.mnt.to_str().unwrap();
        let mounted = || std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| l.split(' ').nth(4) == Some(m));
        if mounted() && !Command::new("umount").arg(m).status().map(|s| s.success()).unwrap_or(false) {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        if let Some(dev) = &self.dev {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
        if !mounted() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const DATA_FILES: usize = 8;
const DATA_FILE_SIZE: usize = 1 << 20;

/// On a disk with less room than the image's `VOLUME /data` holds, `create` and `run` fail
/// while seeding and leave nothing half: no container, the anonymous volume gone, a named
/// volume empty, no staging directory, a store that checks clean. Once there is room, the
/// same named volume is seeded whole.
#[test]
fn full_disk_while_seeding_leaves_volumes_empty_never_half() {
    let disk = SmallDisk::new(48);
    // Declared after the disk, so dropped (containers removed, root deleted) before it.
    let s = Strata { root: disk.mnt.join("root") };
    std::fs::create_dir(&s.root).unwrap();
    let blob: Vec<u8> = (0..DATA_FILE_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    import_with(&s, "fullimg", &["VOLUME /data", r#"CMD ["true"]"#], |b| {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), "./data/", &[][..]).unwrap();
        for i in 0..DATA_FILES {
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, blob.len() as u64), format!("./data/f{i}"), &blob[..]).unwrap();
        }
    });
    // Leave room for ~3 of the 8 files: the copy fails part-way.
    let ballast = disk.mnt.join("ballast");
    let keep = 3 * DATA_FILE_SIZE as u64;
    let fill = disk.free_bytes().saturating_sub(keep);
    sh("fallocate", &["-l", &fill.to_string(), ballast.to_str().unwrap()]);
    assert!(disk.free_bytes() < (DATA_FILES * DATA_FILE_SIZE) as u64);

    let no_leftovers = |what: &str| {
        assert_eq!(s.ok(&["ps", "-aq"]), "", "{what}: a container was left");
        assert_eq!(staging_dirs(&s.root.join("volumes")), Vec::<PathBuf>::new(), "{what}: staging left");
        assert!(s.entries("containers").is_empty(), "{what}: container files left: {:?}", s.entries("containers"));
        let check = s.run(&["system", "check"]);
        assert!(check.status.success(), "{what}: system check: {}{}", stdout(&check), stderr(&check));
    };

    // An anonymous volume (the image's VOLUME): create fails, the volume goes with it.
    let out = s.run(&["create", "--name", "c1", "fullimg"]);
    assert!(!out.status.success(), "create on a full disk succeeded");
    assert!(stderr(&out).starts_with("Error response from daemon: ") || stderr(&out).starts_with("strata: Error response from daemon: "), "{}", stderr(&out));
    no_leftovers("create");
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "", "the anonymous volume was kept");

    // `run`: docker's 125; a named volume is kept (docker keeps it too) and is empty.
    let out = s.run(&["run", "--rm", "-v", "named:/data", "fullimg"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("Error response from daemon: "), "{}", stderr(&out));
    no_leftovers("run");
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "named\n");
    let data = s.root.join("volumes/named/_data");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "the named volume was left half-seeded");

    // With room again, the emptied volume is seeded, whole.
    std::fs::remove_file(&ballast).unwrap();
    let listing = s.ok(&["run", "--rm", "-v", "named:/data", "fullimg", "sh", "-c", "cd /data && for f in *; do echo $f $(wc -c < $f); done"]);
    let want: String = (0..DATA_FILES).map(|i| format!("f{i} {DATA_FILE_SIZE}\n")).collect();
    assert_eq!(listing, want);
    for i in 0..DATA_FILES {
        assert!(std::fs::read(data.join(format!("f{i}"))).unwrap() == blob, "f{i} differs from the image");
    }
    no_leftovers("after");
}

/// docker names the cause: `failed to copy files: userspace copy failed: write
/// /var/lib/docker/volumes/NAME/_data/f1: no space left on device`; so does strata, with
/// the volume's name.
#[test]
fn full_disk_while_seeding_names_the_cause() {
    let disk = SmallDisk::new(48);
    let s = Strata { root: disk.mnt.join("root") };
    std::fs::create_dir(&s.root).unwrap();
    let blob = vec![7u8; DATA_FILE_SIZE];
    import_with(&s, "fullimg", &["VOLUME /data", r#"CMD ["true"]"#], |b| {
        for i in 0..DATA_FILES {
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, blob.len() as u64), format!("./data/f{i}"), &blob[..]).unwrap();
        }
    });
    let fill = disk.free_bytes().saturating_sub(2 * DATA_FILE_SIZE as u64);
    sh("fallocate", &["-l", &fill.to_string(), disk.mnt.join("ballast").to_str().unwrap()]);
    let out = s.run(&["run", "--rm", "-v", "named:/data", "fullimg"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.contains("no space left on device") && err.contains("named"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Host directories that disappear, symlinked sources, escaping targets

#[test]
fn bind_source_deleted_after_create() {
    let s = Strata::new();
    s.import_busybox("busybox");
    let host = tempfile::Builder::new().prefix("gone-").tempdir_in("/var/tmp").unwrap();
    // `-v`: docker creates the missing source again at start.
    let v_src = host.path().join("v");
    std::fs::create_dir(&v_src).unwrap();
    std::fs::write(v_src.join("old"), "x").unwrap();
    s.ok(&["create", "--name", "vbind", "-v", &format!("{}:/d", v_src.display()), "busybox", "sh", "-c", "ls -A /d; echo new > /d/f"]);
    std::fs::remove_dir_all(&v_src).unwrap();
    assert_eq!(s.ok(&["start", "-a", "vbind"]), "", "the recreated source is empty");
    assert_eq!(std::fs::read_to_string(v_src.join("f")).unwrap(), "new\n");

    // `--mount type=bind`: checked again at start, docker's error, exit 1, nothing created.
    let m_src = host.path().join("m");
    std::fs::create_dir(&m_src).unwrap();
    let ms = m_src.to_str().unwrap();
    s.ok(&["create", "--name", "mbind", "--mount", &format!("type=bind,src={ms},dst=/d"), "busybox", "true"]);
    std::fs::remove_dir(&m_src).unwrap();
    let want = format!("Error response from daemon: invalid mount config for type \"bind\": bind source path does not exist: {ms}\n");
    let out = s.run(&["start", "mbind"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("{want}Error: failed to start containers: mbind\n"));
    let out = s.run(&["start", "-a", "mbind"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), want);
    assert!(!m_src.exists(), "a --mount source was created");
    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "mbind"]), "created\n");
    // `run` of the same: 125, and --rm removes the container that never started.
    let out = s.run(&["run", "--rm", "--mount", &format!("type=bind,src={ms},dst=/d"), "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("bind source path does not exist"), "{}", stderr(&out));
    s.ok(&["rm", "vbind", "mbind"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn bind_sources_that_are_symlinks() {
    let s = Strata::new();
    s.import_busybox("busybox");
    let host = tempfile::Builder::new().prefix("link-").tempdir_in("/var/tmp").unwrap();
    let real = host.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("f"), "real\n").unwrap();
    let link = host.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let l = link.to_str().unwrap();
    // docker follows a symlinked source (for -v and --mount) and shows the path as given.
    assert_eq!(s.ok(&["run", "--rm", "-v", &format!("{l}:/d"), "busybox", "cat", "/d/f"]), "real\n");
    s.ok(&["run", "--rm", "--mount", &format!("type=bind,src={l},dst=/d"), "busybox", "sh", "-c", "echo in > /d/g"]);
    assert_eq!(std::fs::read_to_string(real.join("g")).unwrap(), "in\n");
    assert!(link.is_symlink(), "the link itself was replaced");
    let id = s.ok(&["create", "-v", &format!("{l}:/d"), "busybox"]).trim().to_string();
    assert_eq!(s.ok(&["inspect", "-f", "{{(index .Mounts 0).Source}}", &id]), format!("{l}\n"));
    s.ok(&["rm", &id]);
    // A dangling symlink: docker's mkdir error (exit 125), and nothing made at its target.
    let dangling = host.path().join("dangling");
    let target = host.path().join("nowhere");
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    let d = dangling.to_str().unwrap();
    let out = s.run(&["run", "--rm", "-v", &format!("{d}:/d"), "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(&format!("Error response from daemon: error while creating mount source path '{d}': mkdir {d}: file exists")),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    let out = s.run(&["create", "--mount", &format!("type=bind,src={d},dst=/d"), "busybox"]);
    assert!(stderr(&out).contains(&format!("bind source path does not exist: {d}")), "{}", stderr(&out));
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn mount_targets_with_dotdot_relative_or_through_image_symlinks() {
    let s = Strata::new();
    let host = tempfile::Builder::new().prefix("tgt-").tempdir_in("/var/tmp").unwrap();
    let h = host.path().to_str().unwrap();
    std::fs::write(host.path().join("f"), "host\n").unwrap();
    // An image whose /escape is a symlink out of its root, towards a host directory.
    let outside = tempfile::Builder::new().prefix("outside-").tempdir_in("/var/tmp").unwrap();
    let rel = format!("../../../../../../..{}", outside.path().display());
    import_with(&s, "busybox", &[r#"CMD ["sh"]"#], |b| {
        let mut hd = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut hd, "./escape", &rel).unwrap();
        let mut hd = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut hd, "./abs", outside.path()).unwrap();
    });
    // `..` is cleaned as docker does: /d/../../etc is /etc, inside the container.
    assert_eq!(s.ok(&["run", "--rm", "-v", &format!("{h}:/d/../../etc"), "busybox", "cat", "/etc/f"]), "host\n");
    let id = s.ok(&["create", "-v", &format!("{h}:/d/../../etc"), "busybox"]).trim().to_string();
    assert_eq!(s.ok(&["inspect", "-f", "{{(index .Mounts 0).Destination}}", &id]), "/etc\n");
    s.ok(&["rm", &id]);
    for (args, code, msg) in [
        (vec!["-v", &format!("{h}:/d/..")[..]], 125, format!("invalid volume specification: '{h}:/d/..': invalid mount config for type \"bind\": invalid specification: destination can't be '/'")),
        (vec!["-v", &format!("{h}:d")[..]], 125, format!("invalid volume specification: '{h}:d': invalid mount config for type \"bind\": invalid mount path: 'd' mount path must be absolute")),
        (vec!["-v", "vol:d"], 125, "invalid volume specification: 'vol:d': invalid mount config for type \"volume\": invalid mount path: 'd' mount path must be absolute".to_string()),
        (vec!["--mount", &format!("type=bind,src={h},dst=d")[..]], 125, "invalid mount config for type \"bind\": invalid mount path: 'd' mount path must be absolute".to_string()),
        (vec!["-v", "rel/dir:/d"], 125, "\"rel/dir\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path".to_string()),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args.iter().copied());
        a.extend(["busybox", "true"]);
        let out = s.run(&a);
        assert_eq!(out.status.code(), Some(code), "{a:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&msg), "{a:?}: {}", stderr(&out));
    }
    // Targets through the image's symlinks resolve inside the container's root: the bind
    // lands there, never on the host directory the link names.
    for t in ["/escape", "/abs", "/escape/sub"] {
        let out = s.run(&["run", "--rm", "-v", &format!("{h}:{t}"), "busybox", "sh", "-c", &format!("cat {t}/f && echo in > {t}/g")]);
        assert!(out.status.success(), "{t}: {}", stderr(&out));
        assert_eq!(stdout(&out), "host\n", "{t}");
        assert_eq!(std::fs::read_to_string(host.path().join("g")).unwrap(), "in\n");
        std::fs::remove_file(host.path().join("g")).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{t}: something was created on the host through the link");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(outside.path().to_str().unwrap()), "{t}: mounted on the host");
    }
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}
