//! A boot service on an ephemeral loopback port over two temporary
//! directories, and a raw HTTP/1.1 client (raw, because the point is to
//! send what a well-behaved client would normalise away).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use xcat_bootserve::{BootService, Roots};
use xcat_plugin::boot::HttpSettings;

pub struct Served {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Served {
    pub fn install(&self) -> PathBuf {
        self.dir.path().join("install")
    }
    pub fn tftp(&self) -> PathBuf {
        self.dir.path().join("tftpboot")
    }
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
    /// Stop and wait: every connection is closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the service stops")
            .unwrap();
    }
}

/// Settings for tests: the access log in the directory, other limits as given.
pub fn settings(dir: &Path) -> HttpSettings {
    HttpSettings {
        access_log: Some(dir.join("access.log")),
        ..HttpSettings::default()
    }
}

pub async fn serve() -> Served {
    serve_with(|_| {}).await
}

pub async fn serve_with(tune: impl FnOnce(&mut HttpSettings)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("install")).unwrap();
    std::fs::create_dir(dir.path().join("tftpboot")).unwrap();
    let mut s = settings(dir.path());
    tune(&mut s);
    let roots = Roots::fixed(&dir.path().join("install"), &dir.path().join("tftpboot"));
    serve_roots(dir, s, roots).await
}

pub async fn serve_roots(dir: tempfile::TempDir, s: HttpSettings, roots: Roots) -> Served {
    let service = BootService::new(&s, roots).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service.serve(listener, shutdown.clone()));
    Served {
        dir,
        addr,
        shutdown,
        task,
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Connect from `source` (a loopback address) to `addr`.
pub async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    // Small: the test's own thousand readers share the kernel's TCP memory
    // with everything else on the machine.
    sock.set_recv_buffer_size(16 << 10)?;
    sock.bind(format!("{source}:0").parse().unwrap())?;
    sock.connect(addr).await
}

/// Send `GET target` (or another method) with extra header lines and read the response.
pub async fn request(addr: SocketAddr, method: &str, target: &str, headers: &str) -> Response {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let text =
        format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");
    tcp.write_all(text.as_bytes()).await.unwrap();
    read_response(&mut tcp, method == "HEAD")
        .await
        .expect("a response")
}

pub async fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target, "").await
}

/// Read one response; with `no_body` (HEAD, 304) no body is read whatever
/// Content-Length says.
pub async fn read_response(tcp: &mut TcpStream, no_body: bool) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
    if !no_body && status != 304 {
        r.body = vec![0; len];
        tcp.read_exact(&mut r.body).await?;
    }
    Ok(r)
}

/// Write `data` to `path`.
pub fn put(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}
