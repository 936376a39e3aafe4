//! htpasswd basic auth, as distribution's: `user:bcrypt-hash` lines (`$2a$`, `$2b$`,
//! `$2y$`), `#` comments and blank lines skipped, the file re-read when its mtime
//! changes. A verified (user, password) pair is remembered (as a SHA-256 of both and the
//! hash it matched) until the file changes: bcrypt costs milliseconds by design, and
//! paying it on every request of a push would cap the request rate at a few hundred.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use sha2::Digest as _;

/// Compared against when the user is unknown, so that an unknown user costs as much as a
/// wrong password.
const DUMMY_HASH: &str = "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

pub struct Htpasswd {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    mtime: Option<SystemTime>,
    users: HashMap<String, String>,
    verified: HashSet<[u8; 32]>,
}

impl Htpasswd {
    pub fn new(path: &Path) -> Htpasswd {
        Htpasswd { path: path.to_path_buf(), state: Mutex::new(State::default()) }
    }

    /// Whether an `Authorization` header value carries valid credentials. Blocking
    /// (bcrypt): call it on a blocking thread unless `cached` said yes.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(parse_basic) else { return false };
        let (hash, key) = {
            let mut st = self.state.lock().unwrap();
            self.reload(&mut st);
            let hash = st.users.get(&user).cloned();
            let key = cache_key(&user, &pass, hash.as_deref().unwrap_or(""));
            if hash.is_some() && st.verified.contains(&key) {
                return true;
            }
            (hash, key)
        };
        let ok = match &hash {
            Some(h) => bcrypt::verify(&pass, h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(&pass, DUMMY_HASH);
                false
            }
        };
        if ok {
            let mut st = self.state.lock().unwrap();
            if st.verified.len() > 10_000 {
                st.verified.clear();
            }
            st.verified.insert(key);
        }
        ok
    }

    /// Whether the credentials were verified before (no bcrypt needed).
    pub fn cached(&self, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(parse_basic) else { return false };
        let mut st = self.state.lock().unwrap();
        self.reload(&mut st);
        match st.users.get(&user) {
            Some(h) => {
                let key = cache_key(&user, &pass, h);
                st.verified.contains(&key)
            }
            None => false,
        }
    }

    fn reload(&self, st: &mut State) {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime == st.mtime {
            return;
        }
        st.mtime = mtime;
        st.verified.clear();
        st.users.clear();
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            tracing::warn!("htpasswd {}: cannot be read; every request is refused", self.path.display());
            return;
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((u, h)) = line.split_once(':') {
                if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") {
                    st.users.insert(u.to_string(), h.to_string());
                }
            }
        }
    }
}

fn cache_key(user: &str, pass: &str, hash: &str) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for part in [user, pass, hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

fn parse_basic(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }

    #[test]
    fn verifies_and_reloads() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("htpasswd");
        std::fs::write(&p, format!("# users\n\nalice:{}\nbob:{{SHA}}x\n", bcrypt::hash("s3cret", 4).unwrap())).unwrap();
        let h = Htpasswd::new(&p);
        assert!(h.check(Some(&basic("alice", "s3cret"))));
        assert!(h.cached(Some(&basic("alice", "s3cret"))));
        assert!(!h.check(Some(&basic("alice", "wrong"))));
        assert!(!h.check(Some(&basic("bob", "x"))), "non-bcrypt entries are ignored");
        assert!(!h.check(Some(&basic("carol", "s3cret"))));
        assert!(!h.check(None));
        assert!(!h.check(Some("Bearer abc")));
        // A changed file is re-read (mtime moves forward).
        std::fs::write(&p, format!("alice:{}\n", bcrypt::hash("new", 4).unwrap())).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(later).unwrap();
        assert!(!h.check(Some(&basic("alice", "s3cret"))));
        assert!(h.check(Some(&basic("alice", "new"))));
    }
}
