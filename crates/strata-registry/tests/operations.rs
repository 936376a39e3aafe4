//! Running a registry: auth, TLS, read-only maintenance, restarts, gc.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::*;
use strata_registry::server::gc::{collect, GcOptions};
use strata_registry::server::{Config, Layout};
use strata_registry::testutil::TestServer;
use strata_registry::Digest;

fn basic(u: &str, p: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt::hash("s3cret", 5).unwrap())).unwrap();
    let r = Reg::with(|c| {
        c.htpasswd = Some(htpasswd.clone());
        c.realm = "basic-realm".into();
    });
    let good = basic("alice", "s3cret");
    let auth = [("Authorization", good.as_str())];
    let img = Image::new("auth");
    for blob in [&img.config, &img.layer] {
        let p = r.req("POST", "/v2/priv/blobs/uploads/", &auth, b"").await;
        let loc = p.header("location").unwrap().to_string();
        let d = Digest::sha256_of(blob);
        assert_eq!(r.req("PUT", &format!("{loc}?digest={d}"), &auth, blob).await.status, 201);
    }
    let p = r.req("PUT", "/v2/priv/manifests/v1", &[auth[0], ("Content-Type", OCI_MANIFEST)], &img.manifest).await;
    assert_eq!(p.status, 201);
    assert_eq!(r.req("GET", "/v2/priv/manifests/v1", &auth, b"").await.body, img.manifest);

    let wrong = basic("alice", "guess");
    let nobody = basic("mallory", "s3cret");
    for creds in [None, Some(wrong.as_str()), Some(nobody.as_str()), Some("Bearer token")] {
        let h: Vec<(&str, &str)> = creds.map(|c| ("Authorization", c)).into_iter().collect();
        for path in ["/v2/", "/v2/priv/manifests/v1", &format!("/v2/priv/blobs/{}", Digest::sha256_of(&img.layer)), "/v2/priv/missing/tags/list"] {
            let res = r.req("GET", path, &h, b"").await;
            assert_eq!(res.status, 401, "{path} with {creds:?}");
            assert_eq!(res.header("www-authenticate"), Some("Basic realm=\"basic-realm\""));
            assert_eq!(res.code(), "UNAUTHORIZED");
            assert!(!String::from_utf8_lossy(&res.body).contains("layer bytes"), "no data without auth");
        }
        let push = r.req("POST", "/v2/priv/blobs/uploads/", &h, b"").await;
        assert_eq!(push.status, 401);
    }
    assert_eq!(r.req("GET", "/v2/", &auth, b"").await.status, 200);
}

