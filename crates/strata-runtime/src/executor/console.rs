//! runc's `--console-socket` protocol: we listen on a unix socket, the runtime connects
//! and sends the pty master with SCM_RIGHTS (libcontainer's `with_console_socket` does
//! the same). The runtime connects while `create` runs, before we accept; the kernel
//! queues the connection and its message, so a single-threaded caller accepts afterwards.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::RuntimeError;

/// sun_path holds 108 bytes with the NUL.
const MAX_SOCKET_PATH: usize = 100;

/// How long the runtime has to send the master after `create` returned.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens in `dir` (or the temp dir when that path would be too long for a socket).
    pub(crate) fn bind(dir: &Path) -> Result<ConsoleSocket, RuntimeError> {
        let name = format!("console-{}.sock", strata_store::random_hex(8));
        let mut path = dir.join(&name);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            path = std::env::temp_dir().join(&name);
        }
        let listener = UnixListener::bind(&path).map_err(RuntimeError::io("listen on", &path))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the runtime sent.
    pub(crate) fn receive(&self, id: &str) -> Result<OwnedFd, RuntimeError> {
        let fail = |m: String| RuntimeError::runtime(id, "receive console", m);
        self.listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + RECEIVE_TIMEOUT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_readable(self.listener.as_fd(), deadline).map_err(|m| fail(format!("runtime did not connect: {m}")))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        };
        stream.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut buf = [0u8; 4096];
        loop {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            match recvmsg(&stream, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC) {
                Ok(msg) => {
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                            if let Some(fd) = fds.next() {
                                return Ok(fd);
                            }
                        }
                    }
                    if msg.bytes == 0 {
                        return Err(fail("runtime closed the console socket without sending a pty".into()));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => {
                    wait_readable(stream.as_fd(), deadline).map_err(|m| fail(format!("no pty received: {m}")))?;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    }
}

fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant) -> Result<(), String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Err("timed out".into()),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
