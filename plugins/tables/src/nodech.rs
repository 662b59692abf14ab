//! `nodech noderange table.column=value ...` and `nodeadd noderange
//! groups=... [table.column=value ...]`: node attributes by table column.
//! `,=` adds to a comma-separated list, `^=` removes from it, `=@` sets a
//! value that starts with `=`; `table.column==value` (and `!=`, `=~`, `!~`)
//! narrows the nodes, as in nodels. A word without a table is a node
//! attribute of the object model (`groups`, `mgt`, ...). `nodech -d
//! noderange table ...` deletes the nodes' rows.

use std::collections::BTreeMap;

use xcat_db::objects::{obj_type, split_list};
use xcat_db::{noderange, Db};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const NODECH: Syntax = Syntax::new(
    "nodech",
    "Usage: nodech noderange table.column=value [...]
       nodech {-d|--delete} noderange table [...]
       nodech {-v|--version}
       nodech [-?|-h|--help]",
);

const NODEADD: Syntax = Syntax::new(
    "nodeadd",
    "Usage: nodeadd noderange groups=groupnames [table.column=value] [...]
       nodeadd [-v|--version]
       nodeadd [-?|-h|--help]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 'd', long = "delete")]
    delete: bool,
    words: Vec<String>,
}

#[derive(Debug, clap::Parser)]
struct AddArgs {
    words: Vec<String>,
}

/// How a value combines with the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Add,
    Remove,
}

/// One `table.column OP value` word.
#[derive(Debug)]
struct Assign {
    table: &'static str,
    column: &'static str,
    op: Op,
    value: String,
}

pub struct Nodech;
pub struct Nodeadd;

/// Is `word` a selection (`table.column==value` and the like)?
fn is_selection(word: &str) -> bool {
    let eq = word.find('=');
    // `!~` has no `=`: it is a selection when it comes before any `=`.
    if word.find("!~").is_some_and(|n| eq.is_none_or(|e| n < e)) {
        return true;
    }
    let Some(eq) = eq else {
        return false;
    };
    word[eq..].starts_with("==") || word[eq..].starts_with("=~") || word[..eq].ends_with('!')
}

fn parse_assign(word: &str, syntax: &Syntax) -> Result<Assign, HandlerError> {
    let (lhs, value) = word.split_once('=').ok_or_else(|| {
        syntax.error(format!(
            "malformed argument '{word}': expected table.column=value"
        ))
    })?;
    let (lhs, op) = match lhs.chars().last() {
        Some(',') => (&lhs[..lhs.len() - 1], Op::Add),
        Some('^') => (&lhs[..lhs.len() - 1], Op::Remove),
        _ => (lhs, Op::Set),
    };
    let value = value.strip_prefix('@').unwrap_or(value).to_string();
    let (table, column) = resolve_column(lhs)?;
    Ok(Assign {
        table,
        column,
        op,
        value,
    })
}

/// `table.column`, or a node attribute name of the object model.
fn resolve_column(lhs: &str) -> Result<(&'static str, &'static str), HandlerError> {
    if let Some((table, col)) = lhs.split_once('.') {
        let t = xcat_db::schema::table(table)
            .filter(|t| t.is_node_keyed())
            .ok_or_else(|| HandlerError::Failed(format!("{table} is not a table keyed by node")))?;
        let c = t
            .column(col)
            .ok_or_else(|| HandlerError::Failed(format!("{table} has no column {col}")))?;
        return Ok((t.name, c));
    }
    // xCAT's short name for nodelist.groups, beside the attribute itself.
    if lhs == "tags" {
        return Ok(("nodelist", "groups"));
    }
    let node = obj_type("node").expect("node type");
    node.attrs
        .iter()
        .find(|a| a.name == lhs && a.only_if.is_none())
        .map(|a| (a.table, a.column))
        .ok_or_else(|| {
            HandlerError::Failed(format!(
                "'{lhs}' is not a node attribute (give table.column)"
            ))
        })
}

