//! `load` and `save`: docker-archive tarballs (`manifest.json`, what `docker save`
//! writes) and OCI image layouts (`index.json`, `oci-layout`, `blobs/`).
//!
//! `save` writes both at once, as Docker 25+ does: an OCI layout whose blobs are also
//! named by a docker `manifest.json`, so old and new `docker load`, podman and skopeo all
//! read it. Layers are the exact uncompressed tars whose digests are the diff ids.
//!
//! `load` stages the archive in `tmp/` (extracted by the same confined applier as
//! layers, so a hostile archive cannot write outside the staging dir), then unpacks
//! each layer while hashing it, and moves the staged layer file into the content store
//! by rename once its digest is verified: one write and one read per layer byte.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::{json, Value};
use strata_snapshot::layer;
use strata_store::{Algorithm, Digest, HashingReader, Lease};

use crate::config::{chain_id, ImageConfig};
use crate::error::{ImageError, Result};
use crate::import::{decompress, go_arch};
use crate::reference::Reference;
use crate::store::{Image, ImageStore, LayerBlob, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD};

const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_JSON: u64 = 16 << 20;

/// One image found in an archive.
#[derive(Debug)]
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<Reference>,
    /// Tags that pointed at another image before this load.
    pub replaced: Vec<(Reference, Digest)>,
}

struct Entry {
    config: Vec<u8>,
    layers: Vec<LayerRef>,
    tags: Vec<Reference>,
}

struct LayerRef {
    path: String,
    /// The blob digest the archive names (OCI descriptors); None for legacy paths.
    digest: Option<Digest>,
}

impl ImageStore {
    pub fn load(&self, lease: &Lease, input: Box<dyn Read + '_>) -> Result<Vec<Loaded>> {
        let stage = lease.tmp_dir()?;
        let res = self.load_staged(lease, input, &stage);
        let _ = strata_store::fsutil::remove_all(&stage);
        res
    }

    fn load_staged(&self, lease: &Lease, input: Box<dyn Read + '_>, stage: &Path) -> Result<Vec<Loaded>> {
        let input = decompress(input)?;
        layer::apply_tar(input, stage, &layer::ApplyOptions { whiteouts: layer::WhiteoutMode::Delete })
            .map_err(|e| ImageError::Archive(e.to_string()))?;
        let entries = if exists_in(stage, "manifest.json") {
            docker_entries(stage)?
        } else if exists_in(stage, "index.json") {
            oci_entries(stage)?
        } else {
            return Err(ImageError::Archive("no manifest.json or index.json found".into()));
        };
        let mut out = Vec::new();
        for e in entries {
            out.push(self.load_entry(lease, stage, e)?);
        }
        Ok(out)
    }

    fn load_entry(&self, lease: &Lease, stage: &Path, e: Entry) -> Result<Loaded> {
        let config = ImageConfig::parse(e.config.clone())
            .map_err(|err| ImageError::Archive(format!("image config: {err}")))?;
        let diff_ids = config.diff_ids().map_err(ImageError::Archive)?;
        if diff_ids.len() != e.layers.len() {
            return Err(ImageError::Archive(format!(
                "image config lists {} layers, manifest lists {}",
                diff_ids.len(),
                e.layers.len()
            )));
        }
        let mut parent: Option<Digest> = None;
        for (diff_id, lref) in diff_ids.iter().zip(&e.layers) {
            let chain = chain_id(parent.as_ref(), diff_id);
            if self.layer(&chain)?.is_none() {
                self.load_layer(lease, stage, parent.as_ref(), diff_id, lref)?;
            }
            parent = Some(chain);
        }
        let (id, previous) = self.create(lease, &e.config, parent.as_ref(), None, &e.tags)?;
        let replaced = e.tags.iter().zip(previous).filter_map(|(t, p)| p.map(|p| (t.clone(), p))).collect();
        Ok(Loaded { id, tags: e.tags, replaced })
    }