#[tokio::test]
async fn tls_when_given_a_certificate() {
    let (Ok(_), Ok(_)) = (which("openssl"), which("curl")) else {
        eprintln!("skipped: openssl or curl not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let r = Reg::with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    });
    let url = format!("https://{}/v2/", r.addr());
    let out = std::process::Command::new("curl").args(["-sS", "-i", "--cacert"]).arg(&cert).arg(&url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("docker-distribution-api-version: registry/2.0"));
    // Plain HTTP to the TLS port gets no answer.
    let plain = std::process::Command::new("curl").args(["-sS", "-m", "5"]).arg(format!("http://{}/v2/", r.addr())).output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("{}"));
    // A bad key is refused at start.
    std::fs::write(&key, "not a key").unwrap();
    let bad = strata_registry::server::Server::bind(Config {
        root: dir.path().join("root"),
        addr: "127.0.0.1:0".into(),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Config::default()
    });
    assert!(bad.is_err());
}

fn which(p: &str) -> Result<(), ()> {
    std::process::Command::new("sh").args(["-c", &format!("command -v {p}")]).output().ok().filter(|o| o.status.success()).map(|_| ()).ok_or(())
}

#[tokio::test]
async fn read_only_mode() {
    let root = tempfile::tempdir().unwrap();
    let cfg = Config { root: root.path().to_path_buf(), ..Config::default() };
    let img = {
        let r = Reg { server: TestServer::start(cfg.clone()), root: tempfile::tempdir().unwrap() };
        r.push_image("ro", "v1", "ro").await
    };
    let s = TestServer::start(Config { read_only: true, ..cfg });
    let get = strata_registry::testutil::request(s.addr, "GET", "/v2/ro/manifests/v1", &[], b"").await;
    assert_eq!((get.status, get.body), (200, img.manifest.clone()));
    for (m, p) in [("POST", "/v2/ro/blobs/uploads/"), ("PUT", "/v2/ro/manifests/v2"), ("DELETE", "/v2/ro/manifests/v1")] {
        let res = strata_registry::testutil::request(s.addr, m, p, &[], if m == "PUT" { &img.manifest } else { b"" }).await;
        assert_eq!((res.status, res.code().as_str()), (405, "UNSUPPORTED"), "{m} {p}");
    }
    assert!(!root.path().join("docker/registry/v2/repositories/ro/_manifests/tags/v2").exists());
}

#[tokio::test]
async fn uploads_resume_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let cfg = Config { root: root.path().to_path_buf(), ..Config::default() };
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 199) as u8).collect();
    let d = Digest::sha256_of(&data);
    let loc = {
        let s = TestServer::start(cfg.clone());
        let p = strata_registry::testutil::request(s.addr, "POST", "/v2/resume/blobs/uploads/", &[], b"").await;
        let loc = p.header("location").unwrap().to_string();
        let a = strata_registry::testutil::request(s.addr, "PATCH", &loc, &[("Content-Range", "0-199999")], &data[..200_000]).await;
        assert_eq!(a.status, 202);
        loc
    };
    // A new process: the session is what is on disk.
    let s = TestServer::start(cfg);
    let st = strata_registry::testutil::request(s.addr, "GET", &loc, &[], b"").await;
    assert_eq!((st.status, st.header("range")), (204, Some("0-199999")));
    let a = strata_registry::testutil::request(s.addr, "PATCH", &loc, &[("Content-Range", "200000-499999")], &data[200_000..]).await;
    assert_eq!(a.status, 202);
    let put = strata_registry::testutil::request(s.addr, "PUT", &format!("{loc}?digest={d}"), &[], b"").await;
    assert_eq!(put.status, 201, "the digest is checked by re-reading what the first process wrote");
    let g = strata_registry::testutil::request(s.addr, "GET", &format!("/v2/resume/blobs/{d}"), &[], b"").await;
    assert_eq!(g.body, data);
}

fn age(path: &std::path::Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(t).unwrap();
}

fn blob_exists(r: &Reg, d: &Digest) -> bool {
    r.v2().join(format!("blobs/{}/{}/{}/data", d.algorithm().name(), &d.hex()[..2], d.hex())).is_file()
}

