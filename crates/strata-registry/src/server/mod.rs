//! The registry server: the distribution API (`http`) over the reference on-disk layout
//! (`layout`), with htpasswd auth, TLS, read-only mode and gc.
//!
//! tokio lives here and nowhere else in strata: `Server::run_blocking` builds the runtime
//! for the `strata registry serve` command, and `Server::run` is for callers that have one.

pub mod api;
pub mod auth;
mod body;
pub mod config;
pub mod gc;
pub mod http;
pub mod layout;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

pub use config::Config;
pub use layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl strata_store::Classify for ServerError {
    fn kind(&self) -> strata_store::ErrorKind {
        match self {
            ServerError::Config(_) | ServerError::Tls(_) => strata_store::ErrorKind::Invalid,
            _ => strata_store::ErrorKind::Internal,
        }
    }
}

/// A bound, not yet serving, registry.
pub struct Server {
    listener: std::net::TcpListener,
    app: Arc<http::App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Validates the settings, opens the root, loads TLS material and binds the address.
    pub fn bind(cfg: Config) -> Result<Server, ServerError> {
        cfg.validate()?;
        raise_fd_limit();
        let layout = Arc::new(Layout::open(&cfg.root)?);
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
            _ => None,
        };
        let listener = std::net::TcpListener::bind(&cfg.addr).map_err(|source| ServerError::Bind { addr: cfg.addr.clone(), source })?;
        listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: cfg.addr.clone(), source })?;
        Ok(Server { listener, app: Arc::new(http::App::new(layout, cfg)), tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes. Connections in flight are dropped then: every
    /// write is atomic on disk, so this is as safe as being killed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let addr = self.local_addr().to_string();
        let listener = TcpListener::from_std(self.listener).map_err(|source| ServerError::Bind { addr, source })?;
        let limit = Arc::new(tokio::sync::Semaphore::new(self.app.cfg.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let app = self.app.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(60)).keep_alive(true);
                let r = match tls {
                    Some(acc) => match tokio::time::timeout(Duration::from_secs(30), acc.accept(stream)).await {
                        Ok(Ok(s)) => b.serve_connection(TokioIo::new(s), svc).await,
                        _ => return,
                    },
                    None => b.serve_connection(TokioIo::new(stream), svc).await,
                };
                if let Err(e) = r {
                    tracing::debug!("connection: {e}");
                }
            });
        }
    }

    /// Builds a multi-threaded runtime and serves until SIGINT or SIGTERM.
    pub fn run_blocking(self) -> Result<(), ServerError> {
        let rt = runtime(None).map_err(ServerError::Runtime)?;
        rt.block_on(self.run(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }))?;
        rt.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }
}

/// Threads for blocking work (fsyncs, blob reads, bcrypt). Bounded: thousands of
/// concurrent uploads would otherwise start hundreds of threads, each with its own
/// malloc arena, for work the disk serialises anyway (distribution's driver caps its
/// concurrency at 100 for the same reason).
pub const BLOCKING_THREADS: usize = 64;

/// The server's runtime: one worker per core (or `workers`), a bounded blocking pool.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().max_blocking_threads(BLOCKING_THREADS).thread_name("strata-registry");
    if let Some(w) = workers {
        b.worker_threads(w);
    }
    b.build()
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| ServerError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!("certificate {}: no certificate found", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServerError::Tls(format!("key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// Each connection is a socket, and an upload holds its data file while it writes: a
/// registry under thousands of concurrent uploads needs more than the usual soft limit
/// of 1024 descriptors. The hard limit is what the administrator allows.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}
