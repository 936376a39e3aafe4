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