    fn load_layer(&self, lease: &Lease, stage: &Path, parent: Option<&Digest>, diff_id: &Digest, lref: &LayerRef) -> Result<()> {
        let file = open_in(stage, &lref.path)?;
        let algo = lref.digest.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm());
        let mut blob_hash = HashingReader::new(file, algo);
        let mut head = [0u8; 4];
        let n = read_full(&mut blob_hash, &mut head).map_err(ImageError::io("read", &lref.path))?;
        let media = match &head[..n] {
            [0x1f, 0x8b, ..] => MEDIA_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => MEDIA_LAYER_ZSTD,
            _ => MEDIA_LAYER_TAR,
        };
        let mut chained = io::Cursor::new(head[..n].to_vec()).chain(&mut blob_hash);
        let mut tar: Box<dyn Read + '_> = match media {
            MEDIA_LAYER_GZIP => Box::new(flate2::read::MultiGzDecoder::new(&mut chained)),
            MEDIA_LAYER_ZSTD => Box::new(zstd::stream::read::Decoder::new(&mut chained).map_err(ImageError::io("read", &lref.path))?),
            _ => Box::new(&mut chained),
        };
        let layer = self.unpack_layer(lease, parent, &mut tar, Some(diff_id), false)?;
        drop(tar);
        io::copy(&mut chained, &mut io::sink()).map_err(ImageError::io("read", &lref.path))?;
        let (blob_digest, size) = blob_hash.finish();
        if let Some(d) = &lref.digest {
            if d != &blob_digest {
                return Err(ImageError::Store(strata_store::StoreError::DigestMismatch { expected: d.clone(), actual: blob_digest }));
            }
        }
        // Verified (the uncompressed digest by unpack, the blob digest here): move the
        // staged file into the store without copying it.
        let staged = resolve_in(stage, &lref.path)?;
        let owned = stage.join(format!(".blob-{}", blob_digest.hex()));
        std::fs::copy(&staged, &owned).map(|_| ()).or_else(|_| std::fs::rename(&staged, &owned)).map_err(ImageError::io("stage", &lref.path))?;
        self.root.content().adopt(&owned, &blob_digest)?;
        self.record_layer(&layer, Some(&LayerBlob { digest: blob_digest, media_type: media.into(), size }))
    }

    /// Writes `images` (each with the names to record for it) as one archive.
    pub fn save(&self, lease: &Lease, images: &[(Image, Vec<Reference>)], out: &mut dyn Write) -> Result<()> {
        let mut tar = tar::Builder::new(out);
        let mut manifest_json = Vec::new();
        let mut index = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut blobs: Vec<(Digest, BlobSource)> = Vec::new();
        for (img, names) in images {
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for l in self.layers_of(img)? {
                let blobs_of = self.layer_blobs(&l.diff_id)?;
                let src = match blobs_of.iter().find(|b| b.digest == l.diff_id) {
                    Some(b) => BlobSource::Stored(b.digest.clone(), b.size),
                    None => {
                        let b = blobs_of.first().ok_or_else(|| ImageError::Config {
                            digest: img.id.to_string(),
                            msg: format!("layer {} has no stored blob", l.diff_id),
                        })?;
                        BlobSource::Inflate(b.digest.clone(), b.media_type.clone())
                    }
                };
                let size = match &src {
                    BlobSource::Stored(_, s) => *s,
                    BlobSource::Inflate(d, m) => self.inflated_size(d, m)?,
                    BlobSource::Bytes(b) => b.len() as u64,
                };
                layer_descs.push(json!({ "mediaType": MEDIA_LAYER_TAR, "digest": l.diff_id.to_string(), "size": size }));
                layer_paths.push(format!("blobs/sha256/{}", l.diff_id.hex()));
                blobs.push((l.diff_id.clone(), src));
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": { "mediaType": MEDIA_OCI_CONFIG, "digest": img.id.to_string(), "size": img.config.raw.len() },
                "layers": layer_descs,
            }))
            .expect("json");
            let mdigest = Digest::sha256_of(&manifest);
            blobs.push((img.id.clone(), BlobSource::Bytes(img.config.raw.clone())));
            blobs.push((mdigest.clone(), BlobSource::Bytes(manifest.clone())));
            let familiar: Vec<String> = names.iter().map(|n| n.familiar()).collect();
            manifest_json.push(json!({
                "Config": format!("blobs/sha256/{}", img.id.hex()),
                "RepoTags": if familiar.is_empty() { Value::Null } else { json!(familiar) },
                "Layers": layer_paths,
            }));
            for n in names {
                let mut desc = json!({ "mediaType": MEDIA_OCI_MANIFEST, "digest": mdigest.to_string(), "size": manifest.len() });
                desc["annotations"] = json!({
                    "io.containerd.image.name": n.to_string(),
                    "org.opencontainers.image.ref.name": n.tag().unwrap_or("latest"),
                });
                index.push(desc);
                repositories.entry(n.familiar_name()).or_default().insert(n.tag().unwrap_or("latest").into(), img.id.hex().into());
            }
            if names.is_empty() {
                index.push(json!({ "mediaType": MEDIA_OCI_MANIFEST, "digest": mdigest.to_string(), "size": manifest.len() }));
            }
        }
        let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index });
        // Metadata first: a reader can plan before the large blobs arrive.
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(&mut tar, "index.json", &serde_json::to_vec(&index).expect("json"))?;
        append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&manifest_json).expect("json"))?;
        if !repositories.is_empty() {
            append_bytes(&mut tar, "repositories", &serde_json::to_vec(&repositories).expect("json"))?;
        }
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        let mut written = std::collections::HashSet::new();
        for (digest, src) in blobs {
            if !written.insert(digest.clone()) {
                continue;
            }
            let name = format!("blobs/sha256/{}", digest.hex());
            match src {
                BlobSource::Bytes(b) => append_bytes(&mut tar, &name, &b)?,
                BlobSource::Stored(d, size) => {
                    let f = self.root.content().reader(&d)?;
                    append_reader(&mut tar, &name, size, f)?;
                }
                BlobSource::Inflate(d, m) => {
                    let size = self.inflated_size(&d, &m)?;
                    let f = self.root.content().reader(&d)?;
                    let r: Box<dyn Read> = if m == MEDIA_LAYER_ZSTD {
                        Box::new(zstd::stream::read::Decoder::new(f).map_err(ImageError::io("read", &d))?)
                    } else {
                        Box::new(flate2::read::MultiGzDecoder::new(f))
                    };
                    let mut hashing = HashingReader::new(r, Algorithm::Sha256);
                    append_reader(&mut tar, &name, size, &mut hashing)?;
                    if hashing.finish().0 != digest {
                        return Err(ImageError::Store(strata_store::StoreError::DigestMismatch { expected: digest, actual: d }));
                    }
                }
            }
        }
        let _ = lease;
        tar.into_inner().map_err(ImageError::io("write", "archive"))?.flush().map_err(ImageError::io("write", "archive"))?;
        Ok(())
    }

    fn inflated_size(&self, d: &Digest, media: &str) -> Result<u64> {
        let f = self.root.content().reader(d)?;
        let mut r: Box<dyn Read> = if media == MEDIA_LAYER_ZSTD {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(ImageError::io("read", d))?)
        } else {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        };
        io::copy(&mut r, &mut io::sink()).map_err(ImageError::io("read", d))
    }
}

