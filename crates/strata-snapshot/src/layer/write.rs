//! Writing a directory (an overlay upper dir, or a plain tree) as a layer tar.
//!
//! The output is a function of the tree alone: entries in byte-wise order, times in
//! whole seconds, no atime/ctime, no user or group names, fixed placeholder fields.
//! Committing the same container twice, or rebuilding the same step, then yields the
//! same layer digest.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Statx};
use tar::{EntryType, Header};

use super::sys::{file_type, get_xattr, is_mount_root, is_opaque, is_whiteout, list_xattrs, lstatx, read_dir_sorted};
use super::{xattr_exported, LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Paths relative to the directory (`etc/hosts`), left out with their subtrees.
    /// Leading `/` or `./` and trailing `/` are ignored.
    pub exclude: Vec<PathBuf>,
}

/// Writes `dir` (an overlay upper dir, or a plain dir) as a deterministic layer tar.
///
/// Overlay whiteouts become `.wh.<name>` entries and opaque directories get a
/// `.wh..wh..opq` entry. Symlinks are not followed and other filesystems mounted
/// inside `dir` are not entered (their mount points appear as empty directories).
pub fn write_tar<W: Write>(dir: &Path, out: W, opts: &WriteOptions) -> Result<(), LayerError> {
    write(dir, out, opts, Form::Layer)
}

/// Writes `dir` as a plain tree tar (a volume's content, read back with
/// `WhiteoutMode::Plain`): no whiteout translation, so a 0/0 character device stays one,
/// and the directory itself comes first as `./`, because a volume's top directory has
/// an owner and mode of its own (seeding copies the image's). The other entries carry
/// no `./` prefix, as `docker export` writes them. Otherwise as `write_tar`.
pub fn write_tree_tar<W: Write>(dir: &Path, out: W, opts: &WriteOptions) -> Result<(), LayerError> {
    write(dir, out, opts, Form::Tree)
}

/// A separate entry point rather than a `WriteOptions` field: the options struct is
/// built with literal syntax across the workspace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Layer,
    Tree,
}

