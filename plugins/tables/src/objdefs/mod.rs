//! What the object commands (`mkdef`, `chdef`, `rmdef`, `lsdef`) share:
//! object types from `-t`, names from `-o` and the words (noderanges for
//! nodes), `attr=value` words, `-w` selections, stanza files, and xCAT's
//! messages for each of these. The object model itself is
//! [`xcat_db::objects`]; nothing here knows a type's attributes.

use xcat_db::noderange::{self, NoderangeError};
use xcat_db::objects::{self, split_list, Change, Kind, ObjType, Where, TYPES};
use xcat_db::{Attrs, DbError};
use xcat_plugin::{Context, HandlerError, HandlerResult, Responder};

/// The options mkdef and chdef share, in xCAT's spellings.
#[derive(Debug, clap::Args)]
pub struct Define {
    #[arg(short = 't')]
    pub types: Option<String>,
    #[arg(short = 'o')]
    pub objects: Vec<String>,
    #[arg(short = 'z', long = "stanza")]
    pub stanza: bool,
    #[arg(short = 'd', long = "dynamic")]
    pub dynamic: bool,
    #[arg(short = 'w')]
    pub wheres: Vec<String>,
}

pub mod chdef;
pub mod lsdef;
pub mod mkdef;
pub mod rmdef;
pub mod stanza;
pub mod template;

/// Most names one command may create (`mkdef cn[1-100000]` and more).
const MAX_NEW_NAMES: u64 = 1_000_000;

/// The object types of `-t` (comma-separated), `node` when none is given.
pub fn types_of(spec: Option<&str>) -> Result<Vec<&'static ObjType>, HandlerError> {
    let Some(spec) = spec else {
        return Ok(vec![objects::obj_type("node").expect("node type")]);
    };
    split_list(spec)
        .iter()
        .map(|t| {
            objects::obj_type(t).ok_or_else(|| {
                HandlerError::Failed(format!("Type '{t}' is not a valid xCAT object type."))
            })
        })
        .collect()
}

/// Every type, for `-a`.
pub fn all_types() -> Vec<&'static ObjType> {
    TYPES.iter().collect()
}

/// The words of a command line: names (noderanges) and `attr=value` pairs.
#[derive(Debug, Default)]
pub struct Words {
    pub names: Vec<String>,
    pub pairs: Vec<(String, String)>,
}

/// Split the words; `-o` values come first.
pub fn words(objects: &[String], words: &[String]) -> Words {
    let mut w = Words {
        names: objects.to_vec(),
        ..Words::default()
    };
    for word in words {
        match word.split_once('=') {
            Some((a, v)) => w.pairs.push((a.to_string(), v.to_string())),
            None => w.names.push(word.clone()),
        }
    }
    w
}

/// The `attr=value` pairs checked against a type.
pub fn checked_attrs(t: &ObjType, pairs: &[(String, String)]) -> Result<Attrs, HandlerError> {
    let mut attrs = Attrs::new();
    for (a, v) in pairs {
        if a.is_empty() {
            return Err(HandlerError::Failed(format!(
                "Incorrect 'attr=val' pair - {a}={v}."
            )));
        }
        if !t.is_attr(a) {
            return Err(not_an_attr(a, t));
        }
        attrs.insert(a.clone(), v.clone());
    }
    Ok(attrs)
}

pub fn not_an_attr(a: &str, t: &ObjType) -> HandlerError {
    HandlerError::Failed(format!(
        "'{a}' is not a valid attribute name for an object type of '{}'.",
        t.name
    ))
}

pub fn not_found(name: &str, t: &ObjType) -> String {
    format!(
        "Could not find an object named '{name}' of type '{}'.",
        t.name
    )
}

/// `-w` selections, parsed.
pub fn wheres(texts: &[String]) -> Result<Vec<Where>, HandlerError> {
    texts
        .iter()
        .map(|w| Where::parse(w).map_err(HandlerError::Failed))
        .collect()
}

