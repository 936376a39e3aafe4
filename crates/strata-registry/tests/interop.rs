//! The same directory, both registries: Debian's `docker-registry` (distribution 2.8)
//! serves what strata wrote and strata serves what it wrote, with pushes by skopeo and by
//! the reference docker. Skipped, with a message, when those tools are absent.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;
use strata_registry::server::Config;
use strata_registry::testutil::{have, request, Reference, TestServer};
use strata_registry::Digest;

/// A two-layer OCI image layout at `dir` (tag `v1`), built from scratch.
fn oci_layout(dir: &Path, seed: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = Digest::sha256_of(b);
        std::fs::write(blobs.join(d.hex()), b).unwrap();
        (d, b.len())
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..2 {
        let mut t = tar::Builder::new(Vec::new());
        let content = format!("{seed} file {i}\n").repeat(100);
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        t.append_data(&mut h, format!("etc/{seed}-{i}"), content.as_bytes()).unwrap();
        let tar = t.into_inner().unwrap();
        let (d, n) = put(&tar);
        diff_ids.push(d.to_string());
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n}));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let (cd, cn) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cn},
        "layers": layers,
    }))
    .unwrap();
    let (md, mn) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": mn, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn tools(need: &[&str]) -> bool {
    let missing: Vec<&&str> = need.iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        eprintln!("skipped: {missing:?} not installed (sh ../shared/peers/setup.sh registry tools)");
        return false;
    }
    true
}

/// Pushes the layout with skopeo as OCI (`:oci`) and as Docker schema 2 (`:docker`).
fn push_both(addr: std::net::SocketAddr, layout: &Path, repo: &str) {
    let src = format!("oci:{}:v1", layout.display());
    skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{addr}/{repo}:oci")]);
    skopeo(&["copy", "--dest-tls-verify=false", "--format", "v2s2", &src, &format!("docker://{addr}/{repo}:docker")]);
}

