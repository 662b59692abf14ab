//! Commands that exist only to test the daemon's machinery end to end.
//! Registered only when the configuration sets `enable_test_commands`.
//!
//! * `teststream N` — N `data` responses numbered 0..N.
//! * `testsleep SECS [MARKER]` — waits, observing cancellation; on cancel it
//!   writes `cleaned-up` to MARKER (so tests can see cleanup ran).
//! * `testsub N` — runs `teststream N` as a sub-request, forwards it, then says `after`.
//! * `testcodes C...` — one error response per errorcode C.
//! * `testpanic` — panics (the daemon must answer with an error, not die).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Request, Responder,
};

pub struct TestCommands;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(TestCommands)]
}

fn count_arg(req: &HandlerRequest) -> Result<u64, HandlerError> {
    req.args()
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| HandlerError::Usage(format!("Usage: {} <count>", req.command())))
}

#[async_trait]
impl Handler for TestCommands {
    fn commands(&self) -> &'static [&'static str] {
        &[
            "teststream",
            "testsleep",
            "testsub",
            "testcodes",
            "testpanic",
        ]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        match req.command() {
            "teststream" => {
                for i in 0..count_arg(&req)? {
                    ctx.check_cancelled()?;
                    out.data(format!("line {i}")).await?;
                }
                Ok(())
            }
            "testsleep" => {
                let secs = count_arg(&req)?;
                let marker = req.args().get(1).cloned();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => {
                        out.data("slept").await?;
                        Ok(())
                    }
                    _ = ctx.cancel.cancelled() => {
                        if let Some(m) = marker {
                            std::fs::write(&m, "cleaned-up")
                                .map_err(|e| HandlerError::Failed(format!("cannot write {m}: {e}")))?;
                        }
                        Err(HandlerError::Cancelled)
                    }
                }
            }
            "testsub" => {
                let n = count_arg(&req)?;
                out.data("before").await?;
                let sub = ctx.sub_request(Request::new("teststream", vec![n.to_string()]));
                let code = sub.forward(&out).await?;
                out.data(format!("after (sub-request errorcode {code})"))
                    .await?;
                Ok(())
            }
            "testcodes" => {
                for c in req.args() {
                    let code: i32 = c.parse().map_err(|_| {
                        HandlerError::Usage("Usage: testcodes <errorcode>...".into())
                    })?;
                    out.send(xcat_plugin::Response::error_code(
                        format!("code {code}"),
                        code,
                    ))
                    .await?;
                }
                Ok(())
            }
            "testpanic" => panic!("testpanic was asked to panic"),
            other => Err(HandlerError::Failed(format!("unexpected command {other}"))),
        }
    }
}
