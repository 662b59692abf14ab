//! `rmdef`: remove object definitions (`rmdef -t node cn05`,
//! `rmdef -t node -w groups==old`, `rmdef -a -f` for everything), and
//! `noderm`, which is `rmdef -t node` for a noderange.

use xcat_db::objects::{Kind, ObjType};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use super::{all_types, existing, fail, not_found, selected, types_of, wheres, words};

const SYNTAX: Syntax = Syntax::new(
    "rmdef",
    "Usage: rmdef - Remove xCAT data object definitions.
  rmdef [-h|--help] [-t object-types]
  rmdef [-V|--verbose] [-a|--all] [-t object-types] [-o object-names]
      [-f|--force] [-w attr==val [-w attr=~val] ...] [noderange]
  rmdef [-v|--version]
  The following data object types are supported: auditlog,boottarget,eventlog,group,kit,kitcomponent,kitrepo,monitoring,network,node,notification,osimage,policy,route,site,zone",
);

const NODERM: Syntax = Syntax::new(
    "noderm",
    "Usage: noderm noderange
       noderm [-h|--help]
       noderm [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 't')]
    types: Option<String>,
    #[arg(short = 'o')]
    objects: Vec<String>,
    #[arg(short = 'a', long = "all")]
    all: bool,
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(short = 'w')]
    wheres: Vec<String>,
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    words: Vec<String>,
}

#[derive(Debug, clap::Parser)]
struct NodermArgs {
    noderange: Vec<String>,
}

pub struct Rmdef;
pub struct Noderm;

#[async_trait]
impl Handler for Rmdef {
    fn commands(&self) -> &'static [&'static str] {
        &["rmdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let w = words(&args.objects, &args.words);
        let mut names = w.names;
        names.extend(req.nodes.iter().cloned());
        if !w.pairs.is_empty() {
            return Err(SYNTAX.error("rmdef takes no attr=value pairs"));
        }
        if args.all {
            if !names.is_empty() {
                return Err(HandlerError::Failed(
                    "Cannot use '-a' with '-o', a noderange or file input.".into(),
                ));
            }
            if !args.force {
                return Err(HandlerError::Failed(
                    "You must use the '-f' option when using the '-a' option.".into(),
                ));
            }
        } else if names.is_empty() && args.wheres.is_empty() {
            return Err(SYNTAX.error("No object names were provided."));
        }
        let types = match (&args.types, args.all) {
            (None, true) => all_types(),
            (t, _) => types_of(t.as_deref())?,
        };
        let filters = wheres(&args.wheres)?;
        let mut errors = Vec::new();
        let mut removed = 0;
        for t in types {
            // `-a` leaves the site settings and the policy rows: removing
            // them would lock every user (root included) out of the daemon.
            if args.all && (t.kind == Kind::Site || t.name == "policy") {
                continue;
            }
            if t.kind == Kind::Site {
                errors.push("The site definition cannot be removed.".to_string());
                continue;
            }
            let (found, missing) = if names.is_empty() {
                (ctx.db.object_names(t).await?, Vec::new())
            } else {
                existing(&ctx, t, &names).await?
            };
            errors.extend(missing.iter().map(|n| not_found(n, t)));
            let chosen = selected(&ctx, t, found, &filters).await?;
            removed += remove(&ctx, t, &chosen).await?;
        }
        report(&out, removed, errors).await
    }
}

async fn remove(ctx: &Context, t: &ObjType, names: &[String]) -> Result<usize, HandlerError> {
    if !names.is_empty() {
        ctx.db.remove_objects(t, names).await?;
    }
    Ok(names.len())
}

async fn report(out: &Responder, removed: usize, mut errors: Vec<String>) -> HandlerResult {
    if removed > 0 {
        out.info(format!("{removed} object definitions have been removed."))
            .await?;
    }
    if errors.is_empty() && removed > 0 {
        return Ok(());
    }
    if removed == 0 {
        errors.push("No objects have been removed from the xCAT database.".into());
    } else {
        errors.push(
            "One or more errors occured when attempting to remove xCAT object definitions.".into(),
        );
    }
    fail(out, errors).await
}

#[async_trait]
impl Handler for Noderm {
    fn commands(&self) -> &'static [&'static str] {
        &["noderm"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = NODERM.read::<NodermArgs>(req.args(), &out).await? else {
            return Ok(());
        };
        // The client sends the noderange expanded; a word given as an
        // argument is expanded here.
        let mut nodes = req.nodes.clone();
        for r in &args.noderange {
            nodes.extend(ctx.db.expand_noderange(r).await?);
        }
        if nodes.is_empty() {
            return Err(NODERM.error("No noderange given"));
        }
        let node = types_of(None)?[0];
        ctx.db.remove_objects(node, &nodes).await?;
        Ok(())
    }
}
