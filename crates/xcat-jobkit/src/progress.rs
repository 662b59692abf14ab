//! The once-a-second progress ticker of a long job.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use xcat_plugin::Responder;

/// How often a job reports progress.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Awaits `job`, sending the line `render` makes as `sinfo` once a second meanwhile,
/// and returns the job's output as soon as it is ready.
///
/// A client that cannot take progress must not stall the job: a send waiting on a
/// slow client is given up when the job finishes, and a client that is gone cancels
/// `on_gone` (the request's token), since nobody is left to receive the result.
pub async fn with_progress<F: Future>(
    job: F,
    out: &Responder,
    on_gone: &CancellationToken,
    render: impl FnMut() -> String,
) -> F::Output {
    every(PERIOD, job, out, on_gone, render).await
}

async fn every<F: Future>(
    period: Duration,
    job: F,
    out: &Responder,
    on_gone: &CancellationToken,
    mut render: impl FnMut() -> String,
) -> F::Output {
    let mut job = std::pin::pin!(job);
    let mut tick = tokio::time::interval(period);
    // After a slow client send, skip missed ticks instead of bursting lines.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            done = &mut job => return done,
            _ = tick.tick() => {}
        }
        let line = render();
        tokio::select! {
            biased;
            done = &mut job => return done,
            sent = out.sinfo(line) => {
                if sent.is_err() {
                    on_gone.cancel();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn sends_lines_while_the_job_runs_and_returns_its_output() {
        let (out, mut rx) = Responder::channel(64);
        let token = CancellationToken::new();
        let mut n = 0;
        let job = async {
            tokio::time::sleep(FAST * 6).await;
            7
        };
        let got = every(FAST, job, &out, &token, || {
            n += 1;
            format!("tick {n}")
        })
        .await;
        assert_eq!(got, 7);
        drop(out);
        let mut lines = Vec::new();
        while let Some(r) = rx.recv().await {
            lines.extend(r.texts("sinfo").map(str::to_string));
        }
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines[0], "tick 1");
        assert!(!token.is_cancelled());
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_does_not_hold_up_the_result() {
        // Queue of one, never read: the second line waits forever.
        let (out, _rx) = Responder::channel(1);
        let token = CancellationToken::new();
        let job = tokio::time::sleep(FAST * 8);
        let t = std::time::Instant::now();
        every(FAST, job, &out, &token, || "line".into()).await;
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!token.is_cancelled());
    }

    #[tokio::test]
    async fn a_client_that_is_gone_cancels_the_request() {
        let (out, rx) = Responder::channel(4);
        drop(rx);
        let token = CancellationToken::new();
        let watched = token.clone();
        let job = async move { watched.cancelled().await };
        tokio::time::timeout(
            Duration::from_secs(5),
            every(FAST, job, &out, &token, String::new),
        )
        .await
        .expect("the job was not cancelled");
        assert!(token.is_cancelled());
    }
}