enum BlobSource {
    Stored(Digest, u64),
    Inflate(Digest, String),
    Bytes(Vec<u8>),
}

fn header(name: &str, size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let _ = name;
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<()> {
    append_reader(tar, name, data.len() as u64, data)
}

fn append_reader<W: Write, R: Read>(tar: &mut tar::Builder<W>, name: &str, size: u64, r: R) -> Result<()> {
    let mut h = header(name, size, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, name, r).map_err(ImageError::io("write", name))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(name, 0, tar::EntryType::Directory, 0o755);
    tar.append_data(&mut h, name, io::empty()).map_err(ImageError::io("write", name))
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

// ---- reading archives ----

/// Opens `rel` inside `root` without ever leaving it (symlinks resolve against `root`).
fn open_in(root: &Path, rel: &str) -> Result<File> {
    let f = strata_store::fsutil::open_in_root(root, rel, rustix::fs::OFlags::RDONLY)
        .map_err(|e| ImageError::Archive(format!("{rel}: {e}")))?;
    let md = f.metadata().map_err(ImageError::io("stat", rel))?;
    if !md.is_file() {
        return Err(ImageError::Archive(format!("{rel}: not a regular file")));
    }
    Ok(f)
}

/// The real path of `rel` inside `root` (resolved by the kernel inside the root).
fn resolve_in(root: &Path, rel: &str) -> Result<std::path::PathBuf> {
    let f = open_in(root, rel)?;
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(ImageError::io("resolve", rel))
}

fn exists_in(root: &Path, rel: &str) -> bool {
    open_in(root, rel).is_ok()
}

fn read_json_in(root: &Path, rel: &str) -> Result<(Vec<u8>, Value)> {
    let mut buf = Vec::new();
    open_in(root, rel)?.take(MAX_JSON).read_to_end(&mut buf).map_err(ImageError::io("read", rel))?;
    let v = serde_json::from_slice(&buf).map_err(|e| ImageError::Archive(format!("{rel}: {e}")))?;
    Ok((buf, v))
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

fn read_blob_in(root: &Path, d: &Digest) -> Result<(Vec<u8>, Value)> {
    let (buf, v) = read_json_in(root, &blob_path(d))?;
    let mut h = strata_store::Hasher::new(d.algorithm());
    h.update(&buf);
    let actual = h.finish();
    if &actual != d {
        return Err(ImageError::Store(strata_store::StoreError::DigestMismatch { expected: d.clone(), actual }));
    }
    Ok((buf, v))
}

fn docker_entries(stage: &Path) -> Result<Vec<Entry>> {
    let (_, v) = read_json_in(stage, "manifest.json")?;
    let list = v.as_array().ok_or_else(|| ImageError::Archive("manifest.json: not a list".into()))?;
    let mut out = Vec::new();
    for m in list {
        let cfg_path = m.get("Config").and_then(Value::as_str).ok_or_else(|| ImageError::Archive("manifest.json: entry without Config".into()))?;
        let mut config = Vec::new();
        open_in(stage, cfg_path)?.take(MAX_JSON).read_to_end(&mut config).map_err(ImageError::io("read", cfg_path))?;
        // A config named by its digest must hash to it.
        let hex = cfg_path.trim_start_matches("blobs/sha256/").trim_end_matches(".json");
        if let Ok(d) = Digest::from_sha256_hex(hex) {
            if Digest::sha256_of(&config) != d {
                return Err(ImageError::Store(strata_store::StoreError::DigestMismatch { expected: d, actual: Digest::sha256_of(&config) }));
            }
        }
        let layers = m
            .get("Layers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(|p| LayerRef { path: p.to_string(), digest: digest_from_path(p) }).collect())
            .unwrap_or_default();
        let mut tags = Vec::new();
        for t in m.get("RepoTags").and_then(Value::as_array).into_iter().flatten() {
            let s = t.as_str().ok_or_else(|| ImageError::Archive("manifest.json: RepoTags entry is not a string".into()))?;
            let r = Reference::parse(s)?;
            if r.digest().is_some() || r.tag().is_none() {
                return Err(ImageError::Archive(format!("invalid tag {s:?} in manifest.json")));
            }
            tags.push(r);
        }
        out.push(Entry { config, layers, tags });
    }
    Ok(out)
}

fn digest_from_path(p: &str) -> Option<Digest> {
    let rest = p.strip_prefix("blobs/")?;
    let (algo, hex) = rest.split_once('/')?;
    format!("{algo}:{hex}").parse().ok()
}

fn oci_entries(stage: &Path) -> Result<Vec<Entry>> {
    let (_, index) = read_json_in(stage, "index.json")?;
    let mut out = Vec::new();
    for desc in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let name = desc
            .pointer("/annotations/io.containerd.image.name")
            .and_then(Value::as_str)
            .and_then(|n| Reference::parse(n).ok())
            .filter(|r| r.tag().is_some() && r.digest().is_none());
        let manifest = resolve_manifest(stage, desc, 0)?;
        let cdesc = manifest.get("config").ok_or_else(|| ImageError::Archive("manifest without config".into()))?;
        let (config, _) = read_blob_in(stage, &desc_digest(cdesc)?)?;
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|l| desc_digest(l).map(|d| LayerRef { path: blob_path(&d), digest: Some(d) })).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        out.push(Entry { config, layers, tags: name.into_iter().collect() });
    }
    Ok(out)
}

fn desc_digest(desc: &Value) -> Result<Digest> {
    desc.get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| ImageError::Archive("descriptor without digest".into()))?
        .parse()
        .map_err(|e: strata_store::DigestError| ImageError::Archive(e.to_string()))
}

/// Follows an index down to the manifest for this platform.
fn resolve_manifest(stage: &Path, desc: &Value, depth: u32) -> Result<Value> {
    if depth > 4 {
        return Err(ImageError::Archive("index nesting too deep".into()));
    }
    let (_, v) = read_blob_in(stage, &desc_digest(desc)?)?;
    let media = v.get("mediaType").and_then(Value::as_str).or_else(|| desc.get("mediaType").and_then(Value::as_str)).unwrap_or("");
    if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST || v.get("manifests").is_some() {
        let pick = v
            .get("manifests")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                        && m.pointer("/platform/architecture").and_then(Value::as_str) == Some(go_arch())
                })
            })
            .ok_or_else(|| ImageError::Archive(format!("no manifest for linux/{} in index", go_arch())))?;
        return resolve_manifest(stage, pick, depth + 1);
    }
    if !(media == MEDIA_OCI_MANIFEST || media == MEDIA_DOCKER_MANIFEST || media.is_empty()) {
        return Err(ImageError::Archive(format!("unsupported manifest media type {media}")));
    }
    Ok(v)
}
