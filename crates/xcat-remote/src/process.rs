//! One ssh process: raw stdout with back-pressure, stderr captured in the
//! background, kill on cancel or drop.

use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::{classify_connect_failure, connection_lost_detail, ErrorContext, RemoteError};
use crate::quote::SESSION_MARKER;
use crate::SshConfig;

/// Bytes of the command's stderr kept for errors and [`crate::Output`]: the
/// last 64 KiB. Older bytes are dropped so a chatty command cannot grow memory.
pub const STDERR_TAIL: usize = 64 * 1024;

/// Longest line handed out by the line splitters; longer lines are cut.
pub const MAX_LINE: usize = 64 * 1024;

/// How a running ssh process ended, as seen by the waiter task.
enum Ended {
    Exited(std::io::Result<ExitStatus>),
    /// We killed it (cancel, timeout, drop).
    Killed,
}

/// What the stderr task saw.
#[derive(Default)]
struct StderrCapture {
    /// The wrapper's marker arrived: the session ran.
    started: bool,
    /// ssh's own messages before the session (bounded).
    ssh_messages: Vec<u8>,
    /// Last [`STDERR_TAIL`] bytes of the command's stderr.
    tail: Vec<u8>,
}

/// A command running on a node.
///
/// Read its output with [`RemoteProcess::take_stdout`]: the bytes come
/// straight from the ssh pipe, so a reader that does not keep up slows the
/// node down (the pipe, ssh's channel window and the node's pipe fill up)
/// instead of buffering here. Dropping the process kills ssh; sshd then ends
/// the session and the remote wrapper kills the command.
pub struct RemoteProcess {
    node: String,
    addr: String,
    config: Arc<SshConfig>,
    stdout: Option<RemoteStdout>,
    ended: oneshot::Receiver<Ended>,
    stderr: JoinHandle<StderrCapture>,
    kill: CancellationToken,
    _kill_on_drop: DropGuard,
}

impl std::fmt::Debug for RemoteProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProcess")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The command's standard output (raw bytes).
#[derive(Debug)]
pub struct RemoteStdout(ChildStdout);

impl AsyncRead for RemoteStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl RemoteProcess {
    /// Start the waiter and stderr tasks for a freshly spawned ssh `child`.
    pub(crate) fn start(
        node: &str,
        addr: &str,
        config: Arc<SshConfig>,
        mut child: Child,
        cancel: CancellationToken,
        stderr_lines: Option<mpsc::Sender<String>>,
    ) -> RemoteProcess {
        let stdout = child.stdout.take().map(RemoteStdout);
        let stderr_pipe = child.stderr.take();
        let kill = cancel;
        let (tx, ended) = oneshot::channel();
        let k = kill.clone();
        tokio::spawn(async move {
            let r = tokio::select! {
                st = child.wait() => Ended::Exited(st),
                _ = k.cancelled() => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    Ended::Killed
                }
            };
            let _ = tx.send(r);
        });
        let stderr = tokio::spawn(async move {
            match stderr_pipe {
                Some(p) => read_stderr(p, stderr_lines).await,
                None => StderrCapture::default(),
            }
        });
        RemoteProcess {
            node: node.to_string(),
            addr: addr.to_string(),
            config,
            stdout,
            ended,
            stderr,
            _kill_on_drop: kill.clone().drop_guard(),
            kill,
        }
    }

    /// The node this process runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The command's stdout; `None` after the first call.
    pub fn take_stdout(&mut self) -> Option<RemoteStdout> {
        self.stdout.take()
    }

    /// Kill ssh now; [`RemoteProcess::wait`] then reports `Cancelled`.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// A token that kills this process when cancelled.
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Wait for the command to finish.
    ///
    /// `Ok(status)`: the command ran; `status.code()` is its exit code (a
    /// command that exits 255 is reported as such, not as an ssh failure).
    /// `Err`: ssh could not run it (unreachable, host key, refused key), the
    /// connection broke, or it was killed (cancel, timeout, [`RemoteProcess::kill`]).
    pub async fn wait(self) -> Result<ExitStatus, RemoteError> {
        self.wait_with_stderr().await.map(|(s, _)| s)
    }

    /// Like [`RemoteProcess::wait`], also returning the tail of the command's stderr.
    pub async fn wait_with_stderr(mut self) -> Result<(ExitStatus, String), RemoteError> {
        let ended = (&mut self.ended).await.unwrap_or(Ended::Killed);
        // ssh has exited, so its stderr pipe is at EOF unless a helper it
        // started (a ControlMaster, a ProxyCommand) still holds it: bound the wait.
        let capture = match tokio::time::timeout(Duration::from_secs(2), &mut self.stderr).await {
            Ok(Ok(c)) => c,
            _ => {
                self.stderr.abort();
                StderrCapture::default()
            }
        };
        let status = match ended {
            Ended::Killed => {
                return Err(RemoteError::Cancelled {
                    node: self.node.clone(),
                })
            }
            Ended::Exited(Err(e)) => {
                return Err(RemoteError::Io {
                    node: self.node.clone(),
                    source: e,
                })
            }
            Ended::Exited(Ok(s)) => s,
        };
        let tail = String::from_utf8_lossy(&capture.tail).into_owned();
        let cx = ErrorContext {
            node: &self.node,
            addr: &self.addr,
            user: &self.config.user,
            identity: self.config.identity.as_deref(),
            known_hosts: &self.config.known_hosts,
        };
        match status.code() {
            Some(255) if !capture.started => Err(classify_connect_failure(
                &cx,
                &String::from_utf8_lossy(&capture.ssh_messages),
            )),
            Some(255) => match connection_lost_detail(&tail) {
                Some(detail) => Err(RemoteError::ConnectionLost {
                    node: self.node.clone(),
                    detail,
                }),
                None => Ok((status, tail)),
            },
            Some(_) => Ok((status, tail)),
            None => Err(RemoteError::Ssh {
                node: self.node.clone(),
                detail: format!("ssh was killed by a signal ({status})"),
            }),
        }
    }
}

