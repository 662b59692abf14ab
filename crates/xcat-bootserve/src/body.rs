//! Sending a byte range of an open file to the peer, in bounded pieces:
//! memory does not depend on the file's size, and a peer that stops
//! reading is dropped after `send_timeout` without progress.
//!
//! The file is the descriptor opened once for the request, so a file
//! renamed over its path meanwhile does not change what this response
//! sends: the old inode is sent to its end.
//!
//! `sendfile(2)` (zero-copy, from the page cache to the socket) on the
//! non-blocking socket: each call sends what the socket buffer takes, so a
//! slow reader costs a descriptor and no thread. Where the kernel refuses
//! sendfile for the file (`EINVAL`, `ENOSYS`), or when it is turned off,
//! the range is read with `pread` on the blocking pool into one buffer per
//! response and written out.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Most bytes one sendfile call is asked for: the socket buffer limits it
/// anyway; this bounds how long one call can keep a worker thread.
const SENDFILE_CHUNK: usize = 4 << 20;

/// The buffer of the pread path.
const COPY_CHUNK: usize = 256 << 10;

/// Why a body was cut short (the connection is then closed).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the peer read nothing for {0:?}")]
    Stalled(Duration),
    #[error("the file became shorter while being sent")]
    Shrunk,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Send `len` bytes of `file` from `start`; returns the bytes sent (the
/// count is kept up to date in `sent` for the access log even on error).
pub async fn send_range(
    tcp: &mut TcpStream,
    file: Arc<OwnedFd>,
    start: u64,
    len: u64,
    use_sendfile: bool,
    send_timeout: Duration,
    sent: &mut u64,
) -> Result<(), SendError> {
    let mut off = start;
    let end = start + len;
    if use_sendfile {
        match sendfile_loop(tcp, &file, &mut off, end, send_timeout, sent).await {
            Err(SendError::Io(e)) if *sent == 0 && unsupported(&e) => {}
            other => return other,
        }
    }
    copy_loop(tcp, file, off, end, send_timeout, sent).await
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

async fn sendfile_loop(
    tcp: &mut TcpStream,
    file: &OwnedFd,
    off: &mut u64,
    end: u64,
    send_timeout: Duration,
    sent: &mut u64,
) -> Result<(), SendError> {
    while *off < end {
        let want = (end - *off).min(SENDFILE_CHUNK as u64) as usize;
        let res = tcp.try_io(Interest::WRITABLE, || {
            let mut pos = *off;
            match rustix::fs::sendfile(&*tcp, file, Some(&mut pos), want) {
                Ok(n) => Ok(n),
                Err(Errno::AGAIN) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e.into()),
            }
        });
        match res {
            Ok(0) => return Err(SendError::Shrunk),
            Ok(n) => {
                *off += n as u64;
                *sent += n as u64;
                // A peer fast enough never to fill the socket buffer would
                // otherwise keep this worker to itself.
                tokio::task::consume_budget().await;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match timeout(send_timeout, tcp.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(SendError::Stalled(send_timeout)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn copy_loop(
    tcp: &mut TcpStream,
    file: Arc<OwnedFd>,
    mut off: u64,
    end: u64,
    send_timeout: Duration,
    sent: &mut u64,
) -> Result<(), SendError> {
    let mut buf = vec![0u8; COPY_CHUNK];
    while off < end {
        let want = (end - off).min(COPY_CHUNK as u64) as usize;
        let f = file.clone();
        let (b, n) = tokio::task::spawn_blocking(move || {
            let n = rustix::io::pread(&*f, &mut buf[..want], off);
            (buf, n)
        })
        .await
        .map_err(io::Error::other)?;
        buf = b;
        let n = n.map_err(io::Error::from)?;
        if n == 0 {
            return Err(SendError::Shrunk);
        }
        match timeout(send_timeout, tcp.write_all(&buf[..n])).await {
            Ok(r) => r?,
            Err(_) => return Err(SendError::Stalled(send_timeout)),
        }
        off += n as u64;
        *sent += n as u64;
    }
    Ok(())
}
