//! The reference registry's (distribution's) filesystem layout, byte for byte, so that
//! Debian's `docker-registry` serves a directory strata wrote and strata serves one it
//! wrote. Every path below is under `<root>/docker/registry/v2/`:
//!
//! ```text
//! blobs/<alg>/<hex[..2]>/<hex>/data                  the bytes (layers, configs, manifests)
//! repositories/<name>/_layers/<alg>/<hex>/link       blob linked into the repository
//! repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifest in the repository
//! repositories/<name>/_manifests/tags/<tag>/current/link      what the tag points at
//! repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link   the tag's history
//! repositories/<name>/_uploads/<uuid>/{data,startedat}        an upload in progress
//! ```
//!
//! A `link` holds a digest string (`sha256:<64 hex>`) with no newline (distribution's
//! parse is strict); reading trims whitespace, as distribution does. A link may name a
//! digest of another algorithm (distribution 2.8 stores sha512 uploads under sha256 and
//! links the sha512 name to it): the link's content, not its path, names the blob.
//!
//! Lifecycles — each write is a temp file beside its target (never named `link` or
//! `data`, which are the only names either registry reads), fsync, rename, fsync of the
//! directory; so a reader or a crash sees the old file or the new one:
//! - **Blob upload**: `start_upload` makes `_uploads/<uuid>/startedat` (RFC 3339, whole
//!   seconds, UTC — distribution's upload purger ages uploads by it). Chunks are appended
//!   to `_uploads/<uuid>/data` by whoever holds the session; the session's offset is the
//!   file's size, so an upload resumes after a restart. `commit_upload` fsyncs the data,
//!   verifies the digest (from the caller's running hash when it covers the whole file,
//!   else by re-reading it), and only then renames the file to `blobs/…/data` (or drops
//!   it if that blob exists), then writes the `_layers` link, then removes the session.
//!   A digest mismatch removes the session. Killed anywhere, the blob is either absent,
//!   or present and verified but unlinked (swept by gc), or present and linked.
//! - **Manifest push**: the bytes are checked (JSON, media type, every referenced blob
//!   linked in the repository, every child manifest present), then written in the order
//!   blob → revision link → tag index link → tag current link. A crash leaves at worst a
//!   blob without a revision, or a revision without the tag, or (distribution's own order)
//!   a tag directory with an index entry but no `current`: strata lists only tags that
//!   have a `current` link; gc removes such directories once they are old.
//! - **Deletes** remove links only (blob data is reclaimed by gc), as distribution does:
//!   a manifest by digest loses its revision link and every tag pointing at it; a tag
//!   loses its directory; a blob loses its `_layers` link.
//!
//! Readers never trust a cache for existence: a blob exists in a repository when its
//! `_layers` link parses *and* the data file it names exists; a manifest when its revision
//! link and data exist. Only the parsed summary of a manifest is cached, keyed by digest
//! (content-addressed, so it never goes stale).
//!
//! Writes that create links hold a shared `flock` on `<root>/.strata-gc.lock`; gc holds it
//! exclusively while it sweeps, so nothing it did not see is linked while it deletes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use strata_store::fsutil::{sync_dir, write_atomic};
use strata_store::{Algorithm, Classify, Digest, ErrorKind, Hasher, StoreError};

use crate::media::{Kind, Manifest, ManifestError};
use crate::name::{ManifestRef, RepoName, Tag};

