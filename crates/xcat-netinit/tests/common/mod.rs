//! Test support: a file server on 127.0.0.1 that misbehaves on request, and
//! helpers that build and compare trees with the real tools.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// What the server does with the next requests, one fault per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Serves the request normally.
    Pass,
    /// Answers 503.
    Unavailable,
    /// Answers 404.
    NotFound,
    /// Sends the head and this many body bytes, then closes.
    CutAfter(u64),
    /// Accepts the connection and closes it at once.
    Close,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, String)>,
    faults: VecDeque<Fault>,
    ignore_ranges: bool,
    seen: Vec<Seen>,
}

/// The server; it runs until the test process ends.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Server { addr, state }
    }

    /// Serves `data` at `path`, with `version` as its Last-Modified validator.
    pub fn put(&self, path: &str, data: Vec<u8>, version: &str) {
        let mut st = self.state.lock().unwrap();
        st.files
            .insert(path.to_string(), (data, version.to_string()));
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    pub fn faults(&self, f: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(f);
    }

    pub fn ignore_ranges(&self, yes: bool) {
        self.state.lock().unwrap().ignore_ranges = yes;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let (mut range, mut if_range) = (None, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.to_ascii_lowercase().as_str() {
            "range" => range = Some(v.trim().to_string()),
            "if-range" => if_range = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let (fault, file, ignore) = {
        let mut st = state.lock().unwrap();
        st.seen.push(Seen {
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
        });
        (
            st.faults.pop_front(),
            st.files.get(&path).cloned(),
            st.ignore_ranges,
        )
    };
    let mut w = conn;
    match (&fault, file) {
        (Some(Fault::Close), _) => return Ok(()),
        (Some(Fault::Unavailable), _) => {
            return w.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        }
        (Some(Fault::NotFound), _) | (_, None) => {
            return w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        }
        (_, Some((data, version))) => {
            let start = match (&range, ignore) {
                (Some(r), false) if if_range.as_deref().is_none_or(|v| v == version) => r
                    .strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0),
                _ => 0,
            };
            let body = &data[start as usize..];
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nLast-Modified: {version}\r\n\r\n",
                    body.len(),
                    data.len() - 1,
                    data.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {version}\r\n\r\n",
                    body.len()
                )
            };
            w.write_all(head.as_bytes())?;
            let send = match fault {
                Some(Fault::CutAfter(n)) => &body[..(n as usize).min(body.len())],
                _ => body,
            };
            w.write_all(send)?;
        }
    }
    Ok(())
}

/// Runs a command; panics with its stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line.
pub fn sh(script: &str) -> String {
    run(Command::new("sh").args(["-ec", script]))
}

/// A tree with every kind of entry an image holds: a file with a file
/// capability, a sparse file of `sparse_size` (`truncate -s`) with data at an offset, a file of zero
/// pages, hard links, a symlink, a FIFO, a character and a block device, an
/// empty file, odd modes and owners, a setuid file, a directory with old
/// times.
pub fn make_tree(dir: &Path, sparse_size: &str) {
    let d = dir.display();
    sh(&format!(
        "mkdir -p {d}/bin {d}/var/lib {d}/dev {d}/etc/deep/er {d}/empty
         cd {d}
         printf 'ping binary\\n' > bin/ping
         setcap cap_net_raw+ep bin/ping
         truncate -s {sparse_size} var/lib/sparse.img
         printf 'data in the middle' | dd of=var/lib/sparse.img bs=1 seek=$(( $(stat -c %s var/lib/sparse.img) / 2 )) conv=notrunc status=none
         printf 'tail' | dd of=var/lib/sparse.img bs=1 seek=$(( $(stat -c %s var/lib/sparse.img) - 4 )) conv=notrunc status=none
         head -c 1048576 /dev/zero > var/lib/zeros
         printf 'x' >> var/lib/zeros
         head -c 3000000 /dev/urandom > bin/big
         printf 'root:x:0:0::/root:/bin/sh\\n' > etc/passwd
         ln etc/passwd etc/passwd.link
         ln etc/passwd etc/deep/passwd.link2
         ln -s ../etc/passwd bin/passwd-symlink
         ln -s /nonexistent/target etc/dangling
         mkfifo dev/fifo
         mknod dev/null2 c 1 3
         mknod dev/loop9 b 7 9
         : > etc/empty
         printf 'suid\\n' > bin/suid && chown 0:0 bin/suid && chmod 4755 bin/suid
         printf 'owned\\n' > etc/owned && chown 1234:5678 etc/owned && chmod 0640 etc/owned
         chown -h 42:43 bin/passwd-symlink
         chmod 1777 empty
         setfattr -n user.note -v hello etc/passwd 2>/dev/null || true
         touch -h -d '2001-02-03 04:05:06' bin/passwd-symlink
         touch -d '2002-03-04 05:06:07' etc/deep/er etc/deep etc"
    ));
}

/// What `find` says of every entry of a tree, in name order: type, mode,
/// owner, size (of regular files), link target and mtime; then the file
/// capabilities. Two trees with the same listing are the same for a boot.
pub fn listing(dir: &Path) -> String {
    let d = dir.display();
    let find = sh(&format!(
        "cd {d} && find . -mindepth 1 \\( -type f -printf '%p %y %#m %U:%G %s %Ts %n\\n' \\) -o \
         \\( -type l -printf '%p %y %U:%G -> %l %Ts\\n' \\) -o \\( -type d -printf '%p %y %#m %U:%G %Ts\\n' \\) -o \
         -printf '%p %y %#m %U:%G %Ts\\n' | LC_ALL=C sort"
    ));
    let devs = sh(&format!(
        "cd {d} && stat -c '%n %t:%T' dev/null2 dev/loop9 2>/dev/null || true"
    ));
    let caps = sh(&format!("cd {d} && getcap -r . | LC_ALL=C sort"));
    format!("{find}--\n{devs}--\n{caps}")
}

/// Bytes the file system allocated for `path`.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().blocks() * 512
}

/// Reads a whole stream.
pub fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}