/// The names of objects to create: noderange forms spelled out for nodes
/// and groups, a comma list for other types.
pub fn new_names(t: &ObjType, names: &[String]) -> Result<Vec<String>, HandlerError> {
    let mut out = Vec::new();
    for n in names {
        match t.kind {
            Kind::Node | Kind::Group => out.extend(
                noderange::literal_names(n, MAX_NEW_NAMES)
                    .map_err(|e| HandlerError::Failed(e.to_string()))?,
            ),
            _ => out.extend(split_list(n)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    Ok(out)
}

/// Names split into the objects that exist and those that do not. For
/// nodes the names are a noderange expanded against the tables (groups
/// name their members); a name the noderange does not know is missing.
pub async fn existing(
    ctx: &Context,
    t: &ObjType,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), HandlerError> {
    if t.kind == Kind::Node {
        return existing_nodes(ctx, names).await;
    }
    let wanted = new_names(t, names)?;
    let exists = ctx.db.objects_exist(t, &wanted).await?;
    let (found, missing): (Vec<_>, Vec<_>) = wanted.into_iter().zip(exists).partition(|(_, e)| *e);
    Ok((
        found.into_iter().map(|(n, _)| n).collect(),
        missing.into_iter().map(|(n, _)| n).collect(),
    ))
}

async fn existing_nodes(
    ctx: &Context,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), HandlerError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match ctx.db.expand_noderange(n).await {
            Ok(v) => found.extend(v),
            Err(DbError::Noderange(NoderangeError::Invalid(bad))) => {
                // The known part of the range still counts.
                missing.extend(bad.iter().flat_map(|b| {
                    noderange::literal_names(b, MAX_NEW_NAMES).unwrap_or_else(|_| vec![b.clone()])
                }));
                let rest: Vec<&str> = n
                    .split(',')
                    .filter(|p| !bad.iter().any(|b| b == p))
                    .collect();
                if !rest.is_empty() {
                    found.extend(
                        ctx.db
                            .expand_noderange(&rest.join(","))
                            .await
                            .unwrap_or_default(),
                    );
                }
            }
            Err(DbError::Noderange(NoderangeError::InvalidMany { shown, .. })) => {
                missing.extend(shown)
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|n| seen.insert(n.clone()));
    missing.retain(|n| seen.insert(n.clone()));
    Ok((found, missing))
}

/// Report every message but the last as an error line and fail with the
/// last (each reaches the client as `Error: ...`, exit status 1).
pub async fn fail(out: &Responder, mut msgs: Vec<String>) -> HandlerResult {
    let last = msgs.pop().unwrap_or_default();
    for m in msgs {
        out.error(m).await?;
    }
    Err(HandlerError::Failed(last))
}

/// Objects of `t` among `names` (all of them when `names` is empty) whose
/// attributes pass every selection.
pub async fn selected(
    ctx: &Context,
    t: &ObjType,
    names: Vec<String>,
    filters: &[Where],
) -> Result<Vec<String>, HandlerError> {
    if filters.is_empty() {
        return Ok(names);
    }
    let attrs = ctx.db.object_attrs(t, &names).await?;
    Ok(names
        .into_iter()
        .zip(attrs)
        .filter(|(_, a)| filters.iter().all(|f| f.matches(a)))
        .map(|(n, _)| n)
        .collect())
}

/// A node name must not hold a dot (xCAT's rule: it would be taken for a
/// domain name).
pub fn check_node_names(t: &ObjType, names: &[String]) -> Result<(), HandlerError> {
    if t.kind != Kind::Node {
        return Ok(());
    }
    match names.iter().find(|n| n.contains('.')) {
        Some(n) => Err(HandlerError::Failed(format!(
            "The object name '{n}' is invalid, Cannot use '.' in node name."
        ))),
        None => Ok(()),
    }
}

/// The node every node's `postscripts` row starts from (xCAT's).
pub const DEFAULT_SCRIPTS_ROW: &str = "xcatdefaults";

/// The `(postscripts, postbootscripts)` of the `xcatdefaults` row.
pub async fn default_scripts(ctx: &Context) -> Result<(String, String), HandlerError> {
    let row = ctx
        .db
        .get_row("postscripts", DEFAULT_SCRIPTS_ROW)
        .await?
        .unwrap_or_default();
    let get = |c: &str| row.get(c).cloned().unwrap_or_default();
    Ok((get("postscripts"), get("postbootscripts")))
}

/// Scripts every node runs already (the `xcatdefaults` row) are not
/// written again into a node's or group's own list: each is dropped with
/// xCAT's warning.
pub async fn drop_default_scripts(
    ctx: &Context,
    out: &Responder,
    t: &ObjType,
    todo: &mut [Change],
) -> HandlerResult {
    let touches = |a: &Attrs| a.contains_key("postscripts") || a.contains_key("postbootscripts");
    if !matches!(t.kind, Kind::Node | Kind::Group) || !todo.iter().any(|(_, a)| touches(a)) {
        return Ok(());
    }
    let (ps, pbs) = default_scripts(ctx).await?;
    for (name, attrs) in todo.iter_mut().filter(|(n, _)| n != DEFAULT_SCRIPTS_ROW) {
        for (attr, defaults) in [("postscripts", &ps), ("postbootscripts", &pbs)] {
            let Some(value) = attrs.get(attr) else {
                continue;
            };
            let defaults = split_list(defaults);
            let mut kept = Vec::new();
            for s in split_list(value) {
                if defaults.contains(&s) {
                    out.warning(format!(
                        "{name}: {attr} '{s}' is already included in the '{DEFAULT_SCRIPTS_ROW}'."
                    ))
                    .await?;
                } else {
                    kept.push(s);
                }
            }
            attrs.insert(attr.to_string(), kept.join(","));
        }
    }
    Ok(())
}
