//! `system check`: verifies the store against itself and optionally repairs it.

use strata_snapshot::Kind;
use strata_store::Digest;

use crate::{Engine, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob whose content does not hash to its name.
    CorruptBlob(Digest),
    /// An image whose layer chain or config is missing.
    BrokenImage { image: String, why: String },
    /// A snapshot whose parent is missing or not committed, or whose directory is gone.
    BrokenSnapshot { key: String, why: String },
    /// A committed snapshot no layer row refers to (a crash between commit and record).
    OrphanSnapshot(String),
    /// A layer row whose snapshot is missing.
    LayerWithoutSnapshot(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob(d) => write!(f, "blob {d}: content does not match its digest"),
            Problem::BrokenImage { image, why } => write!(f, "image {image}: {why}"),
            Problem::BrokenSnapshot { key, why } => write!(f, "snapshot {key}: {why}"),
            Problem::OrphanSnapshot(k) => write!(f, "snapshot {k}: committed but no layer refers to it"),
            Problem::LayerWithoutSnapshot(c) => write!(f, "layer {c}: snapshot missing"),
        }
    }
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub blobs: usize,
    pub snapshots: usize,
    pub images: usize,
    pub problems: Vec<Problem>,
    pub repaired: Vec<String>,
}

impl Engine {
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let content = self.root.content();
        for info in content.walk()? {
            r.blobs += 1;
            if content.verify(&info.digest).is_err() {
                r.problems.push(Problem::CorruptBlob(info.digest.clone()));
                if repair {
                    content.delete(&info.digest)?;
                    r.repaired.push(format!("removed corrupt blob {}", info.digest));
                }
            }
        }
        let snaps = self.snapshotter();
        let all = snaps.list()?;
        r.snapshots = all.len();
        let keys: std::collections::HashMap<&str, &strata_snapshot::Info> = all.iter().map(|i| (i.key.as_str(), i)).collect();
        for s in &all {
            if let Some(p) = &s.parent {
                match keys.get(p.as_str()) {
                    None => r.problems.push(Problem::BrokenSnapshot { key: s.key.clone(), why: format!("parent {p} missing") }),
                    Some(pi) if pi.kind != Kind::Committed => {
                        r.problems.push(Problem::BrokenSnapshot { key: s.key.clone(), why: format!("parent {p} is not committed") })
                    }
                    _ => {}
                }
            }
            if !snaps.dir_exists(s) {
                r.problems.push(Problem::BrokenSnapshot { key: s.key.clone(), why: "directory missing".into() });
            }
            if s.kind == Kind::Committed {
                if let Ok(d) = s.key.parse::<Digest>() {
                    if self.images.layer(&d)?.is_none() {
                        r.problems.push(Problem::OrphanSnapshot(s.key.clone()));
                        if repair && snaps.remove(&s.key).is_ok() {
                            r.repaired.push(format!("removed orphan snapshot {}", s.key));
                        }
                    }
                }
            }
        }
        for img in self.images.list()? {
            r.images += 1;
            match self.images.layers_of(&img) {
                Err(e) => r.problems.push(Problem::BrokenImage { image: img.id.to_string(), why: e.to_string() }),
                Ok(layers) => {
                    for l in layers {
                        if !keys.contains_key(l.chain_id.to_string().as_str()) {
                            r.problems.push(Problem::LayerWithoutSnapshot(l.chain_id.to_string()));
                        }
                        let blobs = self.images.layer_blobs(&l.diff_id)?;
                        if blobs.is_empty() || blobs.iter().any(|b| !content.exists(&b.digest)) {
                            r.problems.push(Problem::BrokenImage {
                                image: img.id.to_string(),
                                why: format!("blob of layer {} missing", l.diff_id),
                            });
                        }
                    }
                }
            }
            if !content.exists(&img.id) {
                r.problems.push(Problem::BrokenImage { image: img.id.to_string(), why: "config blob missing".into() });
            }
        }
        Ok(r)
    }
}
