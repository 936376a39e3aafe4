//! The supervisor's control protocol, spoken over a unix socket by the CLI, the API
//! server and any other strata process.
//!
//! Every message is a frame with docker's stream header — `[kind, 0, 0, 0, len u32 BE]`
//! then `len` bytes — so attach output can be forwarded to Engine API clients as is:
//! - kind 0: stdin data (client → supervisor); an empty frame closes the container's stdin
//! - kind 1, 2: stdout, stderr (supervisor → client)
//! - kind 3: a JSON control message either way (`Request` from a client, `Event` back)
//!
//! A connection starts with one `Request`. `Attach` turns it into a stream that ends
//! with `Event::Exit` (and, for `--rm`, `Event::Removed`); `Wait` answers with the next
//! `Event::Exit`; the others answer with `Event::Ok`, `Event::State` or `Event::Error`.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const CONTROL: u8 = 3;
/// Frames larger than this are refused (a control message is small; data is chunked).
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Stream the container's output (and take its input when `stdin`).
    Attach { stdin: bool, stdout: bool, stderr: bool },
    /// Answer with the next exit (or at once if the container is not running).
    Wait,
    /// Send a signal to the init process.
    Kill { signal: i32 },
    /// Stop: the stop signal, then SIGKILL after `timeout` seconds; no restart follows.
    Stop { signal: i32, timeout: i64 },
    /// Terminal size.
    Resize { height: u16, width: u16 },
    /// Report pid and running state.
    State,
    /// Run another process in the running container (`exec`). Without `detach` the
    /// connection then carries its stdio (and its stdin when `stdin`) and ends with its
    /// `Exit`; with `detach`, `Ok` answers at once.
    Exec {
        process: ExecProcess,
        stdin: bool,
        detach: bool,
        /// A pty of its own (`exec -t`); output then comes as one stream.
        #[serde(default)]
        tty: bool,
    },
}

/// What `exec` runs, as the engine resolved it (user looked up in the container's own
/// /etc/passwd, environment merged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    pub cwd: String,
    /// The user as given (`name`, `uid`, `name:group`, empty for the container's own);
    /// resolved by the supervisor, which sees the container's root.
    pub user: String,
    pub privileged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Ok,
    State { running: bool, pid: i32 },
    /// The init exited. `code` is the exit code (128+signal when killed).
    Exit { code: i32 },
    /// The container was removed (`--rm`) after its exit.
    Removed,
    Error { message: String },
    /// An exec could not be started; `code` is docker's exit code for it.
    ExecFailed { code: i32, message: String },
}

pub fn write_frame(w: &mut dyn Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 8];
    head[0] = kind;
    head[4..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    // One write for small frames keeps a frame atomic on a stream socket.
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&head);
    buf.extend_from_slice(data);
    w.write_all(&buf)
}

pub fn write_json<T: Serialize>(w: &mut dyn Write, msg: &T) -> io::Result<()> {
    write_frame(w, CONTROL, &serde_json::to_vec(msg).expect("protocol messages serialise"))
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut dyn Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated frame header")),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is too large")));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

/// Incremental frame parser for the supervisor's non-blocking reads.
#[derive(Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any; an oversized frame is an error.
    pub fn next_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is too large")));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let data = self.buf[8..8 + len].to_vec();
        self.buf.drain(..8 + len);
        Ok(Some((kind, data)))
    }
}

/// The abstract socket name of a container's supervisor. Abstract names vanish with the
/// process, so a crashed supervisor leaves no stale file; peers are checked to be root.
pub fn socket_name(data_root_hash: &str, id: &str) -> String {
    format!("strata/{data_root_hash}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_parse_incrementally() {
        let mut out = Vec::new();
        write_frame(&mut out, STDOUT, b"hello").unwrap();
        write_json(&mut out, &Event::Exit { code: 3 }).unwrap();
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 5]);
        let mut fb = FrameBuf::default();
        for b in &out {
            fb.push(&[*b]);
        }
        assert_eq!(fb.next_frame().unwrap(), Some((STDOUT, b"hello".to_vec())));
        let (k, j) = fb.next_frame().unwrap().unwrap();
        assert_eq!(k, CONTROL);
        assert_eq!(serde_json::from_slice::<Event>(&j).unwrap(), Event::Exit { code: 3 });
        assert_eq!(fb.next_frame().unwrap(), None);
        let mut r = &out[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap().1, b"hello");
        let req: Request = serde_json::from_str(r#"{"op":"kill","signal":15}"#).unwrap();
        assert_eq!(req, Request::Kill { signal: 15 });
        let mut big = vec![1, 0, 0, 0];
        big.extend_from_slice(&(u32::MAX).to_be_bytes());
        let mut fb = FrameBuf::default();
        fb.push(&big);
        assert!(fb.next_frame().is_err());
    }
}
