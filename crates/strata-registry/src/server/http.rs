//! The distribution API over the layout: routing, headers, request bodies. Handlers are
//! thin: they parse, call one `Layout` operation, and shape the answer.
//!
//! Small reads (links, stats, manifests) run inline on the async workers: they hit the
//! page cache and take microseconds, less than a hop to the blocking pool. Anything that
//! fsyncs, walks a directory tree, streams a blob or runs bcrypt goes to the blocking pool.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use strata_store::{Algorithm, Digest, Hasher};

use super::api::{ApiError, Code};
use super::auth::Htpasswd;
use super::body::RespBody;
use super::config::Config;
use super::layout::{Layout, LayoutError};
use crate::media::OCI_INDEX;
use crate::name::{ManifestRef, RefError, RepoName};

/// Request bodies are written in batches of this size: one hop to the blocking pool per
/// batch, and a bound on what each upload holds in memory.
const WRITE_BATCH: usize = 256 << 10;
const CATALOG_DEFAULT: usize = 100;
const MAX_SESSIONS: usize = 10_000;
const CATALOG_MAX: usize = 1000;

/// A session's running hash: the digest of the data file's first `.0` bytes, so far.
type Running = Option<(u64, Hasher)>;

pub struct App {
    pub layout: Arc<Layout>,
    pub cfg: Config,
    pub auth: Option<Arc<Htpasswd>>,
    /// One entry per upload session this process has touched: its lock (one request at
    /// a time appends) and its running hash. Lost on restart; the commit then re-hashes.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Running>>>>,
}

type Res = Result<Response<RespBody>, ApiError>;

fn resp(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder().status(status)
}

fn empty(b: hyper::http::response::Builder) -> Response<RespBody> {
    b.header("Content-Length", "0").body(RespBody::Empty).expect("valid response")
}

fn json_resp(b: hyper::http::response::Builder, v: &Value) -> Response<RespBody> {
    let body = serde_json::to_vec(v).expect("JSON serialises");
    b.header("Content-Type", "application/json").header("Content-Length", body.len()).body(RespBody::full(body)).expect("valid response")
}

fn range_header(size: u64) -> String {
    // Distribution answers `0-0` for an empty session; clients only read the end.
    if size == 0 {
        "0-0".to_string()
    } else {
        format!("0-{}", size - 1)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, LayoutError> + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(Code::Unknown, Value::Null).with_message(format!("worker failed: {e}"))),
    }
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn q<'a>(qs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    qs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn parse_name(s: &str) -> Result<RepoName, ApiError> {
    RepoName::parse(s).map_err(|_| ApiError::new(Code::NameInvalid, json!({"name": s})))
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|_| ApiError::new(Code::DigestInvalid, json!({"digest": s})).with_message(format!("invalid digest {s:?}")))
}

fn parse_ref(s: &str) -> Result<ManifestRef, ApiError> {
    ManifestRef::parse(s).map_err(|e| match e {
        RefError::Digest(_) => parse_digest(s).unwrap_err(),
        RefError::Tag(_) => ApiError::new(Code::TagInvalid, json!({"tag": s})).with_message(format!("invalid tag {s:?}")),
    })
}

/// What a `/v2/...` path names. A repository name may contain `/`, so routes are told
/// apart by their last segments; the name is what remains before them.
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Some(Route::UploadStart(name));
    }
    let (head2, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(head2, last)),
        "blobs" => Some(Route::Blob(head2, last)),
        "referrers" => Some(Route::Referrers(head2, last)),
        "uploads" => {
            let name = head2.strip_suffix("/blobs")?;
            Some(Route::Upload(name, last))
        }
        _ => None,
    }
}

impl App {
    pub fn new(layout: Arc<Layout>, cfg: Config) -> App {
        let auth = cfg.htpasswd.as_deref().map(|p| Arc::new(Htpasswd::new(p)));
        App { layout, cfg, auth, sessions: Mutex::new(HashMap::new()) }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<RespBody> {
        let head_only = req.method() == Method::HEAD;
        let mut r = match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => {
                let mut b = resp(StatusCode::from_u16(e.code.status()).expect("valid status"));
                for (k, v) in &e.headers {
                    b = b.header(*k, v);
                }
                if e.code == Code::Unauthorized {
                    b = b.header("WWW-Authenticate", format!("Basic realm=\"{}\"", self.cfg.realm.replace('"', "")));
                }
                let body = e.body();
                b = b.header("Content-Type", "application/json; charset=utf-8").header("Content-Length", body.len());
                b.body(if head_only { RespBody::Empty } else { RespBody::full(body) }).expect("valid response")
            }
        };
        r.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
        r
    }

