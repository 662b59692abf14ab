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

use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Request, Responder,
};

pub struct TestCommands;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(TestCommands)]
}

const STREAM: Syntax = Syntax::new("teststream", "Usage: teststream <count>");
const SLEEP: Syntax = Syntax::new("testsleep", "Usage: testsleep <seconds> [marker]");
const SUB: Syntax = Syntax::new("testsub", "Usage: testsub <count>");
const CODES: Syntax = Syntax::new("testcodes", "Usage: testcodes <errorcode>...");
const PANIC: Syntax = Syntax::new("testpanic", "Usage: testpanic");

/// `teststream N`, `testsub N`.
#[derive(Debug, clap::Parser)]
struct Count {
    #[arg(value_parser = count)]
    count: Option<u64>,
}

/// `testsleep SECS [MARKER]`.
#[derive(Debug, clap::Parser)]
struct Sleep {
    #[arg(value_parser = count)]
    seconds: Option<u64>,
    /// Written with `cleaned-up` when the sleep is cancelled.
    marker: Option<String>,
}

/// `testcodes C...`.
#[derive(Debug, clap::Parser)]
struct Codes {
    #[arg(value_parser = errorcode, allow_negative_numbers = true)]
    codes: Vec<i32>,
}

/// `testpanic`: no arguments.
#[derive(Debug, clap::Parser)]
struct Nothing {}

fn count(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("not a count: {v:?}"))
}

fn errorcode(v: &str) -> Result<i32, String> {
    v.parse().map_err(|_| format!("not an errorcode: {v:?}"))
}

/// The count of a command that needs one.
fn needed(syntax: &Syntax, n: Option<u64>) -> Result<u64, HandlerError> {
    n.ok_or_else(|| syntax.error(format!("{} needs a number", syntax.name)))
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
        let args = req.args();
        match req.command() {
            "teststream" => {
                let Some(a) = STREAM.read::<Count>(args, &out).await? else {
                    return Ok(());
                };
                stream(needed(&STREAM, a.count)?, &ctx, &out).await
            }
            "testsleep" => {
                let Some(a) = SLEEP.read::<Sleep>(args, &out).await? else {
                    return Ok(());
                };
                sleep(needed(&SLEEP, a.seconds)?, a.marker, &ctx, &out).await
            }
            "testsub" => {
                let Some(a) = SUB.read::<Count>(args, &out).await? else {
                    return Ok(());
                };
                sub(needed(&SUB, a.count)?, &ctx, &out).await
            }
            "testcodes" => {
                let Some(a) = CODES.read::<Codes>(args, &out).await? else {
                    return Ok(());
                };
                for code in a.codes {
                    let r = xcat_plugin::Response::error_code(format!("code {code}"), code);
                    out.send(r).await?;
                }
                Ok(())
            }
            "testpanic" => {
                if PANIC.read::<Nothing>(args, &out).await?.is_some() {
                    panic!("testpanic was asked to panic");
                }
                Ok(())
            }
            other => Err(HandlerError::Failed(format!("unexpected command {other}"))),
        }
    }
}

/// N `data` responses numbered 0..N.
async fn stream(n: u64, ctx: &Context, out: &Responder) -> HandlerResult {
    for i in 0..n {
        ctx.check_cancelled()?;
        out.data(format!("line {i}")).await?;
    }
    Ok(())
}

/// Waits, observing cancellation; on cancel writes `cleaned-up` to `marker`.
async fn sleep(secs: u64, marker: Option<String>, ctx: &Context, out: &Responder) -> HandlerResult {
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

/// `teststream n` as a sub-request between `before` and `after`.
async fn sub(n: u64, ctx: &Context, out: &Responder) -> HandlerResult {
    out.data("before").await?;
    let sub = ctx.sub_request(Request::new("teststream", vec![n.to_string()]));
    let code = sub.forward(out).await?;
    out.data(format!("after (sub-request errorcode {code})"))
        .await?;
    Ok(())
}
