//! `commit`: a container's writable layer becomes a new image over its image.
//!
//! The layer is the writable snapshot's upper directory written by the deterministic
//! layer writer (whiteouts as `.wh.` entries), so volumes (mounted over the rootfs, not
//! in it) and the init layer (below it) are never part of it. The tar is staged under
//! the operation's lease and unpacked like any pulled layer: the new image owns its own
//! snapshot and blob, and the container keeps running on its own.

use serde_json::{json, Map, Value};
use strata_image::changes;
use strata_image::config::{self, CONTAINER_CONFIG_FIELDS};
use strata_image::Reference;
use strata_store::Digest;

use super::Container;
use crate::{Engine, EngineError, Result};

/// What `commit` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub tag: Option<Reference>,
    pub author: String,
    pub message: String,
    /// Dockerfile instructions applied to the new image's config (`-c`).
    pub changes: Vec<String>,
    /// Freeze the container while its layer is read (docker's default).
    pub pause: bool,
}

impl Engine {
    /// The container's writable layer as a new layer over its image's top layer, or None
    /// when it holds no change (docker then records an empty layer). Volumes and the
    /// init layer are never part of it.
    pub fn container_layer(&self, c: &Container, lease: &strata_store::Lease) -> Result<Option<strata_image::Layer>> {
        let image = self.images().get(&c.image_id.parse().map_err(|_| EngineError::Invalid(format!("container {}: bad image id", c.id)))?)?;
        self.stage_and_unpack(c, &image, lease, true)
    }

    /// The upper dir through the layer writer into a staged file, unpacked as a layer.
    /// With `skip_empty`, an upper dir without entries gives None instead of a layer.
    fn stage_and_unpack(&self, c: &Container, image: &strata_image::Image, lease: &strata_store::Lease, skip_empty: bool) -> Result<Option<strata_image::Layer>> {
        let staged = lease.tmp_dir()?.join("layer.tar");
        let upper = self.snapshotter().upper_dir(&c.id)?;
        if skip_empty && std::fs::read_dir(&upper).map(|mut d| d.next().is_none()).unwrap_or(false) {
            return Ok(None);
        }
        {
            let f = std::fs::File::create(&staged).map_err(|e| EngineError::io("create", &staged, e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            strata_snapshot::layer::write_tar(&upper, &mut w, &Default::default()).map_err(strata_snapshot::SnapshotError::from)?;
            std::io::Write::flush(&mut w).map_err(|e| EngineError::io("write", &staged, e))?;
        }
        let mut tar = std::fs::File::open(&staged).map_err(|e| EngineError::io("open", &staged, e))?;
        let layer = self.images().unpack_layer(lease, image.top_layer.as_ref(), &mut tar, None, true)?;
        let _ = std::fs::remove_file(&staged);
        Ok(Some(layer))
    }

    pub fn commit_container(&self, c: &Container, o: &CommitOptions) -> Result<Digest> {
        // Applied to an empty map first: a bad instruction fails before anything is done.
        changes::apply(&mut Map::new(), &o.changes).map_err(strata_image::ImageError::from)?;
        let paused_here = o.pause && c.status == "running";
        if paused_here {
            self.pause_container(c)?;
        }
        let res = self.commit_paused(c, o);
        if paused_here {
            let now = self.container(&c.id)?;
            self.unpause_container(&now)?;
        }
        res
    }

    fn commit_paused(&self, c: &Container, o: &CommitOptions) -> Result<Digest> {
        let image = self.images().get(&c.image_id.parse().map_err(|_| EngineError::Invalid(format!("container {}: bad image id", c.id)))?)?;
        let lease = self.store().lease()?;
        let layer = self.stage_and_unpack(c, &image, &lease, false)?.expect("an empty layer is kept");

        // The container's config, with the changes over it, in the image config's shape.
        let mut cfg = c.config.clone();
        changes::apply(&mut cfg, &o.changes).map_err(strata_image::ImageError::from)?;
        let created = strata_store::now_rfc3339();
        let mut top: Map<String, Value> = image.config.value.clone();
        let mut diff_ids: Vec<Value> = image.config.diff_ids().map_err(EngineError::Invalid)?.iter().map(|d| json!(d.to_string())).collect();
        diff_ids.push(json!(layer.diff_id.to_string()));
        let mut history: Vec<Value> = image.config.history().into_iter().map(Value::Object).collect();
        let mut step = Map::new();
        // docker's history struct order: created, author, created_by, comment.
        step.insert("created".into(), json!(created));
        if !o.author.is_empty() {
            step.insert("author".into(), json!(o.author));
        }
        step.insert("created_by".into(), json!(std::iter::once(c.path.as_str()).chain(c.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")));
        if !o.message.is_empty() {
            step.insert("comment".into(), json!(o.message));
        }
        history.push(Value::Object(step));
        top.insert("config".into(), Value::Object(config::shape(&cfg, CONTAINER_CONFIG_FIELDS)));
        top.insert("created".into(), json!(created));
        top.insert("history".into(), Value::Array(history));
        top.insert("rootfs".into(), json!({ "type": "layers", "diff_ids": diff_ids }));
        // Image-level author and comment are this commit's, not the parent's.
        top.remove("author");
        top.remove("comment");
        if !o.author.is_empty() {
            top.insert("author".into(), json!(o.author));
        }
        if !o.message.is_empty() {
            top.insert("comment".into(), json!(o.message));
        }
        let bytes = config::to_bytes(top);
        let tags: Vec<Reference> = o.tag.iter().cloned().collect();
        let (id, _) = self.images().create(&lease, &bytes, Some(&layer.chain_id), Some(&image.id), &tags)?;
        Ok(id)
    }
}
