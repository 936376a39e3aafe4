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
