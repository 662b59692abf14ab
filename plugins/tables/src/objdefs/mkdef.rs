//! `mkdef`: create object definitions, from the command line
//! (`mkdef -t node -o cn[01-64] groups=compute mgt=ipmi`) or a stanza file
//! on stdin (`-z`). An existing object is left alone unless `-f` replaces
//! it; a dynamic group (`-d`) is defined by its `-w` selections.

use xcat_db::objects::{rules, Change, Kind, ObjType};
use xcat_db::Attrs;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use super::{
    check_node_names, checked_attrs, drop_default_scripts, fail, new_names, stanza, template,
    types_of, wheres, words,
};

const SYNTAX: Syntax = Syntax::new(
    "mkdef",
    "Usage: mkdef - Create xCAT data object definitions.
  mkdef [-h|--help] [-t object-types]
  mkdef [-V|--verbose] [-t object-types] [-o object-names] [-z|--stanza]
      [-d|--dynamic] [-w attr==val [-w attr=~val] ...] [-f|--force]
      [noderange] [attr=val [attr=val...]]
  mkdef [-V|--verbose] [-t object-types] [-o object-names] [-f|--force]
      [--template template-object-name] [noderange] [attr=val [attr=val...]]
  mkdef [-v|--version]
  The following data object types are supported: auditlog,boottarget,eventlog,group,kit,kitcomponent,kitrepo,monitoring,network,node,notification,osimage,policy,route,site,zone",
);

#[derive(Debug, clap::Parser)]
pub(super) struct Args {
    #[command(flatten)]
    def: super::Define,
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    /// `--template NAME`: start from a shipped template or an existing
    /// object of the type.
    #[arg(long = "template", num_args = 0..=1, default_missing_value = "")]
    template: Option<String>,
    /// `-p` and `-m` are chdef's; named here so the message is xCAT's.
    #[arg(short = 'p', hide = true)]
    plus: bool,
    #[arg(short = 'm', hide = true)]
    minus: bool,
    words: Vec<String>,
}

pub struct Mkdef;

/// The objects of one type to create, each with its attributes.
pub(super) struct Batch {
    pub t: &'static ObjType,
    pub objects: Vec<Change>,
}

#[async_trait]
impl Handler for Mkdef {
    fn commands(&self) -> &'static [&'static str] {
        &["mkdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        if args.plus || args.minus {
            return Err(HandlerError::Failed(
                "The '-p' and '-m' options are not valid for the mkdef command.".into(),
            ));
        }
        check_template_option(&args)?;
        let batches = if args.def.stanza {
            from_stanzas(&args, &req)?
        } else {
            let mut b = from_command_line(&args, &req)?;
            let w = words(&args.def.objects, &args.words);
            dynamic_without_attrs(&out, &b, args.def.dynamic, &w.pairs).await?;
            if let Some(name) = &args.template {
                from_template(&ctx, &mut b, name).await?;
            }
            vec![b]
        };
        let mut errors = Vec::new();
        let mut done = 0;
        for b in batches {
            done += create(&ctx, &out, b, args.force, &mut errors).await?;
        }
        finish(&out, done, errors, args.verbose).await
    }
}

/// The one type and its objects the command line names.
fn from_command_line(args: &Args, req: &HandlerRequest) -> Result<Batch, HandlerError> {
    let types = types_of(args.def.types.as_deref())?;
    let w = words(&args.def.objects, &args.words);
    let mut names = w.names.clone();
    names.extend(req.nodes.iter().cloned());
    if types.len() > 1 {
        return Err(HandlerError::Failed(
            "Cannot combine multiple types with 'att=val' pairs on the command line.".into(),
        ));
    }
    let t = types[0];
    if names.is_empty() {
        return Err(SYNTAX.error("No object names were provided."));
    }
    let mut attrs = checked_attrs(t, &w.pairs)?;
    dynamic_group(t, args.def.dynamic, &args.def.wheres, &mut attrs)?;
    // A group may start empty (xCAT makes it a static group); a template
    // may give every attribute.
    if attrs.is_empty() && t.kind != Kind::Group && args.template.is_none() {
        return Err(no_attributes(t));
    }
    let names = new_names(t, &names)?;
    check_node_names(t, &names)?;
    Ok(Batch {
        t,
        objects: names.into_iter().map(|n| (n, attrs.clone())).collect(),
    })
}

