//! Hostile layer tarballs: each gets a clear error naming the entry, exit 1, and leaves
//! the store exactly as it was — and never touches the host outside the data root.

mod common;

use common::*;

fn assert_rejected(s: &Strata, tar: &[u8], needle: &str) {
    let before = (s.blobs(), s.entries("snapshots"));
    let out = s.run_stdin(&["import", "-", "hostile:1"], tar);
    assert_eq!(out.status.code(), Some(1), "accepted: {needle}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} should name {needle:?}");
    assert_eq!((s.blobs(), s.entries("snapshots")), before, "store changed");
    assert!(s.entries("content/ingest").is_empty() && s.entries("tmp").is_empty());
    let img = s.run(&["image", "inspect", "hostile:1"]);
    assert_eq!(img.status.code(), Some(1));
}

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    let s = Strata::new();
    use tar::EntryType::*;
    assert_rejected(&s, &raw_tar(&[("../escape", Regular, b"x", None)]), "../escape");
    assert_rejected(&s, &raw_tar(&[("a/../../escape", Regular, b"x", None)]), "a/../../escape");
    assert_rejected(&s, &raw_tar(&[("/etc/strata-abs", Regular, b"x", None)]), "/etc/strata-abs");
    assert!(!std::path::Path::new("/etc/strata-abs").exists());
}

#[test]
fn escaping_hardlinks_are_refused() {
    let s = Strata::new();
    use tar::EntryType::*;
    assert_rejected(&s, &raw_tar(&[("pw", Link, b"", Some("../../../../etc/passwd"))]), "pw");
    assert_rejected(&s, &raw_tar(&[("pw", Link, b"", Some("/etc/passwd"))]), "pw");
}

#[test]
fn symlink_then_write_lands_inside_the_root() {
    let s = Strata::new();
    use tar::EntryType::*;
    let marker = format!("/tmp/strata-hostile-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&marker);
    std::fs::create_dir_all(&marker).unwrap();
    let tar = raw_tar(&[("evil", Symlink, b"", Some(&marker)), ("evil/owned", Regular, b"pwned", None)]);
    let out = s.run_stdin(&["import", "-", "sym:1"], &tar);
    // Either refused or confined; never written on the host.
    assert!(!std::path::Path::new(&marker).join("owned").exists(), "wrote through a symlink onto the host");
    if out.status.success() {
        let snaps = s.root.join("snapshots");
        let found = walk(&snaps).into_iter().any(|p| p.ends_with(format!("{marker}/owned").trim_start_matches('/')));
        assert!(found, "the file should land inside the layer");
    }
    std::fs::remove_dir_all(&marker).unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn truncated_and_huge_headers_are_refused() {
    let s = Strata::new();
    let full = tar_of(&[("big", &vec![7u8; 100_000])]);
    let out = s.run_stdin(&["import", "-", "trunc:1"], &full[..20_000]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error processing tar file"), "{}", stderr(&out));
    assert!(s.blobs().is_empty() && s.entries("snapshots").is_empty());

    // A PAX header claiming an enormous extension.
    let mut b = tar::Builder::new(Vec::new());
    let long = "x".repeat(2 << 20);
    b.append_pax_extensions([("comment", long.as_bytes())]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    let out = s.run_stdin(&["import", "-", "huge:1"], &b.into_inner().unwrap());
    assert_eq!(out.status.code(), Some(1));
    assert!(s.blobs().is_empty() && s.entries("snapshots").is_empty());
}

#[test]
fn corrupted_blob_is_found_and_repaired() {
    let s = Strata::new();
    let id = s.import_busybox("busybox");
    assert_eq!(s.run(&["system", "check"]).status.code(), Some(0));
    let tar = std::fs::read(busybox_tar()).unwrap();
    let blob = s.root.join("content/blobs/sha256").join(sha256_hex(&tar));
    let mut data = std::fs::read(&blob).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&blob, data).unwrap();
    let out = s.run(&["system", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&format!("problem: blob sha256:{}: content does not match its digest", sha256_hex(&tar))), "{text}");
    let out = s.run(&["system", "check", "--repair"]);
    assert!(stdout(&out).contains("repaired: removed corrupt blob"), "{}", stdout(&out));
    // The image now reports its missing blob instead of serving bad bytes.
    let out = s.run(&["system", "check"]);
    assert!(stdout(&out).contains(&format!("image {id}: blob of layer")), "{}", stdout(&out));
    let out = s.cmd(&["save", "busybox"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
