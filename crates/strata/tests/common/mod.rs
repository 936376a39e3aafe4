//! Shared test harness: a strata binary run against a throwaway data root.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub struct Strata {
    pub root: PathBuf,
}

impl Strata {
    pub fn new() -> Strata {
        let base = Path::new("/var/tmp/strata-tests");
        std::fs::create_dir_all(base).unwrap();
        let root = tempfile::Builder::new().prefix("root-").tempdir_in(base).unwrap().keep();
        Strata { root }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.env("STRATA_DATA_ROOT", &self.root).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let t = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        t.join().unwrap();
        out
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "strata {args:?} failed: {}\n{}", stderr(&out), stdout(&out));
        stdout(&out)
    }

    /// `/run/strata/<root-tag>`: the root's runtime state.
    pub fn run_dir(&self) -> PathBuf {
        Path::new("/run/strata").join(&sha256_hex(self.root.to_string_lossy().as_bytes())[..12])
    }

    pub fn import_busybox(&self, tag: &str) -> String {
        self.ok(&["import", "-c", r#"CMD ["sh"]"#, busybox_tar().to_str().unwrap(), tag]).trim().to_string()
    }

    /// Files in a data-root subdirectory (for "nothing was left behind" checks).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(sub))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn blobs(&self) -> Vec<String> {
        self.entries("content/blobs/sha256")
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        // Containers a failed test left running must not outlive it.
        if let Ok(out) = self.cmd(&["ps", "-aq", "--no-trunc"]).stdin(Stdio::null()).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm".to_string(), "-f".to_string()];
                args.extend(ids);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let _ = self.cmd(&refs).stdin(Stdio::null()).output();
            }
        }
        // The root's runtime directory: supervisor state, and the bridge namespace, which
        // stays pinned while the machine is up (as docker0 does): a test's root takes it
        // along.
        let run = self.run_dir();
        if run.join("netns").exists() {
            let _ = Command::new("umount").arg("-l").arg(run.join("netns")).status();
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(self.root.to_str().unwrap()) || l.contains(run.to_str().unwrap())).collect();
        let _ = std::fs::remove_dir_all(&run);
        let _ = std::fs::remove_dir_all(&self.root);
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts left behind: {leaked:?}");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The busybox rootfs tarball, built once per test binary by scripts/busybox-image.sh.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("busybox-").tempdir_in("/var/tmp").unwrap().keep();
        let out = dir.join("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let st = Command::new("sh").arg(script).arg(&out).status().unwrap();
        assert!(st.success(), "busybox-image.sh failed");
        out
    })
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Builds a tar from (path, contents) regular files with the `tar` crate.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, p, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Whether the reference docker engine answers (../shared/peers/setup.sh starts it).
pub fn reference_docker() -> bool {
    Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// A tar built from raw headers, so names the `tar` crate would refuse can be written.
pub fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The reference docker CLI (differential tests).
pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
    stdout(&o)
}
