//! One node-side archive streamed into the staging tree: the ssh process,
//! the decoder, the safe extractor, the node's stderr, and the verdict on
//! how it all ended. Used by the capture stream and by the re-read of files
//! that changed while they were read.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use xcat_image::publish::ImageLock;
use xcat_image::tar::TarError;
use xcat_image::{extract_async, ExtractError, ExtractOptions, ExtractSummary, Progress};
use xcat_plugin::Context;
use xcat_remote::{Remote, RemoteError, RemoteProcess};

use crate::churn::{status_text, NodeFailure, NodeStderr};
use crate::error::CaptureError;
use crate::job::{Allowance, Job};
use crate::pipeline::{self, Wire};

/// Where the node is, where its tree lands, and the capture it belongs to.
pub struct Site<'a> {
    pub node: &'a str,
    pub addr: &'a str,
    pub staging: &'a Path,
    pub image_dir: &'a Path,
    pub job: &'a Job,
}

/// How long ssh may take to exit once the stream has ended.
const NODE_EXIT_GRACE: Duration = Duration::from_secs(10);

/// Why the daemon cut a stream short (rather than the node ending it).
#[derive(Debug, Clone)]
pub enum Cut {
    /// The capture read more than `max_read_bytes` from the node.
    Budget { limit: u64 },
    /// The decoder refused the stream while the node was still sending.
    Decode(String),
}

/// Per stream: where the raw stream stands and whether the daemon cut it.
#[derive(Debug, Default)]
struct Watch {
    raw_ended: AtomicBool,
    cut: OnceLock<Cut>,
}

/// Which side of the transport decoder a [`Metered`] reader sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The raw stream from ssh.
    Received,
    /// The decoded archive.
    Decoded,
}

/// Counts the bytes passing on one side of the decoder against the capture's
/// allowance; on the decoded side, tells a decoder's refusal (the node still
/// sending) from a stream the node cut.
struct Metered<R> {
    inner: R,
    side: Side,
    allowance: Allowance,
    watch: Arc<Watch>,
    /// Also counted here (the report's transferred bytes).
    transferred: Option<Arc<AtomicU64>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Metered<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        let n = buf.filled().len() - before;
        let this = &*self;
        // A reader that fails has read nothing (a decoder may have filled some).
        if let Err(e) = &r {
            buf.set_filled(before);
            if this.side == Side::Decoded && !this.watch.raw_ended.load(Ordering::Relaxed) {
                let _ = this.watch.cut.set(Cut::Decode(e.to_string()));
            }
            return Poll::Ready(r);
        }
        if this.side == Side::Received && n == 0 {
            this.watch.raw_ended.store(true, Ordering::Relaxed);
        }
        if let Some(t) = &this.transferred {
            t.fetch_add(n as u64, Ordering::Relaxed);
        }
        let counter = match this.side {
            Side::Received => &this.allowance.received,
            Side::Decoded => &this.allowance.decoded,
        };
        if !this.allowance.spend(counter, n) {
            let limit = this.allowance.max;
            let _ = this.watch.cut.set(Cut::Budget { limit });
            buf.set_filled(before);
            return Poll::Ready(Err(std::io::Error::other(
                "the capture's byte budget is spent",
            )));
        }
        Poll::Ready(r)
    }
}

/// The transport decoder for `wire` over `raw`. zstd's window is capped
/// ([`pipeline::ZSTD_WINDOW_LOG_MAX`]): the decoder allocates the window the
/// stream declares, and the node is asked for far less.
fn decoder(
    wire: Wire,
    raw: impl AsyncRead + Unpin + Send + 'static,
) -> Box<dyn AsyncRead + Unpin + Send> {
    use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
    use async_compression::zstd::DParameter;
    match wire {
        Wire::None => Box::new(raw),
        Wire::Zstd => Box::new(ZstdDecoder::with_params(
            BufReader::new(raw),
            &[DParameter::window_log_max(pipeline::ZSTD_WINDOW_LOG_MAX)],
        )),
        Wire::Gzip => Box::new(GzipDecoder::new(BufReader::new(raw))),
    }
}

/// Extracts `reader` into `staging` on its own task, which keeps `hold` (the
/// image lock) until the extractor has really stopped.
fn spawn_extraction(
    reader: impl AsyncRead + Unpin + Send + 'static,
    staging: &Path,
    opts: ExtractOptions,
    hold: Arc<ImageLock>,
) -> JoinHandle<Result<ExtractSummary, ExtractError>> {
    let staging = staging.to_path_buf();
    tokio::spawn(async move {
        let done = extract_async(reader, staging, opts).await;
        drop(hold);
        done
    })
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
    watch: Arc<Watch>,
}

async fn collect_stderr(mut rx: mpsc::Receiver<String>) -> NodeStderr {
    let mut s = NodeStderr::default();
    while let Some(line) = rx.recv().await {
        s.add(&line);
    }
    s
}

