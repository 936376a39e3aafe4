//! Helpers for the registry's integration tests: a server on a temp root, pushes done
//! the way clients do them, and tiny images.
#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::json;
use strata_registry::server::Config;
use strata_registry::testutil::{request, Resp, TestServer};
use strata_registry::{Algorithm, Digest};

pub struct Reg {
    pub server: TestServer,
    pub root: tempfile::TempDir,
}

impl Reg {
    pub fn start() -> Reg {
        Reg::with(|_| {})
    }
    pub fn with(f: impl FnOnce(&mut Config)) -> Reg {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = Config { root: root.path().to_path_buf(), ..Config::default() };
        f(&mut cfg);
        Reg { server: TestServer::start(cfg), root }
    }
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    pub fn v2(&self) -> std::path::PathBuf {
        self.root.path().join("docker/registry/v2")
    }
    pub async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr(), method, path, headers, body).await
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"").await
    }
    pub async fn head(&self, path: &str) -> Resp {
        self.req("HEAD", path, &[], b"").await
    }

    /// POST + PUT with the whole body, as docker does for small blobs.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        self.push_blob_as(repo, data, &d).await;
        d
    }
    pub async fn push_blob_as(&self, repo: &str, data: &[u8], d: &Digest) {
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"").await;
        assert_eq!(r.status, 202, "{r:?}");
        let loc = r.header("location").unwrap().to_string();
        let r = self.req("PUT", &format!("{loc}?digest={d}"), &[("Content-Type", "application/octet-stream")], data).await;
        assert_eq!(r.status, 201, "{r:?} {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("docker-content-digest"), Some(d.to_string().as_str()));
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req("PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media_type)], body).await
    }

    /// Pushes a one-layer image (config + layer + manifest) and tags it.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> Image {
        let img = Image::new(seed);
        self.push_blob(repo, &img.config).await;
        self.push_blob(repo, &img.layer).await;
        let r = self.put_manifest(repo, tag, &img.media_type, &img.manifest).await;
        assert_eq!(r.status, 201, "{r:?} {}", String::from_utf8_lossy(&r.body));
        img
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Image {
    pub fn new(seed: &str) -> Image {
        Image::with(seed, OCI_MANIFEST, None, None)
    }
    /// An image manifest of `media_type`, optionally an artifact with a subject.
    pub fn with(seed: &str, media_type: &str, subject: Option<(&Digest, u64)>, artifact_type: Option<&str>) -> Image {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
        let layer = format!("layer bytes of {seed}").into_bytes().repeat(10);
        let config_type =
            if media_type == DOCKER_MANIFEST { "application/vnd.docker.container.image.v1+json" } else { "application/vnd.oci.image.config.v1+json" };
        let layer_type = if media_type == DOCKER_MANIFEST { "application/vnd.docker.image.rootfs.diff.tar.gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
        });
        if let Some((d, size)) = subject {
            m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": size});
            m["annotations"] = json!({"org.example.seed": seed});
        }
        if let Some(t) = artifact_type {
            m["artifactType"] = json!(t);
        }
        let manifest = serde_json::to_vec_pretty(&m).unwrap();
        let digest = Digest::sha256_of(&manifest);
        Image { config, layer, manifest, media_type: media_type.to_string(), digest }
    }
}

pub fn sha512(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha512, data)
}
