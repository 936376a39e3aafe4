//! The content store: immutable blobs addressed by digest, laid out as an OCI image-layout
//! blob tree (`content/blobs/<alg>/<hex>`).
//!
//! Lifecycle of a blob: `writer` opens a file in `content/ingest/` named after the caller's
//! lease; bytes are hashed as they are written; `Writer::commit` fsyncs, checks the size
//! and the digest against what the caller expected, and only then renames the file into
//! `blobs/` — so a blob is never visible before it is complete and verified. A writer
//! dropped without commit removes its file; one killed with its process leaves a file that
//! the lease sweep removes. `delete` is the only way a blob leaves.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::fsutil::sync_dir;
use crate::lease::Lease;
use crate::{Result, StoreError};

#[derive(Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// What the store knows of a blob without reading it.
#[derive(Debug, Clone)]
pub struct Info {
    pub digest: Digest,
    pub size: u64,
}

impl ContentStore {
    pub(crate) fn open(root: PathBuf) -> Result<ContentStore> {
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(StoreError::io("create", &p))?;
        }
        Ok(ContentStore { root })
    }

    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where a committed blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().name()).join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn info(&self, digest: &Digest) -> Result<Info> {
        let p = self.path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(Info { digest: digest.clone(), size: m.len() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(digest.clone())),
            Err(e) => Err(StoreError::io("stat", p)(e)),
        }
    }

    pub fn reader(&self, digest: &Digest) -> Result<File> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound(digest.clone())
            } else {
                StoreError::io("open", p)(e)
            }
        })
    }

    pub fn read_all(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let p = self.path(digest);
        self.reader(digest)?.read_to_end(&mut buf).map_err(StoreError::io("read", p))?;
        Ok(buf)
    }

    /// Opens a writer for a new blob under `lease`.
    pub fn writer(&self, lease: &Lease, algo: Algorithm) -> Result<Writer> {
        let path = self.ingest_dir().join(lease.resource_name());
        let file = File::create(&path).map_err(StoreError::io("create", &path))?;
        Ok(Writer { store: self.clone(), path: Some(path), file, hasher: Hasher::new(algo), size: 0 })
    }

    /// Stores a small blob from memory (configs, manifests), verified against `expected`.
    pub fn put(&self, lease: &Lease, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let mut w = self.writer(lease, expected.map_or(Algorithm::Sha256, |d| d.algorithm()))?;
        w.write_all(data).map_err(StoreError::io("write", self.ingest_dir()))?;
        w.commit(Some(data.len() as u64), expected)
    }

    /// Moves a file that the caller has already hashed (a staged file on this filesystem)
    /// into the store, after fsync. The caller vouches for `digest`: it computed it while
    /// writing the file, and it is rechecked by `strata system check`.
    pub fn adopt(&self, staged: &Path, digest: &Digest) -> Result<()> {
        let dst = self.path(digest);
        if dst.exists() {
            return fs::remove_file(staged).map_err(StoreError::io("remove", staged));
        }
        File::open(staged).and_then(|f| f.sync_all()).map_err(StoreError::io("sync", staged))?;
        fs::rename(staged, &dst).map_err(StoreError::io("rename", &dst))?;
        sync_dir(dst.parent().expect("blob path has a parent"))
    }

    /// Removes a blob. Absent blobs are not an error (removal is idempotent).
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", p)(e)),
        }
    }

    /// Every committed blob, for checks and garbage collection.
    pub fn walk(&self) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        for algo in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(algo);
            for ent in fs::read_dir(&dir).map_err(StoreError::io("read dir", &dir))? {
                let ent = ent.map_err(StoreError::io("read dir", &dir))?;
                let name = ent.file_name();
                let Ok(digest) = format!("{algo}:{}", name.to_string_lossy()).parse::<Digest>() else { continue };
                let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(Info { digest, size });
            }
        }
        Ok(out)
    }

    /// Re-hashes a blob and compares it with its name.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let mut f = self.reader(digest)?;
        let mut h = Hasher::new(digest.algorithm());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(StoreError::io("read", self.path(digest)))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual = h.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(())
    }
}

/// A blob being written. Implements `Write`; nothing is visible until `commit`.
pub struct Writer {
    store: ContentStore,
    path: Option<PathBuf>,
    file: File,
    hasher: Hasher,
    size: u64,
}

impl Writer {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fsyncs, checks size and digest, then renames into place. On any mismatch the
    /// partial file is removed and nothing becomes visible.
    pub fn commit(mut self, expected_size: Option<u64>, expected: Option<&Digest>) -> Result<Digest> {
        let path = self.path.take().expect("writer committed once");
        let res = (|| {
            let hasher = std::mem::replace(&mut self.hasher, Hasher::new(Algorithm::Sha256));
            let actual = hasher.finish();
            if let Some(exp) = expected_size {
                if exp != self.size {
                    return Err(StoreError::SizeMismatch {
                        digest: expected.map_or_else(|| actual.to_string(), |d| d.to_string()),
                        expected: exp,
                        actual: self.size,
                    });
                }
            }
            if let Some(exp) = expected {
                if exp != &actual {
                    return Err(StoreError::DigestMismatch { expected: exp.clone(), actual });
                }
            }
            self.store.adopt(&path, &actual)?;
            Ok(actual)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&path);
        }
        res
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}
