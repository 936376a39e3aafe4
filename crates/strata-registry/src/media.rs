//! Manifest media types and what a registry needs to know of a manifest: its kind, what
//! it references, its subject. Manifests are kept as the exact bytes pushed; this reads
//! them as JSON and never re-serialises them (that would change their digest).

use serde_json::Value;
use strata_store::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The four manifest types a registry stores.
pub const MANIFEST_TYPES: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("unsupported manifest schema version {0}")]
    Schema(String),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("manifest media type {body:?} does not match Content-Type {header:?}")]
    TypeMismatch { body: String, header: String },
    #[error("invalid descriptor in manifest: {0}")]
    Descriptor(String),
}

impl strata_store::Classify for ManifestError {
    fn kind(&self) -> strata_store::ErrorKind {
        strata_store::ErrorKind::Invalid
    }
}

/// A content descriptor as found in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Non-empty for non-distributable ("foreign") layers, which may live elsewhere.
    pub urls: bool,
}

/// Whether a manifest lists blobs (an image) or other manifests (an index or list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What the registry reads out of a manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The declared `mediaType`, else the one distribution infers (an OCI index if it has
    /// `manifests`, an OCI manifest otherwise).
    pub media_type: String,
    pub kind: Kind,
    /// Config and layers (an image) or the manifests (an index), in document order.
    pub references: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, else (images only) `config.mediaType`: what a referrers list shows.
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

fn strip_params(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

impl Manifest {
    /// Reads a stored manifest (no Content-Type to check against).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        Manifest::parse_pushed(bytes, None)
    }

    /// Reads a pushed manifest; `content_type` is the request's header, checked against
    /// the document's own `mediaType` when both name a manifest type.
    pub fn parse_pushed(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| ManifestError::Json("not an object".into()))?;
        let declared = match obj.get("mediaType") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => return Err(ManifestError::MediaType(other.to_string())),
        };
        let header = content_type.map(strip_params).filter(|h| !h.is_empty());
        if let (Some(b), Some(h)) = (declared, header) {
            if b != h && MANIFEST_TYPES.contains(&h) {
                return Err(ManifestError::TypeMismatch { body: b.to_string(), header: h.to_string() });
            }
        }
        if matches!(declared.or(header), Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
            return Err(ManifestError::Schema("1".into()));
        }
        match obj.get("schemaVersion").and_then(Value::as_u64) {
            Some(2) => {}
            other => return Err(ManifestError::Schema(other.map_or_else(|| "(none)".to_string(), |n| n.to_string()))),
        }
        let media_type = match declared {
            Some(t) => t.to_string(),
            None => match header.filter(|h| MANIFEST_TYPES.contains(h)) {
                Some(h) => h.to_string(),
                None if obj.contains_key("manifests") => OCI_INDEX.to_string(),
                None => OCI_MANIFEST.to_string(),
            },
        };
        let kind = match media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => Kind::Image,
            DOCKER_LIST | OCI_INDEX => Kind::Index,
            other => return Err(ManifestError::MediaType(other.to_string())),
        };
        let mut references = Vec::new();
        let mut config_type = None;
        match kind {
            Kind::Image => {
                let config = obj.get("config").ok_or_else(|| ManifestError::Descriptor("missing config".into()))?;
                let c = descriptor(config)?;
                config_type = Some(c.media_type.clone());
                references.push(c);
                match obj.get("layers") {
                    Some(Value::Array(ls)) => {
                        for l in ls {
                            references.push(descriptor(l)?);
                        }
                    }
                    None | Some(Value::Null) if media_type == OCI_MANIFEST => {}
                    _ => return Err(ManifestError::Descriptor("layers must be an array".into())),
                }
            }
            Kind::Index => match obj.get("manifests") {
                Some(Value::Array(ms)) => {
                    for m in ms {
                        references.push(descriptor(m)?);
                    }
                }
                _ => return Err(ManifestError::Descriptor("manifests must be an array".into())),
            },
        }
        let subject = match obj.get("subject") {
            None | Some(Value::Null) => None,
            Some(s) => Some(descriptor(s)?),
        };
        let artifact_type = match obj.get("artifactType") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => config_type,
        };
        let annotations = obj.get("annotations").filter(|a| a.is_object()).cloned();
        Ok(Manifest { media_type, kind, references, subject, artifact_type, annotations })
    }
}

fn descriptor(v: &Value) -> Result<Descriptor, ManifestError> {
    let bad = |what: &str| ManifestError::Descriptor(format!("{what} in {v}"));
    let media_type = v.get("mediaType").and_then(Value::as_str).ok_or_else(|| bad("missing mediaType"))?;
    let digest = v.get("digest").and_then(Value::as_str).ok_or_else(|| bad("missing digest"))?;
    let digest: Digest = digest.parse().map_err(|_| bad("invalid digest"))?;
    let size = v.get("size").and_then(Value::as_u64).ok_or_else(|| bad("missing size"))?;
    let urls = v.get("urls").and_then(Value::as_array).is_some_and(|u| !u.is_empty());
    Ok(Descriptor { media_type: media_type.to_string(), digest, size, urls })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn kinds_and_references() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"c","digest":"{D}","size":0}},"layers":[{{"mediaType":"l","digest":"{D}","size":0,"urls":["http://x"]}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Image);
        assert_eq!(p.references.len(), 2);
        assert!(p.references[1].urls);
        assert_eq!(p.artifact_type.as_deref(), Some("c"));
        let idx = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2}}}}"#);
        let p = Manifest::parse(idx.as_bytes()).unwrap();
        assert_eq!((p.kind, p.media_type.as_str()), (Kind::Index, OCI_INDEX));
        assert_eq!(p.subject.unwrap().size, 2);
        assert!(p.artifact_type.is_none());
    }

    #[test]
    fn refuses() {
        assert!(matches!(Manifest::parse(b"{"), Err(ManifestError::Json(_))));
        assert!(matches!(Manifest::parse(br#"{"schemaVersion":1}"#), Err(ManifestError::Schema(_))));
        assert!(matches!(Manifest::parse(br#"{"schemaVersion":2,"mediaType":"x/y"}"#), Err(ManifestError::MediaType(_))));
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"c","digest":"{D}","size":0}},"layers":[]}}"#);
        assert!(matches!(Manifest::parse_pushed(m.as_bytes(), Some(DOCKER_MANIFEST)), Err(ManifestError::TypeMismatch { .. })));
        assert!(Manifest::parse_pushed(m.as_bytes(), Some("application/json")).is_ok());
        let bad = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"c","digest":"sha256:x","size":0}}}}"#);
        assert!(matches!(Manifest::parse(bad.as_bytes()), Err(ManifestError::Descriptor(_))));
    }
}
