//! `chtab key=value[,key=value] table.col=value ...`: insert or update a row
//! (`table.col+=value` adds `value` to the column's comma-separated list
//! unless it is there); `chtab -d key=value table ...`: delete rows. `tabch`
//! is the same command under xCAT's other name.

use std::collections::BTreeMap;

use xcat_db::Db;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "chtab",
    "Usage: chtab keycolname=keyvalue[,keycolname=keyvalue...] tablename.colname=newvalue [tablename.colname=newvalue...]
       chtab keycolname=keyvalue[,keycolname=keyvalue...] tablename.colname+=newvalue [...]
       chtab -d|--delete keycolname=keyvalue[,keycolname=keyvalue...] tablename [tablename...]
       chtab [-?|-h|--help]
       chtab [-v|--version]
  e.g. chtab key=xcatdport site.value=3001
       chtab node=compute nodetype.os=rhels9 nodetype.arch=x86_64
       chtab -d node=node01 hosts",
);

/// The same command under xCAT's daemon-side name.
const TABCH: Syntax = Syntax::new("tabch", SYNTAX.usage);

#[derive(Debug, clap::Parser)]
struct Args {
    /// `-d`: delete the rows the key selects from the tables named.
    #[arg(short = 'd', long = "delete")]
    delete: bool,
    /// `keycolname=keyvalue[,...]`.
    key: Option<String>,
    /// `table.column=value` words, or with `-d` table names.
    targets: Vec<String>,
}

/// Key column and value pairs.
type Keys = Vec<(String, String)>;

pub struct Chtab;

/// `k=v,k2=v2` -> pairs.
fn parse_keys(spec: &str) -> Result<Keys, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "malformed key '{part}': expected keycolname=keyvalue"
            ));
        };
        if k.is_empty() || k.contains('.') {
            return Err(format!(
                "malformed key '{part}': expected keycolname=keyvalue"
            ));
        }
        if v.is_empty() {
            return Err(format!("empty value for key {k}"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The message for a table the catalogue does not have, in xCAT's words.
fn no_table(table: &str) -> HandlerError {
    HandlerError::Failed(format!("Table {table} does not exist"))
}

fn check_keys(table: &str, keys: &Keys) -> Result<(), HandlerError> {
    let cols = Db::columns(table).map_err(|_| no_table(table))?;
    for (k, _) in keys {
        if !cols.contains(&k.as_str()) {
            return Err(HandlerError::Failed(format!(
                "Table {table} has no such column: {k} (its columns: {})",
                cols.join(",")
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Handler for Chtab {
    fn commands(&self) -> &'static [&'static str] {
        &["chtab", "tabch"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let syntax = if req.command() == "tabch" {
            TABCH
        } else {
            SYNTAX
        };
        let Some(args) = syntax.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let Some(keyspec) = &args.key else {
            return Err(SYNTAX.error("No key given"));
        };
        let keys = parse_keys(keyspec).map_err(|m| SYNTAX.error(m))?;
        if args.targets.is_empty() {
            return Err(SYNTAX.error(if args.delete {
                "No table given"
            } else {
                "No table.column=value given"
            }));
        }
        if args.delete {
            delete(&ctx, &keys, &args.targets).await
        } else {
            let mut by_table = assignments(&args.targets, &keys)?;
            for (table, vals) in by_table.iter_mut() {
                appended(&ctx, table, &keys, vals).await?;
                let v: Vec<(&str, &str)> =
                    vals.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
                ctx.db.upsert(table, &key_refs(&keys), &v).await?;
            }
            Ok(())
        }
    }
}

/// Values given with `+=` (their column still ends in `+`): the row's
/// current list with the value added when it is not there yet.
async fn appended(ctx: &Context, table: &str, keys: &Keys, vals: &mut Keys) -> HandlerResult {
    if !vals.iter().any(|(c, _)| c.ends_with('+')) {
        return Ok(());
    }
    let rows = ctx.db.rows(table).await?;
    let row = rows
        .iter()
        .find(|r| keys.iter().all(|(k, v)| r.get(k) == Some(v)));
    for (col, value) in vals.iter_mut() {
        let Some(c) = col.strip_suffix('+') else {
            continue;
        };
        let mut items =
            xcat_db::objects::split_list(row.and_then(|r| r.get(c)).map_or("", String::as_str));
        if !items.contains(value) {
            items.push(value.clone());
        }
        *value = items.join(",");
        *col = c.to_string();
    }
    Ok(())
}

fn key_refs(keys: &Keys) -> Vec<(&str, &str)> {
    keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `chtab -d`: every table is checked before any row is deleted, and every
/// missing one is named.
async fn delete(ctx: &Context, keys: &Keys, tables: &[String]) -> HandlerResult {
    if tables.iter().any(|t| t.contains('=') || t.contains('.')) {
        return Err(SYNTAX.error(". and = are not valid in delete mode: give table names"));
    }
    let missing: Vec<String> = tables
        .iter()
        .filter(|t| Db::columns(t).is_err())
        .map(|t| no_table(t).to_string())
        .collect();
    if !missing.is_empty() {
        return Err(HandlerError::Failed(missing.join("\n")));
    }
    for t in tables {
        check_keys(t, keys)?;
    }
    for t in tables {
        let n = ctx.db.delete(t, &key_refs(keys)).await?;
        tracing::info!(table = %t, rows = n, "chtab -d");
    }
    Ok(())
}

/// `table.column=value` words grouped by table, keeping their order; every
/// table and column checked.
fn assignments(targets: &[String], keys: &Keys) -> Result<BTreeMap<String, Keys>, HandlerError> {
    let mut by_table: BTreeMap<String, Keys> = BTreeMap::new();
    for t in targets {
        let malformed = || {
            SYNTAX.error(format!(
                "malformed argument '{t}': expected table.column=value"
            ))
        };
        let (lhs, value) = t.split_once('=').ok_or_else(malformed)?;
        let (table, col) = lhs.split_once('.').ok_or_else(malformed)?;
        let cols = Db::columns(table).map_err(|_| no_table(table))?;
        // The key is checked before the column, as a database would.
        check_keys(table, keys)?;
        if !cols.contains(&col.strip_suffix('+').unwrap_or(col)) {
            return Err(HandlerError::Failed(format!(
                "{table}.{col} is not a valid table.column (columns of {table}: {})",
                cols.join(",")
            )));
        }
        by_table
            .entry(table.to_string())
            .or_default()
            .push((col.to_string(), value.to_string()));
    }
    Ok(by_table)
}

#[cfg(test)]
mod tests {
    use super::parse_keys;

    #[test]
    fn keys() {
        assert_eq!(
            parse_keys("key=system,username=root").unwrap(),
            vec![
                ("key".into(), "system".into()),
                ("username".into(), "root".into())
            ]
        );
        assert_eq!(
            parse_keys("node=a=b").unwrap(),
            vec![("node".into(), "a=b".into())]
        );
        assert!(parse_keys("site.value=1").is_err());
        assert!(parse_keys("node=").is_err());
        assert!(parse_keys("node").is_err());
    }
}
