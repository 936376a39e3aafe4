//! Repository names, tags and manifest references as the distribution spec defines
//! them. Shared by the server (which must refuse anything else before it touches a path)
//! and the client.
//!
//! The grammar is the whole defence against path traversal: a valid name is made of
//! lowercase alphanumeric runs joined by `.`, `_`, `__` or `-`+, in `/`-separated
//! components, so `..`, empty components, a leading `_` (which would collide with
//! `_layers`, `_manifests`, `_uploads`) and any byte outside `[a-z0-9._/-]` are refused.

use std::fmt;

use strata_store::Digest;

/// Names longer than this are refused (the spec's 255 counts `host/` too; the registry
/// does not know its host name, so it applies the limit to the name alone).
pub const MAX_NAME_LEN: usize = 255;
/// The spec's tag grammar allows 128 characters.
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid repository name {0:?}")]
    Name(String),
    #[error("invalid tag {0:?}")]
    Tag(String),
}

impl strata_store::Classify for NameError {
    fn kind(&self) -> strata_store::ErrorKind {
        strata_store::ErrorKind::Invalid
    }
}

/// A repository name, validated: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(NameError::Name(s.to_string()));
        }
        Ok(RepoName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: alphanumeric runs separated by `.`, `_`, `__` or one or more `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        debug_assert!(i > sep);
    }
}

/// A tag, validated: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a digest if it has the form `alg:…`, a tag otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(Tag),
    Digest(Digest),
}

/// Why a manifest reference was refused: its digest or its tag is malformed.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error(transparent)]
    Digest(#[from] strata_store::DigestError),
    #[error(transparent)]
    Tag(#[from] NameError),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<ManifestRef, RefError> {
        if s.contains(':') {
            Ok(ManifestRef::Digest(s.parse()?))
        } else {
            Ok(ManifestRef::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(t) => t.fmt(f),
            ManifestRef::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b_c__d---e/f0", "0/1/2", "x-y.z"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "../etc", "a/../b", "a/./b", "_layers", "a/_uploads", "a..b", "a___b", "a-", "-a",
            "a b", "a%2e%2e", "a\0b", ".", "..",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_err());
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags_and_refs() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok} refused");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"t".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(ManifestRef::parse("latest").unwrap(), ManifestRef::Tag(_)));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(ManifestRef::parse(d).unwrap(), ManifestRef::Digest(_)));
        assert!(matches!(ManifestRef::parse("sha256:abc"), Err(RefError::Digest(_))));
        assert!(matches!(ManifestRef::parse("md5:x"), Err(RefError::Digest(_))));
    }
}
