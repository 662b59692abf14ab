//! What every pass of one capture shares, and what it may spend: the image
//! lock (held by each worker until it has really stopped), the bytes it may
//! read from the node, the extraction budget and its wall time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcat_image::budget::Budget;
use xcat_image::publish::ImageLock;
use xcat_image::ExtractOptions;
use xcat_plugin::{CaptureSettings, Context};

use crate::error::CaptureError;

/// The lock and budgets of one capture.
pub struct Job {
    /// The image lock. Every worker (extraction, sysclean, publication) keeps
    /// a clone, so the lock is released only when the last of them has ended,
    /// even if the request itself is dropped before they stop.
    pub hold: Arc<ImageLock>,
    pub allowance: Allowance,
    /// The extraction options every pass starts from (budget, parser limits).
    pub extract: ExtractOptions,
}

impl Job {
    /// `budget`: the configured one, narrowed for this node by the plan.
    pub fn new(lock: ImageLock, settings: &CaptureSettings, budget: Budget) -> Job {
        Job {
            hold: Arc::new(lock),
            allowance: Allowance::new(settings.max_read_bytes),
            extract: ExtractOptions {
                limits: settings.limits.clone(),
                budget,
                ..Default::default()
            },
        }
    }
}

/// The bytes one capture may read from its node, over every pass, counted
/// as received (compressed) and as decoded (the archive): a decompression
/// bomb and a stream of skippable frames both meet the ceiling.
#[derive(Debug, Clone)]
pub struct Allowance {
    pub received: Arc<AtomicU64>,
    pub decoded: Arc<AtomicU64>,
    pub max: u64,
}

impl Allowance {
    pub fn new(max: u64) -> Allowance {
        Allowance {
            received: Arc::default(),
            decoded: Arc::default(),
            max,
        }
    }

    /// Adds `n` to `counter`; false once the total is over the ceiling.
    pub fn spend(&self, counter: &AtomicU64, n: usize) -> bool {
        counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64 <= self.max
    }
}

/// The capture's wall-time ceiling: a child of the request's token that fires
/// when the time is up, so everything that stops on cancellation stops then.
pub struct Deadline {
    pub secs: u64,
    expired: Arc<AtomicBool>,
    timer: JoinHandle<()>,
}

impl Deadline {
    /// The context the capture runs with, and its deadline.
    pub fn start(ctx: &Context, secs: u64) -> (Context, Deadline) {
        let (cancel, deadline) = Deadline::arm(&ctx.cancel, Duration::from_secs(secs));
        let ctx = Context {
            cancel,
            ..ctx.clone()
        };
        (ctx, deadline)
    }

    /// A child of `parent` that is cancelled with it, or by itself after `after`.
    fn arm(parent: &CancellationToken, after: Duration) -> (CancellationToken, Deadline) {
        let cancel = parent.child_token();
        let expired = Arc::new(AtomicBool::new(false));
        let timer = {
            let (cancel, expired) = (cancel.clone(), expired.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                expired.store(true, Ordering::Relaxed);
                cancel.cancel();
            })
        };
        let deadline = Deadline {
            secs: after.as_secs(),
            expired,
            timer,
        };
        (cancel, deadline)
    }

    /// `e`, or the wall-time error when the capture was stopped by the deadline.
    pub fn explain(&self, node: &str, e: CaptureError) -> CaptureError {
        if self.expired.load(Ordering::Relaxed) && matches!(e, CaptureError::Cancelled) {
            return CaptureError::WallTime {
                node: node.to_string(),
                secs: self.secs,
            };
        }
        e
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_stops_the_capture_and_says_why() {
        let parent = CancellationToken::new();
        let (cancel, deadline) = Deadline::arm(&parent, Duration::from_millis(50));
        tokio::time::timeout(Duration::from_secs(10), cancel.cancelled())
            .await
            .expect("the deadline fired");
        assert!(!parent.is_cancelled(), "only the capture is stopped");
        let e = deadline.explain("n1", CaptureError::Cancelled);
        assert!(matches!(e, CaptureError::WallTime { .. }), "{e:?}");
        // another error than the cancellation it caused stays what it is
        let e = deadline.explain("n1", CaptureError::ClientGone);
        assert!(matches!(e, CaptureError::ClientGone), "{e:?}");
    }

    #[tokio::test]
    async fn an_abort_before_the_deadline_stays_an_abort() {
        let parent = CancellationToken::new();
        let (cancel, deadline) = Deadline::arm(&parent, Duration::from_secs(3600));
        parent.cancel();
        tokio::time::timeout(Duration::from_secs(10), cancel.cancelled())
            .await
            .expect("the abort reaches the capture");
        let e = deadline.explain("n1", CaptureError::Cancelled);
        assert!(matches!(e, CaptureError::Cancelled), "{e:?}");
    }

    #[test]
    fn the_allowance_counts_every_pass_against_one_ceiling() {
        let a = Allowance::new(100);
        assert!(a.spend(&a.received, 60));
        let again = a.clone();
        assert!(
            again.spend(&again.received, 40),
            "exactly the ceiling is allowed"
        );
        assert!(!a.spend(&a.received, 1));
        assert!(
            a.spend(&a.decoded, 100),
            "decoded bytes have their own count"
        );
    }
}
