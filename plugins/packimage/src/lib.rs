//! `packimage`: pack an image's rootimg into the archive nodes boot.
//! (Being written; until then the command answers that it is not available.)
#![forbid(unsafe_code)]

use std::sync::Arc;

use xcat_plugin::{async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder};

pub struct PackImage;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(PackImage)]
}

#[async_trait]
impl Handler for PackImage {
    fn commands(&self) -> &'static [&'static str] {
        &["packimage"]
    }

    async fn process(&self, _req: HandlerRequest, _ctx: Context, _out: Responder) -> HandlerResult {
        Err(HandlerError::Failed("packimage is not available in this build yet".into()))
    }
}
