//! `lsdef -t osimage [-l] [name[,name...]]`: show image definitions (the
//! `osimage` row merged with its `linuximage` row), in xCAT's stanza style:
//! `Object name: NAME` followed by `    attr=value` lines sorted by attribute.
//! Without names (and without `-l`) it lists `NAME  (osimage)` lines.

use std::collections::BTreeMap;

use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "lsdef",
    "Usage: lsdef -t osimage [-l|--long] [-o] [name[,name...]]
       lsdef [-?|-h|--help]
       lsdef [-v|--version]
  Only object type osimage is served by this daemon.",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 't', long = "type")]
    objtype: Option<String>,
    /// `-o name[,name...]`, repeatable.
    #[arg(short = 'o', long = "object")]
    objects: Vec<String>,
    #[arg(short = 'l', long = "long")]
    long: bool,
    /// `name[,name...]` words.
    names: Vec<String>,
}

impl Args {
    /// Every name asked for, from `-o` and the words, in order of the
    /// command line's kinds (`-o` first).
    fn names(&self) -> Vec<String> {
        let words = self.objects.iter().chain(&self.names);
        let split = words.flat_map(|w| w.split(',').filter(|s| !s.is_empty()));
        split.map(str::to_string).collect()
    }
}

pub struct Lsdef;

/// Every attribute of an image: osimage columns, then linuximage columns
/// (`comments` shown as `usercomment`, as xCAT does).
async fn image_attrs(
    ctx: &Context,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, HandlerError> {
    let Some(os) = ctx.db.get_row("osimage", name).await? else {
        return Ok(None);
    };
    let mut attrs = BTreeMap::new();
    let linux = ctx
        .db
        .get_row("linuximage", name)
        .await?
        .unwrap_or_default();
    for (k, v) in linux.into_iter().chain(os) {
        match k.as_str() {
            "imagename" | "disable" => {}
            "comments" => {
                attrs.insert("usercomment".to_string(), v);
            }
            _ => {
                attrs.insert(k, v);
            }
        }
    }
    Ok(Some(attrs))
}

#[async_trait]
impl Handler for Lsdef {
    fn commands(&self) -> &'static [&'static str] {
        &["lsdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let mut names = args.names();
        // Names given as the noderange by a client that treats lsdef as a
        // noderange command arrive as nodes: accept them too.
        names.extend(req.nodes.iter().cloned());
        match args.objtype.as_deref() {
            Some("osimage") => {}
            Some(t) => {
                return Err(HandlerError::Failed(format!(
                    "Object type '{t}' is not supported by this daemon; use lsdef -t osimage"
                )))
            }
            None => return Err(SYNTAX.error("Give the object type: lsdef -t osimage")),
        }
        if names.is_empty() {
            let all = all_images(&ctx).await?;
            if all.is_empty() {
                out.info("Could not find any object definitions to display.")
                    .await?;
                return Ok(());
            }
            if !args.long {
                for n in &all {
                    out.data(format!("{n}  (osimage)")).await?;
                }
                return Ok(());
            }
            names = all;
        }
        show(&ctx, &out, &names).await
    }
}

/// The names of every image, sorted.
async fn all_images(ctx: &Context) -> Result<Vec<String>, HandlerError> {
    let rows = ctx.db.rows("osimage").await?;
    let mut all: Vec<String> = rows
        .into_iter()
        .filter_map(|r| r.get("imagename").cloned())
        .collect();
    all.sort();
    Ok(all)
}

/// Each image's stanza; the names that are not images are one error at the end.
async fn show(ctx: &Context, out: &Responder, names: &[String]) -> HandlerResult {
    let mut missing = Vec::new();
    for name in names {
        ctx.check_cancelled()?;
        match image_attrs(ctx, name).await? {
            Some(attrs) => {
                out.data(format!("Object name: {name}")).await?;
                for (k, v) in attrs {
                    out.data(format!("    {k}={v}")).await?;
                }
            }
            None => missing.push(name),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = missing
        .iter()
        .map(|n| format!("Could not find an object named '{n}' of type 'osimage'."))
        .collect();
    Err(HandlerError::Failed(msgs.join("\n")))
}
