//! The build context: a directory read in place, a tar stream extracted under the
//! build's lease, or none (a Dockerfile given on stdin), with its `.dockerignore`.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ignore::Ignore;
use crate::BuildError;

pub struct Context {
    /// None: no context at all (`strata build - < Dockerfile`).
    root: Option<PathBuf>,
    pub ignore: Ignore,
    /// An extracted tar stream (under the lease's tmp dir), deleted with the context.
    owned: bool,
}

impl Context {
    /// A directory on the host, read where it is.
    pub fn dir(path: &Path) -> Result<Context, BuildError> {
        let md = std::fs::metadata(path).map_err(|e| BuildError::Context(format!("unable to prepare context: path {:?} not found", path.display().to_string()).replace("\\\"", "\"") + &if e.kind() == std::io::ErrorKind::NotFound { String::new() } else { format!(": {e}") }))?;
        if !md.is_dir() {
            return Err(BuildError::Context(format!("unable to prepare context: context must be a directory: {}", path.display())));
        }
        let ignore = read_ignore(path)?;
        Ok(Context { root: Some(path.to_path_buf()), ignore, owned: false })
    }

    /// No context: COPY and ADD have nothing to read.
    pub fn none() -> Context {
        Context { root: None, ignore: Ignore::default(), owned: false }
    }

    /// A tar stream (plain, gzip or zstd), extracted into `into` (an empty directory the
    /// caller owns) with the layer applier's checks: no `..`, no absolute names, nothing
    /// written through a symlink.
    pub fn tar(reader: impl Read, into: &Path) -> Result<Context, BuildError> {
        let mut r = std::io::BufReader::with_capacity(1 << 20, reader);
        let head = std::io::BufRead::fill_buf(&mut r).map_err(|e| BuildError::Context(format!("read context: {e}")))?.to_vec();
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(r))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| BuildError::Context(e.to_string()))?)
        } else {
            Box::new(r)
        };
        strata_snapshot::layer::apply_tar(stream, into, &strata_snapshot::layer::ApplyOptions { whiteouts: strata_snapshot::layer::WhiteoutMode::Plain })
            .map_err(|e| BuildError::Context(format!("failed to read the build context: {e}")))?;
        let ignore = read_ignore(into)?;
        Ok(Context { root: Some(into.to_path_buf()), ignore, owned: true })
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Reads a file of the context (the Dockerfile), resolved inside it.
    pub fn read_file(&self, rel: &str) -> Option<Vec<u8>> {
        let root = self.root.as_ref()?;
        let mut f = strata_store::fsutil::open_in_root(root, rel, rustix::fs::OFlags::RDONLY).ok()?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).ok()?;
        Some(v)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.owned {
            if let Some(r) = &self.root {
                let _ = strata_store::fsutil::remove_all(r);
            }
        }
    }
}

fn read_ignore(dir: &Path) -> Result<Ignore, BuildError> {
    match strata_store::fsutil::open_in_root(dir, ".dockerignore", rustix::fs::OFlags::RDONLY) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s).map_err(|e| BuildError::Context(format!("read .dockerignore: {e}")))?;
            Ignore::parse(&s).map_err(BuildError::Context)
        }
        Err(_) => Ok(Ignore::default()),
    }
}

/// Whether bytes on stdin are an archive (a tar context) rather than a Dockerfile.
pub fn looks_like_archive(head: &[u8]) -> bool {
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return true;
    }
    head.len() >= 262 && &head[257..262] == b"ustar"
}
