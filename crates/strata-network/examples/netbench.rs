//! Load generator for bench/network.sh (not part of strata).
//!
//! `netbench serve PORT`             a server: a stream starting with `T` is drained and
//!                                   answered with its byte count; one starting with `C`
//!                                   gets one byte back and is closed.
//! `netbench throughput ADDR SECS N` N streams writing 1 MiB buffers for SECS seconds;
//!                                   prints MB/s received by the server.
//! `netbench connrate ADDR SECS N`   N threads connecting, exchanging a byte and closing;
//!                                   prints connections per second.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn serve(port: u16) {
    let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut first = [0u8; 1];
            if s.read_exact(&mut first).is_err() {
                return;
            }
            if first[0] == b'C' {
                let _ = s.write_all(b"c");
                return;
            }
            let mut buf = vec![0u8; 1 << 20];
            let mut n: u64 = 1;
            while let Ok(k) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = s.write_all(&n.to_le_bytes());
        });
    }
}

fn throughput(addr: &str, secs: u64, streams: usize) {
    let start = Instant::now();
    let threads: Vec<_> = (0..streams)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                let buf = vec![b'T'; 1 << 20];
                let end = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < end {
                    s.write_all(&buf).expect("write");
                }
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut n = [0u8; 8];
                s.read_exact(&mut n).expect("count");
                u64::from_le_bytes(n)
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("stream")).sum();
    let el = start.elapsed().as_secs_f64();
    println!("{:.0}", total as f64 / el / 1e6);
}

fn connrate(addr: &str, secs: u64, threads: usize) {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let ts: Vec<_> = (0..threads)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut b = [0u8; 1];
                while Instant::now() < end {
                    let Ok(mut s) = TcpStream::connect(&addr) else { continue };
                    if s.write_all(b"C").is_ok() && s.read_exact(&mut b).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = ts.into_iter().map(|t| t.join().expect("thread")).sum();
    println!("{:.0}", total as f64 / start.elapsed().as_secs_f64());
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "serve" => serve(arg(2).parse().expect("port")),
        "throughput" => throughput(&arg(2), arg(3).parse().expect("secs"), arg(4).parse().unwrap_or(1)),
        "connrate" => connrate(&arg(2), arg(3).parse().expect("secs"), arg(4).parse().unwrap_or(4)),
        _ => {
            eprintln!("usage: netbench serve PORT | throughput ADDR SECS N | connrate ADDR SECS N");
            std::process::exit(2);
        }
    }
}