#[tokio::test]
async fn gc_removes_unreferenced_keeps_referrers_and_young_things() {
    let r = Reg::start();
    let tagged = r.push_image("gc/app", "v1", "tagged").await;
    let untagged = r.push_image("gc/app", "tmp", "untagged").await;
    assert_eq!(r.req("DELETE", "/v2/gc/app/manifests/tmp", &[], b"").await.status, 202);
    let sig = Image::with("sig", OCI_MANIFEST, Some((&tagged.digest, tagged.manifest.len() as u64)), Some("application/vnd.example.sig"));
    r.push_blob("gc/app", &sig.config).await;
    r.push_blob("gc/app", &sig.layer).await;
    assert_eq!(r.put_manifest("gc/app", &sig.digest.to_string(), OCI_MANIFEST, &sig.manifest).await.status, 201);
    let orphan = r.push_blob("gc/app", b"orphan layer").await;
    // Two sessions: one idle for two hours, one fresh.
    let stale = r.req("POST", "/v2/gc/app/blobs/uploads/", &[], b"").await.header("location").unwrap().rsplit('/').next().unwrap().to_string();
    let fresh = r.req("POST", "/v2/gc/app/blobs/uploads/", &[], b"").await.header("location").unwrap().rsplit('/').next().unwrap().to_string();
    let sdir = r.v2().join("repositories/gc/app/_uploads").join(&stale);
    std::fs::write(sdir.join("startedat"), "2000-01-01T00:00:00Z").unwrap();
    age(&sdir.join("startedat"), 7200);
    age(&sdir, 7200);
    let layout = Layout::open(r.root.path()).unwrap();
    // Everything is young: the default min age keeps it all but the stale session.
    let rep = collect(&layout, &GcOptions::default()).unwrap();
    assert!(rep.blobs.is_empty(), "{rep:?}");
    assert_eq!(rep.uploads, vec![("gc/app".to_string(), stale.clone())]);
    assert!(!sdir.exists());
    assert!(r.v2().join("repositories/gc/app/_uploads").join(&fresh).exists());

    // With no minimum age, only what was written in the second gc starts is young.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let now = GcOptions { min_age: Duration::ZERO, ..GcOptions::default() };
    let dry = collect(&layout, &GcOptions { dry_run: true, ..now.clone() }).unwrap();
    assert_eq!(dry.blobs, vec![orphan.clone()]);
    assert!(blob_exists(&r, &orphan), "dry run removes nothing");
    let rep = collect(&layout, &now).unwrap();
    assert_eq!(rep.blobs, vec![orphan.clone()]);
    assert!(!blob_exists(&r, &orphan));
    assert_eq!(r.head(&format!("/v2/gc/app/blobs/{orphan}")).await.status, 404, "its link went too");
    assert!(blob_exists(&r, &untagged.digest), "untagged manifests stay without --delete-untagged");

    let rep = collect(&layout, &GcOptions { delete_untagged: true, ..now.clone() }).unwrap();
    assert_eq!(rep.manifests, vec![("gc/app".to_string(), untagged.digest.clone())]);
    for d in [untagged.digest.clone(), Digest::sha256_of(&untagged.config), Digest::sha256_of(&untagged.layer)] {
        assert!(!blob_exists(&r, &d), "{d} of the untagged image");
    }
    // The tagged image and its (untagged) referrer survive, and are served.
    assert_eq!(r.get("/v2/gc/app/manifests/v1").await.body, tagged.manifest);
    assert_eq!(r.get(&format!("/v2/gc/app/manifests/{}", sig.digest)).await.status, 200);
    assert_eq!(r.get(&format!("/v2/gc/app/blobs/{}", Digest::sha256_of(&sig.layer))).await.status, 200);
    let refs = r.get(&format!("/v2/gc/app/referrers/{}", tagged.digest)).await;
    assert_eq!(refs.json()["manifests"].as_array().unwrap().len(), 1);
    assert!(collect(&layout, &GcOptions { delete_untagged: true, ..now }).unwrap().blobs.is_empty(), "nothing left to collect");
}

/// A push that commits while gc is marking keeps its blob: gc takes the lock only to
/// sweep, and keeps whatever was linked since it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_blobs_pushed_during_the_run() {
    let r = Reg::start();
    r.push_image("race", "v1", "race").await;
    let layout = std::sync::Arc::new(Layout::open(r.root.path()).unwrap());
    // An in-flight write holds the lock shared; gc marks, then waits for it.
    let inflight = layout.write_guard().unwrap();
    let l2 = layout.clone();
    let gc = std::thread::spawn(move || collect(&l2, &GcOptions { min_age: Duration::ZERO, ..GcOptions::default() }).unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = r.push_blob("race", b"pushed while gc runs").await;
    drop(inflight);
    let rep = gc.join().unwrap();
    assert!(!rep.blobs.contains(&d), "{rep:?}");
    assert!(blob_exists(&r, &d));
    assert_eq!(r.head(&format!("/v2/race/blobs/{d}")).await.status, 200);
}
