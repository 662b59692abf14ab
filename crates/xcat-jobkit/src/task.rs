//! Blocking work from async handlers: running it off the runtime, and telling it
//! to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcat_plugin::HandlerError;

/// A blocking task panicked or was aborted: a bug, not something the admin can fix,
/// hence the plain wording.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub struct TaskFailed(#[from] pub tokio::task::JoinError);

impl From<TaskFailed> for HandlerError {
    fn from(e: TaskFailed) -> Self {
        HandlerError::Failed(e.to_string())
    }
}

/// Runs `f` on the blocking pool (filesystem walks, compression, copies) so the
/// runtime's threads stay free for other requests, and waits for its result.
pub async fn blocking<T, F>(f: F) -> Result<T, TaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// The request's cancellation token as the flag blocking code polls
/// (`xcat_image` walks and packers take `&AtomicBool`).
///
/// The flag is also set when the bridge is dropped: a blocking task outlives the
/// handler future that started it, and must stop when that future is gone (an
/// early error return, or the daemon aborting a handler that ignored cancellation).
#[derive(Debug)]
pub struct CancelBridge {
    flag: Arc<AtomicBool>,
    watcher: JoinHandle<()>,
}

impl CancelBridge {
    /// Starts following `token`. Needs a Tokio runtime.
    pub fn new(token: &CancellationToken) -> CancelBridge {
        let flag = Arc::new(AtomicBool::new(token.is_cancelled()));
        let watcher = {
            let (token, flag) = (token.clone(), flag.clone());
            tokio::spawn(async move {
                token.cancelled().await;
                flag.store(true, Ordering::Relaxed);
            })
        };
        CancelBridge { flag, watcher }
    }

    /// The flag, to move into a blocking task.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Whether blocking work has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

impl Drop for CancelBridge {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        // Otherwise the watcher waits for a token that may never fire.
        self.watcher.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn blocking_returns_the_value_and_reports_a_panic() {
        assert_eq!(blocking(|| 6 * 7).await.unwrap(), 42);
        let e = blocking(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(e.to_string().starts_with("internal error: "), "{e}");
        assert!(
            matches!(HandlerError::from(e), HandlerError::Failed(m) if m.starts_with("internal error: "))
        );
    }

    async fn until_set(flag: &AtomicBool) {
        for _ in 0..200 {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the flag was never set");
    }

    #[tokio::test]
    async fn the_flag_follows_the_token() {
        let token = CancellationToken::new();
        let bridge = CancelBridge::new(&token);
        let flag = bridge.flag();
        assert!(!bridge.is_cancelled());
        token.cancel();
        until_set(&flag).await;
        assert!(bridge.is_cancelled());
        let already = CancelBridge::new(&token);
        assert!(already.is_cancelled());
    }

    #[tokio::test]
    async fn dropping_the_bridge_stops_blocking_work() {
        let token = CancellationToken::new();
        let bridge = CancelBridge::new(&token);
        let flag = bridge.flag();
        let work = tokio::task::spawn_blocking(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        drop(bridge);
        tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .expect("the blocking work did not stop")
            .unwrap();
        assert!(!token.is_cancelled(), "the request itself is not cancelled");
    }
}
