//! The distribution-spec API, endpoint by endpoint, checked the way the OCI conformance
//! suite checks it (pull, push, content discovery, content management), including what
//! the reference registry gets wrong: 416 on out-of-order chunks, RFC 9110 ranges, 400 on
//! invalid digests, referrers, sha512.

mod common;

use common::*;
use strata_registry::Digest;

#[tokio::test]
async fn base_endpoint_and_headers() {
    let r = Reg::start();
    let v = r.get("/v2/").await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body, b"{}");
    assert_eq!(v.header("docker-distribution-api-version"), Some("registry/2.0"));
    // Every /v2 answer carries the version header, errors included.
    let e = r.get("/v2/none/manifests/latest").await;
    assert_eq!(e.status, 404);
    assert_eq!(e.header("docker-distribution-api-version"), Some("registry/2.0"));
    assert_eq!(e.code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn pull_blobs_and_manifests() {
    let r = Reg::start();
    let img = r.push_image("pull/app", "v1", "pull").await;
    let ld = Digest::sha256_of(&img.layer);

    let h = r.head(&format!("/v2/pull/app/blobs/{ld}")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(img.layer.len().to_string().as_str()));
    assert_eq!(h.header("docker-content-digest"), Some(ld.to_string().as_str()));
    assert!(h.body.is_empty());

    let g = r.get(&format!("/v2/pull/app/blobs/{ld}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, img.layer);
    assert_eq!(g.header("content-type"), Some("application/octet-stream"));

    for reference in ["v1".to_string(), img.digest.to_string()] {
        let m = r.get(&format!("/v2/pull/app/manifests/{reference}")).await;
        assert_eq!(m.status, 200);
        assert_eq!(m.body, img.manifest, "stored as the exact bytes pushed");
        assert_eq!(m.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(m.header("docker-content-digest"), Some(img.digest.to_string().as_str()));
        let h = r.head(&format!("/v2/pull/app/manifests/{reference}")).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-length"), Some(img.manifest.len().to_string().as_str()));
        assert_eq!(h.header("docker-content-digest"), Some(img.digest.to_string().as_str()));
    }
    let etag = format!("\"{}\"", img.digest);
    let nm = r.req("GET", "/v2/pull/app/manifests/v1", &[("If-None-Match", &etag)], b"").await;
    assert_eq!(nm.status, 304);

    let missing = Digest::sha256_of(b"nope");
    let g = r.get(&format!("/v2/pull/app/blobs/{missing}")).await;
    assert_eq!((g.status, g.code().as_str()), (404, "BLOB_UNKNOWN"));
    let h = r.head(&format!("/v2/pull/app/blobs/{missing}")).await;
    assert_eq!(h.status, 404);
    assert!(h.body.is_empty());
    let m = r.get("/v2/pull/app/manifests/v2").await;
    assert_eq!((m.status, m.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // A blob is served by a repository only through its own link.
    let other = r.get(&format!("/v2/pull/other/blobs/{ld}")).await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn push_monolithic_single_post_and_empty_blob() {
    let r = Reg::start();
    let data = b"single post".to_vec();
    let d = Digest::sha256_of(&data);
    let p = r.req("POST", &format!("/v2/push/a/blobs/uploads/?digest={d}"), &[], &data).await;
    assert_eq!(p.status, 201, "{p:?}");
    assert_eq!(p.header("location"), Some(format!("/v2/push/a/blobs/{d}").as_str()));
    assert_eq!(p.header("docker-content-digest"), Some(d.to_string().as_str()));
    assert_eq!(r.get(&format!("/v2/push/a/blobs/{d}")).await.body, data);

    let e = r.push_blob("push/a", b"").await;
    let g = r.get(&format!("/v2/push/a/blobs/{e}")).await;
    assert_eq!((g.status, g.body.len()), (200, 0));
    assert_eq!(g.header("content-length"), Some("0"));
    let on_disk = r.v2().join(format!("blobs/sha256/{}/{}/data", &e.hex()[..2], e.hex()));
    assert_eq!(std::fs::metadata(on_disk).unwrap().len(), 0);

    let bad = Digest::sha256_of(b"something else");
    let p = r.req("POST", &format!("/v2/push/a/blobs/uploads/?digest={bad}"), &[], &data).await;
    assert_eq!((p.status, p.code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(r.head(&format!("/v2/push/a/blobs/{bad}")).await.status, 404);
    assert!(std::fs::read_dir(r.v2().join("repositories/push/a/_uploads")).unwrap().next().is_none(), "the failed session is gone");
}

#[tokio::test]
async fn push_chunked_with_content_range_and_out_of_order_416() {
    let r = Reg::start();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    let p = r.req("POST", "/v2/chunk/blobs/uploads/", &[], b"").await;
    assert_eq!(p.status, 202);
    assert_eq!(p.header("range"), Some("0-0"));
    assert!(p.header("docker-upload-uuid").is_some());
    let mut loc = p.header("location").unwrap().to_string();
    let chunks = [&data[..100_000], &data[100_000..250_000], &data[250_000..]];
    let mut off = 0usize;
    for (i, c) in chunks.iter().enumerate() {
        if i == 2 {
            // Out of order: a chunk that starts past the session's end.
            let cr = format!("{}-{}", off + 10, off + 10 + c.len() - 1);
            let bad = r.req("PATCH", &loc, &[("Content-Range", &cr), ("Content-Type", "application/octet-stream")], c).await;
            assert_eq!((bad.status, bad.code().as_str()), (416, "RANGE_INVALID"));
            assert_eq!(bad.header("range"), Some(format!("0-{}", off - 1).as_str()));
            // Status shows the session unchanged.
            let s = r.get(&loc).await;
            assert_eq!(s.status, 204);
            assert_eq!(s.header("range"), Some(format!("0-{}", off - 1).as_str()));
        }
        let cr = format!("{}-{}", off, off + c.len() - 1);
        let a = r.req("PATCH", &loc, &[("Content-Range", &cr), ("Content-Type", "application/octet-stream")], c).await;
        assert_eq!(a.status, 202, "{a:?}");
        off += c.len();
        assert_eq!(a.header("range"), Some(format!("0-{}", off - 1).as_str()));
        loc = a.header("location").unwrap().to_string();
    }
    // A Content-Length that disagrees with Content-Range.
    let p2 = r.req("POST", "/v2/chunk/blobs/uploads/", &[], b"").await;
    let l2 = p2.header("location").unwrap().to_string();
    let sz = r.req("PATCH", &l2, &[("Content-Range", "0-9")], b"abc").await;
    assert_eq!(sz.status, 400);
    assert_eq!(sz.code(), "SIZE_INVALID");

    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], b"").await;
    assert_eq!(put.status, 201);
    assert_eq!(r.get(&format!("/v2/chunk/blobs/{d}")).await.body, data);
    // The session is gone after commit.
    assert_eq!(r.get(&loc).await.status, 404);
}

#[tokio::test]
async fn push_streamed_status_and_cancel() {
    let r = Reg::start();
    let p = r.req("POST", "/v2/stream/blobs/uploads/", &[], b"").await;
    let loc = p.header("location").unwrap().to_string();
    for part in [&b"hello "[..], b"streamed ", b"world"] {
        let a = r.req("PATCH", &loc, &[("Content-Type", "application/octet-stream")], part).await;
        assert_eq!(a.status, 202);
    }
    let s = r.get(&loc).await;
    assert_eq!((s.status, s.header("range")), (204, Some("0-19")));
    let d = Digest::sha256_of(b"hello streamed world");
    // The final PUT may carry the last bytes too.
    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], b"").await;
    assert_eq!(put.status, 201);

    let p = r.req("POST", "/v2/stream/blobs/uploads/", &[], b"").await;
    let loc = p.header("location").unwrap().to_string();
    r.req("PATCH", &loc, &[], b"to be cancelled").await;
    assert_eq!(r.req("DELETE", &loc, &[], b"").await.status, 204);
    let g = r.get(&loc).await;
    assert_eq!((g.status, g.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(r.req("DELETE", &loc, &[], b"").await.status, 404);
    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], b"x").await;
    assert_eq!(put.status, 404);
    // An id that is not a UUID never becomes a path.
    let t = r.get("/v2/stream/blobs/uploads/..%2f..%2fetc").await;
    assert_eq!(t.status, 404);
    let missing = r.req("PUT", &loc, &[], b"").await;
    assert_eq!(missing.status, 400, "PUT without digest");
}

#[tokio::test]
async fn cross_repository_mount() {
    let r = Reg::start();
    let d = r.push_blob("mount/src", b"shared layer").await;
    let m = r.req("POST", &format!("/v2/mount/dst/blobs/uploads/?mount={d}&from=mount/src"), &[], b"").await;
    assert_eq!(m.status, 201);
    assert_eq!(m.header("location"), Some(format!("/v2/mount/dst/blobs/{d}").as_str()));
    assert_eq!(m.header("docker-content-digest"), Some(d.to_string().as_str()));
    assert_eq!(r.get(&format!("/v2/mount/dst/blobs/{d}")).await.body, b"shared layer");
    // From a repository that lacks it: an ordinary upload session.
    let missing = Digest::sha256_of(b"absent");
    let m = r.req("POST", &format!("/v2/mount/dst/blobs/uploads/?mount={missing}&from=mount/src"), &[], b"").await;
    assert_eq!(m.status, 202);
    assert!(m.header("location").unwrap().contains("/blobs/uploads/"));
    let bad = r.req("POST", "/v2/mount/dst/blobs/uploads/?mount=sha256:zz&from=mount/src", &[], b"").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "DIGEST_INVALID"));
    let badfrom = r.req("POST", &format!("/v2/mount/dst/blobs/uploads/?mount={d}&from=../x"), &[], b"").await;
    assert_eq!((badfrom.status, badfrom.code().as_str()), (400, "NAME_INVALID"));
}

#[tokio::test]
async fn manifests_of_every_type_stored_byte_exact() {
    let r = Reg::start();
    let docker = Image::with("docker", DOCKER_MANIFEST, None, None);
    r.push_blob("types", &docker.config).await;
    r.push_blob("types", &docker.layer).await;
    let p = r.put_manifest("types", "docker", DOCKER_MANIFEST, &docker.manifest).await;
    assert_eq!(p.status, 201);
    assert_eq!(p.header("location"), Some(format!("/v2/types/manifests/{}", docker.digest).as_str()));
    let oci = r.push_image("types", "oci", "oci").await;
    for (mt, tag) in [(OCI_INDEX, "index"), ("application/vnd.docker.distribution.manifest.list.v2+json", "list")] {
        let child_type = if mt == OCI_INDEX { OCI_MANIFEST } else { DOCKER_MANIFEST };
        let child = if mt == OCI_INDEX { &oci } else { &docker };
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[{{"mediaType":"{child_type}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            child.digest,
            child.manifest.len()
        );
        let p = r.put_manifest("types", tag, mt, idx.as_bytes()).await;
        assert_eq!(p.status, 201, "{}", String::from_utf8_lossy(&p.body));
        let g = r.get(&format!("/v2/types/manifests/{tag}")).await;
        assert_eq!((g.header("content-type"), g.body.as_slice()), (Some(mt), idx.as_bytes()));
    }
    let g = r.get("/v2/types/manifests/docker").await;
    assert_eq!(g.header("content-type"), Some(DOCKER_MANIFEST));
    // An index naming a manifest the repository does not have.
    let idx = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#, Digest::sha256_of(b"x"));
    let p = r.put_manifest("types", "sparse", OCI_INDEX, idx.as_bytes()).await;
    assert_eq!((p.status, p.code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    // No mediaType in the document: the Content-Type decides, as pushed.
    let bare = Image::new("bare");
    r.push_blob("types", &bare.config).await;
    r.push_blob("types", &bare.layer).await;
    let mut v: serde_json::Value = serde_json::from_slice(&bare.manifest).unwrap();
    v.as_object_mut().unwrap().remove("mediaType");
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(r.put_manifest("types", "bare", OCI_MANIFEST, &body).await.status, 201);
    assert_eq!(r.get("/v2/types/manifests/bare").await.header("content-type"), Some(OCI_MANIFEST));
    // By digest, with a digest that does not match the bytes.
    let wrong = Digest::sha256_of(b"not it");
    let p = r.put_manifest("types", &wrong.to_string(), OCI_MANIFEST, &oci.manifest).await;
    assert_eq!((p.status, p.code().as_str()), (400, "DIGEST_INVALID"));
    let p = r.put_manifest("types", &oci.digest.to_string(), OCI_MANIFEST, &oci.manifest).await;
    assert_eq!(p.status, 201);
    // Schema 1 and nonsense are refused.
    let p = r.put_manifest("types", "s1", "application/vnd.docker.distribution.manifest.v1+prettyjws", br#"{"schemaVersion":1}"#).await;
    assert_eq!((p.status, p.code().as_str()), (400, "MANIFEST_INVALID"));
    let p = r.put_manifest("types", "junk", OCI_MANIFEST, b"not json").await;
    assert_eq!((p.status, p.code().as_str()), (400, "MANIFEST_INVALID"));
    let p = r.put_manifest("types", "mismatch", DOCKER_MANIFEST, &oci.manifest).await;
    assert_eq!((p.status, p.code().as_str()), (400, "MANIFEST_INVALID"));
}

#[tokio::test]
async fn manifest_with_missing_blobs_is_refused_and_nothing_is_visible() {
    let r = Reg::start();
    let img = Image::new("missing");
    r.push_blob("miss", &img.config).await; // the layer is never pushed
    let p = r.put_manifest("miss", "v1", OCI_MANIFEST, &img.manifest).await;
    assert_eq!((p.status, p.code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(p.json()["errors"][0]["detail"]["digest"], Digest::sha256_of(&img.layer).to_string());
    assert_eq!(r.get("/v2/miss/manifests/v1").await.status, 404);
    assert_eq!(r.get(&format!("/v2/miss/manifests/{}", img.digest)).await.status, 404);
    assert!(!r.v2().join("repositories/miss/_manifests").exists());
    // A layer that only another repository has is missing here too.
    r.push_blob("elsewhere", &img.layer).await;
    assert_eq!(r.put_manifest("miss", "v1", OCI_MANIFEST, &img.manifest).await.status, 400);
    // A non-distributable layer (with urls) need not be pushed.
    let foreign = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{}","size":10,"urls":["https://example.invalid/l"]}}]}}"#,
        Digest::sha256_of(&img.config),
        img.config.len(),
        Digest::sha256_of(b"foreign")
    );
    assert_eq!(r.put_manifest("miss", "foreign", OCI_MANIFEST, foreign.as_bytes()).await.status, 201);
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let r = Reg::start();
    let data = b"sha512 content".to_vec();
    let d = sha512(&data);
    r.push_blob_as("s512", &data, &d).await;
    let h = r.head(&format!("/v2/s512/blobs/{d}")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("docker-content-digest"), Some(d.to_string().as_str()));
    assert_eq!(r.get(&format!("/v2/s512/blobs/{d}")).await.body, data);
    assert!(r.v2().join(format!("blobs/sha512/{}/{}/data", &d.hex()[..2], d.hex())).is_file());
    let link = std::fs::read_to_string(r.v2().join(format!("repositories/s512/_layers/sha512/{}/link", d.hex()))).unwrap();
    assert_eq!(link, d.to_string());

    let img = Image::new("s512");
    r.push_blob("s512", &img.config).await;
    r.push_blob("s512", &img.layer).await;
    let md = sha512(&img.manifest);
    let p = r.put_manifest("s512", &md.to_string(), OCI_MANIFEST, &img.manifest).await;
    assert_eq!(p.status, 201);
    assert_eq!(p.header("docker-content-digest"), Some(md.to_string().as_str()));
    let g = r.get(&format!("/v2/s512/manifests/{md}")).await;
    assert_eq!((g.status, g.header("docker-content-digest")), (200, Some(md.to_string().as_str())));
}

#[tokio::test]
async fn blob_range_requests() {
    let r = Reg::start();
    let data: Vec<u8> = (0..2048u32).map(|i| (i % 256) as u8).collect();
    let d = r.push_blob("range", &data).await;
    let path = format!("/v2/range/blobs/{d}");
    for (h, from, to) in [("bytes=500-1499", 500, 1499), ("bytes=500-", 500, 2047), ("bytes=-500", 1548, 2047), ("bytes=2000-5000", 2000, 2047), ("bytes=0-0", 0, 0)] {
        let g = r.req("GET", &path, &[("Range", h)], b"").await;
        assert_eq!(g.status, 206, "{h}");
        assert_eq!(g.body, &data[from..=to], "{h}");
        assert_eq!(g.header("content-length"), Some((to - from + 1).to_string().as_str()), "{h}");
        assert_eq!(g.header("content-range"), Some(format!("bytes {from}-{to}/2048").as_str()), "{h}");
    }
    for h in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let g = r.req("GET", &path, &[("Range", h)], b"").await;
        assert_eq!(g.status, 416, "{h}");
        assert_eq!(g.header("content-range"), Some("bytes */2048"), "{h}");
        assert!(g.body.is_empty());
    }
    for h in ["bytes=0-9,20-29", "items=0-1", "bytes=x-y"] {
        let g = r.req("GET", &path, &[("Range", h)], b"").await;
        assert_eq!((g.status, g.body.len()), (200, 2048), "{h}");
    }
    // A big blob streams in chunks, ranges included.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let bd = r.push_blob("range", &big).await;
    let g = r.get(&format!("/v2/range/blobs/{bd}")).await;
    assert_eq!(g.body, big);
    let g = r.req("GET", &format!("/v2/range/blobs/{bd}"), &[("Range", "bytes=1000000-2500000")], b"").await;
    assert_eq!(g.body, &big[1_000_000..=2_500_000]);
}

#[tokio::test]
async fn tags_list_pagination() {
    let r = Reg::start();
    let img = r.push_image("tags/app", "b", "tags").await;
    for t in ["a", "C", "latest", "v1.0", "_z"] {
        assert_eq!(r.put_manifest("tags/app", t, OCI_MANIFEST, &img.manifest).await.status, 201);
    }
    let all = r.get("/v2/tags/app/tags/list").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.json(), serde_json::json!({"name": "tags/app", "tags": ["C", "_z", "a", "b", "latest", "v1.0"]}));
    assert!(all.header("link").is_none());
    let p = r.get("/v2/tags/app/tags/list?n=2").await;
    assert_eq!(p.json()["tags"], serde_json::json!(["C", "_z"]));
    assert_eq!(p.header("link"), Some("</v2/tags/app/tags/list?last=_z&n=2>; rel=\"next\""));
    let p = r.get("/v2/tags/app/tags/list?n=2&last=_z").await;
    assert_eq!(p.json()["tags"], serde_json::json!(["a", "b"]));
    let p = r.get("/v2/tags/app/tags/list?n=10&last=b").await;
    assert_eq!(p.json()["tags"], serde_json::json!(["latest", "v1.0"]));
    assert!(p.header("link").is_none());
    let p = r.get("/v2/tags/app/tags/list?n=0").await;
    assert_eq!(p.json()["tags"], serde_json::json!([]));
    assert!(p.header("link").is_none());
    let p = r.get("/v2/tags/app/tags/list?last=v1.0").await;
    assert_eq!(p.json()["tags"], serde_json::json!([]));
    let bad = r.get("/v2/tags/app/tags/list?n=-1").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "PAGINATION_NUMBER_INVALID"));
    let unknown = r.get("/v2/tags/none/tags/list").await;
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "NAME_UNKNOWN"));
}

#[tokio::test]
async fn catalog() {
    let r = Reg::start();
    for repo in ["b", "a/x", "a", "c-d"] {
        r.push_image(repo, "t", repo).await;
    }
    r.push_blob("layers-only", b"invisible").await;
    let c = r.get("/v2/_catalog").await;
    assert_eq!(c.json()["repositories"], serde_json::json!(["a", "a/x", "b", "c-d"]));
    let p = r.get("/v2/_catalog?n=2").await;
    assert_eq!(p.json()["repositories"], serde_json::json!(["a", "a/x"]));
    assert_eq!(p.header("link"), Some("</v2/_catalog?last=a/x&n=2>; rel=\"next\""));
    let p = r.get("/v2/_catalog?n=2&last=a/x").await;
    assert_eq!(p.json()["repositories"], serde_json::json!(["b", "c-d"]));
    assert_eq!(r.get("/v2/_catalog?n=5000").await.status, 400);
}

#[tokio::test]
async fn referrers_api() {
    let r = Reg::start();
    let subject = r.push_image("refs", "v1", "subject").await;
    let size = subject.manifest.len() as u64;
    let empty = r.get(&format!("/v2/refs/referrers/{}", subject.digest)).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("content-type"), Some(OCI_INDEX));
    assert_eq!(empty.json()["manifests"], serde_json::json!([]));

    let mut pushed = Vec::new();
    for (seed, at) in [("sig", "application/vnd.example.signature"), ("sbom", "application/vnd.example.sbom")] {
        let a = Image::with(seed, OCI_MANIFEST, Some((&subject.digest, size)), Some(at));
        r.push_blob("refs", &a.config).await;
        r.push_blob("refs", &a.layer).await;
        let p = r.put_manifest("refs", &a.digest.to_string(), OCI_MANIFEST, &a.manifest).await;
        assert_eq!(p.status, 201);
        assert_eq!(p.header("oci-subject"), Some(subject.digest.to_string().as_str()));
        pushed.push((a, at));
    }
    let list = r.get(&format!("/v2/refs/referrers/{}", subject.digest)).await;
    let v = list.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for (a, at) in &pushed {
        let m = ms.iter().find(|m| m["digest"] == a.digest.to_string()).expect("listed");
        assert_eq!(m["artifactType"], *at);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["size"], a.manifest.len());
        assert!(m["annotations"]["org.example.seed"].is_string());
    }
    assert!(list.header("oci-filters-applied").is_none());
    let f = r.get(&format!("/v2/refs/referrers/{}?artifactType=application/vnd.example.sbom", subject.digest)).await;
    assert_eq!(f.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(f.json()["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(f.json()["manifests"][0]["artifactType"], "application/vnd.example.sbom");

    // A subject that does not exist is accepted, and its referrers listed.
    let ghost = Digest::sha256_of(b"ghost subject");
    let a = Image::with("orphan", OCI_MANIFEST, Some((&ghost, 10)), None);
    r.push_blob("refs", &a.config).await;
    r.push_blob("refs", &a.layer).await;
    let p = r.put_manifest("refs", &a.digest.to_string(), OCI_MANIFEST, &a.manifest).await;
    assert_eq!((p.status, p.header("oci-subject")), (201, Some(ghost.to_string().as_str())));
    let l = r.get(&format!("/v2/refs/referrers/{ghost}")).await;
    assert_eq!(l.json()["manifests"][0]["artifactType"], "application/vnd.oci.image.config.v1+json", "config.mediaType when no artifactType");
    // Unknown repository: still 200 and empty; a bad digest: 400.
    assert_eq!(r.get(&format!("/v2/refs-none/referrers/{ghost}")).await.status, 200);
    let b = r.get("/v2/refs/referrers/sha256:nothex").await;
    assert_eq!((b.status, b.code().as_str()), (400, "DIGEST_INVALID"));
}

#[tokio::test]
async fn content_management_deletes() {
    let r = Reg::start();
    let img = r.push_image("del", "v1", "del").await;
    r.put_manifest("del", "v2", OCI_MANIFEST, &img.manifest).await;
    r.put_manifest("del", "keep", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.req("DELETE", "/v2/del/manifests/v1", &[], b"").await.status, 202);
    assert_eq!(r.get("/v2/del/manifests/v1").await.status, 404);
    assert_eq!(r.get("/v2/del/manifests/v2").await.status, 200);
    assert_eq!(r.req("DELETE", "/v2/del/manifests/v1", &[], b"").await.status, 404);
    // By digest: the revision goes, and every tag pointing at it.
    assert_eq!(r.req("DELETE", &format!("/v2/del/manifests/{}", img.digest), &[], b"").await.status, 202);
    assert_eq!(r.get(&format!("/v2/del/manifests/{}", img.digest)).await.status, 404);
    assert_eq!(r.get("/v2/del/manifests/v2").await.status, 404);
    assert_eq!(r.get("/v2/del/tags/list").await.json()["tags"], serde_json::json!([]));
    let again = r.req("DELETE", &format!("/v2/del/manifests/{}", img.digest), &[], b"").await;
    assert_eq!((again.status, again.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // Blobs: the link goes; the data waits for gc.
    let ld = Digest::sha256_of(&img.layer);
    assert_eq!(r.req("DELETE", &format!("/v2/del/blobs/{ld}"), &[], b"").await.status, 202);
    assert_eq!(r.head(&format!("/v2/del/blobs/{ld}")).await.status, 404);
    assert_eq!(r.req("DELETE", &format!("/v2/del/blobs/{ld}"), &[], b"").await.status, 404);
    assert!(r.v2().join(format!("blobs/sha256/{}/{}/data", &ld.hex()[..2], ld.hex())).is_file());
    let bad = r.req("DELETE", "/v2/del/blobs/sha256:123", &[], b"").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "DIGEST_INVALID"));

    let r = Reg::with(|c| c.delete_enabled = false);
    let img = r.push_image("nodel", "v1", "nodel").await;
    let d = r.req("DELETE", "/v2/nodel/manifests/v1", &[], b"").await;
    assert_eq!((d.status, d.code().as_str()), (405, "UNSUPPORTED"));
    assert_eq!(r.req("DELETE", &format!("/v2/nodel/blobs/{}", Digest::sha256_of(&img.layer)), &[], b"").await.status, 405);
}

#[tokio::test]
async fn on_disk_layout_is_the_reference() {
    let r = Reg::start();
    let img = r.push_image("disk/app", "v1", "disk").await;
    let v2 = r.v2();
    let hex = |d: &Digest| d.hex().to_string();
    let cd = Digest::sha256_of(&img.config);
    let ld = Digest::sha256_of(&img.layer);
    for d in [&cd, &ld, &img.digest] {
        assert!(v2.join(format!("blobs/sha256/{}/{}/data", &hex(d)[..2], hex(d))).is_file());
    }
    let rd = v2.join("repositories/disk/app");
    for (p, d) in [
        (format!("_layers/sha256/{}/link", hex(&cd)), &cd),
        (format!("_layers/sha256/{}/link", hex(&ld)), &ld),
        (format!("_manifests/revisions/sha256/{}/link", hex(&img.digest)), &img.digest),
        ("_manifests/tags/v1/current/link".to_string(), &img.digest),
        (format!("_manifests/tags/v1/index/sha256/{}/link", hex(&img.digest)), &img.digest),
    ] {
        let content = std::fs::read(rd.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(content, d.to_string().as_bytes(), "{p}: digest, no newline");
    }
    assert!(!rd.join(format!("_layers/sha256/{}", hex(&img.digest))).exists(), "manifests get no _layers link");
    // No temp file left anywhere.
    let mut stack = vec![v2.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let n = e.file_name().into_string().unwrap();
            assert!(!n.contains(".tmp"), "leftover {}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}