/// `--template`'s rules: one name, and no stanza file beside it.
fn check_template_option(args: &Args) -> Result<(), HandlerError> {
    let Some(name) = &args.template else {
        return Ok(());
    };
    let msg = if name.is_empty() {
        "no object definition template specified for mkdef --template!"
    } else if name.contains(',') {
        "Only 1 template object definition should be specified for mkdef!"
    } else if args.def.stanza {
        "The file input can not be used with --template option!"
    } else {
        return Ok(());
    };
    Err(HandlerError::Failed(msg.into()))
}

/// `--template NAME`: every object of the batch completed from the
/// shipped template NAME of its type or, when none is shipped, from the
/// existing object NAME (its own values, not those it inherits: it is
/// copied with its groups, which give the new object the rest). The
/// command line's values win.
async fn from_template(ctx: &Context, b: &mut Batch, name: &str) -> HandlerResult {
    let shipped = template::load(&ctx.settings.share_dir, &[b.t])?
        .into_iter()
        .find(|tpl| tpl.name == name);
    if let Some(tpl) = shipped {
        for (_, attrs) in b.objects.iter_mut() {
            *attrs = tpl.apply(attrs).map_err(HandlerError::Failed)?;
        }
        return Ok(());
    }
    let found = ctx.db.objects_exist(b.t, &[name.to_string()]).await?[0];
    if !found {
        return Err(HandlerError::Failed(format!(
            "Could not find the template object named '{name}' of type '{}'.",
            b.t.name
        )));
    }
    if b.objects.iter().any(|(n, _)| n == name) {
        return Err(HandlerError::Failed(
            "The template node cannot be the same as the node to create.".into(),
        ));
    }
    let own = ctx.db.own_attrs(b.t, &[name.to_string()]).await?;
    let own = own.into_iter().next().unwrap_or_default();
    for (_, attrs) in b.objects.iter_mut() {
        for (k, v) in &own {
            if attrs.get(k).is_none_or(|have| have.is_empty()) {
                attrs.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// `-d -w ...`: the group's type and selection as attributes.
pub(super) fn dynamic_group(
    t: &ObjType,
    dynamic: bool,
    wheretexts: &[String],
    attrs: &mut Attrs,
) -> Result<(), HandlerError> {
    if t.kind != Kind::Group || (!dynamic && wheretexts.is_empty()) {
        return Ok(());
    }
    if attrs.contains_key("members") && !wheretexts.is_empty() {
        return Err(HandlerError::Failed(
            "Cannot use a list of members together with the '-w' option.".into(),
        ));
    }
    wheres(wheretexts)?;
    if dynamic {
        attrs.insert("grouptype".into(), "dynamic".into());
    }
    if !wheretexts.is_empty() {
        attrs.insert("wherevals".into(), wheretexts.join("::"));
    }
    Ok(())
}

/// A dynamic group (`-d`) has no attributes of its own to inherit: its
/// members are whatever its selection picks, so `attr=value` words are
/// refused, one message per group, as xCAT does.
pub(super) async fn dynamic_without_attrs(
    out: &Responder,
    b: &Batch,
    dynamic: bool,
    pairs: &[(String, String)],
) -> HandlerResult {
    let own = |a: &str| !matches!(a, "grouptype" | "wherevals");
    if b.t.kind != Kind::Group || !dynamic || !pairs.iter().any(|(a, _)| own(a)) {
        return Ok(());
    }
    let mut msgs: Vec<String> = b
        .objects
        .iter()
        .map(|(n, _)| format!("Can not assign attributes to dynamic node group '{n}'."))
        .collect();
    msgs.push(ERRORS_SUMMARY.into());
    fail(out, msgs).await
}

/// The line that closes a list of per-object errors (xCAT's spelling).
pub(super) const ERRORS_SUMMARY: &str =
    "One or more errors occured when attempting to create or modify xCAT object definitions.";

fn no_attributes(t: &ObjType) -> HandlerError {
    HandlerError::Failed(if t.kind == Kind::Node {
        "No object definitions have been created or modified: no attributes were specified. The 'groups' attribute is required when creating node definitions.".into()
    } else {
        "No object definitions have been created or modified: no attributes were specified.".into()
    })
}

/// The objects of a stanza file on stdin, one batch per type.
pub(super) fn from_stanzas(args: &Args, req: &HandlerRequest) -> Result<Vec<Batch>, HandlerError> {
    if !args.def.objects.is_empty() || !args.words.is_empty() || !req.nodes.is_empty() {
        return Err(HandlerError::Failed(
            "Cannot use '-z' with '-o' or a noderange.".into(),
        ));
    }
    if args.def.types.is_some() {
        return Err(HandlerError::Failed(
            "Cannot combine '-t' and '-a', '-z', or '-x' options.".into(),
        ));
    }
    stanza_batches(req.request.stdin.as_deref().unwrap_or(""))
}

/// Stanzas grouped by type, in order of first appearance.
pub(super) fn stanza_batches(text: &str) -> Result<Vec<Batch>, HandlerError> {
    let stanzas = stanza::parse(text).map_err(HandlerError::Failed)?;
    if stanzas.is_empty() {
        return Err(HandlerError::Failed(
            "Could not process file input data.".into(),
        ));
    }
    let mut batches: Vec<Batch> = Vec::new();
    for s in stanzas {
        let t = types_of(Some(s.objtype.as_deref().unwrap_or("node")))?[0];
        let attrs = checked_attrs(t, &s.pairs)?;
        check_node_names(t, std::slice::from_ref(&s.name))?;
        match batches.iter_mut().find(|b| b.t.name == t.name) {
            Some(b) => b.objects.push((s.name, attrs)),
            None => batches.push(Batch {
                t,
                objects: vec![(s.name, attrs)],
            }),
        }
    }
    Ok(batches)
}

/// Create a batch's objects; returns how many were written. Objects that
/// cannot be created add their message to `errors` (or, when they exist
/// already, a warning) and are skipped.
async fn create(
    ctx: &Context,
    out: &Responder,
    b: Batch,
    force: bool,
    errors: &mut Vec<String>,
) -> Result<usize, HandlerError> {
    let names: Vec<String> = b.objects.iter().map(|(n, _)| n.clone()).collect();
    let exists = ctx.db.objects_exist(b.t, &names).await?;
    let unmet = unmet_conditions(ctx, b.t, &b.objects).await?;
    let mut replace = Vec::new();
    let mut todo = Vec::new();
    for (((name, attrs), exists), unmet) in b.objects.into_iter().zip(exists).zip(unmet) {
        if exists && !force {
            out.warning(format!("A definition for '{name}' already exists. No changes will be made.  Run again with '-f' option to force replace.")).await?;
            continue;
        }
        if let Err(m) = valid_new(b.t, &name, &attrs) {
            errors.push(m);
            continue;
        }
        // Checked before `-f` removes anything, so a rejected replacement
        // leaves the old definition whole.
        if !unmet.is_empty() {
            errors.extend(unmet);
            continue;
        }
        if let Err(m) = rules::check_values(b.t, &attrs) {
            errors.push(m);
            continue;
        }
        if let Some(m) = net_taken(ctx, b.t, &name, &attrs).await? {
            errors.push(m);
            continue;
        }
        if exists {
            replace.push(name.clone());
        }
        todo.push((name, attrs));
    }
    check_members(ctx, out, b.t, &mut todo).await?;
    drop_default_scripts(ctx, out, b.t, &mut todo).await?;
    if !replace.is_empty() {
        ctx.db.remove_objects(b.t, &replace).await?;
    }
    ctx.db.write_objects(b.t, &todo).await?;
    Ok(todo.len())
}

/// Per object, the attributes xCAT's only-if rule forbids: a new object's
/// conditions are judged on its own values and its groups', never on a
/// definition that `-f` replaces.
async fn unmet_conditions(
    ctx: &Context,
    t: &ObjType,
    objects: &[Change],
) -> Result<Vec<Vec<String>>, HandlerError> {
    if !objects
        .iter()
        .any(|(_, a)| a.keys().any(|k| t.is_conditional(k)))
    {
        return Ok(vec![Vec::new(); objects.len()]);
    }
    let known = ctx.db.condition_context(t, objects, false).await?;
    Ok(objects
        .iter()
        .zip(&known)
        .map(|((_, attrs), known)| t.unmet_conditions(attrs, known))
        .collect())
}

/// What a new object of type `t` needs: a node its groups, a network its
/// net and mask.
pub(super) fn valid_new(t: &ObjType, name: &str, attrs: &Attrs) -> Result<(), String> {
    let set = |a: &str| attrs.get(a).is_some_and(|v| !v.is_empty());
    match t.name {
        "node" if !set("groups") => Err(format!(
            "Attribute 'groups' is not specified for node '{name}', skipping to the next node."
        )),
        "network" if !set("net") || !set("mask") => Err(format!(
            "Net or mask value should not be empty for xCAT network object '{name}'."
        )),
        "group"
            if attrs.get("grouptype").map(String::as_str) == Some("dynamic")
                && !set("wherevals") =>
        {
            Err(format!(
                "The 'where' attributes and values were not provided for dynamic group \
                 '{name}'. Skipping to the next group."
            ))
        }
        _ => Ok(()),
    }
}

/// A new network may not repeat another network's net and mask: the
/// message names the network that has them.
pub(super) async fn net_taken(
    ctx: &Context,
    t: &ObjType,
    name: &str,
    attrs: &Attrs,
) -> Result<Option<String>, HandlerError> {
    let (Some(net), Some(mask)) = (attrs.get("net"), attrs.get("mask")) else {
        return Ok(None);
    };
    if t.name != "network" {
        return Ok(None);
    }
    let names = ctx.db.object_names(t).await?;
    let defs = ctx.db.object_attrs(t, &names).await?;
    let same = names.iter().zip(defs).find(|(other, a)| {
        *other != name && a.get("net") == Some(net) && a.get("mask") == Some(mask)
    });
    Ok(same.map(|(other, _)| {
        format!(
            "A network definition called '{other}' already exists that contains the same net \
             and mask values. Cannot create a definition for '{name}'."
        )
    }))
}

/// A group's `members` must be nodes: unknown ones are dropped with xCAT's
/// warning.
pub(super) async fn check_members(
    ctx: &Context,
    out: &Responder,
    t: &ObjType,
    todo: &mut [Change],
) -> HandlerResult {
    if t.kind != Kind::Group {
        return Ok(());
    }
    let nodes = ctx.db.nodes().await?;
    for (_, attrs) in todo.iter_mut() {
        let Some(members) = attrs.get("members").cloned() else {
            continue;
        };
        let mut kept = Vec::new();
        for m in new_names(t, &[members])? {
            if nodes.is_node(&m) {
                kept.push(m);
            } else {
                out.warning(format!(
                    "Could not find a node named '{m}', skipping to the next node."
                ))
                .await?;
            }
        }
        attrs.insert("members".into(), kept.join(","));
    }
    Ok(())
}

/// The closing lines: the count, or the errors and xCAT's summary.
pub(super) async fn finish(
    out: &Responder,
    done: usize,
    mut errors: Vec<String>,
    _verbose: bool,
) -> HandlerResult {
    if !errors.is_empty() {
        errors.push(ERRORS_SUMMARY.into());
        if done > 0 {
            out.info(format!(
                "{done} object definitions have been created or modified."
            ))
            .await?;
        }
        return fail(out, errors).await;
    }
    let msg = format!("{done} object definitions have been created or modified.");
    if done == 0 {
        return Err(HandlerError::Failed(msg));
    }
    out.info(msg).await?;
    Ok(())
}
