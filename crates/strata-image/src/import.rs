//! `import`: a root filesystem tarball becomes a one-layer image (docker import).

use std::io::{BufRead, BufReader, Read};

use serde_json::{json, Map, Value};
use strata_store::{Digest, Lease};

use crate::changes;
use crate::config::{self, CONTAINER_CONFIG_FIELDS};
use crate::error::{ImageError, Result};
use crate::reference::Reference;
use crate::store::ImageStore;

pub struct ImportOptions {
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub tag: Option<Reference>,
    /// What `history` shows as the source, e.g. `-` for stdin.
    pub source: String,
}

/// Wraps `input` in a decompressor chosen by its magic bytes (gzip, zstd), or returns it
/// as is for a plain tar.
pub fn decompress<'r>(input: Box<dyn Read + 'r>) -> Result<Box<dyn Read + 'r>> {
    let mut buf = BufReader::with_capacity(1 << 20, input);
    let head = buf.fill_buf().map_err(ImageError::io("read", "input"))?.to_vec();
    Ok(match head.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(buf)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(ImageError::io("read", "zstd input"))?),
        [b'B', b'Z', b'h', ..] => return Err(ImageError::Archive("bzip2 compression is not supported".into())),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => return Err(ImageError::Archive("xz compression is not supported".into())),
        _ => Box::new(buf),
    })
}

impl ImageStore {
    /// Imports `input` (a tar, possibly compressed) as a new image. Changes are
    /// validated before any byte is read, so a bad `--change` stores nothing.
    pub fn import(&self, lease: &Lease, input: Box<dyn Read + '_>, opts: &ImportOptions) -> Result<Digest> {
        let mut cfg = Map::new();
        changes::apply(&mut cfg, &opts.changes)?;
        let mut tar = decompress(input)?;
        let layer = self.unpack_layer(lease, None, &mut tar, None, true)?;
        let created = strata_store::now_rfc3339();
        let comment = opts.message.clone().unwrap_or_else(|| format!("Imported from {}", opts.source));
        let mut top = Map::new();
        top.insert("architecture".into(), json!(go_arch()));
        top.insert("comment".into(), json!(comment));
        top.insert("config".into(), Value::Object(config::shape(&cfg, CONTAINER_CONFIG_FIELDS)));
        top.insert("created".into(), json!(created));
        top.insert("history".into(), json!([{ "created": created, "comment": comment }]));
        top.insert("os".into(), json!("linux"));
        top.insert("rootfs".into(), json!({ "type": "layers", "diff_ids": [layer.diff_id.to_string()] }));
        let bytes = config::to_bytes(top);
        let tags: Vec<Reference> = opts.tag.iter().cloned().collect();
        let (id, _) = self.create(lease, &bytes, Some(&layer.chain_id), None, &tags)?;
        Ok(id)
    }
}

/// The architecture name Go (and so docker) uses for this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
