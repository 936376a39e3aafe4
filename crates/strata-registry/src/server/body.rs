//! Response bodies: empty, one buffer, or a blob streamed from a blocking reader thread
//! in 1 MiB chunks. Every variant knows its exact length, so hyper sends
//! `Content-Length` and never chunked encoding (distribution's client wants a length).

use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

pub const CHUNK: usize = 1 << 20;

pub enum RespBody {
    Empty,
    Full(Option<Bytes>),
    Stream { rx: mpsc::Receiver<io::Result<Bytes>>, remaining: u64 },
}

impl RespBody {
    pub fn full(b: impl Into<Bytes>) -> RespBody {
        let b = b.into();
        if b.is_empty() {
            RespBody::Empty
        } else {
            RespBody::Full(Some(b))
        }
    }

    /// Streams `len` bytes of `file` from `offset`, zero-copy: the file is mapped and
    /// hyper writes slices of the mapping. A blocking thread faults each 1 MiB chunk in
    /// (`MADV_POPULATE_READ`) before handing it over, so a cold read waits on the blocking
    /// pool, not in an async worker's `write`; it stops when the client goes away.
    ///
    /// Blob files are immutable once renamed into place and removed only by unlink
    /// (which keeps a mapping valid); truncating one under a running server would fault
    /// it (SIGBUS), as it would any program mapping the file. The fallback when the file
    /// cannot be mapped is reading into buffers.
    pub fn file(file: std::fs::File, offset: u64, len: u64) -> RespBody {
        // SAFETY: see above — the mapped file is never written or truncated by strata.
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) if m.len() as u64 >= offset + len => Arc::new(m),
            _ => return RespBody::read(file, offset, len),
        };
        let all = Bytes::from_owner(Shared(map.clone()));
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let (mut pos, end) = (offset as usize, (offset + len) as usize);
            while pos < end {
                let n = (end - pos).min(CHUNK);
                let _ = map.advise_range(memmap2::Advice::PopulateRead, pos, n);
                if tx.blocking_send(Ok(all.slice(pos..pos + n))).is_err() {
                    return;
                }
                pos += n;
            }
        });
        RespBody::Stream { rx, remaining: len }
    }

    /// Streams by reading into buffers on a blocking thread.
    fn read(file: std::fs::File, offset: u64, len: u64) -> RespBody {
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut pos = offset;
            let end = offset + len;
            while pos < end {
                let want = ((end - pos) as usize).min(CHUNK);
                let mut buf = BytesMut::zeroed(want);
                let r = read_full_at(&file, &mut buf, pos);
                let failed = r.is_err();
                let msg = r.map(|()| buf.freeze());
                if tx.blocking_send(msg).is_err() || failed {
                    return;
                }
                pos += want as u64;
            }
        });
        RespBody::Stream { rx, remaining: len }
    }
}

/// A shared mapping as the owner of `Bytes` slices.
struct Shared(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn read_full_at(f: &std::fs::File, buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], pos) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than its size")),
            Ok(n) => {
                done += n;
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl hyper::body::Body for RespBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            RespBody::Empty => Poll::Ready(None),
            RespBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Stream { rx, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        *remaining -= b.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::BrokenPipe, "blob reader stopped")))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Empty => true,
            RespBody::Full(b) => b.is_none(),
            RespBody::Stream { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Empty => SizeHint::with_exact(0),
            RespBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespBody::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
