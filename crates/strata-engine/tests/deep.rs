//! A 200-layer image loads, mounts through overlay, shows the right merged content
//! (whiteouts honoured), and leaves no mount behind.

use std::io::Read;
use std::path::Path;

use sha2::Digest as _;
use strata_engine::{Engine, EngineOptions};
use strata_snapshot::{mount_all, LinuxSyscall, Syscall};

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, p, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn hex(d: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(d))
}

#[test]
fn two_hundred_layers_mount_and_merge() {
    if !strata_snapshot::overlay_supported() {
        eprintln!("skipped: no overlayfs");
        return;
    }
    const N: usize = 200;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_paths = Vec::new();
    for i in 0..N {
        let name = format!("l{i}");
        let body = format!("layer {i}\n");
        let mut entries: Vec<(&str, &[u8])> = vec![(&name, body.as_bytes())];
        if i == 150 {
            entries.push((".wh.l5", b""));
        }
        let t = tar_of(&entries);
        diff_ids.push(format!("\"sha256:{}\"", hex(&t)));
        let p = format!("layers/{i}.tar");
        layer_paths.push(format!("\"{p}\""));
        files.push((p, t));
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let cfg_name = format!("{}.json", hex(config.as_bytes()));
    let manifest = format!(r#"[{{"Config":"{cfg_name}","RepoTags":["deep:200"],"Layers":[{}]}}]"#, layer_paths.join(","));
    files.push((cfg_name, config.into_bytes()));
    files.push(("manifest.json".into(), manifest.into_bytes()));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    let archive = tar_of(&refs);

    let base = Path::new("/var/tmp/strata-tests");
    std::fs::create_dir_all(base).unwrap();
    let dir = tempfile::Builder::new().prefix("deep-").tempdir_in(base).unwrap();
    let engine = Engine::open(&EngineOptions { data_root: dir.path().join("root"), storage_driver: Some("overlay2".into()) }).unwrap();
    let lease = engine.store().lease().unwrap();
    let loaded = engine.images().load(&lease, Box::new(&archive[..])).unwrap();
    assert_eq!(loaded.len(), 1);
    let img = engine.images().resolve("deep:200").unwrap();
    let top = img.top_layer.clone().unwrap().to_string();

    let snaps = engine.snapshotter();
    let mounts = snaps.prepare("deep-container", Some(&top), Some(&lease)).unwrap();
    let target = dir.path().join("merged");
    std::fs::create_dir_all(&target).unwrap();
    mount_all(&LinuxSyscall, &mounts, &target).unwrap();
    let read = |n: &str| {
        let mut s = String::new();
        std::fs::File::open(target.join(n)).and_then(|mut f| f.read_to_string(&mut s)).map(|_| s)
    };
    let res = std::panic::catch_unwind(|| {
        assert_eq!(read("l0").unwrap(), "layer 0\n");
        assert_eq!(read("l199").unwrap(), "layer 199\n");
        assert!(read("l5").is_err(), "whiteout in layer 150 hides l5");
        std::fs::write(target.join("new"), "rw").unwrap();
    });
    LinuxSyscall.unmount(&target, false).unwrap();
    res.unwrap();
    // The write went to the container's own layer, not into any image layer.
    let changes = snaps.changes("deep-container").unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path, "/new");
    snaps.remove("deep-container").unwrap();
    drop(lease);
}
