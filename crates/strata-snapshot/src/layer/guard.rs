//! A reader that follows the tar stream alongside the `tar` crate so that two things
//! are caught before the crate acts on them: extension headers (PAX, GNU long names)
//! too large to buffer, and a stream that ends inside a member.
//!
//! The `tar` crate reads extension data into memory in full, sized by the header, so a
//! few compressed bytes claiming an 8 GiB PAX header would otherwise be an OOM. It
//! also treats a short read inside a member as a normal end of the data.
//!
//! The member boundaries tracked here must match the crate's exactly, so the rules
//! mirror `tar::Archive`'s: a local PAX header's `size` record overrides the next
//! non-extension member's size, extension headers count only when the header has
//! ustar or GNU magic, the first all-zero block ends the archive.

use std::io::{self, Read};

use tar::{EntryType, Header, PaxExtensions};

const BLOCK: usize = 512;

/// Extension data (PAX records plus GNU long name and long link) allowed per member.
pub(crate) const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// Carried inside an `io::Error` out through the `tar` crate.
#[derive(Debug)]
pub(crate) struct HugeHeader {
    pub entry: String,
    pub size: u64,
}

impl std::fmt::Display for HugeHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "huge header in {:?} ({} bytes)", self.entry, self.size)
    }
}

impl std::error::Error for HugeHeader {}

enum State {
    Header,
    Data,
    /// After the end-of-archive block, or once the stream is something we do not
    /// track (GNU sparse, unparsable sizes); the `tar` crate or the applier rejects
    /// those itself.
    Passthrough,
}

pub(crate) struct Guard<R> {
    inner: R,
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    /// Data plus padding left in the current member.
    remaining: u64,
    /// Unpadded data left, to know what part of a PAX member is records.
    data_left: u64,
    capture: Option<Vec<u8>>,
    pending_pax: Option<Vec<u8>>,
    extension_total: u64,
}

impl<R: Read> Guard<R> {
    pub(crate) fn new(inner: R) -> Guard<R> {
        Guard {
            inner,
            state: State::Header,
            block: [0; BLOCK],
            filled: 0,
            remaining: 0,
            data_left: 0,
            capture: None,
            pending_pax: None,
            extension_total: 0,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn on_header(&mut self) -> io::Result<()> {
        if self.block.iter().all(|b| *b == 0) {
            self.state = State::Passthrough;
            return Ok(());
        }
        let header = Header::from_byte_slice(&self.block);
        let kind = header.entry_type();
        if kind.is_gnu_sparse() {
            self.state = State::Passthrough;
            return Ok(());
        }
        let Ok(mut size) = header.entry_size() else {
            self.state = State::Passthrough;
            return Ok(());
        };
        let is_extension = is_extension(kind);
        if !is_extension {
            if let Some(pax) = self.pending_pax.take() {
                if let Some(pax_size) = pax_size(&pax) {
                    size = pax_size;
                }
            }
        }
        let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
        let buffered =
            recognized && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if buffered {
            self.extension_total = self.extension_total.saturating_add(size);
            if self.extension_total > MAX_EXTENSION_BYTES {
                let entry = String::from_utf8_lossy(&header.path_bytes()).into_owned();
                return Err(io::Error::other(HugeHeader { entry, size: self.extension_total }));
            }
            self.capture = kind.is_pax_local_extensions().then(|| Vec::with_capacity(size as usize));
        } else {
            self.extension_total = 0;
            self.pending_pax = None;
            self.capture = None;
        }
        let Some(padded) = size.checked_add(BLOCK as u64 - 1).map(|s| s & !(BLOCK as u64 - 1)) else {
            self.state = State::Passthrough;
            return Ok(());
        };
        self.remaining = padded;
        self.data_left = size;
        if padded == 0 {
            self.end_member();
        } else {
            self.state = State::Data;
        }
        Ok(())
    }

    fn end_member(&mut self) {
        if let Some(records) = self.capture.take() {
            self.pending_pax = Some(records);
        }
        self.state = State::Header;
    }
}

fn is_extension(kind: EntryType) -> bool {
    kind.is_gnu_longname()
        || kind.is_gnu_longlink()
        || kind.is_pax_local_extensions()
        || kind.is_pax_global_extensions()
}

/// The `size` record exactly as `tar` reads it: the first one, ignored when any
/// record before it or its value fails to parse.
fn pax_size(records: &[u8]) -> Option<u64> {
    for record in PaxExtensions::new(records) {
        let record = record.ok()?;
        if record.key() != Ok("size") {
            continue;
        }
        return record.value().ok()?.parse::<u64>().ok();
    }
    None
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "tar stream ends inside a member")
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.state {
            State::Passthrough => self.inner.read(buf),
            State::Header => {
                let want = buf.len().min(BLOCK - self.filled);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    // A clean end at a header boundary is how tars without the
                    // trailer end; go's archive/tar (and so docker) accept it.
                    return if self.filled == 0 { Ok(0) } else { Err(truncated()) };
                }
                self.block[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
                self.filled += n;
                if self.filled == BLOCK {
                    self.filled = 0;
                    self.on_header()?;
                }
                Ok(n)
            }
            State::Data => {
                let want = (buf.len() as u64).min(self.remaining) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                let data = (n as u64).min(self.data_left);
                if let Some(capture) = self.capture.as_mut() {
                    capture.extend_from_slice(&buf[..data as usize]);
                }
                self.data_left -= data;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.end_member();
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::testutil::TarBuf;

    fn read_all_entries(bytes: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut archive = tar::Archive::new(Guard::new(bytes));
        let mut out = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            out.push((String::from_utf8_lossy(&entry.path_bytes()).into_owned(), data));
        }
        Ok(out)
    }

    #[test]
    fn passes_a_normal_stream_through_unchanged() {
        let mut t = TarBuf::new();
        t.file("a", b"hello", 0o644);
        t.pax(&[("path", &b"long/".repeat(60)[..])]);
        t.file("ignored-name", &[7u8; 3000], 0o644);
        t.dir("d/", 0o755);
        let bytes = t.finish();
        let entries = read_all_entries(&bytes).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], ("a".to_string(), b"hello".to_vec()));
        assert_eq!(entries[1].0.len(), 300);
        assert_eq!(entries[1].1, vec![7u8; 3000]);

        let mut g = Guard::new(&bytes[..]);
        let mut copy = Vec::new();
        g.read_to_end(&mut copy).unwrap();
        assert_eq!(copy, bytes);
    }

