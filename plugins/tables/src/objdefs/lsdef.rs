//! `lsdef`: show object definitions in xCAT's formats: `NAME  (TYPE)`
//! lines (short), `Object name: NAME` stanzas of `    attr=value` lines
//! sorted by attribute (long, the default when objects are named), the
//! same as a stanza file (`-z`), or `NAME: attr=value` lines (`-c`).
//! Objects are streamed a batch at a time, so ten thousand nodes start
//! printing at once and the daemon holds one batch.
//!
//! `-h` with `-t TYPES` describes the types' attributes (only those of
//! `-i`, when given) from their columns' descriptions, as xCAT's lsdef.

use xcat_db::objects::nics::nic_attrs;
use xcat_db::objects::{Kind, ObjType, Where};
use xcat_db::Attrs;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use super::template::{self, Template};
use super::{
    all_types, default_scripts, existing, fail, not_an_attr, not_found, stanza, types_of, wheres,
    words,
};

const SYNTAX: Syntax = Syntax::new(
    "lsdef",
    "Usage: lsdef - List xCAT data object definitions.
  lsdef [-h|--help] [-t object-types]
  lsdef [-V|--verbose] [-t|--type object-types] [-o|--object object-names] [-l|--long]
      [-s|--short] [-a|--all] [-S] [-z|--stanza] [-c|--compress]
      [-i attr-list] [--nics] [-w attr==val [-w attr=~val] ...] [noderange]
  lsdef [-l|--long] [-a|--all] [-t object-types] [-z|--stanza]
      [-i attr-list] [--template [template-object-name]]
  lsdef [-v|--version]
  The following data object types are supported: auditlog,boottarget,eventlog,group,kit,kitcomponent,kitrepo,monitoring,network,node,notification,osimage,policy,route,site,zone",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 't', long = "type")]
    types: Option<String>,
    #[arg(short = 'o', long = "object")]
    objects: Vec<String>,
    #[arg(short = 'l', long = "long")]
    long: bool,
    #[arg(short = 's', long = "short")]
    short: bool,
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Show hidden nodes (`nodelist.hidden`) too.
    #[arg(short = 'S')]
    hidden: bool,
    #[arg(short = 'z', long = "stanza")]
    stanza: bool,
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    #[arg(short = 'i')]
    info: Option<String>,
    #[arg(short = 'w')]
    wheres: Vec<String>,
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    /// The per-interface attributes only (`-i nicips,nictypes,...`).
    #[arg(long = "nics")]
    nics: bool,
    /// `--template [NAME,...]`: the shipped object templates.
    #[arg(long = "template", num_args = 0..=1, default_missing_value = "")]
    template: Option<String>,
    words: Vec<String>,
}

/// How objects are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Short,
    Long,
    Stanza,
    Compress,
}

/// Objects read and printed per batch: small enough that their rows and
/// their groups' are read by key, not by reading whole tables.
const BATCH: usize = 500;

pub struct Lsdef;

#[async_trait]
impl Handler for Lsdef {
    fn commands(&self) -> &'static [&'static str] {
        &["lsdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        if let Some(rest) = help_with_type(req.args()) {
            let Some(args) = SYNTAX.read::<Args>(&rest, &out).await? else {
                return Ok(());
            };
            return attribute_help(&args, &out).await;
        }
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        if args.long && args.short {
            return Err(HandlerError::Failed(
                "The flags '-l' and '-s' cannot be used together.".into(),
            ));
        }
        if args.info.is_some() && args.short {
            return Err(HandlerError::Failed(
                "The flags '-i' and '-s' cannot be used together.".into(),
            ));
        }
        if args.all && args.types.is_some() {
            return Err(HandlerError::Failed(
                "The flags '-a' and '-t' cannot be used together.".into(),
            ));
        }
        let w = words(&args.objects, &args.words);
        if !w.pairs.is_empty() {
            return Err(SYNTAX.error("lsdef takes no attr=value pairs (use -w attr==value)"));
        }
        let mut names = w.names;
        names.extend(req.nodes.iter().cloned());
        let types = if args.all {
            all_types()
        } else {
            types_of(args.types.as_deref())?
        };
        let format = format_of(&args, !names.is_empty());
        let filters = wheres(&args.wheres)?;
        let only = only_attrs(&args, &types)?;
        let mut errors = Vec::new();
        let mut shown = 0;
        let templates = match &args.template {
            Some(list) => Some(chosen_templates(&ctx, &types, list)?),
            None => None,
        };
        let format = match &args.template {
            Some(list) => format_of(&args, !list.is_empty()),
            None => format,
        };
        if format == Format::Stanza {
            out.data(stanza::HEADER).await?;
        }
        // xCAT shows every node's lists after the default scripts, except
        // in a stanza file (which `mkdef -z` reads back into own rows).
        let shows_nodes = types.iter().any(|t| t.kind == Kind::Node);
        let defaults = if shows_nodes && format != Format::Stanza {
            Some(default_scripts(&ctx).await?)
        } else {
            None
        };
        let view = View {
            format,
            only: only.as_deref(),
            with_type: types.len() > 1,
            defaults,
        };
        if let Some(templates) = templates {
            return show_templates(&out, &templates, &filters, &view).await;
        }
        for t in &types {
            let (found, missing) = if names.is_empty() {
                (visible(&ctx, t, args.hidden).await?, Vec::new())
            } else {
                existing(&ctx, t, &names).await?
            };
            if is_log(t) && found.is_empty() && !missing.is_empty() {
                // xCAT reads a log's records apart from other objects and
                // says this when none of the named ones is there.
                errors.push("Could not get xCAT object definitions.".into());
            } else {
                errors.extend(missing.iter().map(|n| not_found(n, t)));
            }
            shown += show(&ctx, &out, t, &found, &filters, &view).await?;
        }
        if !errors.is_empty() {
            return fail(&out, errors).await;
        }
        if shown == 0 && !args.stanza {
            out.info("Could not find any object definitions to display.")
                .await?;
        }
        Ok(())
    }
}