/// What a registry serves for a tag: manifest bytes, content type, and every blob's bytes.
async fn fetch(addr: std::net::SocketAddr, repo: &str, tag: &str) -> (Vec<u8>, String, Vec<Vec<u8>>) {
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")];
    let m = request(addr, "GET", &format!("/v2/{repo}/manifests/{tag}"), &accept, b"").await;
    assert_eq!(m.status, 200, "{repo}:{tag} on {addr}: {m:?}");
    let v = m.json();
    let mut blobs = Vec::new();
    let mut descs = vec![v["config"].clone()];
    descs.extend(v["layers"].as_array().unwrap().iter().cloned());
    for d in descs {
        let digest = d["digest"].as_str().unwrap();
        let h = request(addr, "HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"").await;
        assert_eq!(h.header("content-length"), Some(d["size"].to_string().as_str()), "HEAD carries Content-Length");
        let b = request(addr, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"").await;
        assert_eq!(b.status, 200);
        assert_eq!(Digest::sha256_of(&b.body).to_string(), digest);
        blobs.push(b.body);
    }
    let ct = m.header("content-type").unwrap().to_string();
    (m.body, ct, blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_serves_what_strata_wrote() {
    if !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (layout, root) = (work.path().join("layout"), work.path().join("root"));
    oci_layout(&layout, "s2r");
    let mut served = Vec::new();
    {
        let s = TestServer::start(Config { root: root.clone(), ..Config::default() });
        push_both(s.addr, &layout, "interop/app");
        // A chunked push too, and a tag moved to another manifest.
        skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/interop/other:v1", s.addr)]);
        for tag in ["oci", "docker"] {
            served.push(fetch(s.addr, "interop/app", tag).await);
        }
    }
    let r = Reference::start(&root).unwrap();
    for (tag, want) in ["oci", "docker"].iter().zip(&served) {
        let got = fetch(r.addr, "interop/app", tag).await;
        assert_eq!(&got, want, "{tag}: the reference serves the same bytes and type");
    }
    let tags = request(r.addr, "GET", "/v2/interop/app/tags/list", &[], b"").await.json();
    // Distribution 2.8 lists tags in directory order; the set is what must match.
    let mut tags: Vec<String> = serde_json::from_value(tags["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["docker", "oci"]);
    let cat = request(r.addr, "GET", "/v2/_catalog", &[], b"").await.json();
    assert_eq!(cat["repositories"], json!(["interop/app", "interop/other"]));
    let out = work.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{}/interop/app:oci", r.addr), &format!("oci:{}:v1", out.display())]);
    // Everything strata wrote is referenced: the reference's gc finds nothing to delete.
    let gc = r.gc_dry_run();
    assert!(gc.contains(" 0 blobs and 0 manifests eligible for deletion"), "{gc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_serves_what_the_reference_wrote() {
    if !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (layout, root) = (work.path().join("layout"), work.path().join("root"));
    oci_layout(&layout, "r2s");
    let mut served = Vec::new();
    {
        let r = Reference::start(&root).unwrap();
        push_both(r.addr, &layout, "interop/app");
        for tag in ["oci", "docker"] {
            served.push(fetch(r.addr, "interop/app", tag).await);
        }
        // An upload left behind by the reference (its own session format).
        let p = request(r.addr, "POST", "/v2/interop/app/blobs/uploads/", &[], b"").await;
        assert_eq!(p.status, 202);
    }
    let s = TestServer::start(Config { root: root.clone(), ..Config::default() });
    for (tag, want) in ["oci", "docker"].iter().zip(&served) {
        assert_eq!(&fetch(s.addr, "interop/app", tag).await, want, "{tag}");
    }
    assert_eq!(request(s.addr, "GET", "/v2/interop/app/tags/list", &[], b"").await.json()["tags"], json!(["docker", "oci"]));
    let out = work.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{}/interop/app:docker", s.addr), &format!("oci:{}:v1", out.display())]);
    // And strata pushes on top of the reference's directory.
    skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/interop/app:again", s.addr)]);
    drop(s);
    let r = Reference::start(&root).unwrap();
    assert_eq!(fetch(r.addr, "interop/app", "again").await.0, served[0].0);
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_and_pulls_through_both() {
    if !tools(&["docker-registry", "docker"]) || !docker(&["info"]).status.success() || !docker(&["image", "inspect", "busybox"]).status.success() {
        eprintln!("skipped: the reference docker (with busybox imported) is not running (sh ../shared/peers/setup.sh docker)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let id = docker_ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).trim().to_string();
    // docker → strata, then the reference serves it to docker.
    let root = work.path().join("a");
    let s = TestServer::start(Config { root: root.clone(), ..Config::default() });
    let pushed = format!("{}/interop/busybox:v1", s.addr);
    docker_ok(&["tag", "busybox", &pushed]);
    let out = docker_ok(&["push", &pushed]);
    assert!(out.contains("digest: sha256:"), "{out}");
    // A second push finds every layer there ("Layer already exists": HEAD with a length).
    let again = docker_ok(&["push", &pushed]);
    assert!(again.contains("Layer already exists"), "{again}");
    docker_ok(&["rmi", &pushed]);
    drop(s);
    let r = Reference::start(&root).unwrap();
    let pulled = format!("{}/interop/busybox:v1", r.addr);
    docker_ok(&["pull", &pulled]);
    assert_eq!(docker_ok(&["image", "inspect", "-f", "{{.Id}}", &pulled]).trim(), id);
    docker_ok(&["rmi", &pulled]);
    drop(r);
    // docker → reference, then strata serves it to docker.
    let root = work.path().join("b");
    let r = Reference::start(&root).unwrap();
    let pushed = format!("{}/interop/busybox:v2", r.addr);
    docker_ok(&["tag", "busybox", &pushed]);
    docker_ok(&["push", &pushed]);
    docker_ok(&["rmi", &pushed]);
    drop(r);
    let s = TestServer::start(Config { root, ..Config::default() });
    let pulled = format!("{}/interop/busybox:v2", s.addr);
    docker_ok(&["pull", &pulled]);
    assert_eq!(docker_ok(&["image", "inspect", "-f", "{{.Id}}", &pulled]).trim(), id);
    docker_ok(&["rmi", &pulled]);
}
