//! Image operations with docker's user-visible semantics: rmi, prune, inspect, history.

use serde_json::{json, Map, Value};
use strata_image::config::{shape, INSPECT_CONFIG_FIELDS};
use strata_image::{Image, Reference};
use strata_store::Digest;

use crate::{Engine, EngineError, Result};

/// One line of `rmi` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveItem {
    Untagged(String),
    Deleted(String),
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub items: Vec<RemoveItem>,
    pub reclaimed: u64,
}

/// One row of `history`, newest first.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub id: String,
    pub created: String,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub tags: Vec<String>,
}

struct User {
    id: String,
    running: bool,
}

impl Engine {
    fn containers_using(&self, image: &Digest) -> Result<Vec<User>> {
        Ok(self.root.db().read(|c| {
            let mut st = c.prepare("SELECT id, status IN ('running','paused','restarting') FROM containers WHERE image_id=?1 ORDER BY created")?;
            let r = st.query_map([image.to_string()], |r| Ok(User { id: r.get(0)?, running: r.get(1)? }))?.collect();
            r
        })?)
    }

    /// `rmi NAME`: docker's image_delete rules, untagged parents included (a build's
    /// intermediate images go with the image they led to).
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<RemoveItem>> {
        self.remove_image_opts(name, force, false)
    }

    /// `rmi [--no-prune] NAME`.
    pub fn remove_image_opts(&self, name: &str, force: bool, no_prune: bool) -> Result<Vec<RemoveItem>> {
        let parent = self.images.resolve(name).ok().and_then(|i| i.parent);
        let mut out = self.remove_one_image(name, force)?;
        if no_prune || !out.iter().any(|i| matches!(i, RemoveItem::Deleted(_))) {
            return Ok(out);
        }
        // docker's parent pruning: each parent that is untagged, has no other child and
        // no container goes too; the first one that stays ends it, silently.
        let mut cur = parent;
        while let Some(p) = cur.and_then(|p| p.parse::<Digest>().ok()) {
            let Ok(img) = self.images.get(&p) else { break };
            let keep = !img.tags.is_empty() || !img.repo_digests.is_empty() || !self.images.children(&p)?.is_empty() || !self.containers_using(&p)?.is_empty();
            if keep {
                break;
            }
            let layers = self.images.delete(&p)?;
            out.push(RemoveItem::Deleted(p.to_string()));
            out.extend(layers.into_iter().map(|l| RemoveItem::Deleted(l.to_string())));
            cur = img.parent;
        }
        Ok(out)
    }

