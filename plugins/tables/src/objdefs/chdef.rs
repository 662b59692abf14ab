//! `chdef`: change object definitions (creating those that do not exist):
//! `attr=value` sets, `-p` adds to and `-m` removes from comma-separated
//! values, `-n` renames one object, `-w` narrows the objects to change,
//! `-z` reads a stanza file from stdin.

use xcat_db::objects::{rules, split_list, Change, Kind, ObjType};
use xcat_db::Attrs;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use super::mkdef::{
    check_members, dynamic_group, dynamic_without_attrs, finish, net_taken, stanza_batches,
    valid_new, Batch,
};
use super::{
    check_node_names, checked_attrs, drop_default_scripts, existing, selected, types_of, wheres,
    words,
};

const SYNTAX: Syntax = Syntax::new(
    "chdef",
    "Usage: chdef - Change xCAT data object definitions.
  chdef [-h|--help] [-t object-types]
  chdef [-t object-types] [-o object-names] [-n new-name] [node]
  chdef [-V|--verbose] [-t object-types] [-o object-names] [-d|--dynamic]
      [-z|--stanza] [-m|--minus] [-p|--plus]
      [-w attr==val [-w attr=~val] ...] [noderange] [attr=val [attr=val...]]
  chdef [-v|--version]
  The following data object types are supported: auditlog,boottarget,eventlog,group,kit,kitcomponent,kitrepo,monitoring,network,node,notification,osimage,policy,route,site,zone",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[command(flatten)]
    def: super::Define,
    #[arg(short = 'p', long = "plus")]
    plus: bool,
    #[arg(short = 'm', long = "minus")]
    minus: bool,
    #[arg(short = 'n')]
    newname: Option<String>,
    /// mkdef's; named here so the message is xCAT's.
    #[arg(short = 'f', long = "force", hide = true)]
    force: bool,
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    words: Vec<String>,
}

/// How the given values combine with the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Set,
    Plus,
    Minus,
}

pub struct Chdef;

#[async_trait]
impl Handler for Chdef {
    fn commands(&self) -> &'static [&'static str] {
        &["chdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        if args.force {
            return Err(HandlerError::Failed(
                "The '-f' option is not valid for the chdef command.".into(),
            ));
        }
        let mode = match (args.plus, args.minus) {
            (true, true) => {
                return Err(SYNTAX.error("-p and -m cannot be used together"));
            }
            (true, false) => Mode::Plus,
            (false, true) => Mode::Minus,
            _ => Mode::Set,
        };
        if let Some(new) = &args.newname {
            return rename(&ctx, &out, &args, &req, new).await;
        }
        let mut errors = Vec::new();
        let mut done = 0;
        if args.def.stanza {
            if !args.def.objects.is_empty() || !args.words.is_empty() || !req.nodes.is_empty() {
                return Err(HandlerError::Failed(
                    "Cannot use '-z' with '-o' or a noderange.".into(),
                ));
            }
            for b in stanza_batches(req.request.stdin.as_deref().unwrap_or(""))? {
                done += change(&ctx, &out, b, mode, &mut errors).await?;
            }
        } else {
            let b = from_command_line(&ctx, &args, &req).await?;
            let w = words(&args.def.objects, &args.words);
            dynamic_without_attrs(&out, &b, args.def.dynamic, &w.pairs).await?;
            done += change(&ctx, &out, b, mode, &mut errors).await?;
        }
        finish(&out, done, errors, args.verbose).await
    }
}

async fn from_command_line(
    ctx: &Context,
    args: &Args,
    req: &HandlerRequest,
) -> Result<Batch, HandlerError> {
    let types = types_of(args.def.types.as_deref())?;
    let w = words(&args.def.objects, &args.words);
    if types.len() > 1 {
        return Err(HandlerError::Failed(
            "Cannot combine multiple types with 'att=val' pairs on the command line.".into(),
        ));
    }
    let t = types[0];
    let mut names = w.names.clone();
    names.extend(req.nodes.iter().cloned());
    let mut attrs = checked_attrs(t, &w.pairs)?;
    let filters = wheres(&args.def.wheres)?;
    // For a group, -w is its selection; for the others it picks the objects.
    let selects = !(t.kind == Kind::Group && (args.def.dynamic || !args.def.wheres.is_empty()));
    if !selects {
        dynamic_group(t, args.def.dynamic, &args.def.wheres, &mut attrs)?;
    }
    let names = if names.is_empty() && selects && !filters.is_empty() {
        let all = ctx.db.object_names(t).await?;
        selected(ctx, t, all, &filters).await?
    } else if names.is_empty() && t.kind == Kind::Site {
        vec![xcat_db::objects::SITE_OBJECT.to_string()]
    } else if names.is_empty() {
        return Err(SYNTAX.error("No object names were provided."));
    } else {
        let (found, missing) = existing(ctx, t, &names).await?;
        let mut all = if selects {
            selected(ctx, t, found, &filters).await?
        } else {
            found
        };
        if filters.is_empty() || !selects {
            all.extend(missing);
        }
        all
    };
    if attrs.is_empty() {
        return Err(HandlerError::Failed(
            "No object definitions have been created or modified.".into(),
        ));
    }
    check_node_names(t, &names)?;
    Ok(Batch {
        t,
        objects: names.into_iter().map(|n| (n, attrs.clone())).collect(),
    })
}

