//! Mounts as data, and the one place that turns them into kernel mounts.
//!
//! The snapshotter never mounts: it returns `Mount` values. Whoever needs a filesystem
//! (the runtime, an image unpack that must see the merged view, `export`) calls
//! `mount_all` with a `Syscall` implementation — the kernel in production, a recorder in
//! unit tests — so the decision logic (new mount API or legacy option string, which
//! options) is tested without root.

use std::io;
use std::path::{Path, PathBuf};

/// A mount as data, containerd-style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// An overlay. `lowers` are topmost first. Without `upper` the mount is read-only.
    Overlay { lowers: Vec<PathBuf>, upper: Option<PathBuf>, work: Option<PathBuf>, volatile: bool },
    /// A bind mount of a directory (a base layer, or a plain-copy snapshot).
    Bind { source: PathBuf, readonly: bool },
}

impl Mount {
    /// The overlay options we always pass, so behaviour never depends on the kernel's or
    /// the module's defaults: no inode index (layers are shared between mounts), no
    /// redirects or metacopy (a layer must be a self-contained tar when committed).
    pub const OVERLAY_FIXED: [(&'static str, &'static str); 3] =
        [("index", "off"), ("redirect_dir", "off"), ("metacopy", "off")];

    /// The legacy `mount(2)` data string.
    pub fn options(&self) -> String {
        match self {
            Mount::Bind { readonly, .. } => if *readonly { "bind,ro".into() } else { "bind".into() },
            Mount::Overlay { lowers, upper, work, volatile } => {
                let mut o: Vec<String> = Self::OVERLAY_FIXED.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let l: Vec<_> = lowers.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                o.push(format!("lowerdir={}", l.join(":")));
                if let (Some(u), Some(w)) = (upper, work) {
                    o.push(format!("upperdir={}", u.display()));
                    o.push(format!("workdir={}", w.display()));
                    if *volatile {
                        o.push("volatile".into());
                    }
                }
                o.join(",")
            }
        }
    }
}