    fn remove_one_image(&self, name: &str, force: bool) -> Result<Vec<RemoveItem>> {
        let img = self.images.resolve(name)?;
        let short = img.id.short().to_string();
        // A name the image is tagged with untags; anything else (an id, a prefix) deletes.
        let by_ref = Reference::parse(name).ok().map(Reference::with_default_tag).filter(|r| {
            img.tags.contains(r) || (r.digest().is_some() && img.repo_digests.contains(&r.to_string()))
        });
        let users = self.containers_using(&img.id)?;
        let mut out = Vec::new();
        if let Some(r) = by_ref {
            let last_name = img.tags.len() + img.repo_digests.len() <= 1;
            if !last_name || force {
                if !last_name || users.iter().all(|u| !u.running) {
                    self.images.untag(&r)?;
                    out.push(RemoveItem::Untagged(r.familiar()));
                    if !last_name {
                        return Ok(out);
                    }
                }
            } else if let Some(u) = users.first() {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                    &u.id[..12]
                )));
            } else {
                self.images.untag(&r)?;
                out.push(RemoveItem::Untagged(r.familiar()));
            }
        } else if img.tags.len() + img.repo_digests.len() > 1 && !force {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        // The image itself goes now, if nothing stops it.
        if !self.images.children(&img.id)?.is_empty() {
            if out.is_empty() {
                return Err(EngineError::Conflict(format!("conflict: unable to delete {short} (cannot be forced) - image has dependent child images")));
            }
            return Ok(out);
        }
        if let Some(u) = users.iter().find(|u| u.running) {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                &u.id[..12]
            )));
        }
        if let Some(u) = users.first() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                    &u.id[..12]
                )));
            }
        }
        let current = self.images.get(&img.id)?;
        for t in &current.tags {
            self.images.untag(t)?;
            out.push(RemoveItem::Untagged(t.familiar()));
        }
        for d in &current.repo_digests {
            if let Ok(r) = Reference::parse(d) {
                self.images.untag(&r)?;
                out.push(RemoveItem::Untagged(r.familiar()));
            }
        }
        if !users.is_empty() {
            // Forced with a stopped container: the name goes, the image stays for it.
            return Ok(out);
        }
        let layers = self.images.delete(&img.id)?;
        out.push(RemoveItem::Deleted(img.id.to_string()));
        out.extend(layers.into_iter().map(|l| RemoveItem::Deleted(l.to_string())));
        Ok(out)
    }

    /// `image prune [-a]`: dangling images, or with `all` every image no container uses.
    pub fn prune_images(&self, all: bool) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        // Repeat: removing a child can make its parent prunable.
        loop {
            let mut removed_any = false;
            for img in self.images.list()? {
                let dangling = img.tags.is_empty() && img.repo_digests.is_empty();
                if !(all || dangling) || !self.containers_using(&img.id)?.is_empty() || !self.images.children(&img.id)?.is_empty() {
                    continue;
                }
                let size = self.unique_size(&img)?;
                for t in &img.tags {
                    self.images.untag(t)?;
                    report.items.push(RemoveItem::Untagged(t.familiar()));
                }
                for d in &img.repo_digests {
                    if let Ok(r) = Reference::parse(d) {
                        self.images.untag(&r)?;
                        report.items.push(RemoveItem::Untagged(r.familiar()));
                    }
                }
                let layers = self.images.delete(&img.id)?;
                report.items.push(RemoveItem::Deleted(img.id.to_string()));
                report.items.extend(layers.into_iter().map(|l| RemoveItem::Deleted(l.to_string())));
                report.reclaimed += size;
                removed_any = true;
            }
            if !removed_any {
                return Ok(report);
            }
        }
    }

    /// Bytes only this image's layers hold (what removing it frees).
    fn unique_size(&self, img: &Image) -> Result<u64> {
        let mut total = 0;
        let mut shared = std::collections::HashSet::new();
        for other in self.images.list()? {
            if other.id != img.id {
                for l in self.images.layers_of(&other)? {
                    shared.insert(l.chain_id);
                }
            }
        }
        for l in self.images.layers_of(img)? {
            if !shared.contains(&l.chain_id) {
                total += l.size;
            }
        }
        Ok(total)
    }

    /// `image inspect`: docker's ImageInspect JSON (Engine API 1.51 shape).
    pub fn image_inspect(&self, img: &Image) -> Result<Value> {
        let cfg = &img.config;
        let layers = self.images.layers_of(img)?;
        let mut graph = Map::new();
        let snaps = self.snapshotter();
        if let Some(top) = layers.last() {
            let dirs = snaps.lower_dirs(Some(&top.chain_id.to_string()))?;
            if let Some((upper, lower)) = dirs.split_first() {
                let snap = upper.parent().map(|p| p.to_path_buf()).unwrap_or_default();
                if !lower.is_empty() {
                    let l: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
                    graph.insert("LowerDir".into(), json!(l.join(":")));
                }
                graph.insert("MergedDir".into(), json!(snap.join("merged").display().to_string()));
                graph.insert("UpperDir".into(), json!(upper.display().to_string()));
                graph.insert("WorkDir".into(), json!(snap.join("work").display().to_string()));
            }
        }
        let mut m = Map::new();
        m.insert("Id".into(), json!(img.id.to_string()));
        m.insert("RepoTags".into(), json!(img.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>()));
        m.insert("RepoDigests".into(), json!(img.repo_digests.iter().map(|d| Reference::parse(d).map(|r| r.familiar()).unwrap_or_else(|_| d.clone())).collect::<Vec<_>>()));
        m.insert("Parent".into(), json!(img.parent.clone().unwrap_or_default()));
        m.insert("Comment".into(), json!(cfg.str_field("comment")));
        m.insert("Created".into(), json!(cfg.created()));
        m.insert("DockerVersion".into(), json!(cfg.str_field("docker_version")));
        m.insert("Author".into(), json!(cfg.str_field("author")));
        m.insert("Config".into(), Value::Object(shape(&cfg.container_config(), INSPECT_CONFIG_FIELDS)));
        m.insert("Architecture".into(), json!(cfg.str_field("architecture")));
        if !cfg.str_field("variant").is_empty() {
            m.insert("Variant".into(), json!(cfg.str_field("variant")));
        }
        m.insert("Os".into(), json!(cfg.str_field("os")));
        if !cfg.str_field("os.version").is_empty() {
            m.insert("OsVersion".into(), json!(cfg.str_field("os.version")));
        }
        m.insert("Size".into(), json!(img.size));
        m.insert("GraphDriver".into(), json!({ "Data": if graph.is_empty() { Value::Null } else { Value::Object(graph) }, "Name": snaps.driver().name() }));
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let mut rootfs = Map::new();
        rootfs.insert("Type".into(), json!("layers"));
        if !diff_ids.is_empty() {
            rootfs.insert("Layers".into(), json!(diff_ids));
        }
        m.insert("RootFS".into(), Value::Object(rootfs));
        m.insert("Metadata".into(), json!({ "LastTagTime": img.last_tag_time.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()) }));
        Ok(Value::Object(m))
    }

    /// `history`: one row per history entry, newest first; layer sizes from the store.
    pub fn image_history(&self, img: &Image) -> Result<Vec<HistoryRow>> {
        let layers = self.images.layers_of(img)?;
        let mut sizes = layers.iter().map(|l| l.size);
        let mut rows: Vec<HistoryRow> = img
            .config
            .history()
            .iter()
            .map(|h| {
                let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
                HistoryRow {
                    id: "<missing>".into(),
                    created: h.get("created").and_then(Value::as_str).unwrap_or("").into(),
                    created_by: h.get("created_by").and_then(Value::as_str).unwrap_or("").into(),
                    size: if empty { 0 } else { sizes.next().unwrap_or(0) },
                    comment: h.get("comment").and_then(Value::as_str).unwrap_or("").into(),
                    tags: vec![],
                }
            })
            .collect();
        rows.reverse();
        // Each local ancestor image (build and commit record parents) names the row of
        // its own newest history entry, as docker shows it; the rest are <missing>.
        let total = rows.len();
        let mut cur = Some(img.clone());
        while let Some(i) = cur {
            let own = i.config.history().len();
            if own == 0 || own > total {
                break;
            }
            let row = &mut rows[total - own];
            row.id = i.id.to_string();
            row.tags = i.tags.iter().map(|t| t.familiar()).collect();
            cur = i.parent.as_deref().and_then(|p| p.parse().ok()).and_then(|p: Digest| self.images.get(&p).ok());
        }
        Ok(rows)
    }
}

