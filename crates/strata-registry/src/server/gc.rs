//! Garbage collection of a registry directory, safe to run beside a serving strata.
//!
//! 1. **Mark** (no lock): for each repository, the manifests to keep — every revision, or
//!    with `delete_untagged` those a tag points at, those younger than `min_age`, and,
//!    to a fixpoint, the children of kept indexes and the referrers (`subject`) of kept
//!    manifests (distribution drops untagged referrers; strata keeps them with their
//!    subject). Each kept manifest marks itself and what it references.
//! 2. **Lock**: take the gc lock exclusively. Servers hold it shared while they link
//!    anything, so from here on nothing is linked; then re-mark every link written since
//!    the run started (or younger than `min_age`): a push that finished during the mark
//!    keeps all it needs.
//! 3. **Sweep**: unmarked blobs whose data is older than `min_age`; `_layers` links whose
//!    blob is gone; untagged manifests (their revision and tag-history entries); tag
//!    directories left without a `current` link; upload sessions idle for `min_age`.
//!
//! `dry_run` stops after marking and reports what would go.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_store::fsutil::remove_all;
use strata_store::{Algorithm, Digest};

use super::layout::{mtime, read_dir_names, Layout, Result};
use crate::media::Kind;
use crate::name::{RepoName, Tag};

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub dry_run: bool,
    pub delete_untagged: bool,
    /// Nothing younger than this is removed: blobs, links, manifests, uploads.
    pub min_age: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions { dry_run: false, delete_untagged: false, min_age: Duration::from_secs(3600) }
    }
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub marked: usize,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<(String, Digest)>,
    pub uploads: Vec<(String, String)>,
    pub links: usize,
    pub tags: Vec<(String, String)>,
}

/// Every repository directory: anything under `repositories/` holding `_layers`,
/// `_manifests` or `_uploads` (the catalog shows only the second kind).
fn all_repos(l: &Layout) -> Result<Vec<RepoName>> {
    let mut out = Vec::new();
    let mut stack = vec![(l.base().join("repositories"), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let names = read_dir_names(&dir)?;
        if !prefix.is_empty() && names.iter().any(|n| matches!(n.as_str(), "_layers" | "_manifests" | "_uploads")) {
            if let Ok(r) = RepoName::parse(&prefix) {
                out.push(r);
            }
        }
        for n in names {
            if n.starts_with('_') || n.starts_with('.') || !dir.join(&n).is_dir() {
                continue;
            }
            stack.push((dir.join(&n), if prefix.is_empty() { n } else { format!("{prefix}/{n}") }));
        }
    }
    out.sort();
    Ok(out)
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

struct Marker<'a> {
    l: &'a Layout,
    marked: HashSet<Digest>,
}

impl Marker<'_> {
    /// Marks a digest and, if `repo` links it under another name (a sha512 alias of a
    /// sha256 blob), the blob the link names.
    fn mark(&mut self, repo: &RepoName, d: &Digest) {
        if let Ok(Some(t)) = self.l.read_link(&self.l.layer_link(repo, d)) {
            self.marked.insert(t);
        }
        self.marked.insert(d.clone());
    }

    fn mark_manifest(&mut self, repo: &RepoName, d: &Digest) {
        self.mark(repo, d);
        if let Ok(Some(s)) = self.l.summary(d) {
            for r in &s.references {
                self.mark(repo, r);
            }
        }
    }
}