/// The kernel calls a mount needs. Production: `LinuxSyscall`.
pub trait Syscall {
    /// Mounts an overlay through fsopen/fsconfig/fsmount/move_mount, adding each lower
    /// with `lowerdir+` (Linux ≥ 6.8) so the depth is not limited by a page-sized string.
    fn mount_overlay_fsconfig(&self, target: &Path, params: &[(&str, Option<String>)]) -> io::Result<()>;
    /// Classic `mount(2)`.
    fn mount(&self, source: &Path, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()>;
    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub bind: bool,
    pub readonly: bool,
    pub remount: bool,
}

/// Mounts `mounts` (in order) on `target`.
pub fn mount_all(sys: &dyn Syscall, mounts: &[Mount], target: &Path) -> io::Result<()> {
    for m in mounts {
        match m {
            Mount::Bind { source, readonly } => {
                sys.mount(source, target, "", MountFlags { bind: true, ..Default::default() }, "")?;
                if *readonly {
                    let f = MountFlags { bind: true, readonly: true, remount: true };
                    if let Err(e) = sys.mount(Path::new(""), target, "", f, "") {
                        let _ = sys.unmount(target, true);
                        return Err(e);
                    }
                }
            }
            Mount::Overlay { lowers, upper, work, volatile } => {
                if let (true, Some(w)) = (*volatile, work) {
                    // A volatile mount leaves work/work/incompat/volatile behind, and the
                    // kernel refuses to mount that upper again until it is gone. The
                    // layer itself is kept: a stopped container starts on it again.
                    let _ = std::fs::remove_dir_all(w.join("work").join("incompat"));
                }
                let mut params: Vec<(&str, Option<String>)> =
                    Mount::OVERLAY_FIXED.iter().map(|(k, v)| (*k, Some(v.to_string()))).collect();
                for l in lowers {
                    params.push(("lowerdir+", Some(l.to_string_lossy().into_owned())));
                }
                if let (Some(u), Some(w)) = (upper, work) {
                    params.push(("upperdir", Some(u.to_string_lossy().into_owned())));
                    params.push(("workdir", Some(w.to_string_lossy().into_owned())));
                    if *volatile {
                        params.push(("volatile", None));
                    }
                }
                match sys.mount_overlay_fsconfig(target, &params) {
                    Ok(()) => {}
                    // Older kernels: no `lowerdir+` (EINVAL) or no new mount API (ENOSYS).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                        let data = m.options();
                        if data.len() >= page_size() {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!("overlay with {} layers needs a {}-byte option string (limit {}) on this kernel", lowers.len(), data.len(), page_size() - 1),
                            ));
                        }
                        sys.mount(Path::new("overlay"), target, "overlay", MountFlags::default(), &data)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// The kernel.
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount_overlay_fsconfig(&self, target: &Path, params: &[(&str, Option<String>)]) -> io::Result<()> {
        use rustix::mount::*;
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for (k, v) in params {
            match v {
                Some(v) => fsconfig_set_string(&fs, *k, v.as_str())?,
                None => fsconfig_set_flag(&fs, *k)?,
            }
        }
        fsconfig_create(&fs)?;
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
        move_mount(&mnt, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
        Ok(())
    }

    fn mount(&self, source: &Path, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        use rustix::mount::*;
        if flags.remount {
            let mut f = MountFlags::BIND;
            if flags.readonly {
                f |= MountFlags::RDONLY;
            }
            mount_remount(target, f, "")?;
        } else if flags.bind {
            mount_bind(source, target)?;
        } else {
            let mut f = MountFlags::empty();
            if flags.readonly {
                f |= MountFlags::RDONLY;
            }
            let data = std::ffi::CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            mount(source, target, fstype, f, Some(data.as_c_str()))?;
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, detach: bool) -> io::Result<()> {
        let flags = if detach { rustix::mount::UnmountFlags::DETACH } else { rustix::mount::UnmountFlags::empty() };
        rustix::mount::unmount(target, flags)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        no_new_api: bool,
    }

    impl Syscall for Recorder {
        fn mount_overlay_fsconfig(&self, target: &Path, params: &[(&str, Option<String>)]) -> io::Result<()> {
            if self.no_new_api {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let p: Vec<String> = params.iter().map(|(k, v)| match v { Some(v) => format!("{k}={v}"), None => k.to_string() }).collect();
            self.calls.borrow_mut().push(format!("fsconfig {} {}", target.display(), p.join(",")));
            Ok(())
        }
        fn mount(&self, source: &Path, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
            self.calls.borrow_mut().push(format!("mount {} {} {fstype} {flags:?} {data}", source.display(), target.display()));
            Ok(())
        }
        fn unmount(&self, target: &Path, _detach: bool) -> io::Result<()> {
            self.calls.borrow_mut().push(format!("umount {}", target.display()));
            Ok(())
        }
    }

    fn overlay(n: usize, upper: bool) -> Mount {
        Mount::Overlay {
            lowers: (0..n).map(|i| PathBuf::from(format!("/s/{i}/fs"))).collect(),
            upper: upper.then(|| PathBuf::from("/s/u/fs")),
            work: upper.then(|| PathBuf::from("/s/u/work")),
            volatile: upper,
        }
    }

    #[test]
    fn new_api_passes_fixed_options_each_lower_and_volatile() {
        let r = Recorder::default();
        mount_all(&r, &[overlay(2, true)], Path::new("/t")).unwrap();
        assert_eq!(
            r.calls.borrow().as_slice(),
            ["fsconfig /t index=off,redirect_dir=off,metacopy=off,lowerdir+=/s/0/fs,lowerdir+=/s/1/fs,upperdir=/s/u/fs,workdir=/s/u/work,volatile"]
        );
    }

    #[test]
    fn falls_back_to_option_string_and_refuses_when_too_long() {
        let r = Recorder { no_new_api: true, ..Default::default() };
        mount_all(&r, &[overlay(2, false)], Path::new("/t")).unwrap();
        assert!(r.calls.borrow()[0].ends_with("index=off,redirect_dir=off,metacopy=off,lowerdir=/s/0/fs:/s/1/fs"));
        let err = mount_all(&r, &[overlay(600, true)], Path::new("/t")).unwrap_err();
        assert!(err.to_string().contains("600 layers"), "{err}");
    }

    #[test]
    fn readonly_bind_is_remounted() {
        let r = Recorder::default();
        mount_all(&r, &[Mount::Bind { source: "/s/1/fs".into(), readonly: true }], Path::new("/t")).unwrap();
        let calls = r.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert!(calls[1].contains("remount: true"));
    }
}