/// Append to a buffer that keeps only its last `cap` bytes.
fn push_tail(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    buf.extend_from_slice(data);
    if buf.len() > cap {
        let cut = buf.len() - cap;
        buf.drain(..cut);
    }
}

async fn read_stderr(
    mut pipe: tokio::process::ChildStderr,
    lines: Option<mpsc::Sender<String>>,
) -> StderrCapture {
    let mut cap = StderrCapture::default();
    let mut splitter = lines.map(|tx| (tx, LineSplitter::default()));
    let mut pre: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        let owned;
        if !cap.started {
            pre.extend_from_slice(data);
            match find(&pre, SESSION_MARKER) {
                Some(i) => {
                    cap.started = true;
                    cap.ssh_messages = pre[..i].to_vec();
                    owned = pre.split_off(i + SESSION_MARKER.len());
                    pre.clear();
                    data = &owned;
                }
                None => {
                    // Keep enough to find a marker split across reads, bounded.
                    if pre.len() > STDERR_TAIL + SESSION_MARKER.len() {
                        let cut = pre.len() - STDERR_TAIL;
                        pre.drain(..cut);
                    }
                    continue;
                }
            }
        }
        push_tail(&mut cap.tail, data, STDERR_TAIL);
        if let Some((tx, sp)) = &mut splitter {
            for line in sp.push(data) {
                if tx.send(line).await.is_err() {
                    splitter = None;
                    break;
                }
            }
        }
    }
    if !cap.started {
        cap.ssh_messages = pre;
    }
    if let Some((tx, sp)) = &mut splitter {
        if let Some(l) = sp.finish() {
            let _ = tx.send(l).await;
        }
    }
    cap
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream into lines (without the `\n`), decoding lossily.
/// A line longer than [`MAX_LINE`] is handed out in pieces so memory stays bounded.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; returns the lines completed by them.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..i]);
            out.push(String::from_utf8_lossy(&self.pending).into_owned());
            self.pending.clear();
            data = &data[i + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            out.push(String::from_utf8_lossy(&self.pending).into_owned());
            self.pending = rest;
        }
        out
    }

    /// The last, unterminated line, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            None
        } else {
            let l = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            Some(l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\nde\n\nf"), vec!["abc", "de", ""]);
        assert_eq!(s.finish().as_deref(), Some("f"));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 10];
        let l = s.push(&long);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].len(), MAX_LINE);
        assert_eq!(s.finish().unwrap().len(), 10);
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut b = Vec::new();
        push_tail(&mut b, b"12345", 4);
        assert_eq!(b, b"2345");
        push_tail(&mut b, b"67", 4);
        assert_eq!(b, b"4567");
    }
}