fn write<W: Write>(dir: &Path, out: W, opts: &WriteOptions, form: Form) -> Result<(), LayerError> {
    let root = lstatx(dir).map_err(LayerError::io("stat", dir))?;
    if file_type(&root) != FileType::Directory {
        return Err(LayerError::io("write layer from", dir)(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let exclude: HashSet<Vec<u8>> = opts.exclude.iter().map(|p| normalize_exclude(p)).collect();
    let mut w = Writer {
        out: BufWriter::with_capacity(256 * 1024, out),
        dir: dir.to_path_buf(),
        root_dev: (root.stx_dev_major, root.stx_dev_minor),
        links: HashMap::new(),
        buf: vec![0u8; 1 << 20],
        form,
    };
    if form == Form::Tree {
        w.entry(dir, b"", b".", b".", &root)?;
    }

    let mut stack = vec![Frame { host: dir.to_path_buf(), rel: Vec::new(), names: children(dir)? }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.pop() else {
            stack.pop();
            continue;
        };
        let host = top.host.join(&name);
        let mut rel = top.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        if exclude.contains(&rel) {
            continue;
        }
        let st = match lstatx(&host) {
            Ok(st) => st,
            // Deleted between listing and stat by a still-running container.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LayerError::io("stat", &host)(e)),
        };
        let parent_rel = top.rel.clone();
        if w.entry(&host, &parent_rel, name.as_bytes(), &rel, &st)? {
            let names = children(&host)?;
            stack.push(Frame { host, rel, names });
        }
    }
    w.finish()
}

struct Frame {
    host: PathBuf,
    rel: Vec<u8>,
    /// Sorted descending, so popping yields them in order.
    names: Vec<OsString>,
}

fn children(dir: &Path) -> Result<Vec<OsString>, LayerError> {
    match read_dir_sorted(dir) {
        Ok(mut names) => {
            names.reverse();
            Ok(names)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(LayerError::io("read directory", dir)(e)),
    }
}

fn normalize_exclude(p: &Path) -> Vec<u8> {
    let parts: Vec<&[u8]> =
        p.as_os_str().as_bytes().split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    parts.join(&b'/')
}

/// The fields of one tar entry before encoding.
struct Head<'a> {
    name: &'a [u8],
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u32, u32),
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Name and value pairs, sorted by name.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl Head<'_> {
    /// An empty file entry carrying no metadata, for whiteout markers: a whiteout's
    /// own time and owner are not reproducible across apply, so none are recorded.
    fn marker(name: &[u8]) -> Head<'_> {
        Head {
            name,
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        }
    }
}

struct Writer<W: Write> {
    out: BufWriter<W>,
    dir: PathBuf,
    root_dev: (u32, u32),
    /// First path written for each multiply-linked inode.
    links: HashMap<(u32, u32, u64), Vec<u8>>,
    buf: Vec<u8>,
    form: Form,
}

impl<W: Write> Writer<W> {
    /// Writes the entry for one tree node; returns whether to descend into it.
    fn entry(
        &mut self,
        host: &Path,
        parent_rel: &[u8],
        name: &[u8],
        rel: &[u8],
        st: &Statx,
    ) -> Result<bool, LayerError> {
        let ft = file_type(st);
        // A tree's own top directory may be a mount (a volume with driver options).
        let top = self.form == Form::Tree && rel == b".";
        let foreign = !top && ((st.stx_dev_major, st.stx_dev_minor) != self.root_dev || is_mount_root(st));
        let mode = u32::from(st.stx_mode) & 0o7777;
        // Docker truncates to whole seconds; before 1970 is clamped so the field stays
        // a plain octal number.
        let mtime = st.stx_mtime.tv_sec.max(0) as u64;
        let (uid, gid) = (u64::from(st.stx_uid), u64::from(st.stx_gid));
        let base = Head {
            name: rel,
            kind: EntryType::Regular,
            mode,
            uid,
            gid,
            size: 0,
            mtime,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        };

        if ft == FileType::Directory {
            let xattrs = if foreign { Vec::new() } else { self.xattrs(host)? };
            let mut name = rel.to_vec();
            name.push(b'/');
            self.header(&Head { name: &name, kind: EntryType::Directory, xattrs: &xattrs, ..base })?;
            if foreign {
                return Ok(false);
            }
            if self.form == Form::Layer && is_opaque(host).map_err(LayerError::io("read xattrs of", host))? {
                let mut marker = rel.to_vec();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_MARKER);
                self.header(&Head::marker(&marker))?;
            }
            return Ok(true);
        }
        if foreign {
            // A file bind-mounted in (resolv.conf and the like) is the host's, not the layer's.
            return Ok(false);
        }
        if self.form == Form::Layer && is_whiteout(st) {
            let mut marker = parent_rel.to_vec();
            if !marker.is_empty() {
                marker.push(b'/');
            }
            marker.extend_from_slice(WHITEOUT_PREFIX);
            marker.extend_from_slice(name);
            self.header(&Head::marker(&marker))?;
            return Ok(false);
        }
        let kind = match ft {
            FileType::RegularFile => EntryType::Regular,
            FileType::Symlink => EntryType::Symlink,
            FileType::CharacterDevice => EntryType::Char,
            FileType::BlockDevice => EntryType::Block,
            FileType::Fifo => EntryType::Fifo,
            // Sockets are runtime state; docker leaves them out too.
            _ => return Ok(false),
        };
        if st.stx_nlink > 1 {
            let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                self.header(&Head { kind: EntryType::Link, link: &first, ..base })?;
                return Ok(false);
            }
            self.links.insert(key, rel.to_vec());
        }
        let xattrs = self.xattrs(host)?;
        match kind {
            EntryType::Regular => {
                let mut file = File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(host)
                    .map_err(LayerError::io("open", host))?;
                let size = st.stx_size;
                self.header(&Head { size, xattrs: &xattrs, ..base })?;
                self.data(&mut file, size, host)?;
            }
            EntryType::Symlink => {
                let target = std::fs::read_link(host).map_err(LayerError::io("read symlink", host))?;
                self.header(&Head { kind, link: target.as_os_str().as_bytes(), xattrs: &xattrs, ..base })?;
            }
            _ => {
                let dev = (st.stx_rdev_major, st.stx_rdev_minor);
                self.header(&Head { kind, dev, xattrs: &xattrs, ..base })?;
            }
        }
        Ok(false)
    }

    fn xattrs(&self, host: &Path) -> Result<Xattrs, LayerError> {
        let mut out = Vec::new();
        for name in list_xattrs(host).map_err(LayerError::io("list xattrs of", host))? {
            if !xattr_exported(&name) {
                continue;
            }
            if let Some(value) = get_xattr(host, &name).map_err(LayerError::io("read xattrs of", host))? {
                out.push((name, value));
            }
        }
        Ok(out)
    }

    fn header(&mut self, h: &Head<'_>) -> Result<(), LayerError> {
        let bytes = encode(h);
        self.out.write_all(&bytes).map_err(LayerError::io("write layer tar of", &self.dir))
    }

    /// Copies exactly `size` bytes, the size already promised in the header.
    fn data(&mut self, file: &mut File, size: u64, host: &Path) -> Result<(), LayerError> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    let e = io::Error::other(format!("file shrank by {left} bytes while being read"));
                    return Err(LayerError::io("read", host)(e));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::io("read", host)(e)),
            };
            self.out.write_all(&self.buf[..n]).map_err(LayerError::io("write layer tar of", &self.dir))?;
            left -= n as u64;
        }
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> Result<(), LayerError> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.out.write_all(&[0u8; 512][..pad]).map_err(LayerError::io("write layer tar of", &self.dir))
    }

    fn finish(mut self) -> Result<(), LayerError> {
        self.out.write_all(&[0u8; 1024]).map_err(LayerError::io("write layer tar of", &self.dir))?;
        self.out.flush().map_err(LayerError::io("write layer tar of", &self.dir))
    }
}

