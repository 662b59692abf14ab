//! One node-side archive streamed into the staging tree: the ssh process,
//! the decoder, the safe extractor, the node's stderr, and the verdict on
//! how it all ended. Used by the capture stream and by the re-read of files
//! that changed while they were read.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use xcat_image::budget::Budget;
use xcat_image::tar::TarError;
use xcat_image::{extract_async, ExtractError, ExtractOptions, ExtractSummary, Progress};
use xcat_plugin::Context;
use xcat_remote::{Remote, RemoteError, RemoteProcess};

use crate::churn::{status_text, NodeFailure, NodeStderr};
use crate::error::CaptureError;
use crate::pipeline::{self, Wire};

/// How long ssh may take to exit once the stream has ended.
const NODE_EXIT_GRACE: Duration = Duration::from_secs(10);

/// Counts bytes as they pass (transferred bytes, before decompression).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

type Extraction = Result<Result<ExtractSummary, ExtractError>, JoinError>;

/// An archive on its way from the node into `staging`.
pub struct Running {
    node: String,
    image_dir: PathBuf,
    proc: RemoteProcess,
    stderr: JoinHandle<NodeStderr>,
    /// The extraction task; poll it to learn when the stream ended.
    pub extraction: JoinHandle<Result<ExtractSummary, ExtractError>>,
    /// Bytes received from ssh so far.
    pub transferred: Arc<AtomicU64>,
    /// Archive bytes and entries extracted so far.
    pub progress: Progress,
}

async fn collect_stderr(mut rx: mpsc::Receiver<String>) -> NodeStderr {
    let mut s = NodeStderr::default();
    while let Some(line) = rx.recv().await {
        s.add(&line);
    }
    s
}

/// Start `script` on the node and extract its stdout into `staging`, within
/// `budget` ([`crate::plan::Plan::budget`]).
pub fn start(
    ctx: &Context,
    (node, addr): (&str, &str),
    script: &str,
    wire: Wire,
    (staging, image_dir): (&Path, &Path),
    budget: Budget,
) -> Result<Running, CaptureError> {
    let remote = Remote::new(ctx.settings.ssh.clone()).with_cancel(ctx.cancel.clone());
    let (err_tx, err_rx) = mpsc::channel(256);
    let mut proc =
        remote.spawn_with_stderr_lines(node, addr, &pipeline::command(script), err_tx)?;
    let stderr = tokio::spawn(collect_stderr(err_rx));
    let stdout = proc.take_stdout().ok_or(CaptureError::NoStdout)?;
    let transferred = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: stdout,
        count: transferred.clone(),
    };
    let reader: Box<dyn AsyncRead + Unpin + Send> = match wire {
        Wire::None => Box::new(counted),
        Wire::Zstd => Box::new(async_compression::tokio::bufread::ZstdDecoder::new(
            BufReader::new(counted),
        )),
        Wire::Gzip => Box::new(async_compression::tokio::bufread::GzipDecoder::new(
            BufReader::new(counted),
        )),
    };
    let progress = Progress::default();
    let opts = ExtractOptions {
        progress: Some(progress.clone()),
        budget,
        ..Default::default()
    };
    let extraction = tokio::spawn(extract_async(reader, staging.to_path_buf(), opts));
    Ok(Running {
        node: node.to_string(),
        image_dir: image_dir.to_path_buf(),
        proc,
        stderr,
        extraction,
        transferred,
        progress,
    })
}

/// What an archive run produced once everything has ended.
pub struct Finished {
    pub summary: ExtractSummary,
    pub node_err: NodeStderr,
    pub transferred: u64,
}

/// How ssh ended: `Ok(None)` when it lingered past the grace period.
type Waited = Result<Option<ExitStatus>, RemoteError>;

impl Running {
    /// Wait for the node side once `extracted` (the extraction task's result)
    /// is in, and judge the whole run.
    pub async fn finish(
        self,
        extracted: Extraction,
        ctx: &Context,
    ) -> Result<Finished, CaptureError> {
        let extracted = extracted.map_err(CaptureError::ExtractionTask)?;
        // A stream that merely ended early or broke in transport (node died, link
        // cut, node-side tar failed) is best explained by the node's side: let ssh
        // finish and look at its status first. Any other extraction failure (a
        // refused entry, a malformed archive, the image filesystem full) is ours:
        // stop the node side at once and report the extraction error.
        let extracted = match extracted {
            Err(e)
                if !matches!(
                    e,
                    ExtractError::Archive(TarError::Truncated { .. } | TarError::Io { .. })
                ) =>
            {
                self.proc.kill();
                return Err(CaptureError::extraction(&self.node, &self.image_dir, e));
            }
            other => other,
        };
        let kill = self.proc.kill_token();
        let waited: Waited = match tokio::time::timeout(NODE_EXIT_GRACE, self.proc.wait()).await {
            Ok(Ok(st)) => Ok(Some(st)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                kill.cancel();
                Ok(None)
            }
        };
        let node_err = self.stderr.await.unwrap_or_default();
        CaptureError::check_cancelled(ctx)?;
        let judge = Judge {
            node: &self.node,
            node_err: &node_err,
        };
        judge.ssh(waited)?;
        let summary =
            extracted.map_err(|e| CaptureError::extraction(&self.node, &self.image_dir, e))?;
        if let Some(f) = node_err.failure() {
            return Err(judge.node_failed(&f));
        }
        Ok(Finished {
            summary,
            transferred: self.transferred.load(Ordering::Relaxed),
            node_err,
        })
    }
}

/// Turns how the node side ended into the one error the admin reads.
struct Judge<'a> {
    node: &'a str,
    node_err: &'a NodeStderr,
}

impl Judge<'_> {
    fn ssh(&self, waited: Waited) -> Result<(), CaptureError> {
        let node = self.node.to_string();
        match waited {
            Err(e) => Err(CaptureError::Ssh {
                node,
                source: Box::new(e),
            }),
            Ok(None) => Err(CaptureError::SshLingered {
                node,
                secs: NODE_EXIT_GRACE.as_secs(),
            }),
            Ok(Some(st)) if !st.success() => Err(self.node_failed(&self.exit_failure(st))),
            Ok(Some(_)) if self.node_err.status.is_none() => {
                Err(CaptureError::NoFinalStatus { node })
            }
            Ok(Some(_)) => Ok(()),
        }
    }

    /// Why ssh exited with a failure: the stage that failed when the node
    /// reported its statuses, else what ssh's own status means.
    fn exit_failure(&self, st: ExitStatus) -> NodeFailure {
        let node = self.node;
        let why = match (&self.node_err.status, st.code()) {
            (Some(s), _) => {
                return self.node_err.failure().unwrap_or(NodeFailure {
                    why: status_text(s),
                    detail: None,
                })
            }
            (None, Some(255)) => format!(
                "ssh exit 255: the connection to {node} was lost (node down, sshd killed or \
                 network cut); check that {node} is up and reachable, then retry"
            ),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "ssh killed by a signal".into(),
        };
        NodeFailure { why, detail: None }
    }

    fn node_failed(&self, f: &NodeFailure) -> CaptureError {
        // The read errors name what failed; otherwise the last messages the
        // node printed are the best clue.
        let detail = f.detail.clone().unwrap_or_else(|| {
            let w = &self.node_err.warnings;
            w[w.len().saturating_sub(3)..].join("; ")
        });
        CaptureError::NodeFailed {
            node: self.node.to_string(),
            why: f.why.clone(),
            detail,
        }
    }
}