/// `--template` (every template of the types) or `--template a,b`: the
/// shipped templates, each asked for one known (xCAT's message otherwise).
fn chosen_templates(
    ctx: &Context,
    types: &[&'static ObjType],
    list: &str,
) -> Result<Vec<Template>, HandlerError> {
    let all = template::load(&ctx.settings.share_dir, types)?;
    if list.is_empty() {
        return Ok(all);
    }
    xcat_db::objects::split_list(list)
        .into_iter()
        .map(|name| {
            all.iter().find(|t| t.name == name).cloned().ok_or_else(|| {
                HandlerError::Failed(format!("Could not find {name} in xCAT templates."))
            })
        })
        .collect()
}

/// Print templates as objects (a node template's script lists after the
/// default scripts, as a node's).
async fn show_templates(
    out: &Responder,
    templates: &[Template],
    filters: &[Where],
    view: &View<'_>,
) -> HandlerResult {
    let mut lines = Vec::new();
    for tpl in templates {
        let mut a = tpl.attrs();
        if let (Kind::Node, Some(d)) = (tpl.t.kind, &view.defaults) {
            with_default_scripts(&mut a, d);
        }
        if filters.iter().all(|f| f.matches(&a)) {
            object_lines(&mut lines, tpl.t, &tpl.name, &a, view);
        }
    }
    if lines.is_empty() && view.format != Format::Stanza {
        out.info("Could not find any object definitions to display.")
            .await?;
        return Ok(());
    }
    out.lines(lines).await?;
    Ok(())
}

/// Long when objects are named or attributes asked for; `-s` and `-l` decide.
fn format_of(args: &Args, named: bool) -> Format {
    if args.stanza {
        Format::Stanza
    } else if args.compress {
        Format::Compress
    } else if args.short || !(args.long || named || args.info.is_some()) {
        Format::Short
    } else {
        Format::Long
    }
}

/// `-i a,b`: checked against every type listed.
/// The arguments without their help flag, when they ask for help and name
/// a type (`-t`, `--type`): attribute help, not the usage text.
fn help_with_type(args: &[String]) -> Option<Vec<String>> {
    let is_help = |a: &str| matches!(a, "-h" | "--help" | "-?");
    let is_type = |a: &str| a == "--type" || a.starts_with("--type=") || a.starts_with("-t");
    if !args.iter().any(|a| is_help(a)) || !args.iter().any(|a| is_type(a)) {
        return None;
    }
    Some(args.iter().filter(|a| !is_help(a)).cloned().collect())
}

/// `lsdef -h -t TYPES [-i attrs]`: each type's attributes, sorted, with
/// their columns' descriptions; the site object's are its keys.
async fn attribute_help(args: &Args, out: &Responder) -> HandlerResult {
    use xcat_db::describe::{column_description, described_line};
    let types = types_of(args.types.as_deref())?;
    let wanted: Option<Vec<String>> = args.info.as_deref().map(|list| {
        xcat_db::objects::split_list(list)
            .into_iter()
            .map(|a| match a.split_once('.') {
                // nicips.eth0 asks for nicips.
                Some((base, _)) if base.starts_with("nic") => base.to_string(),
                _ => a,
            })
            .collect()
    });
    for t in types {
        if t.kind == Kind::Site {
            if wanted.is_some() {
                out.data("Warning: the site attributes are described all together; -i is ignored.")
                    .await?;
            }
            out.data("There is one site object (clustersite): its attributes are the rows of the site table, global settings of the cluster.").await?;
            out.data(column_description("site", "key").unwrap_or_default())
                .await?;
            continue;
        }
        if wanted.is_none() {
            out.data(format!(
                "The valid attribute names for object type '{}' are:",
                t.name
            ))
            .await?;
        }
        out.data("Attribute          Description").await?;
        let mut first = true;
        for name in t.attr_names() {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.iter().any(|a| a == name))
            {
                continue;
            }
            let Some(attr) = t.attrs.iter().find(|a| a.name == name) else {
                continue;
            };
            let desc = column_description(attr.table, attr.column).unwrap_or_default();
            if !first {
                out.data("").await?;
            }
            first = false;
            out.data(described_line(name, desc)).await?;
        }
    }
    Ok(())
}

