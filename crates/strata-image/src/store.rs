//! The image store: images (by config digest), their tags, and the layers they stand on.
//!
//! Lifecycle: layers are unpacked first (`unpack_layer`: a snapshot committed under the
//! layer's chain id, the layer's bytes kept in the content store), then the config is
//! stored and the image row and its tags are written in one transaction (`create`). An
//! image is therefore never visible before all its layers are. Deleting an image removes
//! its row and tags in one transaction, then every layer no other image or snapshot
//! still stands on (`delete`).
//!
//! Tables owned here: `layers`, `layer_blobs`, `images`, `tags`, `repo_digests`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use strata_snapshot::{layer, SnapshotError, Snapshotter};
use strata_store::{Algorithm, DataRoot, Digest, HashingReader, Lease, Writer};

use crate::config::{chain_id, ImageConfig};
use crate::error::{ImageError, Result};
use crate::reference::{looks_like_id, Reference};

pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

const MIGRATIONS: &[&str] = &["CREATE TABLE layers(
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT REFERENCES layers(chain_id),
        size INTEGER NOT NULL
    );
    CREATE INDEX layers_parent ON layers(parent);
    CREATE TABLE layer_blobs(
        digest TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE INDEX layer_blobs_diff ON layer_blobs(diff_id);
    CREATE TABLE images(
        id TEXT PRIMARY KEY,
        top_layer TEXT REFERENCES layers(chain_id),
        parent TEXT,
        size INTEGER NOT NULL,
        stored TEXT NOT NULL,
        last_tag_time TEXT
    );
    CREATE INDEX images_top ON images(top_layer);
    CREATE TABLE tags(
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests(
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );"];

/// An image as the store knows it.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: Digest,
    pub config: ImageConfig,
    pub top_layer: Option<Digest>,
    pub parent: Option<String>,
    pub size: u64,
    pub tags: Vec<Reference>,
    pub repo_digests: Vec<String>,
    pub last_tag_time: Option<String>,
}

/// A layer as the store knows it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    pub size: u64,
}

/// A stored blob of a layer (the uncompressed tar, or a compressed form of it).
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

pub struct ImageStore {
    pub(crate) root: Arc<DataRoot>,
    pub(crate) snaps: Arc<Snapshotter>,
}

impl ImageStore {
    pub fn open(root: Arc<DataRoot>, snaps: Arc<Snapshotter>) -> Result<ImageStore> {
        root.db().migrate(&root.db_path(), "images", MIGRATIONS)?;
        Ok(ImageStore { root, snaps })
    }

    pub fn root(&self) -> &DataRoot {
        &self.root
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snaps
    }

    // ---- lookup ----

    /// Resolves what a user typed: a name (`busybox`, `busybox:1`, `x@sha256:…`), a full
    /// id, or a unique id prefix — in docker's order.
    pub fn resolve(&self, s: &str) -> Result<Image> {
        if let Some(hex) = s.strip_prefix("sha256:").filter(|h| h.len() == 64) {
            let d = Digest::from_sha256_hex(hex).map_err(|_| ImageError::NoSuchImage(s.into()))?;
            return self.get(&d).map_err(|_| ImageError::NoSuchImage(s.into()));
        }
        let parsed = Reference::parse(s);
        if let Ok(r) = &parsed {
            let r = r.clone().with_default_tag();
            let found: Option<String> = self.root.db().read(|c| {
                let table = if r.digest().is_some() { "repo_digests" } else { "tags" };
                c.query_row(&format!("SELECT image_id FROM {table} WHERE name=?1"), [r.to_string()], |row| row.get(0)).optional()
            })?;
            if let Some(id) = found {
                return self.get(&parse_digest(&id)?);
            }
        }
        if let Some(hex) = looks_like_id(s) {
            let ids: Vec<String> = self.root.db().read(|c| {
                let mut st = c.prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
                let lo = format!("sha256:{hex}");
                let hi = format!("sha256:{hex}\u{10FFFF}");
                let r = st.query_map([lo, hi], |row| row.get(0))?.collect();
                r
            })?;
            if ids.len() == 1 {
                return self.get(&parse_digest(&ids[0])?);
            }
        }
        Err(ImageError::NoSuchImage(match parsed {
            Ok(r) => r.with_default_tag().familiar(),
            Err(_) => s.to_string(),
        }))
    }

