//! Load generator for bench/registry.sh: the same requests against any registry.
//!
//! ```text
//! loadgen ADDR push   REPO SIZE COUNT [CHUNK]  monolithic POST+PUT (or PATCH chunks); prints MB/s
//! loadgen ADDR seed   REPO SIZE                pushes one blob + a manifest tagged `bench`; prints the blob digest
//! loadgen ADDR pull   REPO DIGEST COUNT        GETs the blob, read in 1 MiB chunks; prints MB/s
//! loadgen ADDR rate   PATH METHOD CONNS SECS   keep-alive requests on CONNS connections; prints req/s
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_registry::testutil::Conn;
use strata_registry::Digest;

fn data(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

async fn push(c: &mut Conn, repo: &str, blob: &[u8], chunk: Option<usize>) -> Digest {
    let d = Digest::sha256_of(blob);
    let p = c.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"").await.unwrap();
    assert_eq!(p.status, 202, "{p:?}");
    let mut loc = p.header("location").unwrap().to_string();
    let sep = |l: &str| if l.contains('?') { '&' } else { '?' };
    if let Some(n) = chunk {
        let mut off = 0;
        while off < blob.len() {
            let end = (off + n).min(blob.len());
            let cr = format!("{off}-{}", end - 1);
            let a = c.request("PATCH", &loc, &[("Content-Range", &cr), ("Content-Type", "application/octet-stream")], &blob[off..end]).await.unwrap();
            assert_eq!(a.status, 202, "{a:?}");
            loc = a.header("location").unwrap().to_string();
            off = end;
        }
        let r = c.request("PUT", &format!("{loc}{}digest={d}", sep(&loc)), &[], b"").await.unwrap();
        assert_eq!(r.status, 201, "{r:?}");
    } else {
        let r = c.request("PUT", &format!("{loc}{}digest={d}", sep(&loc)), &[("Content-Type", "application/octet-stream")], blob).await.unwrap();
        assert_eq!(r.status, 201, "{r:?}");
    }
    d
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = a[1].parse().expect("ADDR");
    let rt = strata_registry::server::runtime(Some(2)).unwrap();
    rt.block_on(async {
        match a[2].as_str() {
            "push" => {
                let (repo, size, count) = (&a[3], a[4].parse::<usize>().unwrap(), a[5].parse::<usize>().unwrap());
                let chunk = a.get(6).map(|s| s.parse::<usize>().unwrap());
                let blobs: Vec<Vec<u8>> = (0..count).map(|i| data(size, i as u64 + 7 + (chunk.unwrap_or(0) as u64))).collect();
                let mut c = Conn::open(addr).await.unwrap();
                let t = Instant::now();
                for b in &blobs {
                    push(&mut c, repo, b, chunk).await;
                }
                println!("{:.0}", (size * count) as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            "seed" => {
                let (repo, size) = (&a[3], a[4].parse::<usize>().unwrap());
                let mut c = Conn::open(addr).await.unwrap();
                let layer = data(size, 1);
                let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
                let ld = push(&mut c, repo, &layer, None).await;
                let cd = push(&mut c, repo, config, None).await;
                let m = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{ld}","size":{size}}}]}}"#,
                    config.len()
                );
                let r = c
                    .request("PUT", &format!("/v2/{repo}/manifests/bench"), &[("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")], m.as_bytes())
                    .await
                    .unwrap();
                assert_eq!(r.status, 201, "{r:?}");
                println!("{ld}");
            }
            "pull" => {
                let (repo, digest, count) = (&a[3], &a[4], a[5].parse::<usize>().unwrap());
                let mut c = Conn::open(addr).await.unwrap();
                let path = format!("/v2/{repo}/blobs/{digest}");
                let mut bytes = 0u64;
                let t = Instant::now();
                for _ in 0..count {
                    c.send_head("GET", &path, &[], None).await.unwrap();
                    let r = c.read_response_opts(false, true).await.unwrap();
                    assert_eq!(r.status, 200);
                    bytes += r.header("content-length").unwrap().parse::<u64>().unwrap();
                }
                println!("{:.0}", bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            "rate" => {
                let (path, method, conns, secs) = (a[3].clone(), a[4].clone(), a[5].parse::<usize>().unwrap(), a[6].parse::<u64>().unwrap());
                let done = Arc::new(AtomicU64::new(0));
                let stop = Instant::now() + Duration::from_secs(secs);
                let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
                let mut tasks = Vec::new();
                let t = Instant::now();
                for _ in 0..conns {
                    let (done, path, method) = (done.clone(), path.clone(), method.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut c = Conn::open(addr).await.unwrap();
                        while Instant::now() < stop {
                            c.send_head(&method, &path, &[("Accept", accept)], None).await.unwrap();
                            let r = c.read_response(method == "HEAD").await.unwrap();
                            assert_eq!(r.status, 200, "{r:?}");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                println!("{:.0}", done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64());
            }
            other => panic!("unknown command {other}"),
        }
    });
}
