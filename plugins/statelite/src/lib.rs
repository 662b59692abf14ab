//! Statelite's table commands, as xCAT's `litetree` plugin answers them:
//!
//! ```text
//! litefile <noderange>      <node>: <options> <file>      (one line per entry)
//! litetree <noderange>      <node>: <server>:<dir>[ :<mntopts>]
//! ilitefile <image>...      <image>: <options> <file>
//! lslite [-i image | noderange]
//! liteimg [-V] <image>      the link farm for the image's litefile entries
//!                           (xcat_image::linkfarm), and for rootfstype=ramdisk
//!                           the tree packed as rootimg-statelite.gz
//! ```
//!
//! A statelite node asks `litefile` and `litetree` at boot, before it has a
//! certificate (xCAT's `rc.statelite` does it with `openssl s_client`); the
//! default policy rows 4.7 and 4.8 allow exactly those two commands to
//! anyone. Such a peer is answered for the node its address names
//! (`hosts.ip`, else its host name as a node), never for a noderange it
//! sends: an unauthenticated peer learns its own entries and nothing else.
//!
//! The image of a node is `nodetype.provmethod` when that names an image,
//! else `<os>-<arch>-statelite-<profile>` from `nodetype`.
#![forbid(unsafe_code)]

pub mod entries;
mod liteimg;
mod lookup;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use entries::{file_line, tree_mount};
use lookup::Tables;

const LITEFILE: Syntax = Syntax::new(
    "litefile",
    "Usage: litefile <noderange>\nexample:\n\tlitefile node1",
);
const LITETREE: Syntax = Syntax::new(
    "litetree",
    "Usage: litetree <noderange>\nexample:\n\tlitetree node1",
);
const ILITEFILE: Syntax = Syntax::new(
    "ilitefile",
    "Usage: ilitefile <imagename>\n\texample:\n\tilitefile centos5.3-x86_64-statelite-compute",
);
const LSLITE: Syntax = Syntax::new(
    "lslite",
    "  lslite - Display a summary of the statelite information
\t\tthat has been defined for a noderange or an image.
  Usage: 
\tlslite [-h | --help]
or
\tlslite [-V | --verbose] [-i imagename] | [noderange]",
);

/// No options besides the shared `-h` and `-v`.
#[derive(Debug, clap::Parser)]
struct Words {
    words: Vec<String>,
}

#[derive(Debug, clap::Parser)]
struct LsliteArgs {
    #[arg(short = 'i')]
    image: Option<String>,
    #[arg(short = 'V', long = "verbose")]
    _verbose: bool,
    /// A noderange given as a word (xCAT's client sends it as the
    /// request's noderange; ours forwards it, since `-i` takes a word too).
    noderange: Option<String>,
}

pub struct Lite;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(Lite)]
}

#[async_trait]
impl Handler for Lite {
    fn commands(&self) -> &'static [&'static str] {
        &["litefile", "litetree", "ilitefile", "lslite", "liteimg"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let t = Tables::new(&ctx.db);
        match req.command() {
            "litefile" | "litetree" => node_entries(&req, &ctx, &t, &out).await,
            "ilitefile" => {
                let Some(a) = ILITEFILE.read::<Words>(req.args(), &out).await? else {
                    return Ok(());
                };
                if a.words.is_empty() {
                    return usage(&ILITEFILE, &out).await;
                }
                for image in a.words.iter().flat_map(|w| w.split(',')) {
                    for (file, o) in t.files(image).await? {
                        out.info(file_line(Some(image), &o, &file)).await?;
                    }
                }
                Ok(())
            }
            "liteimg" => liteimg::liteimg(&req, &ctx, &out).await,
            _ => lslite(&req, &ctx, &t, &out).await,
        }
    }
}

/// The usage text as information, as xCAT answers a request it cannot serve
/// for want of a node or an image.
async fn usage(s: &Syntax, out: &Responder) -> HandlerResult {
    out.info(s.usage).await?;
    Ok(())
}

/// The image of `node`, or None once xCAT's message about it was sent.
async fn image_or_say(
    t: &Tables<'_>,
    node: &str,
    out: &Responder,
) -> Result<Option<String>, HandlerError> {
    match t.image_of(node).await? {
        Ok(i) => Ok(Some(i)),
        Err(msg) => {
            out.error(msg).await?;
            Ok(None)
        }
    }
}

/// `litefile` and `litetree`: the request's nodes, or, for a peer without a
/// certificate, the node its address names.
async fn node_entries(
    req: &HandlerRequest,
    ctx: &Context,
    t: &Tables<'_>,
    out: &Responder,
) -> HandlerResult {
    let files = req.command() == "litefile";
    let syntax = if files { &LITEFILE } else { &LITETREE };
    if syntax.read::<Words>(req.args(), out).await?.is_none() {
        return Ok(());
    }
    let nodes = if ctx.identity.user.is_none() {
        t.node_of_peer(&ctx.identity).await?.into_iter().collect()
    } else {
        req.nodes.clone()
    };
    if nodes.is_empty() {
        return usage(syntax, out).await;
    }
    // Nodes of one request mostly share an image: its entries are read once.
    let mut by_image: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for node in &nodes {
        let Some(image) = image_or_say(t, node, out).await? else {
            continue;
        };
        if !by_image.contains_key(&image) {
            let entries = if files {
                t.files(&image).await?.into_iter().collect()
            } else {
                t.trees(&image).await?
            };
            by_image.insert(image.clone(), entries);
        }
        for (a, b) in &by_image[&image] {
            let line = if files {
                file_line(Some(node), b, a)
            } else {
                format!("{node}: {}", tree_mount(b, node))
            };
            out.info(line).await?;
        }
    }
    Ok(())
}

/// `lslite -i image` or `lslite <noderange>`: everything statelite knows,
/// indented under headings.
async fn lslite(
    req: &HandlerRequest,
    ctx: &Context,
    t: &Tables<'_>,
    out: &Responder,
) -> HandlerResult {
    let Some(a) = LSLITE.read::<LsliteArgs>(req.args(), out).await? else {
        return Ok(());
    };
    if let Some(image) = a.image {
        if !t.image_defined(&image).await? {
            out.error(format!("The osimage named '{image}' is not defined."))
                .await?;
            return Ok(());
        }
        for (file, o) in t.files(&image).await? {
            out.info(file_line(None, &o, &file)).await?;
        }
        return Ok(());
    }
    let mut nodes = req.nodes.clone();
    if let Some(nr) = &a.noderange {
        nodes.extend(ctx.db.expand_noderange(nr).await?);
    }
    if nodes.is_empty() {
        for line in LSLITE.usage.lines() {
            out.data(line).await?;
        }
        return Ok(());
    }
    for node in &nodes {
        let Some(image) = image_or_say(t, node, out).await? else {
            continue;
        };
        out.info(format!(">>>Node: {node}\n")).await?;
        out.info(format!("Osimage: {image}\n")).await?;
        out.info("Persistent directory (statelite table):").await?;
        if let Some(m) = t.statemnt(node).await? {
            out.info(format!("        {}", tree_mount(&m, node)))
                .await?;
        }
        out.info("\n").await?;
        out.info("Litefiles (litefile table):").await?;
        for (file, o) in t.files(&image).await? {
            out.info(file_line(None, &o, &file)).await?;
        }
        out.info("\n").await?;
        out.info("Litetree path (litetree table):").await?;
        for (prio, entry) in t.trees(&image).await? {
            out.info(format!("        {prio}, {}", tree_mount(&entry, node)))
                .await?;
        }
        out.info("\n").await?;
    }
    Ok(())
}
