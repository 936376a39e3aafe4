//! Hostile and broken clients: each gets the right status, and nothing half-written
//! becomes visible.

mod common;

use std::time::Duration;

use common::*;
use strata_registry::testutil::Conn;
use strata_registry::Digest;

#[tokio::test]
async fn invalid_names_tags_and_digests_are_400_never_500() {
    let r = Reg::start();
    r.push_image("ok", "v1", "ok").await;
    let cases = [
        ("GET", "/v2/UPPER/manifests/latest", "NAME_INVALID"),
        ("GET", "/v2/../../etc/passwd/manifests/latest", "NAME_INVALID"),
        ("GET", "/v2/ok/../ok/manifests/v1", "NAME_INVALID"),
        ("GET", "/v2/%2e%2e/manifests/v1", "NAME_INVALID"),
        ("GET", "/v2/_layers/tags/list", "NAME_INVALID"),
        ("POST", "/v2/a//b/blobs/uploads/", "NAME_INVALID"),
        ("GET", "/v2/ok/manifests/-bad", "TAG_INVALID"),
        ("PUT", "/v2/ok/manifests/.hidden", "TAG_INVALID"),
        ("GET", "/v2/ok/manifests/sha256:abc", "DIGEST_INVALID"),
        ("GET", "/v2/ok/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", "DIGEST_INVALID"),
        ("GET", "/v2/ok/blobs/sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "DIGEST_INVALID"),
        ("GET", "/v2/ok/blobs/notadigest", "DIGEST_INVALID"),
        ("DELETE", "/v2/ok/manifests/sha256:zz", "DIGEST_INVALID"),
    ];
    for (m, path, code) in cases {
        let res = r.req(m, path, &[], if m == "PUT" { b"{}" } else { b"" }).await;
        assert_eq!(res.status, 400, "{m} {path}: {res:?}");
        if m != "HEAD" {
            assert_eq!(res.code(), code, "{m} {path}");
        }
    }
    let put = r.req("PUT", "/v2/ok/blobs/uploads/00000000-0000-4000-8000-000000000000?digest=sha256:short", &[], b"x").await;
    assert_eq!((put.status, put.code().as_str()), (400, "DIGEST_INVALID"));
    // A digest with slashes matches no route at all: a plain 404.
    let res = r.head("/v2/ok/blobs/sha256:../../../../etc/passwd").await;
    assert_eq!(res.status, 404);
    // Nothing was created outside the tree by any of it.
    assert!(!r.root.path().join("etc").exists());
    assert!(!r.v2().join("repositories/etc").exists());
}

#[tokio::test]
async fn oversized_manifest_is_413() {
    let r = Reg::with(|c| c.max_manifest = 64 << 10);
    let big = vec![b' '; (64 << 10) + 1];
    let p = r.put_manifest("big", "v1", OCI_MANIFEST, &big).await;
    assert_eq!(p.status, 413);
    // The default limit takes 4 MiB manifests (the spec's minimum).
    let r = Reg::start();
    let img = r.push_image("big", "small", "big").await;
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    v["annotations"] = serde_json::json!({"pad": "x".repeat((4 << 20) - 2000)});
    let body = serde_json::to_vec(&v).unwrap();
    assert!(body.len() < 4 << 20);
    assert_eq!(r.put_manifest("big", "v1", OCI_MANIFEST, &body).await.status, 201);
    let mut huge = body.clone();
    huge.resize((4 << 20) + 10, b' ');
    assert_eq!(r.put_manifest("big", "v2", OCI_MANIFEST, &huge).await.status, 413);
    assert_eq!(r.get("/v2/big/manifests/v2").await.status, 404);
}

/// Sends a request head promising `promised` bytes, sends `sent` of them, and hangs up.
async fn cut_short(r: &Reg, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], promised: u64) {
    let mut c = Conn::open(r.addr()).await.unwrap();
    c.send_head(method, path, headers, Some(promised)).await.unwrap();
    c.send_body(body).await.unwrap();
    drop(c);
    // Let the server notice the hang-up and undo the chunk.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn truncated_chunk_is_undone_and_upload_continues() {
    let r = Reg::start();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let d = Digest::sha256_of(&data);
    let p = r.req("POST", "/v2/trunc/blobs/uploads/", &[], b"").await;
    let loc = p.header("location").unwrap().to_string();
    let a = r.req("PATCH", &loc, &[("Content-Range", "0-399999")], &data[..400_000]).await;
    assert_eq!(a.status, 202);
    // A second chunk cut off after 300 KB of its 600 KB.
    cut_short(&r, "PATCH", &loc, &[("Content-Range", "400000-999999")], &data[400_000..700_000], 600_000).await;
    let s = r.get(&loc).await;
    assert_eq!(s.header("range"), Some("0-399999"), "the partial chunk was rolled back");
    // The client retries the chunk from the same offset and finishes.
    let a = r.req("PATCH", &loc, &[("Content-Range", "400000-999999")], &data[400_000..]).await;
    assert_eq!(a.status, 202);
    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], b"").await;
    assert_eq!(put.status, 201);
    assert_eq!(r.get(&format!("/v2/trunc/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn client_gone_mid_monolithic_put_leaves_nothing_visible() {
    let r = Reg::start();
    let data = vec![7u8; 2_000_000];
    let d = Digest::sha256_of(&data);
    let p = r.req("POST", "/v2/gone/blobs/uploads/", &[], b"").await;
    let loc = p.header("location").unwrap().to_string();
    cut_short(&r, "PUT", &format!("{loc}?digest={d}"), &[], &data[..1_000_000], data.len() as u64).await;
    assert_eq!(r.head(&format!("/v2/gone/blobs/{d}")).await.status, 404);
    assert!(!r.v2().join(format!("blobs/sha256/{}/{}/data", &d.hex()[..2], d.hex())).exists());
    assert_eq!(r.get(&loc).await.header("range"), Some("0-0"));
    // Single-POST uploads cut short leave no session behind either.
    cut_short(&r, "POST", &format!("/v2/gone/blobs/uploads/?digest={d}"), &[], &data[..10], data.len() as u64).await;
    assert_eq!(r.head(&format!("/v2/gone/blobs/{d}")).await.status, 404);
    let sessions = std::fs::read_dir(r.v2().join("repositories/gone/_uploads")).unwrap().count();
    assert_eq!(sessions, 1, "only the first session remains");
    // And a manifest cut short is not stored.
    let img = r.push_image("gone", "v0", "gone").await;
    cut_short(&r, "PUT", "/v2/gone/manifests/v1", &[("Content-Type", OCI_MANIFEST)], &img.manifest[..20], img.manifest.len() as u64).await;
    assert_eq!(r.get("/v2/gone/manifests/v1").await.status, 404);
}

#[tokio::test]
async fn patch_sent_with_more_than_content_range() {
    let r = Reg::start();
    let p = r.req("POST", "/v2/size/blobs/uploads/", &[], b"").await;
    let loc = p.header("location").unwrap().to_string();
    // Content-Range says 5 bytes, Content-Length says 10.
    let a = r.req("PATCH", &loc, &[("Content-Range", "0-4")], b"0123456789").await;
    assert_eq!((a.status, a.code().as_str()), (400, "SIZE_INVALID"));
    assert_eq!(r.get(&loc).await.header("range"), Some("0-0"));
    let bad = r.req("PATCH", &loc, &[("Content-Range", "nonsense")], b"x").await;
    assert_eq!(bad.status, 416);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

/// 2000 upload sessions open at once, each on its own connection, each mid-body when the
/// next starts: all complete, and descriptors and memory come back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_uploads() {
    const N: usize = 2000;
    let r = Reg::start();
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let addr = r.addr();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let data = format!("concurrent upload {i} ").repeat(2000).into_bytes();
            let d = Digest::sha256_of(&data);
            let mut c = Conn::open(addr).await.expect("connect");
            let p = c.request("POST", "/v2/many/blobs/uploads/", &[], b"").await.expect("post");
            assert_eq!(p.status, 202);
            let loc = p.header("location").unwrap().to_string();
            // Half the body, then wait until every session is mid-upload.
            c.send_head("PUT", &format!("{loc}?digest={d}"), &[], Some(data.len() as u64)).await.unwrap();
            c.send_body(&data[..data.len() / 2]).await.unwrap();
            barrier.wait().await;
            c.send_body(&data[data.len() / 2..]).await.unwrap();
            let put = c.read_response(false).await.expect("put");
            assert_eq!(put.status, 201, "{put:?}");
            d
        }));
    }
    let mut digests = Vec::new();
    for t in tasks {
        digests.push(t.await.unwrap());
    }
    assert_eq!(digests.len(), N);
    for d in digests.iter().step_by(97) {
        assert_eq!(r.head(&format!("/v2/many/blobs/{d}")).await.status, 200);
    }
    assert_eq!(std::fs::read_dir(r.v2().join("repositories/many/_uploads")).unwrap().count(), 0);
    // Connections close; descriptors come back (a few may still be closing).
    let mut fds = open_fds();
    for _ in 0..50 {
        if fds <= fds_before + 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = open_fds();
    }
    assert!(fds <= fds_before + 16, "descriptors leaked: {fds_before} before, {fds} after");
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("{N} concurrent uploads: descriptors {fds_before} -> {fds}, RSS grew {grown} KiB (client and server)");
    assert!(grown < 768 * 1024, "memory grew by {grown} KiB for {N} uploads");
    assert_eq!(r.get("/v2/").await.status, 200, "still serving");
}