    async fn authorize(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let Some(auth) = &self.auth else { return Ok(()) };
        let h = header(req, "authorization").map(str::to_string);
        if auth.cached(h.as_deref()) {
            return Ok(());
        }
        let a = auth.clone();
        let ok = tokio::task::spawn_blocking(move || a.check(h.as_deref())).await.unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(Code::Unauthorized, Value::Null))
        }
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Res {
        let path = req.uri().path().to_string();
        if path == "/" {
            return Ok(empty(resp(StatusCode::OK)));
        }
        let Some(rt) = route(&path) else {
            return Ok(resp(StatusCode::NOT_FOUND)
                .header("Content-Type", "text/plain; charset=utf-8")
                .header("Content-Length", 19)
                .body(RespBody::full(&b"404 page not found\n"[..]))
                .expect("valid response"));
        };
        self.authorize(&req).await?;
        let m = req.method().clone();
        if self.cfg.read_only && !matches!(m, Method::GET | Method::HEAD) {
            return Err(ApiError::new(Code::Unsupported, Value::Null).with_message("registry is in read-only mode"));
        }
        let not_allowed = || ApiError::new(Code::Unsupported, Value::Null);
        match rt {
            Route::Base => match m {
                Method::GET | Method::HEAD => Ok(json_resp(resp(StatusCode::OK), &json!({}))),
                _ => Err(not_allowed()),
            },
            Route::Catalog => match m {
                Method::GET => self.catalog(&req).await,
                _ => Err(not_allowed()),
            },
            Route::Tags(n) => {
                let name = parse_name(n)?;
                match m {
                    Method::GET => self.tags(&req, name),
                    _ => Err(not_allowed()),
                }
            }
            Route::Manifest(n, r) => {
                let name = parse_name(n)?;
                let r = parse_ref(r)?;
                match m {
                    Method::GET | Method::HEAD => self.get_manifest(&req, name, r, m == Method::HEAD),
                    Method::PUT => self.put_manifest(req, name, r).await,
                    Method::DELETE => self.delete_manifest(name, r).await,
                    _ => Err(not_allowed()),
                }
            }
            Route::Blob(n, d) => {
                let name = parse_name(n)?;
                let d = parse_digest(d)?;
                match m {
                    Method::GET | Method::HEAD => self.get_blob(&req, name, d, m == Method::HEAD),
                    Method::DELETE => self.delete_blob(name, d).await,
                    _ => Err(not_allowed()),
                }
            }
            Route::Referrers(n, d) => {
                let name = parse_name(n)?;
                let d = parse_digest(d)?;
                match m {
                    Method::GET => self.referrers(&req, name, d).await,
                    _ => Err(not_allowed()),
                }
            }
            Route::UploadStart(n) => {
                let name = parse_name(n)?;
                match m {
                    Method::POST => self.start_upload(req, name).await,
                    _ => Err(not_allowed()),
                }
            }
            Route::Upload(n, id) => {
                let name = parse_name(n)?;
                let id = id.to_string();
                match m {
                    Method::GET => self.upload_status(name, id),
                    Method::PATCH => self.patch_upload(req, name, id).await,
                    Method::PUT => self.put_upload(req, name, id).await,
                    Method::DELETE => self.cancel_upload(name, id).await,
                    _ => Err(not_allowed()),
                }
            }
        }
    }

    // ---- discovery ----------------------------------------------------------------

    async fn catalog(&self, req: &Request<Incoming>) -> Res {
        let qs = query(req);
        let n = match q(&qs, "n") {
            None | Some("") => CATALOG_DEFAULT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n <= CATALOG_MAX => n,
                _ => return Err(ApiError::new(Code::PaginationNumberInvalid, json!({"n": s}))),
            },
        };
        let last = q(&qs, "last").unwrap_or("").to_string();
        let layout = self.layout.clone();
        let all = blocking(move || layout.catalog()).await?;
        let after: Vec<String> = all.into_iter().filter(|r| last.is_empty() || r.as_str() > last.as_str()).collect();
        let more = after.len() > n;
        let page: Vec<String> = after.into_iter().take(n).collect();
        let mut b = resp(StatusCode::OK);
        if more && n > 0 {
            b = b.header("Link", format!("</v2/_catalog?last={}&n={n}>; rel=\"next\"", page.last().expect("n > 0")));
        }
        Ok(json_resp(b, &json!({"repositories": page})))
    }

    fn tags(&self, req: &Request<Incoming>, name: RepoName) -> Res {
        let qs = query(req);
        let n = match q(&qs, "n") {
            None | Some("") => None,
            Some(s) => Some(s.parse::<usize>().map_err(|_| ApiError::new(Code::PaginationNumberInvalid, json!({"n": s})))?),
        };
        let last = q(&qs, "last").unwrap_or("");
        let all = self.layout.tags(&name)?;
        let after: Vec<String> = all.into_iter().filter(|t| last.is_empty() || t.as_str() > last).collect();
        let mut b = resp(StatusCode::OK);
        let page = match n {
            Some(n) if after.len() > n => {
                let page: Vec<String> = after.into_iter().take(n).collect();
                if let Some(l) = page.last() {
                    b = b.header("Link", format!("</v2/{name}/tags/list?last={l}&n={n}>; rel=\"next\""));
                }
                page
            }
            _ => after,
        };
        Ok(json_resp(b, &json!({"name": name.as_str(), "tags": page})))
    }

    async fn referrers(&self, req: &Request<Incoming>, name: RepoName, subject: Digest) -> Res {
        let qs = query(req);
        let filter = q(&qs, "artifactType").filter(|s| !s.is_empty()).map(str::to_string);
        let layout = self.layout.clone();
        let found = blocking(move || layout.referrers(&name, &subject)).await?;
        let mut manifests = Vec::new();
        for (d, s) in found {
            if let Some(f) = &filter {
                if s.artifact_type.as_deref() != Some(f.as_str()) {
                    continue;
                }
            }
            let mut desc = json!({"mediaType": s.media_type, "digest": d.to_string(), "size": s.size});
            if let Some(t) = &s.artifact_type {
                desc["artifactType"] = json!(t);
            }
            if let Some(a) = &s.annotations {
                desc["annotations"] = a.clone();
            }
            manifests.push(desc);
        }
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).expect("JSON");
        let mut b = resp(StatusCode::OK).header("Content-Type", OCI_INDEX).header("Content-Length", body.len());
        if filter.is_some() {
            b = b.header("OCI-Filters-Applied", "artifactType");
        }
        Ok(b.body(RespBody::full(body)).expect("valid response"))
    }

    // ---- manifests ----------------------------------------------------------------

    fn get_manifest(&self, req: &Request<Incoming>, name: RepoName, r: ManifestRef, head: bool) -> Res {
        let etag_of = |d: &Digest| format!("\"{d}\"");
        if head {
            let (d, s) = self.layout.stat_manifest(&name, &r)?;
            return Ok(resp(StatusCode::OK)
                .header("Content-Type", &s.media_type)
                .header("Content-Length", s.size)
                .header("Docker-Content-Digest", d.to_string())
                .header("Etag", etag_of(&d))
                .body(RespBody::Empty)
                .expect("valid response"));
        }
        let (d, bytes, s) = self.layout.get_manifest(&name, &r)?;
        let etag = etag_of(&d);
        if header(req, "if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
            return Ok(resp(StatusCode::NOT_MODIFIED)
                .header("Docker-Content-Digest", d.to_string())
                .header("Etag", etag)
                .body(RespBody::Empty)
                .expect("valid response"));
        }
        Ok(resp(StatusCode::OK)
            .header("Content-Type", &s.media_type)
            .header("Content-Length", bytes.len())
            .header("Docker-Content-Digest", d.to_string())
            .header("Etag", etag)
            .body(RespBody::full(bytes))
            .expect("valid response"))
    }

    async fn put_manifest(&self, req: Request<Incoming>, name: RepoName, r: ManifestRef) -> Res {
        let max = self.cfg.max_manifest;
        let too_big = || ApiError::new(Code::TooLarge, json!({"limit": max})).with_message(format!("manifest exceeds {max} bytes"));
        if header(&req, "content-length").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > max as u64) {
            return Err(too_big());
        }
        let ct = header(&req, "content-type").map(str::to_string);
        let bytes = match http_body_util::Limited::new(req.into_body(), max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_big()),
            Err(e) => {
                return Err(ApiError::new(Code::ManifestInvalid, Value::Null).with_message(format!("reading manifest: {e}")))
            }
        };
        let layout = self.layout.clone();
        let (n2, r2) = (name.clone(), r.clone());
        let pushed = blocking(move || layout.put_manifest(&n2, &r2, &bytes, ct.as_deref())).await?;
        let mut b = resp(StatusCode::CREATED)
            .header("Location", format!("/v2/{name}/manifests/{}", pushed.digest))
            .header("Docker-Content-Digest", pushed.digest.to_string());
        if let Some(s) = &pushed.subject {
            b = b.header("OCI-Subject", s.to_string());
        }
        Ok(empty(b))
    }

    async fn delete_manifest(&self, name: RepoName, r: ManifestRef) -> Res {
        if !self.cfg.delete_enabled {
            return Err(ApiError::new(Code::Unsupported, Value::Null));
        }
        let layout = self.layout.clone();
        blocking(move || layout.delete_manifest(&name, &r)).await?;
        Ok(empty(resp(StatusCode::ACCEPTED)))
    }

    // ---- blobs --------------------------------------------------------------------

    fn get_blob(&self, req: &Request<Incoming>, name: RepoName, d: Digest, head: bool) -> Res {
        let (path, size) = self.layout.blob_in_repo(&name, &d)?.ok_or_else(|| LayoutError::BlobUnknown(d.clone()))?;
        let b = resp(StatusCode::OK)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", d.to_string())
            .header("Etag", format!("\"{d}\""))
            .header("Cache-Control", "max-age=31536000")
            .header("Accept-Ranges", "bytes");
        if head {
            return Ok(b.header("Content-Length", size).body(RespBody::Empty).expect("valid response"));
        }
        let (status, start, len) = match header(req, "range").map(|h| parse_range(h, size)) {
            None | Some(RangeReq::Whole) => (StatusCode::OK, 0, size),
            Some(RangeReq::Part(s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
            Some(RangeReq::Unsatisfiable) => {
                return Ok(resp(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("Content-Range", format!("bytes */{size}"))
                    .header("Content-Length", 0)
                    .body(RespBody::Empty)
                    .expect("valid response"))
            }
        };
        let mut b = b.status(status).header("Content-Length", len);
        if status == StatusCode::PARTIAL_CONTENT {
            b = b.header("Content-Range", format!("bytes {start}-{}/{size}", start + len - 1));
        }
        let file = File::open(&path).map_err(|_| LayoutError::BlobUnknown(d.clone()))?;
        // Small blobs (configs, manifests read as blobs) in one read, without a thread.
        let body = if len <= 64 << 10 {
            let mut buf = vec![0u8; len as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, start)
                .map_err(|e| LayoutError::Io { op: "read", path: path.clone(), source: e })?;
            RespBody::full(buf)
        } else {
            RespBody::file(file, start, len)
        };
        Ok(b.body(body).expect("valid response"))
    }

    async fn delete_blob(&self, name: RepoName, d: Digest) -> Res {
        if !self.cfg.delete_enabled {
            return Err(ApiError::new(Code::Unsupported, Value::Null));
        }
        let layout = self.layout.clone();
        blocking(move || layout.delete_blob(&name, &d)).await?;
        Ok(empty(resp(StatusCode::ACCEPTED)))
    }

    // ---- uploads ------------------------------------------------------------------

    fn session(&self, id: &str) -> Arc<tokio::sync::Mutex<Running>> {
        let mut s = self.sessions.lock().unwrap();
        // Sessions a client abandoned keep an entry; past a bound, drop those no request
        // holds (their next request re-hashes at commit, nothing else is lost).
        if s.len() >= MAX_SESSIONS {
            s.retain(|_, v| Arc::strong_count(v) > 1);
        }
        s.entry(id.to_string()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None))).clone()
    }

    fn forget(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }

    fn upload_accepted(name: &RepoName, id: &str, size: u64, status: StatusCode) -> Response<RespBody> {
        empty(
            resp(status)
                .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
                .header("Range", range_header(size))
                .header("Docker-Upload-UUID", id),
        )
    }

    fn blob_created(name: &RepoName, d: &Digest) -> Response<RespBody> {
        empty(resp(StatusCode::CREATED).header("Location", format!("/v2/{name}/blobs/{d}")).header("Docker-Content-Digest", d.to_string()))
    }

    async fn start_upload(&self, req: Request<Incoming>, name: RepoName) -> Res {
        let qs = query(&req);
        if let Some(m) = q(&qs, "mount") {
            let d = parse_digest(m)?;
            if let Some(from) = q(&qs, "from") {
                let from = parse_name(from)?;
                let layout = self.layout.clone();
                let (n2, d2) = (name.clone(), d.clone());
                if blocking(move || layout.mount(&n2, &from, &d2)).await? {
                    return Ok(Self::blob_created(&name, &d));
                }
            }
        } else if let Some(dg) = q(&qs, "digest") {
            // A monolithic upload in one POST.
            let d = parse_digest(dg)?;
            let layout = self.layout.clone();
            let n2 = name.clone();
            let id = blocking(move || layout.start_upload(&n2)).await?;
            let lock = self.session(&id);
            let mut running = lock.lock().await;
            let r = self.append(&name, &id, &mut running, None, req.into_body()).await;
            let r = match r {
                Ok(_) => self.commit(&name, &id, &d, running.take()).await,
                Err(e) => Err(e),
            };
            drop(running);
            self.forget(&id);
            if r.is_err() {
                let layout = self.layout.clone();
                let (n2, id2) = (name.clone(), id.clone());
                let _ = blocking(move || layout.cancel_upload(&n2, &id2)).await;
            }
            r?;
            return Ok(Self::blob_created(&name, &d));
        }
        let layout = self.layout.clone();
        let n2 = name.clone();
        let id = blocking(move || layout.start_upload(&n2)).await?;
        Ok(Self::upload_accepted(&name, &id, 0, StatusCode::ACCEPTED))
    }

    fn upload_status(&self, name: RepoName, id: String) -> Res {
        let size = self.layout.upload_size(&name, &id)?;
        Ok(Self::upload_accepted(&name, &id, size, StatusCode::NO_CONTENT))
    }

    async fn cancel_upload(&self, name: RepoName, id: String) -> Res {
        let lock = self.session(&id);
        let _g = lock.lock().await;
        let layout = self.layout.clone();
        let id2 = id.clone();
        let r = blocking(move || layout.cancel_upload(&name, &id2)).await;
        self.forget(&id);
        r?;
        Ok(empty(resp(StatusCode::NO_CONTENT)))
    }

    /// Parses `Content-Range` (`<start>-<end>`, inclusive) against `Content-Length`.
    fn chunk_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
        let Some(cr) = header(req, "content-range") else { return Ok(None) };
        let bad = || ApiError::new(Code::RangeInvalid, json!({"Content-Range": cr})).with_message(format!("invalid Content-Range {cr:?}"));
        let s = cr.trim().trim_start_matches("bytes ").trim_start_matches("bytes=");
        let s = s.split('/').next().unwrap_or("");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.parse::<u64>().map_err(|_| bad())?, b.parse::<u64>().map_err(|_| bad())?);
        if b < a {
            return Err(bad());
        }
        if let Some(cl) = header(req, "content-length").and_then(|v| v.parse::<u64>().ok()) {
            if cl != b - a + 1 {
                return Err(ApiError::new(Code::SizeInvalid, json!({"Content-Range": cr, "Content-Length": cl})));
            }
        }
        Ok(Some((a, b)))
    }

    async fn patch_upload(&self, req: Request<Incoming>, name: RepoName, id: String) -> Res {
        let range = Self::chunk_range(&req)?;
        let lock = self.session(&id);
        let mut running = lock.lock().await;
        let r = self.append(&name, &id, &mut running, range, req.into_body()).await;
        drop(running);
        if r.as_ref().is_err_and(|e| e.code == Code::BlobUploadUnknown) {
            self.forget(&id);
        }
        Ok(Self::upload_accepted(&name, &id, r?, StatusCode::ACCEPTED))
    }

    async fn put_upload(&self, req: Request<Incoming>, name: RepoName, id: String) -> Res {
        let qs = query(&req);
        let d = match q(&qs, "digest") {
            Some(s) => parse_digest(s)?,
            None => return Err(ApiError::new(Code::DigestInvalid, Value::Null).with_message("digest missing")),
        };
        let range = Self::chunk_range(&req)?;
        let lock = self.session(&id);
        let mut running = lock.lock().await;
        if let Err(e) = self.append(&name, &id, &mut running, range, req.into_body()).await {
            drop(running);
            if e.code == Code::BlobUploadUnknown {
                self.forget(&id);
            }
            return Err(e);
        }
        let r = self.commit(&name, &id, &d, running.take()).await;
        drop(running);
        self.forget(&id);
        r?;
        Ok(Self::blob_created(&name, &d))
    }

    async fn commit(&self, name: &RepoName, id: &str, d: &Digest, running: Running) -> Result<u64, ApiError> {
        let layout = self.layout.clone();
        let (n, id, d) = (name.clone(), id.to_string(), d.clone());
        blocking(move || layout.commit_upload(&n, &id, &d, running)).await
    }

    /// Appends a request body to a session; returns the new size. A chunk that does not
    /// start where the session is gets 416. A body cut short (client gone, fewer bytes
    /// than its Content-Length) is undone: the file is truncated back to where the
    /// chunk started, so a session only ever holds whole chunks.
    async fn append(&self, name: &RepoName, id: &str, running: &mut Running, range: Option<(u64, u64)>, mut body: Incoming) -> Result<u64, ApiError> {
        let layout = self.layout.clone();
        let (n2, id2) = (name.clone(), id.to_string());
        let (file, start) = blocking(move || layout.open_upload(&n2, &id2)).await?;
        if let Some((a, _)) = range {
            if a != start {
                return Err(LayoutError::RangeInvalid { uuid: id.to_string(), size: start, start: a }.into());
            }
        }
        // Keep hashing only if the running hash covers the file so far.
        let before = running.take();
        let mut hash: Running = match &before {
            Some((n, _)) if *n == start => before.clone(),
            _ if start == 0 => Some((0, Hasher::new(Algorithm::Sha256))),
            _ => None,
        };
        // Writes are pipelined: one batch is written and hashed on the blocking pool
        // while the next is read from the socket.
        let mut file = Some(file);
        let mut inflight: Option<tokio::task::JoinHandle<std::io::Result<(File, Running, u64)>>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut pending = 0usize;
        let mut written = start;
        let mut failure: Option<ApiError> = None;
        let data_path = self.layout.upload_dir(name, id).join("data");
        loop {
            let frame = body.frame().await;
            let done = match frame {
                None => true,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        pending += data.len();
                        batch.push(data);
                    }
                    false
                }
                Some(Err(e)) => {
                    failure = Some(ApiError::new(Code::BlobUploadInvalid, Value::Null).with_message(format!("reading upload body: {e}")));
                    true
                }
            };
            if (pending >= WRITE_BATCH || done) && !batch.is_empty() && failure.is_none() {
                if let Some(h) = inflight.take() {
                    match settle(h, &data_path).await {
                        Ok((f, h, n)) => {
                            file = Some(f);
                            hash = h;
                            written += n;
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                let mut f = file.take().expect("the file is back once no write is in flight");
                let bufs = std::mem::take(&mut batch);
                let mut h = hash.take();
                inflight = Some(tokio::task::spawn_blocking(move || {
                    let mut n = 0u64;
                    for b in &bufs {
                        f.write_all(b)?;
                        if let Some((c, h)) = h.as_mut() {
                            h.update(b);
                            *c += b.len() as u64;
                        }
                        n += b.len() as u64;
                    }
                    Ok((f, h, n))
                }));
                pending = 0;
            }
            if done {
                break;
            }
        }
        if let Some(h) = inflight.take() {
            match settle(h, &data_path).await {
                Ok((f, h, n)) => {
                    file = Some(f);
                    hash = h;
                    written += n;
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let (None, Some((a, b))) = (&failure, range) {
            if written - start != b - a + 1 {
                failure = Some(ApiError::new(Code::SizeInvalid, json!({"Content-Range": format!("{a}-{b}"), "received": written - start})));
            }
        }
        if let Some(e) = failure {
            // Undo the partial chunk; the running hash goes back to where it was.
            if let Some(f) = file {
                let _ = tokio::task::spawn_blocking(move || f.set_len(start)).await;
            } else {
                let _ = tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(data_path).and_then(|f| f.set_len(start))).await;
            }
            *running = before;
            return Err(e);
        }
        *running = hash;
        Ok(written)
    }
}

/// Waits for a batch write; its file, running hash and byte count come back.
async fn settle(h: tokio::task::JoinHandle<std::io::Result<(File, Running, u64)>>, path: &std::path::Path) -> Result<(File, Running, u64), ApiError> {
    match h.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(LayoutError::Io { op: "write", path: path.to_path_buf(), source: e }.into()),
        Err(e) => Err(ApiError::new(Code::Unknown, Value::Null).with_message(format!("worker failed: {e}"))),
    }
}

/// What a `Range` header asks of a blob of `len` bytes (RFC 9110 §14.1.2, one range).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    /// No usable range (another unit, several ranges, bad syntax): the whole blob, 200.
    Whole,
    /// First and last byte, inclusive, clamped to the blob.
    Part(u64, u64),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a `Range` header. Several ranges are answered with the whole blob (RFC 9110
/// allows ignoring Range). `first > last` is syntactically invalid and RFC 9110 would
/// ignore it; the conformance suite wants 416 for it, as for a start past the end.
pub fn parse_range(h: &str, len: u64) -> RangeReq {
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeReq::Whole };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeReq::Whole };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> { (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten() };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeReq::Whole,
        (true, false) => match num(b) {
            None => RangeReq::Whole,
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if len == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Part(len.saturating_sub(n), len - 1),
        },
        (false, _) => {
            let Some(first) = num(a) else { return RangeReq::Whole };
            let last = if b.is_empty() {
                None
            } else {
                match num(b) {
                    Some(l) => Some(l),
                    None => return RangeReq::Whole,
                }
            };
            if last.is_some_and(|l| l < first) || first >= len {
                return RangeReq::Unsatisfiable;
            }
            RangeReq::Part(first, last.map_or(len - 1, |l| l.min(len - 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let n = 2048;
        assert_eq!(parse_range("bytes=500-1499", n), RangeReq::Part(500, 1499));
        assert_eq!(parse_range("bytes=500-", n), RangeReq::Part(500, 2047));
        assert_eq!(parse_range("bytes=-500", n), RangeReq::Part(1548, 2047));
        assert_eq!(parse_range("bytes=-5000", n), RangeReq::Part(0, 2047));
        assert_eq!(parse_range("bytes=2000-5000", n), RangeReq::Part(2000, 2047));
        assert_eq!(parse_range("bytes=500-0", n), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=5000-10000", n), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=2048-", n), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", n), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-9,20-29", n), RangeReq::Whole);
        assert_eq!(parse_range("items=0-1", n), RangeReq::Whole);
        assert_eq!(parse_range("bytes=a-b", n), RangeReq::Whole);
        assert_eq!(parse_range("bytes=0-0", 0), RangeReq::Unsatisfiable);
    }

    #[test]
    fn routes() {
        assert!(matches!(route("/v2/"), Some(Route::Base)));
        assert!(matches!(route("/v2"), Some(Route::Base)));
        assert!(matches!(route("/v2/_catalog"), Some(Route::Catalog)));
        assert!(matches!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b"))));
        assert!(matches!(route("/v2/a/manifests/b/manifests/latest"), Some(Route::Manifest("a/manifests/b", "latest"))));
        assert!(matches!(route("/v2/a/blobs/sha256:x"), Some(Route::Blob("a", "sha256:x"))));
        assert!(matches!(route("/v2/a/b/blobs/uploads/"), Some(Route::UploadStart("a/b"))));
        assert!(matches!(route("/v2/a/blobs/uploads"), Some(Route::UploadStart("a"))));
        assert!(matches!(route("/v2/a/blobs/uploads/u-1"), Some(Route::Upload("a", "u-1"))));
        assert!(matches!(route("/v2/a/referrers/sha256:x"), Some(Route::Referrers("a", "sha256:x"))));
        assert!(matches!(route("/v2/../../etc/manifests/x"), Some(Route::Manifest("../../etc", "x"))), "routed, then refused by the name grammar");
        assert!(route("/v3/x").is_none());
        assert!(route("/v2/x").is_none());
    }

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
