//! One connection: requests read one after the other (keep-alive), each
//! answered and logged once.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::access::Entry;
use crate::head::{Head, HeadError, Reader};
use crate::reply::{self, Conditions, Plan};
use crate::{urlpath, Shared};

/// How one request ended.
struct Outcome {
    status: u16,
    bytes: u64,
    /// The connection may carry another request.
    keep: bool,
}

/// Serve `tcp` until the peer closes, a limit cuts it off, or an answer
/// leaves it unusable.
pub(crate) async fn serve(shared: Arc<Shared>, mut tcp: TcpStream, peer: IpAddr) {
    let lim = &shared.limits;
    let mut reader = Reader::new(lim.max_header_bytes);
    let mut idle = lim.header_timeout;
    loop {
        let head = match reader.next(&mut tcp, idle, lim.header_timeout).await {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(e) => {
                let status = match e {
                    HeadError::Timeout => 408,
                    HeadError::TooLarge => 431,
                    _ => 400,
                };
                let started = Instant::now();
                let _ = bare(&mut tcp, &shared, status, "", true).await;
                shared.log.write(&Entry {
                    peer,
                    method: "-",
                    target: b"",
                    status,
                    bytes: 0,
                    duration: started.elapsed(),
                });
                return;
            }
        };
        let started = Instant::now();
        let out = answer(&shared, &mut tcp, &head).await;
        shared.log.write(&Entry {
            peer,
            method: &head.method,
            target: &head.target,
            status: out.status,
            bytes: out.bytes,
            duration: started.elapsed(),
        });
        if !out.keep {
            return;
        }
        idle = lim.idle_timeout;
    }
}

/// Answer one request.
async fn answer(shared: &Shared, tcp: &mut TcpStream, head: &Head) -> Outcome {
    let get = match head.method.as_str() {
        "GET" => true,
        "HEAD" => false,
        _ => {
            let ok = bare(tcp, shared, 405, "Allow: GET, HEAD\r\n", true).await;
            let _ = ok;
            return Outcome {
                status: 405,
                bytes: 0,
                keep: false,
            };
        }
    };
    if head.has_body {
        bare(tcp, shared, 400, "", true).await;
        return Outcome {
            status: 400,
            bytes: 0,
            keep: false,
        };
    }
    let Some(file) = open(shared, &head.target).await else {
        let ok = bare(tcp, shared, 404, "", head.close).await;
        return Outcome {
            status: 404,
            bytes: 0,
            keep: ok && !head.close,
        };
    };
    send_file(shared, tcp, head, file, get).await
}

/// An opened file: the descriptor every byte of the response comes from.
struct Opened {
    fd: Arc<OwnedFd>,
    size: u64,
    mtime: SystemTime,
}

/// Map the target and open it; None for every refusal and every failure
/// alike (the peer learns nothing of why).
async fn open(shared: &Shared, target: &[u8]) -> Option<Opened> {
    let mapped = urlpath::map(target).ok()?;
    let dirs = shared.roots.current().await;
    let opened = tokio::task::spawn_blocking(move || {
        let root = dirs.root(mapped.prefix)?;
        // openat2 beneath the directory, no symlink anywhere, no mount
        // crossed; the type is checked on the held inode before it is
        // opened (no FIFO or device is ever opened), then fstat'ed again.
        let fd = root
            .open_regular(&mapped.rel, rustix::fs::OFlags::RDONLY)
            .ok()?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        Some(Opened {
            fd: Arc::new(OwnedFd::from(file)),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    });
    opened.await.ok().flatten()
}

async fn send_file(
    shared: &Shared,
    tcp: &mut TcpStream,
    head: &Head,
    f: Opened,
    get: bool,
) -> Outcome {
    let cond = Conditions {
        range: head.range.as_deref(),
        if_range: head.if_range.as_deref(),
        if_modified_since: head.if_modified_since.as_deref(),
    };
    let files = reply::file_headers(f.mtime);
    let (status, text, body) = match reply::plan(cond, f.size, f.mtime) {
        Plan::Full => (
            200,
            reply::head(200, f.size, &files, head.close),
            Some((0, f.size)),
        ),
        Plan::Partial { start, len } => {
            let range = format!(
                "{files}Content-Range: bytes {start}-{}/{}\r\n",
                start + len - 1,
                f.size
            );
            (
                206,
                reply::head(206, len, &range, head.close),
                Some((start, len)),
            )
        }
        Plan::NotModified => (
            304,
            reply::head(304, 0, &files, head.close).replace("Content-Length: 0\r\n", ""),
            None,
        ),
        Plan::Unsatisfiable => {
            let range = format!("Content-Range: bytes */{}\r\n", f.size);
            (416, reply::head(416, 0, &range, head.close), None)
        }
    };
    if !write_head(tcp, shared, &text).await {
        return Outcome {
            status,
            bytes: 0,
            keep: false,
        };
    }
    let mut sent = 0;
    let Some((start, len)) = body.filter(|_| get) else {
        return Outcome {
            status,
            bytes: 0,
            keep: !head.close,
        };
    };
    let lim = &shared.limits;
    let res = crate::body::send_range(
        tcp,
        f.fd,
        start,
        len,
        lim.sendfile,
        lim.send_timeout,
        &mut sent,
    )
    .await;
    if let Err(e) = &res {
        tracing::debug!(error = %e, sent, "boot service: body cut short");
    }
    Outcome {
        status,
        bytes: sent,
        keep: res.is_ok() && !head.close,
    }
}

/// A response without a body; false when it could not be written.
async fn bare(tcp: &mut TcpStream, shared: &Shared, status: u16, extra: &str, close: bool) -> bool {
    write_head(tcp, shared, &reply::head(status, 0, extra, close)).await
}

async fn write_head(tcp: &mut TcpStream, shared: &Shared, text: &str) -> bool {
    matches!(
        timeout(shared.limits.send_timeout, tcp.write_all(text.as_bytes())).await,
        Ok(Ok(()))
    )
}