fn only_attrs(
    args: &Args,
    types: &[&'static ObjType],
) -> Result<Option<Vec<String>>, HandlerError> {
    if args.nics {
        if args.info.is_some() {
            return Err(HandlerError::Failed(
                "The flags '-i' and '--nics' cannot be used together.".into(),
            ));
        }
        return Ok(Some(nic_attrs().map(str::to_string).collect()));
    }
    let Some(list) = &args.info else {
        return Ok(None);
    };
    let attrs = xcat_db::objects::split_list(list);
    for t in types {
        if let Some(a) = attrs.iter().find(|a| !t.is_attr(a)) {
            return Err(not_an_attr(a, t));
        }
    }
    Ok(Some(attrs))
}

/// Every object of `t`, hidden nodes only with `-S`.
async fn visible(ctx: &Context, t: &ObjType, hidden: bool) -> Result<Vec<String>, HandlerError> {
    let all = ctx.db.object_names(t).await?;
    if t.kind != Kind::Node || hidden {
        return Ok(all);
    }
    let hide = Where::parse("hidden!=1").map_err(HandlerError::Failed)?;
    super::selected(ctx, t, all, &[hide]).await
}

/// How each object is printed.
struct View<'a> {
    format: Format,
    only: Option<&'a [String]>,
    with_type: bool,
    /// `xcatdefaults`' postscripts and postbootscripts, put before each
    /// node's own.
    defaults: Option<(String, String)>,
}

/// A node's script lists as xCAT shows them: the defaults, then its own.
fn with_default_scripts(a: &mut Attrs, (ps, pbs): &(String, String)) {
    for (attr, d) in [("postscripts", ps), ("postbootscripts", pbs)] {
        if d.is_empty() {
            continue;
        }
        let v = match a.get(attr).filter(|own| !own.is_empty()) {
            Some(own) => format!("{d},{own}"),
            None => d.clone(),
        };
        a.insert(attr.to_string(), v);
    }
}

/// Print the objects of `t` that pass `filters`, a batch at a time;
/// returns how many were printed.
async fn show(
    ctx: &Context,
    out: &Responder,
    t: &ObjType,
    names: &[String],
    filters: &[Where],
    view: &View<'_>,
) -> Result<usize, HandlerError> {
    let mut shown = 0;
    for chunk in names.chunks(BATCH) {
        ctx.check_cancelled()?;
        let needs_attrs = view.format != Format::Short || !filters.is_empty();
        let mut attrs = if needs_attrs {
            ctx.db.object_attrs(t, chunk).await?
        } else {
            vec![Attrs::new(); chunk.len()]
        };
        if let (Kind::Node, Some(d), true) = (t.kind, &view.defaults, needs_attrs) {
            attrs.iter_mut().for_each(|a| with_default_scripts(a, d));
        }
        let mut lines = Vec::new();
        for (name, a) in chunk.iter().zip(&attrs) {
            if !filters.iter().all(|f| f.matches(a)) {
                continue;
            }
            shown += 1;
            object_lines(&mut lines, t, name, a, view);
        }
        out.lines(lines).await?;
    }
    Ok(shown)
}

fn object_lines(lines: &mut Vec<String>, t: &ObjType, name: &str, a: &Attrs, view: &View<'_>) {
    match view.format {
        Format::Short => lines.push(format!("{name}  ({})", t.name)),
        Format::Long => {
            lines.push(if view.with_type {
                format!("Object name: {name}  ({})", t.name)
            } else {
                format!("Object name: {name}")
            });
            attr_lines(lines, a, view.only, |k, v| format!("    {k}={v}"));
        }
        Format::Stanza => {
            lines.push(String::new());
            lines.push(format!("{name}:"));
            lines.push(format!("    objtype={}", t.name));
            attr_lines(lines, a, view.only, |k, v| format!("    {k}={v}"));
        }
        Format::Compress => attr_lines(lines, a, view.only, |k, v| format!("{name}: {k}={v}")),
    }
}

/// The attribute lines, sorted; with `-i`, the attributes asked for, set or not.
fn attr_lines(
    lines: &mut Vec<String>,
    a: &Attrs,
    only: Option<&[String]>,
    line: impl Fn(&str, &str) -> String,
) {
    match only {
        Some(list) => {
            let mut list: Vec<&String> = list.iter().collect();
            list.sort();
            for k in list {
                // `-i nicips` shows every `nicips.<nic>` the object has.
                let prefix = format!("{k}.");
                let per_nic: Vec<(&String, &String)> =
                    a.iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
                if a.contains_key(k.as_str()) || per_nic.is_empty() {
                    lines.push(line(k, a.get(k).map_or("", String::as_str)));
                }
                lines.extend(per_nic.into_iter().map(|(n, v)| line(n, v)));
            }
        }
        None => lines.extend(a.iter().map(|(k, v)| line(k, v))),
    }
}

/// The log types, whose objects are records numbered by `recid`.
fn is_log(t: &ObjType) -> bool {
    matches!(t.name, "auditlog" | "eventlog")
}
