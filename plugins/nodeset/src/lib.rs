//! `nodeset`: what nodes boot next.
//!
//! ```text
//! nodeset <noderange> osimage=<image> | osimage | boot | offline | stat | shell [--noupdateinitrd]
//! ```
//! For each node it writes the files its bootloader (`noderes.netboot`:
//! `xnba`, or `grub2`, `grub2-tftp`, `grub2-http`) fetches, in xCAT's
//! layout, sets `nodetype` from the image and `chain.currstate`, prints
//! `<node>: <currstate>`, and asks `makedhcp` to update the DHCP server.
//! A node that cannot be set up fails alone (`<node>: Error: ...`); the
//! others are still done, and the request ends with a summary error.
//! The tables are read once for the whole noderange and every file is
//! renamed into place, so ten thousand nodes take about a second and a
//! node booting meanwhile never reads half a script.
#![forbid(unsafe_code)]

mod dhcp;
pub mod files;
pub mod image;
mod kcmdline;
pub mod nodes;
mod plan;
pub mod ram;
mod run;
mod site;
mod state;

use std::sync::Arc;

use xcat_plugin::args::Syntax;
use xcat_plugin::{async_trait, Context, Handler, HandlerRequest, HandlerResult, Responder};

pub use dhcp::request as makedhcp_request;
pub use image::PACKED_NAMES;
pub use state::State;

const SYNTAX: Syntax = Syntax::new(
    "nodeset",
    "Usage:
  nodeset <noderange> [osimage=<imagename> | osimage | boot | offline | stat | shell] [--noupdateinitrd]
  nodeset [-h|--help|-?]
  nodeset [-v|--version]",
);

/// The command line after the noderange.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Keep the kernel and initrd already copied to the TFTP root.
    #[arg(long = "noupdateinitrd")]
    no_update_initrd: bool,
    /// The state.
    words: Vec<String>,
}

/// The options a state is served with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub no_update_initrd: bool,
}

pub struct Nodeset;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(Nodeset)]
}

#[async_trait]
impl Handler for Nodeset {
    fn commands(&self) -> &'static [&'static str] {
        &["nodeset"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let word = match args.words.as_slice() {
            [w] => w,
            [] => return Err(SYNTAX.error("nodeset needs a state")),
            [_, extra, ..] => return Err(SYNTAX.error(format!("unexpected argument \"{extra}\""))),
        };
        let state = State::parse(word).map_err(|e| SYNTAX.error(e.to_string()))?;
        if req.nodes.is_empty() {
            return Err(SYNTAX.error("nodeset needs a noderange"));
        }
        let opts = Options {
            no_update_initrd: args.no_update_initrd,
        };
        run::run(state, opts, req.nodes, &ctx, &out).await
    }
}
