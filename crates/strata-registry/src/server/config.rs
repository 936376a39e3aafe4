//! Server settings: command-line flags over an optional config file in distribution's
//! own YAML format (the keys below, nothing else is read), so one file can drive both
//! registries.
//!
//! ```yaml
//! storage:
//!   filesystem: { rootdirectory: /var/lib/strata-registry }
//!   delete: { enabled: true }
//!   maintenance: { readonly: { enabled: false } }
//! http:
//!   addr: 127.0.0.1:5000
//!   tls: { certificate: cert.pem, key: key.pem }
//! auth:
//!   htpasswd: { realm: basic-realm, path: /etc/registry/htpasswd }
//! ```

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const DEFAULT_ROOT: &str = "/var/lib/strata-registry";
/// Distribution's `maxManifestBodySize`; the spec asks for at least 4 MB.
pub const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub read_only: bool,
    pub delete_enabled: bool,
    pub max_manifest: usize,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: DEFAULT_ADDR.to_string(),
            root: PathBuf::from(DEFAULT_ROOT),
            htpasswd: None,
            realm: "strata-registry".to_string(),
            tls_cert: None,
            tls_key: None,
            read_only: false,
            delete_enabled: true,
            max_manifest: MAX_MANIFEST,
            max_connections: 8192,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl strata_store::Classify for ConfigError {
    fn kind(&self) -> strata_store::ErrorKind {
        strata_store::ErrorKind::Invalid
    }
}

impl Config {
    /// Applies the keys of a distribution config file over `self`.
    pub fn load_file(mut self, path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let docs = YamlLoader::load_from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let Some(y) = docs.first() else { return Ok(self) };
        let rel = |s: &str| {
            let p = PathBuf::from(s);
            if p.is_absolute() { p } else { path.parent().unwrap_or(Path::new(".")).join(p) }
        };
        if let Some(s) = y["storage"]["filesystem"]["rootdirectory"].as_str() {
            self.root = rel(s);
        }
        if let Some(b) = y["storage"]["delete"]["enabled"].as_bool() {
            self.delete_enabled = b;
        }
        if let Some(b) = y["storage"]["maintenance"]["readonly"]["enabled"].as_bool() {
            self.read_only = b;
        }
        if let Some(s) = y["http"]["addr"].as_str() {
            self.addr = s.to_string();
        }
        if let Some(s) = y["http"]["tls"]["certificate"].as_str() {
            self.tls_cert = Some(rel(s));
        }
        if let Some(s) = y["http"]["tls"]["key"].as_str() {
            self.tls_key = Some(rel(s));
        }
        let h = &y["auth"]["htpasswd"];
        if let Some(s) = h["path"].as_str() {
            self.htpasswd = Some(rel(s));
        }
        if let Some(s) = h["realm"].as_str() {
            self.realm = s.to_string();
        }
        if !matches!(y["auth"], Yaml::BadValue | Yaml::Null) && h.is_badvalue() {
            return Err(ConfigError::Invalid("only htpasswd auth is supported".into()));
        }
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid("--tls-cert and --tls-key go together".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_distribution_config() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.yml");
        std::fs::write(
            &p,
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n  delete:\n    enabled: false\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: 127.0.0.1:5999\n  tls:\n    certificate: c.pem\n    key: k.pem\nauth:\n  htpasswd:\n    realm: r\n    path: /etc/h\n",
        )
        .unwrap();
        let c = Config::default().load_file(&p).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/reg"));
        assert!(!c.delete_enabled && c.read_only);
        assert_eq!(c.addr, "127.0.0.1:5999");
        assert_eq!(c.tls_cert, Some(t.path().join("c.pem")));
        assert_eq!((c.htpasswd.as_deref(), c.realm.as_str()), (Some(Path::new("/etc/h")), "r"));
        std::fs::write(&p, "auth:\n  token:\n    realm: x\n").unwrap();
        assert!(Config::default().load_file(&p).is_err());
    }
}
