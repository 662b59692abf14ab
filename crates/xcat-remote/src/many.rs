//! Fan-out: one command on many nodes, at most `fanout` ssh processes at once.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Semaphore};

use crate::process::LineSplitter;
use crate::{Output, Remote, RemoteError};

/// A node and the address to reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub addr: String,
}

impl Target {
    pub fn new(node: impl Into<String>, addr: impl Into<String>) -> Target {
        Target {
            node: node.into(),
            addr: addr.into(),
        }
    }
}

/// What [`Remote::stream_many`] reports, in arrival order.
#[derive(Debug)]
pub enum NodeEvent {
    /// One line of the command's stdout (without the newline).
    Stdout { node: String, line: String },
    /// One line of the command's stderr.
    Stderr { node: String, line: String },
    /// The node is finished: exit status, or why it could not run.
    Done {
        node: String,
        result: Result<std::process::ExitStatus, RemoteError>,
    },
}

/// Buffered events between the node tasks and the consumer; when full, nodes
/// wait (their pipes fill) instead of memory growing.
const EVENT_QUEUE: usize = 256;

impl Remote {
    /// Run `command` on every target, at most `fanout` at once (None: the
    /// configured fan-out). Results come in completion order. The stream is
    /// lazy: nothing runs until it is polled.
    pub fn run_many(
        &self,
        targets: Vec<Target>,
        command: &str,
        fanout: Option<usize>,
        timeout: Option<Duration>,
    ) -> impl Stream<Item = (Target, Result<Output, RemoteError>)> + Send + 'static {
        let remote = self.clone();
        let command = command.to_string();
        let fanout = self.effective_fanout(fanout);
        futures::stream::iter(targets)
            .map(move |t| {
                let remote = remote.clone();
                let command = command.clone();
                async move {
                    let r = remote.run(&t.node, &t.addr, &command, timeout).await;
                    (t, r)
                }
            })
            .buffer_unordered(fanout)
    }

    /// Run `command` on every target, at most `fanout` at once, streaming
    /// output lines as they arrive and one `Done` per target. The channel
    /// closes after the last `Done`. Dropping the receiver stops everything.
    /// `timeout` applies to each node's run.
    pub fn stream_many(
        &self,
        targets: Vec<Target>,
        command: &str,
        fanout: Option<usize>,
        timeout: Option<Duration>,
    ) -> mpsc::Receiver<NodeEvent> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let sem = Arc::new(Semaphore::new(self.effective_fanout(fanout)));
        let remote = self.clone();
        let command = command.to_string();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for t in targets {
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = tx.closed() => break,
                };
                let remote = remote.clone();
                let command = command.clone();
                let tx = tx.clone();
                tasks.spawn(async move {
                    let result = run_streaming(&remote, &t, &command, timeout, &tx).await;
                    drop(permit);
                    let _ = tx
                        .send(NodeEvent::Done {
                            node: t.node.clone(),
                            result,
                        })
                        .await;
                });
                // Reap finished tasks as we go so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        });
        rx
    }
}

async fn run_streaming(
    remote: &Remote,
    t: &Target,
    command: &str,
    timeout: Option<Duration>,
    tx: &mpsc::Sender<NodeEvent>,
) -> Result<std::process::ExitStatus, RemoteError> {
    let (etx, mut erx) = mpsc::channel::<String>(64);
    let mut p = remote.spawn_with_stderr_lines(&t.node, &t.addr, command, etx)?;
    let kill = p.kill_token();
    let mut stdout = p.take_stdout();
    let node = t.node.clone();
    let pump = async {
        let mut split = LineSplitter::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut out_open = stdout.is_some();
        let mut err_open = true;
        while out_open || err_open {
            tokio::select! {
                r = async { stdout.as_mut().expect("open").read(&mut buf).await }, if out_open => {
                    match r {
                        Ok(0) | Err(_) => {
                            out_open = false;
                            if let Some(l) = split.finish() {
                                tx.send(NodeEvent::Stdout { node: node.clone(), line: l }).await.map_err(|_| ())?;
                            }
                        }
                        Ok(n) => {
                            for l in split.push(&buf[..n]) {
                                tx.send(NodeEvent::Stdout { node: node.clone(), line: l }).await.map_err(|_| ())?;
                            }
                        }
                    }
                }
                l = erx.recv(), if err_open => match l {
                    Some(line) => tx.send(NodeEvent::Stderr { node: node.clone(), line }).await.map_err(|_| ())?,
                    None => err_open = false,
                },
            }
        }
        Ok::<(), ()>(())
    };
    let pumped = match timeout {
        None => pump.await,
        Some(d) => match tokio::time::timeout(d, pump).await {
            Ok(r) => r,
            Err(_) => {
                kill.cancel();
                return Err(RemoteError::Timeout {
                    node: t.node.clone(),
                    after: d,
                });
            }
        },
    };
    if pumped.is_err() {
        // The consumer went away: stop the command.
        kill.cancel();
    }
    p.wait().await
}