/// Errors of the storage layer; each maps to one distribution error code (see `api`).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    #[error("blob upload unknown to registry: {0}")]
    UploadUnknown(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("provided digest did not match uploaded content: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("invalid content range: upload {uuid} is at offset {size}, chunk starts at {start}")]
    RangeInvalid { uuid: String, size: u64, start: u64 },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("blob unknown to registry: manifest references {0}, which is not in the repository")]
    ManifestBlobUnknown(Digest),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for LayoutError {
    fn kind(&self) -> ErrorKind {
        use LayoutError::*;
        match self {
            BlobUnknown(_) | UploadUnknown(_) | ManifestUnknown(_) | NameUnknown(_) => ErrorKind::NotFound,
            DigestMismatch { .. } | ManifestInvalid(_) | ManifestBlobUnknown(_) => ErrorKind::Invalid,
            RangeInvalid { .. } => ErrorKind::Conflict,
            Io { .. } | Store(_) => ErrorKind::Internal,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io { op, path: path.to_path_buf(), source }
}

pub type Result<T, E = LayoutError> = std::result::Result<T, E>;

/// What the registry keeps of a manifest it has read: enough to answer HEAD, GET's
/// Content-Type and the referrers API without reading the bytes again.
#[derive(Debug)]
pub struct Summary {
    pub size: u64,
    pub media_type: String,
    pub kind: Kind,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

impl Summary {
    fn of(m: Manifest, size: u64) -> Summary {
        Summary {
            size,
            media_type: m.media_type,
            kind: m.kind,
            references: m.references.into_iter().map(|d| d.digest).collect(),
            subject: m.subject.map(|s| s.digest),
            artifact_type: m.artifact_type,
            annotations: m.annotations,
        }
    }
}

/// The result of a manifest push.
#[derive(Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// A directory in the reference layout. Cheap to share (`Arc`); every method is
/// synchronous file I/O, meant for a blocking thread.
pub struct Layout {
    root: PathBuf,
    base: PathBuf,
    summaries: Mutex<HashMap<Digest, Arc<Summary>>>,
}

/// Bound on cached manifest summaries; past it the cache starts over (a summary is a few
/// hundred bytes, so this is a few MB at most).
const SUMMARY_CACHE: usize = 20_000;
const MAX_LINK: u64 = 256;

impl Layout {
    /// `root` is distribution's `rootdirectory`.
    pub fn open(root: &Path) -> Result<Layout> {
        let base = root.join("docker/registry/v2");
        fs::create_dir_all(&base).map_err(io_err("create", &base))?;
        Ok(Layout { root: root.to_path_buf(), base, summaries: Mutex::new(HashMap::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn base(&self) -> &Path {
        &self.base
    }

    // ---- paths -------------------------------------------------------------------

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        self.base.join("blobs").join(d.algorithm().name()).join(&d.hex()[..2]).join(d.hex())
    }
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join("data")
    }
    pub fn repo_dir(&self, name: &RepoName) -> PathBuf {
        self.base.join("repositories").join(name.as_str())
    }
    pub fn layer_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        self.repo_dir(name).join("_layers").join(d.algorithm().name()).join(d.hex()).join("link")
    }
    pub fn revisions_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_manifests/revisions")
    }
    pub fn revision_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        self.revisions_dir(name).join(d.algorithm().name()).join(d.hex()).join("link")
    }
    pub fn tags_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags")
    }
    pub fn tag_current(&self, name: &RepoName, tag: &Tag) -> PathBuf {
        self.tags_dir(name).join(tag.as_str()).join("current/link")
    }
    pub fn tag_index(&self, name: &RepoName, tag: &Tag, d: &Digest) -> PathBuf {
        self.tags_dir(name).join(tag.as_str()).join("index").join(d.algorithm().name()).join(d.hex()).join("link")
    }
    pub fn uploads_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_uploads")
    }
    pub fn upload_dir(&self, name: &RepoName, uuid: &str) -> PathBuf {
        self.uploads_dir(name).join(uuid)
    }
    fn lock_path(&self) -> PathBuf {
        self.root.join(".strata-gc.lock")
    }

    // ---- primitives --------------------------------------------------------------

    /// The digest a link names, `None` if the file is absent or does not hold one.
    pub fn read_link(&self, path: &Path) -> Result<Option<Digest>> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let mut s = String::new();
        if (&mut f).take(MAX_LINK).read_to_string(&mut s).is_err() {
            return Ok(None);
        }
        Ok(s.trim().parse().ok())
    }

    /// Writes a link atomically (no newline), creating its directories durably.
    pub fn write_link(&self, path: &Path, d: &Digest) -> Result<()> {
        let dir = path.parent().expect("links live in a directory");
        mkdirs(dir)?;
        write_atomic(path, d.to_string().as_bytes())?;
        Ok(())
    }

    /// Shared hold on the gc lock for a write that creates links.
    pub fn write_guard(&self) -> Result<File> {
        self.lock(rustix::fs::FlockOperation::LockShared)
    }

    /// Exclusive hold on the gc lock: no link is created while it is held.
    pub fn gc_guard(&self) -> Result<File> {
        self.lock(rustix::fs::FlockOperation::LockExclusive)
    }

    fn lock(&self, op: rustix::fs::FlockOperation) -> Result<File> {
        let p = self.lock_path();
        let f = fs::OpenOptions::new().create(true).append(true).open(&p).map_err(io_err("open", &p))?;
        rustix::fs::flock(&f, op).map_err(|e| io_err("lock", &p)(e.into()))?;
        Ok(f)
    }

    // ---- blobs -------------------------------------------------------------------

    /// The data file and size of a blob as `name` sees it: its `_layers` link must parse
    /// and the blob it names must exist.
    pub fn blob_in_repo(&self, name: &RepoName, d: &Digest) -> Result<Option<(PathBuf, u64)>> {
        let Some(target) = self.read_link(&self.layer_link(name, d))? else { return Ok(None) };
        let data = self.blob_data(&target);
        match fs::metadata(&data) {
            Ok(m) if m.is_file() => Ok(Some((data, m.len()))),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(io_err("stat", &data)(e)),
        }
    }

    /// The digest a `_layers` link of `name` points at, if the blob exists.
    fn linked_target(&self, name: &RepoName, d: &Digest) -> Result<Option<Digest>> {
        let Some(target) = self.read_link(&self.layer_link(name, d))? else { return Ok(None) };
        Ok(self.blob_data(&target).is_file().then_some(target))
    }

    /// Links a blob that `from` has into `name` (a cross-repository mount). False if
    /// `from` does not have it.
    pub fn mount(&self, name: &RepoName, from: &RepoName, d: &Digest) -> Result<bool> {
        let _g = self.write_guard()?;
        let Some(target) = self.linked_target(from, d)? else { return Ok(false) };
        self.write_link(&self.layer_link(name, d), &target)?;
        Ok(true)
    }

    /// Removes `name`'s link to a blob (the data stays until gc).
    pub fn delete_blob(&self, name: &RepoName, d: &Digest) -> Result<()> {
        let _g = self.write_guard()?;
        let link = self.layer_link(name, d);
        if self.read_link(&link)?.is_none() {
            return Err(LayoutError::BlobUnknown(d.clone()));
        }
        remove_file(&link)
    }

    /// Stores bytes as a blob (manifests): staged beside `data` in the blob's directory.
    fn put_blob_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        let data = self.blob_data(d);
        if fs::metadata(&data).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        mkdirs(&self.blob_dir(d))?;
        write_atomic(&data, bytes)?;
        Ok(())
    }

    // ---- uploads -----------------------------------------------------------------

    /// Starts an upload session; returns its id.
    pub fn start_upload(&self, name: &RepoName) -> Result<String> {
        let uuid = new_uuid();
        let dir = self.upload_dir(name, &uuid);
        mkdirs(&dir)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        write_atomic(&dir.join("startedat"), strata_store::format_rfc3339(now.as_secs() as i64, 0).as_bytes())?;
        Ok(uuid)
    }

    /// The bytes received so far by a session, or `UploadUnknown`.
    pub fn upload_size(&self, name: &RepoName, uuid: &str) -> Result<u64> {
        let dir = self.checked_upload_dir(name, uuid)?;
        match fs::metadata(dir.join("data")) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("stat", &dir.join("data"))(e)),
        }
    }

    fn checked_upload_dir(&self, name: &RepoName, uuid: &str) -> Result<PathBuf> {
        if !valid_uuid(uuid) {
            return Err(LayoutError::UploadUnknown(uuid.to_string()));
        }
        let dir = self.upload_dir(name, uuid);
        if !dir.is_dir() {
            return Err(LayoutError::UploadUnknown(uuid.to_string()));
        }
        Ok(dir)
    }

    /// Opens a session's data file for appending; returns it and its current size.
    pub fn open_upload(&self, name: &RepoName, uuid: &str) -> Result<(File, u64)> {
        let dir = self.checked_upload_dir(name, uuid)?;
        let p = dir.join("data");
        let f = fs::OpenOptions::new().create(true).append(true).read(true).open(&p).map_err(io_err("open", &p))?;
        let size = f.metadata().map_err(io_err("stat", &p))?.len();
        Ok((f, size))
    }

    /// Ends a session without a blob.
    pub fn cancel_upload(&self, name: &RepoName, uuid: &str) -> Result<()> {
        let dir = self.checked_upload_dir(name, uuid)?;
        strata_store::fsutil::remove_all(&dir)?;
        Ok(())
    }

    /// Verifies and publishes a session's data as blob `expected` (see the module doc).
    /// `running` is the caller's hash of the whole file so far, if it has one.
    pub fn commit_upload(&self, name: &RepoName, uuid: &str, expected: &Digest, running: Option<(u64, Hasher)>) -> Result<u64> {
        let dir = self.checked_upload_dir(name, uuid)?;
        let data = dir.join("data");
        if !data.exists() {
            File::create(&data).map_err(io_err("create", &data))?;
        }
        let f = File::open(&data).map_err(io_err("open", &data))?;
        f.sync_all().map_err(io_err("sync", &data))?;
        let size = f.metadata().map_err(io_err("stat", &data))?.len();
        let actual = match running {
            Some((n, h)) if n == size && h.algorithm() == expected.algorithm() => h.finish(),
            _ => hash_file(f, expected.algorithm(), &data)?,
        };
        if &actual != expected {
            let _ = strata_store::fsutil::remove_all(&dir);
            return Err(LayoutError::DigestMismatch { expected: expected.clone(), actual });
        }
        let _g = self.write_guard()?;
        let target = self.blob_data(expected);
        if !target.is_file() {
            let bdir = self.blob_dir(expected);
            mkdirs(&bdir)?;
            fs::rename(&data, &target).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    LayoutError::UploadUnknown(uuid.to_string())
                } else {
                    io_err("rename", &target)(e)
                }
            })?;
            sync_dir(&bdir)?;
        }
        self.write_link(&self.layer_link(name, expected), expected)?;
        strata_store::fsutil::remove_all(&dir)?;
        Ok(size)
    }

    // ---- manifests ---------------------------------------------------------------

    /// The cached summary of a stored manifest, reading it if needed. `None` if the blob
    /// is absent.
    pub fn summary(&self, d: &Digest) -> Result<Option<Arc<Summary>>> {
        if let Some(s) = self.summaries.lock().unwrap().get(d) {
            return Ok(Some(s.clone()));
        }
        let Some(bytes) = self.read_blob(d)? else { return Ok(None) };
        Ok(Some(self.remember(d, &bytes)?))
    }

    fn remember(&self, d: &Digest, bytes: &[u8]) -> Result<Arc<Summary>> {
        let s = Arc::new(Summary::of(Manifest::parse(bytes)?, bytes.len() as u64));
        let mut c = self.summaries.lock().unwrap();
        if c.len() >= SUMMARY_CACHE {
            c.clear();
        }
        c.insert(d.clone(), s.clone());
        Ok(s)
    }

    fn read_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        let p = self.blob_data(d);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// The digest a reference names in `name`, if that manifest is in the repository.
    pub fn resolve(&self, name: &RepoName, r: &ManifestRef) -> Result<Digest> {
        let unknown = || LayoutError::ManifestUnknown(format!("{name}:{r}"));
        let d = match r {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => self.read_link(&self.tag_current(name, t))?.ok_or_else(unknown)?,
        };
        if self.read_link(&self.revision_link(name, &d))?.is_none() || !self.blob_data(&d).is_file() {
            return Err(unknown());
        }
        Ok(d)
    }

    /// A manifest's digest, bytes and media type.
    pub fn get_manifest(&self, name: &RepoName, r: &ManifestRef) -> Result<(Digest, Vec<u8>, Arc<Summary>)> {
        let d = self.resolve(name, r)?;
        let bytes = self.read_blob(&d)?.ok_or_else(|| LayoutError::ManifestUnknown(format!("{name}:{r}")))?;
        let cached = self.summaries.lock().unwrap().get(&d).cloned();
        let s = match cached {
            Some(s) => s,
            None => self.remember(&d, &bytes)?,
        };
        Ok((d, bytes, s))
    }

    /// A manifest's digest and summary, without its bytes (HEAD).
    pub fn stat_manifest(&self, name: &RepoName, r: &ManifestRef) -> Result<(Digest, Arc<Summary>)> {
        let d = self.resolve(name, r)?;
        let s = self.summary(&d)?.ok_or_else(|| LayoutError::ManifestUnknown(format!("{name}:{r}")))?;
        Ok((d, s))
    }

    /// Checks and stores a pushed manifest (see the module doc for the write order).
    pub fn put_manifest(&self, name: &RepoName, r: &ManifestRef, bytes: &[u8], content_type: Option<&str>) -> Result<Pushed> {
        let m = Manifest::parse_pushed(bytes, content_type)?;
        let digest = match r {
            ManifestRef::Digest(d) => {
                let actual = Digest::of(d.algorithm(), bytes);
                if &actual != d {
                    return Err(LayoutError::DigestMismatch { expected: d.clone(), actual });
                }
                actual
            }
            ManifestRef::Tag(_) => Digest::of(Algorithm::Sha256, bytes),
        };
        let _g = self.write_guard()?;
        for desc in &m.references {
            let present = match m.kind {
                Kind::Image => desc.urls || self.linked_target(name, &desc.digest)?.is_some(),
                Kind::Index => {
                    self.read_link(&self.revision_link(name, &desc.digest))?.is_some() && self.blob_data(&desc.digest).is_file()
                }
            };
            if !present {
                return Err(LayoutError::ManifestBlobUnknown(desc.digest.clone()));
            }
        }
        let subject = m.subject.as_ref().map(|s| s.digest.clone());
        self.put_blob_bytes(&digest, bytes)?;
        self.write_link(&self.revision_link(name, &digest), &digest)?;
        if let ManifestRef::Tag(t) = r {
            self.tag(name, t, &digest)?;
        }
        let mut c = self.summaries.lock().unwrap();
        if c.len() >= SUMMARY_CACHE {
            c.clear();
        }
        c.insert(digest.clone(), Arc::new(Summary::of(m, bytes.len() as u64)));
        Ok(Pushed { digest, subject })
    }

    /// Points a tag at a manifest: index entry, then `current` (distribution's order).
    pub fn tag(&self, name: &RepoName, t: &Tag, d: &Digest) -> Result<()> {
        self.write_link(&self.tag_index(name, t, d), d)?;
        self.write_link(&self.tag_current(name, t), d)
    }

    /// Deletes a tag, or a manifest by digest together with every tag pointing at it.
    pub fn delete_manifest(&self, name: &RepoName, r: &ManifestRef) -> Result<()> {
        let _g = self.write_guard()?;
        match r {
            ManifestRef::Tag(t) => {
                if self.read_link(&self.tag_current(name, t))?.is_none() {
                    return Err(LayoutError::ManifestUnknown(format!("{name}:{t}")));
                }
                strata_store::fsutil::remove_all(&self.tags_dir(name).join(t.as_str()))?;
            }
            ManifestRef::Digest(d) => {
                let link = self.revision_link(name, d);
                if self.read_link(&link)?.is_none() {
                    return Err(LayoutError::ManifestUnknown(format!("{name}@{d}")));
                }
                remove_file(&link)?;
                for t in self.tags(name)? {
                    let t = Tag::parse(&t).expect("listed tags are valid");
                    if self.read_link(&self.tag_current(name, &t))?.as_ref() == Some(d) {
                        strata_store::fsutil::remove_all(&self.tags_dir(name).join(t.as_str()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `name` is a repository (distribution: it has `_manifests`).
    pub fn repo_exists(&self, name: &RepoName) -> bool {
        self.repo_dir(name).join("_manifests").is_dir()
    }

    /// The repository's tags that point somewhere, sorted as Go's `sort.Strings`.
    pub fn tags(&self, name: &RepoName) -> Result<Vec<String>> {
        if !self.repo_exists(name) {
            return Err(LayoutError::NameUnknown(name.to_string()));
        }
        let dir = self.tags_dir(name);
        let mut out = Vec::new();
        for e in read_dir_names(&dir)? {
            let Ok(t) = Tag::parse(&e) else { continue };
            if self.read_link(&self.tag_current(name, &t))?.is_some() {
                out.push(e);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every repository, in distribution's walk order (depth first, children sorted).
    pub fn catalog(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let top = self.base.join("repositories");
        let mut stack = vec![(top.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let mut names = read_dir_names(&dir)?;
            names.sort();
            let mut children = Vec::new();
            for n in names {
                if n.starts_with('_') || n.starts_with('.') {
                    continue;
                }
                let p = dir.join(&n);
                if !p.is_dir() {
                    continue;
                }
                let full = if prefix.is_empty() { n.clone() } else { format!("{prefix}/{n}") };
                children.push((p, full));
            }
            // Depth first in sorted order: push in reverse so the smallest pops first;
            // a repository is listed when it is reached, before its nested ones.
            for (p, full) in children.into_iter().rev() {
                stack.push((p, full));
            }
            if !prefix.is_empty() && dir.join("_manifests").is_dir() {
                out.push(prefix);
            }
        }
        Ok(out)
    }

    /// The manifests of `name` whose `subject` is `subject`, sorted by digest.
    pub fn referrers(&self, name: &RepoName, subject: &Digest) -> Result<Vec<(Digest, Arc<Summary>)>> {
        let mut out = Vec::new();
        for d in self.revisions(name)? {
            if let Some(s) = self.summary(&d).ok().flatten() {
                if s.subject.as_ref() == Some(subject) {
                    out.push((d, s));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every manifest digest with a revision link in `name` (data not checked).
    pub fn revisions(&self, name: &RepoName) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let base = self.revisions_dir(name);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = base.join(alg.name());
            for hex in read_dir_names(&dir)? {
                let Ok(d) = format!("{}:{hex}", alg.name()).parse::<Digest>() else { continue };
                if self.read_link(&dir.join(&hex).join("link"))?.is_some() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

/// Names in a directory; empty if it does not exist.
pub(crate) fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("read", dir))?;
        if let Ok(n) = e.file_name().into_string() {
            out.push(n);
        }
    }
    Ok(out)
}

fn remove_file(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", p)(e)),
    }
}

/// Creates `dir` and its missing parents, fsyncing each parent that gained an entry, so
/// the renames that follow survive a power cut.
pub(crate) fn mkdirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.is_dir() {
        missing.push(cur);
        cur = match cur.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {
                if let Some(p) = d.parent() {
                    sync_dir(p)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", d)(e)),
        }
    }
    Ok(())
}

fn hash_file(mut f: File, algo: Algorithm, path: &Path) -> Result<Digest> {
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0)).map_err(io_err("seek", path))?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// A random (version 4) UUID in its text form, as distribution names uploads.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random generator is available");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Upload ids are UUIDs (ours and distribution's): 8-4-4-4-12 hex. Anything else is
/// refused before it becomes a path.
pub fn valid_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| if matches!(i, 8 | 13 | 18 | 23) { c == b'-' } else { c.is_ascii_hexdigit() })
}

/// Modification time in seconds since the epoch (gc's age checks).
pub(crate) fn mtime(p: &Path) -> Option<i64> {
    fs::symlink_metadata(p).ok().map(|m| m.mtime())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn links_have_no_newline_and_tolerate_whitespace() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::open(t.path()).unwrap();
        let d = Digest::sha256_of(b"x");
        let p = l.layer_link(&repo("a/b"), &d);
        l.write_link(&p, &d).unwrap();
        assert_eq!(fs::read(&p).unwrap(), d.to_string().as_bytes());
        assert_eq!(fs::read(&p).unwrap().len(), 71);
        fs::write(&p, format!("{d}\n")).unwrap();
        assert_eq!(l.read_link(&p).unwrap(), Some(d.clone()));
        fs::write(&p, "garbage").unwrap();
        assert_eq!(l.read_link(&p).unwrap(), None);
        assert!(p.starts_with(t.path().join("docker/registry/v2/repositories/a/b/_layers/sha256")));
    }

    #[test]
    fn upload_commit_verifies_then_links() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::open(t.path()).unwrap();
        let r = repo("x");
        let id = l.start_upload(&r).unwrap();
        let started = fs::read_to_string(l.upload_dir(&r, &id).join("startedat")).unwrap();
        assert_eq!(started.len(), 20, "{started}");
        let (mut f, n) = l.open_upload(&r, &id).unwrap();
        assert_eq!(n, 0);
        std::io::Write::write_all(&mut f, b"hello").unwrap();
        let wrong = Digest::sha256_of(b"other");
        assert!(matches!(l.commit_upload(&r, &id, &wrong, None), Err(LayoutError::DigestMismatch { .. })));
        assert!(!l.upload_dir(&r, &id).exists(), "a failed commit ends the session");
        assert!(!l.blob_data(&wrong).exists());

        let id = l.start_upload(&r).unwrap();
        let (mut f, _) = l.open_upload(&r, &id).unwrap();
        std::io::Write::write_all(&mut f, b"hello").unwrap();
        let d = Digest::sha256_of(b"hello");
        assert_eq!(l.commit_upload(&r, &id, &d, None).unwrap(), 5);
        assert_eq!(fs::read(l.blob_data(&d)).unwrap(), b"hello");
        assert_eq!(l.blob_in_repo(&r, &d).unwrap().unwrap().1, 5);
        assert!(l.blob_in_repo(&repo("y"), &d).unwrap().is_none(), "only the repository's own link serves a blob");
        assert!(!l.upload_dir(&r, &id).exists());
        assert!(l.mount(&repo("y"), &r, &d).unwrap());
        assert!(l.blob_in_repo(&repo("y"), &d).unwrap().is_some());
        assert!(matches!(l.open_upload(&r, "../../../../etc"), Err(LayoutError::UploadUnknown(_))));
    }

    #[test]
    fn catalog_order_is_distributions_walk() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::open(t.path()).unwrap();
        for n in ["a-c", "a/b", "a", "b/_x", "z"] {
            fs::create_dir_all(l.base().join("repositories").join(n).join("_manifests")).unwrap();
        }
        fs::create_dir_all(l.base().join("repositories/only/_layers")).unwrap();
        assert_eq!(l.catalog().unwrap(), ["a", "a/b", "a-c", "z"]);
    }

    #[test]
    fn uuids() {
        let u = new_uuid();
        assert!(valid_uuid(&u), "{u}");
        assert!(!valid_uuid("../x"));
        assert!(!valid_uuid(&u.replace('-', "/")));
    }
}
