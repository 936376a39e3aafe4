//! Volume drivers, and the `local` driver.
//!
//! Lifecycle every driver follows (the volume service is its only caller):
//! - `create(name, options)` validates the name and options and makes the volume; it
//!   creates nothing on a validation error. Creating an existing volume returns it as it
//!   is (its original options stay).
//! - `mount(name)` makes the volume's data available at the returned path and takes an
//!   active-mount reference; every `mount` is paired with one `unmount`.
//! - `unmount(name)` drops that reference; the data may stop being available after the
//!   last one.
//! - `remove(name)` deletes the volume and its data. It refuses a volume with active
//!   mounts. Container references are the service's business, not the driver's.
//! - `get(name)` and `list()` describe volumes; they never mount.
//!
//! The `local` driver keeps each volume at `<data-root>/volumes/<name>/_data`. A volume
//! created with `type`/`device`/`o` options is a mount of that device on `_data`, made
//! on the first `mount` and undone after the last `unmount`. The count of active mounts
//! lives in the database so that it is shared by every strata process: the process that
//! starts a container and the one that removes it are not the same.
//!
//! Crash safety: the directory is made before the row, so a crash leaves at worst an
//! empty directory that the next `create` of that name reuses. `remove` renames the
//! directory aside inside the transaction that deletes the row, then deletes it; a crash
//! leaves a `.removing-*` directory that `open` deletes.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use rustix::mount::{MountFlags, UnmountFlags};
use strata_store::{fsutil, Classify, DataRoot, ErrorKind, StoreError};

