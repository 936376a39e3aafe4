//! A raw HTTP/1.1 client and an in-process server, for this crate's tests and its load
//! generator. Raw on purpose: tests need to see exactly what the server sends (a HEAD's
//! Content-Length, a 416's headers) and to misbehave (cut a body short, hang up).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::server::{Config, Server};

/// A server on its own runtime thread; dropped, it stops.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with a free port (`cfg.addr` is ignored).
    pub fn start(mut cfg: Config) -> TestServer {
        cfg.addr = "127.0.0.1:0".into();
        let server = Server::bind(cfg).expect("server binds");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = crate::server::runtime(Some(2)).unwrap();
            rt.block_on(server.run(async {
                let _ = rx.await;
            }))
            .unwrap();
            rt.shutdown_background();
        });
        TestServer { addr, stop: Some(tx), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// The first error code of a distribution error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

/// One keep-alive connection.
pub struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn { r: BufReader::with_capacity(64 << 10, s) })
    }

    /// Sends a request head; `Content-Length` is added when `body_len` is given.
    pub async fn send_head(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body_len: Option<u64>) -> std::io::Result<()> {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: registry\r\n");
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = body_len {
            h.push_str(&format!("Content-Length: {n}\r\n"));
        }
        h.push_str("\r\n");
        self.r.get_mut().write_all(h.as_bytes()).await
    }

    pub async fn send_body(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.r.get_mut().write_all(b).await
    }

    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
        let has_body = !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH");
        self.send_head(method, path, headers, has_body.then_some(body.len() as u64)).await?;
        if !body.is_empty() {
            // A server may answer (413, 401) and close before reading the body: the
            // answer is still there to read.
            if let Err(e) = self.send_body(body).await {
                if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
                    return Err(e);
                }
            }
        }
        self.read_response(method == "HEAD").await
    }

    /// Reads a response; with `discard`, a GET body is counted but not kept (benches).
    pub async fn read_response(&mut self, head: bool) -> std::io::Result<Resp> {
        self.read_response_opts(head, false).await
    }

    pub async fn read_response_opts(&mut self, head: bool, discard: bool) -> std::io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad(l))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let get = |n: &str| headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if !head && status != 204 && status != 304 {
            if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                loop {
                    line.clear();
                    self.r.read_line(&mut line).await?;
                    let n = usize::from_str_radix(line.trim(), 16).map_err(|_| bad(&line))?;
                    let mut chunk = vec![0u8; n + 2];
                    self.r.read_exact(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else if let Some(n) = get("content-length").and_then(|v| v.parse::<u64>().ok()) {
                if discard {
                    let mut left = n;
                    let mut buf = vec![0u8; 1 << 20];
                    while left > 0 {
                        let k = self.r.read(&mut buf[..(left.min(1 << 20)) as usize]).await?;
                        if k == 0 {
                            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "body cut short"));
                        }
                        left -= k as u64;
                    }
                } else {
                    body.resize(n as usize, 0);
                    self.r.read_exact(&mut body).await?;
                }
            }
        }
        Ok(Resp { status, headers, body })
    }
}

fn bad(l: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad response line {l:?}"))
}

/// One request on a fresh connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(addr, method, path, headers, body).await.expect("request")
}

pub async fn try_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
    Conn::open(addr).await?.request(method, path, headers, body).await
}

/// A free TCP port on 127.0.0.1 (bound, then released for the caller).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a command is on PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The status of `GET path`, over a blocking connection; `None` if nothing answers.
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until something answers `/v2/` on `addr`.
pub fn wait_ready(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if probe(addr, "/v2/").is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// Debian's `docker-registry` (distribution 2.8) serving `root` on a free port; killed
/// when dropped. `None` when the binary is not installed.
pub struct Reference {
    pub addr: SocketAddr,
    config: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Reference {
    pub fn start(root: &std::path::Path) -> Option<Reference> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let r = Reference { addr, config, child, _dir: dir };
        assert!(wait_ready(addr), "docker-registry did not start on {addr}");
        Some(r)
    }

    /// `docker-registry garbage-collect --dry-run` on the same root: its output.
    pub fn gc_dry_run(&self) -> String {
        let out = std::process::Command::new("docker-registry").args(["garbage-collect", "--dry-run"]).arg(&self.config).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "garbage-collect failed: {text}");
        text
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a test runtime");
}

/// Runs a future to completion for callers without a runtime (the CLI's tests).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

/// `request` for callers without a runtime.
pub fn blocking_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    block_on(request(addr, method, path, headers, body))
}

/// `try_request` for callers without a runtime.
pub fn try_blocking_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
    block_on(try_request(addr, method, path, headers, body))
}

/// Sends a request head promising `promised` body bytes and only `part` of them; the
/// connection is returned open (the caller kills the server or drops it).
pub fn start_partial(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], promised: u64, part: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: registry\r\nContent-Length: {promised}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    s.write_all(h.as_bytes()).unwrap();
    s.write_all(part).unwrap();
    s.flush().unwrap();
    s
}
