//! Image references, normalised as Docker does (`busybox` is
//! `docker.io/library/busybox:latest`), validated with distribution's grammar.

use std::fmt;

use strata_store::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    Format,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
}

/// A parsed, normalised reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a user-supplied reference and normalises it; a missing tag stays missing
    /// (see `with_default_tag`).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| ReferenceError::Format)?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Format);
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Format);
        }
        let (domain, path) = split_domain(name);
        if !valid_domain(&domain) {
            return Err(ReferenceError::Format);
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("library/{path}") } else { path };
        if path.split('/').any(|c| !valid_component(&c.to_ascii_lowercase())) {
            return Err(ReferenceError::Format);
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        Ok(Reference { domain, path, tag: tag.map(str::to_string), digest })
    }

    /// Adds `:latest` when neither tag nor digest was given, as docker does for names.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Format);
        }
        Ok(Reference { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.into()), digest: None })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox` — the short name docker prints.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix("library/").unwrap_or(&self.path).to_string()
        } else {
            self.name()
        }
    }

    /// `busybox:latest`, `busybox@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form, the key under which tags are stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            // docker.io's legacy alias
            let d = if first == "index.docker.io" { DEFAULT_DOMAIN } else { first };
            (d.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    }
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(t: &str) -> bool {
    let w = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty() && b.len() <= 128 && w(b[0]) && b.iter().all(|&c| w(c) || c == b'.' || c == b'-')
}

/// Whether `s` could be an image id or id prefix (hex, optionally `sha256:`).
pub fn looks_like_id(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (!hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap().with_default_tag();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("localhost:5000/foo/bar:1.0").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/foo/bar:1.0");
        assert_eq!(r.familiar(), "localhost:5000/foo/bar:1.0");
        assert_eq!(Reference::parse("a/b/c:tag").unwrap().to_string(), "docker.io/a/b/c:tag");
        assert_eq!(Reference::parse("index.docker.io/library/x").unwrap().familiar(), "x");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Reference::parse(&format!("x@{d}")).unwrap().with_default_tag().familiar(), format!("x@{d}"));
    }

    #[test]
    fn rejects_like_docker() {
        for bad in ["foo:", ":tag", "a..b", "foo:bad!tag", "foo@sha256:abc", "-x", "x/", "/x", "a//b", "x y"] {
            assert_eq!(Reference::parse(bad), Err(ReferenceError::Format), "{bad}");
        }
        assert_eq!(
            Reference::parse("Busybox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert!(Reference::parse(&format!("x:{}", "a".repeat(129))).is_err());
        assert!(Reference::parse(&format!("x:{}", "a".repeat(128))).is_ok());
    }
}
