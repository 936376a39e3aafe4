use std::io;
use std::path::PathBuf;

use strata_store::{Classify, ErrorKind};

/// Errors of applying, writing and diffing layers.
///
/// Entry names are shown with `{:?}` so that control bytes in a hostile name cannot
/// forge log lines.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The entry's name or link target is hostile or malformed.
    #[error("invalid tar entry {entry:?}: {reason}")]
    InvalidEntry { entry: String, reason: String },

    /// PAX or GNU long-name data larger than we are willing to hold in memory.
    #[error("invalid tar entry {entry:?}: huge header ({size} bytes of extension data, the limit is {limit})")]
    HugeHeader { entry: String, size: u64, limit: u64 },

    #[error("invalid tar entry {entry:?}: unsupported entry type {kind}")]
    UnsupportedType { entry: String, kind: String },

    /// The stream ended inside a header or inside an entry's data. `entry` is the
    /// entry being read, or the last complete one when a header was cut.
    #[error("truncated layer tar at or after entry {entry:?}")]
    Truncated { entry: String },

    /// The tar stream could not be parsed (bad checksum, bad number field, decoder
    /// failure of the reader underneath).
    #[error("malformed layer tar at or after entry {entry:?}: {source}")]
    Malformed { entry: String, source: io::Error },

    /// A filesystem operation for one tar entry failed.
    #[error("tar entry {entry:?}: {op}: {source}")]
    Apply { entry: String, op: &'static str, source: io::Error },

    /// A filesystem operation on a host path failed.
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

impl LayerError {
    pub(crate) fn invalid(entry: &str, reason: impl Into<String>) -> LayerError {
        LayerError::InvalidEntry { entry: entry.to_string(), reason: reason.into() }
    }

    pub(crate) fn apply<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> LayerError + 'a {
        move |source| LayerError::Apply { entry: entry.to_string(), op, source }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayerError {
        let path = path.into();
        move |source| LayerError::Io { op, path, source }
    }
}

impl Classify for LayerError {
    fn kind(&self) -> ErrorKind {
        match self {
            LayerError::InvalidEntry { .. }
            | LayerError::HugeHeader { .. }
            | LayerError::UnsupportedType { .. }
            | LayerError::Truncated { .. } => ErrorKind::Invalid,
            // An errno means the system failed underneath us (disk, network); anything
            // else came out of a parser or decoder and means the bytes are bad.
            LayerError::Malformed { source, .. } if source.raw_os_error().is_some() => ErrorKind::Internal,
            LayerError::Malformed { .. } => ErrorKind::Invalid,
            LayerError::Apply { .. } | LayerError::Io { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_entry_and_are_lowercase() {
        let e = LayerError::invalid("../etc/passwd", "path escapes the root");
        assert_eq!(e.to_string(), r#"invalid tar entry "../etc/passwd": path escapes the root"#);
        assert_eq!(e.kind(), ErrorKind::Invalid);

        let e = LayerError::HugeHeader { entry: "PaxHeaders.0/x".into(), size: 5, limit: 4 };
        assert!(e.to_string().starts_with(r#"invalid tar entry "PaxHeaders.0/x": huge header"#));

        let e = LayerError::io("open layer root", "/var/lib/x")(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().starts_with("open layer root /var/lib/x: "), "{e}");
        assert_eq!(e.kind(), ErrorKind::Internal);
    }

    #[test]
    fn control_bytes_in_names_are_escaped() {
        let e = LayerError::invalid("a\nb\0", "x");
        assert_eq!(e.to_string(), r#"invalid tar entry "a\nb\0": x"#);
    }

    #[test]
    fn malformed_stream_is_invalid_unless_the_system_failed() {
        let bad = LayerError::Malformed { entry: String::new(), source: io::Error::other("checksum mismatch") };
        assert_eq!(bad.kind(), ErrorKind::Invalid);
        let eio = LayerError::Malformed { entry: String::new(), source: io::Error::from_raw_os_error(libc::EIO) };
        assert_eq!(eio.kind(), ErrorKind::Internal);
    }
}