/// Start `script` on the node and extract its stdout into `site.staging`.
pub fn start(
    ctx: &Context,
    site: &Site<'_>,
    script: &str,
    wire: Wire,
) -> Result<Running, CaptureError> {
    let remote = Remote::new(ctx.settings.ssh.clone()).with_cancel(ctx.cancel.clone());
    let (err_tx, err_rx) = mpsc::channel(256);
    let mut proc =
        remote.spawn_with_stderr_lines(site.node, site.addr, &pipeline::command(script), err_tx)?;
    let stderr = tokio::spawn(collect_stderr(err_rx));
    let stdout = proc.take_stdout().ok_or(CaptureError::NoStdout)?;
    let transferred = Arc::new(AtomicU64::new(0));
    let watch = Arc::new(Watch::default());
    let allowance = site.job.allowance.clone();
    let raw = Metered {
        inner: stdout,
        side: Side::Received,
        allowance: allowance.clone(),
        watch: watch.clone(),
        transferred: Some(transferred.clone()),
    };
    let reader = Metered {
        inner: decoder(wire, raw),
        side: Side::Decoded,
        allowance,
        watch: watch.clone(),
        transferred: None,
    };
    let progress = Progress::default();
    let opts = ExtractOptions {
        progress: Some(progress.clone()),
        ..site.job.extract.clone()
    };
    let extraction = spawn_extraction(reader, site.staging, opts, site.job.hold.clone());
    Ok(Running {
        node: site.node.to_string(),
        image_dir: site.image_dir.to_path_buf(),
        proc,
        stderr,
        extraction,
        transferred,
        progress,
        watch,
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
        // The daemon's own refusal (budget, decoder) is the reason, whatever
        // the extractor made of the stream it cut.
        if let Some(cut) = self.watch.cut.get() {
            self.proc.kill();
            return Err(CaptureError::cut(&self.node, cut));
        }
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
        if let Some(why) = &self.node_err.fail {
            return NodeFailure {
                why: why.clone(),
                detail: None,
            };
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// 4 MiB that zstd cannot shrink much (so a long window would be used).
    fn payload() -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect()
    }

    /// `data` compressed as a stream of unknown size (as the node's pipe is).
    fn zstd(data: &[u8], level: i32, window_log: Option<u32>) -> Vec<u8> {
        let mut e = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
        if let Some(w) = window_log {
            e.long_distance_matching(true).unwrap();
            e.window_log(w).unwrap();
        }
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    /// Decodes `stream` as a capture does; the bytes, or the cut.
    async fn decode(stream: Vec<u8>, max: u64) -> Result<Vec<u8>, Cut> {
        let watch = Arc::new(Watch::default());
        let allowance = Allowance::new(max);
        let raw = Metered {
            inner: std::io::Cursor::new(stream),
            side: Side::Received,
            allowance: allowance.clone(),
            watch: watch.clone(),
            transferred: None,
        };
        let mut r = Metered {
            inner: decoder(Wire::Zstd, raw),
            side: Side::Decoded,
            allowance,
            watch: watch.clone(),
            transferred: None,
        };
        let mut out = Vec::new();
        match r.read_to_end(&mut out).await {
            Ok(_) => Ok(out),
            Err(e) => Err(watch
                .cut
                .get()
                .cloned()
                .unwrap_or(Cut::Decode(e.to_string()))),
        }
    }

    #[tokio::test]
    async fn a_zstd_window_over_the_cap_is_refused() {
        let data = payload();
        // What the node is asked for decodes.
        let ok = decode(zstd(&data, 1, None), u64::MAX).await.unwrap();
        assert!(ok == data);
        // zstd --long=27: a 128 MiB window, refused before it is allocated.
        let long = zstd(&data, 1, Some(27));
        match decode(long, u64::MAX).await {
            Err(Cut::Decode(why)) => assert!(why.contains("memory"), "{why}"),
            other => panic!("a 2^27 window was accepted: {:?}", other.map(|v| v.len())),
        }
    }

    #[tokio::test]
    async fn the_byte_budget_stops_a_stream_received_or_decoded() {
        let data = b"a compressible archive ".repeat(1 << 17);
        let packed = zstd(&data, 1, None);
        assert!(decode(packed.clone(), data.len() as u64).await.is_ok());
        // Under the compressed size: cut while receiving.
        let small = packed.len() as u64 / 2;
        assert!(
            matches!(decode(packed.clone(), small).await, Err(Cut::Budget { limit }) if limit == small)
        );
        // Over the compressed size but under the decoded one: cut while decoding.
        let mid = data.len() as u64 / 2;
        assert!(packed.len() < data.len() / 2, "the payload compresses");
        assert!(matches!(decode(packed, mid).await, Err(Cut::Budget { limit }) if limit == mid));
    }

    #[tokio::test]
    async fn the_image_lock_is_held_until_the_extraction_worker_stops() {
        let t = tempfile::tempdir().unwrap();
        let (dir, staging) = (t.path().join("img"), t.path().join("staging"));
        std::fs::create_dir(&staging).unwrap();
        let lock = xcat_jobkit::lock_image(&dir, "img", "capimage of n1").unwrap();
        let (mut node, reader) = tokio::io::duplex(64 * 1024);
        let worker = spawn_extraction(reader, &staging, ExtractOptions::default(), Arc::new(lock));
        node.write_all(&[0u8; 512]).await.unwrap();
        // The request is gone (aborted): its handle and its lock are dropped,
        // while the worker still reads the node's stream.
        drop(worker);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let e = xcat_jobkit::lock_image(&dir, "img", "capimage of n1 again").unwrap_err();
        assert!(e.to_string().contains("is busy: capimage of n1"), "{e}");
        // The stream ends: the worker stops, and only then is the image free.
        drop(node);
        let start = Instant::now();
        while xcat_jobkit::lock_image(&dir, "img", "second").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the lock was never released"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