/// Apply the assignments to `nodes`: values with `,=`/`^=` from each
/// node's own stored value; nodes getting the same value share a write.
async fn apply(ctx: &Context, nodes: &[String], assigns: &[Assign]) -> HandlerResult {
    for a in assigns {
        let own: BTreeMap<String, String> = if a.op == Op::Set {
            BTreeMap::new()
        } else {
            ctx.db
                .rows(a.table)
                .await?
                .into_iter()
                .filter_map(|mut r| {
                    Some((r.remove("node")?, r.remove(a.column).unwrap_or_default()))
                })
                .collect()
        };
        let mut by_value: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in nodes {
            let v = match a.op {
                Op::Set => a.value.clone(),
                op => combine(own.get(n).map_or("", String::as_str), &a.value, op),
            };
            by_value.entry(v).or_default().push(n.clone());
        }
        for (v, names) in by_value {
            ctx.db
                .set_for_nodes(a.table, &names, &[(a.column, &v)])
                .await?;
        }
    }
    Ok(())
}

/// `,=` puts the items first unless there; `^=` takes them out.
fn combine(current: &str, value: &str, op: Op) -> String {
    let mut items = split_list(current);
    for item in split_list(value).into_iter().rev() {
        match op {
            Op::Add if !items.contains(&item) => items.insert(0, item),
            Op::Remove => items.retain(|i| *i != item),
            _ => {}
        }
    }
    items.join(",")
}

#[async_trait]
impl Handler for Nodech {
    fn commands(&self) -> &'static [&'static str] {
        &["nodech"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = NODECH.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let Some((range, rest)) = args.words.split_first() else {
            return Err(NODECH.error("No noderange given"));
        };
        let (selections, words): (Vec<&String>, Vec<&String>) =
            rest.iter().partition(|w| is_selection(w));
        let mut expr = format!("({range})");
        for s in &selections {
            expr.push('@');
            expr.push_str(s);
        }
        let nodes = ctx.db.expand_noderange(&expr).await?;
        if words.is_empty() {
            return Err(NODECH.error(if args.delete {
                "No table given"
            } else {
                "No table.column=value given"
            }));
        }
        if args.delete {
            for t in &words {
                Db::columns(t).map_err(|_| HandlerError::Failed(format!("No such table: {t}")))?;
                for n in &nodes {
                    ctx.db.delete(t, &[("node", n.as_str())]).await?;
                }
            }
            return Ok(());
        }
        let assigns: Vec<Assign> = words
            .iter()
            .map(|w| parse_assign(w, &NODECH))
            .collect::<Result<_, _>>()?;
        apply(&ctx, &nodes, &assigns).await
    }
}

#[async_trait]
impl Handler for Nodeadd {
    fn commands(&self) -> &'static [&'static str] {
        &["nodeadd"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = NODEADD.read::<AddArgs>(req.args(), &out).await? else {
            return Ok(());
        };
        let Some((range, rest)) = args.words.split_first() else {
            return Err(NODEADD.error("No noderange given"));
        };
        let nodes = noderange::literal_names(range, 1_000_000)
            .map_err(|e| HandlerError::Failed(e.to_string()))?;
        let assigns: Vec<Assign> = rest
            .iter()
            .map(|w| parse_assign(w, &NODEADD))
            .collect::<Result<_, _>>()?;
        if !assigns
            .iter()
            .any(|a| a.table == "nodelist" && a.column == "groups" && !a.value.is_empty())
        {
            return Err(NODEADD.error("At least one groupname must be given: groups=..."));
        }
        apply(&ctx, &nodes, &assigns).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_lists() {
        assert!(is_selection("nodepos.rack==2"));
        assert!(is_selection("nodehm.mgt!=ipmi"));
        assert!(is_selection("nodehm.mgt=~ip"));
        assert!(is_selection("nodehm.mgt!~ip"));
        assert!(is_selection("nodelist.comments!~a=b"));
        assert!(!is_selection("nodelist.comments=a!~b"));
        assert!(!is_selection("groups,=rack2"));
        assert!(!is_selection("nodelist.comments=@=foo"));
        let a = parse_assign("groups,=rack2", &NODECH).unwrap();
        assert_eq!((a.table, a.column, a.op), ("nodelist", "groups", Op::Add));
        let a = parse_assign("nodelist.comments=@=foo", &NODECH).unwrap();
        assert_eq!((a.op, a.value.as_str()), (Op::Set, "=foo"));
        assert_eq!(combine("a,b", "c", Op::Add), "c,a,b");
        assert_eq!(combine("a,b", "a", Op::Add), "a,b");
        assert_eq!(combine("a,b", "a", Op::Remove), "b");
        assert!(parse_assign("nosuch=1", &NODECH).is_err());
        assert!(parse_assign("site.value=1", &NODECH).is_err());
    }
}
