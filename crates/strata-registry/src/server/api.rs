//! The distribution API's error codes and their HTTP statuses — decided here and nowhere
//! else — and the mapping of every storage error to one of them.

use serde_json::{json, Value};
use strata_store::{Classify, ErrorKind};

use super::layout::LayoutError;

/// Distribution's error codes (registry/api/errcode, v2/errors.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    RangeInvalid,
    PaginationNumberInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooLarge,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            BlobUnknown => "BLOB_UNKNOWN",
            BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid => "DIGEST_INVALID",
            ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid => "MANIFEST_INVALID",
            ManifestUnknown => "MANIFEST_UNKNOWN",
            NameInvalid => "NAME_INVALID",
            NameUnknown => "NAME_UNKNOWN",
            SizeInvalid => "SIZE_INVALID",
            TagInvalid => "TAG_INVALID",
            RangeInvalid => "RANGE_INVALID",
            PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Unauthorized => "UNAUTHORIZED",
            Denied => "DENIED",
            Unsupported => "UNSUPPORTED",
            TooLarge => "SIZE_INVALID",
            Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> u16 {
        use Code::*;
        match self {
            BlobUnknown | BlobUploadUnknown | ManifestUnknown | NameUnknown => 404,
            // Distribution answers 404 for BLOB_UPLOAD_INVALID; 400 says what it is (a
            // request the session cannot take), and no client relies on the 404.
            BlobUploadInvalid | DigestInvalid | ManifestBlobUnknown | ManifestInvalid | NameInvalid | SizeInvalid | TagInvalid
            | PaginationNumberInvalid => 400,
            RangeInvalid => 416,
            Unauthorized => 401,
            Denied => 403,
            Unsupported => 405,
            TooLarge => 413,
            Unknown => 500,
        }
    }

    /// The message distribution prints for the code.
    pub fn message(self) -> &'static str {
        use Code::*;
        match self {
            BlobUnknown => "blob unknown to registry",
            BlobUploadInvalid => "blob upload invalid",
            BlobUploadUnknown => "blob upload unknown to registry",
            DigestInvalid => "provided digest did not match uploaded content",
            ManifestBlobUnknown => "blob unknown to registry",
            ManifestInvalid => "manifest invalid",
            ManifestUnknown => "manifest unknown",
            NameInvalid => "invalid repository name",
            NameUnknown => "repository name not known to registry",
            SizeInvalid => "provided length did not match content length",
            TagInvalid => "manifest tag did not match URI",
            RangeInvalid => "invalid content range",
            PaginationNumberInvalid => "invalid number of results requested",
            Unauthorized => "authentication required",
            Denied => "requested access to the resource is denied",
            Unsupported => "The operation is unsupported.",
            TooLarge => "payload too large",
            Unknown => "unknown error",
        }
    }
}

/// An error answer (boxed: it travels in every handler's `Result`, and is rare).
#[derive(Debug)]
pub struct ApiError(Box<ErrorAnswer>);

#[derive(Debug)]
pub struct ErrorAnswer {
    pub code: Code,
    pub message: String,
    pub detail: Value,
    /// `Range` for RANGE_INVALID (where the session is).
    pub headers: Vec<(&'static str, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorAnswer;
    fn deref(&self) -> &ErrorAnswer {
        &self.0
    }
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<Value>) -> ApiError {
        ApiError(Box::new(ErrorAnswer { code, message: code.message().to_string(), detail: detail.into(), headers: Vec::new() }))
    }
    pub fn with_message(mut self, m: impl Into<String>) -> ApiError {
        self.0.message = m.into();
        self
    }
    pub fn header(mut self, k: &'static str, v: String) -> ApiError {
        self.0.headers.push((k, v));
        self
    }
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": self.detail}]}))
            .expect("error JSON serialises")
    }
}

impl From<LayoutError> for ApiError {
    fn from(e: LayoutError) -> ApiError {
        use LayoutError as L;
        match &e {
            L::BlobUnknown(d) => ApiError::new(Code::BlobUnknown, json!({"digest": d.to_string()})),
            L::UploadUnknown(u) => ApiError::new(Code::BlobUploadUnknown, json!({"uuid": u})),
            L::ManifestUnknown(r) => ApiError::new(Code::ManifestUnknown, json!({"reference": r})),
            L::NameUnknown(n) => ApiError::new(Code::NameUnknown, json!({"name": n})),
            L::DigestMismatch { .. } => ApiError::new(Code::DigestInvalid, Value::Null).with_message(e.to_string()),
            L::RangeInvalid { size, .. } => {
                let r = if *size == 0 { "0-0".to_string() } else { format!("0-{}", size - 1) };
                ApiError::new(Code::RangeInvalid, Value::Null).with_message(e.to_string()).header("Range", r)
            }
            L::ManifestInvalid(m) => ApiError::new(Code::ManifestInvalid, Value::Null).with_message(format!("manifest invalid: {m}")),
            L::ManifestBlobUnknown(d) => ApiError::new(Code::ManifestBlobUnknown, json!({"digest": d.to_string()})),
            L::Io { .. } | L::Store(_) => {
                debug_assert_eq!(e.kind(), ErrorKind::Internal);
                tracing::error!("{e}");
                ApiError::new(Code::Unknown, Value::Null).with_message(e.to_string())
            }
        }
    }
}