/// Apply a batch; returns how many objects were written.
async fn change(
    ctx: &Context,
    out: &Responder,
    b: Batch,
    mode: Mode,
    errors: &mut Vec<String>,
) -> Result<usize, HandlerError> {
    let names: Vec<String> = b.objects.iter().map(|(n, _)| n.clone()).collect();
    let exists = ctx.db.objects_exist(b.t, &names).await?;
    let own = if mode == Mode::Set {
        vec![Attrs::new(); names.len()]
    } else {
        ctx.db.own_attrs(b.t, &names).await?
    };
    let mut todo: Vec<Change> = Vec::new();
    let mut created = Vec::new();
    for (((name, attrs), exists), own) in b.objects.into_iter().zip(exists).zip(own) {
        if !exists {
            if mode == Mode::Minus {
                errors.push(format!(
                    "The '-m' option is not valid since the '{name}' definition does not exist."
                ));
                continue;
            }
            if let Err(m) = valid_new(b.t, &name, &attrs) {
                errors.push(m);
                continue;
            }
            if let Some(m) = net_taken(ctx, b.t, &name, &attrs).await? {
                errors.push(m);
                continue;
            }
            created.push(name.clone());
        }
        if mode != Mode::Minus {
            if let Err(m) = rules::check_values(b.t, &attrs) {
                errors.push(m);
                continue;
            }
        }
        let attrs = match mode {
            Mode::Set => attrs,
            _ => combined(b.t, &own, attrs, mode, ctx, &name).await?,
        };
        todo.push((name, attrs));
    }
    check_members(ctx, out, b.t, &mut todo).await?;
    drop_default_scripts(ctx, out, b.t, &mut todo).await?;
    ctx.db.write_objects(b.t, &todo).await?;
    if !created.is_empty() {
        out.info(format!(
            "New object definitions '{}' have been created.",
            created.join(",")
        ))
        .await?;
    }
    Ok(todo.len())
}

/// `-p`/`-m`: each given value's items added to or removed from the
/// object's own list (a group's members are its computed list).
async fn combined(
    t: &ObjType,
    own: &Attrs,
    given: Attrs,
    mode: Mode,
    ctx: &Context,
    name: &str,
) -> Result<Attrs, HandlerError> {
    let mut out = Attrs::new();
    for (a, v) in given {
        // `-d` sets the group's type; only its selection is a list.
        if t.kind == Kind::Group && a == "grouptype" {
            out.insert(a, v);
            continue;
        }
        let current = if t.kind == Kind::Group && a == "members" {
            ctx.db.object_attrs(t, &[name.to_string()]).await?[0]
                .get("members")
                .cloned()
                .unwrap_or_default()
        } else {
            own.get(&a).cloned().unwrap_or_default()
        };
        // A dynamic group's selections are joined by `::` (a value may
        // hold commas: `groups==all,compute`).
        let split = |text: &str| -> Vec<String> {
            if a == "wherevals" {
                text.split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            } else {
                split_list(text)
            }
        };
        let delim = if a == "wherevals" { "::" } else { "," };
        let mut items = split(&current);
        for item in split(&v) {
            match mode {
                Mode::Plus if !items.contains(&item) => items.push(item),
                Mode::Minus => items.retain(|i| *i != item),
                _ => {}
            }
        }
        out.insert(a, items.join(delim));
    }
    Ok(out)
}

/// `chdef -n NEW OBJECT`.
async fn rename(
    ctx: &Context,
    out: &Responder,
    args: &Args,
    req: &HandlerRequest,
    new: &str,
) -> HandlerResult {
    if args.plus || args.minus || args.def.stanza || args.def.dynamic || !args.def.wheres.is_empty()
    {
        return Err(HandlerError::Failed(
            "Cannot combine '-n' and '-d','-p','-m','-z','-w' options.".into(),
        ));
    }
    let t = types_of(args.def.types.as_deref())?[0];
    let w = words(&args.def.objects, &args.words);
    let mut names = super::new_names(t, &w.names)?;
    names.extend(req.nodes.iter().cloned());
    let [old] = names.as_slice() else {
        return Err(HandlerError::Failed(
            "The '-n' option (changing object name) can only work on one object.".into(),
        ));
    };
    check_node_names(t, &[new.to_string()])?;
    let exists = ctx
        .db
        .objects_exist(t, &[old.clone(), new.to_string()])
        .await?;
    if !exists[0] {
        return Err(HandlerError::Failed(format!(
            "The {old} is not a valid object."
        )));
    }
    if exists[1] {
        return Err(HandlerError::Failed(format!(
            "Object {new} already exists."
        )));
    }
    ctx.db.rename_object(t, old, new).await?;
    out.info(format!("Changed the object name from {old} to {new}."))
        .await?;
    Ok(())
}
