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
