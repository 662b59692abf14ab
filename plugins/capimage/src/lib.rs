//! `capimage`: capture a running diskful node into a netboot image.
//!
//! Phases, each cancellable (client abort, disconnect, daemon shutdown):
//! 1. preflight over one ssh round trip ([`preflight`]);
//! 2. the exclusion list ([`exlist`]);
//! 3. the capture stream: `find | tar` on the node ([`pipeline`]), optional
//!    zstd/gzip on the wire, decoded here and fed to the safe extractor of
//!    `xcat-image` while it arrives (bounded memory);
//! 4. boot skeleton and sysclean on the staging tree;
//! 5. atomic publish (the previous tree kept as a generation);
//! 6. table registration, report, manifest, kernel; `--pack` as a sub-request.
//!
//! Failures at any point discard the staging tree and leave the published
//! image untouched. Every phase fails with a [`CaptureError`] (each case
//! worded once, in `error.rs`); the client gets its sentence, the daemon's
//! log also its sources. A journal entry under the daemon's state directory
//! names the image directory while a capture runs, so a daemon that was
//! killed cleans up at its next start ([`recover_at_start`]).
#![forbid(unsafe_code)]

pub mod churn;
pub mod consistent;
pub mod exlist;
pub mod options;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod target;

mod archive;
mod audit;
mod capture;
mod error;
mod job;
mod journal;
mod plan;
mod settle;
mod signing;

use std::sync::Arc;

use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder, Settings,
};

pub use error::CaptureError;
pub use journal::recover_at_start;

pub struct CapImage;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(CapImage)]
}

#[async_trait]
impl Handler for CapImage {
    fn commands(&self) -> &'static [&'static str] {
        &["capimage"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let parsed = options::parse(req.args())?;
        let Some(opts) = options::SYNTAX.answer(parsed, &out).await? else {
            return Ok(());
        };
        let node = match req.nodes.as_slice() {
            [] => return Err(options::SYNTAX.error("capimage needs the node to capture")),
            [one] => one.clone(),
            many => {
                return Err(HandlerError::Usage(format!(
                    "capimage captures one node at a time; the noderange names {}: {}",
                    many.len(),
                    many.join(",")
                )))
            }
        };
        Ok(capture::run(&node, &opts, req.request.cwd.as_deref(), &ctx, &out).await?)
    }

    /// Captures a killed daemon left half-done: restore and clean before serving.
    fn at_start(&self, settings: &Settings) -> Vec<String> {
        recover_at_start(settings)
    }
}

/// The journal directory of running captures.
pub fn journal_dir(settings: &Settings) -> std::path::PathBuf {
    settings.state_dir.join("capimage-journal")
}
