//! The store under concurrency and crashes: parallel processes lose nothing, and a killed
//! import leaves nothing once the next command has run.

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn parallel_imports_lose_nothing() {
    let s = Strata::new();
    let bb = busybox_tar().to_str().unwrap().to_string();
    let children: Vec<_> = (0..6)
        .map(|i| {
            s.cmd(&["import", "-c", &format!("LABEL n={i}"), &bb, &format!("par:{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = s.ok(&["images", "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = out.lines().collect();
    tags.sort();
    assert_eq!(tags, ["0", "1", "2", "3", "4", "5"]);
    // One layer shared by all six images: one snapshot directory, one layer blob.
    assert_eq!(s.entries("snapshots").len(), 1, "{:?}", s.entries("snapshots"));
    assert_eq!(s.blobs().len(), 7, "6 configs + 1 layer: {:?}", s.blobs());
    assert_eq!(s.run(&["system", "check"]).status.code(), Some(0));
}

#[test]
fn killed_import_is_swept_by_the_next_command() {
    let s = Strata::new();
    let mut child = s.cmd(&["import", "-", "slow:1"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Half a layer, then the process dies with its lease held.
    let tar = std::fs::read(busybox_tar()).unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.entries("snapshots").is_empty() || s.entries("content/ingest").is_empty() {
        assert!(std::time::Instant::now() < deadline, "import never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(!s.entries("leases").is_empty(), "the dead lease is still on disk");

    s.ok(&["images"]);
    assert!(s.entries("leases").is_empty(), "{:?}", s.entries("leases"));
    assert!(s.entries("content/ingest").is_empty(), "{:?}", s.entries("content/ingest"));
    assert!(s.entries("snapshots").is_empty(), "{:?}", s.entries("snapshots"));
    assert!(s.entries("tmp").is_empty());
    assert_eq!(s.run(&["system", "check"]).status.code(), Some(0));
}

#[test]
fn vfs_driver_copies_layers_and_applies_whiteouts() {
    let s = Strata::new();
    let run = |args: &[&str], stdin: Option<&[u8]>| {
        let mut c = s.cmd(args);
        c.env("STRATA_STORAGE_DRIVER", "vfs");
        match stdin {
            None => c.stdin(Stdio::null()).output().unwrap(),
            Some(data) => {
                let mut ch = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                std::io::Write::write_all(ch.stdin.as_mut().unwrap(), data).unwrap();
                drop(ch.stdin.take());
                ch.wait_with_output().unwrap()
            }
        }
    };
    // Two layers: the second deletes a file of the first.
    let l1 = tar_of(&[("keep", b"1"), ("gone", b"2")]);
    let l2 = tar_of(&[(".wh.gone", b""), ("new", b"3")]);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}","sha256:{}"]}}}}"#,
        sha256_hex(&l1),
        sha256_hex(&l2)
    );
    let cfg = format!("{}.json", sha256_hex(config.as_bytes()));
    let manifest = format!(r#"[{{"Config":"{cfg}","RepoTags":["two:1"],"Layers":["a/layer.tar","b/layer.tar"]}}]"#);
    let archive = tar_of(&[("manifest.json", manifest.as_bytes()), (&cfg, config.as_bytes()), ("a/layer.tar", &l1), ("b/layer.tar", &l2)]);
    let out = run(&["load"], Some(&archive));
    assert!(out.status.success(), "{}", stderr(&out));
    let driver = run(&["image", "inspect", "-f", "{{.GraphDriver.Name}}", "two:1"], None);
    assert_eq!(stdout(&driver).trim(), "vfs");
    // Each vfs snapshot is a full tree: the top one has keep and new, not gone.
    let mut tops = Vec::new();
    for e in s.entries("snapshots") {
        let fs = s.root.join("snapshots").join(&e).join("fs");
        let mut names: Vec<String> = std::fs::read_dir(&fs).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        tops.push(names);
    }
    assert!(tops.contains(&vec!["gone".to_string(), "keep".to_string()]), "{tops:?}");
    assert!(tops.contains(&vec!["keep".to_string(), "new".to_string()]), "{tops:?}");
    // The stored layer bytes are unchanged: save gives them back exactly.
    let saved = run(&["save", "two:1"], None);
    let mut ar = tar::Archive::new(&saved.stdout[..]);
    let mut found = 0;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
        if buf == l1 || buf == l2 {
            found += 1;
        }
    }
    assert_eq!(found, 2);
    // The driver of an existing root cannot be changed.
    let out = s.run(&["--storage-driver", "overlay2", "images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was created with the vfs storage driver"), "{}", stderr(&out));
    let out = run(&["rmi", "two:1"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.entries("snapshots").is_empty());
}