/// One PAX record, `"<len> <key>=<value>\n"` where `len` counts the whole record,
/// its own digits included.
pub(crate) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    loop {
        let next = rest + len.to_string().len();
        if next == len {
            break;
        }
        len = next;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// go's archive/tar rule (so our layers look like docker's): ustar's prefix/name split
/// for ASCII names up to 256 bytes, PAX otherwise.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some((b"", name));
    }
    let mut length = name.len();
    if length > 156 {
        length = 156;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|b| *b == b'/')?;
    let (prefix, suffix) = (&name[..i], &name[i + 1..]);
    if i == 0 || suffix.is_empty() || suffix.len() > 100 || prefix.len() > 155 {
        return None;
    }
    Some((prefix, suffix))
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// The header blocks of one entry: a PAX header when needed, then the ustar header.
fn encode(h: &Head<'_>) -> Vec<u8> {
    let mut records: Vec<(Vec<u8>, &[u8])> = Vec::new();
    let mut header = Header::new_ustar();
    {
        let ustar = header.as_ustar_mut().expect("new_ustar is ustar");
        match split_ustar(h.name) {
            Some((prefix, name)) => {
                copy_field(&mut ustar.prefix, prefix);
                copy_field(&mut ustar.name, name);
            }
            None => {
                records.push((b"path".to_vec(), h.name));
                copy_field(&mut ustar.name, h.name);
            }
        }
        if h.link.len() > 100 || !h.link.is_ascii() {
            records.push((b"linkpath".to_vec(), h.link));
        }
        copy_field(&mut ustar.linkname, h.link);
    }
    for (name, value) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value));
    }
    header.set_entry_type(h.kind);
    header.set_mode(h.mode);
    header.set_uid(h.uid);
    header.set_gid(h.gid);
    header.set_size(h.size);
    header.set_mtime(h.mtime);
    header.set_device_major(h.dev.0).expect("ustar has device fields");
    header.set_device_minor(h.dev.1).expect("ustar has device fields");
    header.set_cksum();

    let mut out = Vec::with_capacity(512);
    if !records.is_empty() {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut data = Vec::new();
        for (k, v) in &records {
            data.extend(pax_record(k, v));
        }
        let trimmed = h.name.strip_suffix(b"/").unwrap_or(h.name);
        let base = trimmed.rsplit(|b| *b == b'/').next().unwrap_or(trimmed);
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(base);
        let mut pax = Header::new_ustar();
        copy_field(&mut pax.as_ustar_mut().expect("ustar").name, &pax_name);
        pax.set_entry_type(EntryType::XHeader);
        pax.set_mode(0);
        pax.set_uid(0);
        pax.set_gid(0);
        pax.set_size(data.len() as u64);
        pax.set_mtime(0);
        pax.set_cksum();
        out.extend_from_slice(pax.as_bytes());
        let pad = (512 - data.len() % 512) % 512;
        out.extend_from_slice(&data);
        out.resize(out.len() + pad, 0);
    }
    out.extend_from_slice(header.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::fs;
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};

    use super::*;
    use crate::layer::testutil::{get_xattr, in_private_mount_ns, mkdir, mknod_whiteout, scratch, set_opaque};
    use crate::layer::{apply_tar, ApplyOptions, WhiteoutMode};

    fn chown(p: &Path, uid: u32, gid: u32) {
        rustix::fs::chownat(CWD, p, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)
            .unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn touch(p: &Path, secs: i64, nanos: i64) {
        let t = Timespec { tv_sec: secs, tv_nsec: nanos as _ };
        rustix::fs::utimensat(CWD, p, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)
            .unwrap();
    }

    fn write_file(p: &Path, data: &[u8], mode: u32, mtime: i64) {
        fs::write(p, data).unwrap();
        chmod(p, mode);
        touch(p, mtime, 0);
    }

    fn mknod(p: &Path, ft: FileType, major: u32, minor: u32) {
        rustix::fs::mknodat(CWD, p, ft, Mode::from_raw_mode(0o620), rustix::fs::makedev(major, minor)).unwrap();
    }

    fn cap_blob() -> Vec<u8> {
        let mut cap = Vec::new();
        for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            cap.extend_from_slice(&word.to_le_bytes());
        }
        cap
    }

    pub(super) const LONG_DIR: &str =
        "this-directory-name-is-long-enough-to-need-the-ustar-prefix-field-when-we-add-a-file-below-it-okay";

    /// A tree with one of everything a layer can hold.
    fn build_tree(d: &Path) {
        mkdir(d, "etc");
        write_file(&d.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n", 0o644, 2222);
        write_file(&d.join("etc/shadow"), b"root:*:::::::\n", 0o640, 2223);
        chown(&d.join("etc/shadow"), 0, 42);
        touch(&d.join("etc"), 1111, 0);

        mkdir(d, "bin");
        write_file(&d.join("bin/busybox"), &[0x7f; 5000], 0o755, 3000);
        fs::hard_link(d.join("bin/busybox"), d.join("bin/ls")).unwrap();
        std::os::unix::fs::symlink("busybox", d.join("bin/sh")).unwrap();
        chown(&d.join("bin/sh"), 7, 8);
        touch(&d.join("bin/sh"), 3001, 0);
        write_file(&d.join("bin/su"), b"su", 0o4755, 3002);
        write_file(&d.join("bin/ping"), b"ping", 0o755, 3003);
        rustix::fs::lsetxattr(d.join("bin/ping").as_path(), "security.capability", &cap_blob(), XattrFlags::empty())
            .unwrap();
        touch(&d.join("bin"), 3100, 0);

        mkdir(d, "sbin");
        fs::hard_link(d.join("bin/busybox"), d.join("sbin/init")).unwrap();

        mkdir(d, "home/user");
        chown(&d.join("home/user"), 1000, 1000);
        chmod(&d.join("home/user"), 0o700);
        write_file(&d.join("home/user/.profile"), b"export PS1=$\n", 0o600, 4000);
        chown(&d.join("home/user/.profile"), 1000, 1000);
        rustix::fs::lsetxattr(
            d.join("home/user/.profile").as_path(),
            "user.mime_type",
            b"text/plain",
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::lsetxattr(d.join("home/user/.profile").as_path(), "trusted.secret", b"no", XattrFlags::empty())
            .unwrap();
        mkdir(d, "tmp");
        chmod(&d.join("tmp"), 0o1777);
        mkdir(d, "srv/setgid");
        chmod(&d.join("srv/setgid"), 0o2775);

        mkdir(d, "dev");
        mknod(&d.join("dev/null"), FileType::CharacterDevice, 1, 3);
        mknod(&d.join("dev/sda"), FileType::BlockDevice, 8, 0);
        mknod(&d.join("dev/fifo"), FileType::Fifo, 0, 0);

        let long = mkdir(d, &format!("{LONG_DIR}/{LONG_DIR}"));
        write_file(&long.join("deep-file"), b"deep", 0o644, 5000);
        write_file(&d.join(LONG_DIR).join("ustar-split"), b"split", 0o644, 5001);
        std::os::unix::fs::symlink("t".repeat(200), d.join("long-link")).unwrap();
        write_file(&d.join("ünïcödé"), b"utf8", 0o644, 5002);
        write_file(&d.join("fraction"), b"", 0o644, 0);
        touch(&d.join("fraction"), 6000, 999_999_999);
        let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i: u32| (i % 251) as u8).collect();
        write_file(&d.join("big"), &big, 0o644, 7000);
        mkdir(d, "empty");

        mkdir(d, "var/cache");
        set_opaque(&d.join("var/cache"));
        write_file(&d.join("var/cache/new"), b"", 0o644, 8000);
        mknod_whiteout(&d.join("var/gone"));
        std::os::unix::net::UnixListener::bind(d.join("var/socket")).unwrap();
    }

    fn hash(data: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        data.hash(&mut h);
        h.finish()
    }

    /// Everything a layer is meant to carry, one line per node.
    fn snapshot(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for name in read_dir_sorted(&dir).unwrap() {
                let host = dir.join(&name);
                let rel = format!("{rel}/{}", name.to_string_lossy());
                let md = fs::symlink_metadata(&host).unwrap();
                let st = lstatx(&host).unwrap();
                if is_whiteout(&st) {
                    out.push(format!("{rel} whiteout"));
                    continue;
                }
                let mut line = format!(
                    "{rel} {:?} mode={:o} owner={}:{} mtime={}",
                    file_type(&st),
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    md.mtime()
                );
                if md.is_file() {
                    line += &format!(" size={} data={:x}", md.len(), hash(&fs::read(&host).unwrap()));
                }
                if md.file_type().is_symlink() {
                    line += &format!(" -> {}", fs::read_link(&host).unwrap().display());
                } else {
                    for x in ["user.mime_type", "security.capability", "trusted.overlay.opaque", "trusted.secret"] {
                        if let Some(v) = get_xattr(&host, x) {
                            line += &format!(" {x}={v:?}");
                        }
                    }
                }
                if matches!(file_type(&st), FileType::CharacterDevice | FileType::BlockDevice) {
                    line += &format!(" dev={}:{}", st.stx_rdev_major, st.stx_rdev_minor);
                }
                if !md.is_dir() && md.nlink() > 1 {
                    inodes.entry(md.ino()).or_default().push(rel.clone());
                    line += &format!(" ino={}", md.ino());
                }
                out.push(line);
                if md.is_dir() {
                    stack.push((host, rel));
                }
            }
        }
        // Inode numbers differ between trees; which names share one must not.
        for line in out.iter_mut() {
            if let Some(i) = line.find(" ino=") {
                let ino: u64 = line[i + 5..].parse().unwrap();
                let mut group = inodes[&ino].clone();
                group.sort();
                line.truncate(i);
                line.push_str(&format!(" links={group:?}"));
            }
        }
        out.sort();
        out
    }

    fn write(dir: &Path, opts: &WriteOptions) -> Vec<u8> {
        let mut out = Vec::new();
        write_tar(dir, &mut out, opts).unwrap();
        out
    }

    fn entry_names(tar_bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
    }

    #[test]
    fn round_trip_through_apply_preserves_the_tree() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        build_tree(&src);
        let tar_bytes = write(&src, &WriteOptions::default());

        let dst = mkdir(tmp.path(), "dst");
        let stats = apply_tar(&tar_bytes[..], &dst, &ApplyOptions { whiteouts: WhiteoutMode::Overlay }).unwrap();
        assert!(stats.size > 3 * 1024 * 1024);

        let mut want = snapshot(&src);
        // Not carried by layers on purpose: trusted.* xattrs and sockets.
        for line in want.iter_mut() {
            if let Some(i) = line.find(" trusted.secret") {
                line.truncate(i);
            }
        }
        want.retain(|l| !l.starts_with("/var/socket "));
        let got = snapshot(&dst);
        assert_eq!(got, want);
        assert!(got.iter().any(|l| l.starts_with("/var/gone whiteout")));
        assert!(got.iter().any(|l| l.starts_with("/var/cache ") && l.contains("trusted.overlay.opaque=[121]")));
        assert!(got
            .iter()
            .any(|l| l.starts_with("/sbin/init ") && l.contains(r#"links=["/bin/busybox", "/bin/ls", "/sbin/init"]"#)));

        let line =
            |p: &str| got.iter().find(|l| l.starts_with(&format!("{p} "))).unwrap_or_else(|| panic!("{p}")).clone();
        assert!(line("/bin/ping").contains("security.capability="), "{}", line("/bin/ping"));
        let profile = line("/home/user/.profile");
        assert!(
            profile.contains("owner=1000:1000") && profile.contains("user.mime_type=") && profile.contains("mode=600")
        );
        assert!(!profile.contains("trusted.secret"));
        assert!(line("/bin/sh").contains("owner=7:8 mtime=3001 -> busybox"), "{}", line("/bin/sh"));
        assert!(line("/bin/su").contains("mode=4755"));
        assert!(line("/tmp").contains("mode=1777"));
        assert!(line("/srv/setgid").contains("mode=2775"));
        assert!(line("/etc").contains("mtime=1111"));
        assert!(line("/fraction").contains("mtime=6000"));
        assert!(line("/dev/null").contains("dev=1:3") && line("/dev/sda").contains("dev=8:0"));
        assert!(line("/dev/fifo").contains("Fifo"));
        assert!(line(&format!("/{LONG_DIR}/{LONG_DIR}/deep-file")).contains("size=4"));
        assert!(line("/long-link").contains(&"t".repeat(200)));
        assert!(line("/ünïcödé").contains("size=4"));

        // And the applied tree writes back to the very same bytes.
        assert_eq!(write(&dst, &WriteOptions::default()), tar_bytes);
    }

    #[test]
    fn tree_form_round_trips_through_plain_apply() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        build_tree(&src);
        fs::write(src.join(".wh.plain"), b"a file, not a whiteout").unwrap();
        chown(&src, 1001, 1002);
        chmod(&src, 0o750);
        touch(&src, 9000, 0);
        let mut bytes = Vec::new();
        write_tree_tar(&src, &mut bytes, &WriteOptions::default()).unwrap();
        let names = entry_names(&bytes);
        assert_eq!(names[0], "./", "the top directory comes first");
        assert!(names[1..].iter().all(|n| !n.starts_with("./") && !n.starts_with('/')), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".wh..wh..opq") || n.ends_with(".wh.gone")), "{names:?}");

        let dst = mkdir(tmp.path(), "dst");
        apply_tar(&bytes[..], &dst, &ApplyOptions { whiteouts: WhiteoutMode::Plain }).unwrap();
        let mut want = snapshot(&src);
        // trusted.* (the opaque marker included) and sockets are not carried.
        for line in want.iter_mut() {
            if let Some(i) = line.find(" trusted.") {
                line.truncate(i);
            }
        }
        want.retain(|l| !l.starts_with("/var/socket "));
        assert_eq!(snapshot(&dst), want);
        assert!(want.iter().any(|l| l == "/var/gone whiteout"), "a 0/0 device stays a device");
        assert_eq!(fs::read(dst.join(".wh.plain")).unwrap(), b"a file, not a whiteout");
        let md = fs::metadata(&dst).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777, md.mtime()), (1001, 1002, 0o750, 9000));
    }

    #[test]
    fn output_is_deterministic() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        build_tree(&src);
        let first = write(&src, &WriteOptions::default());
        // Reading files moves atime; that must not show.
        let _ = fs::read(src.join("etc/passwd")).unwrap();
        assert_eq!(write(&src, &WriteOptions::default()), first);

        // Creation order (and so readdir order and inode numbers) must not show either.
        let a = mkdir(tmp.path(), "a");
        let b = mkdir(tmp.path(), "b");
        for n in ["b", "a", "c", "a-b", "B"] {
            write_file(&a.join(n), n.as_bytes(), 0o644, 10);
        }
        for n in ["B", "c", "a-b", "a", "b"] {
            write_file(&b.join(n), n.as_bytes(), 0o644, 10);
        }
        assert_eq!(write(&a, &WriteOptions::default()), write(&b, &WriteOptions::default()));
    }

    #[test]
    fn entries_are_sorted_with_markers_in_place() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        build_tree(&src);
        let bytes = write(&src, &WriteOptions::default());
        let names = entry_names(&bytes);
        let pos = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("{n} missing from {names:?}"));
        assert!(!names.iter().any(|n| n.is_empty()
            || n == "./"
            || n == "/"
            || n.starts_with('/')
            || n.starts_with("./")));
        assert_eq!(&names[..3], ["big", "bin/", "bin/busybox"]);
        assert!(pos("var/cache/") < pos("var/cache/.wh..wh..opq"));
        assert_eq!(pos("var/cache/.wh..wh..opq") + 1, pos("var/cache/new"));
        assert!(names.contains(&"var/.wh.gone".to_string()));
        assert!(!names.iter().any(|n| n.contains("socket")));
        assert!(names.contains(&"empty/".to_string()));

        let mut archive = tar::Archive::new(&bytes[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let h = entry.header().clone();
            assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}");
            assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{name}");
            if let Some(records) = entry.pax_extensions().unwrap() {
                for r in records {
                    let key = r.unwrap().key().unwrap().to_string();
                    assert!(!key.contains("trusted") && !key.contains("time"), "{name}: {key}");
                }
            }
            match name.as_str() {
                "var/.wh.gone" | "var/cache/.wh..wh..opq" => {
                    assert_eq!(h.entry_type(), EntryType::Regular);
                    assert_eq!(
                        (h.mode().unwrap(), h.uid().unwrap(), h.size().unwrap(), h.mtime().unwrap()),
                        (0, 0, 0, 0)
                    );
                }
                "bin/ls" | "sbin/init" => {
                    assert_eq!(h.entry_type(), EntryType::Link);
                    assert_eq!(entry.link_name_bytes().unwrap().as_ref(), b"bin/busybox");
                }
                "bin/su" => assert_eq!(h.mode().unwrap(), 0o4755),
                "fraction" => assert_eq!(h.mtime().unwrap(), 6000),
                "dev/sda" => {
                    assert_eq!(h.entry_type(), EntryType::Block);
                    assert_eq!((h.device_major().unwrap(), h.device_minor().unwrap()), (Some(8), Some(0)));
                }
                "etc/shadow" => assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 42)),
                _ => {}
            }
        }
    }

    #[test]
    fn excluded_paths_are_left_out_with_their_subtrees() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        mkdir(&src, "etc");
        for f in ["etc/hosts", "etc/hostsfile", "etc/resolv.conf"] {
            write_file(&src.join(f), b"x", 0o644, 1);
        }
        mkdir(&src, "proc/self");
        write_file(&src.join("proc/self/status"), b"x", 0o644, 1);
        mkdir(&src, "run/lock");
        let opts = WriteOptions {
            exclude: vec!["etc/hosts".into(), "/proc".into(), "./run/".into(), "etc/resolv.conf".into()],
        };
        assert_eq!(entry_names(&write(&src, &opts)), ["etc/", "etc/hostsfile"]);
    }

    #[test]
    fn other_filesystems_are_not_entered() {
        let tmp = scratch();
        let src = mkdir(tmp.path(), "src");
        let mnt = mkdir(&src, "mnt");
        write_file(&src.join("z"), b"", 0o644, 1);
        let ran = in_private_mount_ns(|| {
            rustix::mount::mount("tmpfs", &mnt, "tmpfs", rustix::mount::MountFlags::empty(), None).unwrap();
            write_file(&mnt.join("host-data"), b"x", 0o644, 1);
            assert_eq!(entry_names(&write(&src, &WriteOptions::default())), ["mnt/", "z"]);
            // A bind mount of the same filesystem has the same st_dev; the mount-root
            // attribute still gives it away.
            let data = mkdir(tmp.path(), "data");
            write_file(&data.join("bound"), b"x", 0o644, 1);
            let bind = mkdir(&src, "bind");
            rustix::mount::mount_bind(&data, &bind).unwrap();
            assert_eq!(entry_names(&write(&src, &WriteOptions::default())), ["bind/", "mnt/", "z"]);
        });
        if ran.is_none() {
            eprintln!("skipping: no private mount namespace here");
        }
    }

    #[test]
    fn ustar_split_follows_go() {
        assert_eq!(split_ustar(b"short"), Some((&b""[..], &b"short"[..])));
        let name = format!("{}/{}", "p".repeat(150), "n".repeat(99));
        let (p, n) = split_ustar(name.as_bytes()).unwrap();
        assert_eq!((p.len(), n.len()), (150, 99));
        let dir = format!("{}/{}/", "p".repeat(150), "n".repeat(99));
        let (p, n) = split_ustar(dir.as_bytes()).unwrap();
        assert_eq!((p.len(), n), (150, format!("{}/", "n".repeat(99)).as_bytes()));
        assert_eq!(split_ustar("x".repeat(101).as_bytes()), None, "no slash");
        assert_eq!(split_ustar(format!("{}/n", "p".repeat(156)).as_bytes()), None, "prefix too long");
        assert_eq!(split_ustar(format!("p/{}", "n".repeat(101)).as_bytes()), None, "name too long");
        assert_eq!(split_ustar("é".as_bytes()), None, "non-ascii goes to pax");
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record(b"mtime", b"1432668921.098285006"), b"30 mtime=1432668921.098285006\n");
        for n in 0..300 {
            let value = vec![b'v'; n];
            let rec = pax_record(b"path", &value);
            let parsed: Vec<_> = tar::PaxExtensions::new(&rec).map(|r| r.unwrap().value_bytes().to_vec()).collect();
            assert_eq!(parsed, vec![value], "n={n}");
        }
    }
}