/// Runs gc over `l` (see the module doc).
pub fn collect(l: &Layout, opts: &GcOptions) -> Result<GcReport> {
    let t0 = now_secs();
    // mtimes have whole-second resolution here; one second of slack keeps a write made
    // in the second the run started.
    let cutoff = (t0 - opts.min_age.as_secs() as i64).min(t0 - 1);
    let young = |p: &Path| mtime(p).is_some_and(|m| m >= cutoff);
    let repos = all_repos(l)?;
    let mut m = Marker { l, marked: HashSet::new() };
    let mut doomed: HashMap<RepoName, Vec<Digest>> = HashMap::new();

    for repo in &repos {
        let revs = l.revisions(repo)?;
        let mut keep: HashSet<Digest> = HashSet::new();
        if !opts.delete_untagged {
            keep.extend(revs.iter().cloned());
        } else {
            let present: HashSet<&Digest> = revs.iter().collect();
            if l.repo_exists(repo) {
                for t in l.tags(repo)? {
                    let t = Tag::parse(&t).expect("listed tags are valid");
                    if let Some(d) = l.read_link(&l.tag_current(repo, &t))? {
                        keep.insert(d);
                    }
                }
            }
            for d in &revs {
                if young(&l.revision_link(repo, d)) {
                    keep.insert(d.clone());
                }
            }
            loop {
                let before = keep.len();
                for d in &revs {
                    let Ok(Some(s)) = l.summary(d) else { continue };
                    if keep.contains(d) && s.kind == Kind::Index {
                        keep.extend(s.references.iter().filter(|r| present.contains(r)).cloned());
                    }
                    if !keep.contains(d) && s.subject.as_ref().is_some_and(|sub| keep.contains(sub)) {
                        keep.insert(d.clone());
                    }
                }
                if keep.len() == before {
                    break;
                }
            }
            let gone: Vec<Digest> = revs.iter().filter(|d| !keep.contains(*d)).cloned().collect();
            if !gone.is_empty() {
                doomed.insert(repo.clone(), gone);
            }
        }
        for d in &keep {
            m.mark_manifest(repo, d);
        }
    }

    let mut report = GcReport::default();
    let _guard = if opts.dry_run { None } else { Some(l.gc_guard()?) };
    if !opts.dry_run {
        // Under the lock: whatever was linked since the mark began is kept.
        for repo in &repos {
            for d in l.revisions(repo)? {
                if young(&l.revision_link(repo, &d)) {
                    m.mark_manifest(repo, &d);
                    if let Some(v) = doomed.get_mut(repo) {
                        v.retain(|x| x != &d);
                    }
                }
            }
            for (d, link) in layer_links(l, repo)? {
                if young(&link) {
                    m.mark(repo, &d);
                }
            }
        }
    }
    report.marked = m.marked.len();

    // Untagged manifests (delete_untagged only); a tag that now points at one keeps it.
    for (repo, ds) in &doomed {
        let current: HashSet<Digest> = match l.tags(repo) {
            Ok(ts) => ts.iter().filter_map(|t| l.read_link(&l.tag_current(repo, &Tag::parse(t).ok()?)).ok().flatten()).collect(),
            Err(_) => HashSet::new(),
        };
        for d in ds {
            if current.contains(d) || m.marked.contains(d) {
                continue;
            }
            report.manifests.push((repo.to_string(), d.clone()));
            if opts.dry_run {
                continue;
            }
            for t in read_dir_names(&l.tags_dir(repo))? {
                let idx = l.tags_dir(repo).join(&t).join("index").join(d.algorithm().name()).join(d.hex());
                if idx.exists() {
                    remove_all(&idx)?;
                }
            }
            let rev = l.revision_link(repo, d);
            remove_all(rev.parent().expect("a link has a directory"))?;
        }
    }

    // Blobs.
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let adir = l.base().join("blobs").join(alg.name());
        for fan in read_dir_names(&adir)? {
            let fdir = adir.join(&fan);
            for hex in read_dir_names(&fdir)? {
                let Ok(d) = format!("{}:{hex}", alg.name()).parse::<Digest>() else { continue };
                let dir = fdir.join(&hex);
                if m.marked.contains(&d) || young(&dir.join("data")) || young(&dir) {
                    continue;
                }
                report.blobs.push(d);
                if !opts.dry_run {
                    remove_all(&dir)?;
                }
            }
        }
    }

    for repo in &repos {
        if !opts.dry_run {
            // Links to blobs that are no longer there.
            for (d, link) in layer_links(l, repo)? {
                let target = l.read_link(&link)?.unwrap_or(d);
                if !l.blob_data(&target).is_file() && !young(&link) {
                    remove_all(link.parent().expect("a link has a directory"))?;
                    report.links += 1;
                }
            }
        }
        // Tag directories without `current` (a push killed between index and current).
        for t in read_dir_names(&l.tags_dir(repo))? {
            let dir = l.tags_dir(repo).join(&t);
            let Ok(tag) = Tag::parse(&t) else { continue };
            if l.read_link(&l.tag_current(repo, &tag))?.is_none() && !young(&dir) {
                report.tags.push((repo.to_string(), t));
                if !opts.dry_run {
                    remove_all(&dir)?;
                }
            }
        }
        // Upload sessions idle for min_age.
        for id in read_dir_names(&l.uploads_dir(repo))? {
            let dir = l.upload_dir(repo, &id);
            let started = std::fs::read_to_string(dir.join("startedat")).ok().and_then(|s| strata_store::parse_rfc3339(s.trim()));
            let last = [started, mtime(&dir), mtime(&dir.join("data"))].into_iter().flatten().max();
            if last.is_some_and(|t| t >= cutoff) {
                continue;
            }
            report.uploads.push((repo.to_string(), id));
            if !opts.dry_run {
                remove_all(&dir)?;
            }
        }
    }
    Ok(report)
}

/// Every `_layers/<alg>/<hex>/link` of a repository.
fn layer_links(l: &Layout, repo: &RepoName) -> Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    let base = l.repo_dir(repo).join("_layers");
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        for hex in read_dir_names(&base.join(alg.name()))? {
            let Ok(d) = format!("{}:{hex}", alg.name()).parse::<Digest>() else { continue };
            let link = base.join(alg.name()).join(&hex).join("link");
            if link.exists() {
                out.push((d, link));
            }
        }
    }
    Ok(out)
}
