//! Helpers for the tests of every crate that mounts (compiled always: a few lines, and
//! dev-only helpers cannot be shared between crates otherwise).

/// Runs `f` on its own thread inside a private mount namespace: mounts made there
/// vanish with the thread and never propagate to the host. `None` when such a
/// namespace cannot be had (not root, seccomp); callers skip then.
pub fn in_private_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        let joined = s
            .spawn(|| {
                // SAFETY: NEWNS (with the FS it implies) unshares this thread's mount
                // namespace and cwd/root only; the fd table stays shared.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.ok()?;
                // Before anything is mounted: with shared propagation a mount here
                // would show up on the host.
                let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
                rustix::mount::mount_change("/", private).ok()?;
                Some(f())
            })
            .join();
        joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