    #[test]
    fn pax_size_record_moves_the_member_boundary() {
        // Header says 0 bytes, PAX says 600: the guard must follow PAX as tar does, or
        // it would read the file's data as a header.
        let mut t = TarBuf::new();
        t.pax(&[("size", b"600")]);
        t.raw_member(b"big", tar::EntryType::Regular, 0, &[1u8; 600]);
        t.file("after", b"x", 0o644);
        let entries = read_all_entries(&t.finish()).unwrap();
        assert_eq!(entries[0].1.len(), 600);
        assert_eq!(entries[1].0, "after");
    }

    #[test]
    fn huge_pax_header_is_refused_before_it_is_read() {
        // Claims 8 GiB of records but carries none: reading it would first fail as
        // truncated, so a HugeHeader error proves the cap fires on the header alone.
        let mut t = TarBuf::new();
        t.raw_member(b"PaxHeaders.0/x", tar::EntryType::XHeader, 8 << 30, b"");
        let err = read_all_entries(&t.into_bytes()).unwrap_err();
        let huge = err.get_ref().and_then(|e| e.downcast_ref::<HugeHeader>()).expect("huge header error");
        assert_eq!(huge.entry, "PaxHeaders.0/x");
    }

    #[test]
    fn extension_sizes_add_up_per_member() {
        let mut t = TarBuf::new();
        t.raw_member(b"././@LongLink", tar::EntryType::GNULongName, 700 * 1024, &[b'a'; 700 * 1024]);
        t.raw_member(b"././@LongLink", tar::EntryType::GNULongLink, 700 * 1024, &[b'b'; 700 * 1024]);
        t.raw_member(b"x", tar::EntryType::Link, 0, b"");
        let err = read_all_entries(&t.finish()).unwrap_err();
        assert!(err.get_ref().and_then(|e| e.downcast_ref::<HugeHeader>()).is_some(), "{err}");
    }

    #[test]
    fn short_data_is_an_unexpected_eof() {
        let mut t = TarBuf::new();
        t.file("a", &[1u8; 4000], 0o644);
        let bytes = t.finish();
        let err = read_all_entries(&bytes[..2000]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_all_entries(&bytes[..300]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