/// Errors of volume drivers.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("volume name is too short, names should be at least two alphanumeric characters")]
    NameTooShort,
    #[error("\"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error("invalid option: {0:?}")]
    InvalidOption(String),
    #[error("missing required option: {0:?}")]
    MissingOption(&'static str),
    #[error("quota size requested but no quota support")]
    NoQuota,
    #[error("no such volume")]
    NotFound,
    #[error("volume has active mounts")]
    ActiveMounts,
    #[error("failed to mount local volume: {0}")]
    Mount(String),
    #[error("failed to unmount local volume {path}: {source}")]
    Unmount { path: PathBuf, source: std::io::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for DriverError {
    fn from(e: rusqlite::Error) -> Self {
        DriverError::Store(StoreError::Db(e))
    }
}

impl DriverError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DriverError {
        let path = path.into();
        move |source| DriverError::Io { op, path, source }
    }
}

impl Classify for DriverError {
    fn kind(&self) -> ErrorKind {
        match self {
            DriverError::NameTooShort
            | DriverError::InvalidName(_)
            | DriverError::InvalidOption(_)
            | DriverError::MissingOption(_)
            | DriverError::NoQuota => ErrorKind::Invalid,
            DriverError::NotFound => ErrorKind::NotFound,
            DriverError::Store(e) => e.kind(),
            DriverError::ActiveMounts | DriverError::Mount(_) | DriverError::Unmount { .. } | DriverError::Io { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A volume as its driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverVolume {
    pub name: String,
    /// Where the data is (for `local`, `<data-root>/volumes/<name>/_data`).
    pub mountpoint: PathBuf,
    /// The driver options the volume was created with.
    pub options: BTreeMap<String, String>,
    /// Creation time, RFC 3339 in UTC with second precision, when the driver knows it.
    pub created_at: Option<String>,
}

/// A volume driver. See the module documentation for the lifecycle.
pub trait VolumeDriver: Send + Sync {
    /// The name users select the driver by (`local`).
    fn name(&self) -> &str;
    /// Validates `name` and `options` and creates the volume, or returns the existing
    /// volume of that name unchanged.
    fn create(&self, name: &str, options: &BTreeMap<String, String>) -> Result<DriverVolume>;
    /// Deletes the volume and its data; refuses while it has active mounts.
    fn remove(&self, name: &str) -> Result<()>;
    /// Makes the data available and takes an active-mount reference; returns the path.
    fn mount(&self, name: &str) -> Result<PathBuf>;
    /// Drops an active-mount reference taken by `mount`.
    fn unmount(&self, name: &str) -> Result<()>;
    /// Describes one volume; `NotFound` if there is none.
    fn get(&self, name: &str) -> Result<DriverVolume>;
    /// Describes every volume of this driver.
    fn list(&self) -> Result<Vec<DriverVolume>>;
}

/// Docker's `RestrictedNamePattern`, `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`, with its messages.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let first_ok = b.first().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = b.iter().skip(1).all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && b.len() >= 2 {
        return Ok(());
    }
    // Docker checks the length first: a single character is "too short" whatever it is.
    if name.chars().count() == 1 {
        return Err(DriverError::NameTooShort);
    }
    Err(DriverError::InvalidName(name.to_string()))
}

const VALID_OPTS: &[&str] = &["type", "o", "device", "size"];
// Checked in a fixed order (docker walks a map, so its order is random).
const MANDATORY_OPTS: &[(&str, &[&str])] = &[("device", &["type"]), ("type", &["device"]), ("o", &["device", "type"])];

/// Docker's local driver option rules (`validateOpts`).
fn validate_opts(opts: &BTreeMap<String, String>) -> Result<()> {
    if let Some(k) = opts.keys().find(|k| !VALID_OPTS.contains(&k.as_str())) {
        return Err(DriverError::InvalidOption(k.clone()));
    }
    if opts.contains_key("size") {
        // Quotas need xfs project quotas under the data root; strata does not set them up.
        return Err(DriverError::NoQuota);
    }
    for (opt, required) in MANDATORY_OPTS {
        if opts.contains_key(*opt) {
            if let Some(missing) = required.iter().find(|r| !opts.contains_key(**r)) {
                return Err(DriverError::MissingOption(missing));
            }
        }
    }
    Ok(())
}

/// Whether `path` is the root of a mount (a bind of the same filesystem included, which
/// a device-number comparison would miss).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    match statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
        Ok(st) => {
            st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => false,
    }
}

/// A staging directory is abandoned when no process holds its lock (see `fill_staged`).
fn staging_abandoned(dir: &Path) -> bool {
    use rustix::fs::{flock, open, FlockOperation, Mode, OFlags};
    match open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok(),
        Err(_) => false,
    }
}

pub struct LocalDriver {
    root: Arc<DataRoot>,
    dir: PathBuf,
}

impl LocalDriver {
    pub fn open(root: Arc<DataRoot>) -> Result<LocalDriver> {
        root.db().migrate(&root.db_path(), "volumes", crate::MIGRATIONS)?;
        let dir = root.path().join("volumes");
        // Every command opens the driver: only a new data root pays for mkdir + chmod.
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(DriverError::io("create", &dir))?;
            // 0701 as docker: others may traverse to a volume they were given, not list them.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o701)).map_err(DriverError::io("chmod", &dir))?;
            fsutil::spread_children(&dir);
        }
        Ok(LocalDriver { root, dir })
    }

    /// Deletes what an interrupted `remove` left (`.removing-*`) and the staging
    /// directories of interrupted fills (`<name>/.seed-*`). A scan of every
    /// volume directory, so it runs with the engine's crash sweep, not on every open.
    pub fn sweep(&self) {
        // Data roots made before the hint existed get it here.
        fsutil::spread_children(&self.dir);
        let Ok(rd) = fs::read_dir(&self.dir) else { return };
        for ent in rd.flatten() {
            if ent.file_name().to_string_lossy().starts_with(".removing-") {
                if let Err(e) = fsutil::remove_all(&ent.path()) {
                    tracing::warn!(path = %ent.path().display(), error = %e, "cannot delete a removed volume's leftovers");
                }
                continue;
            }
            // A seeding, import or clone that died before its rename left its staging
            // directory beside `_data`; the volume itself is still empty.
            let Ok(inner) = fs::read_dir(ent.path()) else { continue };
            for staged in inner.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".seed-")) {
                if !staging_abandoned(&staged.path()) {
                    continue;
                }
                if let Err(e) = fsutil::remove_all(&staged.path()) {
                    tracing::warn!(path = %staged.path().display(), error = %e, "cannot delete an interrupted fill's staging directory");
                }
            }
        }
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `<data-root>/volumes/<name>/_data`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn describe(&self, name: String, options: String) -> Result<DriverVolume> {
        let options: BTreeMap<String, String> = serde_json::from_str(&options).unwrap_or_default();
        // Docker reports the ctime of the volume's directory as its creation time.
        let created_at = fs::symlink_metadata(self.volume_dir(&name))
            .ok()
            .map(|md| strata_store::format_rfc3339(md.ctime(), 0));
        Ok(DriverVolume { mountpoint: self.data_dir(&name), name, options, created_at })
    }
}

