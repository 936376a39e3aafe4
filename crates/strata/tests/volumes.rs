//! Volume commands (the volume service and local driver; mounting into containers comes
//! with issue 4's mount planning).

mod common;

use common::*;
use serde_json::Value;

#[test]
fn create_list_inspect_rm_prune() {
    let s = Strata::new();
    assert_eq!(s.ok(&["volume", "create", "myvol"]), "myvol\n");
    assert_eq!(s.ok(&["volume", "create", "myvol"]), "myvol\n", "create is idempotent");
    s.ok(&["volume", "create", "--label", "tier=data", "labelled"]);
    let anon = s.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64);
    let ls = s.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     myvol\n"), "{ls}");
    assert_eq!(s.ok(&["volume", "ls", "-q", "--filter", "label=tier=data"]), "labelled\n");
    let v: Value = serde_json::from_str(&s.ok(&["volume", "inspect", "myvol"])).unwrap();
    let keys: Vec<&str> = v[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]);
    assert_eq!(v[0]["Labels"], Value::Null);
    assert_eq!(v[0]["Mountpoint"], s.root.join("volumes/myvol/_data").to_str().unwrap());
    assert!(s.root.join("volumes/myvol/_data").is_dir());
    assert_eq!(s.ok(&["inspect", "-f", "{{.Name}} {{.Driver}}", "labelled"]), "labelled local\n");

    for (args, msg) in [
        (vec!["volume", "create", "x"], "create x: volume name is too short, names should be at least two alphanumeric characters"),
        (vec!["volume", "create", "foo/bar"], "create foo/bar: \"foo/bar\" includes invalid characters for a local volume name"),
        (vec!["volume", "create", "-d", "nodriver", "v2"], "plugin \"nodriver\" not found"),
        (vec!["volume", "rm", "nonexist"], "no such volume"),
    ] {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    }
    // prune removes anonymous volumes only, unless -a.
    let out = s.ok(&["volume", "prune", "-f"]);
    assert_eq!(out, format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"));
    assert!(!s.root.join("volumes").join(&anon).exists());
    s.ok(&["volume", "prune", "-f", "-a"]);
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn containers_mount_seed_share_and_release_volumes() {
    let s = Strata::new();
    s.import_busybox("busybox");
    // A named volume outlives its containers and is shared by them.
    s.ok(&["run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo hello > /data/f"]);
    assert_eq!(s.ok(&["run", "--rm", "-v", "shared:/data:ro", "busybox", "cat", "/data/f"]), "hello\n");
    let out = s.run(&["run", "--rm", "-v", "shared:/data:ro", "busybox", "touch", "/data/x"]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // An empty volume over image content is seeded from the image (mode and content)...
    assert!(s.ok(&["run", "--rm", "-v", "seeded:/bin", "busybox", "ls", "/bin"]).contains("busybox"));
    assert!(s.root.join("volumes/seeded/_data/busybox").is_file());
    // ...never with nocopy.
    let etc = s.ok(&["run", "--rm", "--mount", "type=volume,src=bare,dst=/etc,volume-nocopy", "busybox", "ls", "-A", "/etc"]);
    assert!(!etc.contains("passwd"), "{etc}");
    assert!(!s.root.join("volumes/bare/_data/passwd").exists());
    // Anonymous volumes: `-v /path`, listed in Mounts, removed by rm -v.
    let id = s.ok(&["create", "-v", "/cache", "busybox", "true"]).trim().to_string();
    let mounts: Value = serde_json::from_str(&s.ok(&["inspect", "-f", "{{json .Mounts}}", &id])).unwrap();
    let name = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!((mounts[0]["Type"].as_str(), mounts[0]["Destination"].as_str(), mounts[0]["Mode"].as_str()), (Some("volume"), Some("/cache"), Some("")));
    assert_eq!(name.len(), 64);
    assert_eq!(s.ok(&["inspect", "-f", "{{json .Config.Volumes}}", &id]).trim(), r#"{"/cache":{}}"#);
    // In use: refused, and inspect says by whom.
    let out = s.run(&["volume", "rm", &name]);
    assert!(stderr(&out).contains(&format!("remove {name}: volume is in use - [{id}]")), "{}", stderr(&out));
    assert_eq!(s.ok(&["volume", "inspect", "-f", "{{json .UsedBy}}", &name]).trim(), format!(r#"["{id}"]"#));
    s.ok(&["rm", "-v", &id]);
    assert!(!s.ok(&["volume", "ls", "-q"]).contains(&name));
    // --rm removes anonymous volumes, never named ones.
    s.ok(&["run", "--rm", "-v", "/tmp2", "-v", "kept:/k", "busybox", "true"]);
    let left = s.ok(&["volume", "ls", "-q"]);
    assert!(left.lines().all(|l| l.len() != 64), "{left}");
    assert!(left.contains("kept") && left.contains("shared"));
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn data_only_containers_and_volumes_from() {
    let s = Strata::new();
    s.import_busybox("busybox");
    // A data-only container: created, never started; its volume is seeded at create.
    s.ok(&["create", "--name", "data", "-v", "/etc", "busybox"]);
    let name = s.ok(&["inspect", "-f", "{{(index .Mounts 0).Name}}", "data"]).trim().to_string();
    assert!(s.root.join("volumes").join(&name).join("_data/passwd").is_file(), "seeded at create");
    // Another container sees (and writes) the same volume; :ro forces read-only.
    s.ok(&["run", "--rm", "--volumes-from", "data", "busybox", "sh", "-c", "echo shared > /etc/note"]);
    assert_eq!(s.ok(&["run", "--rm", "--volumes-from", "data:ro", "busybox", "cat", "/etc/note"]), "shared\n");
    let out = s.run(&["run", "--rm", "--volumes-from", "data:ro", "busybox", "touch", "/etc/x"]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // The inheritor's --rm never removes the source's anonymous volume.
    assert!(s.ok(&["volume", "ls", "-q"]).contains(&name));
    let out = s.run(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("No such container: nosuch"), "{}", stderr(&out));
    s.ok(&["rm", "-v", "data"]);
    assert!(!s.ok(&["volume", "ls", "-q"]).contains(&name));
}

/// Unmounts a test's host mount when dropped, failure or not.
struct HostMount(std::path::PathBuf);
impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn read_only_binds_are_read_only_all_the_way_down() {
    let s = Strata::new();
    s.import_busybox("busybox");
    let host = s.root.join("host-ro");
    let sub = host.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&sub).status().unwrap().success());
    let _guard = HostMount(sub.clone());
    let bind = format!("{}:/ro:ro", host.display());
    // The bind's own root and the mount below it: both read-only, as Docker 25+ makes them.
    for path in ["/ro/top", "/ro/sub/below"] {
        let out = s.run(&["run", "--rm", "-v", &bind, "busybox", "touch", path]);
        assert_ne!(out.status.code(), Some(0), "{path} writable");
        assert!(stderr(&out).contains("Read-only file system"), "{path}: {}", stderr(&out));
    }
    assert!(!sub.join("below").exists());
    // Without :ro the submount stays writable through the bind.
    let rw = format!("{}:/rw", host.display());
    s.ok(&["run", "--rm", "-v", &rw, "busybox", "touch", "/rw/sub/below"]);
    assert!(sub.join("below").exists());
}

#[test]
fn volume_subpaths_mount_part_of_a_volume_resolved_inside_it() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "sv"]);
    // A container fills the volume, including links that point out of it.
    s.ok(&["run", "--rm", "-v", "sv:/v", "busybox", "sh", "-c",
        "mkdir -p /v/sub/inner /v/empty && echo x > /v/sub/inner/f && echo y > /v/file && ln -s /etc /v/esc && ln -s ../../../../.. /v/up"]);
    let mount = |sub: &str, dst: &str| format!("type=volume,src=sv,dst={dst},volume-subpath={sub}");
    assert_eq!(s.ok(&["run", "--rm", "--mount", &mount("sub", "/x"), "busybox", "cat", "/x/inner/f"]), "x\n");
    assert_eq!(s.ok(&["run", "--rm", "--mount", &mount("file", "/f"), "busybox", "cat", "/f"]), "y\n");
    // Writes land in the subpath.
    s.ok(&["run", "--rm", "--mount", &mount("sub/inner", "/w"), "busybox", "sh", "-c", "echo z > /w/new"]);
    assert_eq!(s.ok(&["run", "--rm", "-v", "sv:/v", "busybox", "cat", "/v/sub/inner/new"]), "z\n");
    // `esc -> /etc` resolves inside the volume (where there is no etc), never to the host.
    let out = s.run(&["run", "--rm", "--mount", &mount("esc", "/x"), "busybox", "ls", "/x"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("subpath esc"), "{}", stderr(&out));
    // `up -> ../../..` stops at the volume's root.
    let ls = s.ok(&["run", "--rm", "--mount", &mount("up", "/x"), "busybox", "ls", "/x"]);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["empty", "esc", "file", "sub", "up"], "{ls}");
    // A missing subpath is an error at start, and bad ones at create.
    let out = s.run(&["run", "--rm", "--mount", &mount("nope", "/x"), "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("subpath nope") && stderr(&out).contains("no such file or directory"), "{}", stderr(&out));
    let out = s.run(&["create", "--mount", &mount("../x", "/x"), "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("subpath must be a relative path within the volume"), "{}", stderr(&out));
    // An empty subpath directory is seeded from the image, as docker seeds it.
    assert_eq!(s.ok(&["run", "--rm", "--mount", &mount("empty", "/etc"), "busybox", "sh", "-c", "test -s /etc/passwd && echo seeded"]), "seeded\n");
    assert_eq!(s.ok(&["run", "--rm", "-v", "sv:/v", "busybox", "sh", "-c", "test -s /v/empty/passwd && echo kept"]), "kept\n");
}

#[test]
fn read_only_rootfs_keeps_volumes_tmpfs_and_dev_shm_writable() {
    let s = Strata::new();
    s.import_busybox("busybox");
    // The same script gives the same output under the reference docker.
    let script = "touch /x; echo rc=$?; touch /v/a /t/b /dev/shm/c; echo rc=$?; touch /tmp/d; echo rc=$?; echo 1 >> /etc/hosts; echo hosts=$?";
    let out = s.run(&["run", "--rm", "--read-only", "--tmpfs", "/t", "-v", "rov:/v", "busybox", "sh", "-c", script]);
    assert_eq!(stdout(&out), "rc=1\nrc=0\nrc=1\nhosts=1\n", "{}", stderr(&out));
    assert_eq!(stderr(&out).matches("Read-only file system").count(), 3, "{}", stderr(&out));
    assert_eq!(s.ok(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", s.ok(&["create", "--read-only", "busybox"]).trim()]), "true\n");
    assert_eq!(s.ok(&["run", "--rm", "-v", "rov:/v", "busybox", "ls", "/v"]), "a\n");
}

fn mounted(path: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

#[test]
fn a_volume_with_driver_options_is_one_mount_shared_by_its_containers() {
    let s = Strata::new();
    s.import_busybox("busybox");
    s.ok(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=8m", "shared"]);
    let data = s.root.join("volumes/shared/_data");
    let a = s.ok(&["run", "-d", "-v", "shared:/d", "busybox", "sh", "-c", "echo hi > /d/f; sleep 60"]).trim().to_string();
    let mut seen = String::new();
    for _ in 0..100 {
        let o = s.run(&["run", "--rm", "-v", "shared:/d", "busybox", "cat", "/d/f"]);
        seen = stdout(&o);
        if seen == "hi\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(seen, "hi\n", "the second container sees the first one's tmpfs");
    assert!(mounted(&data), "mounted at the volume's Mountpoint on the host while in use");
    assert_eq!(std::fs::read(data.join("f")).unwrap(), b"hi\n");
    // A supervisor killed outright: its reference is released when the engine notices.
    let pid = s.ok(&["inspect", "-f", "{{.State.Pid}}", &a]).trim().to_string();
    let pids = std::process::Command::new("pgrep").args(["-f", &format!("__supervise.*{a}")]).output().unwrap();
    for pid in stdout(&pids).split_whitespace() {
        let _ = std::process::Command::new("kill").args(["-9", pid]).status();
    }
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(s.ok(&["ps", "-a", "--format", "{{.Status}}"]).starts_with("Exited"));
    assert!(!mounted(&data), "unmounted after the last user");
    s.ok(&["rm", &a]);
    s.ok(&["volume", "rm", "shared"]);
}