    pub fn get(&self, id: &Digest) -> Result<Image> {
        type Row = (Option<String>, Option<String>, i64, Option<String>);
        let row: Option<Row> = self.root.db().read(|c| {
            c.query_row("SELECT top_layer, parent, size, last_tag_time FROM images WHERE id=?1", [id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })?;
        let (top, parent, size, last_tag_time) = row.ok_or_else(|| ImageError::NoSuchImage(id.to_string()))?;
        let raw = self.root.content().read_all(id)?;
        let config = ImageConfig::parse(raw).map_err(|e| ImageError::Config { digest: id.to_string(), msg: e.to_string() })?;
        let (tags, repo_digests) = self.names_of(id)?;
        Ok(Image {
            id: id.clone(),
            config,
            top_layer: top.as_deref().map(parse_digest).transpose()?,
            parent,
            size: size as u64,
            tags,
            repo_digests,
            last_tag_time,
        })
    }

    fn names_of(&self, id: &Digest) -> Result<(Vec<Reference>, Vec<String>)> {
        let (tags, digests): (Vec<String>, Vec<String>) = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT name FROM tags WHERE image_id=?1 ORDER BY rowid")?;
            let t = st.query_map([id.to_string()], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare("SELECT name FROM repo_digests WHERE image_id=?1 ORDER BY rowid")?;
            let d = st.query_map([id.to_string()], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok((t, d))
        })?;
        let tags = tags.iter().filter_map(|t| Reference::parse(t).ok()).collect();
        Ok((tags, digests))
    }

    /// Every image, newest stored first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let ids: Vec<String> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT id FROM images ORDER BY stored DESC")?;
            let r = st.query_map([], |r| r.get(0))?.collect();
            r
        })?;
        ids.iter().map(|i| self.get(&parse_digest(i)?)).collect()
    }

    /// Ids of images whose local parent is `id` (build and commit record parents).
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>> {
        let ids: Vec<String> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT id FROM images WHERE parent=?1")?;
            let r = st.query_map([id.to_string()], |r| r.get(0))?.collect();
            r
        })?;
        ids.iter().map(|i| parse_digest(i)).collect()
    }

    pub fn layer(&self, chain: &Digest) -> Result<Option<Layer>> {
        let row: Option<(String, Option<String>, i64)> = self.root.db().read(|c| {
            c.query_row("SELECT diff_id, parent, size FROM layers WHERE chain_id=?1", [chain.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })?;
        row.map(|(d, p, s)| {
            Ok(Layer { chain_id: chain.clone(), diff_id: parse_digest(&d)?, parent: p.as_deref().map(parse_digest).transpose()?, size: s as u64 })
        })
        .transpose()
    }

    /// The layers of an image, bottom first.
    pub fn layers_of(&self, image: &Image) -> Result<Vec<Layer>> {
        let mut out = Vec::new();
        let mut cur = image.top_layer.clone();
        while let Some(c) = cur {
            let l = self.layer(&c)?.ok_or_else(|| ImageError::Config { digest: image.id.to_string(), msg: format!("layer {c} missing") })?;
            cur = l.parent.clone();
            out.push(l);
        }
        out.reverse();
        Ok(out)
    }

    pub fn layer_blobs(&self, diff_id: &Digest) -> Result<Vec<LayerBlob>> {
        let rows: Vec<(String, String, i64)> = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT digest, media_type, size FROM layer_blobs WHERE diff_id=?1 ORDER BY digest=diff_id DESC")?;
            let r = st.query_map([diff_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect();
            r
        })?;
        rows.into_iter().map(|(d, m, s)| Ok(LayerBlob { digest: parse_digest(&d)?, media_type: m, size: s as u64 })).collect()
    }

    // ---- writing ----

    /// Reads an uncompressed layer tar, applies it on a new snapshot over `parent`, and
    /// commits the snapshot under the layer's chain id. With `keep_blob` the exact bytes
    /// read are stored in the content store as the layer's uncompressed blob. When
    /// `expected` is given, a different diff id is an error and leaves nothing behind.
    pub fn unpack_layer(
        &self,
        lease: &Lease,
        parent: Option<&Digest>,
        tar: &mut dyn Read,
        expected: Option<&Digest>,
        keep_blob: bool,
    ) -> Result<Layer> {
        let tmp_key = format!("unpack-{}", lease.resource_name());
        self.snaps.prepare(&tmp_key, parent.map(|p| p.to_string()).as_deref(), Some(lease))?;
        let res = (|| -> Result<(Digest, Option<Writer>)> {
            let upper = self.snaps.upper_dir(&tmp_key)?;
            let mut writer = if keep_blob { Some(self.root.content().writer(lease, Algorithm::Sha256)?) } else { None };
            let mut hashing = HashingReader::new(Tee { inner: tar, out: writer.as_mut() }, Algorithm::Sha256);
            layer::apply_tar(&mut hashing, &upper, &layer::ApplyOptions { whiteouts: self.snaps.driver().whiteouts() })?;
            // The digest covers every byte, including the padding after the end-of-archive.
            io::copy(&mut hashing, &mut io::sink()).map_err(ImageError::io("read", "layer"))?;
            let (diff_id, _) = hashing.finish();
            if let Some(e) = expected {
                if e != &diff_id {
                    return Err(ImageError::DiffIdMismatch { expected: e.to_string(), actual: diff_id.to_string() });
                }
            }
            Ok((diff_id, writer))
        })();
        let (diff_id, writer) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = self.snaps.remove(&tmp_key);
                return Err(e);
            }
        };
        let chain = chain_id(parent, &diff_id);
        match self.snaps.commit(&chain.to_string(), &tmp_key) {
            Ok(()) | Err(SnapshotError::AlreadyExists(_)) => {}
            Err(e) => {
                let _ = self.snaps.remove(&tmp_key);
                return Err(e.into());
            }
        }
        let size = self.snaps.usage(&chain.to_string())?;
        let blob = match writer {
            Some(w) => {
                let n = w.size();
                w.commit(None, Some(&diff_id))?;
                Some(LayerBlob { digest: diff_id.clone(), media_type: MEDIA_LAYER_TAR.into(), size: n })
            }
            None => None,
        };
        let layer = Layer { chain_id: chain, diff_id, parent: parent.cloned(), size };
        self.record_layer(&layer, blob.as_ref())?;
        Ok(layer)
    }

    /// Seals the active snapshot `key` (prepared over `parent`, filled through its upper
    /// dir or its mounts) as a layer: the upper dir goes through the deterministic layer
    /// writer straight into the content store (the kept tar, whose digest is the diff
    /// id), then the snapshot itself is committed under the chain id — no second copy of
    /// the files. Returns None, with the snapshot removed, when nothing changed (docker
    /// records such a step as an empty layer). The snapshot is removed on any error.
    pub fn commit_snapshot(&self, lease: &Lease, key: &str, parent: Option<&Digest>) -> Result<Option<Layer>> {
        let res = (|| -> Result<Option<(Digest, LayerBlob)>> {
            let upper = self.snaps.upper_dir(key)?;
            let mut w = self.root.content().writer(lease, Algorithm::Sha256)?;
            {
                let mut buf = io::BufWriter::with_capacity(1 << 20, &mut w);
                layer::write_tar(&upper, &mut buf, &Default::default()).map_err(SnapshotError::from)?;
                buf.flush().map_err(ImageError::io("write", "layer"))?;
            }
            let size = w.size();
            if size == EMPTY_TAR_SIZE && w_is_empty_tar(&upper) {
                return Ok(None);
            }
            let diff_id = w.commit(None, None)?;
            Ok(Some((diff_id.clone(), LayerBlob { digest: diff_id, media_type: MEDIA_LAYER_TAR.into(), size })))
        })();
        let (diff_id, blob) = match res {
            Ok(Some(v)) => v,
            Ok(None) => {
                self.snaps.remove(key)?;
                return Ok(None);
            }
            Err(e) => {
                let _ = self.snaps.remove(key);
                return Err(e);
            }
        };
        let chain = chain_id(parent, &diff_id);
        match self.snaps.commit(&chain.to_string(), key) {
            Ok(()) | Err(SnapshotError::AlreadyExists(_)) => {}
            Err(e) => {
                let _ = self.snaps.remove(key);
                return Err(e.into());
            }
        }
        let size = self.snaps.usage(&chain.to_string())?;
        let layer = Layer { chain_id: chain, diff_id, parent: parent.cloned(), size };
        self.record_layer(&layer, Some(&blob))?;
        Ok(Some(layer))
    }

    /// Records a layer (and optionally one of its blobs); idempotent.
    pub fn record_layer(&self, layer: &Layer, blob: Option<&LayerBlob>) -> Result<()> {
        self.root.db().write(|tx| -> Result<()> {
            tx.execute(
                "INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, size) VALUES(?1, ?2, ?3, ?4)",
                params![layer.chain_id.to_string(), layer.diff_id.to_string(), layer.parent.as_ref().map(|p| p.to_string()), layer.size as i64],
            )?;
            if let Some(b) = blob {
                tx.execute(
                    "INSERT OR IGNORE INTO layer_blobs(digest, diff_id, media_type, size) VALUES(?1, ?2, ?3, ?4)",
                    params![b.digest.to_string(), layer.diff_id.to_string(), b.media_type, b.size as i64],
                )?;
            }
            Ok(())
        })
    }

    /// Stores `config` and creates the image over `top` (already unpacked), tagging it.
    /// Returns the id and, per tag, the image the tag pointed to before (if another).
    pub fn create(
        &self,
        lease: &Lease,
        config: &[u8],
        top: Option<&Digest>,
        parent: Option<&Digest>,
        tags: &[Reference],
    ) -> Result<(Digest, Vec<Option<Digest>>)> {
        let parsed = ImageConfig::parse(config.to_vec())
            .map_err(|e| ImageError::Config { digest: Digest::sha256_of(config).to_string(), msg: e.to_string() })?;
        let id = self.root.content().put(lease, config, None)?;
        let mut size = 0;
        let mut n = 0;
        let mut cur = top.cloned();
        while let Some(c) = cur {
            let l = self.layer(&c)?.ok_or_else(|| ImageError::Config { digest: id.to_string(), msg: format!("layer {c} missing") })?;
            size += l.size;
            n += 1;
            cur = l.parent;
        }
        let diff_ids = parsed.diff_ids().map_err(|msg| ImageError::Config { digest: id.to_string(), msg })?;
        if diff_ids.len() != n {
            return Err(ImageError::Config { digest: id.to_string(), msg: format!("config lists {} layers, image has {n}", diff_ids.len()) });
        }
        let now = strata_store::now_rfc3339();
        // Durable: once a load or import reports an image, it exists.
        let previous = self.root.db().write_durable(|tx| -> Result<Vec<Option<Digest>>> {
            tx.execute(
                "INSERT INTO images(id, top_layer, parent, size, stored) VALUES(?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO NOTHING",
                params![id.to_string(), top.map(|t| t.to_string()), parent.map(|p| p.to_string()), size as i64, now],
            )?;
            tags.iter().map(|t| tag_tx(tx, &id, t, &now)).collect()
        })?;
        Ok((id, previous))
    }

    /// Points `tag` at `id`. Returns the image it pointed to before, if another.
    pub fn tag(&self, id: &Digest, tag: &Reference) -> Result<Option<Digest>> {
        let now = strata_store::now_rfc3339();
        self.root.db().write(|tx| tag_tx(tx, id, tag, &now))
    }

    /// Removes a tag (or a repo digest). Returns whether it existed.
    pub fn untag(&self, name: &Reference) -> Result<bool> {
        let table = if name.digest().is_some() { "repo_digests" } else { "tags" };
        let n = self.root.db().write(|tx| tx.execute(&format!("DELETE FROM {table} WHERE name=?1"), [name.to_string()]))?;
        Ok(n > 0)
    }

    /// Deletes an image record and its names, then the layers nothing else uses.
    /// Returns the chain ids of the removed layers.
    pub fn delete(&self, id: &Digest) -> Result<Vec<Digest>> {
        let top: Option<String> = self.root.db().write(|tx| -> Result<Option<String>> {
            let top: Option<Option<String>> =
                tx.query_row("SELECT top_layer FROM images WHERE id=?1", [id.to_string()], |r| r.get(0)).optional()?;
            let Some(top) = top else { return Err(ImageError::NoSuchImage(id.to_string())) };
            tx.execute("DELETE FROM images WHERE id=?1", [id.to_string()])?;
            Ok(top)
        })?;
        // The config may be shared by nothing else: images are keyed by it.
        self.root.content().delete(id)?;
        let mut removed = Vec::new();
        let mut cur = top.as_deref().map(parse_digest).transpose()?;
        while let Some(chain) = cur {
            match self.release_layer(&chain)? {
                Some(parent) => {
                    removed.push(chain);
                    cur = parent;
                }
                None => break,
            }
        }
        Ok(removed)
    }

    /// Removes a layer if no image and no other layer or snapshot builds on it. Returns
    /// `Some(parent)` when removed.
    fn release_layer(&self, chain: &Digest) -> Result<Option<Option<Digest>>> {
        let key = chain.to_string();
        let gone = self.root.db().write(|tx| -> Result<Option<(Option<String>, String)>> {
            let used: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM images WHERE top_layer=?1) OR EXISTS(SELECT 1 FROM layers WHERE parent=?1)
                 OR EXISTS(SELECT 1 FROM snapshots WHERE parent=?1)",
                [&key],
                |r| r.get(0),
            )?;
            if used {
                return Ok(None);
            }
            let row: Option<(Option<String>, String)> = tx
                .query_row("SELECT parent, diff_id FROM layers WHERE chain_id=?1", [&key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((parent, diff_id)) = row else { return Ok(None) };
            tx.execute("DELETE FROM layers WHERE chain_id=?1", [&key])?;
            Ok(Some((parent, diff_id)))
        })?;
        let Some((parent, diff_id)) = gone else { return Ok(None) };
        match self.snaps.remove(&key) {
            Ok(()) | Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Blobs go only when no other chain has the same diff.
        let blobs: Vec<String> = self.root.db().write(|tx| -> Result<Vec<String>> {
            let still: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM layers WHERE diff_id=?1)", [&diff_id], |r| r.get(0))?;
            if still {
                return Ok(vec![]);
            }
            let mut st = tx.prepare("SELECT digest FROM layer_blobs WHERE diff_id=?1")?;
            let b: Vec<String> = st.query_map([&diff_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            tx.execute("DELETE FROM layer_blobs WHERE diff_id=?1", [&diff_id])?;
            Ok(b)
        })?;
        for b in blobs {
            self.root.content().delete(&parse_digest(&b)?)?;
        }
        Ok(Some(parent.as_deref().map(parse_digest).transpose()?))
    }
}

fn tag_tx(tx: &rusqlite::Transaction<'_>, id: &Digest, tag: &Reference, now: &str) -> Result<Option<Digest>> {
    let prev: Option<String> = tx.query_row("SELECT image_id FROM tags WHERE name=?1", [tag.to_string()], |r| r.get(0)).optional()?;
    tx.execute(
        "INSERT INTO tags(name, image_id) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id",
        params![tag.to_string(), id.to_string()],
    )?;
    tx.execute("UPDATE images SET last_tag_time=?1 WHERE id=?2", params![now, id.to_string()])?;
    prev.filter(|p| p != &id.to_string()).map(|p| parse_digest(&p)).transpose()
}

/// An empty layer tar: only the end-of-archive blocks.
const EMPTY_TAR_SIZE: u64 = 1024;

/// Whether an upper dir holds nothing at all (its tar is the empty tar).
fn w_is_empty_tar(upper: &std::path::Path) -> bool {
    std::fs::read_dir(upper).map(|mut d| d.next().is_none()).unwrap_or(false)
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(|e: strata_store::DigestError| ImageError::Config { digest: s.into(), msg: e.to_string() })
}

/// Copies everything read into `out` as well.
struct Tee<'r, 'w> {
    inner: &'r mut dyn Read,
    out: Option<&'w mut Writer>,
}

impl Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = self.out.as_mut() {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}
