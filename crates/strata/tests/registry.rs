//! `strata registry serve|gc` as processes: killed with SIGKILL mid-upload and
//! mid-manifest, the directory stays valid for strata and for the reference registry,
//! and uploads resume after the restart.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_registry::testutil::{blocking_request as req, free_port, start_partial, try_blocking_request, Reference};
use strata_registry::Digest;

struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(root: &Path, extra: &[&str]) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["registry", "serve", "--addr", &addr.to_string(), "--root"])
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with(&format!("strata registry listening on http://{addr}")), "{line:?}");
        Serve { child, addr }
    }
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().unwrap()
}

fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let p = req(addr, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], data);
    assert_eq!(p.status, 201, "{p:?}");
    d
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(config: &Digest, clen: usize, layer: &Digest, llen: usize, n: usize) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{clen}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{llen}}}],"annotations":{{"n":"{n}"}}}}"#
    )
    .into_bytes()
}

/// Every `link` names a digest, every `data` hashes to its path: what both registries
/// need of a directory. Temp files (`.*.tmp-*`) may be left by a kill; neither reads them.
fn assert_valid(root: &Path) -> (usize, usize) {
    let v2 = root.join("docker/registry/v2");
    let mut stack = vec![v2.clone()];
    let (mut links, mut blobs) = (0, 0);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name().into_string().unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if name == "link" {
                let s = std::fs::read_to_string(&p).unwrap();
                assert!(s.parse::<Digest>().is_ok(), "{}: {s:?}", p.display());
                links += 1;
            } else if name == "data" && p.starts_with(v2.join("blobs")) {
                let hex = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
                let alg = p.parent().unwrap().parent().unwrap().parent().unwrap().file_name().unwrap().to_str().unwrap();
                let bytes = std::fs::read(&p).unwrap();
                let want: Digest = format!("{alg}:{hex}").parse().unwrap();
                assert_eq!(Digest::of(want.algorithm(), &bytes), want, "{} holds other bytes", p.display());
                blobs += 1;
            }
        }
    }
    (links, blobs)
}

#[test]
fn killed_mid_upload_resumes_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i % 233) as u8).collect();
    let d = Digest::sha256_of(&data);
    let s = Serve::start(root.path(), &[]);
    let p = req(s.addr, "POST", "/v2/kill/up/blobs/uploads/", &[], b"");
    let loc = p.header("location").unwrap().to_string();
    assert_eq!(req(s.addr, "PATCH", &loc, &[("Content-Range", "0-999999")], &data[..1_000_000]).status, 202);
    // The second chunk is in flight (3 of 7 MB sent) when the server is killed.
    let conn = start_partial(s.addr, "PATCH", &loc, &[("Content-Range", "1000000-7999999")], 7_000_000, &data[1_000_000..4_000_000]);
    std::thread::sleep(Duration::from_millis(300));
    s.kill();
    drop(conn);
    assert_valid(root.path());
    let s = Serve::start(root.path(), &[]);
    let st = req(s.addr, "GET", &loc, &[], b"");
    assert_eq!(st.status, 204);
    let end: usize = st.header("range").unwrap().split('-').nth(1).unwrap().parse().unwrap();
    assert!((999_999..4_000_000).contains(&end), "{end}");
    let from = end + 1;
    let cr = format!("{from}-{}", data.len() - 1);
    assert_eq!(req(s.addr, "PATCH", &loc, &[("Content-Range", &cr)], &data[from..]).status, 202);
    let put = req(s.addr, "PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(req(s.addr, "GET", &format!("/v2/kill/up/blobs/{d}"), &[], b"").body, data);
    drop(s);
    if let Some(r) = Reference::start(root.path()) {
        let g = req(r.addr, "GET", &format!("/v2/kill/up/blobs/{d}"), &[], b"");
        assert_eq!(g.body.len(), data.len());
    } else {
        eprintln!("reference check skipped: docker-registry not installed");
    }
}