fn options_of(tx: &rusqlite::Connection, name: &str) -> rusqlite::Result<Option<(String, i64)>> {
    tx.query_row("SELECT options, active FROM local_volumes WHERE name=?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

impl VolumeDriver for LocalDriver {
    fn name(&self) -> &str {
        "local"
    }

    fn create(&self, name: &str, options: &BTreeMap<String, String>) -> Result<DriverVolume> {
        validate_name(name)?;
        validate_opts(options)?;
        if let Ok(v) = self.get(name) {
            return Ok(v);
        }
        let vdir = self.volume_dir(name);
        let data = self.data_dir(name);
        fs::create_dir_all(&data).map_err(DriverError::io("create", &data))?;
        fs::set_permissions(&vdir, fs::Permissions::from_mode(0o701)).map_err(DriverError::io("chmod", &vdir))?;
        let json = serde_json::to_string(options).expect("a string map serialises");
        self.root.db().write(|tx| {
            tx.execute(
                "INSERT INTO local_volumes(name, options) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, json],
            )
        })?;
        self.get(name)
    }

    fn remove(&self, name: &str) -> Result<()> {
        let vdir = self.volume_dir(name);
        let aside = self.dir.join(format!(".removing-{name}-{}", strata_store::random_hex(6)));
        self.root.db().write(|tx| {
            let Some((_, active)) = options_of(tx, name)? else { return Err(DriverError::NotFound) };
            // A count left over from before a reboot names a mount that is gone.
            if active > 0 && is_mount_point(&self.data_dir(name)) {
                return Err(DriverError::ActiveMounts);
            }
            tx.execute("DELETE FROM local_volumes WHERE name=?1", [name])?;
            // Renamed inside the transaction: if the rename fails the row stays, and once
            // the row is gone a new volume of this name never sees the old data.
            match fs::rename(&vdir, &aside) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DriverError::io("rename", &vdir)(e)),
            }
        })?;
        // remove_all stops at mount points, so a mount we failed to notice is never
        // emptied through.
        fsutil::remove_all(&aside)?;
        Ok(())
    }

    fn mount(&self, name: &str) -> Result<PathBuf> {
        let data = self.data_dir(name);
        // The mount is made inside the write transaction: BEGIN IMMEDIATE serialises
        // every process, so two first users never both mount, and a failed mount rolls
        // the count back.
        self.root.db().write(|tx| {
            let Some((options, active)) = options_of(tx, name)? else { return Err(DriverError::NotFound) };
            let options: BTreeMap<String, String> = serde_json::from_str(&options).unwrap_or_default();
            if !needs_mount(&options) {
                return Ok(());
            }
            if active == 0 || !is_mount_point(&data) {
                mount_device(&options, &data)?;
            }
            tx.execute("UPDATE local_volumes SET active=active+1 WHERE name=?1", [name])?;
            Ok(())
        })?;
        Ok(data)
    }

    fn unmount(&self, name: &str) -> Result<()> {
        let data = self.data_dir(name);
        self.root.db().write(|tx| {
            let Some((options, active)) = options_of(tx, name)? else { return Err(DriverError::NotFound) };
            let options: BTreeMap<String, String> = serde_json::from_str(&options).unwrap_or_default();
            if !needs_mount(&options) || active == 0 {
                return Ok(());
            }
            tx.execute("UPDATE local_volumes SET active=active-1 WHERE name=?1", [name])?;
            if active == 1 && is_mount_point(&data) {
                // On failure the transaction rolls back and the count stays, as docker's.
                rustix::mount::unmount(&data, UnmountFlags::empty())
                    .map_err(|e| DriverError::Unmount { path: data.clone(), source: e.into() })?;
            }
            Ok(())
        })
    }

    fn get(&self, name: &str) -> Result<DriverVolume> {
        let row = self.root.db().read(|c| {
            c.query_row("SELECT options FROM local_volumes WHERE name=?1", [name], |r| r.get::<_, String>(0)).optional()
        })?;
        match row {
            Some(options) => self.describe(name.to_string(), options),
            None => Err(DriverError::NotFound),
        }
    }

    fn list(&self) -> Result<Vec<DriverVolume>> {
        let rows = self.root.db().read(|c| {
            let mut st = c.prepare("SELECT name, options FROM local_volumes ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(|(n, o)| self.describe(n, o)).collect()
    }
}

fn needs_mount(options: &BTreeMap<String, String>) -> bool {
    options.contains_key("type") || options.contains_key("device")
}

/// `o=` entries that are mount flags; the rest is passed to the filesystem as data.
fn mount_flag(opt: &str) -> Option<(MountFlags, bool)> {
    let f = match opt {
        "ro" => (MountFlags::RDONLY, false),
        "rw" => (MountFlags::RDONLY, true),
        "nosuid" => (MountFlags::NOSUID, false),
        "suid" => (MountFlags::NOSUID, true),
        "nodev" => (MountFlags::NODEV, false),
        "dev" => (MountFlags::NODEV, true),
        "noexec" => (MountFlags::NOEXEC, false),
        "exec" => (MountFlags::NOEXEC, true),
        "sync" => (MountFlags::SYNCHRONOUS, false),
        "async" => (MountFlags::SYNCHRONOUS, true),
        "noatime" => (MountFlags::NOATIME, false),
        "atime" => (MountFlags::NOATIME, true),
        "nodiratime" => (MountFlags::NODIRATIME, false),
        "diratime" => (MountFlags::NODIRATIME, true),
        "relatime" => (MountFlags::RELATIME, false),
        "strictatime" => (MountFlags::STRICTATIME, false),
        "bind" => (MountFlags::BIND, false),
        "rbind" => (MountFlags::BIND | MountFlags::REC, false),
        _ => return None,
    };
    Some(f)
}

/// Masks `password=` values, which must never reach an error message or a log.
fn mask_password(data: &str) -> String {
    data.split(',')
        .map(|kv| if kv.starts_with("password=") { "password=********" } else { kv })
        .collect::<Vec<_>>()
        .join(",")
}

/// `mount(device, target, type, o)` as docker's local driver does it.
fn mount_device(options: &BTreeMap<String, String>, target: &Path) -> Result<()> {
    let device = options.get("device").map(String::as_str).unwrap_or("");
    let fstype = options.get("type").map(String::as_str).unwrap_or("");
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for opt in options.get("o").map(String::as_str).unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match mount_flag(opt) {
            Some((f, false)) => flags |= f,
            Some((f, true)) => flags &= !f,
            None => data.push(opt),
        }
    }
    let data = data.join(",");
    let fail = |e: rustix::io::Errno, flags: MountFlags| {
        DriverError::Mount(format!(
            "mount {device}:{}, flags: {:#x}, data: {}: {}",
            target.display(),
            flags.bits(),
            mask_password(&data),
            std::io::Error::from(e)
        ))
    };
    let cdata = CString::new(data.as_bytes()).map_err(|_| DriverError::InvalidOption("o".into()))?;
    let bind = flags.contains(MountFlags::BIND);
    // A bind ignores every flag but BIND|REC; read-only and the rest need a remount.
    let first = if bind { flags & (MountFlags::BIND | MountFlags::REC) } else { flags };
    rustix::mount::mount(device, target, fstype, first, Some(cdata.as_c_str())).map_err(|e| fail(e, first))?;
    if bind && flags != first {
        let rest = (flags & !(MountFlags::REC)) | MountFlags::BIND;
        if let Err(e) = rustix::mount::mount_remount(target, rest, "") {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            return Err(fail(e, rest));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{in_private_mount_ns, root, UnmountGuard};

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sweep_deletes_only_abandoned_staging_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDriver::open(root(tmp.path())).unwrap();
        d.create("vol", &BTreeMap::new()).unwrap();
        let vol = d.data_dir("vol").parent().unwrap().to_path_buf();
        let (dead, live) = (vol.join(".seed-dead"), vol.join(".seed-live"));
        for s in [&dead, &live] {
            fs::create_dir_all(s.join("sub")).unwrap();
            fs::write(s.join("sub/f"), b"half").unwrap();
        }
        let held = fs::File::open(&live).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        d.sweep();
        assert!(!dead.exists(), "an unlocked staging directory is a dead fill's");
        assert!(live.join("sub/f").exists(), "a locked one is being filled");
        assert!(d.data_dir("vol").is_dir());
        drop(held);
        d.sweep();
        assert!(!live.exists());
    }

    #[test]
    fn names_are_validated_with_dockers_messages() {
        for ok in ["ab", "a1", "my_vol.1-x", "0abc", "A-"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(
            validate_name("a").unwrap_err().to_string(),
            "volume name is too short, names should be at least two alphanumeric characters"
        );
        assert_eq!(
            validate_name("x/y").unwrap_err().to_string(),
            "\"x/y\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        for bad in ["_ab", ".ab", "-ab", "a b", "..", "a/", "é1"] {
            assert!(matches!(validate_name(bad), Err(DriverError::InvalidName(_))), "{bad}");
        }
        assert_eq!(validate_name("a").unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn options_are_validated_as_dockers_local_driver() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDriver::open(root(tmp.path())).unwrap();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("foo", "1")], "invalid option: \"foo\""),
            (&[("type", "tmpfs")], "missing required option: \"device\""),
            (&[("device", "tmpfs")], "missing required option: \"type\""),
            (&[("o", "size=1m")], "missing required option: \"device\""),
            (&[("o", "size=1m"), ("device", "tmpfs")], "missing required option: \"type\""),
            (&[("size", "10m")], "quota size requested but no quota support"),
        ];
        for (o, msg) in cases {
            let e = d.create("vol", &opts(o)).unwrap_err();
            assert_eq!(e.to_string(), *msg);
            assert_eq!(e.kind(), ErrorKind::Invalid);
        }
        // Nothing was made by the failed attempts.
        assert!(!tmp.path().join("volumes/vol").exists());
        assert!(d.list().unwrap().is_empty());

        let o = opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m,uid=1000")]);
        let v = d.create("vol", &o).unwrap();
        assert_eq!(v.options, o);
        assert_eq!(v.mountpoint, tmp.path().join("volumes/vol/_data"));
        assert!(v.mountpoint.is_dir());
        // Stored: a new driver instance (another process) sees the same options.
        let d2 = LocalDriver::open(root(tmp.path())).unwrap();
        assert_eq!(d2.get("vol").unwrap().options, o);
        // Idempotent: the original options stay.
        assert_eq!(d2.create("vol", &BTreeMap::new()).unwrap().options, o);
    }

    #[test]
    fn tmpfs_volume_is_mounted_once_and_unmounted_after_the_last_user() {
        let tmp = tempfile::tempdir().unwrap();
        let ran = in_private_mount_ns(|| {
            let a = LocalDriver::open(root(tmp.path())).unwrap();
            // A second instance on the same data root stands for another strata process.
            let b = LocalDriver::open(root(tmp.path())).unwrap();
            let o = opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m,mode=0750")]);
            let v = a.create("scratch", &o).unwrap();
            let _guard = UnmountGuard(v.mountpoint.clone());
            assert!(!is_mount_point(&v.mountpoint));

            assert_eq!(a.mount("scratch").unwrap(), v.mountpoint);
            assert!(is_mount_point(&v.mountpoint));
            let st = rustix::fs::statfs(&v.mountpoint).unwrap();
            assert_eq!(st.f_type as i64, libc::TMPFS_MAGIC);
            let mode = fs::metadata(&v.mountpoint).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o750, "o= data reaches the filesystem");
            fs::write(v.mountpoint.join("f"), b"x").unwrap();

            b.mount("scratch").unwrap();
            a.unmount("scratch").unwrap();
            assert!(is_mount_point(&v.mountpoint), "still one user");
            assert!(v.mountpoint.join("f").exists());
            assert!(matches!(a.remove("scratch"), Err(DriverError::ActiveMounts)));

            b.unmount("scratch").unwrap();
            assert!(!is_mount_point(&v.mountpoint), "unmounted after the last user");
            assert!(!v.mountpoint.join("f").exists(), "tmpfs content went with the mount");
            // An extra unmount is harmless; the count does not go negative.
            a.unmount("scratch").unwrap();
            let n: i64 = a
                .root
                .db()
                .read(|c| c.query_row("SELECT active FROM local_volumes WHERE name='scratch'", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(n, 0);

            a.remove("scratch").unwrap();
            assert!(!tmp.path().join("volumes/scratch").exists());
            assert!(matches!(a.get("scratch"), Err(DriverError::NotFound)));
        });
        assert!(ran.is_some(), "cannot make a private mount namespace (not root?)");
    }

    #[test]
    fn bind_option_mounts_the_device_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("hello"), b"hi").unwrap();
        let ran = in_private_mount_ns(|| {
            let d = LocalDriver::open(root(tmp.path())).unwrap();
            let dev = host.path().to_str().unwrap();
            let v = d.create("bound", &opts(&[("type", "none"), ("device", dev), ("o", "bind,ro")])).unwrap();
            let _guard = UnmountGuard(v.mountpoint.clone());
            d.mount("bound").unwrap();
            assert_eq!(fs::read(v.mountpoint.join("hello")).unwrap(), b"hi");
            assert!(fs::write(v.mountpoint.join("new"), b"x").is_err(), "ro reached the bind");
            d.unmount("bound").unwrap();
            assert!(!is_mount_point(&v.mountpoint));
            d.remove("bound").unwrap();
        });
        assert!(ran.is_some());
        assert!(host.path().join("hello").exists(), "removing the volume never touches the device");
    }

    #[test]
    fn a_failed_mount_keeps_the_count_at_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDriver::open(root(tmp.path())).unwrap();
        d.create("bad", &opts(&[("type", "nosuchfs"), ("device", "x")])).unwrap();
        let e = d.mount("bad").unwrap_err();
        assert!(e.to_string().starts_with("failed to mount local volume: mount x:"), "{e}");
        d.remove("bad").unwrap();
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(mask_password("user=u,password=secret,vers=3"), "user=u,password=********,vers=3");
    }
}