#[test]
fn killed_mid_manifest_pushes_leave_a_valid_directory() {
    let root = tempfile::tempdir().unwrap();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let layer = vec![42u8; 100_000];
    for round in 0..4 {
        let s = Serve::start(root.path(), &[]);
        let (cd, ld) = (push_blob(s.addr, "kill/man", &config), push_blob(s.addr, "kill/man", &layer));
        let addr = s.addr;
        let (config_len, layer_len) = (config.len(), layer.len());
        let pusher = std::thread::spawn(move || {
            for n in 0.. {
                let m = manifest(&cd, config_len, &ld, layer_len, round * 100_000 + n);
                match try_blocking_request(addr, "PUT", &format!("/v2/kill/man/manifests/t{}", n % 50), &[("Content-Type", OCI_MANIFEST)], &m) {
                    Ok(r) => assert_eq!(r.status, 201, "{r:?}"),
                    Err(_) => return n,
                }
            }
            unreachable!()
        });
        std::thread::sleep(Duration::from_millis(300 + round as u64 * 170));
        s.kill();
        let pushed = pusher.join().unwrap();
        assert!(pushed > 0, "round {round}: nothing pushed before the kill");
        let (links, blobs) = assert_valid(root.path());
        assert!(links > 0 && blobs >= 3);
    }
    // strata serves every tag it lists, and so does the reference, byte for byte.
    let s = Serve::start(root.path(), &[]);
    let tags = req(s.addr, "GET", "/v2/kill/man/tags/list", &[], b"").json();
    let tags: Vec<String> = serde_json::from_value(tags["tags"].clone()).unwrap();
    assert!(!tags.is_empty());
    let mut served = Vec::new();
    for t in &tags {
        let g = req(s.addr, "GET", &format!("/v2/kill/man/manifests/{t}"), &[], b"");
        assert_eq!(g.status, 200, "{t}");
        assert_eq!(Digest::sha256_of(&g.body).to_string(), g.header("docker-content-digest").unwrap());
        served.push(g.body);
    }
    drop(s);
    if let Some(r) = Reference::start(root.path()) {
        for (t, body) in tags.iter().zip(&served) {
            let g = req(r.addr, "GET", &format!("/v2/kill/man/manifests/{t}"), &[("Accept", OCI_MANIFEST)], b"");
            assert_eq!((g.status, &g.body), (200, body), "{t} on the reference");
        }
        // The reference's gc reads the directory; what it would delete is only what a
        // kill left unreferenced (a manifest blob whose revision link was never written).
        let gc = r.gc_dry_run();
        assert!(gc.contains("manifests eligible for deletion"), "{gc}");
        let eligible: Vec<&str> = gc.lines().filter(|l| l.contains("eligible for deletion:")).collect();
        for body in &served {
            let d = Digest::sha256_of(body).to_string();
            assert!(!eligible.iter().any(|l| l.contains(&d)), "a served manifest would be collected: {eligible:?}");
        }
    } else {
        eprintln!("reference check skipped: docker-registry not installed");
    }
}

#[test]
fn gc_and_read_only_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let s = Serve::start(root.path(), &[]);
    let orphan = push_blob(s.addr, "cli/gc", b"nobody references me");
    let (cd, ld) = (push_blob(s.addr, "cli/gc", b"{}"), push_blob(s.addr, "cli/gc", b"layer"));
    let m = manifest(&cd, 2, &ld, 5, 0);
    assert_eq!(req(s.addr, "PUT", "/v2/cli/gc/manifests/v1", &[("Content-Type", OCI_MANIFEST)], &m).status, 201);
    drop(s);
    std::thread::sleep(Duration::from_millis(2100));
    let dry = strata(&["registry", "gc", "--dry-run", "--min-age", "0s", "--root", r]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains(&format!("blob {orphan} eligible for deletion")), "{out}");
    assert!(out.ends_with("3 blobs marked, 1 blobs and 0 manifests eligible for deletion, 0 uploads eligible for deletion\n"), "{out}");
    let run = strata(&["registry", "gc", "--min-age", "0s", "--root", r]);
    assert!(String::from_utf8_lossy(&run.stdout).contains(&format!("blob {orphan} deleted")));
    let s = Serve::start(root.path(), &["--read-only"]);
    assert_eq!(req(s.addr, "GET", "/v2/cli/gc/manifests/v1", &[], b"").body, m);
    assert_eq!(req(s.addr, "HEAD", &format!("/v2/cli/gc/blobs/{orphan}"), &[], b"").status, 404);
    let w = req(s.addr, "POST", "/v2/cli/gc/blobs/uploads/", &[], b"");
    assert_eq!((w.status, w.code().as_str()), (405, "UNSUPPORTED"));
    drop(s);
    let bad = strata(&["registry", "serve", "--tls-cert", "/nonexistent"]);
    assert!(!bad.status.success());
}

#[test]
fn serve_reads_a_distribution_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: {addr}\n", dir.path().display()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["registry", "serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let s = Serve { child, addr: addr.parse().unwrap() };
    assert_eq!(line, format!("strata registry listening on http://{addr} (root {}/data)\n", dir.path().display()));
    assert!(dir.path().join("data/docker/registry/v2").is_dir());
    assert_eq!(req(s.addr, "POST", "/v2/x/blobs/uploads/", &[], b"").status, 405, "read-only from the file");
    drop(s);
    std::fs::write(&cfg, "auth:\n  token:\n    realm: x\n").unwrap();
    let bad = strata(&["registry", "serve", "--config", cfg.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("only htpasswd auth is supported"), "{}", String::from_utf8_lossy(&bad.stderr));
}
